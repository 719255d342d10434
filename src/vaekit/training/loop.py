"""The one training loop shared by every model.

Batching, Adam with a cosine schedule, KL warm-up, early stopping, NaN guard,
checkpoint/resume, a progress bar, data-parallel training under ``torchrun`` and the
optional fast path (bf16 autocast, ``torch.compile``).

The loop knows models only through ``model.loss(*batch, kl_weight=w) -> LossOutput``.
Data are tensors (uint8 images are converted to float per batch); a batch is a slice of a
seeded permutation, gathered by one indexing call per tensor, so there is no per-item
Python work. On the CPU each batch is gathered straight from the caller's tensors, never
from a copy of the training split, so a tensor backed by a memory-mapped file is read one
batch at a time and memory use does not grow with the dataset.

Under ``torchrun`` (``WORLD_SIZE > 1``) every rank draws the same permutation; step ``s``
takes the global batch ``perm[s*B*W:(s+1)*B*W]`` and rank ``r`` trains on every ``W``-th
row of it from row ``r`` (``B`` = ``batch_size`` per rank, ``W`` = world size), so ``W``
processes with batch ``B`` follow the one-process run with batch ``B*W``. Gradients are
averaged by ``DistributedDataParallel``; epoch and validation metrics are summed over ranks,
so early stopping decides the same on every rank; only rank 0 writes files.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vaekit import checkpoint
from vaekit.errors import CheckpointError, ConfigError, TrainingDivergedError
from vaekit.models.base import GenerativeModel
from vaekit.training import distributed, fastpath
from vaekit.training.adam import Adam

#: The cosine schedule decays the learning rate to this fraction of its start value.
MIN_LR_FRACTION = 0.1
#: Rank ``r`` seeds its noise (reparameterisation samples) with ``random_state + r * this``,
#: so ranks draw different noise; rank 0 keeps the one-process seed.
RANK_SEED_STRIDE = 1_000_003
#: Rows per forward pass when validating (no gradients are kept): at least the training
#: batch, at most this many ...
MAX_VALIDATION_BATCH = 1024
#: ... and no more than fit in this many bytes as float32 (large images).
VALIDATION_BYTES = 4 * 2**20
#: On CUDA the data are copied to the device up front when they take at most this share of
#: the free device memory; otherwise each batch is copied from host memory.
DEVICE_DATA_SHARE = 0.25
#: Learning-rate schedules of ``TrainConfig.lr_schedule``.
LR_SCHEDULES = ("cosine", "constant")
#: TrainConfig fields that may change between a run and its resume: how it is shown, and
#: where and how fast it runs (a GPU run may go on on a CPU, not bit for bit).
RESUMABLE_CHANGES = frozenset({"verbose", "compile", "device"})


@dataclass
class TrainConfig:
    """Settings of the training loop (saved with the run).

    Attributes
    ----------
    batch_size : int
        Images per optimiser step.
    max_epochs : int
        Upper bound on passes over the training data.
    learning_rate : float
        Adam's initial step size; with the cosine schedule it decays to ``MIN_LR_FRACTION``
        of it.
    lr_schedule : {"cosine", "constant"}
        Learning-rate schedule over ``max_epochs``.
    kl_warmup_epochs : int
        The KL weight rises linearly from 0 to 1 over this many epochs (Bowman et al. 2016);
        0 disables warm-up.
    validation_fraction : float
        Share of the training data held out for early stopping; 0 disables both.
    patience : int
        Epochs without validation improvement (after warm-up) before stopping.
    random_state : int
        Seed for the split, batch order, initial weights and noise.
    device : str
        "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ... Under torchrun,
        "auto" and "cuda" mean the GPU ``LOCAL_RANK``.
    verbose : int
        0 silent; 1 progress bar on a terminal; 2 also prints one line per epoch.
    precision : {"auto", "fp32", "bf16"}
        bf16 autocast of the training forward pass; "auto" uses it only on hardware with
        native bf16 (see :mod:`vaekit.training.fastpath`).
    compile : {"auto", "on", "off"}
        ``torch.compile`` the loss; "auto" means off.
    """

    batch_size: int = 128
    max_epochs: int = 50
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    kl_warmup_epochs: int = 10
    validation_fraction: float = 0.1
    patience: int = 10
    random_state: int = 0
    device: str = "auto"
    verbose: int = 0
    precision: str = "auto"
    compile: str = "auto"

    def __post_init__(self) -> None:
        fastpath.check_fast_path(self.precision, self.compile)
        integer, number = (numbers.Integral,), (numbers.Real,)
        checks = {  # name: (types, holds for a value of those types, what it must be)
            "batch_size": (integer, lambda v: v >= 1, "an integer >= 1"),
            "max_epochs": (integer, lambda v: v >= 1, "an integer >= 1"),
            "learning_rate": (number, lambda v: v > 0, "a number > 0"),
            "kl_warmup_epochs": (integer, lambda v: v >= 0, "an integer >= 0 (0: no warm-up)"),
            "validation_fraction": (
                number,
                lambda v: 0 <= v < 1,
                "a number in [0, 1) (0: no validation split)",
            ),
            "patience": (integer, lambda v: v >= 1, "an integer >= 1"),
            "lr_schedule": ((str,), lambda v: v in LR_SCHEDULES, "'cosine' or 'constant'"),
        }
        for name, (types, holds, want) in checks.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, types) or not holds(v):
                raise ConfigError(f"{name} must be {want}, got {v!r}")
            if types is integer or types is number:  # NumPy scalars too; saved as JSON
                setattr(self, name, int(v) if types is integer else float(v))


@dataclass
class TrainResult:
    """What ``train`` returns: per-epoch history and how training ended.

    ``seconds`` is the wall time of this call's epochs; ``resumed_seconds`` the wall time
    the run had trained before this call resumed it (0 for a new run), as its checkpoint
    recorded, so the whole run took ``resumed_seconds`` plus this call's time.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    resumed_seconds: float = 0.0


