"""Seconds until vaekit's clustering of Fashion-MNIST reaches ACC >= 0.65 (benchmarks.md, "Speed").

Protocol ("Time-to-quality"): all 70,000 images, K = 10, labels used only to score. Each
seed trains ``VAEClustering``'s default VAE exactly as ``fit`` does (the learning rate on
its cosine schedule over ``max_epochs``); after the epochs in ``--check`` the current
weights are clustered as ``fit`` clusters them (the default step: k-means on the spectral
embedding) and scored. The time to quality is the training wall time up to the first epoch
whose clustering reaches ``--target``, plus that clustering step's own time: what a user
waits for a clustering that good from the default run's weights at that epoch. (A run
asked for only that many epochs would end its schedule sooner; it is not what is timed.)
The checks of earlier epochs are not counted, and training stops once the target is
reached.

The same run prints, at every check, a GMM fitted directly to the same latents (``method=
"gmm", manifold=None``, the fast clustering step), and k-means on raw pixels (scikit-learn,
``n_init=10``, as in ``bench/clustering.py``), which never reaches the target.

Run from the repository root::

    python bench/time_to_quality.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import _common
from clustering import recluster

_common.use_checkout()

#: Epochs after which the clustering is checked (those above ``--epochs`` are dropped).
DEFAULT_CHECKS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
#: Cluster ACC to reach (benchmarks.md).
DEFAULT_TARGET = 0.65


class _Reached(Exception):
    """Raised from the epoch callback to stop training once the target is reached."""


def main() -> None:
    """Run the benchmark and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET, help="cluster ACC to reach")
    parser.add_argument(
        "--epochs", type=int, help="max VAE epochs per seed (default: VAEClustering's max_epochs)"
    )
    parser.add_argument(
        "--check", type=int, nargs="+", default=list(DEFAULT_CHECKS), help="epochs to check at"
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        help="VAE training precision (fp32, as bench/clustering.py's protocol runs)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    from sklearn.cluster import KMeans

    from vaekit import load_dataset
    from vaekit.metrics import clustering_metrics

    _common.ensure_fashion_mnist()
    date, info, command = _common.start("vaekit time to quality on fashion-mnist")
    ds = load_dataset("fashion-mnist")
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    print(f"data:    {len(x):,} images, K=10, target ACC >= {args.target}")

    results: dict[str, object] = {"seeds": [], "kmeans_pixels": None}
    if not args.skip_baseline:
        t0 = time.perf_counter()
        km = KMeans(10, n_init=10, random_state=0).fit_predict(x.reshape(len(x), -1) / 255.0)
        row = {**clustering_metrics(y, km), "seconds": time.perf_counter() - t0}
        results["kmeans_pixels"] = row
        print(
            f"k-means pixels: ACC {row['acc']:.3f} NMI {row['nmi']:.3f} in {row['seconds']:.1f} s "
            f"(reaches {args.target}: {row['acc'] >= args.target})",
            flush=True,
        )
    for seed in args.seeds:
        with _common.measured() as load:
            summary = run_seed(seed, args, x, y)
        summary["other_cpus"] = load["other_cpus"]  # > 0: the timing was contended
        print(f"  (other processes kept {load['other_cpus']:.2f} CPUs busy meanwhile)")
        results["seeds"].append(summary)

    print()
    print_summary(results["seeds"], args.target)
    if args.json:
        report = {"date": date, "command": command, "machine": info, "target": args.target}
        with open(args.json, "w") as f:
            json.dump({**report, "results": results}, f, indent=2)


def print_summary(seeds: list[dict], target: float) -> None:
    """Mean ± std (sample) of the seconds to ``target`` over the seeds that reached it.

    Also used by ``bench/summary.py`` on the ``--json`` reports of several runs.
    """
    done = [s for s in seeds if s["reached"]]
    if not done:
        print(f"time to ACC >= {target}: reached by none of {len(seeds)} seeds")
        return
    print(
        f"time to ACC >= {target}: {_common.mean_std([s['seconds'] for s in done], 1)} s "
        f"over {len(done)} of {len(seeds)} seeds (epochs "
        f"{', '.join(str(s['epoch']) for s in done)}; seeds "
        f"{', '.join(str(s['seed']) for s in done)})"
    )


def run_seed(seed: int, args: argparse.Namespace, x: np.ndarray, y: np.ndarray) -> dict:
    """Train one seed's VAE, checking its clustering at ``args.check`` until the target."""
    from vaekit import VAEClustering
    from vaekit.estimators.base import to_tensor
    from vaekit.training import train

    clu = VAEClustering(n_clusters=10, precision=args.precision, random_state=seed)
    if args.epochs is not None:
        clu.set_params(max_epochs=args.epochs)
    xt = to_tensor(x)
    clu._check_params(len(xt))
    clu._setup_fit(xt, None)  # what fit does before the loop: seed, model
    cfg = clu._train_config(clu.seed_)
    checks = {e for e in args.check if e <= cfg.max_epochs}
    rows: list[dict[str, float]] = []
    clock = {"train_s": 0.0, "since": time.perf_counter()}

    def on_epoch_end(row: dict[str, float]) -> None:
        clock["train_s"] += time.perf_counter() - clock["since"]
        epoch = int(row["epoch"])
        if epoch in checks:
            check = score_epoch(clu, x, y, epoch, clock["train_s"])
            clu.module_.train()
            rows.append(check)
            print(
                f"seed {seed} epoch {epoch:2d}: trained {check['train_s']:6.1f} s; "
                f"default ACC {check['acc']:.3f} NMI {check['nmi']:.3f} "
                f"(clustering {check['cluster_s']:.1f} s); "
                f"direct GMM ACC {check['gmm_acc']:.3f} ({check['gmm_s']:.1f} s)",
                flush=True,
            )
            if check["acc"] >= args.target:
                raise _Reached
        clock["since"] = time.perf_counter()

    try:
        train(clu.module_, [xt], cfg, on_epoch_end=on_epoch_end)
    except _Reached:
        pass
    summary: dict = {"seed": seed, "checks": rows, "reached": False}
    reached = next((r for r in rows if r["acc"] >= args.target), None)
    if reached is None:
        print(f"seed {seed}: ACC {args.target} not reached in {cfg.max_epochs} epochs")
        return summary
    summary.update(
        reached=True, epoch=reached["epoch"], seconds=reached["train_s"] + reached["cluster_s"]
    )
    print(
        f"seed {seed}: ACC {reached['acc']:.3f} >= {args.target} after epoch "
        f"{reached['epoch']}: {summary['seconds']:.1f} s "
        f"({reached['train_s']:.1f} s training + {reached['cluster_s']:.1f} s clustering)",
        flush=True,
    )
    return summary


def score_epoch(clu, x: np.ndarray, y: np.ndarray, epoch: int, train_s: float) -> dict:
    """Cluster ``clu``'s current weights as ``fit`` would (timed), and directly by a GMM."""
    from vaekit.metrics import clustering_metrics

    clu.module_.eval()
    t0 = time.perf_counter()
    labels = clu._cluster(clu._features(x)).argmax(axis=1)
    cluster_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gmm_labels = recluster(clu, x, method="gmm", manifold=None, shift_average=0)
    gmm_s = time.perf_counter() - t0
    gmm = clustering_metrics(y, gmm_labels)
    return {
        "epoch": epoch,
        "train_s": train_s,
        "cluster_s": cluster_s,
        **clustering_metrics(y, labels),
        "gmm_acc": gmm["acc"],
        "gmm_nmi": gmm["nmi"],
        "gmm_s": gmm_s,
    }


if __name__ == "__main__":
    main()
