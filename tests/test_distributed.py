"""Data-parallel training: a real 2-process ``torchrun`` on the CPU (gloo), killed and resumed.

Two ranks with batch ``B`` each follow the one-process run with batch ``2 * B``: same
permutation, same global batches, gradients averaged. They differ only by the sampling
noise of rank 1 and the order of float sums, so the losses agree closely but not exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaekit import VAE, load_dataset
from vaekit.training import distributed

EPOCHS, BATCH, HIDDEN, LATENT, SEED = 3, 16, 32, 3, 0
#: Relative difference allowed between the final training losses of the 2-process run and
#: the one-process run with the same global batch. Measured on digits: 0.06 % after 3
#: epochs, 0.18 % after 4 (30.598 vs 30.542 nats); rank 1's own sampling noise is the main
#: cause, the order of float sums the rest.
LOSS_RTOL = 0.01
TRAIN = (
    "-m", "vaekit", "train", "digits", "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
    "--hidden-dims", str(HIDDEN), "--latent-dim", str(LATENT), "--seed", str(SEED),
)  # fmt: skip


def torchrun(*args: str | Path) -> list[str]:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (a free rendezvous port each time)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        *map(str, args),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # two ranks on two cores
    env.pop("PYTHONWARNINGS", None)
    return env


def _kill_9_with_workers(proc: subprocess.Popen) -> None:
    """SIGKILL a torchrun agent and every worker, as a crash of the machine would.

    torchrun starts each worker in a session of its own, so killing the agent's process
    group leaves the workers running on as orphans that finish the run.
    """
    workers = _descendants(proc.pid)
    for pid in [*workers, proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in workers), "torchrun workers outlived SIGKILL"


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid``, from ``/proc`` (each one's parent is field 4 of its stat)."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("finding torchrun's workers needs Linux /proc")
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        found += children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _history(run: Path) -> list[dict[str, str]]:
    lines = (run / "history.csv").read_text().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, line.split(","), strict=True)) for line in lines[1:]]


def test_rank_helpers_answer_for_one_process() -> None:
    assert distributed.world_size() == 1 and not distributed.is_distributed()
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t and distributed.all_gather_same_shape(t) == [t]


def test_torchrun_killed_and_resumed_matches_one_process(tmp_path: Path) -> None:
    """Kill -9 a 2-process run mid-way, resume it with torchrun, compare to one process."""
    run = tmp_path / "ddp"
    proc = subprocess.Popen(
        torchrun(*TRAIN, "--out", run, "--quiet"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    state, epoch, deadline = run / "train_state.json", 0, time.time() + 180
    while time.time() < deadline and proc.poll() is None and epoch < 1:
        try:
            epoch = json.loads(state.read_text())["epoch"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    assert proc.poll() is None, f"finished before it could be killed:\n{proc.stderr.read()}"
    _kill_9_with_workers(proc)
    assert not (run / "model.safetensors").exists()
    assert json.loads(state.read_text())["epoch"] < EPOCHS

    res = subprocess.run(
        torchrun(*TRAIN, "--out", run, "--resume"),
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    # Only rank 0 prints and writes: one result line naming the run, one run directory.
    assert res.stdout == f"{run}\n", res.stdout  # the run folder, once
    assert res.stderr.count(f"-> {run}") == 1, res.stderr  # "training ... -> RUN", once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    assert not list(run.glob(".*.tmp"))
    hist = _history(run)
    assert [int(r["epoch"]) for r in hist] == list(range(1, EPOCHS + 1))
    info = json.loads(state.read_text())
    assert info["world_size"] == 2 and info["finished"]

    # The one-process run with the same global batch (2 x BATCH), in this process.
    ds = load_dataset("digits", random_state=SEED)
    one = VAE(
        hidden_dims=(HIDDEN,), latent_dim=LATENT, batch_size=2 * BATCH, max_epochs=EPOCHS,
        random_state=SEED,
    ).fit(ds.x_train)  # fmt: skip
    a, b = float(hist[-1]["loss"]), one.history_[-1]["loss"]
    print(f"final loss: 2 processes x batch {BATCH} {a:.4f}, 1 process x {2 * BATCH} {b:.4f}")
    assert abs(a - b) <= LOSS_RTOL * abs(b), (a, b)
    assert abs(float(hist[-1]["val_loss"]) - one.history_[-1]["val_loss"]) <= LOSS_RTOL * abs(b)


@pytest.mark.slow
def test_torchrun_resume_is_exact(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A 2-process run killed after an epoch and resumed ends with the uninterrupted weights.

    Three torchrun launches (about 75 CPU seconds): opt-in with ``pytest -m slow``.
    """
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("three torchrun launches; opt in with -m slow")
    full, part = tmp_path / "full", tmp_path / "part"
    kw = {"capture_output": True, "text": True, "timeout": 240, "env": _env()}
    assert subprocess.run(torchrun(*TRAIN, "--out", full, "--quiet"), **kw).returncode == 0
    proc = subprocess.Popen(torchrun(*TRAIN, "--out", part, "--quiet"), env=_env())
    epoch = 0
    while proc.poll() is None and epoch < 1:
        try:
            epoch = json.loads((part / "train_state.json").read_text())["epoch"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    _kill_9_with_workers(proc)
    assert json.loads((part / "train_state.json").read_text())["epoch"] < EPOCHS
    res = subprocess.run(torchrun(*TRAIN, "--out", part, "--resume", "--quiet"), **kw)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop_time = [{k: v for k, v in r.items() if k != "seconds"} for r in _history(full)]
    assert drop_time == [{k: v for k, v in r.items() if k != "seconds"} for r in _history(part)]


RNG_AFTER_RESTORE = """
import hashlib, os, sys, torch
import vaekit.training.loop as loop
restore = loop._Loop._restore_counters
def record(self, tensors, info):
    restore(self, tensors, info)
    with open(os.environ["RNG_OUT"] + f".{self.rank}", "w") as f:
        f.write(hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest())
loop._Loop._restore_counters = record
from vaekit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_one_process_run_resumed_by_two_seeds_the_ranks_apart(tmp_path: Path) -> None:
    """Both ranks restored the one saved generator state, so they drew the same noise.

    Found by a review: a run saved by one process and resumed by two (allowed; the README
    says the result is then not bit-identical) lost rank 1's own sampling noise.
    """
    run, out = tmp_path / "run", tmp_path / "rng"
    args = list(TRAIN)
    args[args.index("--epochs") + 1] = "8"  # long enough to stop midway
    proc = subprocess.Popen([sys.executable, *args, "--out", run, "-q"], env=_env())
    epoch = 0
    while proc.poll() is None and epoch < 1:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
            epoch = json.loads((run / "train_state.json").read_text())["epoch"]
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert json.loads((run / "train_state.json").read_text())["world_size"] == 1
    (tmp_path / "rng.py").write_text(RNG_AFTER_RESTORE)
    cmd = torchrun(tmp_path / "rng.py", *args[2:], "--out", run, "--resume", "-q")
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, env={**_env(), "RNG_OUT": str(out)}
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert Path(f"{out}.0").read_text() != Path(f"{out}.1").read_text()


SPAWNED_FIT = """
import datetime, sys
import torch.distributed as dist
import torch.multiprocessing as mp
from vaekit import VAE, load_dataset
from vaekit.errors import CheckpointError

def work(rank, store, run):
    dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    x = load_dataset("digits").x_train
    try:
        VAE(hidden_dims=(8,), latent_dim=2, max_epochs=1).fit(x, run_dir=run)
        print(rank, "trained", flush=True)
    except CheckpointError as exc:
        print(rank, "refused:", exc, flush=True)
    dist.destroy_process_group()  # exiting with the group alive may abort ("terminate called")

if __name__ == "__main__":
    mp.spawn(work, args=(sys.argv[1], sys.argv[2]), nprocs=2, join=True)
"""


def test_a_group_started_without_torchrun_refuses_a_used_run_dir_on_every_rank(
    tmp_path: Path,
) -> None:
    """A process group of the user's own (no torchrun variables): every rank must refuse.

    Before, only rank 0 looked at the folder and raised; rank 1 went on into training and
    waited in its first collective until the group's timeout.
    """
    run = tmp_path / "run"
    x = load_dataset("digits").x_train
    VAE(hidden_dims=(8,), latent_dim=2, max_epochs=1).fit(x, run_dir=run)
    script = tmp_path / "spawned_fit.py"
    script.write_text(SPAWNED_FIT)
    env = {k: v for k, v in _env().items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, str(script), str(tmp_path / "store"), str(run)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = sorted(res.stdout.splitlines())
    assert [line.split(" ", 1)[0] for line in lines] == ["0", "1"], res.stdout
    assert all("refused: " in line and "already holds a run" in line for line in lines), lines


def test_torchrun_prints_warnings_once_and_errors_by_rank(tmp_path: Path) -> None:
    """Only rank 0 prints warnings; an error of another rank says which rank it is.

    Before, each rank printed DDP's six-line "Grad strides do not match bucket view" warning
    of a conv model (one input channel) and every error line came once per rank, alike.
    """
    kw = {"capture_output": True, "text": True, "timeout": 240, "env": _env()}
    conv = ("--arch", "conv", "--hidden-dims", "4,8", "--latent-dim", "2", "--epochs", "1")
    res = subprocess.run(
        torchrun("-m", "vaekit", "train", "digits", *conv, "--out", tmp_path / "c", "-q"), **kw
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "vaekit: warning" not in res.stderr and "Grad strides" not in res.stderr, res.stderr
    np.save(tmp_path / "five.npy", np.zeros((5, 8, 8), np.uint8))  # too few to split
    res = subprocess.run(
        torchrun("-m", "vaekit", "train", tmp_path / "five.npy", "--out", tmp_path / "f"), **kw
    )
    errors = [line for line in res.stderr.splitlines() if line.startswith("vaekit train: error")]
    # Once one rank exits with status 2, torchrun stops the other (SIGTERM), which may or
    # may not have printed its own copy yet; rank 1's copy says which rank it is.
    assert res.returncode != 0 and errors, res.stderr[-3000:]
    untagged = [line for line in errors if line.startswith("vaekit train: error: ")]
    tagged = [line for line in errors if line.startswith("vaekit train: error (rank 1): ")]
    assert len(untagged) <= 1 and len(tagged) <= 1, errors
    assert len(untagged) + len(tagged) == len(errors), errors
    # A rank other than 0 tags its error, whether or not it had time to print it above.
    env = {**_env(), "RANK": "1"}
    cmd = [sys.executable, "-m", "vaekit", "train", tmp_path / "five.npy", "--out", tmp_path / "g"]
    res = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("vaekit train: error (rank 1): "), res.stderr
    # So does a mistake in the options (argparse's errors were printed alike by every rank).
    cmd = [sys.executable, "-m", "vaekit", "train", "digits", "--epochs", "-3"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("vaekit train: error (rank 1): argument --epochs"), res.stderr
