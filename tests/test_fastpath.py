"""The fast path: bf16 autocast and torch.compile, chosen per machine, agree with fp32."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vaekit import VAE, load_dataset
from vaekit.errors import ConfigError
from vaekit.training import fastpath

#: Relative difference allowed between the bf16 and fp32 losses of the same seeded run.
#: Measured on digits (8 epochs, 784->64->4, seeds 0 and 1): train loss +0.47 % / +0.28 %,
#: validation loss -0.35 % / +0.05 %, test loss +0.28 % / +0.10 %.
BF16_RTOL = 0.02
#: Same, for torch.compile (identical arithmetic up to fused-kernel rounding).
COMPILE_RTOL = 0.005
SMALL = {"latent_dim": 3, "hidden_dims": (32,), "batch_size": 64, "max_epochs": 3}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _fit(x, **kw) -> VAE:
    return VAE(**SMALL, random_state=0, **kw).fit(x)


def test_auto_precision_is_fp32_on_every_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # bf16 on a CPU that has it was faster but clustered worse (fastpath's docstring), so
    # "auto" stays fp32 there: results do not depend on the CPU's instruction set.
    cpu = torch.device("cpu")
    assert fastpath.resolve_precision("fp32", cpu) is None
    assert fastpath.resolve_precision("bf16", cpu) is torch.bfloat16
    for has_bf16 in (False, True):
        monkeypatch.setattr(fastpath, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        assert fastpath.resolve_precision("auto", cpu) is None
    assert not fastpath.resolve_compile("auto") and fastpath.resolve_compile("on")


def test_this_cpu_is_read_from_its_flags() -> None:
    flags = set()
    with open(fastpath.CPUINFO, encoding="utf-8") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    assert fastpath.cpu_has_bf16() == bool(flags & fastpath.CPU_BF16_FLAGS)


def test_unknown_fast_path_values_are_config_errors(digits) -> None:
    with pytest.raises(ConfigError, match="precision"):
        _fit(digits.x_train[:64], precision="fp16")
    with pytest.raises(ConfigError, match="compile"):
        _fit(digits.x_train[:64], compile="yes")


def test_bf16_training_agrees_with_fp32(digits) -> None:
    """bf16 autocast (emulated on CPUs without bf16 instructions) vs fp32, same seed."""
    x = digits.x_train[:800]
    fp32, bf16 = _fit(x, precision="fp32"), _fit(x, precision="bf16")
    for key in ("loss", "val_loss"):
        a, b = bf16.history_[-1][key], fp32.history_[-1][key]
        print(f"{key}: bf16 {a:.4f} fp32 {b:.4f} ({(a - b) / b:+.2%})")
        assert abs(a - b) <= BF16_RTOL * abs(b), (key, a, b)
    # Inference stays fp32: the embeddings are float32 and close.
    za, zb = bf16.transform(digits.x_test), fp32.transform(digits.x_test)
    assert za.dtype == np.float32
    assert np.corrcoef(za.ravel(), zb.ravel())[0, 1] > 0.9


@pytest.mark.slow  # compiling from a cold cache takes about a minute on 2 cores
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_agrees_with_eager(digits) -> None:
    """torch.compile of the loss: same losses as eager within rounding, two graphs only."""
    from torch._dynamo.utils import counters

    counters.clear()
    eager, compiled = _fit(digits.x_train), _fit(digits.x_train, compile="on")
    a, b = compiled.history_[-1]["loss"], eager.history_[-1]["loss"]
    assert abs(a - b) <= COMPILE_RTOL * abs(b), (a, b)
    # The KL weight changes every step of the warm-up; it must not compile the loss again
    # each time. Graphs: full batches, the last shorter batch (shapes are static).
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_precision_agrees_with_fp32(digits) -> None:
    """On CUDA, 'auto' picks bf16 where the card supports it; losses agree with fp32."""
    dev = torch.device("cuda")
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert fastpath.resolve_precision("auto", dev) is want
    auto = _fit(digits.x_train, device="cuda", precision="auto")
    fp32 = _fit(digits.x_train, device="cuda", precision="fp32")
    a, b = auto.history_[-1]["loss"], fp32.history_[-1]["loss"]
    assert abs(a - b) <= BF16_RTOL * abs(b), (a, b)
    assert auto.transform(digits.x_test).shape == (len(digits.x_test), SMALL["latent_dim"])


@pytest.mark.parametrize("kind", ["cluster", "classify"])
def test_clustering_and_classifier_take_the_fast_path(digits, kind) -> None:
    """VAEClustering and VAEClassifier pass precision to the same loop: bf16 trains too."""
    from vaekit import VAEClassifier, VAEClustering

    x, y = digits.x_train[:128], digits.y_train[:128]
    small = {**SMALL, "max_epochs": 1}
    if kind == "cluster":
        est = VAEClustering(n_clusters=3, n_init=1, **small, random_state=0, precision="bf16")
        est.fit(x)
        assert est.get_params()["precision"] == "bf16" and len(est.labels_) == len(x)
    else:
        est = VAEClassifier(
            arch="mlp", **small, random_state=0, precision="bf16", compile="off"
        ).fit(x, y)
        assert est.get_params()["compile"] == "off"
        assert np.allclose(est.predict_proba(x).sum(axis=1), 1.0, atol=1e-5)
    assert np.isfinite(est.history_[-1]["loss"])
