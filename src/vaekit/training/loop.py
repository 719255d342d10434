"""The one training loop shared by every model.

Batching, Adam with a cosine schedule, KL warm-up, early stopping, NaN guard,
checkpoint/resume and a progress bar.

The loop knows models only through ``model.loss(*batch, kl_weight=w) -> LossOutput``.
Data are in-memory tensors (uint8 images are converted to float per batch); a batch is a
slice of a seeded permutation, so there is no per-item Python work.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vaekit import checkpoint
from vaekit.errors import CheckpointError, ConfigError, TrainingDivergedError
from vaekit.models.base import GenerativeModel

#: The cosine schedule decays the learning rate to this fraction of its start value.
MIN_LR_FRACTION = 0.1


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
        Adam's initial step size; decays by a cosine to ``MIN_LR_FRACTION`` of it.
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
        "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
    verbose : int
        0 silent; 1 progress bar on a terminal; 2 also prints one line per epoch.
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

    def __post_init__(self) -> None:
        checks = {
            "batch_size": self.batch_size >= 1,
            "max_epochs": self.max_epochs >= 1,
            "learning_rate": self.learning_rate > 0,
            "kl_warmup_epochs": self.kl_warmup_epochs >= 0,
            "validation_fraction": 0 <= self.validation_fraction < 1,
            "patience": self.patience >= 1,
            "lr_schedule": self.lr_schedule in ("cosine", "constant"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"invalid {name}={getattr(self, name)!r}")


@dataclass
class TrainResult:
    """What ``train`` returns: per-epoch history and how training ended."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was asked for but CUDA is not available; use 'auto'")
    return dev


