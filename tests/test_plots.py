"""Figure functions of vaekit.plots on tiny data: axes, titles, legend entries, PNG output."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from threadpoolctl import threadpool_limits

from vaekit import plots
from vaekit.errors import ConfigError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (12, 1, 8, 8), dtype=np.uint8)


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, "the axes has no legend"
    return [t.get_text() for t in legend.get_texts()]


def test_training_curves_draws_the_four_losses() -> None:
    history = [
        {"epoch": e, "loss": 30 - e, "reconstruction": 25 - e, "kl": 5.0, "val_loss": 31 - e}
        for e in range(1, 6)
    ]
    fig = plots.plot_training_curves(history)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "Training curves"
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "nats per image"
    assert legend_texts(ax) == ["total loss", "reconstruction", "KL", "validation loss"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3, 4, 5]


def test_a_classifiers_curves_show_its_weighted_terms() -> None:
    """Before, a classifier's total (360) was drawn beside parts that summed to 41 (a review)."""
    parts = ("loss", "reconstruction", "kl", "kl_weight", "classification")
    history = [
        dict(zip(parts, (359.6, 41.1, 0.07, 1.0, 2.25), strict=True)),
        dict(zip(parts, (200.0, 35.0, 0.5, 0.5, 1.0), strict=True)),
    ]
    ax = plots.plot_training_curves(history).axes[0]
    names = ["total loss", "reconstruction", "KL", "classifier's terms, weighted"]
    assert legend_texts(ax) == names
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [359.6 - 41.1 - 0.07, 200 - 35 - 0.25])


def test_training_curves_without_validation_and_into_given_axes() -> None:
    host = Figure()
    ax = host.add_subplot()
    fig = plots.plot_training_curves([{"loss": 2.0, "reconstruction": 1.5, "kl": 0.5}], ax=ax)
    assert fig is host
    assert legend_texts(ax) == ["total loss", "reconstruction", "KL"]
    # One epoch: a point each, on a whole-number axis (before: an empty plot; a review).
    assert all(line.get_marker() == "o" for line in ax.lines)
    assert [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]
    with pytest.raises(ValueError, match="empty"):
        plots.plot_training_curves([])


def test_reconstructions_grid_interleaves_pairs() -> None:
    fig = plots.plot_reconstructions(IMAGES[:4], IMAGES[:4] / 255.0, pairs_per_row=2)
    (ax,) = fig.axes
    assert ax.get_title() == "Inputs and reconstructions"
    grid = ax.images[0].get_array()
    tile = plots.MIN_TILE_SIDE + 2  # scaled 8x8 tile plus padding
    assert grid.shape == (2 * tile + 2, 4 * tile + 2)  # 2 rows of 2 pairs
    with pytest.raises(ValueError, match="one shape"):
        plots.plot_reconstructions(IMAGES[:4], IMAGES[:3])


def test_samples_flat_grid_and_rows_with_labels() -> None:
    fig = plots.plot_samples(IMAGES)
    assert fig.axes[0].get_title() == "Samples from the prior"
    rows = IMAGES.reshape(3, 4, 1, 8, 8)
    fig = plots.plot_samples(rows, row_labels=["cluster 0", "cluster 1", "cluster 2"])
    ax = fig.axes[0]
    assert ax.get_title() == "Samples per cluster"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cluster 0", "cluster 1", "cluster 2"]
    with pytest.raises(ValueError, match="row labels"):
        plots.plot_samples(rows, row_labels=["a"])


def test_rgb_images_are_shown_in_colour() -> None:
    rgb = RNG.random((4, 3, 6, 6))
    fig = plots.plot_samples(rgb)
    assert fig.axes[0].images[0].get_array().shape[2] == 3


