"""``VAEClustering``: clusters of images from a VAE's latent space (scikit-learn ClusterMixin).

Methods (the ``method`` parameter), all on the same VAE and training loop:

- ``"gmm"`` — train a VAE, then fit a full-covariance Gaussian mixture to the posterior
  means (best of ``n_init`` EM runs by likelihood, an unsupervised criterion).
- ``"kmeans"`` — the same VAE, then k-means on the posterior means (best of ``n_init``
  runs by inertia; after the spectral step, by modularity, see below). The default, with
  the spectral manifold step: on Fashion-MNIST that pair had the best mean ACC, NMI and
  ARI over five seeds (BENCHMARKS.md).
- ``"vade"`` — VaDE (Jiang et al. 2017): pre-train the encoder and decoder as an
  autoencoder (the posterior means decoded, no KL), initialise a diagonal
  Gaussian-mixture prior from a GMM on the latents, then train the whole model end to end;
  clusters are ``argmax_c p(c|z)``.

Before ``"gmm"`` or ``"kmeans"`` is fitted, each image's posterior mean is averaged over its
3 x 3 grid of translations by 0 and +-s pixels, ``s = round(shift_average * shorter image
side)`` (image input only): the VAE's latents move with a small shift far more than an
image's class does. On Fashion-MNIST (s = 1 pixel on 28 x 28) the average raised the
clustering accuracy (BENCHMARKS.md); with the default 0.04, s is 0 below 13 pixels a side
and the plain posterior means are clustered. VaDE clusters its own latents unchanged.

For ``"gmm"`` and ``"kmeans"`` the VAE is trained as a denoising VAE (``input_dropout``,
Im et al. 2017): the encoder sees each training image with a fifth of its pixels dropped,
as DEC's autoencoder did (Xie et al. 2016), and the decoder reconstructs the clean image.
On Fashion-MNIST it raised both the accuracy and the NMI of the clusters on five
development seeds and kept the benchmark's means level or slightly higher (BENCHMARKS.md).

The optional manifold step (``manifold=``, for ``"gmm"`` and ``"kmeans"``) maps the
posterior means to a ``manifold_dim``-dimensional space that keeps local neighbourhoods, and
the mixture or k-means is fitted there:

- ``"umap"`` follows N2D (McConville et al. 2019): UMAP with 20 neighbours and
  ``min_dist=0`` (needs ``umap-learn``).
- ``"spectral"`` is the spectral embedding of the latents' nearest-neighbour graph (Ng,
  Jordan & Weiss 2002): ``SPECTRAL_NEIGHBORS`` neighbours weighted by a locally scaled
  Gaussian kernel (Zelnik-Manor & Perona 2004), the leading eigenvectors of the normalised
  affinity matrix, each row scaled to unit length. It needs only SciPy. There the
  ``n_init`` k-means or EM runs are each fitted on their own, and the one whose partition
  of that graph has the highest modularity (Newman 2006) is kept, not the one with the
  lowest inertia or highest likelihood in the embedding: on Fashion-MNIST the
  lowest-inertia restart was often a worse partition of the graph, and of the classes.

Neither has a closed-form map for new images, so the fitted state keeps the reference
latents and their cluster probabilities (identical latents, from duplicate images, share
one assignment). An image whose features are those of a reference image (a training image,
say) gets that image's fitted probabilities, so ``labels_`` and ``predict`` agree; any other
image gets the mean probabilities of its ``KNN_NEIGHBORS`` nearest reference latents.
"""

from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.base import ClusterMixin
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

from vaekit.data.arrays import row_blocks
from vaekit.errors import ConfigError, DataError, TrainingDivergedError
from vaekit.estimators.base import check_n_samples, keeps_state_on_failure, to_tensor
from vaekit.estimators.vae import VAE
from vaekit.graph import (
    N_NEIGHBORS,
    SCALE_NEIGHBOR,
    knn_graph,
    modularity,
    nearest_neighbors,
)
from vaekit.models.vade import VaDEModule
from vaekit.nn.augment import translations
from vaekit.training.loop import NOTHING_TO_RESUME

