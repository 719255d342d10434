"""``VAEClassifier``: image classification with all labels or only a few (ClassifierMixin).

One model serves both cases: M2 (Kingma et al. 2014, :class:`vaekit.models.M2Module`), a
classifier ``q(y|x)`` trained jointly with a class-conditional VAE. With every image
labeled, that is a VAE and a classifier trained together (the ELBO regularises the shared
encoder); with unlabeled images (``y == -1``, scikit-learn's convention) the unlabeled ELBO
sums over the classes weighted by ``q(y|x)``, so unlabeled images shape the classifier too.

With unlabeled images, the known labels can also be spread first (``propagation``): a plain
VAE (M1) is trained on all the images, the labels are spread over the nearest-neighbour
graph of its latent means (:func:`vaekit.graph.label_spreading`, Zhou et al. 2004), and
every unlabeled image's most probable class becomes a target of the classifier, weighted
by the certainty of the spread (``1 - entropy / log K``, Iscen et al. 2019).

Probabilities are calibrated by temperature scaling (Guo et al. 2017): a share of the
*labeled training* images (``validation_fraction``) is held out of the classification loss
(it is still used as unlabeled data, but no term that sharpens ``q(y|x)`` acts on it) and
one temperature is fitted to it by likelihood.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from vaekit.errors import ConfigError, DataError
from vaekit.estimators.base import (
    BaseVAEEstimator,
    check_layer_sizes,
    check_n_samples,
    keeps_state_on_failure,
    to_tensor,
)
from vaekit.models import M2Module
from vaekit.models.base import mean_from_output
from vaekit.models.m2 import HELD_OUT, UNLABELED
from vaekit.training.loop import seed_from

#: Search range of the log-temperature of temperature scaling.
LOG_TEMPERATURE_BOUND = 4.0
#: A fitted log-temperature this close to the bound counts as having run to it.
TEMPERATURE_BOUND_TOLERANCE = 0.01
#: Held-out images below which a temperature all of them agree with (all right, or at the
#: bound) is not trusted: three images of a 3-class folder gave T = 54.6.
FEW_CALIBRATION_IMAGES = 50
#: Fewest held-out images per class for which a temperature is fitted (fewer: none).
MIN_CALIBRATION_PER_CLASS = 1
#: Default decoder widths, latent side last (the decoder mirrors them): 256 -> 512 -> image.
DEFAULT_DECODER_DIMS = (512, 256)
#: ``max_epochs="auto"``: epochs with every image labeled, and the range with unlabeled ones.
AUTO_EPOCHS_SUPERVISED = 30
AUTO_EPOCHS_RANGE = (3, 30)
#: ``max_epochs="auto"`` with unlabeled images: about this many training rows in all (labeled
#: repeats included). Fashion-MNIST's 3 epochs (~240,000 rows) beat 2, 6, 10 and 30 with 100
#: and 1,000 labels on a held-out part of the training split (BENCHMARKS.md).
AUTO_ROWS = 250_000


class VAEClassifier(ClassifierMixin, BaseVAEEstimator):
    """Classify images with a semi-supervised VAE (M2); ``y == -1`` marks unlabeled images.

    Parameters
    ----------
    alpha : float, default=1.0
        Weight of the classification loss per input value (the cross-entropy of the labeled
        images is multiplied by ``alpha * n_pixels``, Kingma et al. 2014's ``alpha``
        made independent of the image size).
    consistency : float, default=1.0
        Weight, relative to the classification loss, of asking ``q(y|x)`` to agree on a
        randomly shifted copy of each image (images only; 0 turns it off).
    max_shift : int, default=2
        Largest shift in pixels of that copy.
    cutout : float, default=0.0
        Side of a square cut out of that copy (set to 0), as a share of the image side.
    pseudo_threshold : float, default=0.0
        0: the copy is trained towards the soft prediction on the original image. Above 0:
        towards hard labels instead, the true label for labeled images and the predicted
        class for unlabeled images predicted at least this confidently (FixMatch-style
        pseudo-labelling).
    labeled_fraction : float, default=0.25
        With unlabeled images present, labeled images are repeated so that they make up
        about this share of every batch.
    feature_dim : int, default=256
        Width of the encoder features shared by the classifier and ``q(z|x,y)``.
    decoder_arch : {"mlp", "conv"}, default="mlp"
        Decoder family; unlabeled images are decoded once per class, so an MLP decoder keeps
        training affordable on a CPU.
    decoder_dims : tuple of int, optional
        Decoder widths (MLP) or channels (conv), image side first; default (512, 256).
    dropout : float, default=0.2
        Dropout on the features before the classifier head.
    entropy : float, default=1.0
        Weight, relative to the classification loss, of the entropy of ``q(y|x)`` on
        unlabeled images (entropy minimisation).
    balance : float, default=1.0
        Weight, relative to the classification loss, of the divergence of the mean ``q(y|x)``
        over a batch's unlabeled images from uniform (keeps every class in use).
    propagation : float, default=1.0
        Weight, relative to the classification loss, of the targets obtained by spreading
        the labels over a VAE's latent graph (module docstring); 0 turns the step off. Used
        only when some images are unlabeled.
    propagation_epochs : int, default=20
        Most epochs of the plain VAE whose latents carry that graph.
    calibrate : bool, default=True
        Fit a temperature on the held-out labeled images. Needs ``validation_fraction > 0``
        and at least as many held-out images as classes; with fewer, every labeled image
        is used for training and the probabilities are left uncalibrated (temperature 1).
        They are also left so, with a warning, when fewer than 50 held-out images cannot say
        how confident to be: all predicted right, or the fitted temperature at its search
        limit (``exp(±4)``, confidently wrong).
    latent_dim : int, default=16
        Size of ``z`` (the style; the class is ``y``).
    arch : {"mlp", "conv"}, default="conv"
        Encoder family; "conv" needs image input and falls back to "mlp" for ``(N, F)``.
    validation_fraction : float, default=0.1
        Share of the labeled images held out for temperature scaling, and of all images
        for the early stopping of the ``propagation`` VAE.
    max_epochs : int or "auto", default="auto"
        Epochs to train; there is no early stopping (``patience`` is unused). "auto": 30
        when every image is labeled; when (nearly) none is, as many as show the model about
        250,000 training rows (labeled repeats included), between 3 and 30; in between,
        interpolated geometrically by the share of unlabeled images. That is 3 on
        Fashion-MNIST with 100 or 1,000 labels (where 3 epochs beat 2, 6, 10 and 30), 30
        on ``digits``; ``n_epochs_`` says how many were run.
    kl_warmup_epochs : int, default=0
        Epochs over which the KL weight rises from 0 to 1 (0: none; :class:`vaekit.VAE`
        uses 10).
    patience : int, default=10
        Accepted for the shared signature and ignored: there is no early stopping.
    hidden_dims, likelihood, beta, batch_size, learning_rate, lr_schedule
        As for :class:`vaekit.VAE`.
    device, random_state, verbose, precision, compile
        As for :class:`vaekit.VAE`.

    Attributes
    ----------
    classes_ : ndarray of shape (K,)
        The class labels seen in ``y`` (without -1).
    temperature_ : float
        Temperature dividing the classifier's logits (1 when not calibrated).
    n_labeled_ : int
        Labeled images used in the classification loss.
    n_calibration_ : int
        Labeled images held out for calibration.
    n_unlabeled_ : int
        Images with label -1.
    n_rows_per_epoch_ : int
        Rows the training loop sees per epoch (unlabeled and held-out images, plus the
        labeled images repeated to make up ``labeled_fraction`` of them).
    calibration_ece_ : float or None
        Expected calibration error on the held-out images after calibration.
    module_ : M2Module
        The trained ``torch`` model.

    Examples
    --------
    >>> import numpy as np
    >>> from vaekit import VAEClassifier, load_dataset
    >>> ds = load_dataset("digits")
    >>> y = ds.y_train.copy()
    >>> y[100:] = -1                       # keep 100 labels
    >>> clf = VAEClassifier(max_epochs=2, random_state=0).fit(ds.x_train, y)
    >>> clf.predict_proba(ds.x_test[:2]).shape
    (2, 10)
    """

    _estimator_name = "VAEClassifier"
    _auto_max_epochs = True
    _params_added: ClassVar[dict[str, Any]] = {
        "cutout": 0.0,
        "pseudo_threshold": 0.0,
        "balance": 0.0,
        "propagation": 0.0,
        "propagation_epochs": 20,
    }

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        consistency: float = 1.0,
        max_shift: int = 2,
        cutout: float = 0.0,
        pseudo_threshold: float = 0.0,
        labeled_fraction: float = 0.25,
        feature_dim: int = 256,
        decoder_arch: str = "mlp",
        decoder_dims: tuple[int, ...] | None = None,
        dropout: float = 0.2,
        entropy: float = 1.0,
        balance: float = 1.0,
        propagation: float = 1.0,
        propagation_epochs: int = 20,
        calibrate: bool = True,
        latent_dim: int = 16,
        arch: str = "conv",
        hidden_dims: tuple[int, ...] | None = None,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        batch_size: int = 128,
        max_epochs: int | str = "auto",
        learning_rate: float = 1e-3,
        lr_schedule: str = "cosine",
        kl_warmup_epochs: int = 0,
        validation_fraction: float = 0.1,
        patience: int = 10,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        precision: str = "auto",
        compile: str = "auto",
    ):
        self.alpha = alpha
        self.consistency = consistency
        self.max_shift = max_shift
        self.cutout = cutout
        self.pseudo_threshold = pseudo_threshold
        self.labeled_fraction = labeled_fraction
        self.feature_dim = feature_dim
        self.decoder_arch = decoder_arch
        self.decoder_dims = decoder_dims
        self.dropout = dropout
        self.entropy = entropy
        self.balance = balance
        self.propagation = propagation
        self.propagation_epochs = propagation_epochs
        self.calibrate = calibrate
        self.latent_dim = latent_dim
        self.arch = arch
        self.hidden_dims = hidden_dims
        self.likelihood = likelihood
        self.beta = beta
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.kl_warmup_epochs = kl_warmup_epochs
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.precision = precision
        self.compile = compile

    # -- parameters ------------------------------------------------------------------------
    def _check_params(self, n_samples: int | None = None) -> None:
        """Raise ``ConfigError`` for a bad parameter.

        ``n_samples`` is not used: the split that must not come out empty is of the labeled
        images, checked in ``fit``.
        """
        super()._check_params()
        for name in ("alpha",):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not v > 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        for name in ("consistency", "dropout", "entropy", "balance", "propagation"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not 0 <= v or (name == "dropout" and v >= 1):
                raise ConfigError(f"{name} must be a number >= 0 (dropout < 1), got {v!r}")
        for name in ("labeled_fraction", "validation_fraction", "cutout", "pseudo_threshold"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not 0 <= v < 1:
                raise ConfigError(f"{name} must be a number in [0, 1), got {v!r}")
        for name, low in (("max_shift", 0), ("feature_dim", 1), ("propagation_epochs", 1)):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.decoder_arch not in ("mlp", "conv"):
            raise ConfigError(f"decoder_arch must be 'mlp' or 'conv', got {self.decoder_arch!r}")
        if not isinstance(self.calibrate, bool | np.bool_):  # "no" would be taken as True
            raise ConfigError(f"calibrate must be True or False, got {self.calibrate!r}")
        check_layer_sizes("decoder_dims", self.decoder_dims)

    def _build_module(self, input_shape: tuple[int, ...]) -> M2Module:
        image = len(input_shape) == 3
        dec_arch = self.decoder_arch if image else "mlp"
        if self.decoder_dims is not None:
            dec_dims = tuple(int(d) for d in self.decoder_dims)
        elif dec_arch == "mlp":
            dec_dims = DEFAULT_DECODER_DIMS
        else:
            dec_dims = self._hidden_dims(input_shape)
        return M2Module(
            input_shape,
            latent_dim=int(self.latent_dim),
            n_classes=len(self.classes_),
            arch=self.arch if image else "mlp",
            hidden_dims=self._hidden_dims(input_shape),
            decoder_arch=dec_arch,
            decoder_dims=dec_dims,
            feature_dim=int(self.feature_dim),
            likelihood=self.likelihood,
            beta=float(self.beta),
            alpha=float(self.alpha),
            consistency=float(self.consistency),
            max_shift=int(self.max_shift),
            dropout=float(self.dropout),
            entropy=float(self.entropy),
            cutout=float(self.cutout),
            pseudo_threshold=float(self.pseudo_threshold),
            balance=float(self.balance),
            propagation=float(self.propagation),
        )

    # -- fitting ---------------------------------------------------------------------------
    @keeps_state_on_failure
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Self:
        """Train on images ``X`` with labels ``y``; ``y == -1`` marks unlabeled images.

        Parameters
        ----------
        X : array-like
            ``(N, H, W)`` or ``(N, C, H, W)`` images (uint8 0-255 or float 0-1), or
            ``(N, F)`` features in [0, 1].
        y : array-like of shape (N,)
            Class labels (ints or strings); -1 (or "-1" among strings) for an unlabeled image.
        run_dir : path, optional
            Checkpoint every epoch to this run directory so training can be resumed.
        resume : bool, default=False
            Continue from ``run_dir``'s last checkpoint.
        metadata : dict, optional
            JSON-serialisable facts saved in ``config.json`` (data spec, class names).

        Returns
        -------
        self : VAEClassifier
            The fitted estimator.
        """
        _check_lengths(X, y)  # a mismatch, not whatever the first labels happen to be
        y_idx = self._encode_labels(y)  # the labels next: their errors are sklearn's
        x = to_tensor(X)
        self._setup_fit(x, metadata)
        train_idx, cal_idx = self._calibration_split(y_idx)
        unlabeled = np.flatnonzero(y_idx == UNLABELED)
        pool = np.concatenate([unlabeled, cal_idx])  # held-out labels stay unused
        reps = 1
        if len(pool) and self.labeled_fraction > 0:
            # Repeat the labeled images so they are ~labeled_fraction of each batch.
            share = float(self.labeled_fraction)
            reps = max(1, math.ceil(share * len(pool) / ((1 - share) * len(train_idx))))
        order = np.concatenate([pool, np.tile(train_idx, reps)])
        y_train = y_idx.copy()
        # Unlabeled in training, but nothing may sharpen the predictions the temperature is
        # fitted on (with all labels, these are the only unlabeled rows of every batch).
        y_train[cal_idx] = HELD_OUT
        idx = torch.from_numpy(order)
        self.n_labeled_ = len(train_idx)
        self.n_calibration_ = len(cal_idx)
        self.n_unlabeled_ = len(unlabeled)
        self.n_rows_per_epoch_ = len(order)
        data = [x[idx], torch.from_numpy(y_train[order])]
        if self.propagation > 0 and len(unlabeled) and len(train_idx):
            targets = self._graph_targets(x, y_idx, train_idx)
            data.append(torch.from_numpy(targets)[idx])
        self._train_module(
            data,
            run_dir=run_dir,
            resume=resume,
            validation_fraction=0.0,
            max_epochs=self._epochs(len(order), len(unlabeled) / len(y_idx)),
        )
        self._fit_temperature(x, y_idx, cal_idx)
        self._save_finished_run(run_dir)
        return self

    def _data_id_extra(self) -> Any:
        """Return the classes by name: renamed labels give the same indices, not the model."""
        return [repr(c) for c in self.classes_]

    def _epochs(self, rows_per_epoch: int, unlabeled_share: float) -> int:
        """``max_epochs``, with "auto" resolved for ``rows_per_epoch`` training rows.

        The epochs for all labels and for (nearly) none, interpolated geometrically by the
        share of unlabeled images, so that one unlabeled image changes next to nothing.
        """
        if self.max_epochs != "auto":
            return int(self.max_epochs)
        low, high = AUTO_EPOCHS_RANGE
        semi = min(high, max(low, AUTO_ROWS // rows_per_epoch))
        u = float(unlabeled_share)
        return round(math.exp((1 - u) * math.log(AUTO_EPOCHS_SUPERVISED) + u * math.log(semi)))

    def _graph_targets(
        self, x: torch.Tensor, y_idx: np.ndarray, train_idx: np.ndarray
    ) -> np.ndarray:
        """Graph targets ``(N, K)`` float32: spread labels, one-hot times certainty.

        Trains a plain VAE (M1) on all the images, spreads the labels of ``train_idx`` over
        the nearest-neighbour graph of its latent means and returns, per image, the one-hot
        most probable class scaled by ``1 - entropy / log K`` of the spread distribution.
        """
        from vaekit.estimators.vae import VAE
        from vaekit.graph import knn_graph, label_spreading

        m1 = VAE(
            max_epochs=int(self.propagation_epochs),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            validation_fraction=self.validation_fraction,  # 0 lets tiny sets fit, as for M2
            device=self.device,
            random_state=self.seed_ % (2**32),
            verbose=self.verbose,
            precision=self.precision,
        ).fit(x)
        z = m1.transform(x)
        k = len(self.classes_)
        seeds = np.full(len(y_idx), UNLABELED, dtype=np.int64)
        seeds[train_idx] = y_idx[train_idx]
        proba = label_spreading(knn_graph(z), seeds, k)
        certainty = 1.0 + (proba * np.log(np.maximum(proba, 1e-300))).sum(1) / math.log(k)
        targets = np.zeros_like(proba, dtype=np.float32)
        targets[np.arange(len(proba)), proba.argmax(1)] = np.clip(certainty, 0.0, 1.0)
        return targets

    def _encode_labels(self, y: Any) -> np.ndarray:
        """Set ``classes_`` and return class indices ``(N,)`` int64 with -1 for unlabeled."""
        if y is None:
            raise DataError(
                "VAEClassifier requires y to be passed, but the target y is None "
                "(use -1 for unlabeled images)"
            )
        y = column_or_1d(y, warn=True)
        unl = _unlabeled(y)
        if y.dtype == object and any(v is None or v != v for v in y[~unl]):  # v != v: NaN
            raise DataError(
                "y holds None or NaN among its labels; mark unlabeled images with -1 "
                "(scikit-learn's convention for semi-supervised labels)"
            )
        check_classification_targets(y[~unl] if unl.any() else y)
        self.classes_ = np.unique(y[~unl])
        if len(self.classes_) < 2:
            raise DataError(
                f"y has labeled images of {len(self.classes_)} class(es); a classifier needs "
                "at least 2 classes (-1 marks unlabeled images)"
            )
        out = np.full(len(y), UNLABELED, dtype=np.int64)
        out[~unl] = np.searchsorted(self.classes_, y[~unl])
        return out

    def _calibration_split(self, y_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labeled indices for training and for temperature scaling (seeded, stratified)."""
        labeled = np.flatnonzero(y_idx != UNLABELED)
        n_cal = round(len(labeled) * float(self.validation_fraction)) if self.calibrate else 0
        k = len(self.classes_)
        if n_cal < MIN_CALIBRATION_PER_CLASS * k or len(labeled) - n_cal < 1:
            # Fewer held-out images than classes cannot fit a temperature (two images of
            # digits drove it to the search bound, every probability to ~1/K): keep them all.
            return labeled, labeled[:0]
        from sklearn.model_selection import train_test_split

        counts = np.bincount(y_idx[labeled])
        stratify = None
        if counts.min() >= 2 and min(n_cal, len(labeled) - n_cal) >= k:
            stratify = y_idx[labeled]
        train, cal = train_test_split(
            labeled, test_size=n_cal, random_state=self.seed_ % (2**32), stratify=stratify
        )
        return np.sort(train), np.sort(cal)

    def _fit_temperature(self, x: torch.Tensor, y_idx: np.ndarray, cal_idx: np.ndarray) -> None:
        """Temperature scaling (Guo et al. 2017): one ``T`` minimising held-out NLL."""
        self.temperature_ = 1.0
        self.calibration_ece_ = None
        if len(cal_idx) == 0:
            return
        from scipy.optimize import minimize_scalar
        from scipy.special import log_softmax

        from vaekit.metrics import expected_calibration_error

        logits = self._logits(x[torch.from_numpy(cal_idx)]).astype(np.float64)
        target = y_idx[cal_idx]

        def nll(log_t: float) -> float:
            logp = log_softmax(logits / math.exp(log_t), axis=1)
            return float(-logp[np.arange(len(target)), target].mean())

        res = minimize_scalar(
            nll, bounds=(-LOG_TEMPERATURE_BOUND, LOG_TEMPERATURE_BOUND), method="bounded"
        )
        all_right = bool((logits.argmax(axis=1) == target).all())
        at_bound = abs(res.x) > LOG_TEMPERATURE_BOUND - TEMPERATURE_BOUND_TOLERANCE
        if len(cal_idx) < FEW_CALIBRATION_IMAGES and (all_right or at_bound):
            # A few held-out images all right (the NLL falls as T -> 0) or driving the fit
            # to its bound (confidently wrong: T -> inf) say little about the rest: the
            # temperature found would make every probability ~1 or ~1/K. (Many images all
            # right: the model is that good, and the small T is its calibration.)
            import warnings

            why = "are all predicted right" if all_right else "drive T to its search limit"
            warnings.warn(
                f"the {len(cal_idx)} held-out labeled images {why} (T = {math.exp(res.x):.3g}), "
                "so the probabilities are left uncalibrated (T = 1); label more images or "
                "raise validation_fraction",
                stacklevel=4,  # fit's caller (through keeps_state_on_failure)
            )
            return
        self.temperature_ = float(math.exp(res.x))
        self.calibration_ece_ = expected_calibration_error(
            target, self._softmax(logits / self.temperature_)
        )

    # -- prediction ------------------------------------------------------------------------
    def _logits(self, x: torch.Tensor) -> np.ndarray:
        return self._batched(x, self.module_.class_logits)

    @staticmethod
    def _softmax(logits: np.ndarray) -> np.ndarray:
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def _scaled_logits(self, X: Any) -> np.ndarray:
        """Temperature-scaled logits ``(N, K)``, float64."""
        check_is_fitted(self, "temperature_")
        return self._logits(self._check_input(X)).astype(np.float64) / self.temperature_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities ``(N, K)`` in the order of ``classes_``."""
        return self._softmax(self._scaled_logits(X))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`, finite where the probabilities underflow."""
        from scipy.special import log_softmax

        return log_softmax(self._scaled_logits(X), axis=1)

    def decision_function(self, X: Any) -> np.ndarray:
        """Temperature-scaled logits ``(N, K)`` (for two classes: ``(N,)``, class 1 minus 0)."""
        scores = self._scaled_logits(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of each image, ``(N,)``, taken from ``classes_``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy of :meth:`predict` on the labeled images of ``(X, y)``.

        Images labeled -1 are left out, as :meth:`fit` leaves them unlabeled: a
        cross-validation fold of partly labeled data is scored on its labels only.
        """
        y = column_or_1d(y, warn=True)
        keep = ~_unlabeled(y)
        if not keep.any():
            raise DataError("y marks every image unlabeled (-1); score needs labeled images")
        pred = self.predict(X)
        if len(pred) != len(y):
            raise DataError(f"X has {len(pred)} samples but y has {len(y)}; pass one label each")
        weight = None
        if sample_weight is not None:
            weight = np.asarray(sample_weight)
            if weight.shape != y.shape:
                raise DataError(f"sample_weight has shape {weight.shape}; pass one per label")
            weight = weight[keep]
        return float(accuracy_score(y[keep], pred[keep], sample_weight=weight))

    def transform(self, X: Any) -> np.ndarray:
        """Means of ``q(z|x, y)`` with ``y`` the predicted probabilities, ``(N, latent_dim)``."""
        x = self._check_input(X)
        return self._batched(x, lambda xb: self.module_.encode(xb).mean)

    def fit_transform(self, X: Any, y: Any, **fit_params: Any) -> np.ndarray:
        """Fit, then return :meth:`transform` of ``X``."""
        return self.fit(X, y, **fit_params).transform(X)

    def sample(
        self, n_samples: int = 1, *, label: Any = None, random_state: Any = None
    ) -> np.ndarray:
        """Generate images (pixel means) of one class or of random classes.

        Parameters
        ----------
        n_samples : int, default=1
            Images to generate.
        label : a member of ``classes_`` or None, default=None
            The class to draw; None draws each image's class uniformly.
        random_state : int, RandomState, Generator or None, default=None
            Seed of the draw (None: the estimator's fitted seed).

        Returns
        -------
        ndarray of shape (n_samples, *input_shape_)
            Float32 pixel means in [0, 1].
        """
        check_is_fitted(self, "temperature_")
        n_samples = check_n_samples(n_samples)
        seed = self.seed_ if random_state is None else seed_from(random_state)
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        k = len(self.classes_)
        if label is None:
            cls = torch.randint(0, k, (n_samples,), generator=gen, device=self._device())
        else:
            where = [i for i, c in enumerate(self.classes_) if np.ndim(label) == 0 and c == label]
            if len(where) == 0:
                raise ConfigError(f"label must be one of {self.classes_.tolist()}, got {label!r}")
            cls = torch.full((n_samples,), int(where[0]), device=self._device())
        with torch.no_grad():
            z = self.module_.prior_sample(n_samples, generator=gen)
            onehot = torch.nn.functional.one_hot(cls.long(), k).float()
        d = z.shape[1]  # decoded a batch at a time, as VAE.sample does

        def decode(zy: torch.Tensor) -> torch.Tensor:
            return mean_from_output(self.module_.decode(zy[:, :d], zy[:, d:]))

        return self._batched(torch.cat([z, onehot], dim=1), decode)

    def score_samples(self, X: Any) -> np.ndarray:
        """ELBO of each image as unlabeled data, in nats (one seeded posterior sample).

        Each image's noise is drawn from its own pixels (see :meth:`vaekit.VAE.score_samples`).
        """
        x = self._check_input(X)
        return self._elbo_per_image(x, expand=len(self.classes_))

    # -- persistence ------------------------------------------------------------------------
    def _extra_json(self) -> dict[str, Any]:
        return {
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,  # "|u1", "<U3", "|O", ...
            "temperature": self.temperature_,
            "calibration_ece": self.calibration_ece_,
            "n_labeled": self.n_labeled_,
            "n_calibration": self.n_calibration_,
            "n_unlabeled": self.n_unlabeled_,
        }

    def _before_build(self, fitted: dict[str, Any]) -> None:
        # Labels come back in the dtype they were given in (uint8, object, ...), so predict's
        # dtype is the same after load (older runs recorded "object" or nothing).
        self.classes_ = np.asarray(fitted["classes"], dtype=fitted.get("classes_dtype"))

    def _restore_extras(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        self.temperature_ = float(info["temperature"])
        if not 0 < self.temperature_ < math.inf:
            raise ValueError(f"temperature {self.temperature_!r} is not a positive number")
        self.calibration_ece_ = info.get("calibration_ece")
        self.n_labeled_ = int(info["n_labeled"])
        self.n_calibration_ = int(info["n_calibration"])
        self.n_unlabeled_ = int(info["n_unlabeled"])

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        # ``transform`` gives latent means (for embeddings and reports), so scikit-learn's
        # transformer checks apply as well.
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags


def _unlabeled(y: np.ndarray) -> np.ndarray:
    """Boolean mask of the unlabeled images of 1-D labels ``y`` (-1, also as ``"-1"``)."""
    if y.dtype.kind in "iuf":
        return y == UNLABELED
    if y.dtype == object:  # string labels (a pandas Series) with -1 or "-1" for unlabeled
        return np.array(
            [(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v == UNLABELED)
             or (isinstance(v, str) and v == str(UNLABELED)) for v in y],
            dtype=bool,
        )  # fmt: skip
    if y.dtype.kind in "US":  # NumPy turns ["cat", -1] into strings: "-1" is -1
        return y == str(UNLABELED)
    return np.zeros(len(y), dtype=bool)


def _n_rows(a: Any) -> int | None:
    """Rows of an array-like, or None where it has none (a scalar, a string, an object)."""
    if isinstance(a, str | bytes):
        return None
    shape = getattr(a, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    try:
        return len(a)
    except TypeError:
        return None


def _check_lengths(X: Any, y: Any) -> None:
    """Refuse ``X`` and ``y`` of different lengths.

    Inputs without a length pass here: the validation of ``X`` or ``y`` says what is wrong.
    """
    n_x, n_y = _n_rows(X), _n_rows(y)
    if None not in (n_x, n_y) and n_x != n_y:
        raise DataError(f"X has {n_x} samples but y has {n_y}; pass one label per image")
