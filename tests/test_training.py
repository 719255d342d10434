import csv
import json
import math
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.datasets import load_digits

from vaekit import checkpoint
from vaekit.errors import CheckpointError, ConfigError, TrainingDivergedError
from vaekit.models import LossOutput, VAEModule
from vaekit.training import TrainConfig, train
from vaekit.training.loop import check_split, min_split_size


@pytest.fixture(scope="module")
def x():
    imgs = (load_digits().images[:300] * 255 / 16).round().astype(np.uint8)
    return torch.from_numpy(imgs[:, None])


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return VAEModule((1, 8, 8), latent_dim=4, arch="mlp", hidden_dims=(32,), **kw)


def cfg(**kw):
    base = dict(max_epochs=4, batch_size=64, kl_warmup_epochs=2, random_state=0)
    return TrainConfig(**{**base, **kw})


def weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights(x):
    m1, m2 = model(), model()
    train(m1, [x], cfg())
    train(m2, [x], cfg())
    assert same(weights(m1), weights(m2))
    m3 = model()
    train(m3, [x], cfg(random_state=1))
    assert not same(weights(m1), weights(m3))


def test_training_lowers_the_loss_and_records_history(x, tmp_path):
    m = model()
    res = train(m, [x], cfg(max_epochs=6), run_dir=tmp_path)
    assert len(res.history) == 6
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert [int(float(r["epoch"])) for r in rows] == list(range(1, 7))
    assert {"loss", "reconstruction", "kl", "val_loss", "lr", "kl_weight"} <= rows[0].keys()


def test_does_not_touch_global_rng(x):
    m = model()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(m, [x], cfg(max_epochs=1))
    assert torch.equal(torch.rand(3), expected)


def test_kl_warmup_and_schedule(x):
    res = train(model(), [x], cfg(max_epochs=4, kl_warmup_epochs=2))
    assert [round(h["kl_weight"], 3) for h in res.history] == [0.5, 1.0, 1.0, 1.0]
    lrs = [h["lr"] for h in res.history]
    assert lrs[0] == pytest.approx(1e-3) and lrs == sorted(lrs, reverse=True)


def test_early_stopping_restores_best_weights(x):
    m = model()
    res = train(m, [x], cfg(max_epochs=200, patience=2, kl_warmup_epochs=0, learning_rate=0.05))
    assert res.stopped_early and len(res.history) < 200
    best = min(h["val_loss"] for h in res.history)
    assert res.history[res.best_epoch - 1]["val_loss"] == best


class Exploding(VAEModule):
    """Loss turns NaN at the third epoch."""

    calls = 0

    def loss(self, x, kl_weight=1.0):
        out = super().loss(x, kl_weight)
        type(self).calls += 1
        if type(self).calls > 2 * 4:  # 300 images * 0.9 / 64 -> 5 steps per epoch... roughly
            return LossOutput(out.total * math.nan, out.reconstruction, out.kl)
        return out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(x, tmp_path):
    torch.manual_seed(0)
    m = Exploding((1, 8, 8), latent_dim=4, arch="mlp", hidden_dims=(32,))
    with pytest.raises(TrainingDivergedError, match="NaN") as err:
        train(m, [x], cfg(validation_fraction=0.0, max_epochs=10), run_dir=tmp_path)
    tensors, info = checkpoint.load_train_state(tmp_path)
    assert info["epoch"] >= 1
    assert f"keeps epoch {info['epoch']}, but resuming keeps the run's settings" in str(err.value)
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))


@pytest.mark.parametrize("input_dropout", [0.0, 0.3])  # 0.3: the dropout masks resume too
def test_resume_after_interruption_equals_uninterrupted(x, tmp_path, input_dropout):
    full = model(input_dropout=input_dropout)
    train(full, [x], cfg(max_epochs=5), run_dir=tmp_path / "full")

    class Stop(Exception):
        pass

    class Interrupted(VAEModule):
        steps = 0

        def loss(self, x, kl_weight=1.0):
            type(self).steps += 1
            if type(self).steps == 13:  # in the middle of the third epoch
                raise Stop
            return super().loss(x, kl_weight)

    torch.manual_seed(0)
    part = Interrupted(
        (1, 8, 8), latent_dim=4, arch="mlp", hidden_dims=(32,), input_dropout=input_dropout
    )
    with pytest.raises(Stop):
        train(part, [x], cfg(max_epochs=5), run_dir=tmp_path / "part")
    # A different init: everything must come from the checkpoint.
    resumed = model(seed=99, input_dropout=input_dropout)
    res = train(resumed, [x], cfg(max_epochs=5), run_dir=tmp_path / "part", resume=True)
    assert len(res.history) == 5
    assert same(weights(full), weights(resumed))


