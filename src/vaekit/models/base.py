"""The model contract, the diagonal-Gaussian posterior and the image likelihoods."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.errors import ConfigError

LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class LossOutput:
    """What a model's ``loss`` returns; the training loop reads nothing else.

    All values are means over the batch of per-image quantities in nats.

    Attributes
    ----------
    total : torch.Tensor
        Scalar to minimise (reconstruction + weighted KL + model-specific terms).
    reconstruction : torch.Tensor
        Scalar mean negative log-likelihood of the images, ``-E_q[log p(x|z)]``.
    kl : torch.Tensor
        Scalar mean ``KL(q(z|x) || p(z))`` (unweighted).
    extras : dict
        Further scalar tensors to log, e.g. classifier loss.
    """

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


#: Noise ``(B, latent_dim)`` that the posterior samples of a batch use while set (see below).
_FIXED_NOISE: ContextVar[torch.Tensor | None] = ContextVar("vaekit_fixed_noise", default=None)


@contextlib.contextmanager
def fixed_posterior_noise(eps: torch.Tensor) -> Iterator[None]:
    """Within the block, a batch's posterior samples are ``mean + std * eps``.

    ``eps`` is ``(B, latent_dim)``, one row per image of the batch: scoring code draws each
    row from its image alone, so an image's one-sample ELBO does not depend on its position
    in a batch or on the other images scored with it.
    """
    token = _FIXED_NOISE.set(eps)
    try:
        yield
    finally:
        _FIXED_NOISE.reset(token)


@dataclass
class Posterior:
    """Diagonal Gaussian ``q(z|x) = N(mean, exp(logvar))``, both ``(B, latent_dim)``."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def rsample(self) -> torch.Tensor:
        """Reparameterised sample ``mean + std * eps`` (Kingma & Welling 2014, eq. 10).

        ``eps`` is fresh standard-normal noise, or the rows :func:`fixed_posterior_noise` set;
        a batch that repeats each image ``k`` times, image-major (M2 pairs every image with
        every class), repeats its row too. Scoring runs eagerly, so a compiled training step
        does not look the rows up (graph capture cannot read a context variable).
        """
        eps = None if torch.compiler.is_compiling() else _FIXED_NOISE.get()
        if eps is None:
            eps = torch.randn_like(self.mean)
        else:
            eps = eps.to(self.mean).repeat_interleave(len(self.mean) // len(eps), dim=0)
        return self.mean + torch.exp(0.5 * self.logvar) * eps

    def kl_standard_normal(self) -> torch.Tensor:
        """``KL(q || N(0, I))`` per image, ``(B,)`` (Kingma & Welling 2014, App. B)."""
        return -0.5 * torch.sum(1 + self.logvar - self.mean.pow(2) - self.logvar.exp(), dim=1)


def negative_log_likelihood(
    likelihood: str, out: torch.Tensor, x: torch.Tensor, log_scale: torch.Tensor | None
) -> torch.Tensor:
    """``-log p(x | z)`` per image, summed over pixels, ``(B,)`` in nats.

    Parameters
    ----------
    likelihood : {"bernoulli", "gaussian"}
        Bernoulli on intensities in [0, 1] (``out`` are logits), or Gaussian with mean
        ``sigmoid(out)`` and one learned standard deviation ``exp(log_scale)`` shared by all
        pixels (the calibrated decoder of Rybkin et al. 2021).
    out : torch.Tensor
        Decoder output ``(B, *shape)``.
    x : torch.Tensor
        Targets in [0, 1], same shape.
    log_scale : torch.Tensor or None
        Scalar log standard deviation, Gaussian only.
    """
    # Flatten first: a 2-D row sum is markedly faster on CPU than reducing (B, C, H, W).
    out, x = out.flatten(1), x.flatten(1)
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(out, x, reduction="none")
    else:
        assert log_scale is not None
        z = (x - torch.sigmoid(out)) * torch.exp(-log_scale)
        nll = 0.5 * z.pow(2) + log_scale + 0.5 * _LOG_2PI
    return nll.sum(dim=1)


def mean_from_output(out: torch.Tensor) -> torch.Tensor:
    """Pixel means in [0, 1] from decoder outputs (both likelihoods use a sigmoid link)."""
    return torch.sigmoid(out)


def check_likelihood(likelihood: str) -> None:
    """Raise ``ConfigError`` for an unknown likelihood name."""
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


class GenerativeModel(nn.Module):
    """Base class of vaekit models: a Gaussian encoder and an image decoder.

    Subclasses implement ``loss`` (and may override ``prior_sample``).
    """

    latent_dim: int
    likelihood: str

    def encode(self, x: torch.Tensor) -> Posterior:  # pragma: no cover - abstract
        """Map images ``(B, *shape)`` in [0, 1] to the posterior ``q(z|x)``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map latents ``(B, latent_dim)`` to decoder outputs (logits) ``(B, *shape)``."""
        raise NotImplementedError

    def loss(self, *batch: torch.Tensor, kl_weight: float = 1.0) -> LossOutput:  # pragma: no cover
        """Negative ELBO of a batch; ``kl_weight`` scales the KL term (warm-up).

        ``batch`` holds one row-aligned tensor per array the model was trained on: the
        images, and for M2 also their labels and propagated targets. The training loop calls
        ``model.loss(*batch, kl_weight=w)``.
        """
        raise NotImplementedError

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``(n, latent_dim)`` latents from the prior ``p(z) = N(0, I)``."""
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO per image ``(B,)`` in nats, with one posterior sample (beta = 1)."""
        post = self.encode(x)
        out = self.decode(post.rsample())
        nll = negative_log_likelihood(self.likelihood, out, x, getattr(self, "log_scale", None))
        return -(nll + self.kl(post))

    def kl(self, post: Posterior) -> torch.Tensor:
        """``KL(q(z|x) || p(z))`` per image ``(B,)``; standard-normal prior by default."""
        return post.kl_standard_normal()
