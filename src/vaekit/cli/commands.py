"""``vaekit train``, ``evaluate``, ``embed``, ``generate``, ``prepare`` and ``report``."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaekit.cli.classify import _classification_scores, _labels_by_run_classes, _training_labels
from vaekit.cli.cluster import _cluster_scores
from vaekit.cli.console import _count, _format_metrics, _is_main_process, _say
from vaekit.cli.runs import (
    CONFIG_FILE,
    _check_image_shape,
    _check_size,
    _check_writable,
    _data_metadata,
    _data_options_of_run,
    _estimator_from,
    _fresh_dir,
    _image_size,
    _is_run_data,
    _load_data,
    _load_estimator,
    _new_estimator,
    _output_file,
    _refuse_changes,
    _refuse_if_split_changed,
    _refuse_replacing_data,
    _refuse_run_as_data,
    _refuse_run_file,
    _resumed_run,
    _source,
    _split_change,
    _warn_of_split_change,
    _write_metrics,
    _write_run_metrics,
)
from vaekit.errors import CheckpointError, DataError, VaekitError

#: ``vaekit train --model``: the estimator each model family is, with its fixed settings.
MODELS = {
    "vae": ("VAE", {}),
    "vade": ("VAEClustering", {"method": "vade", "manifold": None, "n_clusters": 10}),
    "m2": ("VAEClassifier", {}),
}


def _has(params: dict[str, Any], fixed: dict[str, Any]) -> bool:
    """Whether ``params`` hold every value of ``fixed`` (a run made by that ``MODELS`` entry)."""
    return all(params.get(k) == v for k, v in fixed.items())


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a model and save a run directory."""
    if args.resume:
        out, config, params, meta = _resumed_run(args, "train")
        from vaekit import estimators

        name = config.get("estimator")
        models = [m for m, (kind, fixed) in MODELS.items() if kind == name and _has(params, fixed)]
        if not models:
            raise CheckpointError(
                f"'{out / CONFIG_FILE}' names estimator {name!r}, which vaekit train does "
                "not make; it was modified — start a new run without --resume"
            )
        if args.model is not None and args.model != models[0]:
            _refuse_changes(out, [f"--model (the run has {models[0]!r})"])
        ds = _load_data(args.data, args, params.get("random_state") or 0)
        _refuse_if_split_changed(ds, meta, args.data, out)
        est = _estimator_from(getattr(estimators, name), params, out)
    else:
        # before loading data
        out = None if args.out is None else _fresh_dir(args.out, "", args.data)
        ds = _load_data(args.data, args, args.seed)
        model = args.model or "vae"
        if out is None:
            out = _fresh_dir(None, f"runs/{_data_name(ds.name)}-{model}", args.data)
        from vaekit import estimators

        name, fixed = MODELS[model]
        est = _new_estimator(getattr(estimators, name), args, **fixed)
        meta = {**_data_metadata(args.data, ds, args), "command": "train"}
    # A bad setting fails before the 'training' line.
    _check_size(est, len(ds.x_train), args.data, len(ds.x_test))
    _say(
        args,
        f"training {type(est).__name__}{' (VaDE)' if name == 'VAEClustering' else ''} on "
        f"{_source(ds)}: {len(ds.x_train)} images "
        f"{'x'.join(map(str, ds.image_shape))} -> {out}",
    )
    labels = [_training_labels(ds, None)] if name == "VAEClassifier" else []
    est.fit(ds.x_train, *labels, run_dir=out, resume=args.resume, metadata=meta)
    if not _is_main_process():
        return 0
    from vaekit.metrics import generative_metrics

    t0 = time.perf_counter()
    scores = _classification_scores(est, ds)[0] if labels else generative_metrics(est, ds.x_test)
    if name == "VAEClustering":  # train --model vade: its clusters of the test images too
        x = ds.x_test
        scores.update(_cluster_scores(est, x, est.predict(x), ds.y_test, est.seed_))
    metrics = {
        **scores,
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "seconds": est.fit_seconds_ + time.perf_counter() - t0,
    }
    metrics = _write_run_metrics(out / "metrics.json", metrics)
    took = f"{_count(est.n_epochs_, 'epoch')} in {est.fit_seconds_:.1f} s"
    _say(args, f"{took}; test {_format_metrics(metrics)}")
    print(out)
    return 0


