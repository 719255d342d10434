"""One self-contained HTML page that tells the story of a run: ``report.html`` + PNGs.

The page holds the run's configuration, a data summary, its metric tables and each figure
of :mod:`vaekit.plots` with a one-line caption saying how to read it. Images are inlined as
``data:`` URIs and the style sheet is in the page, so the file opens in any browser with
no network and can be mailed on its own; each figure is also written as a PNG beside it,
named after the page (``report-latent-map.png`` beside ``report.html``) so that it never
replaces a picture of the user's or of another vaekit command (``samples.png``).

What a section shows depends on the run, detected from its files and estimator:

- every run: configuration, data, metrics, training curves (``history.csv``);
- with a fitted estimator and its data: reconstructions, samples (one row per cluster for
  clustering runs), the 2-D latent map;
- clustering runs (``clusters.csv``): cluster sizes, confident members, classes vs
  clusters when labels exist, and the K-selection curve when K was chosen automatically;
- classification runs (``predictions.csv`` or classification metrics): the confusion
  matrix with class names and the per-class table.

This module reads files and draws; loading estimators and data is the caller's job
(``vaekit report`` does it), which keeps imports pointing down the layers.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaekit import plots
from vaekit._version import __version__
from vaekit.checkpoint import (
    CONFIG_FILE,
    HISTORY_FILE,
    atomic_write_text,
    read_history,
    run_command,
)
from vaekit.data.dataset import Dataset
from vaekit.data.prepared import all_images
from vaekit.data.registry import same_data
from vaekit.errors import CheckpointError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
CLUSTERS_FILE = "clusters.csv"
PREDICTIONS_FILE = "predictions.csv"
#: ``Software`` text of the report's PNGs: a figure with it may be replaced by the next
#: report; any other file at a figure's name is the user's, and the report refuses.
REPORT_SOFTWARE = "vaekit report"
#: The name (PNG suffix) of every figure a report may draw: a report's PNG of one of these
#: names that the new page does not show is an old page's, and is removed.
FIGURE_NAMES = (
    "training-curves",
    "reconstructions",
    "samples",
    "latent-map",
    "cluster-sizes",
    "cluster-montage",
    "classes-vs-clusters",
    "k-selection",
    "confusion-matrix",
)
#: Latent maps and other per-point figures use at most this many images (seeded sample).
MAX_POINTS = 3000
#: Reconstruction pairs shown.
N_RECONSTRUCTIONS = 16
#: Prior samples shown for a model without clusters (an 8 x 8 grid).
N_SAMPLES = 64
#: Samples per cluster (or class) row.
SAMPLES_PER_CLUSTER = 10
#: Class rows of a class-conditional samples figure at most.
MAX_SAMPLE_ROWS = 20
#: Class names listed in the data summary before "and N more".
MAX_LISTED_CLASSES = 20
#: Parameters shown in the configuration table; config.json, all of it, is one click away.
KEY_PARAMS = (
    "method",
    "manifold",
    "shift_average",
    "n_clusters",
    "latent_dim",
    "arch",
    "likelihood",
    "beta",
    "batch_size",
    "learning_rate",
    "max_epochs",
    "random_state",
)
#: Order of the run sections by estimator; unknown estimators come last.
_KIND_ORDER = {"VAE": 0, "VAEClustering": 1, "VAEClassifier": 2}

#: What each metric means, shown beside its value.
METRIC_DESCRIPTIONS = {
    "elbo": "evidence lower bound per image scored (the test split; for a clustering every "
    "image), nats (higher is better)",
    "reconstruction_mse": "squared error per image scored, summed over pixels (lower is better)",
    "reconstruction_bce": "binary cross-entropy per image scored, nats (lower is better)",
    "acc": "clustering accuracy: best one-to-one map of clusters to classes (higher is better)",
    "nmi": "normalised mutual information of clusters and classes, 0-1 (higher is better)",
    "ari": "adjusted Rand index, 0 = chance, 1 = the classes exactly (higher is better)",
    "silhouette": "separation of the clusters in latent space, -1 to 1 (higher is better)",
    "n_clusters": "number of clusters",
    "accuracy": "share of test images given their true class (higher is better)",
    "precision_macro": "precision averaged over classes (higher is better)",
    "recall_macro": "recall averaged over classes (higher is better)",
    "f1_macro": "F1 score averaged over classes (higher is better)",
    "ece": "expected calibration error: confidence minus accuracy, binned (lower is better)",
    "n_labeled": "labeled training images given (a part may be held out to calibrate the "
    "probabilities)",
    "n_scored": "labeled test images scored",
    "temperature": "softmax temperature fitted on held-out training labels to calibrate the "
    "probabilities (1: too few labels were held out to fit one)",
    "n_train": "training images",
    "n_test": "test images",
    "seconds": "wall-clock seconds of the run",
    "evaluate_seconds": "wall-clock seconds of the last vaekit evaluate",
}


@dataclass
class RunData:
    """What the report knows about one run directory.

    Parameters
    ----------
    path : Path
        The run directory.
    config : dict
        Its ``config.json``.
    metrics : dict
        Its ``metrics.json`` (empty when absent).
    history : list of dict
        Rows of ``history.csv`` (empty when absent).
    assignments : dict of ndarray, optional
        Columns of ``clusters.csv`` or ``predictions.csv``: ``index``, ``value`` (cluster
        or label), ``probability``; ``None`` when neither file exists.
    estimator : object, optional
        The fitted estimator, for the figures that need the model.
    dataset : vaekit.data.Dataset, optional
        The run's data, for the figures that need images or labels.
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    assignments: dict[str, np.ndarray] | None = None
    estimator: Any = None
    dataset: Any = None

    @property
    def kind(self) -> str:
        """``"clustering"``, ``"classification"`` or ``"vae"``, from estimator and files."""
        name = self.config.get("estimator")
        if name == "VAEClustering" or (self.path / CLUSTERS_FILE).exists():
            return "clustering"
        if (
            name == "VAEClassifier"
            or (self.path / PREDICTIONS_FILE).exists()
            or "accuracy" in self.metrics
        ):
            return "classification"
        return "vae"

    @property
    def classes(self) -> list[str]:
        """Class names recorded in the config (or the dataset), possibly empty."""
        names = self.config.get("metadata", {}).get("classes")
        if not names and self.dataset is not None:
            names = self.dataset.classes
        return [str(c) for c in names or ()]


