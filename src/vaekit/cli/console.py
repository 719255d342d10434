"""What the commands print: status lines, metrics, warnings, and the exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from vaekit.errors import NearlyBlackWarning

#: Exit status of a user mistake (bad input, a bad option), as argparse's usage errors.
EXIT_USAGE = 2
#: Exit status when stdout's reader goes away: a Unix tool killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141


def _verbose(args: argparse.Namespace) -> int:
    return 0 if args.quiet else 1


def _say(args: argparse.Namespace, text: str) -> None:
    """Print a status line on stderr (not under ``--quiet``; rank 0 only under torchrun).

    stdout carries only what a script reads: the folder or file a command wrote, or
    evaluate's JSON, so ``run=$(vaekit train digits)`` holds the run folder alone.
    """
    if not getattr(args, "quiet", False) and _is_main_process():
        print(text, file=sys.stderr, flush=True)


def _is_main_process() -> bool:
    """Under torchrun only rank 0 prints and writes files; the other ranks train, then stop.

    Reads ``RANK`` as torchrun sets it (``vaekit.training.distributed.is_main_process``
    without importing torch).
    """
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _rank_tag() -> str:
    """`` (rank N)`` for the error lines of a rank other than 0, else nothing.

    Under torchrun each rank meets the same bad input; the others' copies are only needed
    when rank 0 did not fail (a file missing on one machine), so they say who.
    """
    return "" if _is_main_process() else f" (rank {os.environ.get('RANK')})"


def _format_metrics(metrics: dict[str, Any]) -> str:
    def show(v: float | int) -> str:  # counts in full: n_train=60000, not 6e+04
        return str(v) if isinstance(v, int) else f"{v:.4g}"

    keys = [k for k, v in metrics.items() if isinstance(v, float | int)]
    return "  ".join(f"{k}={show(metrics[k])}" for k in keys)


def _count(n: int, noun: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


@contextlib.contextmanager
def _warnings_to_stderr():
    """Show Python warnings as one plain line each ('vaekit: warning: ...').

    Nearly black images are said once: the data loader names the file, and the estimator
    would repeat it (as 'X') each time it checks the same images.
    """
    import warnings

    said: set[type] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if category in said:
            return
        if issubclass(category, NearlyBlackWarning):
            said.add(category)
        if _is_main_process():  # under torchrun every rank would print the same line
            print(f"vaekit: warning: {message}", file=sys.stderr)

    old = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old
