"""Paired comparison of several ``bench/throughput.py`` runs, one per seed.

One run compares vaekit with the plain loop on one seed. The two final losses of a run
differ by about as much as one method's losses differ between seeds (0.1-0.5 nats), so
whether vaekit's loss is "no worse" is a question about the mean of the per-seed
differences, not about one seed. This script reads the ``--json`` reports of the runs and
prints, per seed and then over all of them: the ratio of the two methods' images/s over the
whole run and the median of their per-epoch speed ratios, the final
(last-epoch) and eval losses of both methods, and their differences (vaekit - plain, in
nats per image; negative means vaekit's loss is lower), with the mean difference, its
standard error and a two-sided sign-test p-value.

Usage, from the repository root::

    for s in 0 1 2 3 4; do python bench/throughput.py --seed $s --threads 1 \\
        --json runs/tp/s$s.json; done
    python bench/throughput_seeds.py runs/tp/s*.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path


def sign_test_p(diffs: list[float]) -> float:
    """Two-sided sign-test p-value of "the median difference is zero" (ties dropped)."""
    pos = sum(d > 0 for d in diffs)
    n = sum(d != 0 for d in diffs)
    if n == 0:
        return 1.0
    k = min(pos, n - pos)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return m, se


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="--json files of throughput.py")
    args = parser.parse_args(argv)

    rows = []
    for path in args.reports:
        rep = json.loads(path.read_text(encoding="utf-8"))
        res, s = rep["results"], rep["settings"]
        rows.append(
            {
                "file": str(path),
                "seed": s["seed"],
                "threads": s["threads"],
                "epochs": s["epochs"],
                "median_ratio": rep["summary"]["vaekit"]["median_epoch_ratio"],
                "run_ratio": res["vaekit"]["images_per_s"] / res["plain"]["images_per_s"],
                "final_plain": res["plain"]["final_loss"],
                "final_vaekit": res["vaekit"]["final_loss"],
                "eval_plain": res["plain"]["eval_loss"],
                "eval_vaekit": res["vaekit"]["eval_loss"],
            }
        )
    rows.sort(key=lambda r: r["seed"])
    if len({(r["threads"], r["epochs"]) for r in rows}) > 1:
        print("WARNING: the runs differ in threads or epochs; losses depend on both")
    print(
        f"{'seed':>4} {'thr':>3} {'run':>5} {'epoch':>6} {'final plain':>11} {'final vaekit':>12} "
        f"{'diff':>6} {'eval plain':>10} {'eval vaekit':>11} {'diff':>6}"
    )
    for r in rows:
        print(
            f"{r['seed']:>4} {r['threads']:>3} {r['run_ratio']:>5.2f} {r['median_ratio']:>6.2f} "
            f"{r['final_plain']:>11.2f} {r['final_vaekit']:>12.2f} "
            f"{r['final_vaekit'] - r['final_plain']:>+6.2f} {r['eval_plain']:>10.2f} "
            f"{r['eval_vaekit']:>11.2f} {r['eval_vaekit'] - r['eval_plain']:>+6.2f}"
        )
    summary = {"seeds": [r["seed"] for r in rows]}
    print()
    for key, what in (
        ("run_ratio", "images/s ratio over the whole run"),
        ("median_ratio", "median per-epoch speed ratio"),
    ):
        ratios = [r[key] for r in rows]
        print(
            f"{what}: median over runs {statistics.median(ratios):.2f} "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}); target >= 1.5"
        )
        summary[key] = statistics.median(ratios)
    for kind in ("final", "eval"):
        diffs = [r[f"{kind}_vaekit"] - r[f"{kind}_plain"] for r in rows]
        m, se = mean_se(diffs)
        lower = sum(d < 0 for d in diffs)
        p = sign_test_p(diffs)
        print(
            f"{kind} loss, vaekit - plain over {len(diffs)} seeds: mean {m:+.3f} nats "
            f"(standard error {se:.3f}); vaekit lower on {lower} of {len(diffs)} "
            f"(sign test p = {p:.2f}); means plain "
            f"{statistics.fmean(r[f'{kind}_plain'] for r in rows):.2f}, vaekit "
            f"{statistics.fmean(r[f'{kind}_vaekit'] for r in rows):.2f}"
        )
        summary[kind] = {"mean_diff": m, "se": se, "vaekit_lower": lower, "sign_p": p}
    return summary


if __name__ == "__main__":
    main()
