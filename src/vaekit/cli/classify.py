"""``vaekit classify``: train on N labels (or all), write predictions.csv and test metrics."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaekit.cli.console import _count, _format_metrics, _is_main_process, _say
from vaekit.cli.runs import (
    _csv_field,
    _data_metadata,
    _estimator_from,
    _fresh_dir,
    _load_data,
    _new_estimator,
    _refuse_changes,
    _refuse_if_split_changed,
    _resumed_run,
    _source,
    _write_run_metrics,
)
from vaekit.errors import DataError, VaekitError


def _training_labels(ds: Any, n_labels: int | None, seed: int = 0):
    """Training labels with -1 for unlabeled images; ``n_labels`` keeps that many, even per class.

    Without ``n_labels`` every label of the training split is kept (images of an
    ``unlabeled/`` folder stay unlabeled). With it, ``n_labels // K`` images per class (the
    first ``n_labels % K`` classes get one more) are drawn with ``seed``; the rest become -1.
    """
    import numpy as np

    from vaekit.data.dataset import draw_labels
    from vaekit.errors import ConfigError

    y = ds.y_train
    if y is None or not (y >= 0).any():
        raise DataError(
            f"{ds.name!r} has no labeled training images; classification needs labels "
            "(class sub-folders, IDX/npz labels)"
        )
    kinds = np.unique(y[y >= 0])
    if len(kinds) < 2:
        raise DataError(
            f"{ds.name!r} has labeled training images of one class only "
            f"({ds.classes[kinds[0]]!r}); classification needs at least 2 (a sub-folder or "
            "label per class)"
        )
    if ds.y_test is not None:
        unseen = np.setdiff1d(ds.y_test[ds.y_test >= 0], kinds)
        if len(unseen):
            import warnings

            warnings.warn(
                f"{ds.name!r} has test images of {', '.join(repr(ds.classes[k]) for k in unseen)} "
                "but no labeled training image of it: the classifier cannot predict that class, "
                "so those test images count as errors",
                stacklevel=2,
            )
    try:
        return draw_labels(y, n_labels, seed)
    except ConfigError as exc:
        raise VaekitError(f"--labels {n_labels}: {exc}") from None


def _labels_by_run_classes(ds: Any, run_classes: Sequence[str] | None, spec: str, run: str):
    """``ds`` with its labels numbered as the run's classes, matched by name.

    A classifier predicts the class indices of the data it was trained on; another dataset
    (a folder with other sub-folders, say) numbers its classes in its own order. A test
    class the run never saw is refused, since every image of it would count as an error.
    """
    import dataclasses

    import numpy as np

    if not run_classes or not ds.classes or tuple(ds.classes) == tuple(run_classes):
        return ds
    index = {name: i for i, name in enumerate(run_classes)}
    lut = np.array([index.get(name, -1) for name in ds.classes], dtype=np.int64)
    tested = np.unique(ds.y_test[ds.y_test >= 0]) if ds.y_test is not None else []
    unknown = [ds.classes[c] for c in tested if lut[c] < 0]
    if unknown:
        raise DataError(
            f"test images of {spec!r} belong to classes that run '{run}' was not trained on "
            f"({', '.join(map(repr, unknown[:5]))}); its classes are "
            f"{', '.join(map(repr, run_classes[:10]))}{', ...' if len(run_classes) > 10 else ''}"
            " — pass data labeled with those"
        )

    def renumber(y: Any) -> Any:
        return None if y is None else np.where(y >= 0, lut[np.maximum(y, 0)], -1)

    return dataclasses.replace(
        ds, y_train=renumber(ds.y_train), y_test=renumber(ds.y_test), classes=tuple(run_classes)
    )


def _classification_scores(clf: Any, ds: Any):
    """Test-split metrics of a classifier: ``(metrics, predicted labels, probabilities)``.

    Only test images with a label are scored; without any, ``metrics`` holds only the
    ``elbo`` (M2's bound on log p(x), summed over the classes: every test image).
    """
    import numpy as np

    from vaekit.metrics import classification_metrics

    proba = clf.predict_proba(ds.x_test)
    pred = clf.classes_[proba.argmax(axis=1)]
    elbo = float(np.mean(clf.score_samples(ds.x_test)))
    known = np.zeros(len(pred), dtype=bool) if ds.y_test is None else ds.y_test >= 0
    if not known.any():
        return {"elbo": elbo}, pred, proba
    y_true = ds.y_test[known]
    metrics = classification_metrics(
        y_true, pred[known], class_names=ds.classes or [str(c) for c in clf.classes_]
    )
    # ECE over the classifier's columns; a test class it never saw counts as a miss (-1).
    col = np.searchsorted(clf.classes_, y_true).clip(0, len(clf.classes_) - 1)
    col = np.where(clf.classes_[col] == y_true, col, -1)
    from vaekit.metrics import expected_calibration_error

    metrics["ece"] = expected_calibration_error(col, proba[known])
    metrics["n_scored"] = int(known.sum())
    metrics["elbo"] = elbo
    return metrics, pred, proba


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify DATA with N labeled training images (all if omitted); score the test split."""
    from vaekit.estimators import VAEClassifier

    if args.resume:
        out, _, params, meta = _resumed_run(args, "classify")
        if args.labels is not None and args.labels != meta.get("labels"):
            _refuse_changes(out, [f"--labels (the run has {meta.get('labels')!r})"])
        seed = params.get("random_state") or 0
        ds = _load_data(args.data, args, seed)
        _refuse_if_split_changed(ds, meta, args.data, out)
        y = _training_labels(ds, meta.get("labels"), seed)
        clf = _estimator_from(VAEClassifier, params, out)
    else:
        out = _fresh_dir(args.out, "", args.data)
        ds = _load_data(args.data, args, args.seed)
        y = _training_labels(ds, args.labels, args.seed)
        clf = _new_estimator(VAEClassifier, args)
        meta = {
            **_data_metadata(args.data, ds, args),
            "command": "classify",
            "labels": args.labels,
            "n_labeled": int((y >= 0).sum()),
        }
    n_labeled = int((y >= 0).sum())
    spread = " (labels first spread over a VAE's latent graph)" if n_labeled < len(y) else ""
    clf._check_params()  # a bad setting fails before the 'classifying' line
    _say(
        args,
        f"classifying {_source(ds)}: {n_labeled} labeled and {len(y) - n_labeled} unlabeled "
        f"training images{spread} -> {out}",
    )
    start = time.perf_counter()
    clf.fit(ds.x_train, y, run_dir=out, resume=args.resume, metadata=meta)
    if not _is_main_process():
        return 0
    metrics = _write_classify_run(clf, ds, n_labeled, out, start)
    _say(args, f"{_count(clf.n_epochs_, 'epoch')}; test {_format_metrics(metrics)}")
    print(out)
    return 0


def _write_classify_run(
    clf: Any, ds: Any, n_labeled: int, out: Path, start: float
) -> dict[str, Any]:
    """Write predictions.csv and metrics.json (test split) beside a classifier saved in ``out``."""
    from vaekit import checkpoint

    metrics, pred, proba = _classification_scores(clf, ds)
    names = list(ds.classes) or [str(c) for c in clf.classes_]
    paths = ds.paths_test or [""] * len(pred)
    index = ds.all_rows()[len(ds.x_train) :]  # as in clusters.csv: the image's row in DATA
    rows = ["index,path,label,probability"]
    rows += [
        f"{i},{_csv_field(p)},{_csv_field(names[c])},{q:.6f}"
        for i, p, c, q in zip(index, paths, pred, proba.max(axis=1), strict=True)
    ]
    checkpoint.atomic_write_text(out / "predictions.csv", "\n".join(rows) + "\n")
    metrics.update(
        {
            "n_labeled": n_labeled,
            "temperature": clf.temperature_,
            "n_train": len(ds.x_train),
            "n_test": len(ds.x_test),
            "seconds": time.perf_counter() - start,
        }
    )
    metrics = _write_run_metrics(out / "metrics.json", metrics)
    return metrics
