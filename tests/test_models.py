import math

import pytest
import torch

from vaekit.models import LossOutput, M2Module, Posterior, VAEModule
from vaekit.models.base import negative_log_likelihood
from vaekit.models.m2 import HELD_OUT
from vaekit.nn.augment import cutout, translations


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


def test_input_dropout_corrupts_what_the_encoder_sees_in_training_only():
    # The denoising criterion: the encoder gets x with a share p of pixels zeroed and the
    # rest scaled by 1 / (1 - p); the decoder's target stays the clean x.
    torch.manual_seed(0)
    m = VAEModule((1, 16, 16), latent_dim=3, arch="mlp", hidden_dims=(8,), input_dropout=0.25)
    seen, targets = [], []
    m.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    original = negative_log_likelihood

    def spy(likelihood, out, x, log_scale):
        targets.append(x)
        return original(likelihood, out, x, log_scale)

    x = torch.rand(64, 1, 16, 16) * 0.5 + 0.25  # no pixel is 0 before the dropout
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("vaekit.models.vae.negative_log_likelihood", spy)
        m.train()
        m.loss(x)
        m.eval()
        m.loss(x)
    dropped = seen[0] == 0
    assert 0.2 < dropped.float().mean().item() < 0.3
    torch.testing.assert_close(seen[0][~dropped], (x / 0.75)[~dropped])
    torch.testing.assert_close(seen[1], x)  # evaluation: the image itself
    assert all(t is x for t in targets)


def test_cutout_zeroes_one_clipped_square_per_image():
    torch.manual_seed(0)
    x = torch.ones(64, 3, 10, 10)
    out = cutout(x, 4)
    assert out.shape == x.shape and torch.equal(cutout(x, 0), x)
    zero = out == 0
    assert torch.equal(zero[:, :1].expand_as(zero), zero)  # same square in every channel
    per_image = zero[:, 0].flatten(1).sum(1)
    assert per_image.max() == 16 and 4 <= per_image.min() < 16  # some squares clipped
    for img in zero[:, 0]:
        rows, cols = img.any(1).nonzero(), img.any(0).nonzero()
        assert img.sum() == len(rows) * len(cols)  # a rectangle, not scattered pixels
        assert rows.max() - rows.min() == len(rows) - 1 and cols.max() - cols.min() == len(cols) - 1


def _m2(**kw):
    return M2Module(
        (1, 8, 8), latent_dim=2, n_classes=3, arch="mlp", hidden_dims=(8,),
        decoder_arch="mlp", decoder_dims=(8,), feature_dim=8, consistency=1.0, **kw,
    )  # fmt: skip


def test_m2_elbo_weighs_the_kl_by_one_whatever_beta_trains_with():
    # beta weighs the KL in the training loss only; the ELBO reported by score_samples and
    # evaluate is the bound itself, as VAEModule's and VaDEModule's are.
    torch.manual_seed(0)
    plain, heavy = _m2(), _m2(beta=4.0)
    heavy.load_state_dict(plain.state_dict())
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, -1, -1, -1])
    elbos, losses = [], []
    for model in (plain, heavy):
        model.eval()
        torch.manual_seed(1)
        elbos.append(model.elbo(x))
        torch.manual_seed(1)
        losses.append(model.loss(x, y).total)
    torch.testing.assert_close(elbos[0], elbos[1])
    assert losses[1] > losses[0]  # the training loss does weigh the KL by beta


def test_m2_pseudo_labels_keep_true_labels_and_confident_guesses_only():
    torch.manual_seed(0)
    model = _m2(pseudo_threshold=0.9, max_shift=1, cutout=0.25)
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([2, -1, -1, -1])
    # Image 0 labeled (guess disagrees), 1 confident guess, 2 and 3 below the threshold.
    logits = torch.tensor([[9.0, 0, 0], [0, 9.0, 0], [1.0, 0, 0], [0, 0, 0]])
    torch.manual_seed(1)
    loss = model._consistency(x, y, logits)
    torch.manual_seed(1)
    log_aug = torch.log_softmax(model.class_logits(model.augment(x)), 1)
    expected = -(log_aug[0, 2] + log_aug[1, 1]) / 4
    torch.testing.assert_close(loss, expected)
    soft = _m2(max_shift=1)
    torch.manual_seed(1)
    kl = soft._consistency(x, y, logits)
    torch.manual_seed(1)
    log_aug = torch.log_softmax(soft.class_logits(soft.augment(x)), 1)
    p = torch.softmax(logits, 1)
    torch.testing.assert_close(kl, (p * (p.log() - log_aug)).sum() / 4)