#: What a diverged run that saved no epoch says of its folder.
NOTHING_TO_RESUME = "no epoch finished, so there is nothing to resume"


def resolve_device(device: str | None) -> torch.device:
    """``"auto"`` (or None) -> CUDA when available, else CPU; anything else goes to torch.

    Under torchrun (``WORLD_SIZE > 1``), "auto" and a bare "cuda" mean the GPU numbered by
    ``LOCAL_RANK`` (modulo the visible GPUs).
    """
    if device is None or device == "auto":  # None: scikit-learn's usual "the default"
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and distributed.env_world_size() > 1 and torch.cuda.is_available():
        return torch.device("cuda", distributed.default_device_index())
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    usable = {"cpu", "cuda"} | ({"mps"} if torch.backends.mps.is_available() else set())
    if dev.type not in usable:
        raise ConfigError(
            f"device={device!r} cannot train here; use 'auto', 'cpu' or "
            f"{' or '.join(repr(u) for u in sorted(usable - {'cpu'}))}"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but CUDA is not available; use 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device={device!r} was asked for but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s), numbered from 0; use 'auto'"
        )
    return dev


def _to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; float tensors pass through."""
    if batch.dtype == torch.uint8:
        return batch.to(torch.float32).mul_(1.0 / 255.0)
    return batch


def _fits_on_device(data: Sequence[torch.Tensor], device: torch.device) -> bool:
    """Whether ``data`` take at most ``DEVICE_DATA_SHARE`` of the free memory of ``device``."""
    free, _ = torch.cuda.mem_get_info(device)
    return sum(t.nbytes for t in data) <= DEVICE_DATA_SHARE * free


def _lr_at(cfg: TrainConfig, epoch: int) -> float:
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    cos = 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.max_epochs))
    return cfg.learning_rate * (MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * cos)


def _kl_weight_at(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    if cfg.kl_warmup_epochs == 0:
        return 1.0
    return min(1.0, (epoch + step / steps_per_epoch) / cfg.kl_warmup_epochs)


def min_split_size(validation_fraction: float) -> int:
    """Fewest images that ``validation_fraction`` splits into two non-empty parts (1 for 0)."""
    if validation_fraction <= 0:
        return 1
    need = max(2, int(0.5 / validation_fraction))
    while not 1 <= round(need * validation_fraction) < need:
        need += 1
    return need


def check_split(n: int, validation_fraction: float) -> int:
    """Return the validation size for ``n`` images; raise if a split would be empty."""
    if n < min_split_size(validation_fraction):
        raise ConfigError(
            f"validation_fraction={validation_fraction} leaves an empty split of {n} images; "
            f"use at least {min_split_size(validation_fraction)} images (or "
            "validation_fraction=0)"
        )
    return round(n * validation_fraction)


def _split(n: int, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded train/validation index split."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.random_state))
    n_val = check_split(n, cfg.validation_fraction)
    return perm[n_val:], perm[:n_val]


def history_csv(history: Sequence[dict[str, float]]) -> str:
    """``history.csv``'s text: one row per epoch, a header of the logged names."""
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
    return buf.getvalue()


