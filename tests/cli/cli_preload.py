"""A preloaded ``python -m vaekit``: import once, then fork one process per command.

Starting ``python -m vaekit`` spends seconds importing torch and scikit-learn before the
command does anything, which would make dozens of bad-input tests take minutes. This script
imports everything once, then for each requested command forks a child that does what the
interpreter does for ``python -m vaekit ARGS``: run ``vaekit.__main__`` with ``sys.argv``
set, stdin from /dev/null, stdout and stderr into files (so not a terminal), print the
traceback of an uncaught exception and exit 1, or exit with ``SystemExit``'s code. The
child is a real process with its own exit status and file descriptors.

Protocol on stdin/stdout, one JSON document per line: after the imports it writes
``"ready"``; then it reads a list of jobs ``{"args", "cwd", "stdout", "stderr"}``, runs up to
``workers`` children at a time and answers with the list of their exit statuses (negative:
killed by that signal; each child gets ``timeout`` seconds).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import signal
import sys
import traceback

#: What the commands import; a module that is missing is simply not preloaded.
PRELOAD = (
    "vaekit.cli",
    "vaekit.checkpoint",
    "vaekit.data",
    "vaekit.estimators",
    "vaekit.metrics",
    "vaekit.plots",
    "sklearn.datasets",
    "sklearn.model_selection",
)


def _exit_code(exc: SystemExit) -> int:
    """Exit status for ``SystemExit(code)``, as the interpreter computes it."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _child(job: dict, timeout: int) -> None:
    """Become ``python -m vaekit *job["args"]``; never returns."""
    code = 1
    try:
        os.chdir(job["cwd"])
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            new = os.open(path, flags, 0o644)
            os.dup2(new, fd)
            os.close(new)
        sys.argv = ["vaekit", *job["args"]]  # runpy puts the path of __main__.py first
        signal.alarm(timeout)  # SIGALRM's default action ends the process
        try:
            runpy.run_module("vaekit", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                code = code or 1
        os._exit(code)


def _run(jobs: list[dict], workers: int, timeout: int) -> list[int]:
    results: list[int] = [0] * len(jobs)
    waiting = list(enumerate(jobs))
    running: dict[int, int] = {}
    while waiting or running:
        while waiting and len(running) < workers:
            index, job = waiting.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(job, timeout)
            running[pid] = index
        pid, status = os.wait()
        results[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    return results


def main() -> None:
    """Answer batches of jobs until stdin closes."""
    workers, timeout = int(sys.argv[1]), int(sys.argv[2])
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        print(json.dumps(_run(json.loads(line), workers, timeout)), flush=True)


if __name__ == "__main__":
    main()
