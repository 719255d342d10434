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
