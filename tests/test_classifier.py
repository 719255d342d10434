import warnings

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from _sklearn_checks import EXPECTED_FAILURES
from vaekit import VAEClassifier, load_dataset
from vaekit.cli.demo import DEMO_CLASSIFIER
from vaekit.errors import ConfigError, DataError


def tiny(**kw):
    return VAEClassifier(
        **{
            **dict(
                arch="mlp",
                hidden_dims=(16,),
                feature_dim=16,
                decoder_dims=(16,),
                latent_dim=2,
                batch_size=32,
                max_epochs=3,
                learning_rate=2e-2,
                dropout=0.0,
                random_state=0,
                device="cpu",
            ),
            **kw,
        }
    )


def _expected_failures(estimator):
    # A single sample is refused for its one class before its feature range is looked at.
    shared = {k: v for k, v in EXPECTED_FAILURES.items() if k != "check_fit2d_1sample"}
    return {
        **shared,
        "check_classifiers_classes": (
            "-1 marks an unlabeled sample (scikit-learn's semi-supervised convention), so "
            "the binary labels {-1, 1} this check uses leave a single class"
        ),
    }


@parametrize_with_checks([tiny()], expected_failed_checks=_expected_failures)
@pytest.mark.filterwarnings("ignore::vaekit.errors.NearlyBlackWarning")  # 0..4 integer data
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def few_labels(y, per_class, seed=0):
    rng = np.random.default_rng(seed)
    out = np.full_like(y, -1)
    for c in np.unique(y):
        out[rng.choice(np.flatnonzero(y == c), per_class, replace=False)] = c
    return out


#: M2 for 8x8 digits: a two-layer conv trunk, half of every batch labeled.
#: (The demo trains the same model: vaekit.cli.demo.DEMO_CLASSIFIER.)
DIGITS_MODEL = dict(**DEMO_CLASSIFIER, random_state=0, device="cpu")
#: Measured 2026-11-29 (defaults entropy=1, balance=1, propagation=1; too few held-out
#: labels for a temperature, so every label is trained on), test accuracy on digits with 3
#: labels per class and the other training images unlabeled, 12 epochs, against the same
#: model on the 30 labeled images alone for the same number of optimiser steps, label draw
#: and random_state = seed: seeds 0-4 gave 0.822/0.814, 0.828/0.775, 0.811/0.781,
#: 0.744/0.764, 0.778/0.753 (mean margin +0.020; seeds 0-2, the ones tested: +0.030).
#: With more labels the margin shrinks and turns: 5 per class +0.006 (two seeds of five
#: lose), 10 per class -0.026 (all five lose). On a 2-core Xeon (2026-12-06, one thread)
#: seeds 0-2 gave margins 0.008, 0.041, 0.030: the weights, and so the margins, move with
#: the CPU. Pinned: the mean over seeds 0-2 must win by >= MARGIN, well below both means.
SEMI_EPOCHS = 12
SEMI_LABELS_PER_CLASS = 3
SEMI_SEEDS = (0, 1, 2)
MARGIN = 0.005


def test_unlabeled_images_help_on_digits(digits):
    """Six digits models of about 540 optimiser steps each (about 40 s on 2 cores)."""
    margins = []
    for seed in SEMI_SEEDS:
        y = few_labels(digits.y_train, SEMI_LABELS_PER_CLASS, seed)
        model = dict(DIGITS_MODEL, random_state=seed)
        semi = VAEClassifier(**model, max_epochs=SEMI_EPOCHS).fit(digits.x_train, y)
        steps = SEMI_EPOCHS * int(np.ceil(semi.n_rows_per_epoch_ / model["batch_size"]))
        labeled = y >= 0
        # 30 images fit in one batch: one step per epoch.
        alone = VAEClassifier(**model, max_epochs=steps).fit(digits.x_train[labeled], y[labeled])
        acc_semi = semi.score(digits.x_test, digits.y_test)
        acc_alone = alone.score(digits.x_test, digits.y_test)
        print(f"seed {seed}: semi-supervised {acc_semi:.3f}, labeled images alone {acc_alone:.3f}")
        margins.append(acc_semi - acc_alone)
    assert np.mean(margins) >= MARGIN, margins


@pytest.fixture(scope="module")
def semi(digits):
    y = few_labels(digits.y_train, 10)  # 10 of the 100 labels hold out the temperature
    return VAEClassifier(**DIGITS_MODEL, max_epochs=1).fit(digits.x_train, y), y


