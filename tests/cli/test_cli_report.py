"""``vaekit report`` end to end, in real processes: VAE and clustering runs, bad input."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import (
    TINY,
    Cli,
    Preloaded,
    TrainedRun,
    assert_ok,
    assert_user_error,
    copy_run,
    snapshot,
    write_image_folder,
)

#: UMAP works when umap-learn is installed (slow: numba compiles it), else it is an error.
HAS_UMAP = importlib.util.find_spec("umap") is not None
VAE_FIGURES = ("training-curves", "reconstructions", "samples", "latent-map")
CLUSTER_FIGURES = (
    "training-curves",
    "reconstructions",
    "samples",
    "cluster-sizes",
    "cluster-montage",
    "latent-map",
    "classes-vs-clusters",
)


@dataclass(frozen=True)
class Reports:
    root: Path
    results: dict[str, subprocess.CompletedProcess[str]]

    def __getitem__(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.results[name]


@pytest.fixture(scope="module")
def reports(
    fast_cli: Cli | Preloaded, trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory
) -> Reports:
    root = tmp_path_factory.mktemp("reports")
    vae = copy_run(trained_run.path, root / "vae")
    (root / "empty").mkdir()
    write_image_folder(root / "pets", mode="RGB")  # 3x8x8: not the run's 1x8x8 digits
    (root / "mine").mkdir()  # a user's page and picture where the report's would go
    (root / "mine" / "page.html").write_text("my page")
    (root / "mine" / "page-samples.png").write_bytes(b"my picture")
    jobs = {
        "report vae": ["report", vae],
        "cluster": [
            *("cluster", "digits", "--n-clusters", "3", "--method", "vade", *TINY),
            *("--out", root / "clu"),
        ],
        "missing": ["report", root / "nope"],
        "empty": ["report", root / "empty"],
        "bad out": ["report", vae, "--out", root / "report.txt"],
        "user's png": ["report", vae, "--out", root / "mine" / "page.html"],
        "other shape": ["report", vae, root / "pets", "--out", root / "pets.html"],
        "train on a folder": ["train", root / "pets", *TINY, "--out", root / "pets-run", "-q"],
    }
    if not HAS_UMAP:
        jobs["umap"] = ["report", vae, "--latent-map", "umap", "--out", root / "u" / "r.html"]
    results = fast_cli.many(jobs)
    assert_ok(results["train on a folder"])
    shutil.rmtree(root / "pets")  # the run's recorded data is gone
    edited = copy_run(root / "clu", root / "clu-edited")
    rows = (edited / "clusters.csv").read_text().splitlines()
    rows[1] = ",".join([*rows[1].split(",")[:2], "-1", rows[1].split(",")[3]])
    (edited / "clusters.csv").write_text("\n".join(rows) + "\n")
    copy_run(vae, root / "runs" / "a")
    copy_run(root / "clu", root / "runs" / "b")
    results |= fast_cli.many(
        {
            "report clu": ["report", root / "clu", "--out", root / "out" / "clu.html", "-q"],
            "edited clusters": ["report", edited],
            "data gone": ["report", root / "pets-run"],
            "two runs": ["report", vae, root / "clu", "--out", root / "two.html"],
            "folder of runs": ["report", root / "runs"],
            "report vae again": ["report", vae, "-q"],  # replaces its own figures
        }
    )
    return Reports(root, results)


def test_report_of_a_vae_run(reports: Reports) -> None:
    res = reports["report vae"]
    assert_ok(res)
    run = reports.root / "vae"
    assert res.stdout.splitlines()[-1] == str(run / "report.html")
    assert "4 figures" in res.stderr
    text = (run / "report.html").read_text(encoding="utf-8")
    assert text.count('src="data:image/png;base64,') == len(VAE_FIGURES)
    for name in VAE_FIGURES:
        assert (run / f"report-{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert_ok(reports["report vae again"])  # over its own figures: no clash


def test_report_of_a_clustering_run_beside_its_out_file(reports: Reports) -> None:
    assert_ok(reports["cluster"])
    res = reports["report clu"]
    assert_ok(res)
    out = reports.root / "out"
    assert res.stdout == f"{out / 'clu.html'}\n"  # --quiet: only the path
    # The PNGs are named after the page; K was given, so no K-selection curve.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["clu.html", *(f"clu-{n}.png" for n in CLUSTER_FIGURES)]
    )
    text = (out / "clu.html").read_text(encoding="utf-8")
    assert "Classes vs clusters" in text and "silhouette" in text
    assert "<title>vaekit report: clu</title>" in text  # the run's name, not --out's folder


def test_report_bad_input_is_one_line_and_writes_nothing(reports: Reports) -> None:
    root = reports.root
    assert_user_error(reports["missing"], root / "nope", "does not exist")
    assert_user_error(reports["empty"], root / "empty", "holds no run")
    assert_user_error(reports["bad out"], "--out", ".html")
    mine = root / "mine"
    assert_user_error(reports["user's png"], mine / "page-samples.png", "no vaekit report wrote")
    assert (mine / "page-samples.png").read_bytes() == b"my picture"
    assert sorted(p.name for p in mine.iterdir()) == ["page-samples.png", "page.html"]
    assert (mine / "page.html").read_text() == "my page"
    assert_user_error(reports["other shape"], "pets", "3x8x8")
    assert not (root / "pets.html").exists() and not (root / "report.txt").exists()
    assert snapshot([root / "empty"]) == {}
    assert_user_error(reports["two runs"], root / "clu", "is a run")
    assert not (root / "two.html").exists()
    edited = root / "clu-edited"
    assert_user_error(reports["edited clusters"], edited / "clusters.csv", "'-1'")
    assert not list(edited.glob("report*"))


def test_report_of_a_folder_of_runs_says_which_run_it_reads(reports: Reports) -> None:
    res = reports["folder of runs"]
    assert_ok(res)
    lines = res.stderr.splitlines()  # status lines; stdout holds the report's path alone
    runs = reports.root / "runs"
    assert lines[:2] == [f"reading run 1 of 2: {runs / 'a'}", f"reading run 2 of 2: {runs / 'b'}"]
    assert res.stdout == f"{runs / 'report.html'}\n"


def test_report_of_a_run_whose_data_is_gone_warns_and_leaves_out_its_figures(
    reports: Reports,
) -> None:
    res = reports["data gone"]
    assert_ok(res)
    (line,) = [x for x in res.stderr.splitlines() if "warning" in x]
    assert "pets" in line and "pass DATA" in line
    html = (reports.root / "pets-run" / "report.html").read_text()
    assert "training-curves" in html and "latent-map" not in html


@pytest.mark.skipif(HAS_UMAP, reason="umap-learn is installed, so the UMAP map works")
def test_umap_without_umap_learn_says_what_to_install(reports: Reports) -> None:
    assert_user_error(reports["umap"], "umap-learn", "pca")
    assert not (reports.root / "u").exists()
