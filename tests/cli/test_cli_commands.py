"""Every ``vaekit`` command end to end, in real processes on real files.

The commands after the shared training run are independent, so the ``outputs`` fixture runs
them all at once, most forked from a preloaded vaekit (``fast_cli``); the training run,
``--help`` and ``generate`` start as real ``python -m vaekit`` / ``vaekit`` (the console
script) processes. Each test then checks one command's result.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    BAR_MARKS,
    DIGITS_TEST,
    DIGITS_TRAIN,
    LATENT_DIM,
    PYTHON_M,
    TINY,
    Cli,
    Preloaded,
    TrainedRun,
    assert_ok,
    assert_user_error,
    console_script,
    copy_run,
    write_idx_folder,
    write_image_folder,
)
from PIL import Image

from vaekit import __version__, load_dataset

SUBCOMMANDS = ("demo", "train", "cluster", "classify", "evaluate", "embed", "generate")
RUN_FILES = ("config.json", "model.safetensors", "history.csv", "metrics.json")
METRIC_KEYS = {"elbo", "reconstruction_mse", "reconstruction_bce", "n_train", "n_test", "seconds"}


@dataclass(frozen=True)
class Outputs:
    """Where each command wrote, and what it printed (``results[name]``)."""

    root: Path
    results: dict[str, subprocess.CompletedProcess[str]]

    def __getitem__(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.results[name]


@pytest.fixture(scope="module")
def outputs(
    cli: Cli,
    fast_cli: Cli | Preloaded,
    trained_run: TrainedRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Outputs:
    root = tmp_path_factory.mktemp("commands")
    run = trained_run.path
    evaluated = copy_run(run, root / "evaluated")
    (evaluated / "metrics.json").unlink()  # evaluate must write it anew
    write_image_folder(root / "pets", mode="RGB")
    x = np.random.default_rng(0).integers(0, 256, (50, 8, 8), dtype=np.uint8)
    y = np.arange(50) % 5
    np.savez(root / "arrays.npz", x=x[:40], y=y[:40], x_test=x[40:], y_test=y[40:])
    write_idx_folder(root / "idx")
    jobs = {
        **{f"help {cmd}": [cmd, "--help"] for cmd in SUBCOMMANDS},
        "evaluate": ["evaluate", evaluated],
        "embed all": ["embed", run, "digits", "--out", root / "z.npy"],
        "embed test": ["embed", run, "digits", "--split", "test", "--out", root / "z_test.npy"],
        "train folder": ["train", root / "pets", *TINY, "--out", root / "pets-run"],
        "train npz": ["train", root / "arrays.npz", *TINY, "--out", root / "npz-run", "--quiet"],
        "train idx": ["train", root / "idx", *TINY, "--out", root / "idx-run"],
    }
    jobs["help preloaded"] = ["--help"]
    jobs["version"] = ["--version"]
    script = [console_script()]  # the installed entry point, not only ``python -m vaekit``
    with ThreadPoolExecutor(max_workers=2) as pool:
        spawned = {
            "help": cli.start(pool, "--help", command=PYTHON_M),
            "generate": cli.start(
                pool, "generate", run, "--n", "16", "--out", root / "s.png", command=script
            ),
        }
        results = fast_cli.many(jobs)
        results.update({name: future.result() for name, future in spawned.items()})
    return Outputs(root, results)


def test_help_of_vaekit_and_every_subcommand(outputs: Outputs) -> None:
    res = outputs["help"]
    assert_ok(res)
    assert res.stdout.startswith("usage: vaekit")
    # the preloaded runner used for most commands answers like the real one
    assert (res.returncode, res.stdout, res.stderr) == (
        outputs["help preloaded"].returncode,
        outputs["help preloaded"].stdout,
        outputs["help preloaded"].stderr,
    )
    for cmd in SUBCOMMANDS:
        assert cmd in res.stdout
        sub = outputs[f"help {cmd}"]
        assert_ok(sub)
        assert sub.stdout.startswith(f"usage: vaekit {cmd}"), sub.stdout
    # Each command states its own defaults (before, classify's --help listed the VAE's and
    # cluster's described m2 and classify).
    helps = {cmd: " ".join(outputs[f"help {cmd}"].stdout.split()) for cmd in SUBCOMMANDS}
    assert "latent size (default: 16)" in helps["classify"] and "m2" not in helps["classify"]
    assert "latent size (default: 10)" in helps["cluster"] and "classify" not in helps["cluster"]


def test_version(outputs: Outputs) -> None:
    res = outputs["version"]
    assert_ok(res)
    assert res.stdout.strip() == f"vaekit {__version__}"


def test_train_digits_writes_the_run_and_prints_its_dir(trained_run: TrainedRun) -> None:
    run, res = trained_run.path, trained_run.result
    assert_ok(res)
    assert PYTHON_M[1:] == ("-m", "vaekit")
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert res.stdout == f"{run}\n"  # the run folder alone: run=$(vaekit train ...) works
    assert "training VAE on digits" in res.stderr  # chatter without --quiet, on stderr
    config = json.loads((run / "config.json").read_text())
    assert config["params"]["latent_dim"] == LATENT_DIM
    assert config["metadata"]["image_shape"] == [1, 8, 8]
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 2  # header + one epoch
    metrics = json.loads((run / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    # stderr is not a terminal here, so no progress bar
    assert not any(mark in res.stderr for mark in BAR_MARKS), res.stderr


def test_evaluate_writes_metrics_json(outputs: Outputs) -> None:
    res = outputs["evaluate"]
    assert_ok(res)
    metrics = json.loads((outputs.root / "evaluated" / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    assert (metrics["n_train"], metrics["n_test"]) == (DIGITS_TRAIN, DIGITS_TEST)
    assert all(np.isfinite(metrics[k]) for k in METRIC_KEYS)
    assert json.loads(res.stdout) == metrics


def test_embed_writes_latent_means_of_all_then_one_split(outputs: Outputs) -> None:
    """--split all in DATA's own order (row r: DATA's image r); a part in its rows' order."""
    for name, file in (("embed all", "z.npy"), ("embed test", "z_test.npy")):
        assert_ok(outputs[name])
        assert outputs[name].stdout == f"{outputs.root / file}\n"  # the file, for scripts
    z = np.load(outputs.root / "z.npy", allow_pickle=False)
    assert z.shape == (DIGITS_TRAIN + DIGITS_TEST, LATENT_DIM)
    assert z.dtype == np.float32
    z_test = np.load(outputs.root / "z_test.npy", allow_pickle=False)
    assert z_test.shape == (DIGITS_TEST, LATENT_DIM)
    rows_test = load_dataset("digits").rows_test  # the run's seed, 0, drew the split
    np.testing.assert_allclose(z_test, z[rows_test], rtol=1e-5, atol=1e-6)


