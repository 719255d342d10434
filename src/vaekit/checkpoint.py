"""Run directories: ``config.json`` + ``model.safetensors`` + training state.

Layout of a run directory::

    config.json              vaekit version, estimator and its parameters, shapes, data spec,
                             class names, SHA-256 of model.safetensors
    model.safetensors        weights of the fitted model (no pickle)
    train_state.safetensors  everything for an exact resume: weights, optimiser moments,
                             RNG states, best-so-far weights; JSON (epoch, history, ...)
                             in the safetensors metadata, so one atomic file is consistent
    train_state.json         the same JSON, for people to read
    history.csv              one line per epoch

Every file is written to a temporary name in the same directory, flushed, fsynced and
renamed over the old one, so a crash at any point leaves either the old or the new file.
Loading uses ``safetensors`` and ``json`` only: nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaekit._version import __version__
from vaekit.errors import CheckpointError

#: Bumped when the run-directory layout changes incompatibly.
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
STATE_JSON = "train_state.json"
HISTORY_FILE = "history.csv"
#: What a ``save`` killed before its config.json can leave behind (the model is written first).
SAVE_LEFTOVERS = frozenset({MODEL_FILE, HISTORY_FILE})


def _new_file_mode() -> int:
    """Mode ``open(path, "w")`` gives a new file: ``0o666`` less the process umask."""
    try:  # Linux shows the umask without changing it (setting it is process-wide)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)  # elsewhere the umask can only be read by setting it
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + fsync + rename).

    The file gets the mode of a newly created one (``0o666`` less the umask), not the
    ``0o600`` of ``tempfile.mkstemp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk names no file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where possible
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """Sorted names in ``folder`` other than hidden ones ([] if none or no folder).

    A run's files would replace files of the same name (metrics.json, say) in a folder of
    the user's, or land among a dataset's images, so new runs go to new or empty folders.
    Hidden names are the atomic writers' temp files (``.NAME.*.tmp``) and the likes of
    ``.DS_Store``, which leave a folder empty to its owner.
    """
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))


def name_list(names: list[str]) -> str:
    """``'a.png', ...`` for messages: the first name, and whether there are more."""
    return f"{names[0]!r}{', ...' if len(names) > 1 else ''}"


#: Files vaekit writes into a run folder (by training, save, or the CLI beside them): the
#: only ones whose left-over temp files (``.NAME.*.tmp``) a new or resumed run deletes.
RUN_WRITES = frozenset({
    CONFIG_FILE, MODEL_FILE, STATE_FILE, STATE_JSON, HISTORY_FILE,
    "metrics.json", "clusters.csv", "predictions.csv", "montage.png", "report.html",
})  # fmt: skip
#: ``vaekit report``'s figures beside report.html: ``report-<figure>.png``.
REPORT_FIGURE = re.compile(r"report-[\w-]+\.png")


def remove_stale_temps(run_dir: str | os.PathLike) -> None:
    """Delete temp files left by a writer killed mid-write (``.NAME.*.tmp``, NAME vaekit's).

    Other hidden ``.tmp`` files (a user's ``.draft.tmp``) are not vaekit's and stay.
    """
    for tmp in Path(run_dir).glob(".*.tmp"):  # the atomic writers' temp names
        written = tmp.name[1:].removesuffix(".tmp").rsplit(".", 1)[0]  # .NAME.XXXX.tmp -> NAME
        if written in RUN_WRITES or REPORT_FIGURE.fullmatch(written):
            with contextlib.suppress(OSError):
                tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    r"""Write UTF-8 text atomically.

    A file name that is not valid UTF-8 (which Python decodes with surrogate escapes) is
    written with its odd bytes as ``\xNN`` escapes, so the file stays valid UTF-8.
    """
    atomic_write_bytes(
        path, text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode()
    )


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a ``history.csv`` (one row of numbers per epoch); ``[]`` when there is none.

    Raises
    ------
    CheckpointError
        If the file holds something other than a table of numbers (edited by hand).
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (ValueError, TypeError, csv.Error, OSError) as exc:
        raise CheckpointError(
            f"'{path}' is not a table of numbers ({type(exc).__name__}); it was edited"
        ) from None


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def tensors_to_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """Serialise tensors (made contiguous, moved to CPU) in the safetensors format."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return st_save(flat, metadata=dict(metadata) if metadata else None)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"'{path}' is missing; the run is incomplete — retrain it or pass another run"
        ) from None
    try:
        tensors = st_load(data)
        # The metadata lives in the JSON header: 8-byte little-endian length, then JSON.
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"'{path}' is not a readable safetensors file ({str(exc).splitlines()[0]}); "
            "it is corrupt or was modified — retrain the run"
        ) from None
    return tensors, header.get("__metadata__", {}) or {}


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def write_config(run_dir: str | os.PathLike, config: Mapping[str, Any]) -> None:
    """Write ``config.json`` with the format and vaekit versions stamped in."""
    out = {"vaekit_version": __version__, "format_version": FORMAT_VERSION, **config}
    atomic_write_json(Path(run_dir) / CONFIG_FILE, out)


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``config.json`` of a run directory.

    Raises
    ------
    CheckpointError
        Missing directory or file, invalid JSON, or written by an incompatible version.
    """
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist; pass a trained run")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"'{path}' is missing; '{run_dir}' is not a vaekit run — pass a trained run"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"'{path}' is not valid JSON ({exc}); the run is corrupt — retrain it"
        ) from None
    if not isinstance(config, dict) or type(config.get("format_version")) is not int:
        raise CheckpointError(f"'{path}' is not a vaekit run config; pass a trained run")
    saved = str(config.get("vaekit_version", "?"))
    if config["format_version"] != FORMAT_VERSION or _major_minor(saved) != _major_minor(
        __version__
    ):
        raise CheckpointError(
            f"'{run_dir}' was written by vaekit {saved} (format {config['format_version']}), "
            f"this is vaekit {__version__} (format {FORMAT_VERSION}); retrain the run, or open "
            f"it with that version (pip install 'vaekit=={'.'.join(_major_minor(saved))}.*')"
        )
    return config


def _held_config(run_dir: str | os.PathLike) -> Any:
    """Return the parsed ``run_dir/config.json``, or None when it is missing or not JSON."""
    try:
        return json.loads((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _refuse_other_files(run_dir: str | os.PathLike, theirs: list[str], fix: str) -> None:
    """Refuse a folder holding ``theirs`` that are not (all) leftovers of a save of ours."""
    if not set(theirs) <= SAVE_LEFTOVERS:
        raise CheckpointError(
            f"'{run_dir}' already holds files ({name_list(theirs)}) and no run; {fix}"
        )


def check_run_kind(run_dir: str | os.PathLike, kind: Any) -> None:
    """Refuse to write a ``kind`` run into ``run_dir`` when it holds a run of another estimator.

    Raises
    ------
    CheckpointError
        ``run_dir`` is a file, or ``run_dir/config.json`` parses and names an ``estimator``
        other than ``kind``.
    """
    if os.path.lexists(run_dir) and not Path(run_dir).is_dir():
        raise CheckpointError(f"'{run_dir}' is a file, not a folder; pass a folder for the run")
    held = _held_config(run_dir)  # none, or unreadable: no run to mix
    if isinstance(held, dict) and "estimator" in held and held["estimator"] != kind:
        raise CheckpointError(
            f"'{run_dir}' holds a {held['estimator']} run; write the {kind} to another directory"
        )


def check_new_run(run_dir: str | os.PathLike, kind: Any) -> None:
    """Refuse to start a new ``kind`` run in ``run_dir`` when it would replace what is there.

    Reads only: nothing in ``run_dir`` is touched. A missing or empty folder is fine, and
    so is one holding only what a killed ``save`` left (``SAVE_LEFTOVERS``).

    Raises
    ------
    CheckpointError
        ``run_dir`` holds a run of another estimator (:func:`check_run_kind`), a run of
        ``kind`` (``fit(..., resume=True)`` continues it), a ``config.json`` of the user's,
        or other files (:func:`foreign_files`).
    """
    check_run_kind(run_dir, kind)
    if not os.path.lexists(Path(run_dir) / CONFIG_FILE):
        _refuse_other_files(run_dir, foreign_files(run_dir), "choose a new or empty run_dir")
        return
    held = _held_config(run_dir)
    if isinstance(held, dict) and "format_version" in held:
        raise CheckpointError(
            f"'{run_dir}' already holds a run; pass resume=True to continue it or choose "
            "another run_dir"
        )
    raise CheckpointError(
        f"'{run_dir}' holds a {CONFIG_FILE} that is not a vaekit run and fit would replace it; "
        "choose another run_dir"
    )


def check_resumable(run_dir: str | os.PathLike, kind: Any) -> None:
    """Refuse ``fit(..., resume=True)`` into a folder holding a model without a training state.

    A model written by ``save`` (or saved before training states were kept) has nothing to
    resume; training "resumed" from scratch there would replace it with a new run. A run
    whose config.json says it is still training may lack its state (killed before the
    first checkpoint): it starts again from its beginning.

    Raises
    ------
    CheckpointError
        ``run_dir`` holds a run of another estimator (:func:`check_run_kind`), or a
        config.json of a saved model and no ``STATE_FILE``.
    """
    check_run_kind(run_dir, kind)
    held = _held_config(run_dir)
    if (Path(run_dir) / STATE_FILE).exists() or not isinstance(held, dict):
        return
    if "format_version" in held and held.get("status") != "training":
        raise CheckpointError(
            f"'{run_dir}' holds a saved model but no training state, so there is nothing to "
            "resume; train into another folder (load() opens the saved model)"
        )


def check_save_target(run_dir: str | os.PathLike, kind: Any, model_sha256: str) -> None:
    """Refuse ``save`` into ``run_dir`` unless it is new, empty or a saved ``kind`` model.

    A model saved there before is replaced, and so are the leftovers of a killed save; a
    training run is not (its training state and metrics would then describe another
    model, and ``--resume`` would continue that one) unless it holds this very model
    (``model_sha256``, as after ``fit(run_dir=...)``), nor is a folder of other files.
    Reads only.

    Raises
    ------
    CheckpointError
        ``run_dir`` holds a run of another estimator (:func:`check_run_kind`), a training
        run of another model (``train_state.*``), or files but no ``config.json``.
    """
    check_run_kind(run_dir, kind)
    theirs = foreign_files(run_dir)
    if CONFIG_FILE not in theirs:
        _refuse_other_files(run_dir, theirs, "save to a new or empty folder")
    elif STATE_FILE in theirs or STATE_JSON in theirs:
        held = _held_config(run_dir)
        if not (isinstance(held, dict) and held.get("model_sha256") == model_sha256):
            raise CheckpointError(
                f"'{run_dir}' holds a training run (its {STATE_JSON} and metrics belong to "
                "that model); save to another folder"
            )


def save_model(
    run_dir: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    guard: bool = False,
) -> bool:
    """Write ``model.safetensors`` then ``config.json`` recording its SHA-256.

    The config is written last, so a crash in between leaves a hash mismatch that
    ``load_model`` reports instead of silently pairing new weights with an old config.
    With ``guard`` (a user's ``save``), ``run_dir`` must also pass
    :func:`check_save_target`; the training loop's own run folders need not.

    Returns
    -------
    bool
        Whether this replaced another model saved there (other weights).

    Raises
    ------
    CheckpointError
        ``run_dir`` holds a run of another estimator (:func:`check_run_kind`), or with
        ``guard`` fails :func:`check_save_target`; nothing is written.
    """
    kind = config.get("estimator")
    check_run_kind(run_dir, kind)
    data = tensors_to_bytes(state_dict)
    sha = sha256_bytes(data)
    if guard:
        check_save_target(run_dir, kind, sha)
    held = _held_config(run_dir)
    atomic_write_bytes(Path(run_dir) / MODEL_FILE, data)
    write_config(run_dir, {**config, "model_sha256": sha})
    return isinstance(held, dict) and held.get("model_sha256") not in (None, sha)


def run_command(config: Mapping[str, Any]) -> str:
    """Return the ``vaekit`` subcommand that started a run: train, cluster or classify.

    Read from the run's metadata (runs saved before it was recorded: clustering runs are
    ``cluster``, classifier runs with a ``labels`` entry ``classify``).
    """
    meta = config.get("metadata") or {}
    if isinstance(meta, dict) and meta.get("command") in ("train", "cluster", "classify"):
        return meta["command"]
    if config.get("estimator") == "VAEClustering":
        return "cluster"
    return "classify" if isinstance(meta, dict) and "labels" in meta else "train"


def load_model(run_dir: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``(config, state_dict)`` of a finished run, verifying the weights' checksum."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    path = run_dir / MODEL_FILE
    resume = (
        f"the run did not finish — resume it with "
        f"'vaekit {run_command(config)} DATA --out {run_dir} --resume'"
    )
    if not path.exists():
        if _stopped_before_first_epoch(run_dir):
            # E.g. training diverged in epoch 1: resuming would repeat it from the start.
            resume = (
                "the run stopped before its first epoch finished, so it holds nothing to "
                "resume — remove the folder and train again (if training failed, its error "
                "said why, e.g. a diverged loss)"
            )
        raise CheckpointError(f"'{path}' is missing; {resume}")
    data = path.read_bytes()
    recorded = config.get("model_sha256") == sha256_bytes(data)
    if not recorded and config.get("status") == "training":
        # Killed between the final weights and the config that records their checksum.
        raise CheckpointError(
            f"'{path}' is not yet recorded in '{run_dir / CONFIG_FILE}'; {resume}"
        )
    if not recorded:
        raise CheckpointError(
            f"'{path}' does not match the checksum in '{run_dir / CONFIG_FILE}'; "
            "the weights were modified or the run is incomplete — retrain it"
        )
    tensors, _ = _read_safetensors(path)
    return config, tensors


def _stopped_before_first_epoch(run_dir: Path) -> bool:
    """Whether the run's training state records no finished epoch."""
    try:
        info = json.loads((run_dir / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("epoch") == 0


def save_train_state(
    run_dir: str | os.PathLike, tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any]
) -> None:
    """Atomically write the resumable training state (one file) and a readable copy."""
    meta = {"info": json.dumps(info)}
    atomic_write_bytes(Path(run_dir) / STATE_FILE, tensors_to_bytes(tensors, meta))
    atomic_write_json(Path(run_dir) / STATE_JSON, info)


def load_train_state(
    run_dir: str | os.PathLike,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Read the training state, or ``None`` when the run has none yet."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    tensors, meta = _read_safetensors(path)
    try:
        info = json.loads(meta["info"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(
            f"'{path}' has no readable training info; it was modified — delete it to restart"
        ) from None
    return tensors, info