@dataclass
class FigureItem:
    """One figure of the report: file stem, title, how to read it, and the figure.

    A figure that applies to the run but cannot be drawn has ``figure=None`` and a caption
    that says why; the page shows that note in its place.
    """

    name: str
    title: str
    caption: str
    figure: Figure | None


# --- reading a run ----------------------------------------------------------------------
def find_runs(path: str | Path) -> list[Path]:
    """Run directories of ``path``: itself if it holds a run, else its sub-folders that do.

    A ``vaekit demo`` folder holds one run per step (``vae/``, ...); the report covers all.

    Raises
    ------
    CheckpointError
        When neither ``path`` nor a sub-folder holds a run.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"run directory '{path}' does not exist; pass a trained run")
    if (path / CONFIG_FILE).exists():
        return [path]
    runs = [p for p in sorted(path.iterdir()) if (p / CONFIG_FILE).exists()]
    if not runs:
        raise CheckpointError(
            f"'{path}' holds no run (no {CONFIG_FILE} in it or in its direct sub-folders); "
            "pass the --out folder of vaekit train, cluster, classify or demo"
        )
    return runs


def read_run(
    path: str | Path,
    config: Mapping[str, Any],
    *,
    estimator: Any = None,
    dataset: Any = None,
) -> RunData:
    """Read the files of a run directory (metrics, history, assignments) into a RunData.

    Parameters
    ----------
    path : path
        The run directory.
    config : mapping
        Its ``config.json`` (as read by ``vaekit.checkpoint.read_config``).
    estimator : object, optional
        The fitted estimator (``VAE.load(path)`` and friends).
    dataset : vaekit.data.Dataset, optional
        The data the run was trained on.

    Raises
    ------
    CheckpointError
        A file of the run is not readable as what it should be.
    """
    path = Path(path)
    metrics: dict[str, Any] = {}
    if (path / METRICS_FILE).exists():
        try:
            metrics = json.loads((path / METRICS_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(
                f"'{path / METRICS_FILE}' is not valid JSON ({exc}); rerun vaekit evaluate"
            ) from None
        if not isinstance(metrics, dict):
            raise CheckpointError(f"'{path / METRICS_FILE}' is not a JSON object of metrics")
        _check_metrics(path / METRICS_FILE, metrics)
    history = _read_history(path / HISTORY_FILE)
    assignments = None
    for name, column in ((CLUSTERS_FILE, "cluster"), (PREDICTIONS_FILE, "label")):
        if (path / name).exists():
            assignments = _read_assignments(path / name, column)
            break
    return RunData(path, dict(config), metrics, history, assignments, estimator, dataset)


def _check_metrics(path: Path, metrics: Mapping[str, Any]) -> None:
    """Raise CheckpointError unless the tables of metrics.json that get drawn are drawable."""
    cm = metrics.get("confusion_matrix")
    if cm is not None and not _is_count_table(cm):
        raise CheckpointError(
            f"'{path}' has a confusion_matrix that is not a square table of counts; "
            "rerun vaekit evaluate on the run to write it again"
        )
    sel = metrics.get("k_selection")
    if sel is not None and not _is_k_selection(sel):
        raise CheckpointError(
            f'\'{path}\' has a k_selection that is not {{"k": [...], "score": [...]}} '
            "with one score per K; remove the entry or rerun vaekit cluster"
        )


def _is_count_table(value: Any) -> bool:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):  # ragged rows, words
        return False
    square = m.ndim == 2 and m.size > 0 and m.shape[0] == m.shape[1]
    return square and bool(np.isfinite(m).all() and (m >= 0).all())


def _is_k_selection(value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    try:
        ks = np.asarray(value.get("k"), dtype=np.float64)
        scores = np.asarray(value.get("score"), dtype=np.float64)
        chosen = float(value.get("chosen", 0))
    except (ValueError, TypeError):
        return False
    return ks.ndim == 1 and ks.size > 0 and ks.shape == scores.shape and math.isfinite(chosen)


def _read_history(path: Path) -> list[dict[str, float]]:
    """Read the run's history; ``[]`` (no training curves) and a warning if it was edited."""
    try:
        return read_history(path)
    except CheckpointError as exc:
        warnings.warn(f"{exc}; the report leaves out the training curves", stacklevel=2)
        return []


