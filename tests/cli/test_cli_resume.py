"""A real ``kill -9`` during ``vaekit train`` followed by ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from cli_helpers import PYTHON_M, Cli, Preloaded, assert_ok, assert_user_error
from safetensors.torch import load_file

TRAIN = (
    "train", "digits", "--epochs", "6", "--batch-size", "16", "--hidden-dims", "64",
    "--latent-dim", "4", "--seed", "3", "--quiet",
)  # fmt: skip


def _losses(path: Path) -> list[str]:
    """Rows of history.csv without the last column (wall seconds)."""
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


def test_kill_9_then_resume_gives_the_uninterrupted_weights(
    cli: Cli, fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The uninterrupted run goes on beside the one that is killed (both cores busy).
        uninterrupted = pool.submit(fast_cli, *TRAIN, "--out", full)
        proc = subprocess.Popen(
            [*PYTHON_M, *TRAIN, "--out", str(part)],
            cwd=cli.cwd,
            env=dict(cli.env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            state = part / "train_state.json"
            deadline, epoch = time.time() + 120, 0
            while time.time() < deadline and proc.poll() is None and epoch < 2:
                try:
                    epoch = json.loads(state.read_text())["epoch"]
                except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
                    epoch = 0
                time.sleep(0.02)
            assert proc.poll() is None, "training finished before it could be killed"
            assert epoch >= 2, "no checkpoint of epoch 2 within the deadline"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert not (part / "model.safetensors").exists()
        assert_ok(uninterrupted.result())

    assert_ok(fast_cli(*TRAIN, "--out", part, "--resume"))
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(part.glob(".*.tmp"))
    assert _losses(part / "history.csv") == _losses(full / "history.csv")


def test_train_into_an_existing_run_is_refused(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "digits", "--epochs", "1", "--out", out, "--quiet"]
    assert_ok(fast_cli(*args))
    before = (out / "model.safetensors").read_bytes()
    line = assert_user_error(fast_cli(*args), out)
    assert "already holds a run" in line
    assert (out / "model.safetensors").read_bytes() == before