METHODS = ("gmm", "kmeans", "vade")
MANIFOLDS = (None, "umap", "spectral")
#: Ridge added to mixture covariances, relative to the latent scale.
GMM_REG_COVAR = 1e-4
#: Restarts when ``n_init`` is None: EM is costly (about 4 s a run on 70,000 10-D latents),
#: k-means on the spectral embedding is not (50 runs and their modularity: about 6 s), and
#: on Fashion-MNIST fewer restarts often missed the best partition (25 of them: a poor one
#: in one draw of ten; 200 would add about +0.003 ACC and NMI; BENCHMARKS.md).
GMM_N_INIT = 5
KMEANS_N_INIT = 50
#: Floor of the k-means soft-assignment variance (reached only when every point coincides
#: with its centre, e.g. a handful of images or exact duplicates).
KMEANS_MIN_SCALE = 1e-12
#: UMAP settings of N2D (McConville et al. 2019): 20 neighbours, tightly packed clusters.
UMAP_NEIGHBORS = 20
UMAP_MIN_DIST = 0.0
#: Spectral step: neighbours in the latent graph, and the neighbour whose distance sets each
#: point's kernel width: the graph of :mod:`vaekit.graph` (10 and the 7th).
SPECTRAL_NEIGHBORS = N_NEIGHBORS
SPECTRAL_SCALE_NEIGHBOR = SCALE_NEIGHBOR
#: Spectral step: eigenvectors kept by default, per cluster (K = 10 -> 15 dimensions).
SPECTRAL_DIM_PER_CLUSTER = 1.5
#: Spectral step on a graph in several pieces: every pair of points is also joined by a
#: weight this fraction of the mean degree over N (regularised spectral clustering, Amini et
#: al. 2013), so the leading eigenvalue is simple and the eigensolver converges.
SPECTRAL_REGULARIZATION = 0.01
#: Reference latents whose probabilities are averaged to place a new image.
KNN_NEIGHBORS = 10
#: Features this close (Euclidean) to a reference latent are that reference image's.
SAME_POINT_DISTANCE = 1e-6
#: Above this many images, the manifold step (spectral or UMAP) is fitted on a seeded
#: subsample; the other images get their neighbours' probabilities (``KNN_NEIGHBORS``).
MANIFOLD_MAX_SAMPLES = 100_000
#: Above this many latents, the mixture / k-means (and BIC for K) is fitted on a seeded
#: subsample and then applied to all: 100k points pin 10 full-covariance Gaussians in 10-D
#: far more tightly than EM needs, and EM time stops growing with the data.
FIT_MAX_SAMPLES = 100_000


def _import_umap():
    """Import ``umap`` (numba-compiled, so only when asked for) or say how to get it."""
    try:
        import umap
    except ImportError:
        raise ConfigError(
            "manifold='umap' needs umap-learn: pip install 'vaekit[umap]', or choose another "
            "manifold (manifold=None or 'spectral'; on the command line --manifold none or "
            "spectral)"
        ) from None
    return umap


def _gmm_log_resp(
    z: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray
) -> np.ndarray:
    """Log responsibilities ``log p(c|z)`` of a full-covariance GMM, ``(N, K)``."""
    n, d = z.shape
    log_joint = np.empty((n, len(weights)))
    for k, (w, m, c) in enumerate(zip(weights, means, covs, strict=True)):
        chol = np.linalg.cholesky(c)
        sol = np.linalg.solve(chol, (z - m).T)  # (D, N)
        log_det = 2.0 * np.log(np.diag(chol)).sum()
        log_joint[:, k] = np.log(w) - 0.5 * (d * np.log(2 * np.pi) + log_det + (sol**2).sum(0))
    return log_joint - np.logaddexp.reduce(log_joint, axis=1, keepdims=True)


#: The end of VaDE's error when its mixture phase fails at once: the pre-training's epochs
#: stay in the run folder, and a resume would fail the same way with the same settings.
_KEPT_PRETRAINING = (
    "; the run folder keeps its pre-training, but resuming keeps the run's settings: train "
    "again into a new folder"
)


def spectral_embedding(
    z: np.ndarray, dim: int, *, seed: int = 0, return_graph: bool = False
) -> np.ndarray | tuple[np.ndarray, sp.csr_matrix | None]:
    """Ng-Jordan-Weiss spectral embedding of points ``(N, D)``, ``(N, dim)`` float64.

    Builds the locally scaled nearest-neighbour graph of :func:`vaekit.graph.knn_graph`
    (``SPECTRAL_NEIGHBORS`` neighbours, width from the ``SPECTRAL_SCALE_NEIGHBOR``-th); takes
    the ``dim`` eigenvectors of ``D^-1/2 W D^-1/2`` with the largest eigenvalues and scales
    each row to unit length. Deterministic for a given ``seed`` (the eigensolver's start vector).
    With ``return_graph``, also returns that graph ``W`` (None below 3 points, where no graph
    is built and every point gets the same embedding).

    A graph in several connected pieces (well-separated groups, duplicate images) gives the
    top eigenvalue 1 once per piece, which a Lanczos solver cannot resolve; there every pair
    of points also gets a small weight ``SPECTRAL_REGULARIZATION * mean degree / N``.
    """
    n = len(z)
    k = min(SPECTRAL_NEIGHBORS, n - 1)
    dim = max(1, min(dim, n - 2))
    if k < 1 or n < 3:
        return (np.ones((n, 1)), None) if return_graph else np.ones((n, 1))
    graph = knn_graph(z, SPECTRAL_NEIGHBORS, SPECTRAL_SCALE_NEIGHBOR)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    tau = 0.0
    if connected_components(graph, directed=False)[0] > 1:
        tau = SPECTRAL_REGULARIZATION * float(degree.mean())
    d = 1.0 / np.sqrt(degree + tau)
    if n <= 2_000:  # small graphs: a dense solver is faster and resolves repeated eigenvalues
        affinity = d[:, None] * (graph.toarray() + tau / n) * d[None, :]
        _, vecs = np.linalg.eigh(affinity)
        vecs = vecs[:, ::-1][:, :dim]
    else:
        if tau > 0:  # D^-1/2 (W + tau/N) D^-1/2 without forming the dense matrix
            affinity = LinearOperator(
                (n, n), matvec=lambda v: d * (graph @ (d * v) + tau / n * (d * v).sum())
            )
        else:
            affinity = sp.diags(d) @ graph @ sp.diags(d)
        v0 = np.random.default_rng(seed).standard_normal(n)
        vals, vecs = eigsh(affinity, k=dim, which="LA", tol=1e-6, v0=v0)
        vecs = vecs[:, np.argsort(-vals)]
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    embedding = vecs / np.maximum(norms, 1e-12)
    return (embedding, graph) if return_graph else embedding