def _read_assignments(path: Path, column: str) -> dict[str, np.ndarray]:
    """``index``, ``value`` and ``probability`` columns of clusters.csv / predictions.csv."""
    index, values, prob = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                index.append(int(row["index"]))
                values.append(row[column])
                prob.append(float(row["probability"]))
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"'{path}' lacks readable columns index,{column},probability ({exc})"
        ) from None
    if column == "cluster":
        bad = next((v for v in values if not (v.isdigit() and v.isascii())), None)
        if bad is not None:
            raise CheckpointError(
                f"'{path}' has cluster {bad!r}, not a cluster number 0, 1, ...; fix the file or "
                "rerun vaekit cluster"
            )
    return {
        "index": np.asarray(index, dtype=np.int64),
        "value": np.asarray(values),
        "probability": np.asarray(prob),
    }


# --- figures ----------------------------------------------------------------------------
def build_figures(
    run: RunData,
    *,
    latent_method: str = "pca",
    max_points: int = MAX_POINTS,
) -> list[FigureItem]:
    """Draw the figures that apply to ``run``, in reading order (see the module docstring).

    Parameters
    ----------
    run : RunData
        The run; figures that need the estimator or the data are left out without them.
    latent_method : {"pca", "tsne", "umap"}, default="pca"
        Projection of the latent map.
    max_points : int, default=3000
        Images in the latent map at most (a seeded sample), to keep the report fast.

    Returns
    -------
    list of FigureItem
    """
    items: list[FigureItem] = []
    est, ds = run.estimator, run.dataset
    seed = int(run.config.get("params", {}).get("random_state") or 0)
    rng = np.random.default_rng(seed)
    if run.history:
        items.append(
            FigureItem(
                "training-curves",
                "Training curves",
                "Loss per epoch in nats per image (lower is better): the total is the "
                "reconstruction plus the KL times its warm-up weight, plus the model's other "
                "terms (a classifier's, drawn dotted: mostly its classification loss, weighted "
                "by alpha times the pixels per image); a validation curve that turns up "
                "while training keeps falling means over-fitting.",
                plots.plot_training_curves(run.history),
            )
        )
    elif not (run.path / HISTORY_FILE).exists():  # an unreadable one was warned of
        items.append(
            FigureItem(
                "training-curves",
                "Training curves",
                f"left out: the run has no {HISTORY_FILE}, which training writes and the "
                "curves are drawn from (it was removed, or the model saved without one).",
                None,
            )
        )
    if est is not None and ds is not None and hasattr(est, "reconstruct"):
        x = ds.x_test if len(ds.x_test) else ds.x_train
        x = x[:N_RECONSTRUCTIONS]
        held_out = len(ds.x_test) > 0 and not _clusters_every_image(run)
        inputs = "held-out images" if held_out else "images the model was trained on"
        items.append(
            FigureItem(
                "reconstructions",
                "Inputs and reconstructions",
                f"Odd columns: {inputs}; even columns: the model's reconstruction "
                "from the latent mean; what is blurred or wrong is what the latent code "
                "leaves out.",
                plots.plot_reconstructions(x, est.reconstruct(x)),
            )
        )
    if est is not None and hasattr(est, "sample"):
        items.append(_samples_figure(run, seed))
    if run.kind == "clustering":
        items += _clustering_figures(run, rng, latent_method, max_points)
    elif est is not None and ds is not None and hasattr(est, "transform"):
        x, y = _split_for_map(ds)
        pick = _subsample(len(x), max_points, rng)
        labels = None if y is None else y[pick]
        items.append(_latent_item(run, est, x[pick], None, labels, latent_method, seed))
    matrix = run.metrics.get("confusion_matrix")
    if run.kind == "classification" and matrix is not None:
        items.append(
            FigureItem(
                "confusion-matrix",
                "Confusion matrix",
                "Rows: true classes, columns: predicted classes, counts in the cells and "
                "shading by the share of the row; a dark diagonal is good, a dark "
                "off-diagonal cell names two classes the classifier mixes up.",
                plots.plot_confusion_matrix(
                    matrix, row_names=_names_for(run.classes, len(matrix)) if run.classes else None
                ),
            )
        )
    return items


