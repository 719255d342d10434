"""``VAE``: a variational autoencoder with the scikit-learn transformer contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from vaekit.errors import DataError
from vaekit.estimators.base import (
    BaseVAEEstimator,
    check_n_samples,
    keeps_state_on_failure,
    to_tensor,
)
from vaekit.models import VAEModule
from vaekit.models.base import mean_from_output, negative_log_likelihood
from vaekit.training.loop import seed_from


class VAE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseVAEEstimator):
    """Variational autoencoder: images -> Gaussian latent ``z`` -> images.

    Trained by maximising the ELBO (reconstruction log-likelihood minus ``beta`` times the
    KL divergence to a standard-normal prior) with Adam, KL warm-up and early stopping on a
    held-out validation split.

    Parameters
    ----------
    latent_dim : int, default=10
        Size of the latent code ``z``.
    arch : {"mlp", "conv"}, default="mlp"
        Encoder/decoder family; "conv" needs image input ``(N, C, H, W)`` and falls back
        to "mlp" for flat ``(N, F)`` input.
    hidden_dims : tuple of int, optional
        Layer widths (MLP) or channels per stride-2 conv (conv), input side first.
        Default: (512, 256) for MLP, (32, 64, 128) (fewer for tiny images) for conv.
    likelihood : {"bernoulli", "gaussian"}, default="bernoulli"
        Pixel likelihood ``p(x|z)``; "gaussian" learns one shared pixel scale.
    beta : float, default=1.0
        Weight of the KL term (beta-VAE); 1 gives the ELBO.
    batch_size : int, default=128
        Images per optimiser step.
    max_epochs : int, default=50
        Upper bound on training epochs.
    learning_rate : float, default=1e-3
        Adam's initial learning rate.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        "cosine" decays the learning rate to a tenth over ``max_epochs``.
    kl_warmup_epochs : int, default=10
        Epochs over which the KL weight rises from 0 to 1.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping (0 disables it).
    patience : int, default=10
        Epochs without validation improvement before stopping.
    device : str, default="auto"
        "auto" uses CUDA when available, else the CPU.
    random_state : int, RandomState or None, default=None
        Seed for the split, batch order, weights and sampling noise; an int makes results
        repeatable on the same machine and versions.
    verbose : int, default=0
        1 shows a progress bar on a terminal; 2 also prints one line per epoch.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        bf16 autocast while training; "auto" uses it on CUDA devices that support bf16 and
        stays fp32 on the CPU (where bf16 was measured to cost clustering quality).
    compile : {"auto", "on", "off"}, default="auto"
        ``torch.compile`` the training loss; "auto" leaves it off.

    Attributes
    ----------
    module_ : VAEModule
        The trained ``torch`` model.
    input_shape_ : tuple of int
        Shape of one training sample, ``(C, H, W)`` or ``(F,)``.
    history_ : list of dict
        Per-epoch training and validation losses (nats per image).
    n_epochs_ : int
        Epochs run.

    Examples
    --------
    >>> from vaekit import VAE, load_dataset
    >>> ds = load_dataset("digits")
    >>> vae = VAE(latent_dim=8, max_epochs=5, random_state=0).fit(ds.x_train)
    >>> vae.transform(ds.x_test[:3]).shape
    (3, 8)
    >>> vae.sample(4).shape
    (4, 1, 8, 8)
    """

    _estimator_name = "VAE"

    def __init__(
        self,
        *,
        latent_dim: int = 10,
        arch: str = "mlp",
        hidden_dims: tuple[int, ...] | None = None,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        batch_size: int = 128,
        max_epochs: int = 50,
        learning_rate: float = 1e-3,
        lr_schedule: str = "cosine",
        kl_warmup_epochs: int = 10,
        validation_fraction: float = 0.1,
        patience: int = 10,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        precision: str = "auto",
        compile: str = "auto",
    ):
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

    def _build_module(self, input_shape: tuple[int, ...], **module_params: Any) -> VAEModule:
        """Build the VAE for ``input_shape``; ``module_params`` go on to :class:`VAEModule`."""
        return VAEModule(
            input_shape,
            latent_dim=int(self.latent_dim),
            arch=self.arch if len(input_shape) == 3 else "mlp",
            hidden_dims=self._hidden_dims(input_shape),
            likelihood=self.likelihood,
            beta=float(self.beta),
            **module_params,
        )

    @keeps_state_on_failure
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Self:
        """Train on images ``X``; ``y`` is ignored.

        Parameters
        ----------
        X : array-like
            ``(N, H, W)`` or ``(N, C, H, W)`` images (uint8 0-255 or float 0-1), or
            ``(N, F)`` features in [0, 1].
        y : None
            Ignored; present for pipeline compatibility.
        run_dir : path, optional
            Checkpoint every epoch to this run directory (config, training state,
            history) so that training can be resumed.
        resume : bool, default=False
            Continue from ``run_dir``'s last checkpoint instead of starting over.
        metadata : dict, optional
            JSON-serialisable facts saved in ``config.json`` (data spec, class names).

        Returns
        -------
        self : VAE
            The fitted estimator.
        """
        x = to_tensor(X)
        self._fit_module([x], run_dir=run_dir, resume=resume, metadata=metadata)
        self._n_features_out = int(self.latent_dim)
        self._save_finished_run(run_dir)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Posterior means ``E[z|x]``, shape ``(N, latent_dim)``; deterministic."""
        x = self._check_input(X)
        return self._batched(x, lambda xb: self.module_.encode(xb).mean)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decode latents ``(N, latent_dim)`` to pixel means in [0, 1], ``(N, *input_shape)``."""
        check_is_fitted(self, "module_")
        try:
            z = torch.as_tensor(np.asarray(X, dtype=np.float32))
        except (ValueError, TypeError) as exc:
            raise DataError(f"X cannot be read as latents ({exc}); pass a float array") from None
        if z.ndim != 2 or z.shape[1] != self.module_.latent_dim:
            raise DataError(
                f"X has shape {tuple(z.shape)}; expected latents of shape "
                f"(N, {self.module_.latent_dim}) as transform returns them"
            )
        if not torch.isfinite(z).all():
            raise DataError("X holds NaN or infinite latents; remove or replace them")
        return self._batched(z, lambda zb: mean_from_output(self.module_.decode(zb)))

    def reconstruct(self, X: Any) -> np.ndarray:
        """Decode the posterior means of ``X``: pixel means in [0, 1], same shape as a sample."""
        x = self._check_input(X)
        m = self.module_
        return self._batched(x, lambda xb: mean_from_output(m.decode(m.encode(xb).mean)))

    def sample(self, n_samples: int = 1, *, random_state: Any = None) -> np.ndarray:
        """Generate ``n_samples`` images (pixel means of ``p(x|z)``, ``z`` from the prior).

        Parameters
        ----------
        n_samples : int, default=1
            Images to generate.
        random_state : int, RandomState, Generator or None, default=None
            Seed of the draw (None: the estimator's fitted seed, so repeated calls agree).

        Returns
        -------
        ndarray of shape (n_samples, *input_shape_)
            Float32 pixel means in [0, 1].
        """
        check_is_fitted(self, "module_")
        n_samples = check_n_samples(n_samples)
        seed = self.seed_ if random_state is None else seed_from(random_state)
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        with torch.no_grad():
            z = self.module_.prior_sample(n_samples, generator=gen)
        return self.inverse_transform(z.cpu().numpy())

    def score_samples(self, X: Any) -> np.ndarray:
        """ELBO of each image in nats (higher is better), one seeded posterior sample.

        Each image's posterior noise is drawn from a hash of its pixels and the seed, so an
        image scores the same whichever other images are scored with it, and as uint8 or as
        float in [0, 1] (up to float32 rounding, about 1e-5 nats).
        """
        x = self._check_input(X)
        return self._elbo_per_image(x)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean ELBO per image in nats (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def reconstruction_errors(self, X: Any) -> dict[str, float]:
        """Mean per-image reconstruction errors of ``X`` from the posterior means.

        Returns ``{"reconstruction_mse": ..., "reconstruction_bce": ...}``: squared error
        and binary cross-entropy (nats), summed over pixels, averaged over images.
        """
        x = self._check_input(X)
        m = self.module_

        def per_image(xb: torch.Tensor) -> torch.Tensor:
            out = m.decode(m.encode(xb).mean)
            mse = (torch.sigmoid(out) - xb).pow(2).flatten(1).sum(1)
            bce = negative_log_likelihood("bernoulli", out, xb, None)
            return torch.stack([mse, bce], dim=1)

        errs = self._batched(x, per_image)
        return {
            "reconstruction_mse": float(errs[:, 0].mean()),
            "reconstruction_bce": float(errs[:, 1].mean()),
        }

    def _restore_extras(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        self._n_features_out = int(self.latent_dim)
