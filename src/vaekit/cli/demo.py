"""``vaekit demo``: the main job on the embedded digits data, ending in a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vaekit.cli.classify import _training_labels, _write_classify_run
from vaekit.cli.cluster import _write_cluster_run
from vaekit.cli.commands import _write_report
from vaekit.cli.console import _count, _say, _verbose
from vaekit.cli.runs import CONFIG_FILE, _fresh_dir, _write_metrics
from vaekit.errors import VaekitError

#: The demo's VAE and clustering runs: epoch cap (early stopping ends them sooner) and batch.
DEMO_EPOCHS = 150
DEMO_BATCH_SIZE = 32

#: Labeled training digits in the demo's semi-supervised classification (10 per class).
DEMO_LABELS = 100

#: M2 sized for 8x8 digits (a two-layer conv trunk, half of every batch labeled) and its
#: epoch cap: the default model is sized for 28x28 images and would take minutes here.
DEMO_CLASSIFIER = dict(
    arch="conv",
    hidden_dims=(16, 32),
    feature_dim=32,
    decoder_dims=(64,),
    latent_dim=4,
    batch_size=64,
    labeled_fraction=0.5,
    max_shift=1,
)

DEMO_CLASSIFIER_EPOCHS = 20


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on the embedded digits data: train, evaluate, sample."""
    if args.out is not None and (Path(args.out) / "vae" / CONFIG_FILE).exists():
        raise VaekitError(f"'{Path(args.out) / 'vae'}' already holds a run; choose another --out")
    out = _fresh_dir(args.out, "runs/demo", resumable=False)  # demo has no --resume
    import numpy as np

    from vaekit.data import load_dataset
    from vaekit.estimators import VAE
    from vaekit.metrics import generative_metrics
    from vaekit.plots import save_image_grid

    start = time.perf_counter()
    ds = load_dataset("digits")
    _say(
        args,
        f"vaekit demo: {len(ds.x_train)} training and {len(ds.x_test)} test images of "
        f"handwritten digits (8x8) -> {out}",
    )
    vae_dir = out / "vae"
    # 1,437 images make few steps per epoch: smaller batches train better in the same time
    # (measured: test ELBO -24.1 vs -25.1 nats with batch 128, about 20 s on 2 cores).
    vae = VAE(
        latent_dim=10,
        batch_size=DEMO_BATCH_SIZE,
        max_epochs=args.epochs,
        random_state=args.seed,
        verbose=_verbose(args),
    )
    meta = {
        "data": "digits",
        "dataset": "digits",
        "classes": list(ds.classes),
        "image_shape": list(ds.image_shape),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "image_size": None,
        "color": "auto",
        "index_is_row": True,  # as _data_metadata: the CSVs' index is the row in DATA
    }
    vae.fit(ds.x_train, run_dir=vae_dir, metadata=meta)  # saved there by fit
    metrics = {
        **generative_metrics(vae, ds.x_test),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "seconds": time.perf_counter() - start,
    }
    _write_metrics(vae_dir / "metrics.json", metrics)
    save_image_grid(out / "samples.png", vae.sample(64))
    n = min(32, len(ds.x_test))
    pairs = np.stack([ds.x_test[:n] / 255.0, vae.reconstruct(ds.x_test[:n])], axis=1)
    save_image_grid(out / "reconstructions.png", pairs.reshape(2 * n, *ds.image_shape), ncols=16)
    _say(args, f"VAE: {_count(vae.n_epochs_, 'epoch')} in {vae.fit_seconds_:.1f} s")
    _say(args, f"test ELBO: {metrics['elbo']:.2f} nats/image")
    _say(
        args,
        f"test reconstruction error: {metrics['reconstruction_bce']:.2f} nats/image (BCE), "
        f"{metrics['reconstruction_mse']:.3f} (squared error per image)",
    )
    _say(
        args,
        f"wrote the run {vae_dir}/ (weights, training state, history.csv, metrics.json), "
        f"{out}/samples.png, {out}/reconstructions.png in {time.perf_counter() - start:.1f} s",
    )
    _demo_cluster(out, ds, meta, args)
    _demo_classify(out, ds, meta, args)
    _demo_report(out, args)
    print(out)  # as train/cluster/classify end: the folder, also under --quiet
    return 0


def _demo_cluster(out: Path, ds: Any, meta: dict[str, Any], args: argparse.Namespace) -> None:
    """Cluster all digits without labels (labels only score the result)."""
    import numpy as np

    from vaekit.estimators import VAEClustering

    start = time.perf_counter()
    x = np.concatenate([ds.x_train, ds.x_test])
    run = out / "cluster"
    clu = VAEClustering(
        n_clusters=len(ds.classes),
        batch_size=DEMO_BATCH_SIZE,
        max_epochs=args.epochs,
        random_state=args.seed,
        verbose=_verbose(args),
    )
    clu.fit(x, run_dir=run, metadata=meta)
    m = _write_cluster_run(clu, ds, x, [""] * len(x), run, args.seed, start)
    _say(
        args,
        f"clustering (no labels): {clu.n_clusters_} clusters of all {len(x)} digits, "
        f"ACC {m['acc']:.3f}, NMI {m['nmi']:.3f}, ARI {m['ari']:.3f} in {m['seconds']:.1f} s "
        f"-> {run}/",
    )


def _demo_classify(out: Path, ds: Any, meta: dict[str, Any], args: argparse.Namespace) -> None:
    """Semi-supervised classification with DEMO_LABELS labeled training digits."""
    from vaekit.estimators import VAEClassifier

    start = time.perf_counter()
    y = _training_labels(ds, DEMO_LABELS, args.seed)
    n_labeled = int((y >= 0).sum())
    run = out / "classify"
    clf = VAEClassifier(
        **DEMO_CLASSIFIER,
        max_epochs=min(args.epochs, DEMO_CLASSIFIER_EPOCHS),
        random_state=args.seed,
        verbose=_verbose(args),
    )
    meta = {**meta, "command": "classify", "labels": DEMO_LABELS, "n_labeled": n_labeled}
    clf.fit(ds.x_train, y, run_dir=run, metadata=meta)
    m = _write_classify_run(clf, ds, n_labeled, run, start)
    _say(
        args,
        f"classification: {n_labeled} labeled + {len(y) - n_labeled} unlabeled training "
        f"digits, test accuracy {m['accuracy']:.3f}, macro F1 {m['f1_macro']:.3f}, "
        f"ECE {m['ece']:.3f} in {m['seconds']:.1f} s -> {run}/",
    )


def _demo_report(out: Path, args: argparse.Namespace) -> None:
    """End the demo with ``out/report.html`` covering every run the demo wrote."""
    from vaekit import report

    start = time.perf_counter()
    written = _write_report(report.find_runs(out), out / report.REPORT_FILE, args)
    _say(
        args,
        f"report: {written[-1]} ({len(written) - 1} figures, also as PNGs beside it) in "
        f"{time.perf_counter() - start:.1f} s; open it in a browser",
    )
