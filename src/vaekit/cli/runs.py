"""What the commands share: reading DATA, run folders, and the estimator of a new or resumed run.

A run folder holds a trained estimator (``config.json``, weights, training state) and what
its command wrote beside it (``metrics.json``, ``clusters.csv``, ...). The checks here (where
a run goes and what it may replace, whether DATA is the data a run recorded, what
``--resume`` may change) run before any work, so a bad ``--out`` or a resumed run on other
data fails in a second, with nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaekit.cli.console import _is_main_process, _verbose
from vaekit.errors import CheckpointError, DataError, VaekitError

#: Name of a run's config file (``vaekit.checkpoint.CONFIG_FILE``, without importing torch).
CONFIG_FILE = "config.json"

#: Files of a run folder that vaekit reads back: an ``--out FILE`` never replaces them.
RUN_FILES = frozenset({
    CONFIG_FILE, "model.safetensors", "train_state.safetensors", "train_state.json",
    "history.csv", "metrics.json", "clusters.csv", "predictions.csv",
})  # fmt: skip


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


def _size_hw(text: str | None) -> tuple[int, int] | None:
    """``--image-size`` as ``(H, W)``: ``"28"`` and ``"28x28"`` are the same size."""
    size = _image_size(text)
    return (size, size) if isinstance(size, int) else size


def _load_data(spec: str, args: argparse.Namespace, seed: int = 0):
    from vaekit.data import load_dataset

    _refuse_run_as_data(spec)
    return load_dataset(
        spec,
        image_size=_image_size(getattr(args, "image_size", None)),
        color=getattr(args, "color", "auto"),
        skip_bad=getattr(args, "skip_bad", False),
        random_state=seed,
    )


def _refuse_run_as_data(spec: str) -> None:
    """Refuse DATA that is a run folder, or a folder of runs as ``vaekit demo`` writes.

    Read as an image folder, its figures (montage.png, the report's PNGs) would be the
    images: the error said they differ in size, and ``--image-size`` then "worked".
    """
    from vaekit.data.registry import _builtin_name

    folder = Path(spec)
    if _builtin_name(spec) is not None or not folder.is_dir():
        return  # 'digits' loads the built-in set even beside a folder of that name
    if _is_run_folder(folder):
        what = "a vaekit run folder"
    elif any(_is_run_folder(sub) for sub in folder.iterdir() if sub.is_dir()):
        what = "a folder of vaekit runs"
    else:
        return
    raise VaekitError(
        f"DATA '{spec}' is {what}, not images; pass the data a run was trained on (its "
        f"{CONFIG_FILE} names it under metadata.data)"
    )


def _is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a vaekit run: a config.json naming its estimator and format.

    A config.json of another tool's (a labelling tool's, in a class folder) is not one.
    """
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"estimator", "format_version"} <= config.keys()


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


def _output_file(
    out: str, suffix: str, data: str | None = None, *, pictures_beside: bool = False
) -> Path:
    """Check ``--out FILE`` (its suffix, its folder, what it would replace) before any work.

    An existing file may be replaced, as ``-o`` does in Unix tools, except the data being
    read (``data``, with a prepared array's manifest), any prepared array (a ``.npy`` with
    its manifest beside it) or manifest, and the files of a run folder that vaekit reads back
    (``RUN_FILES``; a picture there may be replaced). ``pictures_beside``: the command also
    writes PNGs beside the file (as ``report`` does), so no file inside an image folder
    ``data`` will do.
    """
    if not out.lower().endswith(suffix):
        raise VaekitError(f"--out must end in {suffix}, got {out!r}")
    path = Path(out)
    _check_writable(path, "--out")
    _refuse_replacing_data(path, data, pictures_beside=pictures_beside)
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


def _refuse_replacing_data(path: Path, data: str | None, *, pictures_beside: bool = False) -> None:
    """Refuse an output file that would replace or join the data ``data``.

    That is the data file itself or a prepared array's manifest, or a picture inside the
    image folder ``data`` (it would be read as one of its images); with ``pictures_beside``
    (the command writes PNGs next to ``path``), any file inside that folder.
    """
    if data is None or not Path(data).exists():
        return
    source, target = Path(data).resolve(), path.resolve()
    if source.is_dir():
        from vaekit.data.images import is_image_name

        if source in target.parents and (pictures_beside or is_image_name(target.name)):
            what = "its figures (PNGs beside it)" if pictures_beside else "it"
            raise VaekitError(
                f"--out '{path}' is inside the image folder {data!r}, where {what} would be "
                "read as images; choose a file outside it"
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


def _fresh_dir(
    out: str | None, default: str, data: str | None = None, *, resumable: bool = True
) -> Path:
    """``out`` if given (must not hold a run); else ``default`` with -2, -3, ... if taken.

    Refused inside the folder of images ``data``: the run's pictures (montage.png, say)
    would be loaded as images of that data by the next command reading it. ``resumable``:
    the command has ``--resume``, which the error for a folder holding a run suggests.
    """
    path = _pick_fresh_dir(out, default, resumable)
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


def _pick_fresh_dir(out: str | None, default: str, resumable: bool = True) -> Path:
    """Return the folder :func:`_fresh_dir` gives (checked, not recorded)."""
    if out is not None:
        path = Path(out)
        _check_writable(path, "--out", folder=True)
        # Under torchrun rank 0 may already have started the run when another rank looks.
        if (path / CONFIG_FILE).exists() and _is_main_process():
            fix = "pass --resume to continue it or choose" if resumable else "choose"
            raise VaekitError(f"'{path}' already holds a run; {fix} another --out")
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
    checkpoint.check_resumable(out, config.get("estimator"))  # a model saved from Python
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


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