def _data_name(name: str) -> str:
    """Name DATA's default run folder: 'digits', 'pets' for 'data/pets/' or '.', 'd' for 'd.npz'."""
    base = Path(os.path.abspath(name)).name  # '.' and '..' named; a link keeps its own name
    for suffix in (".gz", ".npy", ".npz"):
        base = base.removesuffix(suffix)
    return base or "data"


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Test-split metrics of a trained run.

    On the run's own data they are merged into the run's metrics.json; on other data they
    are printed (and written to ``--out`` if given), leaving the run's metrics as they are.
    """
    own = Path(args.run) / "metrics.json"
    names_own = bool(args.out) and Path(args.out).resolve() == own.resolve()
    if args.out and not names_own:
        _output_file(args.out, ".json", args.data)  # before any work
    est, config = _load_estimator(args.run)
    from vaekit.metrics import generative_metrics

    meta = config.get("metadata", {})
    spec = args.data or meta.get("data")
    if spec is None:
        raise VaekitError(f"'{args.run}' does not record its data; pass DATA")
    run_data = _is_run_data(spec, meta)
    if names_own and not run_data:
        raise VaekitError(
            f"--out '{args.out}' is the run's own metrics file, which holds its scores on "
            f"its own data; write the scores on {spec!r} to another file"
        )
    if names_own:
        args.out = None  # the run's own file, named: merged as without --out
    if args.out:
        _refuse_replacing_data(Path(args.out), spec)  # DATA left out: the run's recorded data
    out = Path(args.out) if args.out else own
    if not args.out and run_data:
        _check_writable(out, "metrics file")
    _data_options_of_run(args, meta)
    ds = _load_data(spec, args, config["params"].get("random_state") or 0)
    _check_image_shape(est, ds, args.run, spec)
    change = _split_change(ds, meta, spec)  # hashes the test images: once
    if change and not args.out:
        raise DataError(
            f"not scoring run '{args.run}' into its own metrics.json: {change}; restore the "
            "data, or pass --out FILE to score these images anyway"
        )
    _warn_of_split_change(change)
    t0 = time.perf_counter()
    counts = {"n_train": len(ds.x_train), "n_test": len(ds.x_test)}
    if config.get("estimator") == "VAEClassifier":
        ds = _labels_by_run_classes(ds, meta.get("classes"), spec, args.run)
        if ds.y_test is None or not (ds.y_test >= 0).any():  # before the test images' work
            raise DataError(
                f"'{spec}' has no labeled test images to score classifier run '{args.run}' "
                "on; pass labeled data (class sub-folders, IDX or .npz labels)"
            )
        scores = _classification_scores(est, ds)[0]
    elif config.get("estimator") == "VAEClustering" and meta.get("command") != "train":
        # vaekit cluster trains on every image: there is no held-out part to score.
        # (vaekit train --model vade holds the test split out, scored below like a VAE.)
        from vaekit.data.prepared import all_images

        scored_on = "all images (trained on)" if run_data else "all images of DATA"
        images = all_images(ds)
        scores = {**generative_metrics(est, images), "scored_on": scored_on}
        counts = {"n_train": len(images), "n_test": 0}  # as the run's own metrics count them
    else:
        if not len(ds.x_test):  # a single image is a training part alone
            raise DataError(
                f"'{spec}' has no test images to score run '{args.run}' on "
                f"({len(ds.x_train)} image(s), all in the training part); pass more images"
            )
        scores = generative_metrics(est, ds.x_test)
    metrics = {**scores, **counts}
    if not run_data:
        metrics["data"] = spec
    metrics["seconds"] = time.perf_counter() - t0
    if not args.out and not run_data:
        print(json.dumps(metrics, indent=2))  # other data: the run's own metrics stay as they are
        return 0
    if not args.out and out.exists():
        # The run's own metrics file keeps what evaluate does not recompute (a clustering's
        # acc/nmi/ari, a classifier's n_labeled and temperature) and what describes the run
        # itself (its image counts and wall time); evaluate's time is added beside them.
        try:
            run = json.loads(out.read_text())
            kept = {k: run[k] for k in ("n_train", "n_test", "seconds") if k in run}
            metrics = {**run, **metrics, **kept, "evaluate_seconds": metrics["seconds"]}
        except (ValueError, TypeError, AttributeError):
            print(
                f"vaekit evaluate: warning: '{out}' could not be read as the run's metrics; "
                "it is replaced by the fresh scores",
                file=sys.stderr,
            )
    _write_metrics(out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Latent means of a dataset, written as .npy (all: in DATA's order; a part: in its own)."""
    _output_file(args.out, ".npy", args.data)
    est, config = _load_estimator(args.run)
    import numpy as np

    from vaekit import checkpoint

    meta = config.get("metadata", {})
    _data_options_of_run(args, meta)
    # The run's seed draws the split, so rows line up with its clusters.csv / predictions.csv.
    ds = _load_data(args.data, args, config["params"].get("random_state") or 0)
    _check_image_shape(est, ds, args.run, args.data)
    _warn_of_split_change(_split_change(ds, meta, args.data))
    parts = {"train": [ds.x_train], "test": [ds.x_test], "all": [ds.x_train, ds.x_test]}
    chosen = [x for x in parts[args.split] if len(x)]
    if not chosen:  # one image: all of it is the training part
        raise DataError(
            f"'{args.data}' has no {args.split} images ({len(ds.x_train)} training, "
            f"{len(ds.x_test)} test); use --split all"
        )
    z = np.concatenate([est.transform(x) for x in chosen])
    if args.split == "all":  # DATA's own order: row r is DATA's image r (a split file's too)
        z = z[np.argsort(ds.all_rows(), kind="stable")]
    buf = io.BytesIO()
    np.save(buf, z)
    checkpoint.atomic_write_bytes(args.out, buf.getvalue())
    _say(args, f"wrote {z.shape[0]} x {z.shape[1]} latent means to {args.out}")
    print(args.out)  # as prepare does: the file written, also under --quiet
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Sample images from a trained run into a PNG grid."""
    path = _output_file(args.out, ".png")
    est, config = _load_estimator(args.run, reads_metadata=False)
    meta = config.get("metadata")
    data = meta.get("data") if isinstance(meta, dict) else None  # metadata from Python: any
    _refuse_replacing_data(path, data if isinstance(data, str) else None)  # its image folder
    from vaekit.plots import save_image_grid

    if args.cluster is None:
        images = est.sample(args.n, random_state=args.seed)
    elif not hasattr(est, "n_clusters_"):
        raise VaekitError(
            f"'{args.run}' holds a {type(est).__name__}, which has no clusters; "
            "--cluster needs a run of 'vaekit cluster'"
        )
    elif not 0 <= args.cluster < est.n_clusters_:
        raise VaekitError(
            f"--cluster must be in 0..{est.n_clusters_ - 1} for '{args.run}', got {args.cluster}"
        )
    else:
        images = est.sample(args.n, cluster=args.cluster, random_state=args.seed)
    save_image_grid(args.out, images)
    _say(args, f"wrote {args.n} samples to {args.out}")
    print(args.out)  # as prepare does: the file written, also under --quiet
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Convert DATA once into a memory-mapped .npy and its .json manifest."""
    from vaekit.data.prepared import is_prepared, manifest_path, prepare

    # Replaces neither the source nor the user's files; only a manifest whose array is
    # missing (a 'vaekit prepare' killed between its two renames) is written again.
    half_done = not Path(args.out).exists() and is_prepared(Path(args.out))
    for path in (Path(args.out), manifest_path(args.out)):
        if path.exists() and not path.is_dir() and not half_done:
            raise VaekitError(
                f"'{path}' already exists; prepare writes new files only — choose another "
                "--out or remove it"
            )
    out = _output_file(args.out, ".npy")
    _refuse_run_file(manifest_path(out), f"the manifest '{manifest_path(out)}' of --out")
    _refuse_run_as_data(args.data)

    start = time.perf_counter()
    meta = prepare(
        args.data,
        out,
        image_size=_image_size(args.image_size),
        color=args.color,
        skip_bad=args.skip_bad,
        random_state=args.seed,
    )
    shape = meta["shape"]
    _say(
        args,
        f"prepared {meta['n_train']} training + {meta['n_test']} test images "
        f"{'x'.join(map(str, shape[1:]))} ({math.prod(shape) / 1e6:.1f} MB) in "
        f"{time.perf_counter() - start:.1f} s -> {out} + {manifest_path(out)}",
    )
    print(out)
    return 0