def _samples_figure(run: RunData, seed: int) -> FigureItem:
    est = run.estimator
    k = getattr(est, "n_clusters_", None)
    classes = getattr(est, "classes_", None)
    if k is None and classes is not None:  # a class-conditional model (M2): a row per class
        shown = list(classes)[:MAX_SAMPLE_ROWS]
        names = [_class_name(run.classes, c) for c in shown]
        rows = np.stack(
            [est.sample(SAMPLES_PER_CLUSTER, label=c, random_state=seed) for c in shown]
        )
        title = "Samples per class"
        if len(shown) < len(classes):
            title += f" (first {len(shown)} of {len(classes)} classes)"
        return FigureItem(
            "samples",
            title,
            "Each row decodes random style codes from the prior with that row's class "
            "given; rows that look like their class mean the model separates class from "
            "style.",
            plots.plot_samples(rows, row_labels=names, title=title),
        )
    if k is None:
        return FigureItem(
            "samples",
            "Samples from the prior",
            "Images decoded from random latent codes drawn from the prior; sharp, varied, "
            "plausible images mean the latent space is well filled.",
            plots.plot_samples(est.sample(N_SAMPLES, random_state=seed)),
        )
    rows = np.stack(
        [est.sample(SAMPLES_PER_CLUSTER, cluster=c, random_state=seed + c) for c in range(k)]
    )
    method = est._fitted("method")
    if method == "vade":
        source = "the cluster's component of the learned mixture prior"
    elif est._uses_manifold():
        source = "a Gaussian fitted to the cluster's members in latent space"
    elif method == "gmm":
        source = "the cluster's Gaussian in latent space"
    else:
        source = "around the cluster's centre in latent space"
    return FigureItem(
        "samples",
        "Samples per cluster",
        f"Each row decodes random latent codes drawn from {source}; a row of one kind of "
        "image means a coherent cluster, a mixed row a cluster that merges kinds.",
        plots.plot_samples(rows, row_labels=[f"cluster {c}" for c in range(k)]),
    )


def _assignment_order(index: np.ndarray, run: RunData, ds: Dataset | None) -> np.ndarray:
    """Rows of clusters.csv in the order of ``all_images(ds)`` (training, then test).

    The ``index`` column is each image's row in DATA (``Dataset.all_rows``); in runs written
    before the metadata said so (``index_is_row``), its place in training-then-test order.
    Either way the rows are found by their index, so a re-sorted file still maps.
    """
    by_index = np.argsort(index, kind="stable")
    if ds is None or not run.config.get("metadata", {}).get("index_is_row"):
        return by_index
    rows = ds.all_rows()
    if not np.array_equal(np.sort(rows), index[by_index]):
        return by_index  # not this data's rows (edited by hand): by index, as before
    # The image at place j of all_images(ds) has index rows[j]: rank both and pair them.
    order = np.empty(len(rows), dtype=np.int64)
    order[np.argsort(rows, kind="stable")] = by_index
    return order


def _clustering_figures(
    run: RunData, rng: np.random.Generator, latent_method: str, max_points: int
) -> list[FigureItem]:
    est, ds = run.estimator, run.dataset
    seed = int(run.config.get("params", {}).get("random_state") or 0)
    items: list[FigureItem] = []
    # vaekit cluster clusters train and test images together; clusters.csv is in that order.
    x_all = y_all = None
    if ds is not None:
        x_all, y_all = all_images(ds), ds.all_labels()  # no copy of a prepared dataset
    clusters = conf = None
    a = run.assignments
    if a is not None and (x_all is None or len(a["index"]) == len(x_all)):
        order = _assignment_order(a["index"], run, ds)
        clusters = a["value"][order].astype(np.int64)
        conf = a["probability"][order]
    if est is not None and x_all is not None:
        # Rank by the estimator's own probabilities, as the cluster command's montage.png
        # does: clusters.csv rounds them to 6 decimals, where most members tie at 1.000000
        # and the "most confident" would be the first images of the file.
        proba = est.predict_proba(x_all)
        conf = proba.max(1)
        if clusters is None:
            clusters = proba.argmax(1)
    k = getattr(est, "n_clusters_", None) or run.metrics.get("n_clusters")
    scope = ""
    if run.config.get("metadata", {}).get("command") == "train" and clusters is not None:
        # vaekit train --model vade scores its clusters of the test images only.
        scope = (
            f" All {len(clusters)} images, training and test; the metrics score the test "
            "images' clusters only."
        )
    if clusters is not None:
        items.append(
            FigureItem(
                "cluster-sizes",
                "Cluster sizes",
                "Images per cluster; one very large cluster often swallows several kinds of "
                f"image, a tiny one may hold outliers.{scope}",
                plots.plot_cluster_sizes(clusters, n_clusters=k),
            )
        )
    if clusters is not None and x_all is not None:
        items.append(
            FigureItem(
                "cluster-montage",
                "Most confident members",
                "Each row is a cluster (its size in brackets), its most confident members "
                "from left to right; a row that mixes kinds of image is a cluster to "
                "distrust.",
                plots.plot_cluster_montage(x_all, clusters, conf, n_clusters=k),
            )
        )
    if est is not None and x_all is not None and clusters is not None:
        pick = _subsample(len(x_all), max_points, rng)
        labels = None if y_all is None else y_all[pick]
        items.append(
            _latent_item(run, est, x_all[pick], clusters[pick], labels, latent_method, seed)
        )
    if clusters is not None and y_all is not None and (y_all >= 0).any():
        known = y_all >= 0
        table, col_order = _matched_contingency(y_all[known], clusters[known], k)
        items.append(
            FigureItem(
                "classes-vs-clusters",
                "Classes vs clusters",
                "Rows: true classes (never used for clustering), columns: clusters in the "
                "order that best matches them to classes; a dark diagonal means clusters "
                f"found the classes, a split row a class spread over several clusters.{scope}",
                plots.plot_confusion_matrix(
                    table,
                    row_names=_names_for(_label_names(run), table.shape[0]),
                    col_names=[str(c) for c in col_order],
                    xlabel="cluster",
                    title="Classes vs clusters",
                ),
            )
        )
    k_sel = getattr(est, "k_selection_", None) or run.metrics.get("k_selection")
    if k_sel:
        items.append(
            FigureItem(
                "k-selection",
                "Choosing the number of clusters",
                f"{str(k_sel.get('criterion', 'score')).upper()} of a Gaussian mixture on "
                "the latent means for each K tried (lower is better); the dashed line marks "
                "the K the run chose.",
                plots.plot_k_selection(k_sel),
            )
        )
    return items


