import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vaekit.metrics import cluster_accuracy, clustering_metrics


def test_perfect_clustering_up_to_relabelling():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0


def test_hand_computed_case():
    # classes 0,0,0,1,1,1 ; clusters a,a,b,b,b,b -> best map a->0, b->1: 2 + 3 = 5 of 6
    y = np.array([0, 0, 0, 1, 1, 1])
    c = np.array([7, 7, 5, 5, 5, 5])
    assert cluster_accuracy(y, c) == pytest.approx(5 / 6)


def test_more_clusters_than_classes():
    # 3 clusters, 2 classes: one cluster cannot be matched and counts as wrong
    y = np.array([0, 0, 1, 1, 1, 1])
    c = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y, c) == pytest.approx(4 / 6)


def test_fewer_clusters_than_classes():
    y = np.array([0, 1, 2, 2])
    c = np.array([0, 0, 1, 1])
    assert cluster_accuracy(y, c) == pytest.approx(3 / 4)


def test_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y, c = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    m = clustering_metrics(y, c)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(y, c))
    assert m["ari"] == pytest.approx(adjusted_rand_score(y, c))
    # Brute force over all injective maps of 4 classes into 5 clusters agrees.
    from itertools import permutations

    best = max(
        sum(np.sum((y == k) & (c == p[k])) for k in range(4)) for p in permutations(range(5), 4)
    )
    assert m["acc"] == pytest.approx(best / 200)


def test_bad_shapes():
    with pytest.raises(ValueError):
        cluster_accuracy([0, 1], [0])