class VAEClustering(ClusterMixin, VAE):
    """Cluster images without labels through a variational autoencoder.

    Parameters
    ----------
    n_clusters : int or "auto", default=10
        Number of clusters; "auto" picks the K in ``2..max_clusters`` with the lowest BIC
        of a Gaussian mixture on the latent means (no labels involved).
    method : {"gmm", "kmeans", "vade"}, default="kmeans"
        How clusters are formed (see the module docstring).
    manifold : {None, "umap", "spectral"}, default="spectral"
        Manifold step between the latents and ``"gmm"``/``"kmeans"`` (see the module
        docstring; ``"umap"`` needs ``pip install 'vaekit[umap]'``); None clusters the
        latent means directly. Ignored by ``"vade"``.
    manifold_dim : int or None, default=None
        Dimension of the manifold embedding (default: the number of clusters for UMAP, as
        in N2D; 1.5 times it for the spectral step). With ``n_clusters="auto"``, K is
        chosen on the latent means first and the embedding sized from it. At least 2 for the
        spectral step, whose rows are scaled to unit length.
    shift_average : float, default=0.04
        For ``"gmm"`` and ``"kmeans"`` on image input, cluster each image's posterior mean
        averaged over its translations by 0 and +-s pixels in each direction (9 encoder
        passes per image at fit and predict time; edges replicated), where
        ``s = round(shift_average * min(H, W))``: 1 pixel on 28 x 28 images, 0 (plain means)
        below 13 pixels. 0 turns it off. :meth:`transform` stays the plain posterior mean.
    input_dropout : float, default=0.2
        For ``"gmm"`` and ``"kmeans"``: share of input pixels dropped (set to 0, the rest
        scaled up) for the encoder in each training step, while the decoder reconstructs
        the clean image (a denoising VAE); 0 trains the plain VAE. Ignored by ``"vade"``.
        The training loss in ``history_`` is then that of the corrupted images; the
        validation loss, like every evaluation, is the plain ELBO.
    n_init : int or None, default=None
        EM / k-means restarts; the best is chosen by likelihood or inertia, or with the
        spectral step by the modularity of its partition of the latent graph. None means
        ``GMM_N_INIT`` (5) EM runs or ``KMEANS_N_INIT`` (50) k-means runs, which cost
        seconds even for 70,000 points.
    max_clusters : int, default=20
        Largest K tried by ``n_clusters="auto"``.
    pretrain_epochs : int or None, default=None
        VaDE only: epochs of autoencoder pre-training (posterior means decoded, no KL term;
        Jiang et al. 2017) (default: ``max_epochs // 2``), before
        up to ``max_epochs`` with the mixture prior; ``history_`` holds both phases, each
        numbered from epoch 1.
    latent_dim, arch, hidden_dims, likelihood, beta, batch_size, max_epochs, learning_rate
        The VAE's parameters, as for :class:`vaekit.VAE`.
    lr_schedule, kl_warmup_epochs, validation_fraction, patience, device, random_state
        As for :class:`vaekit.VAE`.
    verbose, precision, compile
        As for :class:`vaekit.VAE`.

    Attributes
    ----------
    labels_ : ndarray of shape (N,)
        Cluster of each training image.
    n_clusters_ : int
        Number of clusters used (the chosen one when ``n_clusters="auto"``).
    k_selection_ : dict or None
        ``{"criterion": "bic", "k": [...], "score": [...], "chosen": K}`` when K was chosen
        automatically (``score``: the BIC of each K tried, lower is better), else None.

    Examples
    --------
    >>> from vaekit import VAEClustering, load_dataset
    >>> ds = load_dataset("digits")
    >>> clu = VAEClustering(n_clusters=10, max_epochs=5, random_state=0).fit(ds.x_train)
    >>> clu.labels_.shape
    (1437,)
    """

    _estimator_name = "VAEClustering"
    #: Runs saved before ``shift_average`` existed clustered the plain posterior means.
    #: Runs saved before ``input_dropout`` existed trained a plain VAE.
    _params_added: ClassVar[dict[str, Any]] = {"shift_average": 0.0, "input_dropout": 0.0}

    def __init__(
        self,
        *,
        n_clusters: int | str = 10,
        method: str = "kmeans",
        manifold: str | None = "spectral",
        manifold_dim: int | None = None,
        shift_average: float = 0.04,
        input_dropout: float = 0.2,
        n_init: int | None = None,
        max_clusters: int = 20,
        pretrain_epochs: int | None = None,
        latent_dim: int = 10,
        arch: str = "mlp",
        hidden_dims: tuple[int, ...] | None = None,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        batch_size: int = 128,
        max_epochs: int = 50,
        learning_rate: float = 1e-3,
        lr_schedule: str = "cosine",
        kl_warmup_epochs: int = 10,
        validation_fraction: float = 0.1,
        patience: int = 10,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        precision: str = "auto",
        compile: str = "auto",
    ):
        super().__init__(
            latent_dim=latent_dim,
            arch=arch,
            hidden_dims=hidden_dims,
            likelihood=likelihood,
            beta=beta,
            batch_size=batch_size,
            max_epochs=max_epochs,
            learning_rate=learning_rate,
            lr_schedule=lr_schedule,
            kl_warmup_epochs=kl_warmup_epochs,
            validation_fraction=validation_fraction,
            patience=patience,
            device=device,
            random_state=random_state,
            verbose=verbose,
            precision=precision,
            compile=compile,
        )
        self.n_clusters = n_clusters
        self.method = method
        self.manifold = manifold
        self.manifold_dim = manifold_dim
        self.shift_average = shift_average
        self.input_dropout = input_dropout
        self.n_init = n_init
        self.max_clusters = max_clusters
        self.pretrain_epochs = pretrain_epochs

    # -- parameters ------------------------------------------------------------------------
    def _check_params(self, n_samples: int | None = None) -> None:
        """Raise ``ConfigError`` for a bad parameter, ``DataError`` for more clusters than images.

        ``n_samples``, when given, is the number of images to be clustered.
        """
        super()._check_params()
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.manifold not in MANIFOLDS:
            raise ConfigError(f"manifold must be one of {MANIFOLDS}, got {self.manifold!r}")
        if self.manifold == "umap" and self.method != "vade":  # fail before training
            _import_umap()
        d = self.manifold_dim
        if d is not None and (not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1):
            raise ConfigError(f"manifold_dim must be a positive integer or None, got {d!r}")
        k = self.n_clusters
        if not (
            k == "auto" or (isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 2)
        ):
            raise ConfigError(f"n_clusters must be an integer >= 2 or 'auto', got {k!r}")
        for name in ("n_init", "max_clusters"):
            v = getattr(self, name)
            if name == "n_init" and v is None:
                continue
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if k == "auto" and self.max_clusters < 2:
            raise ConfigError(
                f"n_clusters='auto' tries K = 2..max_clusters; max_clusters must be at least 2, "
                f"got {self.max_clusters!r}"
            )
        v = self.pretrain_epochs
        if v is not None and (not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"pretrain_epochs must be a positive integer or None, got {v!r}")
        v = self.shift_average
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not 0 <= v < 0.5:
            raise ConfigError(f"shift_average must be a number in [0, 0.5), got {v!r}")
        v = self.input_dropout
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not 0 <= v < 1:
            raise ConfigError(f"input_dropout must be a number in [0, 1), got {v!r}")
        if n_samples is not None:
            self._check_n_samples(n_samples)

    def _check_n_samples(self, n_samples: int) -> None:
        """Check the settings against ``n_samples`` images before fitting (``load`` skips this)."""
        if self.manifold_dim == 1 and self.manifold == "spectral" and self.method != "vade":
            # Its rows are scaled to unit length: one dimension leaves only -1 and +1.
            raise ConfigError(
                "manifold_dim=1 cannot separate clusters with manifold='spectral' (each "
                "image's embedding is scaled to length 1, so one dimension leaves only -1 and "
                "+1); pass 2 or more, or None for 1.5 per cluster"
            )
        k = self.n_clusters
        if k != "auto" and k > n_samples:
            raise DataError(f"n_clusters={k} is more than n_samples={n_samples}; lower it")
        if k == "auto" and n_samples < 3:  # it tries K = 2..n_samples - 1: none for 2 images
            raise DataError(
                f"n_clusters='auto' needs at least 3 images, got n_samples={n_samples}; "
                "pass n_clusters=2"
            )
        super()._check_n_samples(n_samples)

    def _build_module(self, input_shape: tuple[int, ...]):
        if self._fitted("method") != "vade":
            return super()._build_module(
                input_shape, input_dropout=float(self._fitted("input_dropout"))
            )
        return VaDEModule(
            input_shape,
            latent_dim=int(self.latent_dim),
            arch=self.arch if len(input_shape) == 3 else "mlp",
            hidden_dims=self._hidden_dims(input_shape),
            likelihood=self.likelihood,
            beta=float(self.beta),
            n_clusters=getattr(self, "n_clusters_", None)
            or (int(self.n_clusters) if self.n_clusters != "auto" else 1),
        )

    # -- fitting ---------------------------------------------------------------------------
    @keeps_state_on_failure
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Self:
        """Train the VAE on ``X`` and cluster it; ``y`` is ignored (labels are never used).

        Parameters are as for :meth:`vaekit.VAE.fit`.

        Returns
        -------
        self : VAEClustering
            The fitted estimator, with ``labels_``.
        """
        x = to_tensor(X)
        self._check_params(len(x))
        if hasattr(self, "n_clusters_"):
            del self.n_clusters_  # refitting: the model is sized from the parameters again
        self._setup_fit(x, metadata)
        self._n_features_out = int(self.latent_dim)
        if self._fitted("method") == "vade":
            self._fit_vade(x, run_dir=run_dir, resume=resume)
            proba = self.predict_proba(x)
        else:
            self._train_module([x], run_dir=run_dir, resume=resume)
            proba = self._cluster(self._features(x))
        # predict_proba(X) of the training images, kept so that callers writing them out
        # (the CLI's clusters.csv) need not encode every image nine times again.
        self._train_proba = proba
        self.labels_ = np.argmax(proba, axis=1).astype(np.int64)
        self._save_finished_run(run_dir)
        return self

    def _cluster(self, z: np.ndarray) -> np.ndarray:
        """Fit ``"gmm"``/``"kmeans"`` (and any manifold step) to ``z``; return its probabilities."""
        if not self._uses_manifold():
            self.n_clusters_ = self._choose_k(z)
            self._fit_clusterer(z)
            return self._proba_of_features(z)
        ref = self._fit_on_manifold(z)
        # The reference images keep their own assignment, as _proba_of_features gives it to
        # them; only the others, beyond a subsample, need their neighbours found.
        proba = np.empty((len(z), self.n_clusters_))
        proba[ref] = self._reference_proba()
        rest = np.setdiff1d(np.arange(len(z)), ref)
        if len(rest):
            proba[rest] = self._proba_of_features(z[rest])
        return proba

    def _features(self, X: Any) -> np.ndarray:
        """Return the posterior means, shift-averaged as ``shift_average`` says, ``(N, D)``."""
        x = self._check_input(X)
        encode = self.module_.encode
        step = 0
        if len(self.input_shape_) == 3:
            step = round(float(self._fitted("shift_average")) * min(self.input_shape_[1:]))
        if step == 0:
            return self._batched(x, lambda xb: encode(xb).mean)

        def mean_over_translations(xb: torch.Tensor) -> torch.Tensor:
            total = torch.zeros((len(xb), self.module_.latent_dim), device=xb.device)
            for shifted in translations(xb, step):
                total += encode(shifted).mean
            return total / 9

        return self._batched(x, mean_over_translations)

    def _uses_manifold(self) -> bool:
        return self._fitted("manifold") is not None and self._fitted("method") != "vade"

    def _fit_on_manifold(self, z: np.ndarray) -> np.ndarray:
        """Embed the latents (UMAP or spectral), cluster there, keep a kNN map for new images.

        Returns the rows of ``z`` embedded (all, or a seeded subsample), sorted.
        """
        rng = np.random.default_rng(self.seed_)
        ref = np.arange(len(z))
        if len(z) > MANIFOLD_MAX_SAMPLES:
            ref = np.sort(rng.choice(len(z), MANIFOLD_MAX_SAMPLES, replace=False))
        z_ref = z[ref].astype(np.float32)
        # K first, by BIC on the latent means as without a manifold: the embedding's size
        # depends on K, so a criterion computed inside it would partly choose itself.
        self.n_clusters_ = k = self._choose_k(z_ref)
        graph = None
        if self._fitted("manifold") == "umap":
            u = self._umap(z_ref, int(self.manifold_dim or k))  # N2D: as many dims as clusters
        else:
            dim = int(self.manifold_dim or round(SPECTRAL_DIM_PER_CLUSTER * k))
            u, graph = spectral_embedding(z_ref, dim, seed=self.seed_, return_graph=True)
        self._fit_clusterer(u, graph=graph)
        resp = self._proba_from_params(u)
        # Identical latents (duplicate images) share the first one's probabilities: the
        # spectral step can part them, and predict finds any of them as an image's nearest.
        _, first, inverse = np.unique(z_ref, axis=0, return_index=True, return_inverse=True)
        resp = resp[first[inverse.ravel()]]
        self.ref_latents_ = z_ref
        self.ref_proba_ = resp.astype(np.float32)
        self._set_latent_gaussians(z_ref.astype(np.float64), resp)
        self._knn = None
        return ref

    def _umap(self, z_ref: np.ndarray, dim: int) -> np.ndarray:
        """N2D's UMAP of the reference latents to ``dim`` dimensions, ``(N, dim)`` float64."""
        umap = _import_umap()
        # UMAP needs more neighbours than points, and a spectral start needs dim < n - 1.
        n_neighbors = min(UMAP_NEIGHBORS, len(z_ref) - 1)
        reducer = umap.UMAP(
            n_components=min(dim, max(1, len(z_ref) - 2)),
            n_neighbors=max(2, n_neighbors),
            min_dist=UMAP_MIN_DIST,
            random_state=self.seed_,
            n_jobs=1,  # with random_state UMAP runs single-threaded anyway; say so
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # UMAP's notes about n_jobs and spectral init
            return reducer.fit_transform(z_ref).astype(np.float64)

    def _set_latent_gaussians(self, z: np.ndarray, resp: np.ndarray) -> None:
        """Moment-matched Gaussian per cluster in latent space (for per-cluster samples)."""
        nk = resp.sum(0) + 1e-10  # (K,)
        means = resp.T @ z / nk[:, None]  # (K, D)
        covs = np.empty((len(nk), z.shape[1], z.shape[1]))
        for k in range(len(nk)):
            d = z - means[k]
            covs[k] = (resp[:, k, None] * d).T @ d / nk[k] + GMM_REG_COVAR * np.eye(z.shape[1])
        self.latent_weights_ = nk / nk.sum()
        self.latent_means_, self.latent_covariances_ = means, covs

    def _choose_k(self, z: np.ndarray) -> int:
        """``n_clusters``, or the BIC-optimal K of a GMM on ``z`` when it is "auto"."""
        self.k_selection_ = None
        if self.n_clusters != "auto":
            return int(self.n_clusters)
        z = self._fit_sample(z)
        ks = list(range(2, min(self.max_clusters, len(z) - 1) + 1))
        scores = []
        for k in ks:
            gmm = GaussianMixture(
                k,
                covariance_type="full",
                n_init=1,
                reg_covar=GMM_REG_COVAR,
                random_state=self.seed_,
            )
            with warnings.catch_warnings():
                # A K above the number of distinct latents warns once per K tried (17 lines
                # for tiny data); its BIC says as much, and the choice is reported.
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm.fit(z)
            scores.append(float(gmm.bic(z)))
        best = ks[int(np.argmin(scores))]
        self.k_selection_ = {"criterion": "bic", "k": ks, "score": scores, "chosen": best}
        return best

    def _fit_sample(self, z: np.ndarray) -> np.ndarray:
        """``z``, or a seeded subsample of ``FIT_MAX_SAMPLES`` rows when it is larger."""
        if len(z) <= FIT_MAX_SAMPLES:
            return z
        rng = np.random.default_rng(self.seed_)
        return z[np.sort(rng.choice(len(z), FIT_MAX_SAMPLES, replace=False))]

    def _n_init(self, default: int) -> int:
        return int(self.n_init) if self.n_init is not None else default

    def _fit_clusterer(self, z: np.ndarray, *, graph: sp.spmatrix | None = None) -> None:
        """Fit k-means or the mixture to ``z``; the best restart by objective, or by graph.

        With the ``graph`` of the points (the spectral step's), each restart is fitted on
        its own and the one whose partition of the graph has the highest modularity is
        kept: on Fashion-MNIST, the k-means restart with the lowest inertia in the
        embedding was often a worse partition of the graph, and of the classes, than others
        (BENCHMARKS.md, "Restarts chosen on the graph").
        """
        kmeans = self._fitted("method") == "kmeans"
        n_init = self._n_init(KMEANS_N_INIT if kmeans else GMM_N_INIT)
        z_fit = self._fit_sample(z)

        def fit(restarts: int, seed: int) -> KMeans | GaussianMixture:
            if kmeans:
                return KMeans(self.n_clusters_, n_init=restarts, random_state=seed).fit(z_fit)
            return GaussianMixture(
                self.n_clusters_,
                covariance_type="full",
                n_init=restarts,
                reg_covar=GMM_REG_COVAR,
                random_state=seed,
            ).fit(z_fit)

        if graph is None:
            model = fit(n_init, self.seed_)
        else:
            best = -np.inf
            for seed in np.random.default_rng(self.seed_).integers(2**31 - 1, size=n_init):
                candidate = fit(1, int(seed))
                score = modularity(graph, candidate.predict(z))
                if score > best:
                    model, best = candidate, score
        if kmeans:
            self.cluster_centers_ = model.cluster_centers_.astype(np.float64)
            # Soft assignments use one shared isotropic variance: the mean within-cluster one,
            # floored so that points that all coincide give equal, not NaN, probabilities.
            self.kmeans_scale_ = max(float(model.inertia_ / max(1, z_fit.size)), KMEANS_MIN_SCALE)
        else:
            self.weights_, self.means_, self.covariances_ = (
                model.weights_,
                model.means_,
                model.covariances_,
            )

    def _fit_vade(self, x: torch.Tensor, *, run_dir: str | Path | None, resume: bool) -> None:
        module: VaDEModule = self.module_
        pre_epochs = self.pretrain_epochs or max(1, int(self.max_epochs) // 2)
        module.use_mixture = False
        pre_dir = Path(run_dir) / "pretrain" if run_dir is not None else None
        self._start_run(run_dir, resume)  # a kill during pretraining leaves a run to resume
        self._train_module([x], run_dir=pre_dir, resume=resume, max_epochs=pre_epochs)
        z = self.transform(x)
        self.n_clusters_ = self._choose_k(z)
        if self.n_clusters_ != module.n_clusters:  # "auto": rebuild the prior with K
            state = {k: v for k, v in module.state_dict().items() if not k.startswith("prior_")}
            # n_clusters_ is set: the module gets one mixture component per cluster.
            self.module_ = module = self._build_module(self.input_shape_).to(self._device())
            module.load_state_dict(state, strict=False)
        gmm = GaussianMixture(
            self.n_clusters_,
            covariance_type="diag",
            n_init=self._n_init(GMM_N_INIT),
            reg_covar=GMM_REG_COVAR,
            random_state=self.seed_,
        )
        with warnings.catch_warnings():  # it only starts the prior, which training then fits;
            warnings.simplefilter("ignore", ConvergenceWarning)  # its max_iter is no option
            try:
                gmm.fit(z)
            except ValueError as exc:  # latents collapsed onto a few points (a huge lr)
                raise TrainingDivergedError(
                    f"pre-training left latent means the mixture prior cannot be fitted to "
                    f"({str(exc).split('.')[0]}); lower --lr (learning_rate) or check the "
                    f"data{_KEPT_PRETRAINING if run_dir is not None else ''}",
                    epochs_saved=len(self.history_),
                ) from None
        dev = self._device()
        module.set_prior(
            *(
                torch.as_tensor(a, dtype=torch.float32, device=dev)
                for a in (gmm.weights_, gmm.means_, gmm.covariances_)
            )
        )
        module.use_mixture = True
        try:
            self._train_module([x], run_dir=run_dir, resume=resume, kl_warmup_epochs=0)
        except TrainingDivergedError as exc:
            if run_dir is None or exc.epochs_saved:
                raise
            # The loop saw no epoch of this phase; the pre-training's are saved all the same.
            message = str(exc).replace(f"; {NOTHING_TO_RESUME}", _KEPT_PRETRAINING)
            raise TrainingDivergedError(message, epochs_saved=len(self.history_)) from None

    # -- prediction ------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        """Cluster membership probabilities, ``(N, n_clusters_)``; rows sum to one."""
        check_is_fitted(self, "n_clusters_")
        if self._fitted("method") == "vade":
            x = self._check_input(X)
            m = self.module_
            # float64 as the other methods' probabilities, rows renormalised in it
            proba = self._batched(x, lambda xb: m.responsibilities(m.encode(xb).mean))
            proba = proba.astype(np.float64)
            return proba / proba.sum(axis=1, keepdims=True)
        return self._proba_of_features(self._features(X))

    def _proba_of_features(self, z: np.ndarray) -> np.ndarray:
        """Cluster probabilities ``(N, K)`` of clustering features ``z`` (gmm and kmeans)."""
        if self._uses_manifold():
            z32 = z.astype(np.float32)
            if z32.shape == self.ref_latents_.shape and np.array_equal(z32, self.ref_latents_):
                return self._reference_proba()  # the images fitted on (predict, a report)
            if getattr(self, "_knn", None) is None:
                n_ref = len(self.ref_latents_)
                self._knn = nearest_neighbors(self.ref_latents_, min(KNN_NEIGHBORS, n_ref))
            idx = self._knn.kneighbors(z32, return_distance=False)  # (N, k)
            proba = np.empty((len(z), self.ref_proba_.shape[1]))
            for rows in row_blocks(len(z), idx.shape[1] * proba.shape[1]):  # not (N, k, K)
                proba[rows] = self.ref_proba_[idx[rows]].mean(axis=1)
            # A reference image keeps its own assignment: averaged with its neighbours', a
            # small set (every image among every other's k nearest) got one row for all.
            # The search's own distance may round a point's distance to itself above the
            # threshold (brute force, large latents): measure it exactly.
            gap = (z32 - self.ref_latents_[idx[:, 0]]).astype(np.float64)
            own = np.linalg.norm(gap, axis=1) <= SAME_POINT_DISTANCE
            proba[own] = self.ref_proba_[idx[own, 0]]
            return proba / proba.sum(axis=1, keepdims=True)
        return self._proba_from_params(z.astype(np.float64))

    def _reference_proba(self) -> np.ndarray:
        """Return the reference images' fitted probabilities, float64 rows summing to one."""
        own = self.ref_proba_.astype(np.float64)
        return own / own.sum(axis=1, keepdims=True)

    def _proba_from_params(self, z: np.ndarray) -> np.ndarray:
        """Probabilities from the fitted k-means centres or mixture, ``(N, K)``."""
        if self._fitted("method") == "kmeans":
            centers = self.cluster_centers_
            # (rows, K, D) differences a block of rows at a time: all at once, 70,000 images
            # and K = 100 on a 150-dimensional spectral embedding would take 8 GB.
            d2 = np.empty((len(z), len(centers)))
            for rows in row_blocks(len(z), centers.size):
                d2[rows] = ((z[rows, None, :] - centers[None]) ** 2).sum(-1)
            logits = -d2 / (2.0 * self.kmeans_scale_)
            log_resp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        else:
            log_resp = _gmm_log_resp(z, self.weights_, self.means_, self.covariances_)
        return np.exp(log_resp)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable cluster of each image, ``(N,)`` int64."""
        return np.argmax(self.predict_proba(X), axis=1).astype(np.int64)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean ELBO per image in nats (higher is better), as :meth:`VAE.score`.

        Only ``method="vade"``'s ELBO depends on ``n_clusters``; the other methods cluster
        the latents of a VAE trained without K, so ``GridSearchCV`` over ``n_clusters``
        would find every K tied. To choose K use ``n_clusters="auto"`` (BIC, in
        ``k_selection_``) or score the partitions yourself (e.g. the silhouette).
        """
        return super().score(X, y)

    def sample(
        self, n_samples: int = 1, *, cluster: int | None = None, random_state: Any = None
    ) -> np.ndarray:
        """Generate images; with ``cluster``, from that cluster.

        VaDE samples its mixture prior. With a manifold step (the default), the latents
        are drawn from a Gaussian fitted to the cluster's members in latent space; without
        one, from the cluster's GMM component, or around its k-means centre; then decoded.

        Parameters
        ----------
        n_samples : int, default=1
            Images to generate.
        cluster : int or None, default=None
            Cluster index in ``0..n_clusters_ - 1``; None draws from the whole prior (the
            standard normal; VaDE's mixture).
        random_state : int, RandomState, Generator or None, default=None
            Seed of the draw (None: the estimator's fitted seed).

        Returns
        -------
        ndarray of shape (n_samples, *input_shape_)
            Float32 pixel means in [0, 1].
        """
        check_is_fitted(self, "n_clusters_")
        n_samples = check_n_samples(n_samples)
        if cluster is not None and (
            not isinstance(cluster, numbers.Integral)
            or isinstance(cluster, bool)
            or not 0 <= cluster < self.n_clusters_
        ):
            raise ConfigError(
                f"cluster must be an integer in 0..{self.n_clusters_ - 1}, got {cluster!r}"
            )
        from vaekit.training.loop import seed_from

        seed = self.seed_ if random_state is None else seed_from(random_state)
        if self._fitted("method") == "vade":
            gen = torch.Generator(device=self._device()).manual_seed(seed)
            with torch.no_grad():
                z = self.module_.prior_sample(n_samples, generator=gen, cluster=cluster)
            return self.inverse_transform(z.cpu().numpy())
        if cluster is None:
            return super().sample(n_samples, random_state=random_state)
        rng = np.random.default_rng(seed)
        if self._uses_manifold():
            z = _normal_draws(
                rng, self.latent_means_[cluster], self.latent_covariances_[cluster], n_samples
            )
        elif self._fitted("method") == "gmm":
            z = _normal_draws(rng, self.means_[cluster], self.covariances_[cluster], n_samples)
        else:
            size = (n_samples, self.cluster_centers_.shape[1])
            z = self.cluster_centers_[cluster] + rng.normal(0, np.sqrt(self.kmeans_scale_), size)
        return self.inverse_transform(z.astype(np.float32))

    # -- persistence ------------------------------------------------------------------------
    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        # labels_ (int64, one per training image) comes back with load(); runs saved
        # before it did (or an estimator whose labels_ was deleted) load without it.
        labels = getattr(self, "labels_", None)
        saved = {} if labels is None else {"labels": torch.from_numpy(np.asarray(labels))}
        return {**saved, **self._clusterer_tensors()}

    def _clusterer_tensors(self) -> dict[str, torch.Tensor]:
        if self._uses_manifold():
            return {
                "ref_latents": torch.from_numpy(self.ref_latents_),
                "ref_proba": torch.from_numpy(self.ref_proba_),
                "latent_weights": torch.from_numpy(self.latent_weights_),
                "latent_means": torch.from_numpy(self.latent_means_),
                "latent_covariances": torch.from_numpy(self.latent_covariances_),
            }
        if self._fitted("method") == "gmm":
            return {
                "weights": torch.from_numpy(self.weights_),
                "means": torch.from_numpy(self.means_),
                "covariances": torch.from_numpy(self.covariances_),
            }
        if self._fitted("method") == "kmeans":
            return {"centers": torch.from_numpy(self.cluster_centers_)}
        return {}

    def _extra_json(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters_,
            "k_selection": self.k_selection_,
            "kmeans_scale": getattr(self, "kmeans_scale_", None),
        }

    def _before_build(self, fitted: dict[str, Any]) -> None:
        self.n_clusters_ = int(fitted["n_clusters"])

    def _restore_extras(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        super()._restore_extras(tensors, info)
        self.n_clusters_ = int(info["n_clusters"])
        self.k_selection_ = info.get("k_selection")
        if "labels" in tensors:
            self.labels_ = tensors["labels"].numpy()
        if self._uses_manifold():
            self.ref_latents_ = tensors["ref_latents"].numpy()
            self.ref_proba_ = tensors["ref_proba"].numpy()
            self.latent_weights_ = tensors["latent_weights"].numpy()
            self.latent_means_ = tensors["latent_means"].numpy()
            self.latent_covariances_ = tensors["latent_covariances"].numpy()
            self._knn = None
        elif self._fitted("method") == "gmm":
            self.weights_ = tensors["weights"].numpy()
            self.means_ = tensors["means"].numpy()
            self.covariances_ = tensors["covariances"].numpy()
        elif self._fitted("method") == "kmeans":
            self.cluster_centers_ = tensors["centers"].numpy()
            self.kmeans_scale_ = float(info["kmeans_scale"])
            if not 0 < self.kmeans_scale_ < math.inf:
                raise ValueError(f"kmeans_scale {self.kmeans_scale_!r} is not a positive number")
        else:
            self.module_.use_mixture = True
        cluster_axis = {"ref_proba": 1, "weights": 0, "centers": 0}
        for name, axis in cluster_axis.items():
            if name in tensors and tensors[name].shape[axis] != self.n_clusters_:
                raise ValueError(f"n_clusters {self.n_clusters_} but {name} for another number")


def _normal_draws(rng: np.random.Generator, mean: Any, cov: Any, n: int) -> np.ndarray:
    """``n`` draws from ``N(mean, cov)``, the covariance symmetrised in float64.

    Covariances fitted on float32 latents are asymmetric in the last bits, which NumPy's
    positive-semidefinite check reports as a warning on every call.
    """
    cov = np.asarray(cov, dtype=np.float64)
    return rng.multivariate_normal(np.asarray(mean, np.float64), (cov + cov.T) / 2, size=n)
