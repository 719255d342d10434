"""What ``evaluate``, ``embed`` and ``report`` may write: never the data they read or a run's
own files, and ``evaluate`` on other data leaves the run's metrics as they were."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
from cli_helpers import (
    DIGITS_TEST,
    LATENT_DIM,
    TINY,
    Cli,
    Preloaded,
    TrainedRun,
    assert_ok,
    assert_user_error,
    console_script,
    copy_run,
    snapshot,
    write_image_folder,
)
from PIL import Image

from vaekit import VAE, VAEClustering, load_dataset
from vaekit.data.prepared import prepare


def _other_npz(path: Path, n_train: int = 50, n_test: int = 20) -> Path:
    ds = load_dataset("digits")
    np.savez(path, x=ds.x_train[:n_train], y=ds.y_train[:n_train],
             x_test=ds.x_test[:n_test], y_test=ds.y_test[:n_test])  # fmt: skip
    return path


def test_evaluate_on_other_data_prints_and_leaves_the_run_metrics(
    fast_cli: Cli | Preloaded, trained_run: TrainedRun, tmp_path: Path
) -> None:
    """Before, the other data's scores replaced the run's beside the run's own image counts."""
    run = copy_run(trained_run.path, tmp_path / "run")
    before = (run / "metrics.json").read_bytes()
    other = _other_npz(tmp_path / "other.npz")
    res = fast_cli("evaluate", run, other)
    assert_ok(res)
    printed = json.loads(res.stdout)
    assert (printed["n_train"], printed["n_test"]) == (50, 20)
    assert printed["data"] == str(other)
    assert (run / "metrics.json").read_bytes() == before
    # To keep them, --out FILE.json; naming the run's own file merges as without --out.
    assert_ok(fast_cli("evaluate", run, other, "--out", tmp_path / "other.json"))
    assert json.loads((tmp_path / "other.json").read_text())["n_test"] == 20
    assert_ok(fast_cli("evaluate", run, "--out", run / "metrics.json"))
    merged = json.loads((run / "metrics.json").read_text())
    assert merged["n_test"] == DIGITS_TEST and "evaluate_seconds" in merged


