"""The ``vaekit`` command line: argument parsing and printing only.

Every subcommand is a thin call into the estimators, data and checkpoint layers. ``main``
turns user mistakes (``VaekitError``) into one line on stderr and exit status 2, a closed
stdout into a quiet stop, and Ctrl-C into a hint on resuming.

The package, by job:

- ``options``: the argument parser (``build_parser``), its option types and help texts;
- ``runs``: what the commands share — reading DATA, run folders (where a run goes and
  what it may replace, the data a run records, ``--resume`` checks, metrics files), the
  estimator of a new or resumed run;
- ``console``: what the commands print, exit statuses, warnings as one line;
- ``commands``: ``train``, ``evaluate``, ``embed``, ``generate``, ``prepare``, ``report``;
- ``cluster``, ``classify``, ``demo``: those commands and the files they write.

numpy, torch and the layers below are imported inside the commands, so that ``--help``,
``--version`` and argument errors answer without loading them.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

from vaekit.cli.console import (
    EXIT_BROKEN_PIPE,
    EXIT_USAGE,
    _is_main_process,
    _rank_tag,
    _warnings_to_stderr,
)
from vaekit.cli.options import build_parser
from vaekit.cli.runs import _chosen_run_dir
from vaekit.errors import VaekitError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vaekit`` command; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the parser they were given to, which names its --help
        given = list(sys.argv[1:] if argv is None else argv)
        before = given[: given.index(args.command)] if args.command in given else []
        blamed = parser if any(a in before for a in extra) else parser.commands[args.command]
        blamed.error(f"unrecognized arguments: {' '.join(extra)}")
    args.seed_given = getattr(args, "seed", None) is not None
    if hasattr(args, "seed") and args.seed is None:
        args.seed = 0
    _chosen_run_dir.clear()  # a process may run several commands (tests, notebooks)
    try:
        with _warnings_to_stderr():
            return int(args.func(args))
    except VaekitError as exc:
        print(f"vaekit {args.command}: error{_rank_tag()}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # stdout's reader left ('vaekit evaluate RUN | head'): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a path the checks above could not foresee (disk full, ...)
        name = exc.filename2 or exc.filename  # os.replace(tmp, dest): dest is the user's path
        where = f" '{name}'" if name else ""
        print(
            f"vaekit {args.command}: error: cannot read or write{where} "
            f"({exc.strerror or exc}); check the path, its permissions and free space",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C reaches every rank; rank 0 says it
        if not _is_main_process():
            return 130
        hint = ""
        run = args.out or (_chosen_run_dir[0] if _chosen_run_dir else None)
        if args.command in ("train", "cluster", "classify") and run is not None:
            hint = (
                f"; once it has saved an epoch, the same command with --out "
                f"{shlex.quote(str(run))} and --resume continues the run from there"
            )
        print(f"vaekit {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
