import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from vaekit.metrics import classification_metrics, expected_calibration_error


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    proba = rng.dirichlet(np.ones(4), 200)
    return y_true, y_pred, proba


def test_values_match_scikit_learn(predictions):
    y_true, y_pred, proba = predictions
    m = classification_metrics(y_true, y_pred, proba, class_names=["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["precision_macro"] == pytest.approx(precision_score(y_true, y_pred, average="macro"))
    assert m["recall_macro"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert m["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred)
    assert list(m["per_class"]) == ["a", "b", "c", "d"]
    for i, name in enumerate("abcd"):
        row = m["per_class"][name]
        assert row["precision"] == pytest.approx(p[i]) and row["recall"] == pytest.approx(r[i])
        assert row["f1"] == pytest.approx(f[i]) and row["support"] == s[i]
    assert 0.0 <= m["ece"] <= 1.0


def test_class_missing_from_test_split_matches_scikit_learn_macro_average():
    # Class 2 appears neither in y_true nor y_pred: like scikit-learn, it is left out of the
    # macro averages, but it keeps its row in per_class and the confusion matrix.
    y_true, y_pred = np.array([0, 0, 1, 1, 3]), np.array([0, 1, 1, 1, 0])
    m = classification_metrics(y_true, y_pred, class_names=["a", "b", "c", "d"])
    assert m["precision_macro"] == pytest.approx(
        precision_score(y_true, y_pred, average="macro", zero_division=0)
    )
    assert m["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert np.array(m["confusion_matrix"]).shape == (4, 4)
    assert m["per_class"]["c"]["support"] == 0
    assert "ece" not in m


def test_ece_hand_computed():
    # 15 bins of width 1/15. Samples:
    #   conf 0.95 (bin 15), correct          -> bin 15: acc 1.0, conf 0.95
    #   conf 0.95 (bin 15), wrong
    #     -> bin 15 together: 2 samples, acc 0.5, mean conf 0.95, gap 0.45
    #   conf 0.55 (bin 9), correct           -> bin 9: 1 sample, acc 1, conf 0.55, gap 0.45
    #   conf 0.40 (bin 6), wrong             -> bin 6: 1 sample, acc 0, conf 0.40, gap 0.40
    # ECE = (2 * 0.45 + 1 * 0.45 + 1 * 0.40) / 4 = 0.4375
    proba = np.array([[0.95, 0.05, 0.0], [0.95, 0.05, 0.0], [0.45, 0.55, 0.0], [0.40, 0.30, 0.30]])
    y_true = np.array([0, 1, 1, 2])
    assert expected_calibration_error(y_true, proba) == pytest.approx(0.4375)


def test_ece_zero_when_calibrated_and_bin_edges():
    # All confidence 1.0 and all correct: no gap. 1.0 falls into the last bin, not past it.
    proba = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(np.array([0, 1, 2, 1]), proba) == 0.0
    # Confidence exactly 2/3 lies in bin ((9/15), (10/15)] with bins=15: one sample, wrong.
    assert expected_calibration_error(np.array([0]), np.array([[1 / 3, 2 / 3]])) == pytest.approx(
        2 / 3
    )
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([0, 1]), np.ones((3, 2)) / 2)
