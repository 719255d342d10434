"""The ``vaekit`` command line: argument parsing and printing only.

Every subcommand is a thin call into the estimators, data and checkpoint layers. User
mistakes (``VaekitError``) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vaekit._version import __version__
from vaekit.errors import CheckpointError, DataError, NearlyBlackWarning, VaekitError

# numpy, torch and the layers below are imported inside the commands, so that --help,
# --version and argument errors answer without loading them.

EXIT_USAGE = 2
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
#: ``vaekit train --model``: the estimator each model family is, with its fixed settings.
MODELS = {
    "vae": ("VAE", {}),
    "vade": ("VAEClustering", {"method": "vade", "manifold": None, "n_clusters": 10}),
    "m2": ("VAEClassifier", {}),
}
#: Exit status when stdout's reader goes away: a Unix tool killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141
#: Most images ``vaekit generate`` puts in one PNG grid (100 x 100 tiles).
MAX_GRID_SAMPLES = 10_000
#: Help of the positional arguments.
DATA_HELP = "digits, fashion-mnist, mnist, an IDX file or folder, a .npy/.npz, or an image folder"
RUN_HELP = "a run directory: the --out of train, cluster or classify (or demo's vae/, ...)"
#: ``vaekit cluster`` settings when not given (a resumed run keeps its own).
CLUSTER_DEFAULTS = {"n_clusters": 10, "method": "kmeans", "manifold": "spectral"}
#: Name of a run's config file (``vaekit.checkpoint.CONFIG_FILE``, without importing torch).
CONFIG_FILE = "config.json"
#: Files of a run folder that vaekit reads back: an ``--out FILE`` never replaces them.
RUN_FILES = frozenset({
    CONFIG_FILE, "model.safetensors", "train_state.safetensors", "train_state.json",
    "history.csv", "metrics.json", "clusters.csv", "predictions.csv",
})  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (plus a pointer to --help), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            EXIT_USAGE, f"{self.prog}: error{_rank_tag()}: {message} (see '{self.prog} --help')\n"
        )


# --- shared argument groups -------------------------------------------------------------
def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-size",
        metavar="S|HxW",
        help="resize images to S x S (or H x W); needed when a folder mixes sizes",
    )
    p.add_argument(
        "--color",
        choices=("auto", "grayscale", "rgb"),
        default="auto",
        help="convert images to one or three channels (default: auto)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or chatter")


#: What --epochs, --latent-dim and --arch default to, as each command's --help says it.
_CLASSIFIER_EPOCHS = (
    "30 with all labels, about 250,000 rows' worth (3 to 30) with nearly none, between by "
    "the unlabeled share"
)
_VADE_EPOCHS = "of its mixture phase, after N/2 epochs of pre-training"
MODEL_HELP = {
    "train": (
        "maximum epochs; the VAE and VaDE may stop sooner on their validation loss, m2 runs "
        f"all N (default: 50; m2: {_CLASSIFIER_EPOCHS}; VaDE: {_VADE_EPOCHS})",
        "latent size (default: 10; m2: 16)",
        "encoder/decoder family (default: mlp; m2: a conv encoder)",
    ),
    "cluster": (
        "maximum epochs; training may stop sooner on the validation loss (default: 50; "
        f"--method vade: {_VADE_EPOCHS})",
        "latent size (default: 10)",
        "encoder/decoder family (default: mlp)",
    ),
    "classify": (
        f"epochs, all of them run (default: {_CLASSIFIER_EPOCHS})",
        "latent size (default: 16)",
        "encoder family (default: conv)",
    ),
}


def _add_model_args(p: argparse.ArgumentParser, command: str) -> None:
    epochs, latent, arch = MODEL_HELP[command]
    g = p.add_argument_group("model and training")
    g.add_argument("--epochs", type=_positive_int, metavar="N", help=epochs)
    g.add_argument("--latent-dim", type=_positive_int, metavar="D", help=latent)
    g.add_argument("--arch", choices=("mlp", "conv"), help=arch)
    g.add_argument(
        "--hidden-dims",
        metavar="A,B,...",
        type=_int_tuple,
        help="layer widths or channels (default: 512,256 for mlp; 32,64,128 for conv, fewer "
        "on small images)",
    )
    g.add_argument(
        "--likelihood", choices=("bernoulli", "gaussian"), help="pixel model (default: bernoulli)"
    )
    g.add_argument("--beta", type=_positive_float, help="KL weight (default: 1, the ELBO)")
    g.add_argument("--batch-size", type=_positive_int, metavar="B", help="(default: 128)")
    g.add_argument(
        "--lr", type=_positive_float, metavar="LR", help="learning rate (default: 0.001)"
    )
    # None until main() sets 0: a resumed run refuses a --seed given other than its own.
    g.add_argument("--seed", type=_seed, help="random seed (default: 0)")
    g.add_argument(
        "--device",
        help="auto (default: CUDA when present), cpu, cuda, cuda:1, ...; with --resume, the "
        "run's own unless given",
    )


def _add_fast_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed")
    g.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="bf16 autocast while training; auto = bf16 on a CUDA GPU that supports it, else fp32",
    )
    g.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        help="torch.compile the training loss (auto = off)",
    )


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _int_in(low: int, high: int):
    """Make an argparse type that accepts an integer in ``low..high``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {text!r}")
        return v

    return parse


