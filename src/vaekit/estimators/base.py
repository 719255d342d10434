"""Machinery shared by the vaekit estimators: parameters, data, fit, save/load."""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import numbers
import os
import time
import warnings
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from vaekit import checkpoint
from vaekit.data import as_image_array
from vaekit.data.arrays import to_nchw, warn_if_dim
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingDivergedError
from vaekit.models.base import GenerativeModel, check_likelihood, fixed_posterior_noise
from vaekit.nn import default_hidden_dims
from vaekit.training import TrainConfig, distributed, resolve_device, train
from vaekit.training.distributed import is_main_process
from vaekit.training.loop import RESUMABLE_CHANGES, check_split, history_csv, seed_from

#: Batch size for inference (transform, reconstruct, score); no gradients are kept.
INFERENCE_BATCH = 4096
#: ... capped so that one float32 input batch stays under this many bytes on the CPU, where
#: a convolutional model's activations must stay in cache: the conv VAE embedded 70,000
#: Fashion-MNIST images 2.7 times faster with 1 MiB batches (334 images) than with 16 MiB
#: (4,096), the MLP as fast (``bench/embed.py --batch-mb``; BENCHMARKS.md).
INFERENCE_BYTES = 2**20
#: ... and on a GPU, where large batches keep it busy.
INFERENCE_BYTES_GPU = 16 * 2**20
#: Bytes per weight while training in fp32: the weight, its gradient and Adam's two moments.
TRAIN_BYTES_PER_WEIGHT = 16


def to_tensor(X: Any, *, name: str = "X") -> torch.Tensor:
    """Validate user data and return a tensor ``(N, C, H, W)`` or ``(N, F)``.

    uint8 arrays stay uint8 (converted to float per batch, 4x less memory); other numeric
    arrays become float32 in [0, 1] (see ``vaekit.data.as_image_array``). A uint8 array
    backed by a file (``np.load(..., mmap_mode="r")``, a prepared dataset) is shared, not
    copied: the tensor reads its pages only when a batch is taken from it.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if sp.issparse(X):
        as_image_array(X, name=name)  # raises: sparse input is not supported
    try:
        arr = np.asarray(X)
    except ValueError as exc:  # ragged nested lists
        raise DataError(f"{name} cannot be read as an array ({exc}); pass a numpy array") from None
    if arr.dtype == np.uint8 and arr.ndim in (2, 3, 4) and arr.shape[0] > 0:
        if arr.ndim > 2:  # (N, H, W) and channels-last (N, H, W, C) -> (N, C, H, W)
            arr = to_nchw(arr, name)
        if arr.size and not _is_memory_mapped(arr):  # one pass in memory; a map stays unread
            warn_if_dim(arr.max(), name)
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:
            # Read-only memory map: torch warns that the tensor must not be written to;
            # vaekit only reads it.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(arr)
        return torch.from_numpy(arr)
    return torch.from_numpy(as_image_array(arr, name=name))


def _is_memory_mapped(arr: np.ndarray) -> bool:
    """Whether ``arr`` is a view of a memory-mapped file (``np.load(..., mmap_mode=...)``)."""
    base: Any = arr
    while base is not None:
        if isinstance(base, np.memmap | mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False


def _json_param(value: Any) -> Any:
    """Return a parameter as config.json stores it: NumPy scalars as numbers, tuples as lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_param(v) for v in value]
    return value