class _LossForward(nn.Module):
    """``forward`` = ``model.loss``, so DistributedDataParallel sees the loss computation.

    DDP prepares its gradient all-reduce in ``forward``; the loop's contract is
    ``model.loss``, so this wrapper routes one through the other. It returns a tuple (DDP
    looks for tensors in plain containers when searching for unused parameters).
    """

    def __init__(self, model: GenerativeModel):
        super().__init__()
        self.model = model

    def forward(self, *batch: torch.Tensor, kl_weight: float) -> tuple[Any, ...]:
        out = self.model.loss(*batch, kl_weight=kl_weight)
        return out.total, out.reconstruction, out.kl, out.extras


class _Loop:
    """State of one training run; ``run`` drives it epoch by epoch."""

    def __init__(
        self,
        model: GenerativeModel,
        data: Sequence[torch.Tensor],
        cfg: TrainConfig,
        run_dir: Path | None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        data_id: str | None = None,
    ):
        self.started = time.perf_counter()
        self.cfg = cfg
        self.data_id = data_id
        self.on_epoch_end = on_epoch_end
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.run_dir = run_dir
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        n = len(data[0])
        train_idx, val_idx = _split(n, cfg)
        # The data stay where the caller has them (possibly a memory-mapped file) and each
        # batch is gathered through ``train_idx``: no copy of the split. On CUDA they are
        # copied to the device once when they fit, so a batch costs no host transfer.
        self.data = list(data)
        if self.device.type == "cuda" and _fits_on_device(self.data, self.device):
            self.data = [t.to(self.device) for t in self.data]
            train_idx, val_idx = train_idx.to(self.device), val_idx.to(self.device)
        self.train_idx, self.val_idx = train_idx, val_idx
        self.has_val = len(val_idx) > 0
        self.n_train = len(train_idx)
        global_batch = cfg.batch_size * self.world
        self.steps_per_epoch = math.ceil(self.n_train / global_batch)
        if self.world > 1 and 0 < self.n_train % global_batch < self.world:
            # The last global batch would leave some rank without a row; drop it.
            self.steps_per_epoch -= 1
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"{self.n_train} training images cannot feed {self.world} processes; use "
                "more data or fewer processes"
            )
        self.n_used = min(self.n_train, self.steps_per_epoch * global_batch)
        # torch.optim.Adam(fused=True)'s arithmetic without its import and per-step costs.
        self.optimizer = Adam(self.model.parameters(), lr=cfg.learning_rate)
        self.autocast_dtype = fastpath.resolve_precision(cfg.precision, self.device)
        self.step_fn = self._make_step_fn()
        self.order_gen = torch.Generator().manual_seed(cfg.random_state + 1)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.finished = False
        self.stopped_early = False
        # Wall seconds the run trained before this call (restored on resume).
        self.resumed_seconds = 0.0

    def _make_step_fn(self):
        """Build the callable ``(*batch, kl_weight) -> (total, reconstruction, kl, extras)``."""
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            fn: Any = DistributedDataParallel(
                _LossForward(self.model),
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self._has_unused_parameters(),
            )
            # A conv layer with one input channel gets weight gradients whose stride along
            # that size-1 axis differs from DDP's bucket: same memory layout, but DDP warns
            # (six lines, on every rank) that this "may impair performance". It does not.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        else:
            fn = _LossForward(self.model).forward  # the bound method: no module-call hooks
        return fastpath.maybe_compile(fn, fastpath.resolve_compile(self.cfg.compile))

    def release_step_fn(self) -> None:
        """Free the step function now, under DDP its reducer with it.

        DDP's reducer and the hooks it puts on the parameters form reference cycles, so
        otherwise it lives until the interpreter shuts down, after the process group is
        gone; 2 of about 15 two-process conv runs then died after finishing ("terminate
        called without an active exception", exit -6).
        """
        self.step_fn = None
        if self.world > 1:
            import gc

            gc.collect()

    def _has_unused_parameters(self) -> bool:
        """Whether the loss leaves a trainable parameter without a gradient.

        Some models leave parameters out of a phase (VaDE's prior while it pre-trains as an
        autoencoder); DDP must then look for them every step, which costs a graph traversal,
        so it is only asked to when one loss evaluation on two rows shows the need.
        """
        params = [p for p in self.model.parameters() if p.requires_grad]
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the probe draws no training noise
            out = self.model.loss(*self._gather(self.train_idx[:2]), kl_weight=1.0)
            grads = torch.autograd.grad(out.total, params, allow_unused=True)
        return any(g is None for g in grads)

    def _gather(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Float batch of the examples ``rows`` (indices into the caller's tensors)."""
        return [_to_float(t[rows].to(self.device, non_blocking=True)) for t in self.data]

    # -- checkpointing -----------------------------------------------------------------
    def _rng_states(self) -> dict[str, torch.Tensor]:
        """RNG states to save: this process's, plus every rank's under DDP (collective)."""
        states = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.world > 1:
            comm = self.device if self.device.type == "cuda" else torch.device("cpu")
            for key in list(states):
                gathered = distributed.all_gather_same_shape(states[key].to(comm))
                states.update({f"{key}.{r}": g.cpu() for r, g in enumerate(gathered)})
        return states

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim, self._groups = self.optimizer.state_tensors()
        tensors.update(optim)
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        tensors.update(self._rng_states())
        tensors["rng.order"] = self.order_gen.get_state()
        return tensors

    def save(self) -> None:
        """Checkpoint (every rank must call it under DDP; only rank 0 writes)."""
        if self.run_dir is None:
            return
        tensors = self._state_tensors()
        if not self.is_main:
            return
        info = {
            "epoch": self.epoch,
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "optimizer_param_groups": self._groups,
            "train_config": asdict(self.cfg),
            "world_size": self.world,
            "history": self.history,
            "data_id": self.data_id,
            # Wall time of the run up to this checkpoint, over all its resumes.
            "train_seconds": self.resumed_seconds + time.perf_counter() - self.started,
        }
        checkpoint.save_train_state(self.run_dir, tensors, info)
        checkpoint.atomic_write_text(
            self.run_dir / checkpoint.HISTORY_FILE, history_csv(self.history)
        )

    def restore(self) -> bool:
        """Load the saved state; ``False`` when there is none (start from scratch).

        Under DDP every rank reads the same run directory (shared storage across machines)
        and takes its own saved RNG state; resuming with another number of processes
        continues correctly but not bit for bit.
        """
        assert self.run_dir is not None
        loaded = checkpoint.load_train_state(self.run_dir)
        if loaded is None:
            return False
        tensors, info = loaded
        defaults = asdict(TrainConfig())
        saved = info.get("train_config", {})
        saved_cfg = {k: saved.get(k, defaults[k]) for k in defaults if k not in RESUMABLE_CHANGES}
        now_cfg = {k: v for k, v in asdict(self.cfg).items() if k not in RESUMABLE_CHANGES}
        if saved_cfg != now_cfg:
            diff = sorted(k for k in now_cfg if saved_cfg.get(k) != now_cfg[k])
            raise CheckpointError(
                f"cannot resume '{self.run_dir}': training settings differ ({', '.join(diff)});"
                " resume with the original settings or use a new run directory (--out)"
            )
        saved_id = info.get("data_id")  # None: saved without one (before it was kept)
        if None not in (saved_id, self.data_id) and saved_id != self.data_id:
            raise CheckpointError(
                f"cannot resume '{self.run_dir}': the data differ from those it was trained on"
                " (other images, labels or classes); resume with its own data or use a new run"
                " directory (--out)"
            )
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.model.load_state_dict(model_sd)
        except RuntimeError:
            raise CheckpointError(
                f"'{self.run_dir / checkpoint.STATE_FILE}' does not fit this model; "
                "it was modified or belongs to another run — use a new run directory (--out)"
            ) from None
        try:
            self.optimizer.load_state_tensors(tensors, info["optimizer_param_groups"])
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(
                f"the optimiser state in '{self.run_dir / checkpoint.STATE_FILE}' does not fit"
                " this model; it was modified or belongs to another run — use a new run "
                "directory (--out)"
            ) from None
        try:
            self._restore_counters(tensors, info)
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise CheckpointError(
                f"the training state in '{self.run_dir / checkpoint.STATE_FILE}' is damaged "
                "(its counters or random-generator states); it was modified — use a new run "
                "directory (--out)"
            ) from None
        return True

    def _restore_counters(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Restore RNG states, the epoch and the early-stopping counters; check their types."""
        epoch, history = info["epoch"], info["history"]
        if not (isinstance(epoch, int) and 0 <= epoch <= self.cfg.max_epochs):
            raise ValueError(f"epoch {epoch!r}")
        if not (isinstance(history, list) and len(history) == epoch):
            raise ValueError("history")
        seconds = info.get("train_seconds")
        if seconds is None:  # saved before it was recorded: the epochs' own times
            seconds = sum(row["seconds"] for row in history if "seconds" in row)
        if isinstance(seconds, bool) or not (
            isinstance(seconds, (int, float)) and 0 <= seconds < math.inf
        ):
            raise ValueError(f"train_seconds {seconds!r}")
        best = {k[5:]: v.to(self.device) for k, v in tensors.items() if k.startswith("best.")}
        same_world = info.get("world_size", 1) == self.world
        suffix = f".{self.rank}" if self.world > 1 and same_world else ""
        if f"rng.torch{suffix}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch{suffix}"])
        if f"rng.cuda{suffix}" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], self.device)
        if self.world > 1 and not same_world:
            # Every rank restored the same state: seed each from it apart, as a new run
            # seeds them, or all ranks would draw the same noise from here on.
            base = int(torch.randint(2**62, (1,)))
            torch.manual_seed(base + self.rank * RANK_SEED_STRIDE)
        self.order_gen.set_state(tensors["rng.order"])
        self.best_state = best or None
        self.epoch = epoch
        self.best_val = math.inf if info["best_val"] is None else float(info["best_val"])
        self.best_epoch = int(info["best_epoch"])
        self.bad_epochs = int(info["bad_epochs"])
        self.finished = bool(info["finished"])
        self.stopped_early = bool(info["stopped_early"])
        self.history = history
        self.resumed_seconds = float(seconds)

    # -- one epoch ---------------------------------------------------------------------
    def _train_epoch(self, bar: tqdm | None) -> dict[str, float]:
        cfg, model, step_fn = self.cfg, self.model, self.step_fn
        model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(cfg, self.epoch)
        perm = torch.randperm(self.n_train, generator=self.order_gen).to(self.train_idx.device)
        # Global batch of step s: perm[s*gb:(s+1)*gb]; this rank takes rows rank, rank+W, ...
        gb, world, rank = cfg.batch_size * self.world, self.world, self.rank
        names: list[str] | None = None
        sums: torch.Tensor | None = None
        for step in range(self.steps_per_epoch):
            idx = perm[step * gb : (step + 1) * gb]
            if world > 1:
                idx = idx[rank::world]
            batch = self._gather(self.train_idx[idx])
            w = _kl_weight_at(cfg, self.epoch, step, self.steps_per_epoch)
            with fastpath.autocast(self.device, self.autocast_dtype):
                total, rec, kl, extras = step_fn(*batch, kl_weight=w)
            self.optimizer.zero_grad()
            total.backward()
            self.optimizer.step()
            # One stacked accumulator: (loss, reconstruction, kl, *extras) summed over images.
            vals = torch.stack([total, rec, kl, *extras.values()]).detach().float() * len(idx)
            sums = vals if sums is None else sums + vals
            if names is None:
                names = ["loss", "reconstruction", "kl", *extras]
            if bar is not None:
                bar.update(1)
        assert sums is not None and names is not None
        sums = distributed.all_reduce_sum(sums)
        row = {name: v / self.n_used for name, v in zip(names, sums.tolist(), strict=True)}
        # The last step's update can make the weights non-finite while every loss of the
        # epoch was finite: check them too, before they are checkpointed as good.
        finite_weights = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if not (finite_weights and all(math.isfinite(v) for v in row.values())):
            # Not self.run_dir by name: VaDE pre-trains in a sub-folder of the run.
            if self.run_dir is None:
                kept = ""
            elif self.epoch == 0:
                kept = f"; {NOTHING_TO_RESUME}"
            else:
                kept = (
                    f"; the run folder keeps epoch {self.epoch}, but resuming keeps the run's "
                    "settings: train again into a new folder"
                )
            raise TrainingDivergedError(
                f"training diverged at epoch {self.epoch + 1}: the loss became NaN or infinite;"
                f" lower --lr (learning_rate) or check the data{kept}",
                epochs_saved=self.epoch,
            )
        row["kl_weight"] = _kl_weight_at(cfg, self.epoch + 1, 0, 1)  # at the end of the epoch
        row["lr"] = _lr_at(cfg, self.epoch)
        return row

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Score the validation split in fp32 (under DDP each rank scores every W-th row)."""
        self.model.eval()
        rows = self.val_idx[self.rank :: self.world] if self.world > 1 else self.val_idx
        row_bytes = 4 * max(1, math.prod(self.data[0].shape[1:]))  # one float32 example
        bs = max(self.cfg.batch_size, min(MAX_VALIDATION_BATCH, VALIDATION_BYTES // row_bytes))
        # loss, reconstruction, kl, count; on the model's device, which NCCL's all_reduce needs
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        for start in range(0, len(rows), bs):
            batch = self._gather(rows[start : start + bs])
            out = self.model.loss(*batch, kl_weight=1.0)
            k = len(batch[0])
            part = torch.stack([out.total, out.reconstruction, out.kl]).double() * k
            sums[:3] += part
            sums[3] += k
        sums = distributed.all_reduce_sum(sums)
        n = float(sums[3])
        return {
            "val_loss": float(sums[0]) / n,
            "val_reconstruction": float(sums[1]) / n,
            "val_kl": float(sums[2]) / n,
        }

    def run(self) -> TrainResult:
        cfg = self.cfg
        start = time.perf_counter()
        show = cfg.verbose >= 1 and self.is_main and sys.stderr.isatty()
        bar = None
        if show and not self.finished:
            bar = tqdm(
                total=self.steps_per_epoch * cfg.max_epochs,
                initial=self.steps_per_epoch * self.epoch,
                desc="training",
                unit="batch",
                dynamic_ncols=True,
                leave=False,
            )
        try:
            while not self.finished and self.epoch < cfg.max_epochs:
                t0 = time.perf_counter()
                row: dict[str, float] = {"epoch": self.epoch + 1}
                row.update(self._train_epoch(bar))
                if self.has_val:
                    row.update(self._validate())
                    self._early_stopping(row["val_loss"])
                row["seconds"] = time.perf_counter() - t0
                self.history.append(row)
                self.epoch += 1
                if self.epoch >= cfg.max_epochs:
                    self.finished = True
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.2f}", refresh=False)
                if cfg.verbose >= 2 and self.is_main:
                    print(
                        " ".join(f"{k}={v:.4g}" for k, v in row.items()),
                        file=sys.stderr,
                        flush=True,
                    )
                self.save()
                if self.on_epoch_end is not None:
                    self.on_epoch_end(row)
        finally:
            if bar is not None:
                bar.close()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return TrainResult(
            history=self.history,
            best_epoch=self.best_epoch or self.epoch,
            stopped_early=self.stopped_early,
            seconds=time.perf_counter() - start,
            resumed_seconds=self.resumed_seconds,
        )

    def _early_stopping(self, val_loss: float) -> None:
        """Track the best weights; stop after ``patience`` epochs without improvement.

        Patience only counts once the KL warm-up is over, since the objective changes
        until then.
        """
        if val_loss < self.best_val:
            self.best_val = val_loss
            self.best_epoch = self.epoch + 1
            self.bad_epochs = 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        elif self.epoch + 1 > self.cfg.kl_warmup_epochs:
            self.bad_epochs += 1
            if self.bad_epochs >= self.cfg.patience:
                self.finished = self.stopped_early = True
        if self.epoch + 1 <= self.cfg.kl_warmup_epochs:
            # The objective is still changing: judge only fully weighted epochs.
            self.best_val = math.inf


def train(
    model: GenerativeModel,
    data: Sequence[torch.Tensor],
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    data_id: str | None = None,
) -> TrainResult:
    """Train ``model`` in place on in-memory tensors and return its history.

    Parameters
    ----------
    model : GenerativeModel
        Any model implementing ``loss(*batch, kl_weight=...) -> LossOutput``.
    data : sequence of torch.Tensor
        Aligned tensors, first dimension = examples; images may stay uint8 (0-255) and
        are converted to float per batch.
    config : TrainConfig
        Loop settings.
    run_dir : path, optional
        Where to checkpoint after every epoch (``train_state.safetensors``, ``history.csv``).
    resume : bool
        Continue from ``run_dir``'s saved state when there is one. With the same seed on
        the same machine (and the same number of processes), the result equals an
        uninterrupted run bit for bit.
    on_epoch_end : callable, optional
        Called with each epoch's history row after it is checkpointed (logging, or
        benchmarks that interleave other work between epochs); its time is not counted in
        the row's ``seconds``.
    data_id : str, optional
        A fingerprint of what the run trains on, kept in its checkpoints: a resume with
        another one is refused.

    Notes
    -----
    Started by ``torchrun`` (``WORLD_SIZE > 1`` in the environment), ``train`` joins the
    process group (``nccl`` on CUDA, ``gloo`` otherwise) and trains data-parallel: every
    process passes the same ``data`` and ``config``, ``batch_size`` is per process, and
    only rank 0 writes to ``run_dir`` (see the module docstring).

    Returns
    -------
    TrainResult
        History (one dict per epoch), best epoch, whether it stopped early, wall seconds
        (of this call, and of the run before a resume: ``train_seconds`` of the saved
        state, or its epochs' ``seconds`` for a state saved without it). The model holds
        the best validation weights (the last ones without validation).
    """
    run_path = Path(run_dir) if run_dir is not None else None
    distributed.init_from_env(resolve_device(config.device))
    rank = distributed.rank()
    with torch.random.fork_rng(devices=_rng_devices()):  # leave the caller's RNG untouched
        torch.manual_seed(config.random_state + rank * RANK_SEED_STRIDE)
        loop = _Loop(model, data, config, run_path, on_epoch_end, data_id)
        if run_path is not None and rank == 0:
            checkpoint.remove_stale_temps(run_path)
        if not (resume and run_path is not None and loop.restore()):
            loop.save()  # epoch 0: a resume after an early kill restarts identically
        try:
            return loop.run()
        finally:
            loop.release_step_fn()


def _rng_devices() -> list[int]:
    """CUDA devices whose RNG ``train`` saves and restores around the run (none on CPU)."""
    if distributed.env_world_size() > 1 and torch.cuda.is_available():
        return [distributed.default_device_index()]
    return []


def seed_from(random_state: int | np.random.Generator | None) -> int:
    """Return an integer seed from an sklearn-style ``random_state`` (None draws a fresh one).

    Raises
    ------
    ConfigError
        If ``random_state`` is not None, an integer in ``0 .. 2**32 - 1``, a
        ``numpy.random.RandomState`` or a ``numpy.random.Generator``.
    """
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if 0 <= random_state < 2**32:
            return int(random_state)
    elif random_state is None:
        return int(np.random.SeedSequence().entropy % (2**31))
    elif isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    elif isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    raise ConfigError(
        "random_state must be None, an integer in 0..2**32-1, a numpy RandomState or a "
        f"numpy Generator; got {random_state!r}"
    )
