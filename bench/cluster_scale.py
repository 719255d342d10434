"""Time to cluster 1,000,000 latent vectors into 10 clusters (docs: benchmarks.md, "Speed").

The vectors have vaekit's default latent dimension (10) and come from a random
10-component Gaussian mixture (seeded), so the benchmark needs no trained model and the
recovered clusters can be scored. vaekit's clustering step (``VAEClustering`` with
``method="gmm"``: full-covariance EM with ``n_init`` restarts, fitted on a seeded subsample
of ``FIT_MAX_SAMPLES`` and applied to every vector) runs against scikit-learn's
``GaussianMixture`` fitted on all vectors with the same settings, in the same run.

Run from the repository root::

    python bench/cluster_scale.py --n 1000000
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
    parser.add_argument("--n-init", type=int, default=5, help="EM restarts (vaekit's default)")
    parser.add_argument(
        "--baseline-n-init",
        type=int,
        default=1,
        help="EM restarts of the all-data baseline (1 keeps it to minutes)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    from sklearn.mixture import GaussianMixture

    from vaekit.estimators.clustering import GMM_REG_COVAR, VAEClustering
    from vaekit.metrics import clustering_metrics

    date, info, command = _common.utc_now(), _common.machine_info(), _common.command_line()
    _common.print_header("clustering latent vectors", info, command, date)
    z, y = synthetic_latents(args.n, args.dim, args.k, seed=0)
    print(f"data:    {args.n:,} vectors x {args.dim} dims, K={args.k}, n_init={args.n_init}")

    # The estimator's clustering step alone, on given latents (no VAE is trained here).
    clu = VAEClustering(n_clusters=args.k, method="gmm", n_init=args.n_init, random_state=0)
    clu.seed_, clu.n_clusters_, clu.k_selection_ = 0, args.k, None
    with _common.measured() as t_ours:
        clu._fit_clusterer(z)
        labels = clu._proba_from_params(z.astype(np.float64)).argmax(1)
    m = clustering_metrics(y, labels)
    print(
        f"vaekit gmm        {t_ours['wall_s']:7.1f} s  acc {m['acc']:.3f}  nmi {m['nmi']:.3f}"
        f"  (others {t_ours['other_cpus']:.2f} CPUs)",
        flush=True,
    )
    if not args.skip_baseline:
        with _common.measured() as t_base:
            gmm = GaussianMixture(
                args.k,
                covariance_type="full",
                n_init=args.baseline_n_init,
                reg_covar=GMM_REG_COVAR,
                random_state=0,
            ).fit(z)
            base_labels = gmm.predict(z)
        mb = clustering_metrics(y, base_labels)
        print(
            f"sklearn gmm on all, n_init={args.baseline_n_init}: {t_base['wall_s']:.1f} s  "
            f"acc {mb['acc']:.3f}  nmi {mb['nmi']:.3f}"
            f"  (others {t_base['other_cpus']:.2f} CPUs)"
        )
        print(f"speed-up: {t_base['wall_s'] / t_ours['wall_s']:.1f}x")
    print(f"target <= 30 s: {t_ours['wall_s'] <= 30}")


if __name__ == "__main__":
    main()