def test_score_samples_per_image_whatever_is_scored_with_it(digits, semi):
    """M2 scores each image against every class; the noise of an image repeats with it.

    Before, the per-image noise of 50 images was asked to cover the 500 rows of the
    image-class pairs and score_samples raised a RuntimeError on every call.
    """
    clf, _ = semi
    x = digits.x_test[:50]
    full = clf.score_samples(x)
    assert full.shape == (50,) and np.isfinite(full).all()
    np.testing.assert_allclose(clf.score_samples(x[5:8]), full[5:8], rtol=1e-5)
    np.testing.assert_allclose(clf.score_samples(x[::-1]), full[::-1], rtol=1e-5)
    np.testing.assert_allclose(clf.score_samples(x / 255.0), full, rtol=1e-5)


def test_probabilities_and_save_load(digits, semi, tmp_path):
    clf, _ = semi
    proba = clf.predict_proba(digits.x_test)
    assert proba.shape == (len(digits.x_test), 10)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    assert np.array_equal(clf.predict(digits.x_test), clf.classes_[proba.argmax(1)])
    assert clf.temperature_ != 1 and clf.n_calibration_ == 10 and clf.n_labeled_ == 90
    assert clf.calibration_ece_ is not None
    assert clf.n_unlabeled_ == len(digits.x_train) - 100
    clf.save(tmp_path / "run")
    back = VAEClassifier.load(tmp_path / "run")
    np.testing.assert_allclose(back.predict_proba(digits.x_test), proba, atol=1e-6)
    assert back.temperature_ == clf.temperature_
    assert clf.transform(digits.x_test[:3]).shape == (3, 4)
    assert clf.sample(2, label=3).shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="label must be one of"):  # before: a broadcast error
        clf.sample(2, label=[1, 2])


def test_too_few_labels_to_calibrate_are_all_trained_on(digits):
    """5 held-out images cannot fit a temperature over 10 classes (2 drove it to e^4)."""
    y = few_labels(digits.y_train, 5)
    clf = VAEClassifier(**DIGITS_MODEL, max_epochs=1).fit(digits.x_train, y)
    assert clf.n_calibration_ == 0 and clf.n_labeled_ == 50
    assert clf.temperature_ == 1.0 and clf.calibration_ece_ is None


def test_string_labels_and_unlabeled_marker():
    rng = np.random.default_rng(0)
    x = rng.random((60, 6)).astype(np.float32)
    y = np.array(["cat", "dog"] * 30, dtype=object)
    clf = tiny(max_epochs=1).fit(x, y)
    assert list(clf.classes_) == ["cat", "dog"]
    assert set(clf.predict(x)) <= {"cat", "dog"}
    y_int = np.tile([0, 1, -1], 20)
    clf = tiny(max_epochs=1).fit(x, y_int)
    assert list(clf.classes_) == [0, 1] and clf.n_unlabeled_ == 20
    y_mixed = y.copy()
    y_mixed[::3] = -1  # string classes, the integer -1 for unlabeled images
    clf = tiny(max_epochs=1).fit(x, y_mixed)
    assert list(clf.classes_) == ["cat", "dog"] and clf.n_unlabeled_ == 20
    # A plain list of strings and -1 becomes a string array: "-1" still marks unlabeled.
    clf = tiny(max_epochs=1).fit(x, list(y_mixed))
    assert list(clf.classes_) == ["cat", "dog"] and clf.n_unlabeled_ == 20
    # ... and so it does in an object array of strings (a pandas Series read from a CSV).
    y_text = np.array([str(v) for v in y_mixed], dtype=object)
    clf = tiny(max_epochs=1).fit(x, y_text)
    assert list(clf.classes_) == ["cat", "dog"] and clf.n_unlabeled_ == 20
    labeled = y_text != "-1"
    expected = np.mean(clf.predict(x)[labeled] == y_text[labeled])
    assert clf.score(x, y_text) == pytest.approx(expected)
    # None or NaN (pandas' missing value) is not the marker: before, a bare TypeError.
    for missing in (None, float("nan")):
        y_missing = y.copy()
        y_missing[::3] = missing
        with pytest.raises(DataError, match="mark unlabeled images with -1"):
            tiny(max_epochs=1).fit(x, y_missing)


def test_score_leaves_unlabeled_images_out(digits, semi):
    clf, x, y = semi[0], digits.x_test, digits.y_test
    mixed = y.copy()
    mixed[::2] = -1  # as a cross-validation fold of partly labeled data has them
    pred = clf.predict(x)
    assert clf.score(x, mixed) == pytest.approx(np.mean(pred[1::2] == y[1::2]))
    assert clf.score(x, y) == pytest.approx(np.mean(pred == y))
    with pytest.raises(DataError, match="every image unlabeled"):
        clf.score(x, np.full(len(y), -1))
    with pytest.raises(DataError, match="sample_weight"):
        clf.score(x, y, sample_weight=np.ones(3))