def _write_report(
    runs: Sequence[Path], out: Path, args: argparse.Namespace, *, progress: bool = False
) -> list[Path]:
    """Load each run with its data (``args.data`` or the one it records); write the report.

    With ``progress`` and several runs, says which run it reads (scoring a run takes
    seconds). Returns the files written (the figure PNGs, then ``out``).
    """
    from vaekit import report

    datasets: dict[tuple[Any, ...], Any] = {}
    loaded = []
    for i, path in enumerate(runs, 1):
        if progress and len(runs) > 1:
            _say(args, f"reading run {i} of {len(runs)}: {path}")
        est, config = _load_estimator(str(path))
        meta = config.get("metadata", {})
        spec = getattr(args, "data", None) or meta.get("data")
        ds = None
        if spec is not None:
            opts = argparse.Namespace(
                image_size=getattr(args, "image_size", None),
                color=getattr(args, "color", "auto"),
                skip_bad=getattr(args, "skip_bad", False),
            )
            _data_options_of_run(opts, meta)
            seed = config.get("params", {}).get("random_state") or 0
            key = (spec, opts.image_size, opts.color, opts.skip_bad, seed)
            if key not in datasets:  # a demo's runs share one dataset
                try:
                    datasets[key] = _load_data(spec, opts, seed)
                except DataError as exc:
                    if getattr(args, "data", None):
                        raise  # the user's own DATA: its error says what is wrong
                    # The data recorded in the run moved or was deleted: report without it.
                    print(
                        f"vaekit report: warning: run '{path}' was trained on {spec!r}, which "
                        f"cannot be loaded now ({exc}); the figures that need its images are "
                        "left out — pass DATA to include them",
                        file=sys.stderr,
                    )
                    datasets[key] = None
            ds = datasets[key]
        if ds is not None:
            _check_image_shape(est, ds, str(path), spec)
            _warn_of_split_change(_split_change(ds, meta, spec))
        loaded.append(report.read_run(path, config, estimator=est, dataset=ds))
    return report.write_report(
        out,
        loaded,
        latent_method=getattr(args, "latent_map", "pca"),
        max_points=getattr(args, "max_points", report.MAX_POINTS),
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Write RUN/report.html (one self-contained page) and its figures as PNGs."""
    from vaekit import checkpoint, report

    if args.data is not None and (Path(args.data) / CONFIG_FILE).exists():
        raise VaekitError(
            f"DATA '{args.data}' is a run; report one RUN, or a folder holding several runs "
            "(as a demo folder does)"
        )
    runs = report.find_runs(args.run)
    out = Path(args.run) / report.REPORT_FILE
    if args.out:
        out = _output_file(args.out, ".html", args.data, pictures_beside=True)
        for path in runs:  # DATA left out: each run's recorded data
            meta = checkpoint.read_config(path).get("metadata")
            data = meta.get("data") if isinstance(meta, dict) else None
            if isinstance(data, str):
                _refuse_replacing_data(out, data, pictures_beside=True)
    _check_writable(out, "report")
    start = time.perf_counter()
    written = _write_report(runs, out, args, progress=True)
    _say(
        args,
        f"report of {len(runs)} run{'s' * (len(runs) > 1)} with {len(written) - 1} figures "
        f"(PNGs beside it) in {time.perf_counter() - start:.1f} s",
    )
    print(out)
    return 0
