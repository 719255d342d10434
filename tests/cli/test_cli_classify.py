"""``vaekit classify``, ``train --model m2`` and ``evaluate`` on a classifier run, end to end.

Real processes on real files: digits with a few labels, and an image folder whose
``unlabeled/`` sub-folder is used as unlabeled training data.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import TINY, Cli, Preloaded, assert_ok, assert_user_error, write_image_folder
from PIL import Image

from vaekit import load_dataset

CLASSIFICATION_KEYS = {
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "per_class",
    "confusion_matrix",
    "ece",
    "elbo",  # design.md: the generative metrics that apply
    "n_train",
    "n_test",
    "seconds",
}


def _folder_with_unlabeled(root: Path) -> Path:
    write_image_folder(root, classes=("cats", "dogs"), n=10)
    (root / "unlabeled").mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
            root / "unlabeled" / f"u{i}.png"
        )
    return root


@pytest.fixture(scope="module")
def results(cli: Cli, fast_cli: Cli | Preloaded, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("classify")
    pets = _folder_with_unlabeled(root / "pets")
    flat = root / "flat"
    flat.mkdir()
    for i in range(6):
        Image.new("L", (8, 8), i * 40).save(flat / f"{i}.png")
    unseen = root / "unseen"  # foxes: in test/, and only unlabeled in train/
    write_image_folder(unseen / "train", classes=("cats", "dogs"), n=10)
    write_image_folder(unseen / "train", classes=("unlabeled",), n=5, seed=2)
    write_image_folder(unseen / "test", classes=("cats", "dogs", "foxes"), n=3, seed=4)
    jobs = {
        "digits": ["classify", "digits", "--labels", "30", *TINY, "--out", root / "digits"],
        "unseen class": ["classify", unseen, *TINY, "--out", root / "x3", "--quiet"],
        "m2": ["train", pets, "--model", "m2", *TINY, "--out", root / "m2", "--quiet"],
        "too few labels": ["classify", "digits", "--labels", "5", "--out", root / "x1"],
        "no labels": ["classify", flat, *TINY, "--out", root / "x2"],
    }
    res = fast_cli.many(jobs)
    # The image folder through a freshly started interpreter, as a user runs it.
    res["folder"] = cli("classify", pets, *TINY, "--out", root / "pets-run", "--quiet")
    # Other folders for the folder's run: its dogs alone (class 0 there, 1 in the run), and
    # dogs beside a class the run never saw.
    shutil.copytree(pets / "dogs", root / "dogs-only" / "dogs")
    shutil.copytree(pets / "dogs", root / "with-foxes" / "dogs")
    write_image_folder(root / "with-foxes", classes=("foxes",), n=10, seed=3)
    res.update(
        fast_cli.many(
            {
                "evaluate": ["evaluate", root / "digits", "--out", root / "eval.json"],
                "evaluate dogs": [
                    "evaluate", root / "pets-run", root / "dogs-only", "--out", root / "dogs.json"
                ],
                "evaluate foxes": [
                    "evaluate", root / "pets-run", root / "with-foxes", "--out", root / "f.json"
                ],
                "evaluate unlabeled": [
                    "evaluate", root / "pets-run", flat, "--out", root / "u.json"
                ],
            }
        )
    )  # fmt: skip
    return root, res


def test_classify_digits_writes_predictions_and_metrics(results):
    root, res = results
    assert_ok(res["digits"])
    out = root / "digits"
    assert res["digits"].stdout.splitlines()[-1] == str(out)
    for name in ("config.json", "model.safetensors", "predictions.csv", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert CLASSIFICATION_KEYS <= metrics.keys()
    assert metrics["n_labeled"] == 30 and metrics["n_train"] == 1437 and metrics["n_test"] == 360
    assert np.array(metrics["confusion_matrix"]).sum() == 360
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "path", "label", "probability"]
    assert len(rows) == 360 and {r["label"] for r in rows} <= {str(d) for d in range(10)}
    seed = json.loads((out / "config.json").read_text())["params"]["random_state"]
    rows_test = load_dataset("digits", random_state=seed).rows_test  # as clusters.csv: DATA rows
    assert [int(r["index"]) for r in rows] == rows_test.tolist()
    assert all(0.0 < float(r["probability"]) <= 1.0 for r in rows)
    config = json.loads((out / "config.json").read_text())
    assert config["estimator"] == "VAEClassifier"
    assert config["fitted"]["n_labeled"] + config["fitted"]["n_calibration"] == 30


def test_evaluate_on_a_classifier_run_reports_the_same_metrics(results):
    root, res = results
    assert_ok(res["evaluate"])
    evaluated = json.loads((root / "eval.json").read_text())
    written = json.loads((root / "digits" / "metrics.json").read_text())
    assert CLASSIFICATION_KEYS <= evaluated.keys()
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "ece", "elbo"):
        assert evaluated[key] == pytest.approx(written[key], abs=1e-9), key
    assert evaluated["confusion_matrix"] == written["confusion_matrix"]


def test_evaluate_matches_other_data_to_the_run_classes_by_name(results):
    root, res = results
    assert_ok(res["evaluate dogs"])
    evaluated = json.loads((root / "dogs.json").read_text())
    # Every test image is a dog: the cats row is empty, whatever the model predicts.
    assert set(evaluated["per_class"]) == {"cats", "dogs"}
    cats_row, dogs_row = evaluated["confusion_matrix"]
    assert sum(cats_row) == 0 and sum(dogs_row) == evaluated["n_scored"] > 0
    assert_user_error(res["evaluate foxes"], "with-foxes", "'foxes'", "pets-run")
    assert not (root / "f.json").exists()
    # No labels at all: nothing to score, said as such (it printed only image counts).
    assert_user_error(res["evaluate unlabeled"], "flat", "no labeled test images", "pets-run")
    assert not (root / "u.json").exists()


def test_image_folder_with_unlabeled_part(results):
    root, res = results
    assert_ok(res["folder"])
    out = root / "pets-run"
    config = json.loads((out / "config.json").read_text())
    fitted = config["fitted"]
    # 30 images, 20% test split: the 24 training images hold 8 unlabeled ones.
    assert fitted["n_unlabeled"] == 8
    assert fitted["n_labeled"] + fitted["n_calibration"] == 16
    assert fitted["classes"] == [0, 1]
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert all(r["path"].endswith(".png") for r in rows)
    assert {r["label"] for r in rows} <= {"cats", "dogs"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_scored"] == sum("/unlabeled/" not in r["path"] for r in rows)
    assert set(metrics["per_class"]) == {"cats", "dogs"}


def test_train_model_m2(results):
    root, res = results
    assert_ok(res["m2"])
    config = json.loads((root / "m2" / "config.json").read_text())
    assert config["estimator"] == "VAEClassifier"
    assert CLASSIFICATION_KEYS <= json.loads((root / "m2" / "metrics.json").read_text()).keys()


def test_a_test_class_without_labeled_training_images_is_said(results):
    """Its test images all count as errors; that was scored without a word (a review)."""
    _, res = results
    assert_ok(res["unseen class"])
    assert "vaekit: warning: " in res["unseen class"].stderr
    assert "'foxes' but no labeled training image" in res["unseen class"].stderr


def test_user_errors(results):
    root, res = results
    assert_user_error(res["too few labels"], "--labels 5", "10 classes")
    assert not (root / "x1" / "config.json").exists()
    assert_user_error(res["no labels"], "no labeled training images")