def test_generate_writes_a_png_grid(outputs: Outputs) -> None:
    assert_ok(outputs["generate"])
    assert outputs["generate"].stdout == f"{outputs.root / 's.png'}\n"
    path = outputs.root / "s.png"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert min(im.size) >= 4 * 8  # a 4x4 grid of at least 8x8 tiles


@pytest.mark.parametrize(
    ("job", "run_dir", "shape", "n_train", "n_test"),
    [
        ("train folder", "pets-run", [3, 8, 8], 16, 4),  # 20 RGB images, 20% held out
        ("train npz", "npz-run", [1, 8, 8], 40, 10),  # x / x_test given
        ("train idx", "idx-run", [1, 8, 8], 30, 10),  # train / t10k files
    ],
)
def test_train_on_each_kind_of_path(
    outputs: Outputs, job: str, run_dir: str, shape: list[int], n_train: int, n_test: int
) -> None:
    res = outputs[job]
    assert_ok(res)
    run = outputs.root / run_dir
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert res.stdout.splitlines()[-1] == str(run)
    assert json.loads((run / "config.json").read_text())["metadata"]["image_shape"] == shape
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_test"]) == (n_train, n_test)


def test_folder_classes_come_from_sub_folders(outputs: Outputs) -> None:
    config = json.loads((outputs.root / "pets-run" / "config.json").read_text())
    assert config["metadata"]["classes"] == ["cats", "dogs"]


def test_quiet_prints_only_the_run_dir(outputs: Outputs) -> None:
    res = outputs["train npz"]
    assert_ok(res)
    assert res.stdout == f"{outputs.root / 'npz-run'}\n"
    assert res.stderr == ""


