"""Mean ± std over the seeds of several runs of one benchmark's ``--json`` reports.

``clustering.py``, ``classification.py`` and ``time_to_quality.py`` are understood.

A five-seed protocol on 2 cores runs as two commands side by side (seeds 0 1 2 beside 3 4),
each with its own ``--json`` report; each prints the summary of its own seeds only. This
script reads the reports, checks that they are runs of the same benchmark with the same
settings and no seed twice, and prints the summary over all their seeds, exactly as the
benchmark itself prints it (sample standard deviation, the issue's targets).

Run from the repository root::

    python bench/summary.py /tmp/c/b012.json /tmp/c/b34.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import classification
import clustering
import time_to_quality

#: Options that may differ between the runs of one protocol.
_PER_RUN_OPTIONS = {"--seeds", "--json", "--skip-baseline", "--save-latents"}


def settings(command: str) -> list[str]:
    """The benchmark's command line without the options that differ between runs."""
    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if w.endswith(".py"))
    kept, skipping = [Path(words[start]).name], False
    for word in words[start + 1 :]:
        if word.startswith("--"):
            skipping = word.split("=")[0] in _PER_RUN_OPTIONS
        if not skipping:
            kept.append(word)
    return kept


def main(argv: list[str] | None = None) -> None:
    """Read the reports, check them and print the combined summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="--json files of one benchmark")
    args = parser.parse_args(argv)

    reports = [json.loads(p.read_text(encoding="utf-8")) for p in args.reports]
    for path, rep in zip(args.reports, reports, strict=True):
        print(f"{path}: {rep['date']}, {rep['machine']['cpu']}\n  {rep['command']}")
    if len({tuple(settings(rep["command"])) for rep in reports}) > 1:
        sys.exit("summary.py: the reports are runs of different benchmarks or settings")
    print()
    if isinstance(reports[0]["results"], dict) and "seeds" in reports[0]["results"]:
        seeds = [s for rep in reports for s in rep["results"]["seeds"]]  # time_to_quality.py
        _check_seeds([("vaekit", s["seed"]) for s in seeds])
        target = reports[0].get("target", time_to_quality.DEFAULT_TARGET)  # not kept at first
        time_to_quality.print_summary(seeds, target)
    elif isinstance(reports[0]["results"], dict):  # clustering.py: method -> rows
        results: dict[str, list] = {}
        for rep in reports:
            for name, rows in rep["results"].items():
                results.setdefault(name, []).extend(rows)
        _check_seeds([(name, r["seed"]) for name, rows in results.items() for r in rows])
        clustering.print_summary(results)
    else:  # classification.py: a list of rows
        rows = [r for rep in reports for r in rep["results"]]
        _check_seeds([(r["method"], r["labels"], r["seed"]) for r in rows])
        classification.print_summary(rows, targets=reports[0].get("scored_on") == "test images")


def _check_seeds(keys: list[tuple]) -> None:
    seen: set[tuple] = set()
    twice = [k for k in keys if k in seen or seen.add(k)]
    if twice:
        sys.exit(f"summary.py: in more than one report (method, ..., seed): {twice}")


if __name__ == "__main__":
    main()