class BaseVAEEstimator(BaseEstimator):
    """Common parameters and methods; subclasses define the model and its extras."""

    #: Name written to config.json, used by ``load`` to check the run's kind.
    _estimator_name: ClassVar[str]
    #: Parameters added after runs of this estimator were first saved, with the value that
    #: reproduces how a run saved without them was trained.
    _params_added: ClassVar[dict[str, Any]] = {}
    #: Whether ``max_epochs="auto"`` is allowed (the estimator then picks the epochs in fit).
    _auto_max_epochs: ClassVar[bool] = False

    def _check_params(self, n_samples: int | None = None) -> None:
        """Raise ``ConfigError`` for a bad parameter.

        With ``n_samples`` (the images to train on), also when the validation split would
        leave no image on one side.
        """
        for name in ("latent_dim", "batch_size", "max_epochs", "patience"):
            v = getattr(self, name)
            auto = name == "max_epochs" and self._auto_max_epochs
            if auto and v == "auto":
                continue
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                also = ' or "auto"' if auto else ""
                raise ConfigError(f"{name} must be a positive integer{also}, got {v!r}")
        if self.arch not in ("mlp", "conv"):
            raise ConfigError(f"arch must be 'mlp' or 'conv', got {self.arch!r}")
        check_likelihood(self.likelihood)
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(
                f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}"
            )
        check_layer_sizes("hidden_dims", self.hidden_dims)
        for name in ("beta", "learning_rate"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not v > 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:  # True is 1
            raise ConfigError(f"verbose must be an integer >= 0, got {self.verbose!r}")
        resolve_device(self.device)  # raises now, before any training or file in run_dir
        # The training loop's settings as it will check them, now: VAEClassifier trains its
        # label-spreading VAE (minutes on Fashion-MNIST) before it builds its own loop.
        self._train_config(0, max_epochs=1)
        if n_samples is not None:
            self._check_n_samples(n_samples)

    def _check_n_samples(self, n_samples: int) -> None:
        """Raise when ``n_samples`` images are too few to train on with these parameters."""
        if isinstance(self.validation_fraction, numbers.Real):
            check_split(n_samples, float(self.validation_fraction))

    def _fitted(self, name: str) -> Any:
        """Parameter ``name`` as the model was fitted with (``set_params`` acts at the next fit)."""
        params = getattr(self, "_fit_params", None)
        return params[name] if params is not None else getattr(self, name)

    def _train_config(self, seed: int, **overrides: Any) -> TrainConfig:
        """Return the training loop's settings, ``overrides`` replacing fields before checks."""
        fields = dict(
            # As given: TrainConfig checks them (2.5 epochs is refused, not rounded down).
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule,
            kl_warmup_epochs=self.kl_warmup_epochs,
            validation_fraction=self.validation_fraction,
            patience=self.patience,
            random_state=seed,
            device=self.device,
            verbose=int(self.verbose),
            precision=self.precision,
            compile=self.compile,
        )
        return TrainConfig(**{**fields, **overrides})

    def _hidden_dims(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Layer sizes for ``input_shape`` under the fit-time parameters."""
        hidden = self._fitted("hidden_dims")
        if hidden is not None:
            return tuple(int(h) for h in hidden)
        arch = self._fitted("arch") if len(input_shape) == 3 else "mlp"
        return default_hidden_dims(arch, input_shape)

    @abstractmethod
    def _build_module(self, input_shape: tuple[int, ...]) -> GenerativeModel:
        """Create the untrained ``torch`` model for inputs of ``input_shape``."""

    # -- hooks for estimator-specific fitted state --------------------------------------
    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _extra_json(self) -> dict[str, Any]:
        return {}

    def _before_build(self, fitted: dict[str, Any]) -> None:
        """Restore what ``_build_module`` needs from the saved fitted state (on load)."""

    def _restore_extras(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        pass

    # -- fitting -------------------------------------------------------------------------
    def _fit_module(
        self,
        data: list[torch.Tensor],
        *,
        run_dir: str | Path | None,
        resume: bool,
        metadata: dict[str, Any] | None,
    ) -> None:
        """Build the model for ``data[0]`` and train it (the shared part of every ``fit``)."""
        self._setup_fit(data[0], metadata)
        self._train_module(data, run_dir=run_dir, resume=resume)

    def _setup_fit(self, x: torch.Tensor, metadata: dict[str, Any] | None) -> None:
        """Check parameters and data, draw the seed and build the untrained model."""
        self._check_params()
        if len(x) < 2:
            raise DataError(f"need at least 2 samples to fit, got n_samples={len(x)}")
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        self.n_features_in_ = int(np.prod(self.input_shape_))
        self.seed_ = seed_from(self.random_state)
        # What the model is trained with: set_params after fit acts at the next fit only.
        self._fit_params = self.get_params(deep=False)
        self.metadata_ = _checked_metadata(metadata)
        self.fit_seconds_ = 0.0
        self.history_ = []
        with torch.random.fork_rng(devices=[]):
            self._check_model_fits(self.input_shape_)
            torch.manual_seed(self.seed_)  # initial weights depend on the seed only
            self.module_ = self._build_module(self.input_shape_)

    def _check_model_fits(self, input_shape: tuple[int, ...]) -> None:
        """Refuse a model too large to train here, before any memory is allocated for it.

        An MLP on large images grows with the pixels (3 x 5000 x 5000 inputs: 38 billion
        weights in the first layer); allocating it would have the process killed.
        """
        with torch.device("meta"):  # sizes only, no memory
            n_weights = sum(p.numel() for p in self._build_module(input_shape).parameters())
        need = TRAIN_BYTES_PER_WEIGHT * n_weights
        where, have = _training_memory(resolve_device(self.device))
        if have is not None and need > have:
            raise ConfigError(
                f"the model for inputs of shape {'x'.join(map(str, input_shape))} has "
                f"{n_weights:,} weights, about {need / 2**30:,.0f} GiB to train, more than the "
                f"{have / 2**30:,.0f} GiB of {where}; use smaller images (image_size, "
                "--image-size), smaller hidden_dims or arch='conv'"
            )

    def _check_new_run(self, run_dir: str | Path | None, resume: bool) -> None:
        """Refuse, before any work, to start a new run where it would replace one.

        ``fit(X, run_dir=D)`` refuses a ``D`` that holds a run (unless ``resume``), any
        other ``config.json``, or other files (:func:`vaekit.checkpoint.check_new_run`);
        ``resume=True`` where ``D`` holds no run starts a new one, under the same rule, and
        is refused where ``D`` holds a saved model without a training state.
        Nothing in ``D`` is touched. Under torchrun rank 0, which alone writes there,
        decides and tells the other ranks, so that every rank raises alike and none starts
        training; a rank that looked itself could find the config.json rank 0 has just
        written for this run.
        """
        if run_dir is None:
            return
        # A group started by the user (mp.spawn, no torchrun variables) counts too.
        shared = distributed.is_distributed() or distributed.env_world_size() > 1
        refusal: str | None = None
        if is_main_process():
            try:
                if not (resume and (Path(run_dir) / checkpoint.CONFIG_FILE).exists()):
                    checkpoint.check_new_run(run_dir, self._estimator_name)
                else:
                    checkpoint.check_resumable(run_dir, self._estimator_name)
            except Exception as exc:  # any failure must reach the other ranks, or they wait
                if not shared:
                    raise
                refusal = str(exc)
        if shared:
            device = resolve_device(self.device)
            if distributed.init_from_env(device):  # joined now or earlier; train() reuses it
                box = [refusal]
                dist.broadcast_object_list(
                    box, src=0, device=device if device.type == "cuda" else None
                )
                refusal = box[0]
        if refusal is not None:
            raise CheckpointError(refusal)

    def _start_run(self, run_dir: str | Path | None, resume: bool) -> None:
        """Mark ``run_dir`` as a run in training (its config.json), so a kill can be resumed.

        A resumed run keeps the config.json it has until training ends and saves: a resume
        that is refused (other settings, a damaged training state) or fails must leave a
        finished run loadable, with its parameters and its weights' checksum.
        """
        if run_dir is None or not is_main_process():  # under torchrun only rank 0 writes
            return
        checkpoint.check_run_kind(run_dir, self._estimator_name)
        if resume and (Path(run_dir) / checkpoint.CONFIG_FILE).exists():
            self._check_resumed_params(run_dir)
        else:
            checkpoint.write_config(run_dir, self._config(status="training"))

    def _check_resumed_params(self, run_dir: str | Path) -> None:
        """Refuse to resume ``run_dir`` with parameters other than the run's own.

        Before, another ``latent_dim`` (say) reached the weights and was reported as a
        modified checkpoint. Speed-only settings (``RESUMABLE_CHANGES``) may change.
        """
        saved = checkpoint.read_config(run_dir).get("params")
        if not isinstance(saved, dict):
            return  # no parameters to compare: the training state's own checks decide
        saved = {**self._params_added, **saved}
        now = self._config(status="training")["params"]
        changed = [
            f"{k}={v!r} (the run has {saved[k]!r})"
            for k, v in now.items()
            if k in saved and k not in RESUMABLE_CHANGES and saved[k] != v
        ]
        if changed:
            raise CheckpointError(
                f"cannot resume '{run_dir}': its parameters differ ({', '.join(changed)}); "
                "resume with the run's parameters or fit into a new run directory"
            )

    def _save_finished_run(self, run_dir: str | Path | None) -> None:
        """Save the fitted model into the run it was checkpointed to (rank 0 under torchrun).

        ``fit(X, run_dir=DIR)`` then leaves a run that ``load(DIR)`` opens, as ``save`` does.
        """
        if run_dir is not None and is_main_process():
            self._write(run_dir)

    def _train_module(
        self,
        data: list[torch.Tensor],
        *,
        run_dir: str | Path | None,
        resume: bool,
        **overrides: Any,
    ) -> None:
        """Run the training loop on ``self.module_``; ``overrides`` change TrainConfig fields.

        Histories of successive calls (e.g. pre-training, then fine-tuning) are appended,
        and so are their times: ``fit_seconds_`` is the wall time of the whole run, a
        resumed run's seconds before this call included.
        """
        cfg = self._train_config(self.seed_, **overrides)
        check_split(len(data[0]), cfg.validation_fraction)  # before anything is written
        self._start_run(run_dir, resume)
        start = time.perf_counter()
        data_id = None if run_dir is None else self._data_id(data)
        result = train(self.module_, data, cfg, run_dir=run_dir, resume=resume, data_id=data_id)
        self.history_ = [*self.history_, *result.history]
        self.best_epoch_ = result.best_epoch
        self.n_epochs_ = len(self.history_)
        self.stopped_early_ = result.stopped_early
        self.fit_seconds_ += result.resumed_seconds + time.perf_counter() - start
        self.module_.eval()

    def _data_id(self, data: list[torch.Tensor]) -> str:
        """Fingerprint of what a run trains on, for a resume to compare.

        Covers the images and any integer tensor beside them (labels), with the
        estimator's :meth:`_data_id_extra`; not float targets computed from them, which
        another thread count may round otherwise.
        """
        digest = hashlib.blake2b(digest_size=16)
        for i, t in enumerate(data):
            if i == 0 or not t.is_floating_point():
                digest.update(f"{tuple(t.shape)} {t.dtype};".encode())
                digest.update(np.ascontiguousarray(t.detach().cpu().numpy()))
        digest.update(repr(self._data_id_extra()).encode())
        return digest.hexdigest()

    def _data_id_extra(self) -> Any:
        """Return what else a resumed run must share with the run (a classifier: its classes)."""
        return None

    # -- inference helpers -----------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.module_.parameters()).device

    def _check_input(self, X: Any) -> torch.Tensor:
        check_is_fitted(self, "module_")
        x = to_tensor(X)
        if tuple(x.shape[1:]) != self.input_shape_:
            if int(np.prod(x.shape[1:])) == self.n_features_in_ and len(self.input_shape_) == 1:
                return x.reshape(len(x), -1)
            raise DataError(
                f"X has shape {tuple(x.shape[1:])} per sample but the model was fitted on "
                f"{self.input_shape_}; pass data of the training shape"
            )
        return x

    def _elbo_per_image(self, x: torch.Tensor, expand: int = 1) -> np.ndarray:
        """One-sample ELBO of each image, its noise drawn from the image's own bytes.

        Each image's posterior noise is seeded by a hash of its pixels and the estimator's
        seed: independent between images (the mean over a dataset averages over noise) yet
        the same whichever other images are scored with it. The pixels are hashed as 0..255
        levels, so ``x`` and ``x / 255`` (whose floats differ in the last bits) agree.
        ``expand``: copies of each image the model's bound makes (M2: one per class).
        """
        dim, key = self.module_.latent_dim, (int(self.seed_) % 2**64).to_bytes(8, "little")

        def elbo(xb: torch.Tensor) -> torch.Tensor:
            levels = torch.round(xb * 255).to(torch.uint8)
            rows = levels.cpu().numpy().reshape(len(xb), -1)
            eps = np.empty((len(rows), dim), dtype=np.float32)
            for i, row in enumerate(rows):
                digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest()
                eps[i] = np.random.default_rng(int.from_bytes(digest, "little")).normal(size=dim)
            with fixed_posterior_noise(torch.from_numpy(eps).to(xb.device)):
                return self.module_.elbo(xb)

        return self._batched(x, elbo, expand)

    @torch.no_grad()
    def _batched(self, x: torch.Tensor, fn, expand: int = 1) -> np.ndarray:
        """Apply ``fn`` to float batches of ``x`` on the model's device; concatenate.

        ``expand``: ``fn`` works on that many copies of each image (M2's bound decodes every
        image once per class), so batches hold that many times fewer images.
        """
        if len(x) == 0:
            raise DataError("found 0 samples; pass at least one")
        self.module_.eval()
        dev = self._device()
        n = len(x)
        row_bytes = 4 * max(1, int(np.prod(x.shape[1:])))  # one float32 sample
        cap = INFERENCE_BYTES if dev.type == "cpu" else INFERENCE_BYTES_GPU
        bs = max(1, min(INFERENCE_BATCH, cap // row_bytes) // expand)
        buf: torch.Tensor | None = None
        out: np.ndarray | None = None
        for start in range(0, n, bs):
            xb = x[start : start + bs].to(dev)
            if xb.dtype == torch.uint8:
                # One float buffer for every batch: a fresh tens-of-MB tensor per batch
                # fragments the C heap until memory grows with the dataset (measured with
                # 12 KB images: +730 MB over 24,000 images with 32 MB batches).
                if buf is None:
                    buf = torch.empty((min(bs, n), *x.shape[1:]), device=dev)
                xb = buf[: len(xb)].copy_(xb).mul_(1.0 / 255.0)
            else:
                xb = xb.float()
            yb = fn(xb).cpu().numpy()
            if out is None:
                out = np.empty((n, *yb.shape[1:]), dtype=yb.dtype)
            out[start : start + len(yb)] = yb
        assert out is not None
        return out

    # -- persistence -------------------------------------------------------------------------
    def _config(self, status: str) -> dict[str, Any]:
        params = dict(getattr(self, "_fit_params", None) or self.get_params(deep=False))
        params = {k: _json_param(v) for k, v in params.items()}
        if not (params.get("random_state") is None or isinstance(params["random_state"], int)):
            params["random_state"] = self.seed_  # a RandomState or Generator: the seed it gave
        return {
            "status": status,
            "estimator": self._estimator_name,
            "params": params,
            "model": {
                "class": type(self.module_).__name__,
                "input_shape": list(self.input_shape_),
                "hidden_dims": list(self._hidden_dims(self.input_shape_)),
            },
            "metadata": self.metadata_,
        }

    def save(self, path: str | Path) -> Self:
        """Write the fitted estimator to the run directory ``path``.

        Files: ``config.json`` (parameters, shapes, metadata, checksum),
        ``model.safetensors`` (weights and fitted state) and ``history.csv`` (the training
        curves, when there are any). Nothing is pickled. ``fit(X, run_dir=path)`` ends
        by writing the same files there. Under torchrun only rank 0 writes.

        A model of the same estimator saved in ``path`` before is replaced. Refused
        (``CheckpointError``, nothing written): a run of another estimator, a training run
        of another model (``fit(run_dir=...)`` or the CLI: its training state and metrics
        would describe the old model), and a folder of other files.
        """
        check_is_fitted(self, "module_")
        if is_main_process():  # ranks saving the same model into one folder would race
            self._write(path, guard=True)
        return self

    def _write(self, path: str | Path, *, guard: bool = False) -> None:
        """Write the model files of :meth:`save`; ``guard`` checks ``path`` first."""
        state = {f"module.{k}": v for k, v in self.module_.state_dict().items()}
        state.update({f"extra.{k}": v for k, v in self._extra_tensors().items()})
        config = self._config(status="fitted")
        config["fitted"] = {
            "seed": self.seed_,
            "n_epochs": self.n_epochs_,
            "best_epoch": self.best_epoch_,
            "stopped_early": self.stopped_early_,
            "fit_seconds": self.fit_seconds_,
            **self._extra_json(),
        }
        replaced = checkpoint.save_model(path, state, config, guard=guard)
        history = Path(path) / checkpoint.HISTORY_FILE
        if self.history_:  # the curves of this model, not of another model saved there before
            checkpoint.atomic_write_text(history, history_csv(self.history_))
        elif replaced:
            history.unlink(missing_ok=True)

    @classmethod
    def params_from_config(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """Return the constructor parameters saved in a run's ``config.json`` (``params``).

        Parameters added since the run was saved take the value it was trained with, and
        JSON lists of layer sizes become tuples again.
        """
        params = {**cls._params_added, **saved}
        for name in ("hidden_dims", "decoder_dims"):
            if params.get(name) is not None:
                params[name] = tuple(params[name])
        return params

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> Self:
        """Load an estimator saved with ``save`` (never unpickles).

        Parameters
        ----------
        path : str or pathlib.Path
            The run directory ``save`` (or ``fit(run_dir=...)``) wrote.
        device : str, default="auto"
            Where to put the model now: ``"auto"``, ``"cpu"`` or ``"cuda"``; it becomes the
            estimator's ``device``, so a run trained on a GPU loads on a CPU-only machine.

        Returns
        -------
        estimator
            The fitted estimator, ready to ``predict``/``transform``.

        Raises
        ------
        CheckpointError
            The directory is missing, incomplete, from another vaekit version, of another
            estimator, or its files were modified.
        ConfigError
            ``device`` is unknown or not available here.
        """
        torch_device = resolve_device(device)  # the caller's mistake, not the file's
        config, tensors = checkpoint.load_model(path)
        if config.get("estimator") != cls._estimator_name:
            raise CheckpointError(
                f"'{path}' holds a {config.get('estimator')} run, not a {cls._estimator_name}; "
                f"load it with vaekit.{config.get('estimator')}.load"
            )
        try:
            # The device the run was trained on may not exist here; it is the caller's now.
            est = cls(**{**cls.params_from_config(config["params"]), "device": device})
            est._check_params()  # a config.json edited by hand: say so now, not at predict
            if est.random_state is not None:
                seed_from(est.random_state)  # evaluate splits the data with it
            est._fit_params = est.get_params(deep=False)
            est.input_shape_ = tuple(config["model"]["input_shape"])
            est.n_features_in_ = int(np.prod(est.input_shape_))
            est.metadata_ = config.get("metadata", {})
            fitted = config["fitted"]
            est.seed_ = fitted["seed"]
            if not isinstance(est.seed_, int) or isinstance(est.seed_, bool):
                raise TypeError(f"seed {est.seed_!r} is not an integer")
            est.n_epochs_ = fitted["n_epochs"]
            est.best_epoch_ = fitted["best_epoch"]
            est.stopped_early_ = fitted["stopped_early"]
            est.fit_seconds_ = fitted["fit_seconds"]
            est.history_ = []
            est._before_build(fitted)
            module = est._build_module(est.input_shape_)
            module.load_state_dict(
                {k[7:]: v for k, v in tensors.items() if k.startswith("module.")}
            )
            est.module_ = module.to(torch_device).eval()
            est._restore_extras(
                {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}, fitted
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # ConfigError too
            raise CheckpointError(
                f"'{path}' is inconsistent ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "it was modified or is incomplete — retrain the run"
            ) from None
        try:
            rows = checkpoint.read_history(Path(path) / checkpoint.HISTORY_FILE)
        except CheckpointError as exc:  # a by-product of training: the model loads without it
            warnings.warn(f"{exc}; the model loads without its training history", stacklevel=2)
            rows = []
        if len(rows) == est.n_epochs_:  # else a history of something else saved there
            est.history_ = rows
        return est


def _checked_metadata(metadata: Any) -> dict[str, Any]:
    """``fit``'s ``metadata`` as a dict; ``ConfigError`` unless JSON can hold it (config.json)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ConfigError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"metadata must hold only what JSON can (strings, numbers, lists, dicts): {exc}"
        ) from None
    return dict(metadata)


def check_layer_sizes(name: str, dims: Any) -> None:
    """Raise ``ConfigError`` unless ``dims`` is None or a non-empty sequence of positive ints.

    A single int (``hidden_dims=16``) and bools (``(True,)``, a 1-unit layer) are refused.
    """
    if dims is None:
        return
    if not (
        isinstance(dims, (tuple, list, np.ndarray))
        and len(dims) > 0
        and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims)
    ):
        raise ConfigError(
            f"{name} must be a non-empty tuple of positive integers such as (256,), got {dims!r}"
        )