def test_demo_writes_everything_and_prints_test_metrics(demo_run: TrainedRun) -> None:
    res, demo = demo_run.result, demo_run.path
    assert_ok(res)
    for name in RUN_FILES:
        assert (demo / "vae" / name).is_file(), name
    for name in ("samples.png", "reconstructions.png"):
        with Image.open(demo / name) as im:
            im.verify()
    assert "test ELBO" in res.stderr
    assert "reconstruction error" in res.stderr
    assert res.stdout == f"{demo}\n"
    history = (demo / "vae" / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + two epochs
    assert not any(mark in res.stderr for mark in BAR_MARKS), res.stderr
    # One page for the three runs: every id unique, and the classify run's own labels shown.
    page = (demo / "report.html").read_text(encoding="utf-8")
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids)) > 3
    assert "labels given for training" in page and "100 of 1437 images" in page


def test_a_built_in_name_is_recorded_as_such_beside_a_folder_of_that_name(
    cli: Cli, tmp_path: Path
) -> None:
    # load_dataset("digits") takes the built-in set even where ./digits exists; the run must
    # record the name, or evaluate and report would score the folder's images instead.
    here = Cli(cwd=tmp_path, env=cli.env)
    write_image_folder(tmp_path / "digits", classes=("a", "b"), n=6)
    assert_ok(here("train", "digits", *TINY, "--out", tmp_path / "run", "--quiet"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["metadata"]["data"] == "digits"
    res = here("evaluate", tmp_path / "run")
    assert_ok(res)
    assert json.loads(res.stdout)["n_test"] == DIGITS_TEST  # the built-in test split


def test_default_run_folders_are_named_after_the_data(cli: Cli, tmp_path: Path) -> None:
    """Before: 'runs/d.npz-vae' for an array, and 'runs/-vae' for '.' (an image folder)."""
    here = Cli(cwd=tmp_path, env=cli.env)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    res = here("train", "d.npz", *TINY, "--quiet")
    assert_ok(res)
    assert res.stdout.strip() == str(Path("runs") / "d-vae")
    pets = write_image_folder(tmp_path / "pets", n=6)
    inside = Cli(cwd=pets, env=cli.env)
    assert_user_error(inside("train", ".", *TINY), "'runs/pets-vae' is inside the data folder")


def test_resuming_a_finished_run_keeps_what_evaluate_added(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """A script that always passes --resume must not lose the ELBO evaluate wrote, nor the
    run's own wall time: the finished run trains nothing and scores the same model."""
    runs = {"cluster": tmp_path / "c", "train": tmp_path / "t"}
    for command, out in runs.items():
        extra = ("--n-clusters", "3") if command == "cluster" else ()
        assert_ok(fast_cli(command, "digits", *TINY, *extra, "--out", out, "-q"))
        assert_ok(fast_cli("evaluate", out, "-q"))
        evaluated = (out / "metrics.json").read_bytes()
        assert b"evaluate_seconds" in evaluated
        assert_ok(fast_cli(command, "digits", *TINY, *extra, "--out", out, "--resume", "-q"))
        assert (out / "metrics.json").read_bytes() == evaluated, command
        # and the line it prints gives the file's figures, not a fresh "seconds" (a review)
        res = fast_cli(command, "digits", *TINY, *extra, "--out", out, "--resume")
        assert_ok(res)
        seconds = json.loads(evaluated)["seconds"]
        assert f"seconds={seconds:.4g}" in res.stdout + res.stderr, command
    # A cluster run trains on, and evaluate scores, every image: its counts say so, also in a
    # file of its own (before: the 80/20 split's counts beside "all images (trained on)").
    assert_ok(fast_cli("evaluate", runs["cluster"], "--out", tmp_path / "e.json", "-q"))
    scored = json.loads((tmp_path / "e.json").read_text())
    own = json.loads((runs["cluster"] / "metrics.json").read_text())
    assert (scored["n_train"], scored["n_test"]) == (own["n_train"], own["n_test"]) == (1797, 0)


def test_a_run_that_diverged_in_its_first_epoch_leaves_its_folder_free(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Before: the folder kept an epoch-0 run that evaluate and report could not read and
    that the same command with a lower --lr refused as 'already holds a run'."""
    out = tmp_path / "nan"
    assert_user_error(
        fast_cli("train", "digits", *TINY, "--lr", "1e6", "--out", out, "-q"), "diverged"
    )
    assert not out.exists()
    assert_ok(fast_cli("train", "digits", *TINY, "--out", out, "-q"))
