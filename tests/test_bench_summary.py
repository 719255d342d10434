"""``bench/summary.py``: one summary over the ``--json`` reports of several benchmark runs."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _clustering_report(path: Path, seeds: list[int], *, extra: str = "") -> Path:
    rows = [
        {"seed": s, "acc": 0.70 + s / 100, "nmi": 0.69, "ari": 0.57, "seconds": 300.0 + s}
        for s in seeds
    ]
    command = (
        f"python bench/clustering.py --seeds {' '.join(map(str, seeds))} --epochs 50 "
        f"--json {path}{extra}"
    )
    report = {"date": "d", "command": command, "machine": {"cpu": "c"}, "results": {"vaekit": rows}}
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def _summary(*reports: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "summary.py"), *map(str, reports)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_summary_pools_the_seeds_of_runs_side_by_side(tmp_path):
    a = _clustering_report(tmp_path / "a.json", [0, 1, 2])
    b = _clustering_report(tmp_path / "b.json", [3, 4])
    done = _summary(a, b)
    assert done.returncode == 0, done.stderr
    accs = [0.70 + s / 100 for s in range(5)]
    expected = f"acc {statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}"  # ddof=1
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("vaekit "))
    assert expected in line and "(seeds: 0, 1, 2, 3, 4)" in line
    assert "mean ACC >= 0.70: True" in done.stdout


def test_summary_refuses_runs_of_other_settings_or_a_seed_twice(tmp_path):
    a = _clustering_report(tmp_path / "a.json", [0, 1])
    other = _clustering_report(tmp_path / "b.json", [2], extra=" --input-dropout 0")
    done = _summary(a, other)
    assert done.returncode != 0 and "different benchmarks or settings" in done.stderr
    again = _clustering_report(tmp_path / "c.json", [1, 2])
    done = _summary(a, again)
    assert done.returncode != 0 and "('vaekit', 1)" in done.stderr


def test_summary_of_classification_reports(tmp_path):
    def report(path: Path, seeds: list[int]) -> Path:
        rows = [
            {
                "method": "vaekit-m2",
                "labels": "100",
                "seed": s,
                **dict.fromkeys(("accuracy", "precision_macro", "recall_macro"), 0.77 + s / 100),
                "f1_macro": 0.76,
                "ece": 0.05,
                "seconds": 300.0,
            }
            for s in seeds
        ]
        command = f"python bench/classification.py --labels 100 --seeds {seeds[0]} --epochs 3"
        path.write_text(
            json.dumps(
                {
                    "date": "d",
                    "command": command,
                    "machine": {"cpu": "c"},
                    "scored_on": "test images",
                    "results": rows,
                }
            ),
            encoding="utf-8",
        )
        return path

    done = _summary(report(tmp_path / "a.json", [0, 1, 2]), report(tmp_path / "b.json", [3, 4]))
    assert done.returncode == 0, done.stderr
    assert "accuracy 0.790 ± 0.016  precision 0.790 ± 0.016  recall 0.790 ± 0.016" in done.stdout
    assert "target N=100: mean accuracy 0.790 >= 0.78: True" in done.stdout


def test_summary_of_time_to_quality_reports(tmp_path):
    def report(path: Path, seeds: list[int], seconds: list[float], keep_target: bool) -> Path:
        rows = [
            {"seed": s, "reached": True, "epoch": 2 + s, "seconds": t, "checks": []}
            for s, t in zip(seeds, seconds, strict=True)
        ]
        command = f"python bench/time_to_quality.py --seeds {' '.join(map(str, seeds))}"
        rep = {"date": "d", "command": command, "machine": {"cpu": "c"}}
        rep.update({"target": 0.65} if keep_target else {})  # the first reports had none
        rep["results"] = {"seeds": rows, "kmeans_pixels": None}
        path.write_text(json.dumps(rep), encoding="utf-8")
        return path

    a = report(tmp_path / "a.json", [0, 1, 2], [41.3, 49.2, 64.0], keep_target=False)
    b = report(tmp_path / "b.json", [3, 4], [50.0, 55.5], keep_target=True)
    done = _summary(a, b)
    assert done.returncode == 0, done.stderr
    times = [41.3, 49.2, 64.0, 50.0, 55.5]
    mean, std = statistics.fmean(times), statistics.stdev(times)
    expected = f"time to ACC >= 0.65: {mean:.1f} ± {std:.1f} s"
    assert expected in done.stdout and "over 5 of 5 seeds (epochs 2, 3, 4, 5, 6" in done.stdout