@pytest.mark.parametrize(
    ("dtype", "names"), [(object, ["cat", "dog"]), (str, ["cat", "dog"]), (np.uint8, [3, 7])]
)
def test_classes_keep_their_dtype_through_save_and_load(dtype, names, tmp_path):
    x = np.random.default_rng(0).random((60, 6)).astype(np.float32)
    clf = tiny(max_epochs=1).fit(x, np.array(names * 30, dtype=dtype))
    clf.save(tmp_path / "run")
    back = VAEClassifier.load(tmp_path / "run")
    assert back.classes_.dtype == clf.classes_.dtype
    assert back.predict(x).dtype == clf.predict(x).dtype


@pytest.mark.parametrize(
    ("kw", "y", "match"),
    [
        ({}, np.full(20, -1), "at least 2 classes"),
        ({}, np.zeros(20), "at least 2 classes"),
        ({"alpha": 0}, np.tile([0, 1], 10), "alpha"),
        ({"labeled_fraction": 1.0}, np.tile([0, 1], 10), "labeled_fraction"),
        ({"decoder_arch": "rnn"}, np.tile([0, 1], 10), "decoder_arch"),
        ({"cutout": 1.0}, np.tile([0, 1], 10), "cutout"),
        ({"pseudo_threshold": -0.5}, np.tile([0, 1], 10), "pseudo_threshold"),
        ({"propagation": -1.0}, np.tile([0, 1], 10), "propagation"),
        ({"propagation_epochs": 0}, np.tile([0, 1], 10), "propagation_epochs"),
        ({"calibrate": "no"}, np.tile([0, 1], 10), "calibrate"),  # was taken as True
        ({"x": lambda x: x * 3 - 1}, np.tile([0, 1], 10), r"from -1 to 2.*MinMaxScaler"),
        ({"x": lambda x: x[:19]}, np.tile([0, 1], 10), "19 samples but y has 20"),
        ({}, np.zeros(15, int), "20 samples but y has 15"),  # not "at least 2 classes"
    ],
)
def test_bad_input(kw, y, match):
    x = np.random.default_rng(0).random((20, 4))
    x[0, 0], x[0, 1] = 0.0, 1.0
    x = kw.pop("x", lambda x: x)(x)
    with pytest.raises((ConfigError, DataError), match=match):
        tiny(**kw).fit(x, y)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"kl_warmup_epochs": -1}, "kl_warmup_epochs"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"precision": "fp8"}, "precision"),
        ({"compile": "sometimes"}, "compile"),
    ],
)
def test_training_settings_are_refused_before_the_spreading_vae_trains(kw, match, monkeypatch):
    """Semi-supervised fit trains an M1 VAE first; a bad loop setting must not wait for it."""
    from vaekit.estimators.vae import VAE

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the settings were checked")

    monkeypatch.setattr(VAE, "fit", no_training)
    x = np.random.default_rng(0).random((20, 4))
    y = np.r_[np.tile([0, 1], 5), np.full(10, -1)]
    with pytest.raises(ConfigError, match=match):
        tiny(propagation=1.0, **kw).fit(x, y)


def test_run_saved_before_new_parameters_loads_as_trained(semi, tmp_path):
    """A run saved without the later parameters was trained without them."""
    import json

    clf, _ = semi
    clf.save(tmp_path / "run")
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    for name in ("balance", "cutout", "pseudo_threshold", "propagation", "propagation_epochs"):
        del config["params"][name]
    config_path.write_text(json.dumps(config))
    back = VAEClassifier.load(tmp_path / "run")
    assert (back.balance, back.cutout, back.pseudo_threshold) == (0.0, 0.0, 0.0)
    assert (back.propagation, back.propagation_epochs) == (0.0, 20)
    assert VAEClassifier().balance == VAEClassifier().propagation == 1.0  # new runs' defaults


