"""The semi-supervised generative model M2 (Kingma, Rezende, Mohamed & Welling 2014).

Generative story: ``y ~ Cat(1/K)``, ``z ~ N(0, I)``, ``x | y, z ~ p(x | y, z)``.
Inference: a classifier ``q(y|x)`` and a Gaussian ``q(z|x, y)``, both on the features of one
shared encoder trunk (the classifier head sits on the encoder features).

Per image, in nats (Kingma et al. 2014, eqs. 6-9):

- labeled ``(x, y)``: ``L(x, y) = -log p(x|y,z) + beta * KL(q(z|x,y) || p(z)) - log p(y)``
  plus ``alpha_eff * (-log q(y|x))``, the explicit classification loss of eq. 9;
- unlabeled ``x``: ``U(x) = sum_y q(y|x) L(x, y) - H[q(y|x)]``, the sum over ``y`` done
  exactly by decoding every image once per class.

Optionally (``consistency > 0``) the classifier is also asked to give the same answer on an
augmented copy of each image (randomly shifted, optionally with a square cut out): either
its own soft prediction on the original (a consistency regulariser in the spirit of Laine &
Aila 2017 and Sajjadi et al. 2016) or, with ``pseudo_threshold > 0``, its hard prediction
where that is at least that confident and the true label on labeled images (pseudo-labelling
as in FixMatch, Sohn et al. 2020). Augmentation only applies to image input ``(C, H, W)``.

M2's bound rewards an uncertain ``q(y|x)`` on unlabeled images. Two optional terms push
back: the mean entropy of ``q(y|x)`` (``entropy``, Grandvalet & Bengio 2005) and the
divergence of a batch's mean ``q(y|x)`` from uniform (``balance``), which stops the first
from emptying classes; together they maximise the mutual information between image and
class (Krause et al. 2010).

Optionally (``propagation > 0``) unlabeled images also carry graph targets: one-hot classes
scaled by their certainty, that the estimator obtains by spreading the known
labels over a nearest-neighbour graph of a plain VAE's latents (M1 of Kingma et al. 2014,
label propagation as in Iscen et al. 2019). The classifier is trained towards them with a
weighted cross-entropy; labeled images keep their own share of every batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.data.dataset import UNLABELED
from vaekit.models.base import (
    GenerativeModel,
    LossOutput,
    Posterior,
    check_likelihood,
    negative_log_likelihood,
)
from vaekit.nn import build_decoder, build_encoder
from vaekit.nn.augment import cutout, random_shift

#: Label of an unlabeled image that no term sharpening ``q(y|x)`` may touch (entropy, balance,
#: pseudo-labels): the estimator's images held out to fit the temperature, whose predictions
#: must stay as the rest of the data would see them.
HELD_OUT = -2


class M2Module(GenerativeModel):
    """M2: classifier ``q(y|x)``, encoder ``q(z|x,y)``, decoder ``p(x|y,z)``.

    Parameters
    ----------
    input_shape : sequence of int
        ``(C, H, W)`` for images or ``(F,)`` for flat features.
    latent_dim : int
        Size of ``z``.
    n_classes : int
        Number of classes ``K``.
    arch : {"mlp", "conv"}
        Family of the encoder trunk.
    hidden_dims : sequence of int
        Trunk layer widths (MLP) or channels (conv), input side first.
    decoder_arch : {"mlp", "conv"}
        Family of the decoder. Unlabeled images are decoded once per class, so the decoder
        dominates the cost; an MLP keeps it affordable on a CPU.
    decoder_dims : sequence of int
        Decoder widths or channels, input side first (mirrored by the decoder).
    feature_dim : int
        Width of the trunk's output features, shared by both heads.
    likelihood : {"bernoulli", "gaussian"}
        Pixel likelihood ``p(x|y,z)``.
    beta : float
        Weight of the ``z`` KL term; 1 gives the ELBO.
    alpha : float
        Weight of the classification loss per input value: the labeled cross-entropy is
        multiplied by ``alpha * prod(input_shape)``, so its balance against the per-image
        ELBO (which grows with the number of pixels) does not depend on the image size.
    consistency : float
        Weight of the consistency loss on augmented images, relative to the classification
        loss.
    max_shift : int
        Largest shift in pixels of the consistency augmentation.
    cutout : float
        Side of the square cut out of the augmented images, as a share of the shorter image
        side (0: none).
    pseudo_threshold : float
        0 for soft consistency (KL to the prediction on the original image); above 0, the
        augmented images are trained towards hard labels: the true label on labeled images,
        the predicted class on unlabeled ones whose prediction is at least this confident.
    dropout : float
        Dropout on the features before the classifier head.
    entropy : float
        Weight, relative to the classification loss, of the mean entropy of ``q(y|x)`` on
        unlabeled images (entropy minimisation, Grandvalet & Bengio 2005). M2's bound
        alone rewards uncertain ``q(y|x)`` on unlabeled images; this term pushes back.
    balance : float
        Weight, relative to the classification loss, of the divergence of the mean
        ``q(y|x)`` over a batch's unlabeled images from uniform.
    propagation : float
        Weight, relative to the classification loss, of the cross-entropy of ``q(y|x)``
        against the graph targets passed to :meth:`loss` (unlabeled images only).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        n_classes: int,
        arch: str,
        hidden_dims: Sequence[int],
        decoder_arch: str,
        decoder_dims: Sequence[int],
        feature_dim: int,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        alpha: float = 1.0,
        consistency: float = 0.0,
        max_shift: int = 2,
        dropout: float = 0.0,
        entropy: float = 0.0,
        cutout: float = 0.0,
        pseudo_threshold: float = 0.0,
        balance: float = 0.0,
        propagation: float = 0.0,
    ):
        super().__init__()
        check_likelihood(likelihood)
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.n_classes = n_classes
        self.likelihood = likelihood
        self.beta = beta
        self.class_weight = alpha * math.prod(self.input_shape)
        self.consistency = consistency
        self.entropy = entropy
        self.balance = balance
        self.propagation = propagation
        image = len(self.input_shape) == 3
        self.max_shift = max_shift if image else 0
        self.cutout_size = round(cutout * min(self.input_shape[1:])) if image else 0
        self.pseudo_threshold = pseudo_threshold
        # (B, *input_shape) -> (B, feature_dim), shared by q(y|x) and q(z|x,y).
        self.trunk = nn.Sequential(
            build_encoder(arch, self.input_shape, hidden_dims, feature_dim), nn.ReLU()
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, n_classes))
        # [features, one-hot y] (B, feature_dim + K) -> (B, 2 * latent_dim)
        self.latent_head = nn.Linear(feature_dim + n_classes, 2 * latent_dim)
        # [z, one-hot y] (B, latent_dim + K) -> (B, *input_shape)
        self.decoder = build_decoder(
            decoder_arch, latent_dim + n_classes, decoder_dims, self.input_shape
        )
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(()))

    # -- the model contract -----------------------------------------------------------------
    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``q(y|x)``, ``(B, K)``."""
        return self.classifier(self.trunk(x))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        """``q(z|x, y)``; ``y`` is ``(B, K)`` one-hot or probabilities (default ``q(y|x)``)."""
        h = self.trunk(x)
        if y is None:
            y = torch.softmax(self.classifier(h), dim=1)
        return self._posterior(h, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Return decoder logits ``(B, *input_shape)`` for ``z`` and ``y`` (default uniform)."""
        if y is None:
            y = torch.full((len(z), self.n_classes), 1.0 / self.n_classes, device=z.device)
        return self.decoder(torch.cat([z, y], dim=1))

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO of unlabeled images ``(B,)`` in nats: ``-U(x)`` with one sample per class."""
        h = self.trunk(x)
        return -self._unlabeled_bound(x, h, self.classifier(h), kl_weight=1.0)[0]

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None = None,
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """M2's objective for a batch mixing labeled (``y >= 0``) and unlabeled (``-1``) images.

        Images labeled ``HELD_OUT`` (-2) count as unlabeled in the bound and the consistency
        loss but stay out of the entropy, balance, pseudo-label and propagation terms.
        ``targets`` ``(B, K)``, when given, are the graph targets of the images (rows of
        zeros for none): weighted class distributions whose cross-entropy with ``q(y|x)``
        is added for unlabeled images with weight ``propagation``.

        ``total`` is the sum of ``L(x, y)`` over labeled and ``U(x)`` over unlabeled images
        divided by the batch size (nats per image), plus the weighted mean cross-entropy of
        the labeled images and the weighted consistency loss.
        """
        h = self.trunk(x)
        logits = self.classifier(h)
        lab = y >= 0
        n = len(x)
        zero = x.new_zeros(())
        bound, rec, kl = zero, zero, zero
        ce = zero
        if lab.any():
            onehot = F.one_hot(y[lab], self.n_classes).to(x.dtype)
            b_l, rec_l, kl_l = self._labeled_bound(x[lab], h[lab], onehot, self.beta * kl_weight)
            bound, rec, kl = bound + b_l.sum(), rec + rec_l.sum(), kl + kl_l.sum()
            ce = F.cross_entropy(logits[lab], y[lab])
        if not lab.all():
            unl = ~lab
            b_u, rec_u, kl_u = self._unlabeled_bound(
                x[unl], h[unl], logits[unl], self.beta * kl_weight
            )
            bound, rec, kl = bound + b_u.sum(), rec + rec_u.sum(), kl + kl_u.sum()
        total = bound / n + self.class_weight * ce
        extras = {"classification": ce.detach()}
        free = y == UNLABELED  # held-out rows (HELD_OUT) stay out of the terms below
        use_targets = self.propagation > 0 and targets is not None
        needs_log_q = self.entropy > 0 or self.balance > 0 or use_targets
        log_q = F.log_softmax(logits[free], dim=1) if needs_log_q and bool(free.any()) else None
        # A batch without unlabeled rows still reports every enabled term (as 0): the
        # training loop sums the same extras over all the batches of an epoch.
        if self.entropy > 0:
            ent = zero if log_q is None else -(log_q.exp() * log_q).sum(1).mean()
            total = total + self.entropy * self.class_weight * ent
            extras["entropy"] = ent.detach()
        if self.balance > 0:
            imbalance = zero
            if log_q is not None:
                log_mean = torch.logsumexp(log_q, 0) - math.log(len(log_q))  # log mean q(y|x)
                imbalance = (log_mean.exp() * log_mean).sum() + math.log(self.n_classes)
            total = total + self.balance * self.class_weight * imbalance
            extras["imbalance"] = imbalance.detach()
        if use_targets:
            graph_ce = zero if log_q is None else -(targets[free] * log_q).sum(1).mean()
            total = total + self.propagation * self.class_weight * graph_ce
            extras["propagation"] = graph_ce.detach()
        if self.consistency > 0 and self.training and (self.max_shift or self.cutout_size):
            cons = self._consistency(x, y, logits.detach())
            total = total + self.consistency * self.class_weight * cons
            extras["consistency"] = cons.detach()
        return LossOutput(total=total, reconstruction=rec / n, kl=kl / n, extras=extras)

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``(n, latent_dim)`` latents from ``N(0, I)``."""
        dev = self.latent_head.weight.device
        return torch.randn(n, self.latent_dim, generator=generator, device=dev)

    # -- pieces -------------------------------------------------------------------------------
    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Return the consistency augmentation of ``x``: a random shift, then a cut-out square."""
        return cutout(random_shift(x, self.max_shift), self.cutout_size)

    def _consistency(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``q(y|augment(x))`` against the targets described in the class doc."""
        log_aug = F.log_softmax(self.class_logits(self.augment(x)), dim=1)
        probs = torch.softmax(logits, dim=1)
        if self.pseudo_threshold <= 0:
            return F.kl_div(log_aug, probs, reduction="batchmean")
        confidence, guess = probs.max(1)
        lab = y >= 0
        target = torch.where(lab, y, guess)
        keep = (lab | ((y == UNLABELED) & (confidence >= self.pseudo_threshold))).to(x.dtype)
        return (F.nll_loss(log_aug, target, reduction="none") * keep).mean()

    def _posterior(self, h: torch.Tensor, y: torch.Tensor) -> Posterior:
        mean, logvar = self.latent_head(torch.cat([h, y], dim=1)).chunk(2, dim=1)
        return Posterior(mean, logvar)

    def _labeled_bound(
        self, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor, kl_weight: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``L(x, y)`` per image ``(B,)`` with its reconstruction and KL parts.

        ``-log p(y) = log K`` (uniform class prior) keeps it a bound on ``-log p(x, y)``.
        ``kl_weight`` is the KL's whole weight: ``beta`` times the warm-up in training, 1
        for the ELBO.
        """
        post = self._posterior(h, y)
        out = self.decode(post.rsample(), y)
        rec = negative_log_likelihood(self.likelihood, out, x, getattr(self, "log_scale", None))
        kl = post.kl_standard_normal()
        bound = rec + kl_weight * kl + math.log(self.n_classes)
        return bound, rec, kl

    def _unlabeled_bound(
        self, x: torch.Tensor, h: torch.Tensor, logits: torch.Tensor, kl_weight: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``U(x) = sum_y q(y|x) L(x, y) - H[q(y|x)]`` per image ``(B,)``, summed exactly."""
        b, k = len(x), self.n_classes
        log_q = F.log_softmax(logits, dim=1)  # (B, K)
        q = log_q.exp()
        # Every image paired with every class: (B * K, ...), image-major.
        ys = torch.eye(k, dtype=x.dtype, device=x.device).repeat(b, 1)
        xs = x.repeat_interleave(k, dim=0)
        hs = h.repeat_interleave(k, dim=0)
        bound, rec, kl = (t.view(b, k) for t in self._labeled_bound(xs, hs, ys, kl_weight))
        neg_entropy = (q * log_q).sum(1)
        return (q * bound).sum(1) + neg_entropy, (q * rec).sum(1), (q * kl).sum(1)
