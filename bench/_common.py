"""Helpers shared by the benchmark scripts: import path, data files, machine description.

Benchmarks are run from the repository root as ``python bench/<script>.py``; this module is
imported as ``_common`` (the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = REPO_ROOT / "src"

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


def use_checkout() -> None:
    """Put this checkout's ``src/`` first on ``sys.path``, so the benchmark measures it.

    Call before the first ``import vaekit``; an installed vaekit is then shadowed by the
    working tree.
    """
    src = str(SRC_DIR)
    if src not in sys.path:
        sys.path.insert(0, src)


def ensure_fashion_mnist() -> None:
    """Install the Debian Fashion-MNIST package when no copy is on this machine.

    A copy counts wherever ``load_dataset("fashion-mnist")`` would find it without a
    download (``$VAEKIT_DATA/fashion-mnist``, Debian's folder, the download cache; compressed
    or not). Call after :func:`use_checkout`.
    """
    from vaekit.data.registry import local_copy

    if local_copy("fashion-mnist") is not None:
        return
    cmd = ["apt-get", "install", "-y", FASHION_MNIST_PACKAGE]
    print(
        f"Fashion-MNIST files missing from {DEBIAN_FASHION_MNIST}; running: {shlex.join(cmd)}",
        flush=True,
    )
    subprocess.run(cmd, check=True)


def mean_std(values: list[float], digits: int = 3) -> str:
    """``"mean ± std"`` of per-seed values, the sample standard deviation (``ddof=1``).

    One value has no spread to report: ``"mean (n=1)"``.
    """
    import statistics

    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (falls back to ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    """Number of CPUs this process may run on (what ``nproc`` prints)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages, or ``None`` where the OS has none."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have run since boot (``/proc/stat``).

    ``None`` where ``/proc/stat`` is not available.
    """
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Time the ``with`` block: wall, this process's CPU and other processes' CPU use.

    Yields a dict that is filled on exit with ``wall_s``, ``cpu_s`` (CPU seconds of this
    process, all threads) and ``other_cpus`` (CPUs kept busy by other processes on average,
    ``nan`` without ``/proc/stat``). A high ``other_cpus`` means the timing is contended.
    """
    out: dict[str, float] = {}
    busy0, wall0, cpu0 = busy_cpu_seconds(), time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        busy1 = busy_cpu_seconds()
        others = math.nan
        if busy0 is not None and busy1 is not None and wall > 0:
            others = max(0.0, busy1 - busy0 - cpu) / wall
        out.update(wall_s=wall, cpu_s=cpu, other_cpus=others)


def machine_info() -> dict[str, Any]:
    """Describe the machine and software: CPU, cores, torch version and threads, load."""
    import torch

    return {
        "cpu": cpu_model(),
        "nproc": usable_cpus(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
    }


def command_line() -> str:
    """The exact command line of this process, shell-quoted."""
    return shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))


def utc_now() -> str:
    """Current date and time in UTC, ``YYYY-MM-DD HH:MM:SS UTC``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def start(title: str) -> tuple[str, dict[str, Any], str]:
    """Describe this run (date, machine, command line), print the header; return them."""
    date, info, command = utc_now(), machine_info(), command_line()
    print_header(title, info, command, date)
    return date, info, command


def print_header(title: str, info: dict[str, Any], command: str, date: str) -> None:
    """Print the standard benchmark header: title, date, machine and command line."""
    print(f"# {title}")
    print(f"date:    {date}")
    print(
        f"machine: {info['cpu']}, nproc={info['nproc']}, torch {info['torch']}, "
        f"threads={info['torch_threads']}, python {info['python']}"
    )
    print(f"load:    {info['load_average_start']} (1/5/15-min load average at start)")
    print(f"command: {command}")