def test_propagation_trains_an_m1_vae_only_with_unlabeled_images(monkeypatch):
    """The graph targets are built once per fit with unlabeled images, never without."""
    from vaekit.estimators import classifier as module

    calls = []
    original = module.VAEClassifier._graph_targets

    def spy(self, x, y_idx, train_idx):
        targets = original(self, x, y_idx, train_idx)
        calls.append(targets)
        return targets

    monkeypatch.setattr(module.VAEClassifier, "_graph_targets", spy)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random((30, 6)) * 0.3, 0.7 + rng.random((30, 6)) * 0.3])
    y_all = np.repeat([0, 1], 30)
    tiny(max_epochs=1, propagation_epochs=2).fit(x, y_all)
    assert calls == []
    y = np.full(60, -1)
    y[[0, 1, 2, 30, 31, 32]] = [0, 0, 0, 1, 1, 1]
    tiny(max_epochs=1, propagation_epochs=2, propagation=0.0).fit(x, y)
    assert calls == []
    tiny(max_epochs=1, propagation_epochs=2).fit(x, y)
    (targets,) = calls
    assert targets.shape == (60, 2) and targets.dtype == np.float32
    assert ((targets > 0).sum(1) <= 1).all() and targets.max() <= 1
    # Two well-separated groups, three labels each: the spread labels are the groups.
    assert (targets.argmax(1) == y_all).all()


def test_validation_fraction_zero_fits_a_handful_of_images():
    # The label-spreading VAE held out 10 % for early stopping whatever validation_fraction
    # said, so four images failed with advice (validation_fraction=0) that did not help.
    x = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    clf = tiny(max_epochs=1, validation_fraction=0.0).fit(x, [0, 1, -1, -1])
    assert clf.n_unlabeled_ == 2 and clf.predict(x).shape == (4,)


def test_auto_epochs_follow_the_rows_seen_with_unlabeled_images(monkeypatch):
    # "auto" trains few epochs of a large, mostly unlabeled set (3 on Fashion-MNIST) and
    # AUTO_EPOCHS_SUPERVISED with every image labeled; the limits shrink here to stay fast.
    from vaekit.estimators import classifier as module

    monkeypatch.setattr(module, "AUTO_EPOCHS_SUPERVISED", 2)
    monkeypatch.setattr(module, "AUTO_EPOCHS_RANGE", (1, 9))
    rng = np.random.default_rng(0)
    x = rng.random((40, 6)).astype(np.float32)
    y = np.full(40, -1)
    y[:2] = [0, 1]  # 38 of 40 unlabeled
    clf = tiny(max_epochs="auto", propagation=0.0, validation_fraction=0.0)
    monkeypatch.setattr(module, "AUTO_ROWS", 10**6)
    assert clf.fit(x, y).n_epochs_ == 8  # 2 ** 0.05 * 9 ** 0.95 = 8.3: near the top
    monkeypatch.setattr(module, "AUTO_ROWS", 1)
    assert clf.fit(x, y).n_epochs_ == 1  # the range's bottom
    assert clf.fit(x, np.repeat([0, 1], 20)).n_epochs_ == 2  # all labeled


def test_auto_epochs_are_the_benchmarked_ones():
    clf = VAEClassifier()
    assert clf.max_epochs == "auto"
    # Fashion-MNIST's 60,000 training images with 100 or 1,000 labels (79,890 and 78,900
    # rows per epoch with the labeled repeats): the 3 epochs of the benchmark; all labeled
    # (the 0.934 run): 30; digits' 1,437 training images, 100 labeled: 30.
    assert [clf._epochs(79_890, 0.9983), clf._epochs(78_900, 0.983)] == [3, 3]
    assert [clf._epochs(60_000, 0.0), clf._epochs(1_900, 0.93)] == [30, 30]
    # One unlabeled image among 60,000 changes nothing; half of them, about the middle.
    assert clf._epochs(60_000, 1 / 60_000) == 30 and 8 <= clf._epochs(40_000, 0.5) <= 13
    # At most the rows budget's epochs, at least 3, whatever the share.
    shares = np.linspace(0, 1, 101)
    assert all(3 <= clf._epochs(r, u) <= 30 for r in (1_000, 80_000, 10**7) for u in shares)


@pytest.mark.parametrize("value", ["fast", 0, 2.5, True])
def test_max_epochs_other_than_a_positive_int_or_auto_is_refused(value):
    x = np.random.default_rng(0).random((8, 6)).astype(np.float32)
    with pytest.raises(ConfigError, match='max_epochs must be a positive integer or "auto"'):
        tiny(max_epochs=value).fit(x, [0, 1] * 4)


def test_only_the_classifier_takes_auto_epochs():
    from vaekit import VAE

    x = np.random.default_rng(0).random((8, 6)).astype(np.float32)
    with pytest.raises(ConfigError, match=r"max_epochs must be a positive integer, got 'auto'"):
        VAE(max_epochs="auto").fit(x)


