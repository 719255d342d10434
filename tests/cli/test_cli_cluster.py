"""``vaekit cluster`` end to end, with ``--n-clusters auto``, then ``generate --cluster``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from cli_helpers import Cli, Preloaded, assert_ok, assert_user_error
from PIL import Image


def test_cluster_auto_then_generate_per_cluster(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    out = tmp_path / "clu"
    res = fast_cli(
        "cluster", "digits", "--n-clusters", "auto", "--epochs", "3", "--hidden-dims", "32",
        "--latent-dim", "3", "--out", out, "--quiet",
    )  # fmt: skip
    assert_ok(res)
    with open(out / "clusters.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1797 and list(rows[0]) == ["index", "path", "cluster", "probability"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"acc", "nmi", "ari", "silhouette", "n_clusters", "k_selection"} <= metrics.keys()
    k = metrics["n_clusters"]
    assert k == metrics["k_selection"]["chosen"]
    assert {int(r["cluster"]) for r in rows} <= set(range(k))
    with Image.open(out / "montage.png") as im:
        im.verify()

    png = tmp_path / "c0.png"
    gen = ["generate", out, "--cluster", "0", "--n", "8", "--out", png, "--quiet"]
    results = fast_cli.many(
        {
            "ok": gen,
            "bad": [*gen[:2], "--cluster", str(k), "--out", png],
            "vade": ["cluster", "digits", "--method", "vade", "--manifold", "umap", "--out", png],
            "vade_shift": [
                *("cluster", "digits", "--method", "vade", "--shift-average", "0.1", "--out", png)
            ],
            "vade_dropout": [
                *("cluster", "digits", "--method", "vade", "--input-dropout", "0.2", "--out", png)
            ],
        }
    )
    assert_ok(results["ok"])
    with Image.open(png) as im:
        im.verify()
    assert "--cluster must be in" in assert_user_error(results["bad"], "--cluster")
    assert "drop it for vade" in assert_user_error(results["vade"], "--manifold")
    assert "drop it for vade" in assert_user_error(results["vade_shift"], "--shift-average")
    assert "drop it for vade" in assert_user_error(results["vade_dropout"], "--input-dropout")

    # evaluate adds the ELBO to the run's metrics and keeps the clustering's own.
    assert_ok(fast_cli("evaluate", out, "--quiet"))
    after = json.loads((out / "metrics.json").read_text())
    assert {k: after[k] for k in ("acc", "nmi", "ari", "silhouette")} == {
        k: metrics[k] for k in ("acc", "nmi", "ari", "silhouette")
    }
    assert "elbo" in after and "evaluate_seconds" in after
    assert after["scored_on"] == "all images (trained on)"  # a clustering holds none out
    other = tmp_path / "other.npy"  # images the run never saw: not "trained on"
    np.save(other, np.random.default_rng(0).integers(0, 256, (12, 8, 8)).astype(np.uint8))
    res = fast_cli("evaluate", out, other, "--quiet")
    assert_ok(res)
    assert json.loads(res.stdout)["scored_on"] == "all images of DATA"
    assert {k: after[k] for k in ("n_train", "n_test", "seconds")} == {
        k: metrics[k] for k in ("n_train", "n_test", "seconds")
    }


def test_cluster_with_the_spectral_step(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    out = tmp_path / "spec"
    args = [
        "cluster", "digits", "--n-clusters", "10", "--method", "kmeans", "--epochs", "3",
        "--hidden-dims", "32", "--latent-dim", "4", "--manifold", "spectral",
    ]  # fmt: skip
    ok = [*args, "--manifold-dim", "12", "--shift-average", "0", "--input-dropout", "0.1"]
    results = fast_cli.many(
        {
            "ok": [*ok, "--out", out, "--quiet"],
            "bad": [*args, "--manifold-dim", "0", "--out", tmp_path / "bad", "--quiet"],
            "bad_shift": [*args, "--shift-average", "0.5", "--out", tmp_path / "bad", "--quiet"],
            "bad_dropout": [*args, "--input-dropout", "1", "--out", tmp_path / "bad", "--quiet"],
        }
    )
    assert_ok(results["ok"])
    params = json.loads((out / "config.json").read_text())["params"]
    assert params["manifold"] == "spectral" and params["manifold_dim"] == 12
    assert params["shift_average"] == 0.0 and params["input_dropout"] == 0.1
    metrics = json.loads((out / "metrics.json").read_text())
    # A 3-epoch VAE: far from good, but far above chance (about 0.11 for 10 classes).
    assert metrics["n_clusters"] == 10 and metrics["acc"] > 0.2
    assert_user_error(results["bad"], "--manifold-dim")
    assert_user_error(results["bad_shift"], "--shift-average")
    assert "[0, 1)" in assert_user_error(results["bad_dropout"], "--input-dropout")
    assert not (tmp_path / "bad").exists()

    # A run saved before --shift-average existed clustered the plain means: resuming it
    # with --shift-average 0 is no change, any other value is one.
    config = json.loads((out / "config.json").read_text())
    del config["params"]["shift_average"]
    (out / "config.json").write_text(json.dumps(config))
    again = [*args, "--manifold-dim", "12", "--out", out, "--resume", "--quiet"]
    results = fast_cli.many(
        {"same": [*again, "--shift-average", "0"], "other": [*again, "--shift-average", "0.04"]}
    )
    assert_ok(results["same"])
    assert "(the run has 0.0)" in assert_user_error(results["other"], "--shift-average")


def test_train_model_vade_is_a_mixture_prior_run(fast_cli: Cli | Preloaded, tmp_path: Path) -> None:
    """design.md's ``vaekit train DATA --model vade``: VaDE, 10 components, resumable as such."""
    out = tmp_path / "vade"
    tiny = ("--epochs", "2", "--hidden-dims", "32", "--latent-dim", "3", "-q")
    assert_ok(fast_cli("train", "digits", "--model", "vade", *tiny, "--out", out))
    config = json.loads((out / "config.json").read_text())
    assert config["estimator"] == "VAEClustering"
    assert (config["params"]["method"], config["params"]["n_clusters"]) == ("vade", 10)
    metrics = json.loads((out / "metrics.json").read_text())
    # design.md's clustering metrics too, of the held-out test images
    assert {"elbo", "n_train", "n_test", "acc", "nmi", "ari", "silhouette"} <= metrics.keys()
    assert metrics["n_clusters"] == 10 and 0.0 <= metrics["acc"] <= 1.0
    assert_ok(fast_cli("train", "digits", "--out", out, "--resume", "-q"))
    assert_ok(fast_cli("generate", out, "--cluster", "9", "--n", "4", "--out", tmp_path / "g.png"))
    # evaluate scores the held-out test images as train did, not all images (it trained on
    # only the training split: "all images (trained on)" was false, and flattered the ELBO).
    assert_ok(fast_cli("evaluate", out, "-q"))
    evaluated = json.loads((out / "metrics.json").read_text())
    assert "scored_on" not in evaluated
    assert abs(evaluated["elbo"] - metrics["elbo"]) < 0.05 * abs(metrics["elbo"])
    assert evaluated["acc"] == metrics["acc"] and evaluated["n_test"] == metrics["n_test"]
    # It trained on the training split only: the report must not say it clustered all 1797.
    assert_ok(fast_cli("report", out))
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "images clustered" not in html
    assert '<tr><td>training images</td><td class="num">1437</td></tr>' in html
    assert "Odd columns: held-out images" in html  # the reconstructions show test images


