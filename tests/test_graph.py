"""The latent nearest-neighbour graph and label spreading (vaekit.graph)."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors
from sklearn.semi_supervised import LabelSpreading

from vaekit.graph import KD_TREE_MAX_DIM, knn_graph, label_spreading, modularity, nearest_neighbors


def blobs(n_per=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = np.concatenate([c + rng.standard_normal((n_per, 2)) for c in centres])
    return z, np.repeat(np.arange(3), n_per)


def test_knn_graph_is_symmetric_with_weights_in_unit_interval():
    z, _ = blobs()
    w = knn_graph(z, n_neighbors=5, scale_neighbor=3)
    assert w.shape == (120, 120)
    assert abs(w - w.T).max() == 0
    assert w.diagonal().max() == 0
    assert 0 < w.data.min() and w.data.max() <= 1
    assert (np.diff(w.indptr) >= 5).all()  # every point keeps at least its own neighbours


def test_knn_graph_of_duplicate_points_has_no_self_loops():
    # An identical point may come before the point itself among its nearest neighbours;
    # the graph must still leave every point out of its own neighbours.
    z, _ = blobs()
    z = np.concatenate([z, z[:10], z[:10]])
    w = knn_graph(z, n_neighbors=5, scale_neighbor=3)
    assert w.diagonal().max() == 0
    assert w[0, 120] == 1.0 and w[0, 130] == 1.0  # its copies are its nearest, at weight 1


def test_knn_graph_of_tiny_inputs():
    assert knn_graph(np.zeros((1, 3))).shape == (1, 1)
    w = knn_graph(np.array([[0.0], [1.0], [3.0]]))  # fewer points than neighbours
    assert w.nnz == 6


@pytest.mark.parametrize("dim", [2, KD_TREE_MAX_DIM + 1, 12])
def test_nearest_neighbors_are_those_of_a_tree_in_any_dimension(dim):
    # Above KD_TREE_MAX_DIM the search is brute force: same neighbours, distances to float
    # rounding, and each point its own nearest at distance 0.
    z = np.random.default_rng(dim).standard_normal((500, dim)).astype(np.float32)
    nn = nearest_neighbors(z, 8)
    assert nn._fit_method == ("kd_tree" if dim <= KD_TREE_MAX_DIM else "brute")
    dist, ind = nn.kneighbors(z)
    tree_dist, tree_ind = NearestNeighbors(n_neighbors=8, algorithm="kd_tree").fit(z).kneighbors(z)
    np.testing.assert_array_equal(ind, tree_ind)
    np.testing.assert_allclose(dist, tree_dist, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ind[:, 0], np.arange(len(z)))
    assert (dist[:, 0] == 0).all()


def test_one_label_per_blob_labels_every_blob():
    z, y_true = blobs()
    y = np.full(len(z), -1)
    y[[0, 40, 80]] = [0, 1, 2]
    proba = label_spreading(knn_graph(z), y, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert (proba.argmax(1) == y_true).all()


def test_points_no_label_reaches_stay_uniform():
    w = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0.0]]))
    proba = label_spreading(w, np.array([1, -1, -1, -1]), 2)
    np.testing.assert_allclose(proba[:2], [[0, 1], [0, 1]], atol=1e-12)
    np.testing.assert_allclose(proba[2:], 0.5)


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_matches_scikit_learn_label_spreading_on_the_same_graph(alpha):
    z, _ = blobs(n_per=15, seed=1)
    w = knn_graph(z, n_neighbors=6, scale_neighbor=3)
    y = np.full(len(z), -1)
    y[[0, 1, 15, 30, 31]] = [0, 0, 1, 2, 2]
    ours = label_spreading(w, y, 3, alpha=alpha, max_iter=10_000, tol=1e-12)
    ref = LabelSpreading(kernel=lambda a, b: w.toarray(), alpha=alpha, max_iter=10_000, tol=1e-12)
    ref.fit(z, y)
    np.testing.assert_allclose(ours, ref.label_distributions_, atol=1e-6)


def two_triangles_and_a_bridge() -> sp.csr_matrix:
    """Triangles 0-1-2 and 3-4-5, joined by the edge 2-3; unit weights."""
    edges = [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (2, 3)]
    rows, cols = zip(*edges, strict=True)
    w = sp.csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(6, 6))
    return (w + w.T).tocsr()


def test_modularity_of_hand_computed_partitions():
    w = two_triangles_and_a_bridge()
    # 7 edges (2m = 14); each triangle holds 3 of them and has degree sum 7:
    # Q = 2 * (3/7 - (7/14)^2) = 6/7 - 1/2
    assert modularity(w, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(6 / 7 - 1 / 2)
    assert modularity(w, np.zeros(6, dtype=int)) == pytest.approx(0.0)  # one cluster
    assert modularity(w, np.array([0, 1, 0, 1, 0, 1])) < 0  # worse than chance
    assert modularity(sp.csr_matrix((3, 3)), np.array([0, 1, 2])) == 0.0  # no edges


def test_modularity_matches_newmans_definition_on_a_weighted_graph():
    z, _ = blobs(n_per=15)
    w = knn_graph(z, n_neighbors=4, scale_neighbor=2)
    labels = np.random.default_rng(1).integers(0, 4, len(z))
    a = w.toarray()
    k = a.sum(1)
    two_m = a.sum()
    # Q = 1/2m sum_ij (A_ij - k_i k_j / 2m) [c_i == c_j]
    expected = ((a - np.outer(k, k) / two_m) * (labels[:, None] == labels[None])).sum() / two_m
    assert modularity(w, labels) == pytest.approx(expected)