def test_outputs_never_replace_the_data_or_a_run_file(
    fast_cli: Cli | Preloaded, trained_run: TrainedRun, tmp_path: Path
) -> None:
    run = copy_run(trained_run.path, tmp_path / "run")
    files = {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    data = tmp_path / "my data.npy"
    np.save(data, load_dataset("digits").x_train[:40])
    data.with_suffix(".json").write_text("{}\n")  # as beside a prepared array
    kept = data.read_bytes()
    cases = [
        (("embed", run, data, "--out", data), "the data being read"),
        (("evaluate", run, data, "--out", data.with_suffix(".json")), "the data being read"),
        (("evaluate", run, "--out", run / "config.json"), "a file of the run"),
        (("evaluate", run, "--out", run / "model.safetensors"), "must end in .json"),
        (("embed", run, "digits", "--out", run / "model.safetensors"), "must end in .npy"),
        (("generate", run, "--out", tmp_path / "x.png.npy"), "must end in .png"),
        (("report", run, "--out", run / "config.json"), "must end in .html"),
    ]
    for args, says in cases:
        assert says in assert_user_error(fast_cli(*args)), args
    assert data.read_bytes() == kept
    assert {p: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    for _ in range(2):  # a picture in the run folder is the user's to replace
        assert_ok(fast_cli("generate", run, "--n", "4", "--out", run / "grid.png"))


def test_embed_uses_the_split_of_the_run(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    """A run trained with --seed 3 split its data with seed 3; embed --split test must too.

    Before, embed always split with seed 0: rows did not match the run's clusters.csv or
    predictions.csv, and 'test' overlapped the images the run trained on.
    """
    run = tmp_path / "run"
    tiny = [a if a != "0" else "3" for a in TINY]  # --seed 3
    assert_ok(fast_cli("train", "digits", *tiny, "--out", run, "-q"))
    assert_ok(fast_cli("embed", run, "digits", "--split", "test", "--out", tmp_path / "z.npy"))
    z = np.load(tmp_path / "z.npy", allow_pickle=False)
    want = VAE.load(run).transform(load_dataset("digits", random_state=3).x_test)
    assert z.shape == (DIGITS_TEST, LATENT_DIM)
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-6)


def test_one_new_image_can_be_embedded(
    fast_cli: Cli | Preloaded, trained_run: TrainedRun, tmp_path: Path
) -> None:
    """Before, one image could not be split into train and test, so embed refused it."""
    one = load_dataset("digits").x_test[:1]
    np.save(tmp_path / "one.npy", one)
    z_out = tmp_path / "z.npy"
    assert_ok(fast_cli("embed", trained_run.path, tmp_path / "one.npy", "--out", z_out))
    want = VAE.load(trained_run.path).transform(one)
    np.testing.assert_allclose(np.load(z_out, allow_pickle=False), want, rtol=1e-5, atol=1e-6)
    res = fast_cli("embed", trained_run.path, tmp_path / "one.npy", "--split", "test",
                   "--out", tmp_path / "t.npy")  # fmt: skip
    assert_user_error(res, "has no test images (1 training, 0 test); use --split all")
    res = fast_cli("evaluate", trained_run.path, tmp_path / "one.npy")
    assert_user_error(res, "has no test images to score run")
    folder = tmp_path / "new"  # and the same image as the only one of a folder
    folder.mkdir()
    Image.fromarray(one[0, 0]).save(folder / "a.png")
    assert_ok(fast_cli("embed", trained_run.path, folder, "--out", tmp_path / "f.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), want, rtol=1e-5, atol=1e-6)


def test_generate_and_report_never_write_into_the_runs_image_folder(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Before, a grid written over (or beside) the training images was read as one of them:
    the run's data changed, and evaluate then failed on the odd-sized picture. A report's
    page there (DATA left out or given) put its figure PNGs among the images (a review)."""
    data = write_image_folder(tmp_path / "imgs")
    before = snapshot([data])
    run = tmp_path / "run"
    assert_ok(fast_cli("train", data, *TINY, "--out", run, "-q"))
    for out in (data / "cats" / "0.png", data / "grid.png"):
        res = fast_cli("generate", run, "--n", "4", "--out", out)
        assert_user_error(res, out, "inside the image folder")
    page = data / "cats" / "report.html"
    for given in ([], [data]):
        res = fast_cli("report", run, *given, "--out", page)
        assert_user_error(res, page, "inside the image folder", "figures")
    assert snapshot([data]) == before
    assert_ok(fast_cli("generate", run, "--n", "4", "--out", tmp_path / "grid.png"))


def test_clusters_csv_index_is_the_row_of_an_array_file(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Before, index numbered the images in vaekit's seeded train-then-test order, and a .npy
    has no paths: nothing mapped a cluster back to a row of the user's file (a review)."""
    x = load_dataset("digits").x_test[:200]
    np.save(tmp_path / "d.npy", x)
    run = tmp_path / "clu"
    assert_ok(fast_cli("cluster", tmp_path / "d.npy", *TINY, "--n-clusters", "3", "--out", run))
    with open(run / "clusters.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    index = np.array([int(r["index"]) for r in rows])
    labels = np.array([int(r["cluster"]) for r in rows])
    assert sorted(index) == list(range(200)) and not np.array_equal(index, np.arange(200))
    clu = VAEClustering.load(run)
    np.testing.assert_array_equal(clu.predict(x[index]), labels)  # file row index: that cluster
    assert_ok(fast_cli("embed", run, tmp_path / "d.npy", "--out", tmp_path / "z.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), clu.transform(x), rtol=1e-5, atol=1e-6)
    # A run written before index_is_row, resumed: it writes rows now, and must say so.
    config_path = run / "config.json"
    config = json.loads(config_path.read_text())
    del config["metadata"]["index_is_row"]
    config_path.write_text(json.dumps(config))
    resume = ("cluster", tmp_path / "d.npy", *TINY, "--n-clusters", "3", "--out", run, "--resume")
    assert_ok(fast_cli(*resume))
    assert json.loads(config_path.read_text())["metadata"]["index_is_row"] is True


def test_a_closed_stdout_stops_quietly(trained_run: TrainedRun, tmp_path: Path) -> None:
    """'vaekit evaluate RUN | head': exit like a Unix tool killed by SIGPIPE, say nothing.

    Before: 'error: cannot read or write (Broken pipe); check the path, its permissions and
    free space', exit 2.
    """
    proc = subprocess.Popen(
        [console_script(), "evaluate", str(trained_run.path), "--out", str(tmp_path / "m.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before vaekit prints
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=240) == 141, err
    assert err == ""


def test_demo_quiet_prints_only_its_folder(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    """As train/cluster/classify -q: the folder alone (the demo printed every line)."""
    res = fast_cli("demo", "--out", tmp_path / "d", "--epochs", "1", "-q")
    assert_ok(res)
    assert res.stdout.splitlines() == [str(tmp_path / "d")]
    # Its report pairs each clusters.csv row with its image (a review: without index_is_row
    # in the demo's metadata the pairing was by chance).
    from types import SimpleNamespace

    from vaekit import report
    from vaekit.data.prepared import all_images

    run = tmp_path / "d" / "cluster"
    with open(run / "clusters.csv", newline="") as f:
        table = list(csv.DictReader(f))
    index = np.array([int(r["index"]) for r in table])
    values = np.array([int(r["cluster"]) for r in table])
    config = SimpleNamespace(config=json.loads((run / "config.json").read_text()))
    ds = load_dataset("digits")
    order = report._assignment_order(index, config, ds)
    np.testing.assert_array_equal(values[order], VAEClustering.load(run).predict(all_images(ds)))


def test_evaluate_out_guards_the_recorded_data_and_the_runs_metrics(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Found by a review of the first version of these guards:

    - DATA left out: --out was checked against nothing, so 'evaluate RUN --out pp.json'
      replaced the manifest of the run's prepared data (the data then loaded differently);
    - other DATA with --out RUN/metrics.json printed the scores, wrote nothing, exit 0;
    - 'Digits' and 'digits' load the same data but counted as other data.
    """
    prepare("digits", tmp_path / "pp.npy")
    manifest = (tmp_path / "pp.json").read_bytes()
    run = tmp_path / "run"
    assert_ok(fast_cli("train", tmp_path / "pp.npy", *TINY, "--out", run, "-q"))
    line = assert_user_error(fast_cli("evaluate", run, "--out", tmp_path / "pp.json"))
    assert "the manifest of the prepared dataset" in line  # any prepared data's, not only DATA's
    assert (tmp_path / "pp.json").read_bytes() == manifest
    before = (run / "metrics.json").read_bytes()
    line = assert_user_error(fast_cli("evaluate", run, "digits", "--out", run / "metrics.json"))
    assert "own metrics file" in line
    assert (run / "metrics.json").read_bytes() == before

    spelled = tmp_path / "spelled"
    assert_ok(fast_cli("train", "Digits", *TINY, "--out", spelled, "-q"))
    assert_ok(fast_cli("evaluate", spelled, "digits"))  # the run's own data: merged
    assert "evaluate_seconds" in json.loads((spelled / "metrics.json").read_text())


def test_a_run_with_python_metadata_the_cli_cannot_read(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """``fit(metadata=...)`` saves what a Python user gives: commands that read it say which
    entry they cannot use; ``generate``, which does not read it, works (a review: the first
    version of this check refused every command and called such a run modified)."""
    run = tmp_path / "run"
    x = load_dataset("digits").x_train[:200]
    VAE(hidden_dims=(8,), latent_dim=2, max_epochs=1).fit(
        x, run_dir=run, metadata={"data": ["a.npy", "b.npy"]}
    )
    assert_ok(fast_cli("generate", run, "--out", tmp_path / "g.png"))
    line = assert_user_error(fast_cli("evaluate", run))
    assert "metadata.data" in line and "fix or remove that entry" in line


def test_evaluate_says_when_it_replaces_an_unreadable_metrics_file(
    fast_cli: Cli | Preloaded, trained_run: TrainedRun, tmp_path: Path
) -> None:
    """Before, a metrics.json that was not JSON was replaced without a word (a review)."""
    run = copy_run(trained_run.path, tmp_path / "run")
    (run / "metrics.json").write_text("{not json")
    res = fast_cli("evaluate", run, "-q")
    assert_ok(res)
    assert "could not be read" in res.stderr and str(run / "metrics.json") in res.stderr
    assert json.loads((run / "metrics.json").read_text())["n_test"] == DIGITS_TEST
