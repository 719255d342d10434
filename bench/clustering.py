"""Unsupervised clustering of Fashion-MNIST (docs: benchmarks.md, "Clustering").

Protocol: all 70,000 images (train + test), K = 10; labels are used only to score
(ACC by Hungarian matching, NMI, ARI), never for training, early stopping or selection.
Each seed fits ``VAEClustering`` from scratch and reports its wall time; the same run
prints the baseline, k-means on raw pixels (scikit-learn, n_init=10), and mean ± std.

The defaults are the estimator's (k-means on the spectral embedding of the latents). With a
manifold step, each seed also reports a GMM fitted directly to the same VAE's latents (no
manifold step), so the manifold step is compared on identical latents.

Run from the repository root::

    python bench/clustering.py --seeds 0 1 2 3 4
    python bench/clustering.py --seeds 0 1 2 3 4 --method gmm --manifold none
    python bench/clustering.py --dataset digits --epochs 40   # a quick check, off protocol

On 2 cores, the five seeds run fastest as two commands side by side with one torch thread
each (``OMP_NUM_THREADS=1``, ``--seeds 0 1 2 --json a.json`` beside ``--seeds 3 4
--skip-baseline --json b.json``); ``bench/summary.py a.json b.json`` then prints the summary
over all five.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

import _common

_common.use_checkout()


def main() -> None:
    """Run the benchmark and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--dataset",
        default="fashion-mnist",
        choices=("fashion-mnist", "digits"),
        help="digits: the embedded 1,797 8x8 digits, a quick check off the protocol",
    )
    parser.add_argument("--method", default="kmeans", choices=("gmm", "kmeans", "vade"))
    parser.add_argument("--manifold", default="spectral", choices=("none", "umap", "spectral"))
    parser.add_argument("--manifold-dim", type=int, default=None)
    parser.add_argument(
        "--epochs", type=int, help="max VAE epochs per seed (default: VAEClustering's max_epochs)"
    )
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument(
        "--hidden-dims",
        type=lambda v: tuple(int(d) for d in v.split(",")),
        default=None,
        help="VAE hidden layers, e.g. 500,500,2000 (default: VAEClustering's)",
    )
    parser.add_argument(
        "--shift-average",
        type=float,
        default=0.04,
        help="VAEClustering's shift_average (default 0.04: one pixel on 28 x 28; 0: off)",
    )
    parser.add_argument(
        "--input-dropout",
        type=float,
        default=0.2,
        help="VAEClustering's input_dropout (default 0.2: a denoising VAE; 0: the plain VAE)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="VAE training precision (default auto: fp32 on the CPU, bf16 on a CUDA GPU)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--save-latents",
        metavar="DIR",
        help="also write each seed's latent means (N x latent-dim) to DIR/latents_seedS.npy",
    )
    args = parser.parse_args()
    args.manifold = None if args.manifold == "none" else args.manifold

    from sklearn.cluster import KMeans

    from vaekit import VAEClustering, load_dataset
    from vaekit.metrics import clustering_metrics
    from vaekit.training.fastpath import resolve_precision

    if args.epochs is None:
        args.epochs = VAEClustering().max_epochs

    if args.dataset == "fashion-mnist":
        _common.ensure_fashion_mnist()
    date, info, command = _common.start(f"vaekit clustering on {args.dataset}")
    ds = load_dataset(args.dataset)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    print(
        f"data:    {len(x):,} images, K=10, method={args.method}, "
        f"manifold={args.manifold}, shift_average={args.shift_average}, "
        f"input_dropout={args.input_dropout}, "
        f"hidden_dims={args.hidden_dims or 'default'}, epochs<={args.epochs}, "
        f"precision={args.precision} "
        f"(-> {resolve_precision(args.precision, torch.device('cpu')) or 'fp32'} on the CPU)"
    )

    results: dict[str, list[dict[str, float]]] = {"vaekit": [], "kmeans_pixels": []}
    # The same trained VAE clustered again with other settings (no second training).
    variants = {"vaekit_direct_gmm": dict(method="gmm", manifold=None, shift_average=0)}
    if args.shift_average:
        variants["vaekit_no_shift_avg"] = dict(shift_average=0)
    if args.manifold == "spectral":  # the choice among restarts before 2026-12-07
        objective = "inertia" if args.method == "kmeans" else "likelihood"
        variants[f"vaekit_{objective}_restarts"] = dict(restarts_by="objective")
    results.update({name: [] for name in variants})
    if not args.skip_baseline:
        t0 = time.perf_counter()
        km = KMeans(10, n_init=10, random_state=0).fit_predict(x.reshape(len(x), -1) / 255.0)
        row = {**clustering_metrics(y, km), "seconds": time.perf_counter() - t0, "seed": 0}
        results["kmeans_pixels"].append(row)
        print(_fmt("k-means pixels", row), flush=True)
    for seed in args.seeds:
        with _common.measured() as load:
            clu = VAEClustering(
                n_clusters=10,
                method=args.method,
                manifold=args.manifold,
                manifold_dim=args.manifold_dim,
                shift_average=args.shift_average,
                input_dropout=args.input_dropout,
                latent_dim=args.latent_dim,
                hidden_dims=args.hidden_dims,
                max_epochs=args.epochs,
                precision=args.precision,
                random_state=seed,
            ).fit(x)
        row = {**clustering_metrics(y, clu.labels_), "seconds": load["wall_s"]}
        row.update(seed=seed, other_cpus=load["other_cpus"])
        features = clu._features(x)  # what the clustering step saw (shift-averaged means)
        row.update(confidence(y, clu._proba_of_features(features)))
        results["vaekit"].append(row)
        print(_fmt(f"vaekit seed {seed}", row), flush=True)
        print(
            f"  probabilities: {row['confident_share']:.1%} of images above 0.99, "
            f"{row['right_if_confident']:.1%} of those in their class's cluster; "
            f"calibration error {row['cluster_ece']:.3f}",
            flush=True,
        )
        if args.save_latents:
            os.makedirs(args.save_latents, exist_ok=True)
            np.save(os.path.join(args.save_latents, f"latents_seed{seed}.npy"), clu.transform(x))
        for name, params in variants.items():
            t0 = time.perf_counter()
            same_features = "shift_average" not in params
            labels = recluster(clu, x, features if same_features else None, **params)
            row = {**clustering_metrics(y, labels), "seconds": time.perf_counter() - t0}
            row.update(seed=seed)
            results[name].append(row)
            print(_fmt(f"  same VAE, {name[7:]}", row) + " (clustering only)", flush=True)

    print()
    print_summary(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"date": date, "command": command, "machine": info, "results": results}, f, indent=2
            )


