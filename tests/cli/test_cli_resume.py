"""A real ``kill -9`` during ``vaekit train``, ``classify`` or ``cluster``, then ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from cli_helpers import (
    PYTHON_M,
    TIMEOUT,
    TINY,
    Cli,
    Preloaded,
    TrainedRun,
    assert_ok,
    assert_user_error,
    copy_run,
    snapshot,
    write_image_folder,
)
from safetensors.torch import load_file

TRAIN = (
    "train", "digits", "--epochs", "10", "--batch-size", "16", "--hidden-dims", "64",
    "--latent-dim", "4", "--seed", "3", "--quiet",
)  # fmt: skip


def _losses(path: Path) -> list[str]:
    """Rows of history.csv without the last column (wall seconds)."""
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


#: ``vaekit classify`` with few labels (the label spreading runs again on resume) and
#: ``vaekit cluster``: tiny models, enough epochs to be killed in the middle.
CLASSIFY = (
    "classify", "digits", "--labels", "50", "--epochs", "5", "--batch-size", "16",
    "--hidden-dims", "8,16", "--latent-dim", "3", "--seed", "2", "--quiet",
)  # fmt: skip
CLUSTER = (
    "cluster", "digits", "--epochs", "12", "--batch-size", "16", "--hidden-dims", "64",
    "--latent-dim", "4", "--seed", "1", "--quiet",
)  # fmt: skip


@pytest.mark.parametrize("out_given", [True, False])
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(
    cli: Cli, fast_cli: Cli | Preloaded, tmp_path: Path, out_given: bool
) -> None:
    """A real SIGINT during training: exit 130, one line that names --out and --resume,
    also when vaekit chose the folder (under -q nothing else names it)."""
    args = [*TRAIN[:3], "60", *TRAIN[4:]]  # long enough to be stopped in the middle
    run, shown = tmp_path / "run", str(tmp_path / "run")
    if not out_given:
        run, shown = tmp_path / "runs" / "digits-vae", "runs/digits-vae"
    proc = subprocess.Popen(
        [*PYTHON_M, *args, *(("--out", str(run)) if out_given else ())],
        cwd=tmp_path,
        env=dict(cli.env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs (CI's, say) with SIGINT
        # ignored, and children inherit that; a user's terminal delivers it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        start = time.time()
        while time.time() < start + TIMEOUT and not (run / "train_state.json").exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.splitlines() == [
        f"vaekit train: interrupted; once it has saved an epoch, the same command with "
        f"--out {shown} and --resume continues the run from there"
    ]
    assert_ok(fast_cli(*args, "--out", run, "--resume"))


def _kill_9_after_epoch_2(cli: Cli, args: Sequence[str], run: Path) -> None:
    """Start ``vaekit ARGS --out RUN`` in its own process and ``kill -9`` it after epoch 2."""
    log = run.with_name(f"{run.name}.stderr")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*PYTHON_M, *args, "--out", str(run)],
            cwd=cli.cwd,
            env=dict(cli.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        state = run / "train_state.json"
        start = time.time()
        epoch = 0
        while time.time() < start + TIMEOUT and proc.poll() is None and epoch < 2:
            try:
                epoch = json.loads(state.read_text())["epoch"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
                epoch = 0
            time.sleep(0.02)
        waited = f"after {time.time() - start:.0f} s, stderr:\n{log.read_text()[-2000:]}"
        assert proc.poll() is None, f"training finished before it could be killed {waited}"
        assert epoch >= 2, f"no checkpoint of epoch 2 (last saw epoch {epoch}) {waited}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert not (run / "model.safetensors").exists()


def _uninterrupted_and_killed(
    cli: Cli, fast_cli: Cli | Preloaded, args: Sequence[str], tmp_path: Path
) -> tuple[Path, Path]:
    """Run ``vaekit ARGS`` to the end in ``full`` and, beside it, killed at epoch 2 in ``part``."""
    full, part = tmp_path / "full", tmp_path / "part"
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The uninterrupted run goes on beside the one that is killed (both cores busy).
        uninterrupted = pool.submit(fast_cli, *args, "--out", full)
        _kill_9_after_epoch_2(cli, args, part)
        assert_ok(uninterrupted.result())
    return full, part


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_kill_9_then_resume_gives_the_uninterrupted_weights(
    cli: Cli, fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    full, part = _uninterrupted_and_killed(cli, fast_cli, TRAIN, tmp_path)
    assert_ok(fast_cli(*TRAIN, "--out", part, "--resume"))
    assert _same_weights(full, part)
    assert not list(part.glob(".*.tmp"))
    assert _losses(part / "history.csv") == _losses(full / "history.csv")


@pytest.mark.parametrize(
    ("args", "outputs"),
    [(CLASSIFY, "predictions.csv"), (CLUSTER, "clusters.csv")],
    ids=["classify", "cluster"],
)
def test_classify_and_cluster_resume_after_kill_9(
    cli: Cli, fast_cli: Cli | Preloaded, tmp_path: Path, args: tuple[str, ...], outputs: str
) -> None:
    full, part = _uninterrupted_and_killed(cli, fast_cli, args, tmp_path)
    # The run's own command continues it; train --resume points there instead of
    # retraining it as something else.
    line = assert_user_error(fast_cli("train", "digits", "--out", part, "--resume"), part)
    assert f"vaekit {args[0]} DATA --out {part} --resume" in line
    assert not (part / "model.safetensors").exists()
    assert_ok(fast_cli(*args, "--out", part, "--resume"))
    assert _same_weights(full, part)
    assert (part / outputs).read_text() == (full / outputs).read_text()
    metrics = json.loads((part / "metrics.json").read_text())
    assert metrics == {
        **json.loads((full / "metrics.json").read_text()),
        "seconds": metrics["seconds"],
    }


def test_resume_refuses_options_that_change_the_run(
    fast_cli: Cli | Preloaded, trained_run: TrainedRun, tmp_path: Path
) -> None:
    run = copy_run(trained_run.path, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    line = assert_user_error(
        fast_cli("train", "digits", "--out", run, "--resume", "--epochs", "5", "--latent-dim", "9"),
        run,
    )
    assert "--epochs (the run has 1)" in line and "--latent-dim" in line
    # The seed and the data options would change the run as much (before: silently ignored,
    # or blamed on the checkpoint).
    other_data = ("--seed", "7", "--image-size", "16", "--color", "rgb")
    line = assert_user_error(fast_cli("train", "digits", "--out", run, "--resume", *other_data))
    for option in ("--seed (the run has 0)", "--image-size (the run has None)", "--color"):
        assert option in line
    # Before, --model was silently ignored: the VAE went on training.
    line = assert_user_error(fast_cli("train", "digits", "--out", run, "--resume", "--model", "m2"))
    assert "--model (the run has 'vae')" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert_ok(fast_cli("train", "digits", "--out", run, "--resume", "--model", "vae", "--quiet"))


def test_train_into_an_existing_run_is_refused(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "digits", "--epochs", "1", "--out", out, "--quiet"]
    assert_ok(fast_cli(*args))
    before = (out / "model.safetensors").read_bytes()
    line = assert_user_error(fast_cli(*args), out)
    assert "already holds a run" in line
    assert (out / "model.safetensors").read_bytes() == before


def test_resume_may_move_the_run_to_another_device(
    fast_cli: Cli | Preloaded, trained_run: TrainedRun, tmp_path: Path
) -> None:
    """--device is where a run goes on, not what it is: a GPU run can be resumed on a CPU.

    Before, --device was ignored on --resume and the loop refused a device change as a
    different training setting, so a run saved with device 'cuda' could not go on here.
    """
    run = copy_run(trained_run.path, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["params"]["device"] = "cuda"  # as written by a run started on a GPU machine
    (run / "config.json").write_text(json.dumps(config))
    weights = load_file(run / "model.safetensors")
    if not torch.cuda.is_available():
        assert "CUDA" in assert_user_error(fast_cli("train", "digits", "--out", run, "--resume"))
    assert_ok(fast_cli("train", "digits", "--out", run, "--resume", "--device", "cpu", "-q"))
    assert json.loads((run / "config.json").read_text())["params"]["device"] == "cpu"
    after = load_file(run / "model.safetensors")
    assert all(torch.equal(weights[k], after[k]) for k in weights)


@pytest.mark.parametrize("command", ["train", "cluster", "classify"])
def test_resume_refuses_data_that_now_splits_otherwise(
    fast_cli: Cli | Preloaded, tmp_path: Path, command: str
) -> None:
    # Before: files added to the folder gave another seeded split and the run went on
    # silently, training on images it had held out and scoring images it had trained on.
    pets = write_image_folder(tmp_path / "pets", n=12)
    run = tmp_path / "run"
    extra = ("--n-clusters", "2") if command == "cluster" else ()
    assert_ok(fast_cli(command, pets, *TINY, *extra, "--out", run, "--quiet"))
    before = snapshot([run])
    write_image_folder(tmp_path / "more", classes=("cats",), n=4, seed=1)
    for png in (tmp_path / "more" / "cats").iterdir():
        png.rename(pets / "cats" / f"new-{png.name}")
    line = assert_user_error(fast_cli(command, pets, "--out", run, "--resume", "--quiet"), run)
    assert "files were added or removed" in line
    assert snapshot([run]) == before


def test_a_run_killed_before_its_final_config_is_written_says_to_resume(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Killed between the final weights and the config recording their checksum: before,
    evaluate said the weights were modified and to retrain, though --resume finishes it."""
    run = tmp_path / "run"
    assert_ok(fast_cli("train", "digits", *TINY, "--out", run, "-q"))
    config = json.loads((run / "config.json").read_text())
    config["status"] = "training"  # the config as it was before the final save
    del config["model_sha256"]
    (run / "config.json").write_text(json.dumps(config))
    res = fast_cli("evaluate", run, "-q")
    assert res.returncode == 2, res.stderr
    assert f"resume it with 'vaekit train DATA --out {run} --resume'" in res.stderr, res.stderr
    assert_ok(fast_cli("train", "digits", *TINY, "--out", run, "--resume", "-q"))
    assert_ok(fast_cli("evaluate", run, "-q"))