def test_latent_map_panels_by_cluster_and_class_with_class_names() -> None:
    z = RNG.normal(size=(40, 5))
    clusters = np.arange(40) % 3
    labels = np.where(np.arange(40) < 4, -1, np.arange(40) % 2)
    fig = plots.plot_latent_map(z, clusters=clusters, labels=labels, class_names=["cat", "dog"])
    by_cluster, by_class = fig.axes
    assert by_cluster.get_title() == "Latent space (PCA) by cluster"
    assert by_class.get_title() == "Latent space (PCA) by class"
    assert by_cluster.get_xlabel() == "PC 1"
    assert legend_texts(by_cluster) == ["cluster 0", "cluster 1", "cluster 2"]
    assert legend_texts(by_class) == ["unlabeled", "cat", "dog"]
    offsets = np.concatenate([c.get_offsets() for c in by_class.collections])
    assert len(offsets) == 40  # every point drawn once per panel


def test_latent_map_one_panel_into_given_axes_and_tsne() -> None:
    host = Figure()
    ax = host.add_subplot()
    z = RNG.normal(size=(30, 4))
    with threadpool_limits(1):  # OpenMP barriers of t-SNE crawl on a busy 2-core machine
        fig = plots.plot_latent_map(z, labels=np.arange(30) % 3, method="tsne", ax=ax)
    assert fig is host and len(host.axes) == 1
    assert ax.get_title() == "Latent space (t-SNE) by class"
    assert legend_texts(ax) == ["0", "1", "2"]  # no names given: the label numbers
    with pytest.raises(ValueError, match="2 panels"):
        plots.plot_latent_map(z, clusters=np.zeros(30, int), labels=np.zeros(30, int), ax=ax)


def test_latent_map_of_two_and_one_dimensional_latents() -> None:
    fig = plots.plot_latent_map(RNG.normal(size=(10, 2)))
    assert fig.axes[0].get_title() == "Latent space" and fig.axes[0].get_xlabel() == "latent 1"
    assert plots.project_2d(RNG.normal(size=(10, 1))).shape == (10, 2)


def test_projection_choices_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="one of"):
        plots.project_2d(RNG.normal(size=(10, 3)), "lda")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(  # as where umap-learn is not installed
        importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a)
    )
    with pytest.raises(ConfigError, match="umap-learn"):
        plots.project_2d(RNG.normal(size=(10, 3)), "umap")


def test_confusion_matrix_names_counts_and_labels() -> None:
    fig = plots.plot_confusion_matrix([[5, 1], [0, 7]], row_names=["cat", "dog"])
    ax = fig.axes[0]  # the second axes is the colour bar
    assert ax.get_title() == "Confusion matrix"
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog"]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "5", "7"]  # zero cells stay empty
    assert len(fig.axes) == 2


