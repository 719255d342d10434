"""report.html: self-contained, with the sections and figures that apply to each kind of run."""

from __future__ import annotations

import base64
import json
import shutil
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from vaekit import VAE, VAEClustering, checkpoint, load_dataset, plots, report
from vaekit._version import __version__
from vaekit.data import Dataset
from vaekit.errors import CheckpointError
from vaekit.metrics import generative_metrics

TINY = {"latent_dim": 3, "hidden_dims": (16,), "max_epochs": 2, "random_state": 0}
SECTIONS = ["Configuration", "Data", "Metrics", "Figures"]


class Page(HTMLParser):
    """Headings, image sources, and every URL-bearing attribute of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self._heading: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v is not None]
        if tag in ("h1", "h2", "h3", "h4"):
            self._heading = ""
            self.headings.append((tag, ""))

    def handle_data(self, data):
        if self._heading is not None:
            tag, text = self.headings[-1]
            self.headings[-1] = (tag, text + data)

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3", "h4"):
            self._heading = None

    def h3(self) -> list[str]:
        return [t for tag, t in self.headings if tag == "h3"]


def assert_self_contained(html_text: str, folder: Path, names: list[str]) -> Page:
    """Every image inlined and equal to its PNG file; no external resource of any kind."""
    page = Page(html_text)
    assert not {"script", "iframe", "object", "embed"} & page.tags
    for url in page.urls:
        assert url.startswith(("data:", "#")), url
    assert "http://" not in html_text and "https://" not in html_text
    assert "@import" not in html_text and "url(" not in html_text
    assert len(page.images) == len(names)
    for src, name in zip(page.images, names, strict=True):
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png == (folder / f"{name}.png").read_bytes()
    return page


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, digits) -> Path:
    path = tmp_path_factory.mktemp("vae") / "run"
    vae = VAE(**TINY).fit(
        digits.x_train,
        run_dir=path,
        metadata={"data": "digits", "dataset": "digits", "classes": list(digits.classes)},
    )
    vae.save(path)
    checkpoint.atomic_write_json(path / "metrics.json", generative_metrics(vae, digits.x_test))
    return path


def load_run(path: Path, est_class, ds) -> report.RunData:
    return report.read_run(
        path, checkpoint.read_config(path), estimator=est_class.load(path), dataset=ds
    )


def test_vae_report_is_one_self_contained_page(vae_run: Path, digits) -> None:
    run = load_run(vae_run, VAE, digits)
    assert run.kind == "vae" and len(run.history) == 2
    (vae_run / "samples.png").write_bytes(b"the user's own picture")  # vaekit generate's
    written = report.write_report(vae_run / "report.html", [run])
    names = [f"report-{n}" for n in ("training-curves", "reconstructions", "samples", "latent-map")]
    assert written == [*(vae_run / f"{n}.png" for n in names), vae_run / "report.html"]
    assert (vae_run / "samples.png").read_bytes() == b"the user's own picture"
    text = (vae_run / "report.html").read_text(encoding="utf-8")
    page = assert_self_contained(text, vae_run, names)
    assert page.h3() == SECTIONS
    assert "elbo" in text and "evidence lower bound" in text  # metric with its meaning
    assert "1437" in text and "0, 1, 2, 3" in text  # data summary: sizes and class names
    assert text.count("<figcaption>") == 4


def test_vae_figures_show_classes_in_the_latent_map(vae_run: Path, digits) -> None:
    items = report.build_figures(load_run(vae_run, VAE, digits), max_points=100)
    latent = next(i for i in items if i.name == "latent-map")
    (ax,) = latent.figure.axes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == [str(d) for d in range(10)]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 100  # subsampled to max_points
    assert "held-out" in latent.caption and "PCA" in latent.caption


def test_without_data_the_report_says_what_is_missing(vae_run: Path, digits, tmp_path) -> None:
    config, est = checkpoint.read_config(vae_run), VAE.load(vae_run)
    with_data = report.write_report(
        tmp_path / "r.html", [report.read_run(vae_run, config, estimator=est, dataset=digits)]
    )
    run = report.read_run(vae_run, config, estimator=est)
    written = report.write_report(tmp_path / "r.html", [run])
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "pass DATA" in text
    page = Page(text)
    assert len(page.images) == 2  # training curves and samples need no data
    # The first page's figures that this one lacks are gone (before: left beside it; a
    # review), and every figure has one of the names a report may remove.
    assert sorted(tmp_path.glob("*.png")) == sorted(p for p in written if p.suffix == ".png")
    assert len(with_data) > len(written)
    assert all(p.stem.removeprefix("r-") in report.FIGURE_NAMES for p in with_data[:-1])


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, digits) -> tuple[Path, VAEClustering, np.ndarray]:
    path = tmp_path_factory.mktemp("clu") / "run"
    x = np.concatenate([digits.x_train, digits.x_test])
    # VaDE: samples come from its mixture prior, and it clusters the latents directly.
    clu = VAEClustering(n_clusters="auto", method="vade", max_clusters=4, n_init=1, **TINY)
    clu.fit(x, metadata={"data": "digits", "classes": list(digits.classes)}).save(path)
    metrics = {"n_clusters": clu.n_clusters_, "silhouette": None, "k_selection": clu.k_selection_}
    checkpoint.atomic_write_json(path / "metrics.json", metrics)
    return path, clu, x


def test_clustering_report_shows_every_clustering_figure(cluster_run, digits) -> None:
    path, clu, _ = cluster_run
    run = load_run(path, VAEClustering, digits)
    assert run.kind == "clustering"
    config = report._config_html(run)
    assert all(f"<td>{name}</td>" in config for name in ("method", "manifold", "shift_average"))
    items = {i.name: i for i in report.build_figures(run)}
    assert list(items) == [
        "training-curves",  # save() writes history.csv
        "reconstructions",
        "samples",
        "cluster-sizes",
        "cluster-montage",
        "latent-map",
        "classes-vs-clusters",
        "k-selection",
    ]
    assert set(items) <= set(report.FIGURE_NAMES)  # the names an old page's PNGs are found by
    k = clu.n_clusters_
    rows = [t.get_text() for t in items["samples"].figure.axes[0].get_yticklabels()]
    assert rows == [f"cluster {c}" for c in range(k)]
    assert "mixture prior" in items["samples"].caption
    by_cluster, by_class = items["latent-map"].figure.axes
    assert "colours show the cluster (left) and true class" in items["latent-map"].caption
    # One panel without labels: no "(left)" for a panel that is not there (a review found it).
    x = digits.x_train[:50]
    alone = report._latent_item(run, clu, x, clu.predict(x), None, "pca", 0)
    assert len(alone.figure.axes) == 1 and "colours show the cluster." in alone.caption
    assert "training and test" not in items["cluster-sizes"].caption
    # A run of 'vaekit train --model vade' scores the test images only; the figures say
    # that they show all (a review found the captions silent about it).
    run.config.setdefault("metadata", {})["command"] = "train"
    items = {i.name: i for i in report.build_figures(run)}
    for name in ("cluster-sizes", "classes-vs-clusters"):
        assert "All 1797 images, training and test" in items[name].caption
    assert [t.get_text() for t in by_cluster.get_legend().get_texts()] == [
        f"cluster {c}" for c in range(k)
    ]
    assert [t.get_text() for t in by_class.get_legend().get_texts()] == list(digits.classes)
    matrix = items["classes-vs-clusters"].figure.axes[0]
    assert [t.get_text() for t in matrix.get_yticklabels()] == list(digits.classes)
    assert sum(p.get_height() for p in items["cluster-sizes"].figure.axes[0].patches) == 1797
    assert f"chosen K = {k}" in [
        t.get_text() for t in items["k-selection"].figure.axes[0].get_legend().get_texts()
    ]


def test_a_cluster_runs_image_counts_say_what_was_clustered(cluster_run, digits) -> None:
    """vaekit cluster writes n_train = every image, n_test = 0: not 'training images'."""
    path, _, _ = cluster_run
    run = load_run(path, VAEClustering, digits)
    run.metrics.update(n_train=1797, n_test=0)
    run.config.setdefault("metadata", {})["command"] = "cluster"
    html = report._metrics_html(run)
    assert "images clustered (training and test parts)" in html and "training images" not in html
    run.config["metadata"]["command"] = "train"  # train --model vade holds a test part out
    assert "training images" in report._metrics_html(run)


def test_clusters_csv_rows_are_found_by_their_index(digits) -> None:
    """index is each image's row in DATA (index_is_row); older runs numbered the images in
    training-then-test order. Either way a re-sorted file maps back to the images."""
    from types import SimpleNamespace

    rows = digits.all_rows()  # digits: vaekit's seeded split of one array
    assert not np.array_equal(rows, np.arange(len(rows)))
    values = np.arange(len(rows)) % 7  # the cluster of the image at place j: j % 7
    shuffled = np.random.default_rng(0).permutation(len(rows))
    index, value = rows[shuffled], values[shuffled]  # a clusters.csv sorted some other way
    new = SimpleNamespace(config={"metadata": {"index_is_row": True}})
    np.testing.assert_array_equal(value[report._assignment_order(index, new, digits)], values)
    old = SimpleNamespace(config={"metadata": {}})
    positions = np.arange(len(rows))[shuffled]
    np.testing.assert_array_equal(value[report._assignment_order(positions, old, digits)], values)


def test_clusters_csv_is_the_source_of_cluster_figures(cluster_run, digits, tmp_path) -> None:
    path, _, x = cluster_run
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for f in path.iterdir():
        (run_dir / f.name).write_bytes(f.read_bytes())
    fake = np.zeros(len(x), dtype=int)  # everything in cluster 0, as the file says
    rows = ["index,path,cluster,probability"] + [f"{i},,{c},0.5" for i, c in enumerate(fake)]
    (run_dir / "clusters.csv").write_text("\n".join(rows) + "\n")
    run = load_run(run_dir, VAEClustering, digits)
    sizes = next(i for i in report.build_figures(run) if i.name == "cluster-sizes")
    heights = [p.get_height() for p in sizes.figure.axes[0].patches]
    assert heights[0] == len(x) and sum(heights) == len(x)


def drawn(items: list[report.FigureItem]) -> list[report.FigureItem]:
    """The figures drawn, without the notes in place of those left out."""
    return [i for i in items if i.figure is not None]


def write_classification_run(path: Path) -> None:
    """A hand-made classification run: the files of ``vaekit classify``, no model."""
    path.mkdir(parents=True)
    config = {
        "vaekit_version": __version__,
        "format_version": checkpoint.FORMAT_VERSION,
        "estimator": "VAEClassifier",
        "params": {"latent_dim": 8, "random_state": 0},
        "model": {"class": "M2Module", "input_shape": [1, 8, 8]},
        "metadata": {
            "data": "pets",
            "dataset": "pets",
            "classes": ["cat", "dog", "bird"],
            "n_train": 30,
            "n_test": 12,
        },
    }
    (path / "config.json").write_text(json.dumps(config))
    metrics = {
        "accuracy": 0.75,
        "precision_macro": 0.7,
        "recall_macro": 0.72,
        "f1_macro": 0.71,
        "ece": 0.05,
        "per_class": {
            "cat": {"precision": 0.8, "recall": 1.0, "f1": 0.89, "support": 4},
            "dog": {"precision": 0.6, "recall": 0.75, "f1": 0.67, "support": 4},
            "bird": {"precision": 0.75, "recall": 0.5, "f1": 0.6, "support": 4},
        },
        "confusion_matrix": [[4, 0, 0], [1, 3, 0], [0, 2, 2]],
        "n_train": 30,
        "n_test": 12,
        "seconds": 1.5,
    }
    (path / "metrics.json").write_text(json.dumps(metrics))
    preds = ["index,path,label,probability"] + [f"{i},,{i % 3},0.9" for i in range(12)]
    (path / "predictions.csv").write_text("\n".join(preds) + "\n")


def test_classification_report_from_its_files(tmp_path: Path) -> None:
    path = tmp_path / "clf"
    write_classification_run(path)
    run = report.read_run(path, checkpoint.read_config(path))
    assert run.kind == "classification"
    assert run.assignments is not None and len(run.assignments["index"]) == 12
    report.write_report(path / "report.html", [run])
    text = (path / "report.html").read_text(encoding="utf-8")
    page = assert_self_contained(text, path, ["report-confusion-matrix"])
    assert page.h3() == SECTIONS
    assert ("h4", "Per class") in page.headings
    for word in ("accuracy", "f1_macro", "ece", "expected calibration error", "bird", "support"):
        assert word in text
    (item,) = drawn(report.build_figures(run))  # and a note: no history.csv
    ax = item.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "bird"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "bird"]


def test_a_demo_folder_reports_each_run_with_pngs_named_after_page_and_run(
    vae_run, tmp_path, digits
) -> None:
    demo = tmp_path / "demo"
    write_classification_run(demo / "classify")
    (demo / "vae").mkdir(parents=True)
    for f in vae_run.iterdir():
        if f.suffix in (".json", ".safetensors", ".csv"):
            (demo / "vae" / f.name).write_bytes(f.read_bytes())
    (demo / "samples.png").write_bytes(b"the demo's own picture")
    found = report.find_runs(demo)
    assert found == [demo / "classify", demo / "vae"]
    runs = [
        load_run(demo / "vae", VAE, digits),
        report.read_run(demo / "classify", checkpoint.read_config(demo / "classify")),
    ]
    report.write_report(demo / "report.html", runs)
    assert (demo / "samples.png").read_bytes() == b"the demo's own picture"
    assert (demo / "report-vae-samples.png").exists()
    assert (demo / "report-classify-confusion-matrix.png").exists()
    page = Page((demo / "report.html").read_text(encoding="utf-8"))
    assert ("h1", "vaekit report: demo") in page.headings
    assert [t for tag, t in page.headings if tag == "h2"] == [
        "vaevariational autoencoder",
        "classifyclassification",
    ]  # the VAE first, whatever the folder order
    assert page.h3() == SECTIONS * 2


def test_find_runs_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        report.find_runs(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="holds no run"):
        report.find_runs(tmp_path)


def test_unreadable_run_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "clf"
    write_classification_run(path)
    config = checkpoint.read_config(path)
    (path / "metrics.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"metrics\.json"):
        report.read_run(path, config)
    (path / "metrics.json").write_text("{}")
    (path / "predictions.csv").write_text("index,path,label,probability\n1,,0,high\n")
    with pytest.raises(CheckpointError, match=r"predictions\.csv"):
        report.read_run(path, config)


def test_per_class_table_keeps_class_names_that_are_numbers() -> None:
    # metrics.json keys per_class by class name; names "1", "2", "3" are not indices.
    per_class = {
        c: {"precision": p, "recall": 1.0} for c, p in (("1", 0.1), ("2", 0.2), ("3", 0.3))
    }
    html = report._per_class_table(per_class, ("1", "2", "3"))
    cells = [line for line in html.split("<tr>") if "<td>" in line]
    assert [c.split("<td>")[1].split("</td>")[0] for c in cells] == ["1", "2", "3"]
    assert "0.1" in cells[0] and "0.3" in cells[2]
    # A list is one row per class index.
    html = report._per_class_table([{"recall": 0.5}, {"recall": 0.7}], ("cat", "dog"))
    assert "<td>cat</td>" in html and "<td>dog</td>" in html


def test_class_names_with_dollars_are_drawn_as_text(tmp_path: Path) -> None:
    path = tmp_path / "clf"
    write_classification_run(path)
    config = checkpoint.read_config(path)
    config["metadata"]["classes"] = ["$\\frac$", "$x^2$", "cost $5"]  # mathtext would fail
    report.write_report(path / "report.html", [report.read_run(path, config)])
    (item,) = drawn(report.build_figures(report.read_run(path, config)))
    labels = [t.get_text() for t in item.figure.axes[0].get_yticklabels()]
    assert labels == ["$\\frac$", "$x^2$", "cost $5"]
    assert "cost $5" in (path / "report.html").read_text(encoding="utf-8")


def test_a_latent_map_of_one_point_is_left_out_with_a_note(vae_run: Path, digits) -> None:
    run = load_run(vae_run, VAE, digits)
    latent = next(i for i in report.build_figures(run, max_points=1) if i.name == "latent-map")
    assert latent.figure is None and "at least 2 images" in latent.caption
    out = vae_run.parent / "one-point" / "r.html"
    out.parent.mkdir()
    written = report.write_report(out, [run], max_points=1)
    assert out.with_name("r-latent-map.png") not in written
    text = out.read_text(encoding="utf-8")
    assert "Latent map:</b> left out" in text and text.count("<figure ") == 3


@pytest.mark.parametrize(
    ("entry", "value"),
    [
        ("confusion_matrix", "oops"),
        ("confusion_matrix", [[1, 2], [3]]),
        ("confusion_matrix", []),
        ("k_selection", {"k": [2, 3]}),
        ("k_selection", "auto"),
    ],
)
def test_edited_metrics_tables_are_clear_errors(tmp_path: Path, entry, value) -> None:
    path = tmp_path / "clf"
    write_classification_run(path)
    metrics = json.loads((path / "metrics.json").read_text())
    (path / "metrics.json").write_text(json.dumps({**metrics, entry: value}))
    with pytest.raises(CheckpointError, match=rf"metrics\.json' has a {entry} that is not"):
        report.read_run(path, checkpoint.read_config(path))


@pytest.mark.parametrize("cluster", ["x", "-1"])
def test_edited_clusters_csv_is_a_clear_error(tmp_path: Path, cluster: str) -> None:
    (tmp_path / "clusters.csv").write_text(
        f"index,path,cluster,probability\n0,,1,0.9\n1,,{cluster},0.8\n"
    )
    with pytest.raises(CheckpointError, match=rf"clusters\.csv' has cluster '{cluster}'"):
        report.read_run(tmp_path, {"estimator": "VAEClustering"})


def test_pages_are_named_after_the_run_given_as_dot_or_with_out_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clf"
    write_classification_run(path)
    monkeypatch.chdir(path)
    run = report.read_run(".", checkpoint.read_config("."))
    out = tmp_path / "elsewhere" / "t1.html"
    out.parent.mkdir()
    written = report.write_report(out, [run])
    assert written == [out.with_name("t1-confusion-matrix.png"), out]
    page = Page(out.read_text(encoding="utf-8"))
    assert ("h1", "vaekit report: clf") in page.headings
    assert ("h2", "clfclassification") in page.headings
    assert page.urls == ["data:,", "#run-clf", *page.images]  # icon, nav link, figure


def test_with_other_data_the_summary_shows_it_and_the_metrics_are_the_runs(
    vae_run: Path, digits
) -> None:
    other = Dataset(
        "other.npz", digits.x_train[:20], digits.y_train[:20], digits.x_test[:10],
        digits.y_test[:10], ("zero", *digits.classes[1:]),
    )  # fmt: skip
    run = load_run(vae_run, VAE, other)
    data = report._data_html(run)
    assert "<td>other.npz</td>" in data and "<td>run trained on</td><td>digits</td>" in data
    assert '<td>training images</td><td class="num">20</td>' in data and "zero" in data
    assert "the run's own metrics" in report._metrics_html(run).lower()
    assert "own metrics" not in report._metrics_html(load_run(vae_run, VAE, digits))
    # Other data without labels lists no classes: not the run's digits as if they were its.
    unlabeled = Dataset("plain.npy", digits.x_train[:20], None, digits.x_test[:10], None, ())
    data = report._data_html(load_run(vae_run, VAE, unlabeled))
    assert "<td>plain.npy</td>" in data and "classes (" not in data


def test_samples_per_class_says_when_classes_are_left_out() -> None:
    class Conditional:  # what the samples figure uses of a VAEClassifier
        classes_ = np.arange(40)

        def sample(self, n, *, label, random_state):
            return np.full((n, 1, 4, 4), label / 40.0)

    run = report.RunData(Path("m2"), {"estimator": "VAEClassifier"}, estimator=Conditional())
    (item,) = drawn(report.build_figures(run))  # and a note: no history.csv
    assert item.title == "Samples per class (first 20 of 40 classes)"
    assert item.figure.axes[0].get_title() == item.title
    assert len(item.figure.axes[0].get_yticklabels()) == report.MAX_SAMPLE_ROWS


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (-25610.27, "-25610"),
        (99999.0, "99999"),
        (123456.7, "123457"),
        (0.99996, "0.99996"),
        (-0.999999, "-0.999999"),
        (0.12345, "0.1235"),
        (12.3456, "12.35"),
        (1.0, "1"),
        (0.0, "0"),
        (3e-6, "3e-06"),
        (float("nan"), "nan"),
    ],
)
def test_numbers_read_honestly(value: float, text: str) -> None:
    assert report._fmt(value) == text


def test_an_edited_history_leaves_out_the_curves_with_a_warning(vae_run, digits, tmp_path):
    """history.csv is a by-product: load and the report both go on without it.

    Before, load failed on it with a traceback, then (once load warned) the report still
    stopped with an error: two readers of the same file with opposite policies.
    """
    run = tmp_path / "run"
    shutil.copytree(vae_run, run)
    with open(run / "history.csv", "a", encoding="utf-8") as f:
        f.write("1,abc,2\n")
    with pytest.warns(UserWarning, match="history.csv"):
        data = load_run(run, VAE, digits)
    written = report.write_report(run / "report.html", [data])
    assert run / "report-training-curves.png" not in written and written[-1].is_file()
    # Without the file, the page says why the curves are missing (before: nothing; a review).
    (run / "history.csv").unlink()
    written = report.write_report(run / "report.html", [load_run(run, VAE, digits)])
    assert "the run has no history.csv" in written[-1].read_text(encoding="utf-8")


def test_most_confident_members_rank_by_the_models_probabilities(
    cluster_run, digits, tmp_path, monkeypatch
) -> None:
    """clusters.csv rounds probabilities to 6 decimals (most members at 1.000000); ranking
    by them showed the first images of the file, not the most confident (a review found the
    report's montage disagreeing with the cluster command's montage.png in 10 of 10 rows)."""
    path, clu, x = cluster_run
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for f in path.iterdir():
        (run_dir / f.name).write_bytes(f.read_bytes())
    labels = clu.predict(x)
    rows = ["index,path,cluster,probability"] + [f"{i},,{c},1.000000" for i, c in enumerate(labels)]
    (run_dir / "clusters.csv").write_text("\n".join(rows) + "\n")
    seen = {}
    original = plots.plot_cluster_montage

    def spy(images, clusters, confidence, **kw):
        seen["confidence"] = confidence
        return original(images, clusters, confidence, **kw)

    monkeypatch.setattr(plots, "plot_cluster_montage", spy)
    report.build_figures(load_run(run_dir, VAEClustering, digits))
    np.testing.assert_allclose(seen["confidence"], clu.predict_proba(x).max(1))


def test_class_names_the_font_lacks_warn_once(tmp_path: Path) -> None:
    # Before: matplotlib's "Glyph ... missing from font(s)" once per figure and character.
    path = tmp_path / "clf"
    write_classification_run(path)
    config = checkpoint.read_config(path)
    config["metadata"]["classes"] = ["猫", "犬", "cost"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report.write_report(path / "report.html", [report.read_run(path, config)])
    said = [str(w.message) for w in caught]
    assert not any("Glyph" in m for m in said), said
    assert sum("characters the figures' font lacks" in m for m in said) == 1, said
    assert "猫" in (path / "report.html").read_text(encoding="utf-8")