def _to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; float tensors pass through."""
    if batch.dtype == torch.uint8:
        return batch.to(torch.float32).mul_(1.0 / 255.0)
    return batch


def _lr_at(cfg: TrainConfig, epoch: int) -> float:
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    cos = 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.max_epochs))
    return cfg.learning_rate * (MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * cos)


def _kl_weight_at(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    if cfg.kl_warmup_epochs == 0:
        return 1.0
    return min(1.0, (epoch + step / steps_per_epoch) / cfg.kl_warmup_epochs)


def _split(n: int, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded train/validation index split."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.random_state))
    n_val = round(n * cfg.validation_fraction)
    if cfg.validation_fraction > 0 and (n_val < 1 or n - n_val < 1):
        raise ConfigError(
            f"validation_fraction={cfg.validation_fraction} leaves an empty split of {n} "
            "images; use more data or validation_fraction=0"
        )
    return perm[n_val:], perm[:n_val]


# --- optimiser state <-> flat tensors (for safetensors, which holds no Python objects) ---
def _optim_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    sd = opt.state_dict()
    tensors = {
        f"optim.{pid}.{key}": val
        for pid, st in sd["state"].items()
        for key, val in st.items()
        if isinstance(val, torch.Tensor)
    }
    return tensors, sd["param_groups"]


def _optim_from_flat(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: Any
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": groups})


def _history_csv(history: Sequence[dict[str, float]]) -> str:
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
    return buf.getvalue()


class _Loop:
    """State of one training run; ``run`` drives it epoch by epoch."""

    def __init__(
        self,
        model: GenerativeModel,
        data: Sequence[torch.Tensor],
        cfg: TrainConfig,
        run_dir: Path | None,
    ):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.run_dir = run_dir
        n = len(data[0])
        train_idx, val_idx = _split(n, cfg)
        # Keep the data where the model is when it fits; slicing then costs no copy.
        self.train_data = [t[train_idx].to(self.device) for t in data]
        self.val_data = [t[val_idx].to(self.device) for t in data] if len(val_idx) else None
        self.n_train = len(train_idx)
        self.steps_per_epoch = math.ceil(self.n_train / cfg.batch_size)
        # The fused kernel updates all parameters in one pass (fewer Python-level ops per
        # step); it gives the same arithmetic as the per-tensor loop, only faster.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate, fused=True)
        self.order_gen = torch.Generator().manual_seed(cfg.random_state + 1)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.finished = False
        self.stopped_early = False

    # -- checkpointing -----------------------------------------------------------------
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim, self._groups = _optim_to_flat(self.optimizer)
        tensors.update(optim)
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.order"] = self.order_gen.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return tensors

    def save(self) -> None:
        if self.run_dir is None:
            return
        tensors = self._state_tensors()
        info = {
            "epoch": self.epoch,
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "optimizer_param_groups": self._groups,
            "train_config": asdict(self.cfg),
            "history": self.history,
        }
        checkpoint.save_train_state(self.run_dir, tensors, info)
        checkpoint.atomic_write_text(
            self.run_dir / checkpoint.HISTORY_FILE, _history_csv(self.history)
        )

    def restore(self) -> bool:
        """Load the saved state; ``False`` when there is none (start from scratch)."""
        assert self.run_dir is not None
        loaded = checkpoint.load_train_state(self.run_dir)
        if loaded is None:
            return False
        tensors, info = loaded
        saved_cfg = {k: v for k, v in info.get("train_config", {}).items() if k != "verbose"}
        now_cfg = {k: v for k, v in asdict(self.cfg).items() if k != "verbose"}
        if saved_cfg != now_cfg:
            diff = sorted(k for k in now_cfg if saved_cfg.get(k) != now_cfg[k])
            raise CheckpointError(
                f"cannot resume '{self.run_dir}': training settings differ ({', '.join(diff)});"
                " resume with the original settings or use a new --out"
            )
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.model.load_state_dict(model_sd)
        except RuntimeError:
            raise CheckpointError(
                f"'{self.run_dir / checkpoint.STATE_FILE}' does not fit this model; "
                "it was modified or belongs to another run — use a new --out"
            ) from None
        _optim_from_flat(self.optimizer, tensors, info["optimizer_param_groups"])
        best = {k[5:]: v.to(self.device) for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None
        torch.set_rng_state(tensors["rng.torch"])
        self.order_gen.set_state(tensors["rng.order"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.epoch = info["epoch"]
        self.best_val = info["best_val"] if info["best_val"] is not None else math.inf
        self.best_epoch = info["best_epoch"]
        self.bad_epochs = info["bad_epochs"]
        self.finished = info["finished"]
        self.stopped_early = info["stopped_early"]
        self.history = info["history"]
        return True

    # -- one epoch ---------------------------------------------------------------------
    def _train_epoch(self, bar: tqdm | None) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(cfg, self.epoch)
        perm = torch.randperm(self.n_train, generator=self.order_gen).to(self.device)
        sums: dict[str, torch.Tensor] = {}
        for step in range(self.steps_per_epoch):
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            batch = [_to_float(t[idx]) for t in self.train_data]
            w = _kl_weight_at(cfg, self.epoch, step, self.steps_per_epoch)
            out = model.loss(*batch, kl_weight=w)
            self.optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            self.optimizer.step()
            k = len(idx)
            for name, val in (
                ("loss", out.total),
                ("reconstruction", out.reconstruction),
                ("kl", out.kl),
                *out.extras.items(),
            ):
                v = val.detach() * k
                sums[name] = sums[name] + v if name in sums else v
            if bar is not None:
                bar.update(1)
        row = {name: float(v) / self.n_train for name, v in sums.items()}
        if not all(math.isfinite(v) for v in row.values()):
            raise TrainingDivergedError(
                f"training diverged at epoch {self.epoch + 1}: the loss became NaN or infinite;"
                " lower --lr (learning_rate) or check the data; the last good checkpoint"
                " is kept"
            )
        row["kl_weight"] = _kl_weight_at(cfg, self.epoch + 1, 0, 1)  # at the end of the epoch
        row["lr"] = _lr_at(cfg, self.epoch)
        return row

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        assert self.val_data is not None
        self.model.eval()
        n = len(self.val_data[0])
        sums: dict[str, float] = {}
        bs = max(self.cfg.batch_size, 1024)
        for start in range(0, n, bs):
            batch = [_to_float(t[start : start + bs]) for t in self.val_data]
            out = self.model.loss(*batch, kl_weight=1.0)
            k = len(batch[0])
            for name, val in (
                ("val_loss", out.total),
                ("val_reconstruction", out.reconstruction),
                ("val_kl", out.kl),
            ):
                sums[name] = sums.get(name, 0.0) + float(val) * k
        return {name: v / n for name, v in sums.items()}

    def run(self) -> TrainResult:
        cfg = self.cfg
        start = time.perf_counter()
        show = cfg.verbose >= 1 and sys.stderr.isatty()
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
                if self.val_data is not None:
                    row.update(self._validate())
                    self._early_stopping(row["val_loss"])
                row["seconds"] = time.perf_counter() - t0
                self.history.append(row)
                self.epoch += 1
                if self.epoch >= cfg.max_epochs:
                    self.finished = True
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.2f}", refresh=False)
                if cfg.verbose >= 2:
                    print(
                        " ".join(f"{k}={v:.4g}" for k, v in row.items()),
                        file=sys.stderr,
                        flush=True,
                    )
                self.save()
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
        the same machine, the result equals an uninterrupted run bit for bit.

    Returns
    -------
    TrainResult
        History (one dict per epoch), best epoch, whether it stopped early, wall seconds.
        The model holds the best validation weights (the last ones without validation).
    """
    run_path = Path(run_dir) if run_dir is not None else None
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(config.random_state)
        loop = _Loop(model, data, config, run_path)
        if run_path is not None:
            checkpoint.remove_stale_temps(run_path)
        if not (resume and run_path is not None and loop.restore()):
            loop.save()  # epoch 0: a resume after an early kill restarts identically
        return loop.run()


def seed_from(random_state: int | np.random.Generator | None) -> int:
    """Return an integer seed from an sklearn-style ``random_state`` (None draws a fresh one)."""
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**31))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    return int(random_state.integers(2**31 - 1))
