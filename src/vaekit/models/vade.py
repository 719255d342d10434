"""VaDE: a VAE whose prior is a Gaussian mixture (Jiang et al. 2017).

"Variational Deep Embedding" makes the clusters a part of the generative model.

Generative story: ``c ~ Cat(pi)``, ``z | c ~ N(mu_c, diag(var_c))``, ``x | z ~ p(x|z)``.
The posterior is ``q(z, c | x) = q(z|x) q(c|x)`` with ``q(c|x)`` set to the mixture
responsibilities ``p(c|z)`` (Jiang et al. 2017, eq. 16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vaekit.models.base import LossOutput, Posterior, negative_log_likelihood
from vaekit.models.vae import VAEModule

_LOG_2PI = math.log(2.0 * math.pi)


class VaDEModule(VAEModule):
    """VAE with a learnable diagonal Gaussian-mixture prior over ``z``.

    Parameters
    ----------
    input_shape, latent_dim, arch, hidden_dims, likelihood, beta
        As for :class:`~vaekit.models.VAEModule`.
    n_clusters : int
        Number of mixture components ``K``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        arch: str,
        hidden_dims: Sequence[int],
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        n_clusters: int = 10,
    ):
        super().__init__(input_shape, latent_dim, arch, hidden_dims, likelihood, beta)
        self.n_clusters = n_clusters
        # False during pre-training, which trains a deterministic autoencoder on the
        # posterior means (Jiang et al. 2017, sec. 3.3): no KL, so no posterior collapse.
        self.use_mixture = True
        self.prior_logits = nn.Parameter(torch.zeros(n_clusters))  # (K,) -> pi = softmax
        self.prior_means = nn.Parameter(torch.randn(n_clusters, latent_dim))  # (K, D)
        self.prior_logvars = nn.Parameter(torch.zeros(n_clusters, latent_dim))  # (K, D)

    @torch.no_grad()
    def set_prior(self, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor):
        """Initialise the mixture from a fitted diagonal GMM (weights (K,), means/vars (K, D))."""
        self.prior_logits.copy_(torch.log(weights.clamp_min(1e-8)))
        self.prior_means.copy_(means)
        self.prior_logvars.copy_(torch.log(variances.clamp_min(1e-8)))

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(c) + log p(z|c)`` for every component, ``(B, K)``."""
        log_pi = torch.log_softmax(self.prior_logits, dim=0)  # (K,)
        diff = z[:, None, :] - self.prior_means[None]  # (B, K, D)
        log_pz_c = -0.5 * (
            _LOG_2PI + self.prior_logvars[None] + diff.pow(2) * torch.exp(-self.prior_logvars)
        ).sum(-1)
        return log_pi[None] + log_pz_c

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """``p(c|z)``, ``(B, K)``; rows sum to one."""
        return torch.softmax(self.log_joint(z), dim=1)

    def kl(self, post: Posterior) -> torch.Tensor:
        """``KL(q(z,c|x) || p(z,c))`` per image ``(B,)``, analytic in ``z`` given ``c``.

        Jiang et al. 2017, eq. 12: with gamma = p(c|z) at a posterior sample,
        ``sum_c gamma_c E_q[-log N(z; mu_c, var_c)] - H[q(z|x)] + KL(gamma || pi)``.
        """
        if not self.use_mixture:
            return post.kl_standard_normal()
        gamma = self.responsibilities(post.rsample())  # (B, K)
        var = post.logvar.exp()  # (B, D)
        # E_q(z|x)[-log N(z; mu_c, var_c)] for each c: (B, K)
        cross = 0.5 * (
            _LOG_2PI
            + self.prior_logvars[None]
            + (var[:, None, :] + (post.mean[:, None, :] - self.prior_means[None]).pow(2))
            * torch.exp(-self.prior_logvars)[None]
        ).sum(-1)
        entropy = 0.5 * (1.0 + _LOG_2PI + post.logvar).sum(-1)  # H[q(z|x)], (B,)
        log_pi = torch.log_softmax(self.prior_logits, dim=0)
        cat_kl = (gamma * (torch.log(gamma.clamp_min(1e-10)) - log_pi[None])).sum(-1)
        return (gamma * cross).sum(-1) - entropy + cat_kl

    def loss(self, x: torch.Tensor, kl_weight: float = 1.0) -> LossOutput:
        """Negative ELBO of VaDE, nats per image averaged over the batch.

        Before the mixture is initialised (``use_mixture=False``) this is the autoencoder's
        reconstruction loss from the posterior means, with ``kl`` reported as zero.
        """
        if self.use_mixture:  # VAEModule.loss with this class's mixture KL
            return super().loss(x, kl_weight)
        post = self.encode(x)
        rec = negative_log_likelihood(
            self.likelihood, self.decode(post.mean), x, getattr(self, "log_scale", None)
        ).mean()
        return LossOutput(total=rec, reconstruction=rec, kl=torch.zeros_like(rec))

    def prior_sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        cluster: int | None = None,
    ) -> torch.Tensor:
        """Draw ``(n, latent_dim)`` latents from the mixture, or from one component."""
        dev = self.prior_means.device
        if cluster is None:
            pi = torch.softmax(self.prior_logits, 0)
            comps = torch.multinomial(pi, n, replacement=True, generator=generator)
        else:
            comps = torch.full((n,), int(cluster), dtype=torch.long, device=dev)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=dev)
        return self.prior_means[comps] + torch.exp(0.5 * self.prior_logvars[comps]) * eps
