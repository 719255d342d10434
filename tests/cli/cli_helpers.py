"""Helpers of the command-line tests: run ``vaekit`` in real processes, check, make inputs.

Each command runs in its own process, as a user would run it. Starting ``python -m vaekit``
costs seconds (importing torch), so most commands run through :class:`Preloaded`, which
forks them from a process that imported vaekit once (see cli_preload.py), a few at a time;
``VAEKIT_TEST_SPAWN=1`` sends those through ``python -m vaekit`` too. One tiny trained run
and one demo run (the ``trained_run`` and ``demo_run`` fixtures in conftest.py) are shared
by every test that needs one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.data.idx import write_idx

#: ``python -m vaekit`` with the interpreter that runs the tests.
PYTHON_M = (sys.executable, "-m", "vaekit")
#: The smallest model: one epoch on digits takes about a second.
LATENT_DIM = 3
TINY = ("--epochs", "1", "--hidden-dims", "32", "--latent-dim", str(LATENT_DIM), "--seed", "0")
#: Seconds one command may take on a busy 2-core machine (most of it importing torch).
TIMEOUT = 240
#: Commands run at once; more than the cores only helps while others wait on the disk.
WORKERS = max(2, min(4, os.cpu_count() or 2))
#: The preloaded ``python -m vaekit`` of :class:`Preloaded`.
PRELOAD = Path(__file__).with_name("cli_preload.py")
#: What a tqdm bar writes: carriage returns, a rate and the bar's edge.
BAR_MARKS = ("\r", "it/s", "s/it", "%|")
DIGITS_TRAIN, DIGITS_TEST = 1437, 360


def console_script() -> str:
    """The installed ``vaekit`` entry point next to the running interpreter."""
    script = Path(sys.executable).with_name("vaekit")
    found = str(script) if script.exists() else shutil.which("vaekit")
    if found is None:
        pytest.fail("the 'vaekit' console script is not installed (pip install -e .)")
    return found


@dataclass(frozen=True)
class Cli:
    """Runs ``vaekit`` in a scratch folder, offline, with stdout/stderr captured (no TTY)."""

    cwd: Path
    env: Mapping[str, str]

    def __call__(
        self, *args: str | os.PathLike[str], command: Sequence[str] = PYTHON_M
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *map(str, args)],
            cwd=self.cwd,
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def many(
        self, jobs: Mapping[str, Sequence[str | os.PathLike[str]]]
    ) -> dict[str, subprocess.CompletedProcess[str]]:
        """Run independent commands ``{name: args}`` a few at a time; results by name."""
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = {name: pool.submit(self, *args) for name, args in jobs.items()}
            return {name: f.result() for name, f in futures.items()}

    def start(
        self, pool: ThreadPoolExecutor, *args: str | os.PathLike[str], command: Sequence[str]
    ) -> Future[subprocess.CompletedProcess[str]]:
        """Run one command in ``pool``, to overlap it with other work."""
        return pool.submit(self, *args, command=command)


class Preloaded:
    """Runs commands like :meth:`Cli.many`, forked from a preloaded ``vaekit`` process."""

    def __init__(self, cli: Cli, scratch: Path) -> None:
        self.cli, self.scratch = cli, scratch
        self._count = 0
        self._ready = False  # it imports while the caller does other work
        self._proc = subprocess.Popen(
            [sys.executable, str(PRELOAD), str(WORKERS), str(TIMEOUT)],
            cwd=cli.cwd,
            env=dict(cli.env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _read(self) -> object:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{PRELOAD.name} exited with status {self._proc.wait()}")
        return json.loads(line)

    def __call__(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        return self.many({"job": args})["job"]

    def many(
        self, jobs: Mapping[str, Sequence[str | os.PathLike[str]]]
    ) -> dict[str, subprocess.CompletedProcess[str]]:
        """Run independent commands ``{name: args}`` a few at a time; results by name."""
        assert self._proc.stdin is not None
        if not self._ready:
            self._ready = self._read() == "ready"
        requests = []
        for args in jobs.values():
            self._count += 1
            out = self.scratch / f"{self._count}"
            requests.append(
                {
                    "args": [str(a) for a in args],
                    "cwd": str(self.cli.cwd),
                    "stdout": f"{out}.out",
                    "stderr": f"{out}.err",
                }
            )
        self._proc.stdin.write(json.dumps(requests) + "\n")
        self._proc.stdin.flush()
        codes = self._read()
        assert isinstance(codes, list)
        results = {}
        for name, req, code in zip(jobs, requests, codes, strict=True):
            results[name] = subprocess.CompletedProcess(
                [*PYTHON_M, *req["args"]],
                code,
                Path(req["stdout"]).read_text(),
                Path(req["stderr"]).read_text(),
            )
        return results

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=TIMEOUT)


@dataclass(frozen=True)
class TrainedRun:
    """A shared run directory and the result of the command that wrote it."""

    path: Path
    result: subprocess.CompletedProcess[str]


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run directory."""
    shutil.copytree(run, dest)
    return dest


def assert_user_error(res: subprocess.CompletedProcess[str], *names: object) -> str:
    """Exit status 2 and exactly one stderr line, naming each of ``names``; return it."""
    shown = f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert res.returncode == 2, shown
    assert "Traceback" not in res.stderr and not res.stdout, shown  # nothing "started" first
    lines = res.stderr.splitlines()
    assert len(lines) == 1, shown
    line = lines[0]
    assert line.startswith("vaekit") and "error:" in line, shown
    for name in names:
        assert str(name) in line, f"{name!r} not named in: {line}"
    return line


def assert_ok(res: subprocess.CompletedProcess[str]) -> None:
    """Exit status 0, with the output shown when it is not."""
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"


def snapshot(paths: Iterable[Path]) -> dict[Path, bytes | None]:
    """Bytes of every file at or below ``paths`` (``None`` for a path that does not exist)."""
    out: dict[Path, bytes | None] = {}
    for p in paths:
        if p.is_dir():
            out.update({f: f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()})
        else:
            out[p] = p.read_bytes() if p.exists() else None
    return out


# --- input files ---------------------------------------------------------------------------
def write_image_folder(
    root: Path,
    classes: Sequence[str] = ("cats", "dogs"),
    n: int = 10,
    size: tuple[int, int] = (8, 8),
    mode: str = "L",
    seed: int = 0,
) -> Path:
    """``root/<class>/<i>.png``: ``n`` random ``size = (H, W)`` images per class."""
    rng = np.random.default_rng(seed)
    shape = (*size, 3) if mode == "RGB" else size
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def write_idx_folder(
    root: Path, n_train: int = 30, n_test: int = 10, seed: int = 0, side: int = 8
) -> Path:
    """An MNIST-style folder of ``side`` x ``side`` images: train (gzip), t10k (plain)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n, suffix in (("train", n_train, ".gz"), ("t10k", n_test, "")):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 3)
    return root