@pytest.mark.parametrize("held_out", ["right", "wrong"])
def test_a_temperature_run_to_its_limit_is_not_used(held_out, monkeypatch):
    # Three held-out images (one per class) all right pulled T towards 0, all confidently
    # wrong to exp(4) = 54.6, so every probability was ~1 or ~1/K; now T stays 1, warned.
    rng = np.random.default_rng(0)
    x = rng.random((30, 6)).astype(np.float32)
    clf = tiny(max_epochs=1, calibrate=False).fit(x, np.arange(30) % 3)
    y_idx = np.arange(30) % 3
    cal = np.array([0, 1, 2])
    logits = 8.0 * np.eye(3)[y_idx[cal] if held_out == "right" else (y_idx[cal] + 1) % 3]
    monkeypatch.setattr(VAEClassifier, "_logits", lambda self, x: logits[: len(x)])
    why = "all predicted right" if held_out == "right" else "drive T to its search limit"
    with pytest.warns(UserWarning, match=rf"{why} .* left uncalibrated \(T = 1\)"):
        clf._fit_temperature(torch.from_numpy(x), y_idx, cal)
    assert clf.temperature_ == 1.0 and clf.calibration_ece_ is None
    # A held-out set that is neither gets its fitted temperature.
    mixed = 8.0 * np.eye(3)[[0, 1, 0]]
    monkeypatch.setattr(VAEClassifier, "_logits", lambda self, x: mixed)
    clf._fit_temperature(torch.from_numpy(x), y_idx, cal)
    assert 1.0 < clf.temperature_ < np.exp(3.9)
    # So does a large one all right: the model is that good (T < 1 is its calibration).
    many = np.arange(60)
    right = 2.0 * np.eye(3)[many % 3]
    monkeypatch.setattr(VAEClassifier, "_logits", lambda self, x: right)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf._fit_temperature(torch.from_numpy(np.repeat(x, 2, axis=0)), many % 3, many)
    assert clf.temperature_ < 1.0 and clf.calibration_ece_ is not None


def test_the_temperature_warning_points_at_the_callers_fit():
    rng = np.random.default_rng(0)
    centres = np.repeat(np.eye(3, 6), 10, axis=0)  # 3 well-separated classes, 10 images each
    x = (0.1 + 0.8 * centres + 0.05 * rng.random((30, 6))).astype(np.float32)
    clf = tiny(max_epochs=30, propagation=0.0)
    with pytest.warns(
        UserWarning, match="3 held-out labeled images are all predicted right"
    ) as rec:
        clf.fit(x, np.arange(30) // 10)
    assert rec[0].filename == __file__ and clf.temperature_ == 1.0


def test_score_samples_batches_shrink_with_the_classes(monkeypatch):
    # M2's bound decodes every image once per class: 4,096 images of 10 classes took +550 MB
    # at once, so the batches hold K times fewer images (same values).
    from vaekit.estimators import base

    x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    clf = tiny(max_epochs=1).fit(x, np.arange(50) % 5)
    whole = clf.score_samples(x)
    monkeypatch.setattr(base, "INFERENCE_BATCH", 20)
    sizes = []
    elbo = clf.module_.elbo
    monkeypatch.setattr(clf.module_, "elbo", lambda xb: sizes.append(len(xb)) or elbo(xb))
    np.testing.assert_allclose(clf.score_samples(x), whole, rtol=1e-5)
    assert sizes == [4] * 12 + [2]  # 20 // 5 classes


def test_cli_scores_of_a_test_split_without_labels_keep_the_elbo():
    from types import SimpleNamespace

    from vaekit.cli.classify import _classification_scores

    x = np.random.default_rng(0).random((20, 6)).astype(np.float32)
    clf = tiny(max_epochs=1).fit(x, np.arange(20) % 2)
    ds = SimpleNamespace(x_test=x[:6], y_test=None, classes=("a", "b"))
    metrics, pred, proba = _classification_scores(clf, ds)
    assert metrics == {"elbo": pytest.approx(float(np.mean(clf.score_samples(x[:6]))))}
    assert pred.shape == (6,) and proba.shape == (6, 2)


def test_log_probabilities_stay_finite_where_probabilities_underflow():
    # A sharp temperature sends the other classes' probabilities below float64's range:
    # their logarithm is a large negative number from the logits, not log(0) = -inf.
    ds = load_dataset("digits")
    x, y = ds.x_train[:200], ds.y_train[:200]
    clf = tiny(max_epochs=2, validation_fraction=0.0).fit(x, y)
    clf.temperature_ = 1e-3
    log_proba = clf.predict_log_proba(x)
    assert np.isfinite(log_proba).all() and log_proba.min() < -745  # exp() of it underflows
    np.testing.assert_allclose(np.exp(log_proba), clf.predict_proba(x), atol=1e-12)