def test_m2_loss_with_pseudo_labels_trains_the_classifier_on_augmented_images():
    torch.manual_seed(0)
    model = _m2(pseudo_threshold=0.5, cutout=0.5)
    model.train()
    x = torch.rand(6, 1, 8, 8)
    out = model.loss(x, torch.tensor([0, 1, 2, -1, -1, -1]))
    assert torch.isfinite(out.total) and out.extras["consistency"] > 0
    out.total.backward()
    assert model.classifier[1].weight.grad.abs().sum() > 0


def test_m2_balance_is_the_divergence_of_the_mean_prediction_from_uniform():
    model = _m2(balance=1.0)
    model.consistency = 0.0
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, -1, -1, -1])
    with torch.no_grad():
        for p in model.classifier.parameters():
            p.zero_()
        assert model.loss(x, y).extras["imbalance"].abs() < 1e-6  # uniform q(y|x)
        model.classifier[1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
        q = torch.softmax(model.classifier[1].bias, 0)
        expected = (q * (q * 3).log()).sum()
        torch.testing.assert_close(model.loss(x, y).extras["imbalance"], expected)


def test_m2_held_out_images_stay_out_of_the_sharpening_terms():
    torch.manual_seed(0)
    model = _m2(entropy=1.0, balance=1.0)
    model.consistency = 0.0
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, HELD_OUT, HELD_OUT, -1])
    out = model.loss(x, y)
    with torch.no_grad():
        q = torch.softmax(model.class_logits(x[3:]), 1)[0]
    torch.testing.assert_close(out.extras["entropy"], -(q * q.log()).sum())
    torch.testing.assert_close(out.extras["imbalance"], (q * (q * 3).log()).sum())
    only_held_out = model.loss(x, torch.tensor([0, HELD_OUT, HELD_OUT, HELD_OUT]))
    # The terms are still reported (the loop sums the same extras over every batch), as 0.
    assert only_held_out.extras.keys() == out.extras.keys()
    assert only_held_out.extras["entropy"] == 0 and only_held_out.extras["imbalance"] == 0
    labeled_only = model.loss(x, torch.tensor([0, 1, 2, 0]))
    assert labeled_only.extras.keys() == out.extras.keys()


def test_m2_propagation_is_the_weighted_cross_entropy_on_unlabeled_images_only():
    torch.manual_seed(0)
    model = _m2(propagation=1.0)  # entropy and balance off: the term computes its own log q
    model.consistency = 0.0
    model.eval()  # no dropout: the logits below are the loss's
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, HELD_OUT, -1, -1])
    targets = torch.tensor([[1.0, 0, 0], [0, 0.9, 0], [0, 0.5, 0], [0, 0, 0]])
    out = model.loss(x, y, targets)
    with torch.no_grad():
        log_q = torch.log_softmax(model.class_logits(x[2:]), 1)
    torch.testing.assert_close(out.extras["propagation"], -(0.5 * log_q[0, 1]) / 2)
    assert "propagation" not in model.loss(x, y).extras  # no targets, no term


def test_translations_yield_the_three_by_three_grid_with_replicated_edges():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    views = list(translations(x, 1))
    assert len(views) == 9 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[4], x)  # the unshifted batch in the middle
    # views[0] has offset (-1, -1): pixel (i, j) is x[i - 1, j - 1], edges replicated
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    assert torch.equal(views[0], padded[..., :5, :6])
    assert torch.equal(views[8][..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(views[8][..., -1, :-1], x[..., -1, 1:])  # bottom row repeated
    assert [v for v in translations(x, 0)] == [x]