def _latent_item(
    run: RunData,
    est: Any,
    x: np.ndarray,
    clusters: np.ndarray | None,
    labels: np.ndarray | None,
    method: str,
    seed: int,
) -> FigureItem:
    """Draw the latent map of images ``x``, or note why not when there are fewer than 2."""
    if len(x) < 2:
        return FigureItem(
            "latent-map",
            "Latent map",
            f"left out: it needs at least 2 images and {len(x)} "
            f"{'is' if len(x) == 1 else 'are'} available (--max-points or the data).",
            None,
        )
    how = {"pca": "PCA (a linear projection)", "tsne": "t-SNE", "umap": "UMAP"}[method]
    where = "an image" if clusters is not None else "a held-out image"
    both = clusters is not None and labels is not None  # two panels: say which is which
    cluster_panel = "cluster (left)" if both else "cluster"
    panels = " and ".join(
        p for p, v in ((cluster_panel, clusters), ("true class", labels)) if v is not None
    )
    colour = f"; colours show the {panels}" if panels else ""
    read = (
        "; classes that form separate clumps are easy to tell apart" if labels is not None else ""
    )
    return FigureItem(
        "latent-map",
        "Latent map",
        f"Each dot is {where}'s latent mean projected to 2-D by {how}{colour}{read}.",
        plots.plot_latent_map(
            est.transform(x),
            clusters=clusters,
            labels=labels,
            class_names=_label_names(run) or None,
            method=method,
            random_state=seed,
        ),
    )


