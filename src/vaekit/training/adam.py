"""Adam (Kingma & Ba 2015) for the training loop, on PyTorch's fused Adam kernel.

The arithmetic is exactly that of ``torch.optim.Adam(params, lr, fused=True)``: the same
kernel (``torch._fused_adam_``) on the same state (a float32 step count and the two moment
estimates per parameter, created when the parameter first has a gradient), so the weights
after any number of steps are identical to the bit (``tests/test_adam.py``). Two costs of
``torch.optim`` made it worth a small class of our own:

* its first call imports ``torch._dynamo`` (about 3 s on a 2-core CPU), longer than training
  a small model on ``digits``, and paid by every ``vaekit`` command that trains;
* each ``step()`` spends a few tenths of a millisecond on Python bookkeeping (hooks,
  profiler records, regrouping the tensors): about a quarter of the optimiser's time in a
  step of the 784-400-20 MLP VAE on such a CPU, per ``torch.profiler``.

One thing differs, and only where the arithmetic is slow: every ``FLUSH_EVERY`` steps the
moment estimates smaller than float32's smallest normal number (about 1.2e-38) are set to
zero. A weight whose gradient stays exactly zero (a ReLU unit that no image of the batch
turns on, a pixel that is blank in every image of the batch) has its first moment decay by
``beta1`` a step; once subnormal it no longer reaches zero, since ``0.9`` times the smallest
subnormals rounds back to them, and x86 CPUs compute on subnormal operands through a slow
microcode path. After three epochs of the 784-400-20 MLP VAE on Fashion-MNIST, 45 % of the
first layer's first moments were subnormal and a training step was about a third slower
(``BENCHMARKS.md``). Such a moment moves its weight by under ``lr * 1.2e-29`` a step
(the denominator is at least ``eps = 1e-8``), less than half a float32 ulp of any weight
larger than ``lr * 2e-22`` in magnitude: the weights stay those of
``torch.optim.Adam(fused=True)``, to the bit in ``tests/test_adam.py``. The flush depends on
the step count only, which checkpoints keep, so a resumed run flushes on the same steps.

The state travels in checkpoints as flat tensors (``optim.<index>.<name>``, safetensors hold
no Python objects) plus a small JSON list of parameter groups, in the layout that
``torch.optim.Adam.state_dict()`` gives, so runs saved before this class existed resume,
and runs saved now resume under versions of vaekit that still used ``torch.optim``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

#: Names of the per-parameter state tensors, as ``torch.optim.Adam`` calls them.
STATE_NAMES = ("step", "exp_avg", "exp_avg_sq")
#: The options of ``torch.optim.Adam(fused=True)`` that this class fixes, written into
#: checkpoints beside ``lr``, ``betas`` and ``eps`` so that ``torch.optim`` can read them.
FIXED_OPTIONS = {
    "weight_decay": 0.0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": True,
    "decoupled_weight_decay": False,
}

#: Moment estimates below float32's normal range are set to zero every this many steps.
FLUSH_EVERY = 32


def _flush_subnormals(tensors: list[torch.Tensor]) -> None:
    """Set the subnormal (and denormal-sized) entries of ``tensors`` to zero, in place."""
    for t in tensors:
        t.masked_fill_(t.abs() < torch.finfo(t.dtype).tiny, 0.0)


class Adam:
    """Adam without weight decay or AMSGrad over one list of parameters.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
        The parameters to train, all of one dtype and device.
    lr : float
        Learning rate; the loop changes ``param_groups[0]["lr"]`` for its schedule.
    betas : (float, float)
        Decay rates of the first and second moment estimates.
    eps : float
        Added to the denominator for numerical stability.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        self.param_groups: list[dict[str, Any]] = [
            {"lr": lr, "betas": tuple(betas), "eps": eps, "params": list(range(len(self.params)))}
        ]
        #: Per-parameter state by index, ``{"step", "exp_avg", "exp_avg_sq"}``.
        self.state: dict[int, dict[str, torch.Tensor]] = {}
        #: Steps that updated a parameter so far, over resumes: the most any parameter took.
        self.n_steps = 0

    def zero_grad(self) -> None:
        """Drop every gradient (backward then hands its result over without a copy)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        params, grads, avgs, sqs, steps = [], [], [], [], []
        for i, p in enumerate(self.params):
            if p.grad is None:  # e.g. VaDE's prior while the autoencoder pre-trains
                continue
            st = self.state.get(i)
            if st is None:
                st = self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            params.append(p)
            grads.append(p.grad)
            avgs.append(st["exp_avg"])
            sqs.append(st["exp_avg_sq"])
            steps.append(st["step"])
        if not params:
            return
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params, grads, avgs, sqs, [], steps,
            lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"],
            amsgrad=False, maximize=False,
        )  # fmt: skip
        self.n_steps += 1
        if self.n_steps % FLUSH_EVERY == 0:
            _flush_subnormals(avgs + sqs)

    # -- checkpoints ---------------------------------------------------------------------
    def state_tensors(self) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
        """``({"optim.<i>.<name>": tensor}, param_groups)`` for a checkpoint."""
        tensors = {f"optim.{i}.{k}": v for i, st in self.state.items() for k, v in st.items()}
        groups = [{**g, **FIXED_OPTIONS, "betas": list(g["betas"])} for g in self.param_groups]
        return tensors, groups

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], groups: Any) -> None:
        """Restore what ``state_tensors`` gave (other keys of ``tensors`` are ignored).

        Raises ``ValueError`` when the state does not fit these parameters or is not a
        valid Adam state; nothing is changed then.
        """
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, val in tensors.items():
            if name.startswith("optim."):
                _, i, key = name.split(".", 2)
                if not i.isdigit():
                    raise ValueError(f"the optimiser state has a bad name {name!r}")
                state.setdefault(int(i), {})[key] = val
        group = groups[0] if isinstance(groups, list) and len(groups) == 1 else None
        fits = isinstance(group, dict) and group.get("params") == list(range(len(self.params)))
        for i, st in state.items():
            p = self.params[i] if i < len(self.params) else None
            fits = fits and p is not None and set(st) == set(STATE_NAMES)
            fits = fits and st["exp_avg"].shape == p.shape == st["exp_avg_sq"].shape
        if not fits:
            raise ValueError("the optimiser state does not fit these parameters")
        lr, betas, eps = group.get("lr"), group.get("betas"), group.get("eps")
        if not (
            _is_real(lr)
            and lr >= 0
            and isinstance(betas, list | tuple)
            and len(betas) == 2
            and all(_is_real(b) and 0 <= b < 1 for b in betas)
            and _is_real(eps)
            and eps >= 0
        ):
            raise ValueError(f"bad optimiser options (lr={lr}, betas={betas}, eps={eps})")
        for st in state.values():
            step = st["step"].double()
            if step.numel() != 1 or not (step.isfinite() & (step >= 0) & (step == step.round())):
                raise ValueError("the optimiser state has a bad step count")
        self.state = {
            i: {
                "step": st["step"].reshape(()).to(self.params[i].device, torch.float32),
                "exp_avg": st["exp_avg"].to(self.params[i]),
                "exp_avg_sq": st["exp_avg_sq"].to(self.params[i]),
            }
            for i, st in state.items()
        }
        self.param_groups[0].update(
            lr=float(lr), betas=(float(betas[0]), float(betas[1])), eps=float(eps)
        )
        self.n_steps = max((int(st["step"]) for st in self.state.values()), default=0)


def _is_real(v: Any) -> bool:
    """Whether ``v`` is a finite int or float (not a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
