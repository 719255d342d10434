"""Pictures of a run.

Image grids (:func:`image_grid`, :func:`save_image_grid`, :func:`cluster_montage`) need only
Pillow. The figure functions (``plot_*``) draw with matplotlib's object API (no pyplot, no
global state, the Agg renderer); each returns a :class:`matplotlib.figure.Figure` and draws
into ``ax`` when one is given, so figures can be composed. Save one with
:func:`save_figure`. matplotlib is imported on first use, so ``vaekit generate`` does not
pay for it.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
from PIL import Image

from vaekit.checkpoint import atomic_write_bytes
from vaekit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Grid tiles smaller than this (pixels) are scaled up by an integer factor to be visible.
MIN_TILE_SIDE = 32
#: Resolution of saved figures; image grids are sized so one grid pixel is one PNG pixel.
FIGURE_DPI = 100
#: Members shown per cluster in a montage.
MONTAGE_PER_CLUSTER = 10
#: Curves of a training history: (history.csv column, legend entry). The loop writes them
#: in nats per image (vaekit.training.loop); ``val_*`` exist when a validation split is held.
HISTORY_CURVES = (
    ("loss", "total loss"),
    ("reconstruction", "reconstruction"),
    ("kl", "KL"),
    ("val_loss", "validation loss"),
)
#: Training curves get a marker per epoch up to this many epochs.
MARKED_EPOCHS = 15
#: Two-dimensional projections of latents offered by :func:`project_2d`.
PROJECTIONS = ("pca", "tsne", "umap")
#: Axis names and titles of each projection.
_PROJECTION_AXES = {"pca": "PC", "tsne": "t-SNE", "umap": "UMAP"}
_PROJECTION_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
#: Count annotations are written into confusion-matrix cells up to this many rows/columns.
MAX_ANNOTATED_CELLS = 20
#: Label value of an image without a class (vaekit.data.dataset.UNLABELED).
UNLABELED = -1
#: Tick labels longer than this many characters are shortened with an ellipsis.
MAX_LABEL_CHARS = 24

_P = ParamSpec("_P")
_R = TypeVar("_R")


# --- image grids (Pillow only) --------------------------------------------------------------
def image_grid(images: np.ndarray, *, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` in [0, 1] (or uint8) into one uint8 ``(H', W', C)`` array.

    Small tiles are scaled up (nearest neighbour) so that each is at least
    ``MIN_TILE_SIDE`` pixels on its shorter side.
    """
    imgs = np.asarray(images)
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    if imgs.dtype != np.uint8:
        imgs = (np.clip(imgs, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    n, c, h, w = imgs.shape
    scale = max(1, math.ceil(MIN_TILE_SIDE / min(h, w)))
    if scale > 1:
        imgs = imgs.repeat(scale, axis=2).repeat(scale, axis=3)
        h, w = h * scale, w * scale
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = imgs[i].transpose(1, 2, 0)
    return grid


def save_image_grid(
    path: str | os.PathLike, images: np.ndarray, *, ncols: int | None = None
) -> None:
    """Write :func:`image_grid` of ``images`` as a PNG file, atomically."""
    grid = image_grid(images, ncols=ncols)
    pil = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def montage_rows(
    images: np.ndarray,
    clusters: np.ndarray,
    confidence: np.ndarray,
    *,
    per_cluster: int = MONTAGE_PER_CLUSTER,
    n_clusters: int | None = None,
) -> np.ndarray:
    """Pick the most confident members of each cluster, best first: ``(K, M, C, H, W)``.

    Rows of clusters with fewer members are padded with blank (white) tiles.
    """
    images, clusters = np.asarray(images), np.asarray(clusters)
    if images.ndim == 3:
        images = images[:, None]
    confidence = np.asarray(confidence)
    k = int(clusters.max()) + 1 if n_clusters is None else int(n_clusters)
    blank = np.full_like(images[:1], 255 if images.dtype == np.uint8 else 1)
    rows = []
    for c in range(k):
        idx = np.flatnonzero(clusters == c)
        idx = idx[np.argsort(-confidence[idx], kind="stable")][:per_cluster]
        rows.append(np.concatenate([images[idx], *([blank] * (per_cluster - len(idx)))]))
    return np.stack(rows)


def cluster_montage(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    *,
    per_cluster: int = MONTAGE_PER_CLUSTER,
) -> None:
    """Write a PNG with one row per cluster: its most confident members, best first.

    Rows of clusters with fewer members are padded with blank tiles.
    """
    rows = montage_rows(images, labels, confidence, per_cluster=per_cluster)
    save_image_grid(path, rows.reshape(-1, *rows.shape[2:]), ncols=per_cluster)


# --- matplotlib figures -----------------------------------------------------------------------
def _plain_text(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``draw`` with mathtext off, so user text (class names with ``$``) stays text.

    A Text reads ``text.parse_math`` when it is made: this covers the texts ``draw`` makes,
    and :func:`figure_png` covers the tick labels matplotlib makes while saving.
    """

    @functools.wraps(draw)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper


def _text_inches(texts: Sequence[str]) -> float:
    """Width in inches of the widest of ``texts`` at the tick label size (0 for none)."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(size=matplotlib.rcParams["ytick.labelsize"])
    widths = [text_to_path.get_text_width_height_descent(t, prop, ismath=False)[0] for t in texts]
    return max(widths, default=0.0) / 72.0  # points to inches


def short_labels(names: Sequence[str], max_chars: int = MAX_LABEL_CHARS) -> list[str]:
    """``names`` cut to ``max_chars`` with an ellipsis in the middle, still all different.

    When cutting makes two names equal, the cut ones are numbered by position (``"3: ..."``).
    """
    head = (max_chars - 1) * 2 // 3  # the start of a name tells most, the end tells versions
    tail = max_chars - 1 - head
    short = [n if len(n) <= max_chars else f"{n[:head]}…{n[len(n) - tail :]}" for n in names]
    if len(set(short)) < len(short):
        short = [
            s if s == n else f"{i}: {s}" for i, (s, n) in enumerate(zip(short, names, strict=True))
        ]
    return short


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new one-panel figure of ``figsize`` inches."""
    if ax is not None:
        return ax.get_figure(root=True), ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=FIGURE_DPI, layout="constrained")
    return fig, fig.add_subplot()


def figure_png(fig: Figure, software: str | None = None) -> bytes:
    """Render the figure as PNG bytes (Agg, :data:`FIGURE_DPI`).

    The PNG is cropped or grown to what is drawn (a tight bounding box), so no label is
    cut off where the layout engine could not make room (axes of fixed aspect).
    ``software``, when given, is the PNG's ``Software`` text (matplotlib's otherwise).
    """
    import matplotlib

    buf = io.BytesIO()
    metadata = {"Software": software} if software else None
    with matplotlib.rc_context({"text.parse_math": False}):  # see _plain_text
        fig.savefig(
            buf,
            format="png",
            dpi=FIGURE_DPI,
            bbox_inches="tight",
            pad_inches=0.05,
            metadata=metadata,
        )
    return buf.getvalue()


def png_software(path: str | os.PathLike) -> str | None:
    """Return the ``Software`` text of the PNG file ``path`` (None: absent, or not a PNG)."""
    try:
        with Image.open(path) as im:
            return im.text.get("Software") if im.format == "PNG" else None
    except (OSError, ValueError, SyntaxError):
        return None


def save_figure(fig: Figure, path: str | os.PathLike, software: str | None = None) -> bytes:
    """Write the figure as a PNG file, atomically; returns the PNG bytes."""
    data = figure_png(fig, software)
    atomic_write_bytes(path, data)
    return data


def _category_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinguishable colours: tab10/tab20 while they last, then an even sweep."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / max(1, n - 1)) for i in range(n)]


def _grid_figsize(grid: np.ndarray, extra: tuple[float, float]) -> tuple[float, float]:
    """Inches that show a grid ``(H, W, C)`` at one PNG pixel per grid pixel, plus ``extra``."""
    h, w = grid.shape[:2]
    return (w / FIGURE_DPI + extra[0], h / FIGURE_DPI + extra[1])


def _show_grid(ax: Axes, grid: np.ndarray) -> None:
    """Draw an image grid ``(H, W, C)`` pixel-exact, with no ticks or frame."""
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


@_plain_text
def plot_training_curves(
    history: Sequence[Mapping[str, float]], *, ax: Axes | None = None
) -> Figure:
    """Loss per epoch: total, reconstruction and KL on the training data, and validation.

    A classifier's history (it has a ``classification`` column) also gets the curve of its
    other terms, weighted as in the total: ``loss - reconstruction - kl_weight * kl``, most
    of the total when the labels weigh much.

    Parameters
    ----------
    history : sequence of mappings
        One row per epoch with the columns of ``history.csv`` (``loss``, ``reconstruction``,
        ``kl``, optional ``kl_weight``, ``val_loss``), e.g. an estimator's ``history_``. Rows
        of several training phases (VaDE's pre-training, then its mixture phase) are drawn
        in order.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if len(history) == 0:
        raise ValueError("history is empty: there is no epoch to plot")
    fig, ax = _axes(ax, (6.4, 3.8))
    epochs = np.arange(1, len(history) + 1)
    # A point per epoch while there are few: a run of one epoch has no line to draw.
    marker = "o" if len(history) <= MARKED_EPOCHS else None
    for key, name in HISTORY_CURVES:
        values = [row.get(key, math.nan) for row in history]
        if np.isfinite(values).any():
            style = "--" if key.startswith("val_") else "-"
            ax.plot(epochs, values, style, marker=marker, markersize=4, label=name)
    if any("classification" in row for row in history):
        other = [
            row.get("loss", math.nan)
            - row.get("reconstruction", math.nan)
            - row.get("kl_weight", 1.0) * row.get("kl", math.nan)
            for row in history
        ]
        ax.plot(
            epochs, other, ":", marker=marker, markersize=4, label="classifier's terms, weighted"
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(history) == 1:  # else the axis spans 0.95-1.05 with fractional ticks
        ax.set_xlim(0.5, 1.5)
        ax.set_xticks([1])
    ax.set_title("Training curves")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@_plain_text
def plot_reconstructions(
    images: np.ndarray,
    reconstructions: np.ndarray,
    *,
    pairs_per_row: int = 8,
    ax: Axes | None = None,
) -> Figure:
    """Show inputs next to their reconstructions (odd columns input, even reconstruction).

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W) or (N, H, W)
        Inputs, uint8 0-255 or float in [0, 1].
    reconstructions : ndarray, same shape as ``images``
        Their reconstructions (float in [0, 1]).
    pairs_per_row : int, default=8
        Input/reconstruction pairs per grid row.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure sized to the grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _as_float_images(images)
    r = _as_float_images(reconstructions)
    if x.shape != r.shape:
        raise ValueError(f"images {x.shape} and reconstructions {r.shape} must have one shape")
    pairs = np.stack([x, r], axis=1).reshape(2 * len(x), *x.shape[1:])  # input, recon, ...
    grid = image_grid(pairs, ncols=2 * min(pairs_per_row, len(x)))
    fig, ax = _axes(ax, _grid_figsize(grid, (0.3, 0.5)))
    _show_grid(ax, grid)
    ax.set_title("Inputs and reconstructions")
    return fig


def _as_float_images(images: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` float images in [0, 1] from uint8 or float, 3-D or 4-D input."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    return x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


@_plain_text
def plot_samples(
    samples: np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Show generated images in a grid; one labelled row per group for 5-D input.

    Parameters
    ----------
    samples : ndarray
        ``(N, C, H, W)`` (or ``(N, H, W)``) images in a square-ish grid, or
        ``(R, M, C, H, W)``: ``R`` rows (e.g. one per cluster) of ``M`` images each.
    row_labels : sequence of str, optional
        Names of the ``R`` rows (e.g. ``"cluster 3"``), shown on the left (long ones
        shortened, see :func:`short_labels`); the figure is widened to fit them.
    title : str, optional
        Default: "Samples per cluster" for rows, else "Samples from the prior".
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure sized to the grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    s = np.asarray(samples)
    by_row = s.ndim == 5
    labels = None
    if by_row:
        n_rows, per_row = s.shape[:2]
        grid = image_grid(s.reshape(-1, *s.shape[2:]), ncols=per_row)
        if row_labels is not None:
            if len(row_labels) != n_rows:
                raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows")
            labels = short_labels([str(r) for r in row_labels])
    else:
        grid = image_grid(s)
    # Room for the row labels, measured: constrained layout cannot shrink a pixel-exact grid.
    label_width = _text_inches(labels) + 0.2 if labels else 0.0
    fig, ax = _axes(ax, _grid_figsize(grid, (0.3 + label_width, 0.5)))
    _show_grid(ax, grid)
    if labels is not None:
        step = grid.shape[0] / n_rows
        ax.set_yticks((np.arange(n_rows) + 0.5) * step, labels=labels)
        ax.tick_params(axis="y", length=0)
    ax.set_title(title or ("Samples per cluster" if by_row else "Samples from the prior"))
    return fig


def check_projection(method: str) -> None:
    """Raise ConfigError unless :func:`project_2d` can run ``method`` here.

    Lets a caller fail before it writes anything, e.g. on "umap" without ``umap-learn``.
    """
    if method not in PROJECTIONS:
        raise ConfigError(f"the latent map method must be one of {PROJECTIONS}, got {method!r}")
    if method == "umap":
        import importlib.util

        if importlib.util.find_spec("umap") is None:
            raise ConfigError(
                "the UMAP latent map needs the umap-learn package (pip install 'vaekit[umap]'); "
                "or choose pca or tsne"
            )


def project_2d(z: np.ndarray, method: str = "pca", *, random_state: int = 0) -> np.ndarray:
    """Project latents ``(N, D)`` to ``(N, 2)`` for plotting.

    Parameters
    ----------
    z : ndarray, shape (N, D)
        Latent codes (posterior means).
    method : {"pca", "tsne", "umap"}, default="pca"
        PCA (linear, fast, the default); t-SNE (scikit-learn; slower, keeps neighbourhoods,
        distances between clumps mean little); UMAP (needs the ``umap-learn`` package).
    random_state : int, default=0
        Seed of t-SNE and UMAP.

    Returns
    -------
    ndarray, shape (N, 2)
        Coordinates; a 1-D latent gets a zero second coordinate, and latents that are all
        the same (no spread to project) all get ``(0, 0)``.

    Raises
    ------
    ConfigError
        For an unknown method, or "umap" without ``umap-learn`` installed.
    """
    check_projection(method)
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"expected latents of shape (N >= 2, D), got {z.shape}")
    if not np.ptp(z, axis=0).any():  # PCA would divide by zero and t-SNE crash on it
        return np.zeros((len(z), 2))
    if z.shape[1] < 2:
        return np.hstack([z, np.zeros((len(z), 2 - z.shape[1]))])
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(z) - 1) / 3)  # t-SNE needs perplexity < N
        return TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=random_state
        ).fit_transform(z)
    import warnings

    import umap

    with warnings.catch_warnings():  # a seed makes UMAP single-threaded, and it says so
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return umap.UMAP(n_components=2, random_state=random_state).fit_transform(z)


@_plain_text
def plot_latent_map(
    z: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    method: str = "pca",
    random_state: int = 0,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Latent codes projected to 2-D; one panel coloured by cluster, one by class.

    Parameters
    ----------
    z : ndarray, shape (N, D)
        Latent codes; projected with :func:`project_2d` unless ``D == 2``.
    clusters : ndarray of int, shape (N,), optional
        Cluster of each point: a panel coloured by cluster, legend "cluster k".
    labels : ndarray of int, shape (N,), optional
        Class of each point (``-1``: unlabeled, drawn grey): a panel coloured by class,
        legend of ``class_names``.
    class_names : sequence of str, optional
        ``class_names[k]`` names label ``k``; default: the label numbers.
    method : {"pca", "tsne", "umap"}, default="pca"
        Projection (see :func:`project_2d`).
    random_state : int, default=0
        Seed of the projection.
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per panel (clusters first); default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    z = np.asarray(z)
    xy = (
        z.astype(np.float64)
        if z.ndim == 2 and z.shape[1] == 2
        else project_2d(z, method, random_state=random_state)
    )
    axis_name = "latent" if z.shape[1] == 2 else _PROJECTION_AXES[method]
    how = "" if z.shape[1] == 2 else f" ({_PROJECTION_NAMES[method]})"
    panels: list[tuple[str, np.ndarray | None, list[str]]] = []
    if clusters is not None:
        clusters = np.asarray(clusters)
        k = int(clusters.max()) + 1 if len(clusters) else 0
        panels.append(("cluster", clusters, [f"cluster {c}" for c in range(k)]))
    if labels is not None:
        labels = np.asarray(labels)
        n_cls = max(len(class_names or ()), int(labels.max()) + 1 if len(labels) else 0)
        names = [str(c) for c in class_names] if class_names else []
        names += [str(c) for c in range(len(names), n_cls)]
        panels.append(("class", labels, names))
    if not panels:
        panels.append(("", None, []))
    for values in (clusters, labels):
        if values is not None and len(values) != len(xy):
            raise ValueError(f"{len(values)} colours for {len(xy)} points")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.2 * len(panels), 4.4), dpi=FIGURE_DPI, layout="constrained")
        axes = list(fig.subplots(1, len(panels), squeeze=False)[0])
    else:
        axes = [ax] if not isinstance(ax, Sequence | np.ndarray) else list(ax)
        if len(axes) != len(panels):
            raise ValueError(f"{len(panels)} panels to draw but {len(axes)} axes given")
        fig = axes[0].get_figure(root=True)
    size = max(5.0, min(12.0, 4000.0 / len(xy)))  # marker area: smaller for more points
    for a, (what, values, names) in zip(axes, panels, strict=True):
        if values is None:
            a.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.7, linewidths=0)
            a.set_title(f"Latent space{how}")
        else:
            _scatter_categories(a, xy, values, names, size)
            a.set_title(f"Latent space{how} by {what}")
        a.set_xlabel(f"{axis_name} 1")
        a.set_ylabel(f"{axis_name} 2")
        a.set_xticks([])
        a.set_yticks([])
    return fig


def _scatter_categories(
    ax: Axes, xy: np.ndarray, values: np.ndarray, names: Sequence[str], size: float
) -> None:
    """Scatter ``xy`` coloured by category ``values`` with a legend of ``names`` (shortened)."""
    names = short_labels(names)
    colors = _category_colors(len(names))
    unlabeled = values == UNLABELED
    if unlabeled.any():
        ax.scatter(*xy[unlabeled].T, s=size, c="lightgrey", linewidths=0, label="unlabeled")
    for k, name in enumerate(names):
        mask = values == k
        if mask.any():
            ax.scatter(*xy[mask].T, s=size, color=colors[k], alpha=0.8, linewidths=0, label=name)
    ax.legend(
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize="small",
        markerscale=max(1.0, 30.0 / size) ** 0.5,
        ncols=max(1, math.ceil(len(names) / 20)),
        frameon=False,
    )


@_plain_text
def plot_confusion_matrix(
    matrix: np.ndarray | Sequence[Sequence[int]],
    *,
    row_names: Sequence[str] | None = None,
    col_names: Sequence[str] | None = None,
    xlabel: str = "predicted class",
    ylabel: str = "true class",
    title: str = "Confusion matrix",
    ax: Axes | None = None,
) -> Figure:
    """Draw a count matrix as a heat map, shaded by each row's share, counts in the cells.

    Parameters
    ----------
    matrix : array-like of int, shape (R, C)
        ``matrix[i, j]``: images of true class ``i`` given ``j`` (a class, or a cluster).
    row_names, col_names : sequence of str, optional
        Tick labels (long ones shortened, see :func:`short_labels`); default: the indices.
        ``col_names`` defaults to ``row_names`` when the matrix is square.
    xlabel, ylabel, title : str
        Axis labels and title.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a non-empty 2-D matrix, got shape {m.shape}")
    n_rows, n_cols = m.shape
    if row_names is None:
        row_names = range(n_rows)
    if col_names is None:
        col_names = row_names if n_rows == n_cols else range(n_cols)
    rows = short_labels([str(n) for n in row_names])
    cols = short_labels([str(n) for n in col_names])
    side = 1.6 + 0.42 * max(n_rows, n_cols)
    # Room for the tick labels: row names on the left, column names at 45 degrees below.
    fig, ax = _axes(ax, (side + 1.2 + _text_inches(rows), side + 0.71 * _text_inches(cols)))
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)  # row-normalised: recall
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="share of the row")
    ax.set_xticks(range(n_cols), labels=cols, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n_rows), labels=rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if max(n_rows, n_cols) <= MAX_ANNOTATED_CELLS:
        for i in range(n_rows):
            for j in range(n_cols):
                if m[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.0f}",
                        ha="center",
                        va="center",
                        color=color,
                        fontsize="small",
                    )
    return fig


@_plain_text
def plot_cluster_montage(
    images: np.ndarray,
    clusters: np.ndarray,
    confidence: np.ndarray,
    *,
    per_cluster: int = MONTAGE_PER_CLUSTER,
    n_clusters: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """One row per cluster: its most confident members, best first (see :func:`montage_rows`).

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W) or (N, H, W)
        The clustered images.
    clusters : ndarray of int, shape (N,)
        Cluster of each image.
    confidence : ndarray, shape (N,)
        Membership probability of each image in its cluster.
    per_cluster : int, default=10
        Images per row.
    n_clusters : int, optional
        Rows to draw (default: the largest cluster index + 1; empty clusters get blank rows).
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure sized to the grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    clusters = np.asarray(clusters)
    rows = montage_rows(
        images, clusters, confidence, per_cluster=per_cluster, n_clusters=n_clusters
    )
    counts = np.bincount(clusters, minlength=len(rows))
    labels = [f"cluster {c} ({counts[c]})" for c in range(len(rows))]
    return plot_samples(rows, row_labels=labels, title="Most confident members", ax=ax)


@_plain_text
def plot_cluster_sizes(
    clusters: np.ndarray, *, n_clusters: int | None = None, ax: Axes | None = None
) -> Figure:
    """Bar chart of the number of images in each cluster.

    Parameters
    ----------
    clusters : ndarray of int, shape (N,)
        Cluster of each image.
    n_clusters : int, optional
        Bars to draw (default: the largest cluster index + 1; empty clusters show 0).
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    clusters = np.asarray(clusters)
    counts = np.bincount(clusters, minlength=n_clusters or 0)
    fig, ax = _axes(ax, (max(4.0, 1.2 + 0.45 * len(counts)), 3.2))
    bars = ax.bar(np.arange(len(counts)), counts, color=_category_colors(len(counts)))
    ax.bar_label(bars, fontsize="small")
    ax.set_xticks(np.arange(len(counts)))
    ax.set_title("Cluster sizes")
    ax.set_xlabel("cluster")
    ax.set_ylabel("images")
    ax.margins(y=0.12)
    return fig


@_plain_text
def plot_k_selection(k_selection: Mapping[str, Any] | None, *, ax: Axes | None = None) -> Figure:
    """Plot the model-selection score of each tried K, with the chosen K marked.

    Parameters
    ----------
    k_selection : mapping
        ``{"criterion": "bic", "k": [...], "score": [...], "chosen": K}``, as
        ``VAEClustering.k_selection_`` and ``metrics.json``'s ``k_selection``; lower is
        better. Without ``"chosen"``, the K of the lowest score is marked.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if k_selection is None:  # VAEClustering.k_selection_ after a fit with a fixed K
        raise ValueError(
            "k_selection is None: the model was fitted with a fixed n_clusters, so no K was "
            "chosen; fit with n_clusters='auto' to plot the criterion of each K"
        )
    ks = np.asarray(k_selection["k"])
    scores = np.asarray(k_selection["score"], dtype=np.float64)
    if len(ks) == 0 or len(ks) != len(scores):
        raise ValueError(
            f"k_selection needs equal, non-empty 'k' and 'score', got {len(ks)}, {len(scores)}"
        )
    chosen = k_selection.get("chosen", ks[int(np.argmin(scores))])
    criterion = str(k_selection.get("criterion", "score")).upper()
    fig, ax = _axes(ax, (5.6, 3.4))
    ax.plot(ks, scores, "o-", label=criterion)
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen K = {chosen}")
    ax.set_xticks(ks)
    ax.set_title("Choosing the number of clusters")
    ax.set_xlabel("number of clusters K")
    ax.set_ylabel(f"{criterion} (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