def check_n_samples(n_samples: Any) -> int:
    """``n_samples`` of ``sample()`` as an int; a ConfigError unless it is an integer >= 1."""
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ConfigError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    return int(n_samples)


def keeps_state_on_failure(fit: Any) -> Any:
    """Decorate a ``fit``: if it raises (or is interrupted), the estimator is as it was.

    A refit that fails on bad input must not leave a fitted estimator answering from new,
    untrained weights, nor a first fit that fails leave one that looks fitted. The ``fit``
    first refuses to replace a run in its ``run_dir`` (``_check_new_run``), before any
    work: the VAEClassifier trains a helper VAE before its own training starts.

    A new run whose training diverges before any epoch is saved holds nothing to resume or
    load: what the fit wrote into ``run_dir`` is removed again (the folder too, if the fit
    made it), so the same command can be run again with other settings.
    """

    @functools.wraps(fit)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        run_dir, resume = kwargs.get("run_dir"), bool(kwargs.get("resume", False))
        self._check_new_run(run_dir, resume)
        held = None if run_dir is None else _entries(Path(run_dir))
        new_run = run_dir is not None and checkpoint.CONFIG_FILE not in (held or ())
        made = [] if run_dir is None else _missing_folders(Path(run_dir))
        before = dict(self.__dict__)
        try:
            return fit(self, *args, **kwargs)
        except BaseException as exc:
            saved = getattr(self, "history_", None)  # epochs of earlier phases (pre-training)
            self.__dict__.clear()
            self.__dict__.update(before)
            diverged_empty = isinstance(exc, TrainingDivergedError) and exc.epochs_saved == 0
            if new_run and diverged_empty and not saved and is_main_process():
                _remove_new_entries(Path(run_dir), held, made)
            raise

    return wrapper


def _entries(folder: Path) -> frozenset[str] | None:
    """Names in ``folder``; None when it does not exist (or is no folder)."""
    try:
        return frozenset(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return None


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those above it that do not exist yet, innermost first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_new_entries(folder: Path, held: frozenset[str] | None, made: list[Path]) -> None:
    """Remove what ``folder`` holds beyond ``held``, and the folders ``made`` for it if empty.

    ``held``: its entries before the fit (None: it did not exist); ``made``: ``folder`` and
    the folders above it that the fit created, innermost first.
    """
    import shutil

    for name in _entries(folder) or ():
        if held is None or name not in held:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    for new in made:
        try:
            new.rmdir()
        except OSError:
            return  # something else is there (or appeared meanwhile): leave it and above


def _training_memory(device: torch.device) -> tuple[str, int | None]:
    """Where a model on ``device`` trains, and its total memory in bytes (None: unknown)."""
    if device.type == "cuda":
        return str(device), torch.cuda.get_device_properties(device).total_memory
    try:
        return "this machine's memory", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return "this machine's memory", None
