import errno
import json
import os
import stat

import pytest
import torch

from vaekit import checkpoint
from vaekit.errors import CheckpointError


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.json"
    checkpoint.atomic_write_json(p, {"a": 1})
    checkpoint.atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["f.json"]


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_atomic_write_failure_keeps_old_file_and_names_it(tmp_path, monkeypatch, step):
    p = tmp_path / "f.txt"
    checkpoint.atomic_write_text(p, "old")

    def disk_full(*a, **k):  # what a full disk raises: no file name attached
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, step, disk_full)
    with pytest.raises(OSError) as info:
        checkpoint.atomic_write_text(p, "new")
    # The CLI's one-line error shows the file name, so the error must carry the user's path.
    assert info.value.filename == str(p) and info.value.errno == errno.ENOSPC
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["f.txt"]


def test_model_roundtrip_and_tamper_detection(tmp_path):
    sd = {"w": torch.randn(3, 4), "b": torch.zeros(4)}
    checkpoint.save_model(tmp_path, sd, {"estimator": "VAE"})
    config, loaded = checkpoint.load_model(tmp_path)
    assert config["estimator"] == "VAE"
    assert torch.equal(loaded["w"], sd["w"])
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified"):
        checkpoint.load_model(tmp_path)


def test_version_mismatch_is_clear(tmp_path):
    checkpoint.save_model(tmp_path, {"w": torch.zeros(1)}, {"estimator": "VAE"})
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["vaekit_version"] = "9.3.0"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"vaekit 9\.3\.0.*retrain"):
        checkpoint.read_config(tmp_path)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]"])
def test_bad_config_files(tmp_path, content):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"config\.json"):
        checkpoint.read_config(tmp_path)


def test_missing_run(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.read_config(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a vaekit run"):
        checkpoint.read_config(tmp_path)


def test_truncated_safetensors(tmp_path):
    checkpoint.save_train_state(tmp_path, {"w": torch.randn(100)}, {"epoch": 1})
    p = tmp_path / "train_state.safetensors"
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        checkpoint.load_train_state(tmp_path)


def test_loading_never_unpickles(tmp_path):
    # A pickle disguised as weights must be refused, not executed.
    import pickle

    (tmp_path / "train_state.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError):
        checkpoint.load_train_state(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
@pytest.mark.parametrize(
    "umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=["022", "002", "077"]
)
def test_atomic_write_gives_the_mode_of_a_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        checkpoint.atomic_write_text(tmp_path / "f.txt", "x")
        checkpoint.save_model(tmp_path / "run", {"w": torch.zeros(1)}, {"estimator": "VAE"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode
    for f in (tmp_path / "run").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == mode, f.name


def test_save_model_refuses_a_run_of_another_estimator(tmp_path):
    checkpoint.save_model(tmp_path, {"w": torch.zeros(1)}, {"estimator": "VAEClassifier"})
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    with pytest.raises(CheckpointError, match=r"holds a VAEClassifier run.*another directory"):
        checkpoint.save_model(tmp_path, {"w": torch.ones(2)}, {"estimator": "VAE"})
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before
    # the same kind may be saved over (training checkpoints, re-saves)
    checkpoint.save_model(tmp_path, {"w": torch.ones(2)}, {"estimator": "VAEClassifier"})
    assert torch.equal(checkpoint.load_model(tmp_path)[1]["w"], torch.ones(2))


def test_stale_temps_removed_are_only_vaekits(tmp_path):
    """Before: every hidden ``.*.tmp`` went, a user's ``.draft.tmp`` in an empty --out too."""
    ours = [
        tmp_path / name
        for name in (".config.json.k3j2x9.tmp", ".report.html.a1.tmp", ".report-samples.png.b2.tmp")
    ]
    theirs = [tmp_path / ".draft.tmp", tmp_path / ".notes.txt.c3.tmp"]
    for path in ours + theirs:
        path.write_text("x")
    checkpoint.remove_stale_temps(tmp_path)
    assert not any(path.exists() for path in ours)
    assert all(path.read_text() == "x" for path in theirs)
