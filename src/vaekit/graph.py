"""Nearest-neighbour graphs of latent vectors, label spreading over them, and modularity.

Both the spectral step of :class:`~vaekit.VAEClustering` and the label propagation of
:class:`~vaekit.VAEClassifier` work on the same graph: each point joined to its
``n_neighbors`` nearest neighbours with locally scaled Gaussian weights
``exp(-d_ij^2 / (s_i s_j))``, where ``s_i`` is the distance from point ``i`` to its
``scale_neighbor``-th neighbour (Zelnik-Manor & Perona 2004), symmetrised by the maximum.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

#: Neighbours per point, and the neighbour whose distance sets each point's kernel width
#: (the 7th, as in Zelnik-Manor & Perona 2004).
N_NEIGHBORS = 10
SCALE_NEIGHBOR = 7
#: Up to this many dimensions a k-d tree finds neighbours fastest; above it, scikit-learn's
#: brute-force search (blocked, multi-threaded distance products), whose time barely
#: depends on the dimension. 11 nearest of 70,000 Fashion-MNIST latents among themselves
#: on 2 cores (``bench/neighbours.py``): the tree 1.4-1.9 / 3.8-5.0 / 6.9-15.6 / 14 s in
#: 5 / 7 / 10 / 16 dimensions (the slow 10-D figure on the clustering's own features),
#: brute force 7.5-10 s in all.
KD_TREE_MAX_DIM = 7
#: Label spreading: weight of the neighbours against the seed labels (Zhou et al. 2004's
#: alpha), and the iteration cap (each iteration is one sparse product).
SPREADING_ALPHA = 0.99
SPREADING_MAX_ITER = 200
SPREADING_TOL = 1e-6


def nearest_neighbors(z: np.ndarray, n_neighbors: int) -> NearestNeighbors:
    """Fit scikit-learn's ``NearestNeighbors`` to ``z`` ``(N, D)``, the search chosen by ``D``."""
    algorithm = "kd_tree" if z.shape[1] <= KD_TREE_MAX_DIM else "brute"
    return NearestNeighbors(n_neighbors=n_neighbors, algorithm=algorithm).fit(z)


def knn_graph(
    z: np.ndarray, n_neighbors: int = N_NEIGHBORS, scale_neighbor: int = SCALE_NEIGHBOR
) -> sp.csr_matrix:
    """Symmetric locally scaled k-nearest-neighbour affinity matrix ``(N, N)`` of ``z``.

    Parameters
    ----------
    z : ndarray of shape (N, D)
        Points, e.g. a VAE's posterior means.
    n_neighbors : int
        Neighbours per point (capped at ``N - 1``).
    scale_neighbor : int
        Which neighbour's distance sets a point's kernel width.

    Returns
    -------
    scipy.sparse.csr_matrix
        Float64 weights in (0, 1], zero diagonal, ``W == W.T``.
    """
    n = len(z)
    k = min(n_neighbors, n - 1)
    if k < 1:
        return sp.csr_matrix((n, n))
    # No query: scikit-learn leaves each point itself out by index, also where an identical
    # point comes first (duplicate images), so the graph has no self-loops.
    dist, ind = nearest_neighbors(z, k).kneighbors()
    dist = dist.astype(np.float64)
    scale = dist[:, min(scale_neighbor, k) - 1] + 1e-12
    w = np.exp(-(dist**2) / (scale[:, None] * scale[ind]))
    graph = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), ind.ravel())), shape=(n, n))
    return graph.maximum(graph.T).tocsr()


def label_spreading(
    graph: sp.spmatrix,
    y: np.ndarray,
    n_classes: int,
    *,
    alpha: float = SPREADING_ALPHA,
    max_iter: int = SPREADING_MAX_ITER,
    tol: float = SPREADING_TOL,
) -> np.ndarray:
    """Spread the known labels over ``graph`` (Zhou et al. 2004, "local and global consistency").

    Iterates ``F <- alpha * S F + (1 - alpha) * Y`` with ``S = D^-1/2 W D^-1/2`` until ``F``
    changes by less than ``tol`` (relative) or ``max_iter`` iterations.

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
        Symmetric affinities ``W``, e.g. from :func:`knn_graph`.
    y : ndarray of shape (N,)
        Class indices ``0..n_classes-1`` of the labeled points, negative for the others.
    n_classes : int
        Number of classes.
    alpha : float
        Weight of the neighbours, in (0, 1).

    Returns
    -------
    ndarray of shape (N, n_classes)
        Class probabilities per point (rows sum to 1; uniform where no label reached).
    """
    n = graph.shape[0]
    seeds = np.zeros((n, n_classes))
    labeled = np.flatnonzero(y >= 0)
    seeds[labeled, y[labeled]] = 1.0
    degree = np.asarray(graph.sum(axis=1)).ravel()
    d = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    s = sp.diags(d) @ graph @ sp.diags(d)
    f = seeds.copy()
    for _ in range(max_iter):
        new = alpha * (s @ f) + (1.0 - alpha) * seeds
        done = np.abs(new - f).max() <= tol * max(np.abs(new).max(), 1e-300)
        f = new
        if done:
            break
    total = f.sum(axis=1, keepdims=True)
    out = np.full_like(f, 1.0 / n_classes)
    reached = total[:, 0] > 0
    out[reached] = f[reached] / total[reached]
    return out


def modularity(graph: sp.spmatrix, labels: np.ndarray) -> float:
    """Newman's modularity of a partition of a weighted graph (Newman 2006).

    ``Q = sum_c [W_cc / 2m - (vol_c / 2m)^2]``, where ``W_cc`` sums the weights of the
    edges inside cluster ``c`` (each counted from both ends), ``vol_c`` the degrees of its
    points and ``2m`` all degrees: the share of edge weight inside clusters, less the share
    a random graph with the same degrees would put there. Higher is better; at most 1.

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
        Symmetric non-negative affinities ``W``, e.g. from :func:`knn_graph`.
    labels : ndarray of shape (N,)
        Cluster index ``0..K-1`` of each point.

    Returns
    -------
    float
        The modularity, 0 for a graph without edges.
    """
    labels = np.asarray(labels)
    coo = graph.tocoo()
    total = float(coo.data.sum())
    if total <= 0:
        return 0.0
    inside = float(coo.data[labels[coo.row] == labels[coo.col]].sum())
    degree = np.asarray(graph.sum(axis=1)).ravel()
    volume = np.bincount(labels, weights=degree)
    return inside / total - float(((volume / total) ** 2).sum())
