import math

import pytest
import torch

from vaekit.models import LossOutput, Posterior, VAEModule
from vaekit.models.base import negative_log_likelihood


def test_kl_of_standard_normal_posterior_is_zero():
    post = Posterior(torch.zeros(3, 5), torch.zeros(3, 5))
    assert torch.allclose(post.kl_standard_normal(), torch.zeros(3))


def test_kl_matches_torch_distributions():
    mean, logvar = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(Posterior(mean, logvar).kl_standard_normal(), expected, atol=1e-5)


def test_gaussian_nll_matches_torch_distributions():
    out, x = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    log_scale = torch.tensor(-1.3)
    expected = -torch.distributions.Normal(torch.sigmoid(out), log_scale.exp()).log_prob(x)
    got = negative_log_likelihood("gaussian", out, x, log_scale)
    assert torch.allclose(got, expected.flatten(1).sum(1), atol=1e-4)


def test_bernoulli_nll_is_summed_bce():
    out, x = torch.randn(2, 1, 3, 3), torch.rand(2, 1, 3, 3)
    p = torch.sigmoid(out)
    expected = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(negative_log_likelihood("bernoulli", out, x, None), expected, atol=1e-4)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_vae_loss_contract(arch, likelihood):
    torch.manual_seed(0)
    m = VAEModule(
        (1, 8, 8), latent_dim=3, arch=arch, hidden_dims=(8, 16), likelihood=likelihood, beta=2.0
    )
    x = torch.rand(5, 1, 8, 8)
    out = m.loss(x, kl_weight=0.5)
    assert isinstance(out, LossOutput)
    assert out.total.ndim == 0 and math.isfinite(out.total.item())
    # total = reconstruction + beta * kl_weight * kl
    assert torch.allclose(out.total, out.reconstruction + 2.0 * 0.5 * out.kl)
    out.total.backward()
    assert all(p.grad is not None for p in m.parameters())
    assert m.encode(x).mean.shape == (5, 3)
    assert m.decode(torch.zeros(2, 3)).shape == (2, 1, 8, 8)
    assert m.elbo(x).shape == (5,)
