"""Adam (Kingma & Ba 2015) for the training loop, on PyTorch's fused Adam kernel.

The arithmetic is exactly that of ``torch.optim.Adam(params, lr, fused=True)``: the same
kernel (``torch._fused_adam_``) on the same state (a float32 step count and the two moment
estimates per parameter, created when the parameter first has a gradient), so the weights
after any number of steps are identical to the bit (``tests/test_adam.py``). Two costs of
``torch.optim`` made it worth the thirty lines:

* its first call imports ``torch._dynamo`` (about 3 s on a 2-core CPU), longer than training
  a small model on ``digits``, and paid by every ``vaekit`` command that trains;
* each ``step()`` spends about 0.3-0.6 ms on Python bookkeeping (hooks, profiler records,
  regrouping the tensors), 4-7 % of a step of the 784-400-20 MLP VAE on such a CPU.

The state travels in checkpoints as flat tensors (``optim.<index>.<name>``, safetensors hold
no Python objects) plus a small JSON list of parameter groups, in the layout that
``torch.optim.Adam.state_dict()`` gives, so runs saved before this class existed resume.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

#: Names of the per-parameter state tensors, as ``torch.optim.Adam`` calls them.
STATE_NAMES = ("step", "exp_avg", "exp_avg_sq")


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

    # -- checkpoints ---------------------------------------------------------------------
    def state_tensors(self) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
        """``({"optim.<i>.<name>": tensor}, param_groups)`` for a checkpoint."""
        tensors = {f"optim.{i}.{k}": v for i, st in self.state.items() for k, v in st.items()}
        groups = [{**g, "betas": list(g["betas"])} for g in self.param_groups]
        return tensors, groups

    def load_state_tensors(
        self, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]
    ) -> None:
        """Restore what ``state_tensors`` gave (other keys of ``tensors`` are ignored).

        Raises ``ValueError`` when the state does not fit these parameters.
        """
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, val in tensors.items():
            if name.startswith("optim."):
                _, i, key = name.split(".", 2)
                state.setdefault(int(i), {})[key] = val
        fits = len(groups) == 1 and len(groups[0].get("params", ())) == len(self.params)
        for i, st in state.items():
            p = self.params[i] if 0 <= i < len(self.params) else None
            fits = fits and p is not None and set(st) == set(STATE_NAMES)
            fits = fits and st["exp_avg"].shape == p.shape == st["exp_avg_sq"].shape
        if not fits:
            raise ValueError("the optimiser state does not fit these parameters")
        self.state = {
            i: {
                "step": st["step"].to(device=self.params[i].device, dtype=torch.float32),
                "exp_avg": st["exp_avg"].to(self.params[i]),
                "exp_avg_sq": st["exp_avg_sq"].to(self.params[i]),
            }
            for i, st in state.items()
        }
        g = groups[0]
        self.param_groups[0].update(lr=g["lr"], betas=tuple(g["betas"]), eps=g["eps"])