def test_resume_with_other_settings_is_refused(x, tmp_path):
    train(model(), [x], cfg(max_epochs=2), run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(model(), [x], cfg(max_epochs=2, batch_size=32), run_dir=tmp_path, resume=True)


@pytest.mark.parametrize("tamper", ["moment shape", "no groups"])
def test_resume_with_a_tampered_optimiser_state_is_refused(x, tmp_path, tamper):
    train(model(), [x], cfg(max_epochs=2), run_dir=tmp_path)
    tensors, info = checkpoint.load_train_state(tmp_path)
    if tamper == "moment shape":
        tensors["optim.0.exp_avg"] = torch.zeros(3)
    else:
        info["optimizer_param_groups"] = []
    checkpoint.save_train_state(tmp_path, tensors, info)
    with pytest.raises(CheckpointError, match=r"optimiser state in .*train_state\.safetensors"):
        train(model(), [x], cfg(max_epochs=2), run_dir=tmp_path, resume=True)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        ("validation_fraction", 1.0, "validation_fraction must be a number in [0, 1)"),
        ("validation_fraction", "a", "got 'a'"),  # was a ValueError from float('a')
        ("kl_warmup_epochs", 2.5, "kl_warmup_epochs must be an integer"),  # was cut to 2
        ("kl_warmup_epochs", -1, "an integer >= 0 (0: no warm-up)"),  # was 'invalid ...'
        ("max_epochs", True, "max_epochs must be an integer"),
        ("lr_schedule", "step", "'cosine' or 'constant'"),
    ],
)
def test_invalid_config_says_what_it_must_be(field, value, says):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    assert says in str(info.value)


@pytest.mark.parametrize(("fraction", "need"), [(0.0, 1), (0.1, 6), (0.25, 3), (0.5, 2), (0.9, 5)])
def test_min_split_size_is_the_fewest_images_that_split(fraction, need):
    assert min_split_size(fraction) == need
    for n in range(need, need + 50):  # from there on every size splits
        n_val = check_split(n, fraction)
        assert (n_val == 0) if fraction == 0 else 1 <= n_val < n
    if need > 1:
        with pytest.raises(ConfigError, match=f"use at least {need} images"):
            check_split(need - 1, fraction)


def test_config_takes_numpy_scalars_as_plain_numbers():
    cfg = TrainConfig(max_epochs=np.int64(3), validation_fraction=np.float32(0.25))
    assert type(cfg.max_epochs) is int and type(cfg.validation_fraction) is float


def _finished_run(tmp_path):
    from vaekit import VAE

    x = (load_digits().images[:200] / 16).astype(np.float32)
    params = dict(latent_dim=2, hidden_dims=(16,), max_epochs=2, batch_size=64, random_state=0)
    run = tmp_path / "run"
    VAE(**params).fit(x, run_dir=run)
    return VAE, x, params, run


@pytest.mark.parametrize(
    "change, said",
    [
        ({"max_epochs": 5}, "max_epochs=5 (the run has 2)"),
        # Before, a model setting reached the weights: "does not fit this model; it was
        # modified or belongs to another run" (a review).
        ({"latent_dim": 3}, "latent_dim=3 (the run has 2)"),
    ],
)
def test_a_refused_resume_names_the_setting_and_leaves_the_finished_run_loadable(
    tmp_path, change, said
):
    VAE, x, params, run = _finished_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(CheckpointError, match=re.escape(said)):
        VAE(**{**params, **change}).fit(x, run_dir=run, resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    VAE.load(run)


@pytest.mark.parametrize(
    "change", [{"epoch": 99}, {"epoch": -5}, {"epoch": "1"}, {"history": 5}, {"best_epoch": None}]
)
def test_damaged_training_counters_are_a_checkpoint_error(tmp_path, change):
    from safetensors.torch import load_file, save_file

    VAE, x, params, run = _finished_run(tmp_path)
    state = run / "train_state.safetensors"
    with safe_open(state, "pt") as f:
        info = json.loads(f.metadata()["info"])
    save_file(load_file(state), state, metadata={"info": json.dumps({**info, **change})})
    with pytest.raises(CheckpointError, match="damaged"):
        VAE(**params).fit(x, run_dir=run, resume=True)