def test_cluster_and_report_data_whose_test_part_has_no_labels(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """An .npz with y but no y_test: labels score the labeled part, nothing crashes.

    Before, cluster and report joined y_train and the missing y_test with np.concatenate
    and ended in a ValueError traceback.
    """
    import numpy as np

    from vaekit import load_dataset

    ds = load_dataset("digits")
    np.savez(tmp_path / "t.npz", x=ds.x_train[:200], y=ds.y_train[:200], x_test=ds.x_test[:50])
    out = tmp_path / "c"
    tiny = ("--epochs", "1", "--hidden-dims", "16", "--latent-dim", "2", "--n-clusters", "3")
    assert_ok(fast_cli("cluster", tmp_path / "t.npz", *tiny, "--out", out, "-q"))
    assert "acc" in json.loads((out / "metrics.json").read_text())
    assert_ok(fast_cli("report", out))


def test_cluster_notes_a_default_k_unlike_the_classes(
    fast_cli: Cli | Preloaded, tmp_path: Path
) -> None:
    """Three classes of labels and no --n-clusters: say that 10 clusters do not match them."""
    from vaekit import load_dataset

    ds = load_dataset("digits")
    keep = ds.y_train < 3
    np.savez(tmp_path / "abc.npz", x=ds.x_train[keep][:120], y=ds.y_train[keep][:120])
    tiny = ("--epochs", "1", "--hidden-dims", "16", "--latent-dim", "2")
    results = fast_cli.many(
        {
            "default": ["cluster", tmp_path / "abc.npz", *tiny, "--out", tmp_path / "a"],
            "given": [
                *("cluster", tmp_path / "abc.npz", *tiny, "--n-clusters", "10"),
                *("--out", tmp_path / "b"),
            ],
        }
    )
    assert_ok(results["default"])
    assert "note: 10 clusters (the default), but" in results["default"].stderr
    assert "has 3 classes; pass --n-clusters 3 to match them" in results["default"].stderr
    assert_ok(results["given"])
    assert "note:" not in results["given"].stderr


def test_status_line_names_the_copy_of_a_builtin_dataset_it_read(cli: Cli, tmp_path: Path) -> None:
    """$VAEKIT_DATA, Debian's folder or the cache: the first line says which was read."""
    from dataclasses import replace

    from cli_helpers import write_idx_folder

    folder = write_idx_folder(tmp_path / "data" / "fashion-mnist", 60, 20, side=28)
    run = replace(cli, env={**cli.env, "VAEKIT_DATA": str(tmp_path / "data")})
    tiny = ("--epochs", "1", "--hidden-dims", "16", "--latent-dim", "2", "--n-clusters", "3")
    res = run("cluster", "fashion-mnist", *tiny, "--out", tmp_path / "c")
    assert_ok(res)
    assert f"clustering 80 images of fashion-mnist ({folder}) (method" in res.stderr