def _split_for_map(ds: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Held-out images (and labels) when there are any, else the training ones."""
    if len(ds.x_test):
        return ds.x_test, ds.y_test
    return ds.x_train, ds.y_train


def _subsample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded sample of ``min(n, size)`` of ``range(n)``."""
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _matched_contingency(
    y: np.ndarray, clusters: np.ndarray, n_clusters: int | None
) -> tuple[np.ndarray, list[int]]:
    """Class x cluster counts, columns reordered so matched clusters sit on the diagonal.

    The matching is the Hungarian one of the clustering accuracy (vaekit.metrics);
    clusters left without a class follow in index order.
    """
    from scipy.optimize import linear_sum_assignment

    n_cls = int(y.max()) + 1
    k = max(int(n_clusters or 0), int(clusters.max()) + 1)
    table = np.zeros((n_cls, k), dtype=np.int64)
    np.add.at(table, (y, clusters), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    matched = [int(c) for _, c in sorted(zip(rows, cols, strict=True))]
    order = matched + [c for c in range(k) if c not in matched]
    return table[:, order], order


def _label_names(run: RunData) -> list[str]:
    """Names of the labels of the loaded data (DATA may not be what the run recorded)."""
    if run.dataset is not None and len(run.dataset.classes):
        return [str(c) for c in run.dataset.classes]
    return run.classes


def _run_name(run: RunData) -> str:
    """Name the run by its folder, also when its path is relative (``.``)."""
    return run.path.resolve().name


def _names_for(classes: Sequence[str], n: int) -> list[str]:
    return [classes[i] if i < len(classes) else str(i) for i in range(n)]


def _class_name(classes: Sequence[str], label: Any) -> str:
    """Name of ``label``: ``classes[label]`` for an integer label in range, else the label."""
    if isinstance(label, int | np.integer) and 0 <= label < len(classes):
        return classes[int(label)]
    return str(label)


# --- HTML -------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0;color:#1d2330;background:#f6f7f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
header{background:#1d2a44;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:1.5rem}header p{margin:4px 0 0;opacity:.8;font-size:.9rem}
nav{margin:16px 0;font-size:.95rem}nav a{margin-right:14px}
section.run{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:8px 24px 20px;
margin:20px 0}
h2{margin:.6em 0 .2em;font-size:1.3rem}h3{margin:1.2em 0 .4em;font-size:1.05rem;
border-bottom:1px solid #e6e8ee;padding-bottom:3px}
table{border-collapse:collapse;font-size:.9rem;margin:4px 0}
td,th{border:1px solid #e0e3e9;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#f0f2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#667085;font-size:.88rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(320px,100%),1fr));
gap:0 28px}.card{min-width:0}
.table{max-width:100%;overflow-x:auto}
.figures{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start}
figure{margin:10px 0;padding:0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee;display:block}
@media (max-width:640px){main{padding:12px 8px 40px}section.run{padding:6px 10px 14px}
header{padding:14px 10px}figure{overflow-x:auto}figure img{max-width:none}}
figcaption{font-size:.9rem;color:#3b4352;margin-top:4px;max-width:640px}
details pre{background:#f4f5f8;padding:10px;overflow-x:auto;font-size:.8rem}
.kind{display:inline-block;font-size:.75rem;background:#e8eefc;color:#1d3f8f;
border-radius:10px;padding:1px 9px;margin-left:8px;vertical-align:middle}
"""

_KIND_TITLES = {
    "vae": "variational autoencoder",
    "clustering": "clustering",
    "classification": "classification",
}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return _fmt_float(value)
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _fmt_float(value: float) -> str:
    """Write ``value`` with 4 significant digits, plainly from 1e-4 to 1e5.

    A value below 1 in size keeps digits until it no longer reads as 1 (0.99996, not 1).
    """
    size = abs(value)
    if not math.isfinite(value):
        return str(value)
    if size == 0:
        return "0"
    if size >= 1e5:
        return f"{value:.6g}"
    if size < 1e-4:
        return f"{value:.4g}"
    decimals = max(0, 3 - math.floor(math.log10(size)))
    while size < 1 and abs(round(value, decimals)) >= 1:
        decimals += 1
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    out = ['<div class="table"><table>']  # the div scrolls a wide table on a narrow screen
    if header:
        out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(
                f'<td class="num">{_esc(_fmt(v))}</td>' if num else f"<td>{_esc(_fmt(v))}</td>"
            )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _config_html(run: RunData) -> str:
    c = run.config
    rows: list[tuple[str, Any]] = [("estimator", c.get("estimator", "?"))]
    model = c.get("model", {})
    if model.get("class"):
        rows.append(("model", model["class"]))
    if model.get("hidden_dims"):
        rows.append(("hidden layers", model["hidden_dims"]))
    params = c.get("params", {})
    rows += [(k, params[k]) for k in KEY_PARAMS if k in params]
    fitted = c.get("fitted", {})
    for key, name in (
        ("n_epochs", "epochs run"),
        ("best_epoch", "best epoch"),
        ("stopped_early", "stopped early"),
        ("fit_seconds", "training seconds"),
        ("n_clusters", "clusters found"),
    ):
        if fitted.get(key) is not None:
            rows.append((name, fitted[key]))
    rows.append(("vaekit version", c.get("vaekit_version", "?")))
    full = json.dumps(c, indent=2, sort_keys=True)
    return (
        _table(rows, ("parameter", "value"))
        + "\n<details><summary>all parameters (config.json)</summary>"
        f"<pre>{_esc(full)}</pre></details>"
    )


def _other_data(run: RunData) -> bool:
    """Whether the loaded dataset is not the one the run records (DATA named another)."""
    recorded = run.config.get("metadata", {}).get("data")
    if run.dataset is None or recorded is None:
        return False
    return not same_data(run.dataset.name, recorded)


def _clusters_every_image(run: RunData) -> bool:
    """Whether the run trained on every image of its data, the test part included.

    `vaekit cluster` (and the demo's clustering) do; `train --model vade` trains on the
    training part alone, like any other `train` run.
    """
    return run.kind == "clustering" and run_command(run.config) == "cluster"


def _data_html(run: RunData) -> str:
    meta = run.config.get("metadata", {})
    ds = run.dataset
    other = _other_data(run)
    rows: list[tuple[str, Any]] = []
    if other:  # the figures and counts below are of DATA, the metrics of the run's own data
        rows.append(("dataset shown (DATA)", ds.name))
        rows.append(("run trained on", meta.get("dataset") or meta["data"]))
    elif meta.get("dataset") or ds is not None:
        rows.append(("dataset", meta.get("dataset") or ds.name))
    if meta.get("data") and not other:
        rows.append(("source", meta["data"]))
    shape = meta.get("image_shape") or run.config.get("model", {}).get("input_shape")
    if shape:
        rows.append(("image shape (C x H x W)", " x ".join(map(str, shape))))
    sizes = {"n_train": meta.get("n_train"), "n_test": meta.get("n_test")}
    if ds is not None:
        sizes = {"n_train": len(ds.x_train), "n_test": len(ds.x_test)}
    if _clusters_every_image(run) and None not in sizes.values():
        rows.append(("images clustered (train and test parts)", sum(sizes.values())))
    else:
        for key, name in (("n_train", "training images"), ("n_test", "test images")):
            if sizes[key] is not None:
                rows.append((name, sizes[key]))
    # Other data without classes of its own has none to list (not the run's).
    classes = [str(c) for c in ds.classes] if other else _label_names(run)
    if classes:
        shown = ", ".join(classes[:MAX_LISTED_CLASSES])
        more = len(classes) - MAX_LISTED_CLASSES
        rows.append(
            (f"classes ({len(classes)})", shown + (f" and {more} more" if more > 0 else ""))
        )
    y = None if ds is None else ds.all_labels()
    if y is not None:
        counts = np.bincount(y[y >= 0], minlength=len(classes))
        rows.append(("images with a label in the data", f"{int((y >= 0).sum())} of {len(y)}"))
        if meta.get("n_labeled") is not None and not other:  # classify keeps some labels
            rows.append(
                ("labels given for training", f"{meta['n_labeled']} of {len(ds.x_train)} images")
            )
        per = ", ".join(
            f"{n}: {c}" for n, c in zip(_names_for(classes, len(counts)), counts, strict=True)
        )
        rows.append(("images per class", per))
    if not rows:
        return '<p class="muted">The run records no data description.</p>'
    note = ""
    if ds is None:
        note = (
            '<p class="muted">The data was not loaded, so figures of images and latents '
            "are left out; pass DATA to vaekit report to draw them.</p>"
        )
    return _table(rows) + note


def _metrics_html(run: RunData) -> str:
    m = run.metrics
    if not m:
        return '<p class="muted">No metrics.json in this run.</p>'
    scalars = [(k, v) for k, v in m.items() if v is None or isinstance(v, int | float)]
    parts = []
    if _other_data(run):
        parts.append(
            '<p class="muted">The run\'s own metrics (its metrics.json, scored on the data '
            "it was trained on), not scores on DATA; vaekit evaluate RUN DATA scores DATA.</p>"
        )
    meanings = dict(METRIC_DESCRIPTIONS)
    if run.config.get("metadata", {}).get("command") == "cluster":  # trained on every image
        meanings.update(n_train="images clustered (training and test parts)", n_test="none")
    parts += [
        _table(
            [(k, v, meanings.get(k, "")) for k, v in scalars],
            ("metric", "value", "meaning"),
        )
    ]
    per_class = m.get("per_class")
    if per_class:
        parts.append("<h4>Per class</h4>" + _per_class_table(per_class, run.classes))
    return "\n".join(parts)


def _per_class_table(per_class: Any, classes: Sequence[str]) -> str:
    """Tabulate ``{class: {metric: value}}`` or ``[{metric: value}, ...]`` per class."""
    if isinstance(per_class, Mapping):  # keyed by class name already (metrics.json)
        items = list(per_class.items())
    elif isinstance(per_class, Sequence):  # one row per class index
        items = [
            (classes[i] if i < len(classes) else str(i), row) for i, row in enumerate(per_class)
        ]
    else:
        return f"<p>{_esc(per_class)}</p>"
    cols: list[str] = []
    for _, row in items:
        for key in row if isinstance(row, Mapping) else ():
            if key not in cols and key not in ("class", "name"):
                cols.append(key)
    rows = []
    for key, row in items:
        name = row.get("class", row.get("name", key)) if isinstance(row, Mapping) else key
        values = [row.get(c, "") for c in cols] if isinstance(row, Mapping) else [row]
        rows.append([name, *values])
    return _table(rows, ["class", *(cols or ["value"])])


def _figures_html(items: Sequence[FigureItem], pngs: Mapping[str, bytes], anchor: str) -> str:
    if not items:
        return '<p class="muted">No figure applies to this run.</p>'
    out = []
    for item in items:
        if item.figure is None:
            out.append(f'<p class="muted"><b>{_esc(item.title)}:</b> {_esc(item.caption)}</p>')
            continue
        data = base64.b64encode(pngs[item.name]).decode("ascii")
        out.append(  # ids unique on a page of several runs: the run's anchor first
            f'<figure id="{_esc(anchor)}-{_esc(item.name)}">'
            f'<img src="data:image/png;base64,{data}" '
            f'alt="{_esc(item.title)}">'
            f"<figcaption><b>{_esc(item.title)}.</b> {_esc(item.caption)}</figcaption></figure>"
        )
    return "\n".join(out)


def render_html(
    title: str, sections: Sequence[tuple[RunData, str, Sequence[FigureItem], Mapping[str, bytes]]]
) -> str:
    """Render the page for ``sections`` of ``(run, anchor, figures, {figure name: PNG})``."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(
        f'<a href="#{_esc(anchor)}">{_esc(_run_name(run))}</a>' for run, anchor, _, _ in sections
    )
    body = []
    for run, anchor, items, pngs in sections:
        kind = _KIND_TITLES.get(run.kind, run.kind)
        body.append(
            f'<section class="run" id="{_esc(anchor)}">'
            f'<h2>{_esc(_run_name(run))}<span class="kind">{_esc(kind)}</span></h2>'
            f'<p class="muted">{_esc(run.path.resolve())}</p>'
            '<div class="cards">'
            f'<div class="card"><h3>Configuration</h3>{_config_html(run)}</div>'
            f'<div class="card"><h3>Data</h3>{_data_html(run)}</div></div>'
            f"<h3>Metrics</h3>{_metrics_html(run)}"
            f'<h3>Figures</h3><div class="figures">{_figures_html(items, pngs, anchor)}</div>'
            "</section>"
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request: the page needs no network
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<header><h1>{_esc(title)}</h1>"
        f"<p>written by vaekit {_esc(__version__)} on {now}</p></header>\n<main>"
        f"<nav>Runs: {nav}</nav>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


def _report_png(path: Path) -> bool:
    """Whether ``path`` is a figure a vaekit report wrote (so a new report may replace it)."""
    return (plots.png_software(path) or "").startswith(REPORT_SOFTWARE)


def _pass_on_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Warn again what drawing the figures warned, matplotlib's missing glyphs once only.

    Class names in a script the figures' font lacks (CJK, say) drew one warning per figure
    and character; they show as boxes in the figures, and in full in the page's tables.
    """
    glyphs = False
    said: set[tuple[type[Warning], str]] = set()  # recorded under "always": once each again
    for w in caught:
        text = str(w.message)
        if re.match(r"Glyph \d+ .* missing from font", text):
            glyphs = True
        elif (w.category, text) not in said:
            said.add((w.category, text))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if glyphs:
        warnings.warn(
            "some class names have characters the figures' font lacks: they show as boxes "
            "in the figures; the page's tables give them in full",
            stacklevel=3,
        )


def write_report(
    out: str | Path,
    runs: Sequence[RunData],
    *,
    latent_method: str = "pca",
    max_points: int = MAX_POINTS,
) -> list[Path]:
    """Write ``out`` (``report.html``) and each figure as a PNG beside it.

    Parameters
    ----------
    out : path
        The HTML file to write.
    runs : sequence of RunData
        One section each. The PNGs are named after ``out`` and, on a page of several runs,
        the run: ``report-latent-map.png``, ``report-vae-latent-map.png``; a name no other
        vaekit command writes. A file already there that no report wrote (its PNG
        ``Software`` text) is refused with a ``DataError`` before anything is written.
    latent_method : {"pca", "tsne", "umap"}, default="pca"
        Projection of the latent maps.
    max_points : int, default=3000
        Images in a latent map at most.

    Returns
    -------
    list of Path
        The files written: the PNGs, then ``out``.
    """
    if not runs:
        raise DataError("the report needs at least one run")
    plots.check_projection(latent_method)  # before any file is written
    out = Path(out)
    runs = sorted(
        runs, key=lambda r: (_KIND_ORDER.get(r.config.get("estimator"), 99), _run_name(r))
    )
    # Drawing warns once per figure and character a font lacks: said once, after.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = []  # every figure first, so that a clash is refused before anything is written
        for run in runs:
            prefix = _figure_prefix(out, run, len(runs))
            items = build_figures(run, latent_method=latent_method, max_points=max_points)
            figures.append(
                (run, items, {i.name: out.with_name(f"{prefix}{i.name}.png") for i in items})
            )
        for _, items, paths in figures:
            for item in items:
                png = paths[item.name]
                if item.figure is not None and png.exists() and not _report_png(png):
                    raise DataError(
                        f"'{png}' exists and no vaekit report wrote it; the report would replace "
                        "it with a figure: move it or choose another --out"
                    )
        written: list[Path] = []
        sections = []
        for run, items, paths in figures:
            pngs = {}
            for item in items:
                if item.figure is None:  # left out: the page says why
                    continue
                pngs[item.name] = plots.save_figure(
                    item.figure, paths[item.name], f"{REPORT_SOFTWARE} {__version__}"
                )
                written.append(paths[item.name])
            sections.append((run, f"run-{_run_name(run)}", items, pngs))
    _pass_on_warnings(caught)
    if len(runs) == 1:
        title = _run_name(runs[0])
    else:  # a demo folder: the folder that holds the runs
        title = Path(os.path.commonpath([r.path.resolve() for r in runs])).name
    atomic_write_text(out, render_html(f"vaekit report: {title}", sections))
    written.append(out)
    _remove_old_figures(out, [_figure_prefix(out, r, len(runs)) for r in runs], written)
    return written


def _figure_prefix(out: Path, run: RunData, n_runs: int) -> str:
    """Start of ``run``'s figure names: the page's, then the run's on a page of several."""
    return f"{out.stem}-{_run_name(run)}-" if n_runs > 1 else f"{out.stem}-"


def _remove_old_figures(out: Path, prefixes: Sequence[str], written: Sequence[Path]) -> None:
    """Remove the figures an earlier page at ``out`` had and this one has not.

    Those are the report PNGs (their ``Software`` text) named ``PREFIX + FIGURE_NAMES``
    beside ``out``; another page's (``report-2.html``: ``report-2-...``) never match.
    """
    keep = set(written)
    for prefix in prefixes:
        for name in FIGURE_NAMES:
            png = out.with_name(f"{prefix}{name}.png")
            if png not in keep and png.is_file() and _report_png(png):
                try:
                    png.unlink()
                except OSError:
                    pass  # left as it was: the page does not show it