#: ``--seed``: what NumPy's and torch's generators take.
_seed = _int_in(0, 2**32 - 1)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 512,256, got {text!r}"
        ) from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return dims


def _image_size(text: str | None) -> int | tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(t) for t in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise VaekitError(f"--image-size must look like 28 or 32x48, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


# --- helpers ------------------------------------------------------------------------------
def _size_hw(text: str | None) -> tuple[int, int] | None:
    """``--image-size`` as ``(H, W)``: ``"28"`` and ``"28x28"`` are the same size."""
    size = _image_size(text)
    return (size, size) if isinstance(size, int) else size


def _load_data(spec: str, args: argparse.Namespace, seed: int = 0):
    from vaekit.data import load_dataset

    return load_dataset(
        spec,
        image_size=_image_size(getattr(args, "image_size", None)),
        color=getattr(args, "color", "auto"),
        skip_bad=getattr(args, "skip_bad", False),
        random_state=seed,
    )


def _source(ds: Any) -> str:
    """``ds.name``, with the folder read for a downloadable built-in ('fashion-mnist (/usr/...)').

    $VAEKIT_DATA, Debian's copy and the cache can each hold one; the status line says which.
    """
    from vaekit.data.registry import REMOTE, locate_remote

    if ds.name not in REMOTE:
        return ds.name
    return f"{ds.name} ({locate_remote(ds.name)})"  # found again, never downloaded: just read


def _check_size(est: Any, n: int, spec: str, n_test: int = 0) -> None:
    """Check ``est``'s parameters for ``n`` training images of DATA ``spec`` before any work.

    Too few images to hold out a validation share is the data's doing, not a setting's:
    the error names DATA and how many images training needs (``n_test``: the images of
    DATA's test part, which training does not see).
    """
    from vaekit.training.loop import min_split_size

    est._check_params()
    need = min_split_size(float(est.validation_fraction))
    if n < need:
        rest = f" (its other {n_test} are the test part)" if n_test else ""
        raise DataError(
            f"'{spec}' gives {n} images to train on{rest}, too few to hold out "
            f"{est.validation_fraction:.0%} of them to validate on; add images (training "
            f"needs at least {need})"
        )
    est._check_n_samples(n)


def _data_options_of_run(args: argparse.Namespace, meta: dict[str, Any]) -> None:
    """Default ``--image-size``, ``--color`` and ``--skip-bad`` to what the run was trained with."""
    if args.image_size is None and meta.get("image_size"):
        args.image_size = meta["image_size"]
    if args.color == "auto" and meta.get("color") in ("grayscale", "rgb"):
        args.color = meta["color"]
    if meta.get("skip_bad") is True and hasattr(args, "skip_bad"):
        args.skip_bad = True  # before: evaluate and report stopped at the image it skipped


def _data_metadata(spec: str, ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    from vaekit.data.registry import _known_name

    p = Path(spec)
    # A built-in name is what was loaded even beside a folder of that name (load_dataset
    # warns about it): evaluate and report must load the same again.
    on_disk = p.exists() and _known_name(spec) is None
    return {
        "data": str(p.resolve()) if on_disk else spec,
        "dataset": ds.name,
        "classes": list(ds.classes),
        "image_size": getattr(args, "image_size", None),
        "color": getattr(args, "color", "auto"),
        "skip_bad": bool(getattr(args, "skip_bad", False)),
        "image_shape": list(ds.image_shape),
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "test_id": _test_id(ds),
        # clusters.csv / predictions.csv: index is the image's row in DATA (ds.all_rows();
        # runs written before this key numbered the images in training-then-test order)
        "index_is_row": True,
    }


def _test_id(ds: Any) -> str:
    """Fingerprint of a dataset's test images and labels, a block of rows at a time.

    The same counts may hide another split (data prepared again with another seed): the
    run's held-out images are then partly ones it trained on.
    """
    import hashlib

    import numpy as np

    digest = hashlib.blake2b(digest_size=16)
    for start in range(0, len(ds.x_test), 4096):
        digest.update(np.ascontiguousarray(ds.x_test[start : start + 4096]))
    if ds.y_test is not None:
        digest.update(np.ascontiguousarray(ds.y_test, dtype=np.int64))
    return digest.hexdigest()


def _check_writable(path: Path, what: str, *, folder: bool = False) -> None:
    """Refuse to go on unless ``path`` (a file, or a folder if ``folder``) can be written.

    The existing folder (``path`` itself or the nearest one above it) gets a probe file,
    created and removed at once, so a read-only or virtual file system (``/proc``) fails
    here, before any work.
    """
    if path.exists() and path.is_dir() != folder:
        kind = "a folder; give a file name" if path.is_dir() else "a file; give a folder"
        raise VaekitError(f"{what} '{path}' is {kind}")
    parent = path if path.is_dir() else path.parent  # where the first file will go
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise VaekitError(
            f"cannot write {what} '{path}': '{parent}' is a file, not a folder; choose another path"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".vaekit-probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise VaekitError(
            f"cannot write {what} '{path}' ({exc.strerror or exc}); choose a folder you can "
            "write to"
        ) from None


def _output_file(out: str, suffix: str, data: str | None = None) -> Path:
    """Check ``--out FILE`` (its suffix, its folder, what it would replace) before any work.

    An existing file may be replaced, as ``-o`` does in Unix tools, except the data being
    read (``data``, with a prepared array's manifest), any prepared array (a ``.npy`` with
    its manifest beside it) or manifest, and the files of a run folder that vaekit reads back
    (``RUN_FILES``; a picture there may be replaced).
    """
    if not out.lower().endswith(suffix):
        raise VaekitError(f"--out must end in {suffix}, got {out!r}")
    path = Path(out)
    _check_writable(path, "--out")
    _refuse_replacing_data(path, data)
    if path.exists():
        from vaekit.data.prepared import array_path, is_prepared, manifest_path

        if is_prepared(path):
            which = (
                f"a prepared dataset (its manifest is '{manifest_path(path)}')"
                if path.suffix.lower() == ".npy"
                else f"the manifest of the prepared dataset '{array_path(path)}'"
            )
            raise VaekitError(f"--out '{path}' is {which}; choose a new file")
    _refuse_run_file(path, f"--out '{path}'")
    return path


def _refuse_run_file(path: Path, what: str) -> None:
    """Refuse ``path`` if it is one of ``RUN_FILES`` in a run folder, written yet or not.

    A run not yet finished has no metrics.json, say, but will write one over whatever
    another command put there.
    """
    target = path.resolve()
    if target.name in RUN_FILES and (target.parent / CONFIG_FILE).is_file():
        raise VaekitError(f"{what} is a file of the run in '{path.parent}'; choose a new file")


def _refuse_replacing_data(path: Path, data: str | None) -> None:
    """Refuse an output file that would replace or join the data ``data``.

    That is the data file itself or a prepared array's manifest, or a picture inside the
    image folder ``data`` (it would be read as one of its images).
    """
    if data is None or not Path(data).exists():
        return
    source, target = Path(data).resolve(), path.resolve()
    if source.is_dir():
        from vaekit.data.images import is_image_name

        if source in target.parents and is_image_name(target.name):
            raise VaekitError(
                f"--out '{path}' is inside the image folder {data!r}, where it would be read "
                "as one of its images; choose a file outside it"
            )
        return
    if path.exists() and target in (source, source.with_suffix(".json")):
        raise VaekitError(f"--out '{path}' is the data being read ({data!r}); choose another file")


def _is_run_data(spec: str, meta: dict[str, Any]) -> bool:
    """Whether DATA ``spec`` names the data a run recorded (as given, resolved, or built-in)."""
    from vaekit.data.registry import same_data

    return same_data(spec, meta.get("data"))


def _split_change(ds: Any, meta: dict[str, Any], spec: str) -> str | None:
    """How the run's data now splits, if into other counts than when it was trained.

    Files added to or removed from a folder since give another seeded split, so images the
    run trained on may be scored as test images.
    """
    was = (meta.get("n_train"), meta.get("n_test"))
    now = (len(ds.x_train), len(ds.x_test))
    if None in was or not _is_run_data(spec, meta):
        return None
    if tuple(was) == now:
        if meta.get("test_id") in (None, _test_id(ds)):  # None: a run saved before it was kept
            return None
        return (
            f"{spec!r} now gives other test images than the run held out (the same counts: "
            "prepared or split again with another seed?)"
        )
    return (
        f"{spec!r} now gives {now[0]} training and {now[1]} test images, the run was "
        f"trained with {was[0]} and {was[1]}: files were added or removed since"
    )


def _warn_of_split_change(change: str | None) -> None:
    """Warn of a change that :func:`_split_change` found, if any."""
    if change:
        import warnings

        warnings.warn(
            f"{change}, so the test images are not the ones the run held out", stacklevel=2
        )


def _refuse_if_split_changed(ds: Any, meta: dict[str, Any], spec: str, out: Path) -> None:
    """Refuse to resume run ``out`` on data that now splits otherwise (:func:`_split_change`).

    It would go on training on some of the images it held out, and score others it trained on.
    """
    change = _split_change(ds, meta, spec)
    if change:
        raise DataError(
            f"cannot resume '{out}': {change}; restore them, or start a new run without --resume"
        )


def _check_image_shape(est: Any, ds: Any, run: str, spec: str) -> None:
    """Refuse data whose image shape differs from the one the run was trained on."""
    want, got = tuple(est.input_shape_), tuple(ds.image_shape)
    if got != want:
        raise DataError(
            f"images of {spec!r} are {'x'.join(map(str, got))} (CxHxW) but run '{run}' was "
            f"trained on {'x'.join(map(str, want))}; pass the run's kind of data, or "
            "--image-size / --color to convert it"
        )


#: The run folder this process chose last (for the hint after Ctrl-C; None before).
_chosen_run_dir: list[Path] = []


def _fresh_dir(out: str | None, default: str, data: str | None = None) -> Path:
    """``out`` if given (must not hold a run); else ``default`` with -2, -3, ... if taken.

    Refused inside the folder of images ``data``: the run's pictures (montage.png, say)
    would be loaded as images of that data by the next command reading it.
    """
    path = _pick_fresh_dir(out, default)
    if data is not None and Path(data).is_dir():
        from vaekit.data.registry import _builtin_name

        folder = Path(data).resolve()
        if _builtin_name(data) is None and folder in (path.resolve(), *path.resolve().parents):
            named = f"--out '{path}'" if out is not None else f"the run folder '{path}'"
            raise VaekitError(
                f"{named} is inside the data folder '{data}', where its pictures would be "
                "read as images; give an --out outside it"
            )
    _chosen_run_dir[:] = [path]
    return path


def _pick_fresh_dir(out: str | None, default: str) -> Path:
    """Return the folder :func:`_fresh_dir` gives (checked, not recorded)."""
    if out is not None:
        path = Path(out)
        _check_writable(path, "--out", folder=True)
        # Under torchrun rank 0 may already have started the run when another rank looks.
        if (path / CONFIG_FILE).exists() and _is_main_process():
            raise VaekitError(
                f"'{path}' already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        # A run's files would replace files of the same name (metrics.json, say) in a folder
        # of the user's, or land among a dataset's images. Left-over temporary files of an
        # interrupted start (.NAME.tmp) are vaekit's own.
        if path.is_dir() and _is_main_process():
            from vaekit.checkpoint import foreign_files, name_list

            theirs = foreign_files(path)
            if theirs:
                raise VaekitError(
                    f"--out '{path}' is a folder that already holds files ({name_list(theirs)})"
                    " and no run; give a new or empty folder"
                )
        return path
    path, i = Path(default), 1
    while path.exists():
        i += 1
        path = Path(f"{default}-{i}")
    _check_writable(path, "--out", folder=True)
    return path


def _model_params(args: argparse.Namespace) -> dict[str, Any]:
    """Estimator parameters given on the command line (the others keep their defaults)."""
    params = {
        "latent_dim": args.latent_dim,
        "arch": args.arch,
        "hidden_dims": args.hidden_dims,
        "likelihood": args.likelihood,
        "beta": args.beta,
        "batch_size": args.batch_size,
        "max_epochs": args.epochs,
        "learning_rate": args.lr,
        "precision": args.precision,
        "compile": args.compile,
    }
    return {k: v for k, v in params.items() if v is not None}


def _verbose(args: argparse.Namespace) -> int:
    return 0 if args.quiet else 1


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False) and _is_main_process():
        print(text, flush=True)


def _is_main_process() -> bool:
    """Under torchrun only rank 0 prints and writes files; the other ranks train, then stop.

    Reads ``RANK`` as torchrun sets it (``vaekit.training.distributed.is_main_process``
    without importing torch).
    """
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _rank_tag() -> str:
    """`` (rank N)`` for the error lines of a rank other than 0, else nothing.

    Under torchrun each rank meets the same bad input; the others' copies are only needed
    when rank 0 did not fail (a file missing on one machine), so they say who.
    """
    return "" if _is_main_process() else f" (rank {os.environ.get('RANK')})"


def _write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    from vaekit import checkpoint

    checkpoint.atomic_write_json(path, metrics)


def _write_run_metrics(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write a run's metrics.json, unless it already holds these very scores; return it.

    ``--resume`` on a finished run trains nothing and scores the same model again: the
    file it would replace has the same scores, the run's own wall time and whatever
    ``vaekit evaluate`` added (ELBO, reconstruction error), which a rewrite would lose.
    The metrics returned are the file's, for the line that reports them.
    """
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    same = isinstance(old, dict) and all(
        k in old and old[k] == v for k, v in metrics.items() if k != "seconds"
    )
    if not same:
        _write_metrics(path, metrics)
        return metrics
    return {k: old.get(k, v) for k, v in metrics.items()}


def _format_metrics(metrics: dict[str, Any]) -> str:
    def show(v: float | int) -> str:  # counts in full: n_train=60000, not 6e+04
        return str(v) if isinstance(v, int) else f"{v:.4g}"

    keys = [k for k, v in metrics.items() if isinstance(v, float | int)]
    return "  ".join(f"{k}={show(metrics[k])}" for k in keys)


def _count(n: int, noun: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


#: What each entry a run's ``metadata`` may hold must be for the CLI to read it back.
_METADATA_CHECKS: dict[str, Callable[[Any], bool]] = {
    **dict.fromkeys(("data", "dataset", "command", "color"), lambda v: isinstance(v, str)),
    "image_size": lambda v: v is None or isinstance(v, str),
    "skip_bad": lambda v: isinstance(v, bool),
    "test_id": lambda v: isinstance(v, str),
    "labels": lambda v: v is None or _is_count(v),
    **dict.fromkeys(("n_train", "n_test", "n_labeled"), _is_count),
    "classes": lambda v: isinstance(v, list) and all(isinstance(c, str | int) for c in v),
    "image_shape": lambda v: isinstance(v, list) and all(_is_count(d) for d in v),
}


def _check_run_metadata(run: str | Path, config: dict[str, Any]) -> None:
    """Refuse a run whose ``config.json`` metadata the CLI cannot read back.

    The weights' checksum does not cover ``config.json``, and ``fit(metadata=...)`` saves
    whatever a Python user gives; an entry of another type than the CLI writes would
    otherwise end in a traceback wherever the CLI reads it.
    """
    meta = config.get("metadata", {})
    if not isinstance(meta, dict):
        bad = f"metadata {meta!r}"
    else:
        wrong = [k for k, ok in _METADATA_CHECKS.items() if k in meta and not ok(meta[k])]
        bad = f"metadata.{wrong[0]} = {meta[wrong[0]]!r}" if wrong else ""
    if bad:
        raise CheckpointError(
            f"'{Path(run) / CONFIG_FILE}' holds {bad}, not what vaekit's commands write there "
            "and can read; fix or remove that entry (Python's load() does not read it)"
        )


def _load_estimator(run: str, *, reads_metadata: bool = True):
    if Path(run).is_file():
        raise CheckpointError(f"'{run}' is a file; pass a run directory (the --out of train)")
    from vaekit import checkpoint
    from vaekit.estimators import VAE, VAEClassifier, VAEClustering

    config = checkpoint.read_config(run)
    if reads_metadata:
        _check_run_metadata(run, config)
    kinds = {"VAE": VAE, "VAEClassifier": VAEClassifier, "VAEClustering": VAEClustering}
    kind = config.get("estimator")
    if kind not in kinds:
        raise CheckpointError(f"'{run}' holds an unknown estimator {kind!r}; retrain the run")
    return kinds[kind].load(run), config


#: Command-line option of each estimator parameter that a run's options may set.
OPTION_OF_PARAM = {
    "latent_dim": "--latent-dim",
    "arch": "--arch",
    "hidden_dims": "--hidden-dims",
    "likelihood": "--likelihood",
    "beta": "--beta",
    "batch_size": "--batch-size",
    "max_epochs": "--epochs",
    "learning_rate": "--lr",
    "precision": "--precision",
    "n_clusters": "--n-clusters",
    "method": "--method",
    "manifold": "--manifold",
    "manifold_dim": "--manifold-dim",
    "shift_average": "--shift-average",
    "input_dropout": "--input-dropout",
}


def _resumed_run(
    args: argparse.Namespace, command: str, given: dict[str, Any] | None = None
) -> tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Check that ``--out`` holds a run of ``vaekit COMMAND`` that DATA and the options fit.

    ``given`` holds the estimator parameters set on the command line (default: the model
    options); a resumed run keeps the settings it was started with, so one that differs is
    refused rather than ignored. Returns ``(out, config, params, metadata)``.
    """
    if args.out is None:
        raise VaekitError("--resume needs --out DIR naming the run to continue")
    out = Path(args.out)
    if not (out / CONFIG_FILE).exists():
        raise VaekitError(f"cannot resume: '{out}' holds no run; drop --resume to start one")
    _check_writable(out, "--out", folder=True)
    from vaekit import checkpoint, estimators

    config = checkpoint.read_config(out)
    _check_run_metadata(out, config)
    try:
        # Parameters added since the run was saved take the values it was trained with.
        kind = getattr(estimators, str(config.get("estimator")), None)
        params = {**getattr(kind, "_params_added", {}), **config["params"]}
        meta = dict(config.get("metadata", {}))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"'{out / CONFIG_FILE}' lacks readable parameters; it was modified — start "
            "a new run without --resume"
        ) from None
    started = checkpoint.run_command(config)
    if started != command:
        raise VaekitError(
            f"'{out}' is a run of 'vaekit {started}'; continue it with "
            f"'vaekit {started} DATA --out {out} --resume'"
        )
    if not _is_run_data(args.data, meta):
        raise VaekitError(
            f"cannot resume '{out}' on {args.data!r}: it was trained on {meta.get('data')!r}"
        )
    given = _model_params(args) if given is None else given
    changed = [
        f"{OPTION_OF_PARAM.get(k, k)} (the run has {params.get(k)!r})"
        for k, v in given.items()
        if k != "compile" and (list(v) if isinstance(v, tuple) else v) != params.get(k)
    ]
    if args.seed_given and args.seed != params.get("random_state"):
        changed.append(f"--seed (the run has {params.get('random_state')!r})")
    run_size = meta.get("image_size")
    if args.image_size is not None and _size_hw(args.image_size) != _size_hw(run_size):
        changed.append(f"--image-size (the run has {run_size!r})")
    if args.color != "auto" and args.color != meta.get("color", "auto"):
        changed.append(f"--color (the run has {meta.get('color', 'auto')!r})")
    _refuse_changes(out, changed)
    params["verbose"] = _verbose(args)
    if args.compile is not None and "compile" in params:  # speed only, same results
        params["compile"] = args.compile
    if args.device is not None and "device" in params:  # e.g. a GPU run resumed on a CPU
        params["device"] = args.device
    _data_options_of_run(args, meta)
    # The CSVs this run writes now number images by their row in DATA; the report must know.
    return out, config, params, {**meta, "index_is_row": True}


def _has(params: dict[str, Any], fixed: dict[str, Any]) -> bool:
    """Whether ``params`` hold every value of ``fixed`` (a run made by that ``MODELS`` entry)."""
    return all(params.get(k) == v for k, v in fixed.items())


def _refuse_changes(out: Path, changed: list[str]) -> None:
    """Refuse options (``changed``: each with the run's value) that would alter a resumed run."""
    if changed:
        raise VaekitError(
            f"--resume continues '{out}' with the settings it was started with; drop "
            f"{', '.join(changed)} or start a new run without --resume"
        )


def _new_estimator(kind: Any, args: argparse.Namespace, **fixed: Any) -> Any:
    """``kind`` for a new run: ``fixed`` settings plus the model options on the command line."""
    return kind(
        **fixed,
        **_model_params(args),
        device=args.device or "auto",
        random_state=args.seed,
        verbose=_verbose(args),
    )


def _estimator_from(kind: Any, params: dict[str, Any], out: Path) -> Any:
    """``kind(**params)`` for a resumed run, refusing parameters this version does not know."""
    try:
        return kind(**kind.params_from_config(params))
    except TypeError as exc:
        raise CheckpointError(
            f"'{out / CONFIG_FILE}' holds parameters this vaekit does not know ({exc}); "
            "start a new run without --resume"
        ) from None


# --- subcommands -----------------------------------------------------------------------------
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
            out = _fresh_dir(None, f"runs/{Path(ds.name).name}-{model}", args.data)
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
        scores = {**generative_metrics(est, all_images(ds)), "scored_on": scored_on}
    else:
        if not len(ds.x_test):  # a single image is a training part alone
            raise DataError(
                f"'{spec}' has no test images to score run '{args.run}' on "
                f"({len(ds.x_train)} image(s), all in the training part); pass more images"
            )
        scores = generative_metrics(est, ds.x_test)
    metrics = {
        **scores,
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
    }
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
            pass  # unreadable: replaced by the fresh metrics
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


def _share_below(limit: float) -> Callable[[str], float]:
    """Return an argparse type that accepts a number in ``[0, limit)``."""

    def share(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value < limit:
            raise argparse.ArgumentTypeError(f"expected a number in [0, {limit:g}), got {text!r}")
        return value

    return share


def _n_clusters(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 2:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 2, got {text!r}")
    return v


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


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


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
    from vaekit import report

    if args.data is not None and (Path(args.data) / CONFIG_FILE).exists():
        raise VaekitError(
            f"DATA '{args.data}' is a run; report one RUN, or a folder holding several runs "
            "(as a demo folder does)"
        )
    runs = report.find_runs(args.run)
    out = (
        _output_file(args.out, ".html", args.data)
        if args.out
        else Path(args.run) / report.REPORT_FILE
    )
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on the embedded digits data: train, evaluate, sample."""
    if args.out is not None and (Path(args.out) / "vae" / CONFIG_FILE).exists():
        raise VaekitError(f"'{Path(args.out) / 'vae'}' already holds a run; choose another --out")
    out = _fresh_dir(args.out, "runs/demo")
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


# --- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Build the ``vaekit`` argument parser with all subcommands."""
    parser = _Parser(
        prog="vaekit",
        description="Cluster and classify image collections through variational autoencoders.",
        epilog="DATA is digits, fashion-mnist, mnist, or a path to IDX files, a .npy/.npz "
        "array or a folder of images. Run 'vaekit COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("demo", help="train and evaluate on the embedded digits data")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/demo[-N])")
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEMO_EPOCHS,
        help=(
            f"maximum epochs of the VAE and clustering runs; early stopping usually ends "
            f"sooner ({DEMO_EPOCHS}; the classifier runs at most {DEMO_CLASSIFIER_EPOCHS})"
        ),
    )
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model and save a run directory")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument(
        "--model",
        choices=MODELS,
        help="model family: vae (default); vade (mixture prior of 10 components, as 'vaekit "
        "cluster --method vade'); or m2 (semi-supervised classifier; -1 labels unlabeled)",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/NAME-MODEL[-N])")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    _add_model_args(p, "train")
    _add_fast_args(p)
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("cluster", help="cluster images without labels")
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument(
        "--n-clusters",
        type=_n_clusters,
        metavar="K|auto",
        help="number of clusters, or auto (chosen by BIC; default: 10)",
    )
    p.add_argument(
        "--method",
        choices=("gmm", "kmeans", "vade"),
        help="gmm or kmeans on the VAE latents (or on their --manifold embedding), or VaDE "
        "(default: kmeans)",
    )
    p.add_argument(
        "--manifold",
        choices=("none", "umap", "spectral"),
        help="embed the latents before gmm/kmeans: spectral (the latents' neighbour graph), "
        "umap as in N2D (needs umap-learn), or none (default: spectral)",
    )
    p.add_argument(
        "--manifold-dim",
        type=_positive_int,
        metavar="D",
        help="size of the --manifold embedding (default: K for umap, 1.5 K for spectral)",
    )
    p.add_argument(
        "--shift-average",
        type=_share_below(0.5),
        metavar="F",
        help="for gmm/kmeans, average each image's latent mean over its 9 shifts by 0 and "
        "+-s pixels, s = F x its shorter side rounded (default 0.04: 1 pixel from 13 to 37 "
        "pixels, none below); 0 turns it off",
    )
    p.add_argument(
        "--input-dropout",
        type=_share_below(1.0),
        metavar="P",
        help="for gmm/kmeans, train a denoising VAE: the encoder sees each image with a share "
        "P of its pixels dropped (default 0.2); 0 trains the plain VAE",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run directory")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    _add_model_args(p, "cluster")
    _add_fast_args(p)
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser(
        "classify", help="classify images with N labeled training images (all if omitted)"
    )
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument(
        "--labels",
        type=_positive_int,
        metavar="N",
        help="labeled training images to keep, about N/K of each of the K classes (a class "
        "with fewer gives all it has, the others share the rest), drawn with --seed "
        "(default: all); the rest of the training split is used unlabeled",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run directory")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    _add_model_args(p, "classify")
    _add_fast_args(p)
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("evaluate", help="test-split metrics of a trained run")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("data", metavar="DATA", nargs="?", help="default: the run's training data")
    p.add_argument(
        "--out",
        metavar="FILE.json",
        help="metrics file (default: RUN/metrics.json for the run's own data; other DATA: "
        "printed only)",
    )
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("embed", help="write latent means of DATA as .npy")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--out", metavar="FILE.npy", required=True)
    p.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="which images: all (default; in DATA's order), or the training or test part "
        "of its split (in DATA's order within it)",
    )
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "prepare",
        help="convert DATA once into a memory-mapped .npy + .json manifest",
        description="Convert DATA once into FILE.npy (uint8 images, training then test, read "
        "with mmap_mode='r') and FILE.json (labels, class names, source paths, shape); pass "
        "FILE.npy as DATA to the other commands. Image folders are decoded block by block, "
        "so they may be larger than memory.",
    )
    p.add_argument("data", metavar="DATA", help=DATA_HELP)
    p.add_argument("--out", metavar="FILE.npy", required=True)
    p.add_argument("--seed", type=_seed, default=0, help="seed of the train/test split (0)")
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("generate", help="sample images from a trained run into a PNG grid")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument(
        "--n",
        type=_int_in(1, MAX_GRID_SAMPLES),
        default=64,
        help=f"number of samples in the grid (64, at most {MAX_GRID_SAMPLES:,}; more from "
        "Python: VAE.sample)",
    )
    p.add_argument("--cluster", type=int, metavar="C", help="sample from one cluster")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    p.add_argument("--out", metavar="FILE.png", required=True)
    _add_common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("report", help="write RUN/report.html: config, data, metrics, figures")
    p.add_argument("run", metavar="RUN", help="a run directory, or a demo folder of runs")
    p.add_argument("data", metavar="DATA", nargs="?", help="default: the run's training data")
    p.add_argument("--out", metavar="FILE.html", help="default: RUN/report.html")
    p.add_argument(
        "--latent-map",
        choices=("pca", "tsne", "umap"),
        default="pca",
        help="2-D projection of the latent map (default: pca; umap needs umap-learn)",
    )
    p.add_argument(
        "--max-points",
        type=_int_in(2, 10**9),
        default=3000,
        metavar="N",
        help="images in the latent map at most, a seeded sample (default: 3000)",
    )
    _add_data_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_report)
    parser.commands = sub.choices  # name -> subcommand parser, for main's error messages
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vaekit`` command; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand's parser, which names it and its --help
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    args.seed_given = getattr(args, "seed", None) is not None
    if hasattr(args, "seed") and args.seed is None:
        args.seed = 0
    _chosen_run_dir.clear()  # a process may run several commands (tests, notebooks)
    try:
        with _warnings_to_stderr():
            return int(args.func(args))
    except VaekitError as exc:
        print(f"vaekit {args.command}: error{_rank_tag()}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # stdout's reader left ('vaekit evaluate RUN | head'): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a path the checks above could not foresee (disk full, ...)
        name = exc.filename2 or exc.filename  # os.replace(tmp, dest): dest is the user's path
        where = f" '{name}'" if name else ""
        print(
            f"vaekit {args.command}: error: cannot read or write{where} "
            f"({exc.strerror or exc}); check the path, its permissions and free space",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C reaches every rank; rank 0 says it
        if not _is_main_process():
            return 130
        hint = ""
        run = args.out or (_chosen_run_dir[0] if _chosen_run_dir else None)
        if args.command in ("train", "cluster", "classify") and run is not None:
            hint = (
                f"; once it has saved an epoch, the same command with --out "
                f"{shlex.quote(str(run))} and --resume continues the run from there"
            )
        print(f"vaekit {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _warnings_to_stderr():
    """Show Python warnings as one plain line each ('vaekit: warning: ...').

    Nearly black images are said once: the data loader names the file, and the estimator
    would repeat it (as 'X') each time it checks the same images.
    """
    import warnings

    said: set[type] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if category in said:
            return
        if issubclass(category, NearlyBlackWarning):
            said.add(category)
        if _is_main_process():  # under torchrun every rank would print the same line
            print(f"vaekit: warning: {message}", file=sys.stderr)

    old = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
