"""vaekit's Adam is ``torch.optim.Adam(fused=True)`` to the bit, and its state round-trips."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from vaekit.training.adam import FLUSH_EVERY, Adam


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _train(model: nn.Module, opt, steps: range, lr: float = 1e-2) -> None:
    """Steps with a schedule; the last layer has no gradient for the first three steps
    (like VaDE's prior while the autoencoder pre-trains), so its state starts later."""
    for s in steps:
        opt.param_groups[0]["lr"] = lr / (1 + s)
        g = torch.Generator().manual_seed(s)
        x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
        if s < 3:
            loss = model[:2](x).pow(2).mean()
        else:
            loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_same_weights_and_state_as_torch_fused_adam() -> None:
    ours, ref = _model(), _model()
    opt = Adam(ours.parameters(), lr=1e-2)
    topt = torch.optim.Adam(ref.parameters(), lr=1e-2, fused=True)
    _train(ours, opt, range(12))
    _train(ref, topt, range(12))
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    tstate = topt.state_dict()["state"]
    assert opt.state.keys() == tstate.keys()
    for i, st in opt.state.items():
        for k, v in st.items():
            assert torch.equal(v, tstate[i][k]), (i, k)
            assert (v.dtype, v.device) == (tstate[i][k].dtype, tstate[i][k].device), (i, k)


def test_state_round_trip_continues_exactly() -> None:
    full, part = _model(), _model()
    opt_full = Adam(full.parameters(), lr=1e-2)
    _train(full, opt_full, range(10))

    opt_a = Adam(part.parameters(), lr=1e-2)
    _train(part, opt_a, range(4))
    tensors, groups = opt_a.state_tensors()
    tensors = {k: v.clone() for k, v in tensors.items()}
    groups = json.loads(json.dumps(groups))  # as the checkpoint keeps them
    opt_b = Adam(part.parameters(), lr=123.0)  # a fresh optimiser, as after a restart
    opt_b.load_state_tensors(tensors, groups)
    _train(part, opt_b, range(4, 10))
    for a, b in zip(full.parameters(), part.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loads_the_state_torch_optim_saved() -> None:
    """Runs checkpointed by earlier vaekit versions (torch.optim.Adam's layout) resume."""
    ref, ours = _model(), _model()
    topt = torch.optim.Adam(ref.parameters(), lr=1e-2, fused=True)
    _train(ref, topt, range(5))
    sd = topt.state_dict()
    tensors = {f"optim.{i}.{k}": v.clone() for i, st in sd["state"].items() for k, v in st.items()}
    ours.load_state_dict(ref.state_dict())
    opt = Adam(ours.parameters(), lr=1e-2)
    opt.load_state_tensors(tensors, json.loads(json.dumps(sd["param_groups"])))
    _train(ref, topt, range(5, 9))
    _train(ours, opt, range(5, 9))
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


def test_torch_optim_loads_the_state_it_saves() -> None:
    """Runs checkpointed now resume under vaekit versions that still used torch.optim."""
    ours, ref = _model(), _model()
    opt = Adam(ours.parameters(), lr=1e-2)
    _train(ours, opt, range(5))
    tensors, groups = opt.state_tensors()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, v in tensors.items():
        _, i, key = name.split(".", 2)
        state.setdefault(int(i), {})[key] = v.clone()
    ref.load_state_dict(ours.state_dict())
    topt = torch.optim.Adam(ref.parameters(), lr=1e-2, fused=True)
    topt.load_state_dict({"state": state, "param_groups": json.loads(json.dumps(groups))})
    _train(ours, opt, range(5, 9))
    _train(ref, topt, range(5, 9))
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


TAMPERED = ["shape", "index", "name", "params", "groups", "betas", "eps", "step", "step size"]


@pytest.mark.parametrize("tamper", TAMPERED)
def test_state_that_does_not_fit_is_refused_and_nothing_changes(tamper: str) -> None:
    model = _model()
    opt = Adam(model.parameters(), lr=1e-2)
    _train(model, opt, range(5))
    tensors, groups = opt.state_tensors()
    tensors = {k: v.clone() for k, v in tensors.items()}
    group = groups[0]
    if tamper == "shape":
        tensors["optim.0.exp_avg"] = torch.zeros(2, 2)
    elif tamper == "index":  # every tensor of parameter 3 moved to a parameter that is not there
        for key in ("step", "exp_avg", "exp_avg_sq"):
            tensors[f"optim.9.{key}"] = tensors.pop(f"optim.3.{key}")
    elif tamper == "name":
        tensors["optim.0.other"] = tensors.pop("optim.0.exp_avg_sq")
    elif tamper == "params":
        group["params"] = [0, 1]
    elif tamper == "groups":
        groups = [[0, 1, 2, 3]]
    elif tamper == "betas":
        group["betas"] = [0.9]
    elif tamper == "eps":
        group["eps"] = "x"
    elif tamper == "step":
        tensors["optim.0.step"] = torch.tensor(-1.0)
    else:
        tensors["optim.0.step"] = torch.tensor([5.0, 5.0])
    fresh = Adam(model.parameters(), lr=1e-2)
    with pytest.raises(ValueError):
        fresh.load_state_tensors(tensors, groups)
    assert fresh.state == {} and fresh.param_groups[0]["betas"] == (0.9, 0.999)


def _train_with_blank_pixel(model: nn.Module, opt, steps: range) -> None:
    """Input 0 is blank in every image, so its column of the first weight has gradient
    exactly zero after step 0 and its first moments decay towards zero."""
    for s in steps:
        g = torch.Generator().manual_seed(s)
        x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
        if s > 0:
            x[:, 0] = 0.0
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()


def test_subnormal_moments_are_flushed_and_weights_stay_torchs() -> None:
    """Where torch's first moments get stuck on subnormal numbers (x86's slow path), ours
    are zero after the next flush; the weights stay torch's to the bit, and a resumed
    optimiser flushes on the same steps."""
    ours, ref, resumed = _model(), _model(), _model()
    opt = Adam(ours.parameters(), lr=1e-2)
    topt = torch.optim.Adam(ref.parameters(), lr=1e-2, fused=True)
    steps = range(32 * FLUSH_EVERY)  # 0.9 ** 800 times a moment of ~1e-2 is subnormal
    _train_with_blank_pixel(ours, opt, steps)
    _train_with_blank_pixel(ref, topt, steps)
    tiny = torch.finfo(torch.float32).tiny
    stuck = topt.state[ref[0].weight]["exp_avg"][:, 0]
    assert (stuck != 0).all() and (stuck.abs() < tiny).all()  # what the flush is for
    assert (opt.state[0]["exp_avg"][:, 0] == 0).all()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)

    half = len(steps) // 2 + 3  # resume between two flushes
    opt_a = Adam(resumed.parameters(), lr=1e-2)
    _train_with_blank_pixel(resumed, opt_a, steps[:half])
    tensors, groups = opt_a.state_tensors()
    opt_b = Adam(resumed.parameters(), lr=1e-2)
    opt_b.load_state_tensors({k: v.clone() for k, v in tensors.items()}, groups)
    assert opt_b.n_steps == half
    _train_with_blank_pixel(resumed, opt_b, steps[half:])
    for a, b in zip(ours.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    for st, st_b in zip(opt.state.values(), opt_b.state.values(), strict=True):
        assert all(torch.equal(st[k], st_b[k]) for k in st)
