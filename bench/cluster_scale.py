"""Time to cluster 1,000,000 latent vectors into 10 clusters (docs: benchmarks.md, "Speed").

The vectors have vaekit's default latent dimension (10) and come from a random
10-component Gaussian mixture (seeded), so the benchmark needs no trained model and the
recovered clusters can be scored. vaekit's clustering step runs as ``VAEClustering`` runs
it after training, by default (``--method kmeans --manifold spectral``): the spectral
embedding of a seeded subsample of ``MANIFOLD_MAX_SAMPLES`` vectors, 50 k-means restarts
there of which the one with the highest modularity is kept, then every vector assigned by
its nearest subsample vectors. ``--method gmm --manifold none`` times the mixture instead
(full-covariance EM with ``n_init`` restarts on a subsample of ``FIT_MAX_SAMPLES``, applied
to every vector). The same run times scikit-learn on all the vectors: ``KMeans`` for k-means,
``GaussianMixture`` for the mixture, with ``--baseline-n-init`` restarts (default 1, which
keeps the mixture to minutes).

Run from the repository root::

    python bench/cluster_scale.py --n 1000000
    python bench/cluster_scale.py --n 1000000 --method gmm --manifold none
"""

from __future__ import annotations

import argparse

import numpy as np

import _common

_common.use_checkout()


def synthetic_latents(n: int, dim: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from a random ``k``-component mixture in ``dim`` dimensions, and labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 3.0, (k, dim))
    labels = rng.integers(0, k, n)
    scales = rng.uniform(0.5, 1.5, (k, dim))
    z = means[labels] + rng.normal(size=(n, dim)) * scales[labels]
    return z.astype(np.float32), labels


def main() -> None:
    """Run the benchmark and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="latent vectors")
    parser.add_argument("--dim", type=int, default=10, help="latent dimension")
    parser.add_argument("--k", type=int, default=10, help="clusters")
    parser.add_argument("--method", default="kmeans", choices=("kmeans", "gmm"))
    parser.add_argument("--manifold", default="spectral", choices=("spectral", "none"))
    parser.add_argument("--n-init", type=int, help="restarts (default: vaekit's for the method)")
    parser.add_argument(
        "--baseline-n-init",
        type=int,
        default=1,
        help="restarts of scikit-learn's all-data baseline (1 keeps the mixture to minutes)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    from vaekit.estimators.clustering import GMM_REG_COVAR, VAEClustering
    from vaekit.metrics import clustering_metrics

    manifold = None if args.manifold == "none" else args.manifold
    _common.start("clustering latent vectors")
    z, y = synthetic_latents(args.n, args.dim, args.k, seed=0)
    clu = VAEClustering(
        n_clusters=args.k, method=args.method, manifold=manifold, n_init=args.n_init, random_state=0
    )
    print(
        f"data:    {args.n:,} vectors x {args.dim} dims, K={args.k}, method={args.method}, "
        f"manifold={manifold}, n_init={args.n_init or 'default'}"
    )

    # The estimator's clustering step alone, on given latents (no VAE is trained here):
    # what fit() does after training, then the assignment of every vector.
    clu.seed_, clu.k_selection_ = 0, None
    clu._fit_params = clu.get_params(deep=False)
    with _common.measured() as t_ours:
        labels = clu._cluster(z).argmax(axis=1)
    m = clustering_metrics(y, labels)
    name = f"vaekit {args.method}" + (f" on {manifold}" if manifold else "")
    print(
        f"{name:22s} {t_ours['wall_s']:7.1f} s  acc {m['acc']:.3f}  nmi {m['nmi']:.3f}"
        f"  (others {t_ours['other_cpus']:.2f} CPUs)",
        flush=True,
    )
    if not args.skip_baseline:
        with _common.measured() as t_base:
            if args.method == "kmeans":
                base = KMeans(args.k, n_init=args.baseline_n_init, random_state=0).fit(z)
            else:
                base = GaussianMixture(
                    args.k,
                    covariance_type="full",
                    n_init=args.baseline_n_init,
                    reg_covar=GMM_REG_COVAR,
                    random_state=0,
                ).fit(z)
            base_labels = base.predict(z)
        mb = clustering_metrics(y, base_labels)
        print(
            f"scikit-learn {type(base).__name__} on all, n_init={args.baseline_n_init}: "
            f"{t_base['wall_s']:.1f} s  acc {mb['acc']:.3f}  nmi {mb['nmi']:.3f}"
            f"  (others {t_base['other_cpus']:.2f} CPUs)"
        )
        print(f"vaekit's time / scikit-learn's: {t_ours['wall_s'] / t_base['wall_s']:.2f}")
    print(f"target <= 30 s: {t_ours['wall_s'] <= 30}")


if __name__ == "__main__":
    main()
