"""Users' own image folders end to end: odd folder names, converted colours."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from cli_helpers import TINY, Cli, Preloaded, assert_ok, write_image_folder
from PIL import Image

#: A class folder named in Latin-1, as in a zip made on another system: not valid UTF-8.
ODD_NAME = b"caf\xe9"


def test_folder_names_that_are_not_utf8(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "odd", classes=("plain",), n=12)
    odd = os.path.join(os.fsencode(root), ODD_NAME)
    os.mkdir(odd)
    for i in range(12):
        Image.new("L", (8, 8), 20 * i).save(os.fsdecode(os.path.join(odd, b"%d.png" % i)))
    runs = {name: tmp_path / name for name in ("clu", "cls")}
    results = fast_cli.many(
        {
            "clu": ["cluster", root, *TINY, "--n-clusters", "2", "--out", runs["clu"], "-q"],
            "cls": ["classify", root, *TINY, "--out", runs["cls"], "-q"],
        }
    )
    for res in results.values():
        assert_ok(res)
    # The CSVs stay UTF-8: the odd byte is written as an escape, in paths and classes.
    assert "/caf\\xe9/" in (runs["clu"] / "clusters.csv").read_text(encoding="utf-8")
    metrics = json.loads((runs["cls"] / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"caf\\xe9", "plain"}
    assert_ok(fast_cli("report", runs["cls"], "-q"))


def test_evaluate_and_report_reuse_the_colour_of_the_run(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    root = write_image_folder(tmp_path / "rgb", n=8, mode="RGB")
    run = tmp_path / "gray"
    assert_ok(fast_cli("train", root, *TINY, "--color", "grayscale", "--out", run, "-q"))
    assert json.loads((run / "config.json").read_text())["model"]["input_shape"] == [1, 8, 8]
    results = fast_cli.many({"eval": ["evaluate", run, "-q"], "report": ["report", run, "-q"]})
    for res in results.values():
        assert_ok(res)
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["elbo"])


def test_evaluate_and_report_skip_the_images_the_run_skipped(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Before, a run trained with --skip-bad forgot it: evaluate stopped at the bad image."""
    root = write_image_folder(tmp_path / "imgs", n=12)
    (root / "cats" / "broken.png").write_bytes(b"not a png")
    run = tmp_path / "run"
    assert_ok(fast_cli("train", root, *TINY, "--skip-bad", "--out", run, "-q"))
    assert_ok(fast_cli("evaluate", run, "-q"))
    assert_ok(fast_cli("report", run, "-q"))
    assert (run / "report-reconstructions.png").exists()


def test_evaluate_refuses_when_the_folder_changed_since_training(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Images added since training give another seeded split: the run's own metrics keep
    their scores on the images it held out; --out scores the new split, with a warning."""
    root = write_image_folder(tmp_path / "imgs", n=10)
    run = tmp_path / "run"
    assert_ok(fast_cli("train", root, *TINY, "--out", run, "-q"))
    res = fast_cli("evaluate", run, "-q")
    assert_ok(res)
    assert "warning" not in res.stderr
    write_image_folder(tmp_path / "more", n=5, seed=1)
    for c in ("cats", "dogs"):
        for f in (tmp_path / "more" / c).iterdir():
            f.rename(root / c / f"new-{f.name}")
    before = (run / "metrics.json").read_bytes()
    res = fast_cli("evaluate", run, "-q")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "now gives 24 training and 6 test images" in res.stderr, res.stderr
    assert "trained with 16 and 4" in res.stderr and "--out FILE" in res.stderr, res.stderr
    assert (run / "metrics.json").read_bytes() == before
    res = fast_cli("evaluate", run, "--out", tmp_path / "new.json", "-q")
    assert_ok(res)
    assert "warning" in res.stderr and "now gives 24 training" in res.stderr, res.stderr
    assert json.loads((tmp_path / "new.json").read_text())["n_test"] == 6


def test_data_prepared_again_with_another_seed_is_another_split(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Same counts, other test images: before, evaluate scored images the run trained on
    into its own metrics.json, and embed's rows no longer lined up with clusters.csv."""
    data = tmp_path / "d.npy"
    assert_ok(fast_cli("prepare", "digits", "--out", data, "-q"))
    run = tmp_path / "run"
    assert_ok(fast_cli("cluster", data, *TINY, "--n-clusters", "3", "--out", run, "-q"))
    assert_ok(fast_cli("evaluate", run, "-q"))
    before = (run / "metrics.json").read_bytes()
    data.unlink()
    data.with_suffix(".json").unlink()
    assert_ok(fast_cli("prepare", "digits", "--seed", "1", "--out", data, "-q"))
    res = fast_cli("evaluate", run, "-q")
    assert res.returncode == 2, res.stderr
    assert "other test images than the run held out" in res.stderr, res.stderr
    assert (run / "metrics.json").read_bytes() == before
    res = fast_cli("embed", run, data, "--out", tmp_path / "z.npy", "-q")
    assert_ok(res)
    assert "other test images than the run held out" in res.stderr, res.stderr


def test_nearly_black_integer_images_are_warned_about_once(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    data = tmp_path / "dim.npy"  # 0..15 on the 0..255 scale: valid, but surely another scale
    np.save(data, np.random.default_rng(0).integers(0, 16, (40, 8, 8)).astype(np.uint8))
    jobs = {cmd: [cmd, data, *TINY, "--out", tmp_path / cmd, "-q"] for cmd in ("train", "cluster")}
    for res in fast_cli.many(jobs).values():
        assert_ok(res)
        warned = [line for line in res.stderr.splitlines() if "integers of at most 15" in line]
        assert len(warned) == 1 and f"file '{data}'" in warned[0], res.stderr  # not 'X' again
