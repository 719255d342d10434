"""vaekit's Adam is ``torch.optim.Adam(fused=True)`` to the bit, and its state round-trips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaekit.training.adam import Adam


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


def test_state_round_trip_continues_exactly() -> None:
    full, part = _model(), _model()
    opt_full = Adam(full.parameters(), lr=1e-2)
    _train(full, opt_full, range(10))

    opt_a = Adam(part.parameters(), lr=1e-2)
    _train(part, opt_a, range(4))
    tensors, groups = opt_a.state_tensors()
    tensors = {k: v.clone() for k, v in tensors.items()}
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
    opt.load_state_tensors(tensors, sd["param_groups"])
    _train(ref, topt, range(5, 9))
    _train(ours, opt, range(5, 9))
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("tamper", ["shape", "index", "name", "groups"])
def test_state_that_does_not_fit_is_refused(tamper: str) -> None:
    model = _model()
    opt = Adam(model.parameters(), lr=1e-2)
    _train(model, opt, range(5))
    tensors, groups = opt.state_tensors()
    if tamper == "shape":
        tensors["optim.0.exp_avg"] = torch.zeros(2, 2)
    elif tamper == "index":
        tensors["optim.9.exp_avg"] = tensors.pop("optim.0.exp_avg")
    elif tamper == "name":
        tensors["optim.0.other"] = tensors.pop("optim.0.exp_avg_sq")
    else:
        groups = [{**groups[0], "params": [0, 1]}]
    with pytest.raises(ValueError, match="does not fit"):
        Adam(model.parameters(), lr=1e-2).load_state_tensors(tensors, groups)