def test_rectangular_matrix_for_clusters() -> None:
    fig = plots.plot_confusion_matrix(
        np.ones((2, 3)), row_names=["a", "b"], xlabel="cluster", title="Classes vs clusters"
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert ax.get_xlabel() == "cluster"


def test_cluster_montage_rows_are_the_most_confident_members() -> None:
    clusters = np.array([0, 0, 0, 1, 1, 2])
    conf = np.array([0.2, 0.9, 0.5, 0.3, 0.8, 1.0])
    rows = plots.montage_rows(IMAGES[:6], clusters, conf, per_cluster=2, n_clusters=4)
    assert rows.shape == (4, 2, 1, 8, 8)
    assert (rows[0, 0] == IMAGES[1]).all() and (rows[0, 1] == IMAGES[2]).all()
    assert (rows[2, 1] == 255).all() and (rows[3] == 255).all()  # padding is blank
    fig = plots.plot_cluster_montage(IMAGES[:6], clusters, conf, per_cluster=2)
    ax = fig.axes[0]
    assert ax.get_title() == "Most confident members"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["cluster 0 (3)", "cluster 1 (2)", "cluster 2 (1)"]


def test_cluster_montage_png_keeps_working(tmp_path) -> None:
    clusters = np.arange(12) % 3
    plots.cluster_montage(tmp_path / "m.png", IMAGES, clusters, RNG.random(12), per_cluster=4)
    assert Image.open(tmp_path / "m.png").size[0] == 4 * (plots.MIN_TILE_SIDE + 2) + 2


def test_cluster_sizes_bars() -> None:
    fig = plots.plot_cluster_sizes(np.array([0, 0, 2, 2, 2]), n_clusters=4)
    ax = fig.axes[0]
    assert ax.get_title() == "Cluster sizes"
    assert [p.get_height() for p in ax.patches] == [2, 0, 3, 0]
    assert ax.get_xlabel() == "cluster" and ax.get_ylabel() == "images"


def test_k_selection_marks_the_chosen_k() -> None:
    sel = {"criterion": "bic", "k": [2, 3, 4], "score": [10.0, 5.0, 7.0], "chosen": 3}
    fig = plots.plot_k_selection(sel)
    ax = fig.axes[0]
    assert ax.get_title() == "Choosing the number of clusters"
    assert ax.get_ylabel() == "BIC (lower is better)"
    assert legend_texts(ax) == ["BIC", "chosen K = 3"]
    fig = plots.plot_k_selection({"k": [2, 3], "score": [1.0, 0.5]})
    assert legend_texts(fig.axes[0])[-1] == "chosen K = 3"
    with pytest.raises(ValueError, match="n_clusters='auto'"):  # before: a bare TypeError
        plots.plot_k_selection(None)  # k_selection_ of a fit with a fixed K


def test_save_figure_writes_a_png(tmp_path) -> None:
    data = plots.save_figure(plots.plot_cluster_sizes(np.array([0, 1, 1])), tmp_path / "s.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "s.png").read_bytes() == data
    assert not list(tmp_path.glob(".*.tmp"))


def test_user_text_with_dollars_is_plain_text() -> None:
    names = ["$\\frac$", "$x^2$", "cost $5"]  # mathtext: a ValueError, or a formula
    figures = [
        plots.plot_confusion_matrix(np.eye(3), row_names=names),
        plots.plot_samples(IMAGES[:6].reshape(3, 2, 1, 8, 8), row_labels=names, title="$a$"),
        plots.plot_latent_map(RNG.normal(size=(9, 3)), labels=np.arange(9) % 3, class_names=names),
    ]
    for fig in figures:
        assert plots.figure_png(fig)[:4] == b"\x89PNG"  # drawing is where mathtext fails
        texts = [t for ax in fig.axes for t in (*ax.get_yticklabels(), ax.title)]
        legend = fig.axes[0].get_legend()
        texts += legend.get_texts() if legend else []
        assert {t.get_text() for t in texts} >= set(names[:2])
        assert not any(t.get_parse_math() for t in texts if "$" in t.get_text())


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_latents_without_spread_project_to_the_origin(method: str) -> None:
    xy = plots.project_2d(np.ones((10, 16)), method)  # t-SNE crashed the interpreter on it
    assert (xy == 0).all() and xy.shape == (10, 2)


def test_row_labels_fit_in_the_figure() -> None:
    names = ["cluster 0 (227)", "a rather long class name", "x" * 80]
    fig = plots.plot_samples(IMAGES[:6].reshape(3, 2, 1, 8, 8), row_labels=names)
    png = Image.open(io.BytesIO(plots.figure_png(fig)))
    drawn = fig.get_tightbbox()  # inches: all that is drawn, also what sticks out
    assert png.size[0] >= drawn.width * plots.FIGURE_DPI  # so no label is cut off
    assert png.size[1] >= drawn.height * plots.FIGURE_DPI
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:2] == names[:2] and len(labels[2]) == plots.MAX_LABEL_CHARS


def test_long_class_names_are_shortened_and_stay_apart() -> None:
    names = [f"a very long class name that goes on and on, number {i}" + "!" * 30 for i in range(3)]
    short = plots.short_labels(names)
    assert len(set(short)) == 3 and all(len(s) <= plots.MAX_LABEL_CHARS + 3 for s in short)
    assert short[1].startswith("1: a very long") and "…" in short[1]
    assert plots.short_labels(["cat", "dog"]) == ["cat", "dog"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied ..." before
        fig = plots.plot_confusion_matrix(np.eye(3), row_names=names)
        plots.figure_png(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == short
    assert [t.get_text() for t in ax.get_xticklabels()] == short
