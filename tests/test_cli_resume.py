"""A real ``kill -9`` during ``vaekit train`` followed by ``--resume``."""

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

TRAIN = [
    "-m",
    "vaekit",
    "train",
    "digits",
    "--epochs",
    "10",
    "--batch-size",
    "16",
    "--hidden-dims",
    "64",
    "--latent-dim",
    "4",
    "--seed",
    "3",
    "--quiet",
]


def run(args, **kw):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=240, **kw
    )


def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path):
    full = tmp_path / "full"
    assert run([*TRAIN, "--out", str(full)]).returncode == 0

    part = tmp_path / "part"
    proc = subprocess.Popen(
        [sys.executable, *TRAIN, "--out", str(part)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = part / "train_state.json"
    deadline = time.time() + 120
    epoch = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            epoch = json.loads(state.read_text())["epoch"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            epoch = 0
        if epoch >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (part / "model.safetensors").exists()

    res = run([*TRAIN, "--out", str(part), "--resume"])
    assert res.returncode == 0, res.stderr
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(part.glob(".*.tmp"))

    def losses(path):  # every column but the wall time
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]

    assert losses(part / "history.csv") == losses(full / "history.csv")


def test_train_into_an_existing_run_is_refused(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "vaekit", "train", "digits", "--epochs", "1", "--out", str(out), "--quiet"]
    assert run(args).returncode == 0
    before = (out / "model.safetensors").read_bytes()
    res = run(args)
    assert res.returncode == 2
    assert "already holds a run" in res.stderr and "Traceback" not in res.stderr
    assert (out / "model.safetensors").read_bytes() == before
