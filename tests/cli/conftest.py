"""Fixtures of the command-line tests: an offline ``vaekit`` runner and shared runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cli_helpers import TINY, Cli, Preloaded, TrainedRun


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A :class:`Cli` whose dataset folders are empty and whose downloads cannot connect."""
    root = tmp_path_factory.mktemp("cli-home")
    env = dict(os.environ)
    for var, sub in (("VAEKIT_DATA", "data"), ("VAEKIT_CACHE", "cache")):
        (root / sub).mkdir()
        env[var] = str(root / sub)
    env["VAEKIT_MIRROR"] = "http://127.0.0.1:9/"  # the discard port: refused at once
    env.pop("PYTHONWARNINGS", None)
    # One thread per command: tests/conftest.py sets OMP_NUM_THREADS for the whole suite.
    work = root / "cwd"  # default outputs (runs/...) land here, never in the repository
    work.mkdir()
    return Cli(cwd=work, env=env)


@pytest.fixture(scope="session")
def trained_run(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One tiny run on digits; tests copy it before changing anything in it."""
    path = tmp_path_factory.mktemp("shared") / "run"
    res = cli("train", "digits", *TINY, "--out", path)
    if res.returncode != 0:
        pytest.fail(f"training the shared run failed:\n{res.stdout}\n{res.stderr}")
    return TrainedRun(path, res)


@pytest.fixture(scope="session")
def fast_cli(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli | Preloaded]:
    """Runs commands as real processes forked from a preloaded vaekit (see cli_preload.py).

    Set ``VAEKIT_TEST_SPAWN=1`` to start every one with ``python -m vaekit`` instead (also
    the fallback where ``os.fork`` does not exist).
    """
    if os.environ.get("VAEKIT_TEST_SPAWN") == "1" or not hasattr(os, "fork"):
        yield cli
        return
    runner = Preloaded(cli, tmp_path_factory.mktemp("preloaded-output"))
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(scope="session")
def demo_run(fast_cli: Cli | Preloaded, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """``vaekit demo --epochs 2``, run once for the command tests and the browser test."""
    path = tmp_path_factory.mktemp("shared-demo") / "demo"
    return TrainedRun(path, fast_cli("demo", "--out", path, "--epochs", "2"))