def print_summary(results: dict[str, list[dict[str, float]]]) -> None:
    """Mean ± std (sample) over the seeds of each method, and issue 3's targets.

    Also used by ``bench/summary.py`` on the ``--json`` reports of several runs.
    """
    for name, rows in results.items():
        if rows:
            stats = "  ".join(
                f"{k} {_common.mean_std([r[k] for r in rows], 0 if k == 'seconds' else 3)}"
                for k in ("acc", "nmi", "ari", "seconds")
            )
            print(f"{name:24s} {stats}  (seeds: {', '.join(str(r['seed']) for r in rows)})")
    accs = [r["acc"] for r in results["vaekit"]]
    nmis = [r["nmi"] for r in results["vaekit"]]
    if accs:
        print(
            f"targets: mean ACC >= 0.70: {np.mean(accs) >= 0.70}; mean NMI >= 0.70: "
            f"{np.mean(nmis) >= 0.70}; every seed ACC >= 0.65: {min(accs) >= 0.65}; "
            f"<= 15 min per seed: {max(r['seconds'] for r in results['vaekit']) <= 900}"
        )


def confidence(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """How much the cluster probabilities say of being right (README: ``predict_proba``).

    An image is right when its cluster is the one Hungarian matching gives its class (the
    images ACC counts). Returns the share of images whose highest probability is above
    0.99, the share of those that are right, and the expected calibration error of the
    highest probability as the chance of being right (vaekit's, 15 bins).
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    from vaekit.metrics import expected_calibration_error

    labels = proba.argmax(axis=1)
    table = contingency_matrix(y, labels)  # classes x clusters (those that occur)
    classes, clusters = np.unique(y), np.unique(labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    cluster_of = np.full(int(y.max()) + 1, -1)  # a class left without a cluster: never right
    cluster_of[classes[rows]] = clusters[cols]
    target = cluster_of[y]  # the column of proba that would be right for each image
    right = labels == target
    confident = proba.max(axis=1) > 0.99
    return {
        "confident_share": float(confident.mean()),
        "right_if_confident": float(right[confident].mean()) if confident.any() else np.nan,
        "cluster_ece": expected_calibration_error(target, proba),
    }


def recluster(clu, x: np.ndarray, features: np.ndarray | None = None, **params) -> np.ndarray:
    """Labels of ``clu``'s trained VAE clustered again with other clustering ``params``.

    Uses the estimator's own clustering code on a shallow copy, so the comparison is on the
    same trained VAE and costs no second training; ``features`` are ``clu``'s clustering
    features when ``params`` leave them as they are (saves nine encoder passes per image).
    ``direct_gmm`` (method gmm, no manifold,
    no shift averaging) is the GMM on the plain posterior means, the first default;
    ``restarts_by="objective"`` keeps the restart of lowest k-means inertia (highest
    likelihood for ``method="gmm"``) instead of the one whose partition of the spectral
    step's graph has the highest modularity.
    """
    other = copy.copy(clu)
    params = dict(params)
    restarts_by = params.pop("restarts_by", "graph")
    other.set_params(**params)
    other._fit_params = other.get_params(deep=False)  # the copy acts on its own settings
    if restarts_by == "objective":
        other._fit_clusterer = lambda u, graph=None: type(clu)._fit_clusterer(other, u)
    return other._cluster(other._features(x) if features is None else features).argmax(axis=1)


def _fmt(name: str, row: dict[str, float]) -> str:
    return (
        f"{name:16s} acc {row['acc']:.3f}  nmi {row['nmi']:.3f}  ari {row['ari']:.3f}  "
        f"{row['seconds']:.0f} s"
        + (f"  (others {row['other_cpus']:.2f} CPUs)" if "other_cpus" in row else "")
    )


if __name__ == "__main__":
    main()
