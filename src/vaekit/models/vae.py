"""The VAE with a standard-normal prior (Kingma & Welling 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.models.base import (
    GenerativeModel,
    LossOutput,
    Posterior,
    check_likelihood,
    negative_log_likelihood,
)
from vaekit.nn import build_decoder, build_encoder


class VAEModule(GenerativeModel):
    """Encoder -> diagonal Gaussian latent -> decoder, loss = reconstruction + beta * KL.

    Parameters
    ----------
    input_shape : sequence of int
        ``(C, H, W)`` for images or ``(F,)`` for flat features.
    latent_dim : int
        Size of ``z``.
    arch : {"mlp", "conv"}
        Encoder/decoder family.
    hidden_dims : sequence of int
        Layer widths (MLP) or channels (conv), input side first.
    likelihood : {"bernoulli", "gaussian"}
        Pixel likelihood ``p(x|z)``.
    beta : float
        Weight of the KL term (Higgins et al. 2017); 1 gives the ELBO.
    input_dropout : float
        While training, the encoder sees the image with this share of its pixels zeroed
        (the rest scaled by ``1 / (1 - p)``) and the decoder reconstructs the clean image:
        the denoising criterion of Im et al. (2017), with the input dropout of DEC's
        autoencoder (Xie et al. 2016). 0 trains on the ELBO itself; evaluation never drops.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        arch: str,
        hidden_dims: Sequence[int],
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        input_dropout: float = 0.0,
    ):
        super().__init__()
        check_likelihood(likelihood)
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.beta = beta
        self.input_dropout = input_dropout
        # (B, *input_shape) -> (B, 2 * latent_dim): mean and log-variance.
        self.encoder = build_encoder(arch, self.input_shape, hidden_dims, 2 * latent_dim)
        self.decoder = build_decoder(arch, latent_dim, hidden_dims, self.input_shape)
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(()))

    def encode(self, x: torch.Tensor) -> Posterior:
        """Posterior ``q(z|x)``; ``x`` is ``(B, *input_shape)`` in [0, 1]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return Posterior(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return decoder outputs (logits of the pixel means), ``(B, *input_shape)``."""
        return self.decoder(z)

    def loss(self, x: torch.Tensor, kl_weight: float = 1.0) -> LossOutput:
        """Negative ELBO, nats per image averaged over the batch, with ``beta * kl_weight``.

        In training mode with ``input_dropout``, the encoder sees a corrupted copy of ``x``.
        """
        seen = x
        if self.training and self.input_dropout > 0:
            seen = F.dropout(x, self.input_dropout)
        post = self.encode(seen)
        out = self.decode(post.rsample())
        rec = negative_log_likelihood(
            self.likelihood, out, x, getattr(self, "log_scale", None)
        ).mean()
        kl = self.kl(post).mean()
        return LossOutput(total=rec + (self.beta * kl_weight) * kl, reconstruction=rec, kl=kl)
