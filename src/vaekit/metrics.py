"""Evaluation metrics. Names match the keys of ``metrics.json`` (design.md)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class _Generative(Protocol):
    def score_samples(self, X: Any) -> np.ndarray: ...
    def reconstruction_errors(self, X: Any) -> dict[str, float]: ...


def generative_metrics(model: _Generative, x: Any) -> dict[str, float]:
    """Test-split metrics of a generative model, per image (nats / squared error).

    Returns
    -------
    dict
        ``elbo`` (mean ELBO, nats, higher is better), ``reconstruction_mse`` and
        ``reconstruction_bce`` (summed over pixels, mean over images, from posterior means).
    """
    return {"elbo": float(np.mean(model.score_samples(x))), **model.reconstruction_errors(x)}


def cluster_accuracy(y_true: Any, y_pred: Any) -> float:
    """Clustering accuracy: the best one-to-one map of clusters to classes (Hungarian).

    Works when the number of clusters differs from the number of classes: the
    contingency table is rectangular and clusters left without a class count as errors.

    Parameters
    ----------
    y_true : array-like of int, shape (N,)
        Class labels.
    y_pred : array-like of int, shape (N,)
        Cluster labels.

    Returns
    -------
    float
        Fraction of samples whose cluster maps to their class, in [0, 1].
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal 1-D")
    if len(y_true) == 0:
        raise ValueError("cluster_accuracy needs at least one sample")
    table = contingency_matrix(y_true, y_pred)  # (n_classes, n_clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(y_true))


def clustering_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``acc`` (Hungarian), ``nmi`` and ``ari`` of a clustering against class labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "acc": cluster_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }


#: Silhouette is quadratic in N; larger inputs are scored on a seeded sample of this size.
SILHOUETTE_SAMPLE = 10_000


def silhouette(z: Any, labels: Any, *, random_state: int = 0) -> float | None:
    """Silhouette of ``labels`` in latent space (sampled beyond ``SILHOUETTE_SAMPLE``).

    Returns ``None`` when it is undefined (one cluster, or a cluster per sample).
    """
    from sklearn.metrics import silhouette_score

    z, labels = np.asarray(z), np.asarray(labels)
    k = len(np.unique(labels))
    if not 2 <= k <= len(labels) - 1:
        return None
    size = min(len(labels), SILHOUETTE_SAMPLE)
    return float(silhouette_score(z, labels, sample_size=size, random_state=random_state))


#: Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 15).
ECE_BINS = 15


def expected_calibration_error(y_true: Any, proba: Any, *, n_bins: int = ECE_BINS) -> float:
    """Return the expected calibration error of class probabilities (Guo et al. 2017, eq. 3).

    Samples are put into ``n_bins`` equal-width bins ``((m-1)/M, m/M]`` by their confidence
    (the largest probability); ECE is ``sum_m |B_m|/N * |accuracy(B_m) - confidence(B_m)|``.

    Parameters
    ----------
    y_true : array-like of int, shape (N,)
        True class index of each sample (a column of ``proba``).
    proba : array-like of float, shape (N, K)
        Predicted probabilities; the prediction is the column with the largest one.
    n_bins : int, default=15
        Number of confidence bins.

    Returns
    -------
    float
        ECE in [0, 1]; 0 means the confidence matches the accuracy in every bin.
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or y_true.shape != (len(proba),) or len(proba) == 0:
        raise ValueError(f"need y_true (N,) and proba (N, K), got {y_true.shape}, {proba.shape}")
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins)
        - np.bincount(bins, weights=conf, minlength=n_bins)
    )  # per bin: |sum(correct) - sum(conf)| = |B_m| * |acc - conf|
    return float(gap[count > 0].sum() / len(proba))


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    proba: Any = None,
    *,
    class_names: Any = None,
) -> dict[str, Any]:
    """Classification metrics as written to ``metrics.json`` (design.md).

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (N,)
        True and predicted class indices ``0..K-1``.
    proba : array-like of float, shape (N, K), optional
        Predicted probabilities; adds ``ece``.
    class_names : sequence of str, optional
        Name of each class index (default: the indices as strings); its length sets ``K``.

    Returns
    -------
    dict
        ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro`` (macro averages
        over the classes that occur in ``y_true`` or ``y_pred``, as scikit-learn's
        ``average="macro"``; a class that occurs but is never predicted counts 0), ``per_class``
        (``{name: {precision, recall, f1, support}}``), ``confusion_matrix`` (rows true,
        columns predicted, class-index order), ``classes`` and, with ``proba``, ``ece``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(class_names) if class_names is not None else int(max(y_true.max(), y_pred.max())) + 1
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    labels = np.arange(k)
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    present = s > 0  # macro averages over the classes that occur in y_true or y_pred
    present |= np.isin(labels, y_pred)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(p[present].mean()),
        "recall_macro": float(r[present].mean()),
        "f1_macro": float(f[present].mean()),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": names,
    }
    if proba is not None:
        out["ece"] = expected_calibration_error(y_true, proba)
    return out
