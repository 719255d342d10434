"""``vaekit cluster``: cluster every image of DATA, write clusters.csv, metrics and a montage."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vaekit.cli.console import _count, _format_metrics, _is_main_process, _say
from vaekit.cli.runs import (
    _check_size,
    _csv_field,
    _data_metadata,
    _estimator_from,
    _fresh_dir,
    _load_data,
    _model_params,
    _new_estimator,
    _refuse_if_split_changed,
    _resumed_run,
    _source,
    _write_run_metrics,
)
from vaekit.errors import VaekitError

#: ``vaekit cluster`` settings when not given (a resumed run keeps its own).
CLUSTER_DEFAULTS = {"n_clusters": 10, "method": "kmeans", "manifold": "spectral"}


def cmd_cluster(args: argparse.Namespace) -> int:
    """Cluster all images of DATA (train and test together) without using labels."""
    given = {
        "n_clusters": args.n_clusters,
        "method": args.method,
        "manifold": args.manifold,
        "manifold_dim": args.manifold_dim,
        "shift_average": args.shift_average,
        "input_dropout": args.input_dropout,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if given.get("method") == "vade":
        for option, name in (
            ("--manifold", "manifold"),
            ("--shift-average", "shift_average"),
            ("--input-dropout", "input_dropout"),
        ):
            if given.get(name) not in (None, "none", 0.0):  # "none" and 0 mean off
                raise VaekitError(f"{option} applies to --method gmm or kmeans; drop it for vade")
    no_manifold = given.get("method") == "vade" or given.get("manifold") == "none"
    if "manifold_dim" in given and no_manifold:  # before: silently unused
        raise VaekitError("--manifold-dim applies to --manifold umap or spectral; drop it")
    if "manifold" in given and given["manifold"] == "none":
        given["manifold"] = None
    from vaekit.data.prepared import all_images
    from vaekit.estimators import VAEClustering

    if args.resume:
        out, _, params, meta = _resumed_run(args, "cluster", {**_model_params(args), **given})
        ds = _load_data(args.data, args, params.get("random_state") or 0)
        _refuse_if_split_changed(ds, meta, args.data, out)
        clu = _estimator_from(VAEClustering, params, out)
    else:
        out = _fresh_dir(args.out, "", args.data)
        ds = _load_data(args.data, args, args.seed)
        clu = _new_estimator(VAEClustering, args, **{**CLUSTER_DEFAULTS, **given})
        meta = {**_data_metadata(args.data, ds, args), "command": "cluster"}
    x = all_images(ds)  # a prepared dataset stays memory-mapped
    paths = [*(ds.paths_train or [""] * len(ds.x_train)), *(ds.paths_test or [""] * len(ds.x_test))]
    _check_size(clu, len(x), args.data)  # a bad setting fails before the 'clustering' line
    _say(args, f"clustering {len(x)} images of {_source(ds)} (method {clu.method}) -> {out}")
    n_classes = len(ds.classes) if ds.y_train is not None else 0
    if "n_clusters" not in given and not args.resume and n_classes not in (0, 1, clu.n_clusters):
        _say(
            args,
            f"note: {clu.n_clusters} clusters (the default), but {ds.name} has {n_classes} "
            f"classes; pass --n-clusters {n_classes} to match them",
        )
    start = time.perf_counter()
    clu.fit(x, run_dir=out, resume=args.resume, metadata=meta)
    if not _is_main_process():
        return 0
    metrics = _write_cluster_run(clu, ds, x, paths, out, clu.random_state or 0, start)
    _say(args, f"{_count(clu.n_clusters_, 'cluster')}; {_format_metrics(metrics)}")
    print(out)
    return 0


def _cluster_scores(clu: Any, x: Any, labels: Any, y: Any, seed: int) -> dict[str, Any]:
    """``n_clusters``, ``acc``/``nmi``/``ari`` against ``y`` where labeled, ``silhouette``."""
    from vaekit.metrics import clustering_metrics, silhouette

    scores: dict[str, Any] = {"n_clusters": int(clu.n_clusters_)}
    if y is not None and (y >= 0).any():
        known = y >= 0
        scores.update(clustering_metrics(y[known], labels[known]))
    scores["silhouette"] = silhouette(clu.transform(x), labels, random_state=seed)
    return scores


def _write_cluster_run(
    clu: Any, ds: Any, x: Any, paths: list[str], out: Path, seed: int, start: float
) -> dict[str, Any]:
    """Write clusters.csv, metrics.json and montage.png beside a clustering fit saved in ``out``."""
    from vaekit import checkpoint
    from vaekit.plots import cluster_montage

    proba = clu._train_proba  # predict_proba(x): the clustering was just fitted on x
    labels, conf = proba.argmax(1), proba.max(1)
    rows = ["index,path,cluster,probability"]  # index: the image's row in DATA
    rows += [
        f"{i},{_csv_field(p)},{c},{q:.6f}"
        for i, p, c, q in zip(ds.all_rows(), paths, labels, conf, strict=True)
    ]
    checkpoint.atomic_write_text(out / "clusters.csv", "\n".join(rows) + "\n")
    metrics = _cluster_scores(clu, x, labels, ds.all_labels(), seed)
    if clu.k_selection_ is not None:
        metrics["k_selection"] = clu.k_selection_
    metrics.update({"n_train": len(x), "n_test": 0, "seconds": time.perf_counter() - start})
    metrics = _write_run_metrics(out / "metrics.json", metrics)
    cluster_montage(out / "montage.png", x, labels, conf)
    return metrics
