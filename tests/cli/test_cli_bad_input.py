"""User mistakes on the command line: exit status 2, one line naming the culprit, no damage.

Each case builds its inputs in its own folder and names the command to run, what the one
error line must mention, the files whose bytes must not change and the paths that must not
appear. The ``outcomes`` fixture runs all cases at once, forked from a preloaded vaekit
(``fast_cli``); one parametrized test checks each, and one checks that the real ``vaekit``
console script answers like the preloaded runner.
"""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    TINY,
    Cli,
    Preloaded,
    TrainedRun,
    assert_ok,
    assert_user_error,
    console_script,
    copy_run,
    snapshot,
    write_idx_folder,
    write_image_folder,
)
from PIL import Image

from vaekit.data.idx import write_idx

#: Side of a 1-bit PNG just over vaekit's 64-megapixel limit (it compresses to ~8 kB).
BOMB_SIDE = 8001
OTHER_VERSION = "9.0.0"
SENTINEL = b"written before the failing command; must survive it\n"


@dataclass
class Case:
    """One failing command and what it must (not) do."""

    args: list[str | Path]
    names: tuple[object, ...]
    protect: list[Path] = field(default_factory=list)  # bytes unchanged (all files below)
    absent: list[Path] = field(default_factory=list)  # never created
    unsaid: tuple[str, ...] = ()  # advice the error must not give (an option that is not there)


CASES: dict[str, Callable[[Path, Path], Case]] = {}


def case(make: Callable[[Path, Path], Case]) -> Callable[[Path, Path], Case]:
    """Register ``make(folder, shared_run) -> Case`` under its name without ``case_``."""
    CASES[make.__name__.removeprefix("case_")] = make
    return make


def _train(data: Path | str, d: Path, *extra: str, names: tuple[object, ...] = ()) -> Case:
    """``train DATA --out d/out``: must fail naming ``names`` (default DATA), leave no run."""
    out = d / "out"
    protect = [data] if isinstance(data, Path) else []
    return Case(["train", data, *TINY, "--out", out, *extra], names or (data,), protect, [out])


def _existing(path: Path) -> Path:
    """A file the failing command must not overwrite."""
    path.write_bytes(SENTINEL)
    return path


def _run_copy(run: Path, d: Path) -> Path:
    return copy_run(run, d / "run")


def _edit_config(run: Path, **changes: object) -> None:
    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps(config))


# --- data -----------------------------------------------------------------------------------
@case
def case_idx_truncated(d: Path, run: Path) -> Case:
    folder = write_idx_folder(d / "idx")
    f = folder / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-50])
    return _train(folder, d, names=(f.name, "truncated"))


@case
def case_idx_count_mismatch(d: Path, run: Path) -> Case:
    folder = write_idx_folder(d / "idx")
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(9, dtype=np.uint8))  # 10 images
    return _train(
        folder,
        d,
        names=("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "10 images", "9 labels"),
    )


def _folder_with(d: Path, name: str, data: bytes | None = None) -> Path:
    folder = write_image_folder(d / "pets", n=5)
    if data is not None:
        (folder / "cats" / name).write_bytes(data)
    return folder


@case
def case_diverged_at_the_first_epoch(d: Path, run: Path) -> Case:
    # "the last good checkpoint is kept" when none was; then the folder it left was refused
    # as "already holds a run" by the same command with a lower --lr.
    out = d / "out"
    names = ("diverged at epoch 1", "lower --lr", "no epoch finished, so there is nothing")
    return Case(["train", "digits", *TINY, "--lr", "1e6", "--out", out, "-q"], names, absent=[out])


@case
def case_a_run_given_as_data(d: Path, run: Path) -> Case:
    """Before: its figures were read as images ('differ in size; pass --image-size')."""
    return Case(["evaluate", run, run], ("is a vaekit run folder, not images",))


@case
def case_a_folder_of_runs_given_as_data(d: Path, run: Path) -> Case:
    demo = d / "demo"
    copy_run(run, demo / "vae")
    out = d / "out"
    args = ["cluster", demo, *TINY, "--out", out]
    return Case(args, ("is a folder of vaekit runs",), protect=[demo], absent=[out])


@case
def case_a_run_given_to_prepare(d: Path, run: Path) -> Case:
    out = d / "p.npy"
    return Case(["prepare", run, "--out", out], ("is a vaekit run folder",), absent=[out])


@case
def case_corrupt_image(d: Path, run: Path) -> Case:
    folder = _folder_with(d, "bad.png", b"these bytes are not a PNG")
    return _train(folder, d, names=("cats/bad.png", "--skip-bad"))


@case
def case_truncated_png(d: Path, run: Path) -> Case:
    folder = write_image_folder(d / "pets", n=5, size=(32, 32))
    f = folder / "dogs" / "3.png"
    f.write_bytes(f.read_bytes()[:200])
    return _train(folder, d, names=("dogs/3.png", "truncated", "--skip-bad"))


@case
def case_decompression_bomb(d: Path, run: Path) -> Case:
    folder = _folder_with(d, "bomb.png")
    Image.new("1", (BOMB_SIDE, BOMB_SIDE)).save(folder / "cats" / "bomb.png")
    return _train(folder, d, names=("cats/bomb.png", "decompression bomb"))


@case
def case_pickled_npy(d: Path, run: Path) -> Case:
    f = d / "objects.npy"
    np.save(f, np.array([{"pixels": 1}] * 4, dtype=object), allow_pickle=True)
    return _train(f, d, names=(f, "pickled"))


def _huge_header(shape: tuple[int, ...]) -> bytes:
    """A .npy header declaring ``shape`` of uint8, followed by only 64 bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + bytes(64)


@case
def case_npy_declaring_a_terabyte(d: Path, run: Path) -> Case:
    f = d / "huge.npy"
    f.write_bytes(_huge_header((10**6, 1000, 1000)))
    return _train(f, d, names=(f, "truncated or damaged"))


@case
def case_npz_declaring_a_terabyte(d: Path, run: Path) -> Case:
    f = d / "huge.npz"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("x.npy", _huge_header((10**6, 1000, 1000)))
    return _train(f, d, names=(f, "'x'", "truncated or damaged"))


@case
def case_corrupt_compressed_npz(d: Path, run: Path) -> Case:
    f = d / "bad.npz"
    np.savez_compressed(f, x=np.zeros((40, 8, 8), np.uint8))
    data = bytearray(f.read_bytes())
    for i in range(60, 120):  # inside the compressed stream of x.npy
        data[i] ^= 0x55
    f.write_bytes(bytes(data))
    return _train(f, d, names=(f, "cannot be read"))


@case
def case_empty_folder(d: Path, run: Path) -> Case:
    folder = d / "empty"
    folder.mkdir()
    return _train(folder, d, names=(folder, "no images"))


@case
def case_mixed_sizes(d: Path, run: Path) -> Case:
    folder = _folder_with(d, "wide.png")
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(folder / "cats" / "wide.png")
    return _train(folder, d, names=(folder, "cats/wide.png", "--image-size"))


@case
def case_too_few_images(d: Path, run: Path) -> Case:
    folder = d / "few"
    folder.mkdir()
    for i in range(4):  # 3 training images: no validation image is left
        Image.new("L", (8, 8), 50 * i).save(folder / f"{i}.png")
    return _train(folder, d, names=(folder, "3 images to train on", "at least 6"))


@case
def case_too_few_images_to_cluster(d: Path, run: Path) -> Case:
    data = d / "five.npy"
    np.save(data, np.full((5, 8, 8), 100, dtype=np.uint8))  # cluster trains on all five
    out = d / "out"
    args = ["cluster", data, "--n-clusters", "2", *TINY, "--out", out]
    return Case(args, (data, "5 images to train on", "at least 6"), [data], [out])


@case
def case_nan_in_npy(d: Path, run: Path) -> Case:
    x = np.random.default_rng(0).random((20, 8, 8), dtype=np.float32)
    x[3, 2, 1] = np.nan
    np.save(d / "nan.npy", x)
    return _train(d / "nan.npy", d, names=(d / "nan.npy", "NaN"))


@case
def case_flattened_images_in_npy(d: Path, run: Path) -> Case:
    """Rows of 64 features: the error says which shape to give them (before: only which not)."""
    np.save(d / "flat.npy", np.zeros((12, 64), np.uint8))
    return _train(d / "flat.npy", d, names=(d / "flat.npy", "(12, 64)", "reshape", "(12, 8, 8)"))


@case
def case_npy_with_a_negative_dimension(d: Path, run: Path) -> Case:
    # Before: numpy's memory map raised OverflowError, a traceback with exit 1.
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (-5, 8, 8), }".ljust(117) + b"\n"
    magic = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
    (d / "neg.npy").write_bytes(magic + header + bytes(64))
    return _train(d / "neg.npy", d, names=(d / "neg.npy", "negative"))


@case
def case_prepared_labels_not_integers(d: Path, run: Path) -> Case:
    # Before: the manifest's labels were converted outside the checks: ValueError, exit 1.
    from vaekit.data import load_dataset
    from vaekit.data.prepared import write_prepared

    rng = np.random.default_rng(0)
    np.savez(d / "lab.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y=np.arange(40) % 2)
    write_prepared(load_dataset(d / "lab.npz"), d / "q.npy", "lab.npz")
    meta = json.loads((d / "q.json").read_text())
    meta["labels"][0] = "cat"
    (d / "q.json").write_text(json.dumps(meta))
    case = _train(d / "q.npy", d, names=(d / "q.npy", "vaekit prepare"))
    case.protect.append(d / "q.json")
    return case


@case
def case_data_a_link_to_itself(d: Path, run: Path) -> Case:
    # Before: "no such file or directory", for a path that is there.
    (d / "loop").symlink_to("loop")
    return _train(d / "loop", d, names=(d / "loop", "symbolic link"))


@case
def case_classify_labels_of_one_class(d: Path, run: Path) -> Case:
    # Before: "y has labeled images of 1 class(es)", naming neither the data nor the fix.
    data = d / "one.npz"
    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    np.savez(data, x=x, y=np.zeros(40, dtype=np.int64))
    return Case(
        ["classify", data, *TINY, "--out", d / "out"], (data, "one class"), [data], [d / "out"]
    )


@case
def case_inf_in_npy(d: Path, run: Path) -> Case:
    x = np.random.default_rng(0).random((20, 8, 8), dtype=np.float32)
    x[0, 0, 0] = -np.inf
    np.save(d / "inf.npy", x)
    return _train(d / "inf.npy", d, names=(d / "inf.npy", "infinite"))


@case
def case_unknown_dataset(d: Path, run: Path) -> Case:
    return _train("cifar-100", d)


@case
def case_images_of_another_shape(d: Path, run: Path) -> Case:
    x = np.zeros((20, 10, 10), dtype=np.uint8)
    np.savez(d / "big.npz", x=x)
    out = _existing(d / "z.npy")
    return Case(["embed", run, d / "big.npz", "--out", out], (d / "big.npz", "1x10x10"), [out])


# --- arguments ------------------------------------------------------------------------------
@case
def case_missing_data(d: Path, run: Path) -> Case:
    return Case(["train"], ("DATA", "vaekit train --help"))


@case
def case_negative_epochs(d: Path, run: Path) -> Case:
    return Case(["train", "digits", "--epochs", "-3"], ("--epochs", "-3"))


@case
def case_one_cluster(d: Path, run: Path) -> Case:
    """Before: trained to the end, then reported ACC 0.10 and NMI 0."""
    return Case(["cluster", "digits", "--n-clusters", "1", "--out", d / "o"], ("--n-clusters", "1"))


@case
def case_manifold_dim_without_a_manifold(d: Path, run: Path) -> Case:
    """Before: accepted, written into the run's settings, and never used."""
    args = ["cluster", "digits", "--manifold", "none", "--manifold-dim", "5", "--out", d / "o"]
    return Case(args, ("--manifold-dim",), absent=[d / "o"])


@case
def case_spectral_embedding_of_one_dimension(d: Path, run: Path) -> Case:
    """Before: every image in one cluster (unit-length rows in 1-D are +-1), exit 0."""
    args = ["cluster", "digits", "--manifold-dim", "1", "--out", d / "o"]
    return Case(args, ("manifold_dim=1", "2 or more"), absent=[d / "o"])


@case
def case_more_clusters_than_images(d: Path, run: Path) -> Case:
    """Before: 'clustering 1797 images ...' was printed on stdout first."""
    return Case(
        ["cluster", "digits", *TINY, "--n-clusters", "5000", "--out", d / "o"],
        ("n_clusters=5000",),
    )


@case
def case_epochs_not_a_number(d: Path, run: Path) -> Case:
    return Case(["train", "digits", "--epochs", "abc"], ("--epochs", "abc"))


@case
def case_unknown_flag(d: Path, run: Path) -> Case:
    return Case(["train", "digits", "--colour", "red"], ("--colour",))


@case
def case_unknown_flag_before_the_subcommand(d: Path, run: Path) -> Case:
    """Before: 'vaekit train: error: ...', blaming the subcommand for vaekit's option."""
    return Case(["--bogus", "train", "digits"], ("vaekit: error", "--bogus", "'vaekit --help'"))


@case
def case_unknown_subcommand(d: Path, run: Path) -> Case:
    return Case(["cluster-everything", "digits"], ("cluster-everything",))


@case
def case_no_subcommand(d: Path, run: Path) -> Case:
    return Case([], ("COMMAND",))


@case
def case_bad_image_size(d: Path, run: Path) -> Case:
    return Case(["train", "digits", "--image-size", "8by8", "--out", d / "out"], ("--image-size",))


# --- checkpoints ----------------------------------------------------------------------------
def _other_version(d: Path, run: Path) -> Path:
    r = _run_copy(run, d)
    _edit_config(r, vaekit_version=OTHER_VERSION)
    return r


@case
def case_other_version_evaluate(d: Path, run: Path) -> Case:
    r = _other_version(d, run)
    # The version to install, as pip takes it (before: "install vaekit 9.0").
    return Case(["evaluate", r], (r, OTHER_VERSION, "vaekit==9.0.*"), [r])


@case
def case_other_version_embed(d: Path, run: Path) -> Case:
    r, out = _other_version(d, run), _existing(d / "z.npy")
    return Case(["embed", r, "digits", "--out", out], (r, OTHER_VERSION), [r, out])


@case
def case_other_version_generate(d: Path, run: Path) -> Case:
    r, out = _other_version(d, run), _existing(d / "s.png")
    return Case(["generate", r, "--out", out], (r, OTHER_VERSION), [r, out])


@case
def case_flipped_weight_bytes(d: Path, run: Path) -> Case:
    r = _run_copy(run, d)
    weights = bytearray((r / "model.safetensors").read_bytes())
    weights[-7] ^= 0xFF  # inside the last tensor
    (r / "model.safetensors").write_bytes(bytes(weights))
    return Case(["evaluate", r], (r / "model.safetensors",), [r])


@case
def case_truncated_weights(d: Path, run: Path) -> Case:
    r, out = _run_copy(run, d), _existing(d / "s.png")
    weights = (r / "model.safetensors").read_bytes()
    (r / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    return Case(["generate", r, "--out", out], (r / "model.safetensors",), [r, out])


@case
def case_deleted_weights(d: Path, run: Path) -> Case:
    r, out = _run_copy(run, d), _existing(d / "z.npy")
    (r / "model.safetensors").unlink()
    return Case(["embed", r, "digits", "--out", out], (r / "model.safetensors",), [r, out])


@case
def case_garbage_config(d: Path, run: Path) -> Case:
    r = _run_copy(run, d)
    (r / "config.json").write_bytes(b"{not json at all\x00")
    return Case(["evaluate", r], (r / "config.json",), [r])


@case
def case_config_metadata_of_another_type(d: Path, run: Path) -> Case:
    # Before: config.json's checksum covers the weights only, and an edited entry ended in
    # a TypeError where the CLI read it (exit 1).
    r = _run_copy(run, d)
    config = json.loads((r / "config.json").read_text())
    _edit_config(r, metadata={**config["metadata"], "data": 5})
    return Case(["evaluate", r], (r / "config.json", "metadata.data"), [r])


@case
def case_config_metadata_not_a_dict(d: Path, run: Path) -> Case:
    r = _run_copy(run, d)
    _edit_config(r, metadata=[])
    return Case(["report", r], (r / "config.json", "metadata"), [r])


@case
def case_config_random_state_out_of_range(d: Path, run: Path) -> Case:
    # Before: scikit-learn's InvalidParameterError from the data split, exit 1.
    r = _run_copy(run, d)
    config = json.loads((r / "config.json").read_text())
    _edit_config(r, params={**config["params"], "random_state": -1})
    return Case(["evaluate", r], (r, "random_state"), [r])


@case
def case_config_format_version_a_string(d: Path, run: Path) -> Case:
    # Before: "written by vaekit 0.1.0 (format 1), this is vaekit 0.1.0 (format 1)".
    r = _run_copy(run, d)
    _edit_config(r, format_version="1")
    return Case(["evaluate", r], (r / "config.json", "not a vaekit run"), [r])


@case
def case_evaluate_missing_run(d: Path, run: Path) -> Case:
    return Case(["evaluate", d / "no-such-run"], (d / "no-such-run",), absent=[d / "no-such-run"])


@case
def case_evaluate_a_file(d: Path, run: Path) -> Case:
    f = _existing(d / "notes.txt")
    return Case(["evaluate", f], (f,), [f])


@case
def case_resume_without_run(d: Path, run: Path) -> Case:
    out = d / "fresh"
    out.mkdir()
    keep = _existing(out / "notes.txt")
    return Case(["train", "digits", *TINY, "--out", out, "--resume"], (out, "--resume"), [keep])


@case
def case_resume_config_without_params(d: Path, run: Path) -> Case:
    r = _run_copy(run, d)
    config = json.loads((r / "config.json").read_text())
    del config["params"]
    (r / "config.json").write_text(json.dumps(config))
    return Case(["train", "digits", "--out", r, "--resume"], (r / "config.json",), [r])


@case
def case_train_into_existing_run(d: Path, run: Path) -> Case:
    r = _run_copy(run, d)
    return Case(["train", "digits", *TINY, "--out", r], (r, "--resume"), [r])


@case
def case_demo_into_existing_run(d: Path, run: Path) -> Case:
    copy_run(run, d / "demo" / "vae")
    return Case(["demo", "--out", d / "demo", "--epochs", "1"], (d / "demo" / "vae",), [d / "demo"])


@case
def case_demo_into_a_run(d: Path, run: Path) -> Case:
    """Before, the error advised --resume, which demo does not have (a review)."""
    r = _run_copy(run, d)
    args = ["demo", "--out", r, "--epochs", "1"]
    return Case(args, (r, "already holds a run", "another --out"), [r], unsaid=("--resume",))


@case
def case_cluster_into_a_folder_of_files(d: Path, run: Path) -> Case:
    mine = d / "mine"
    mine.mkdir()
    _existing(mine / "metrics.json")
    _existing(mine / "clusters.csv")
    return Case(
        ["cluster", "digits", *TINY, "--out", mine], ("--out", mine, "new or empty"), [mine]
    )


@case
def case_classify_into_an_image_folder(d: Path, run: Path) -> Case:
    pets = write_image_folder(d / "pets")
    out = pets / "cats"  # a run written here would join the images
    return Case(["classify", pets, *TINY, "--out", out], ("--out", out), [pets])


@case
def case_cluster_into_a_new_folder_inside_the_data(d: Path, run: Path) -> Case:
    # Before: accepted; the next command on the folder read montage.png as an image of a
    # class named after the run.
    pets = write_image_folder(d / "pets")
    out = pets / "myrun"
    return Case(
        ["cluster", pets, *TINY, "--out", out], ("--out", out, "data folder"), [pets], [out]
    )


@case
def case_prepare_manifest_into_an_unfinished_run(d: Path, run: Path) -> Case:
    # Before: the manifest was written as the run's metrics.json, which the resumed run
    # then replaced; the prepared array lost its labels and split.
    r = _run_copy(run, d)
    (r / "metrics.json").unlink()  # killed before its end
    out = r / "metrics.npy"
    return Case(["prepare", "digits", "--out", out], (r / "metrics.json", "run"), [r], [out])


@case
def case_demo_into_a_folder_of_files(d: Path, run: Path) -> Case:
    mine = d / "mine"
    mine.mkdir()
    _existing(mine / "samples.png")
    return Case(["demo", "--out", mine, "--epochs", "1"], ("--out", mine), [mine])


# --- outputs --------------------------------------------------------------------------------
@case
def case_generate_jpg(d: Path, run: Path) -> Case:
    out = _existing(d / "x.jpg")
    return Case(["generate", run, "--out", out], ("--out", out, ".png"), [out, run])


@case
def case_generate_a_billion_samples(d: Path, run: Path) -> Case:
    # Before: a 40 GB allocation failed with a traceback, exit 1.
    out = d / "big.png"
    return Case(["generate", run, "--n", "1000000000", "--out", out], ("--n", "10000"), [run])


@case
def case_report_one_point_map(d: Path, run: Path) -> Case:
    # A latent map of one point ended in a traceback.
    return Case(["report", run, "--max-points", "1"], ("--max-points",), [run])


@case
def case_embed_txt(d: Path, run: Path) -> Case:
    out = _existing(d / "z.txt")
    return Case(["embed", run, "digits", "--out", out], ("--out", out, ".npy"), [out, run])


@case
def case_embed_over_a_prepared_dataset(d: Path, run: Path) -> Case:
    out = _existing(d / "prep.npy")  # another dataset, prepared: array and manifest
    manifest = d / "prep.json"
    manifest.write_text('{"format": "vaekit-prepared", "n_train": 1}')
    return Case(["embed", run, "digits", "--out", out], (out, "prepared dataset"), [out, manifest])


@case
def case_evaluate_out_over_a_prepared_manifest(d: Path, run: Path) -> Case:
    # Before: the metrics replaced the manifest; the dataset lost its labels, and the next
    # 'embed --out' over its array was no longer refused.
    array = _existing(d / "prep.npy")
    manifest = d / "prep.json"
    manifest.write_text('{"format": "vaekit-prepared", "n_train": 1}')
    return Case(
        ["evaluate", run, "--out", manifest], (manifest, "prepared dataset"), [array, manifest]
    )


@case
def case_embed_into_proc(d: Path, run: Path) -> Case:
    return Case(["embed", run, "digits", "--out", "/proc/x.npy"], ("/proc/x.npy",), [run])


@case
def case_train_into_proc(d: Path, run: Path) -> Case:
    return Case(["train", "digits", *TINY, "--out", "/proc/vaekit-run"], ("/proc/vaekit-run",))


@case
def case_evaluate_out_in_proc(d: Path, run: Path) -> Case:
    return Case(["evaluate", run, "--out", "/proc/m.json"], ("/proc/m.json",), [run])


@case
def case_generate_onto_a_folder(d: Path, run: Path) -> Case:
    out = d / "grid.png"
    out.mkdir()
    keep = _existing(out / "keep.txt")
    return Case(["generate", run, "--out", out], (out, "folder"), [keep, run])


@case
def case_embed_below_a_file(d: Path, run: Path) -> Case:
    f = _existing(d / "afile")
    return Case(["embed", run, "digits", "--out", f / "z.npy"], (f / "z.npy",), [f, run])


@case
def case_train_out_is_a_file(d: Path, run: Path) -> Case:
    f = _existing(d / "afile")
    return Case(["train", "digits", *TINY, "--out", f], (f,), [f])


#: Cases re-run as real processes of the console script, to check that the preloaded runner
#: answers as they do (test_cli_commands.py compares a real ``python -m vaekit --help``).
SPAWNED = ("other_version_generate",)


# --- running them ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    case: Case
    before: dict[Path, bytes | None]
    result: subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Outcomes:
    bad: dict[str, Outcome]
    root: Path
    skip_bad: subprocess.CompletedProcess[str]
    image_size: subprocess.CompletedProcess[str]
    spawned: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def outcomes(
    fast_cli: Cli | Preloaded,
    cli: Cli,
    trained_run: TrainedRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Outcomes:
    root = tmp_path_factory.mktemp("bad-input")
    cases, before = {}, {}
    for name, make in CASES.items():
        d = root / name
        d.mkdir()
        cases[name] = make(d, trained_run.path)
        before[name] = snapshot(cases[name].protect)
    jobs: dict[str, list[str | Path]] = {name: c.args for name, c in cases.items()}
    # The fixes the messages suggest must work.
    corrupt, mixed = root / "corrupt_image" / "pets", root / "mixed_sizes" / "pets"
    jobs["--skip-bad"] = ["train", corrupt, *TINY, "--skip-bad", "--out", root / "skipped"]
    jobs["--image-size"] = ["train", mixed, *TINY, "--image-size", "8", "--out", root / "sized"]
    # A few again as real processes, while the others run.
    with ThreadPoolExecutor(max_workers=len(SPAWNED)) as pool:
        started = {
            name: cli.start(pool, *cases[name].args, command=[console_script()]) for name in SPAWNED
        }
        results = fast_cli.many(jobs)
        spawned = {name: future.result() for name, future in started.items()}
    bad = {name: Outcome(cases[name], before[name], results[name]) for name in cases}
    return Outcomes(bad, root, results["--skip-bad"], results["--image-size"], spawned)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_and_damages_nothing(outcomes: Outcomes, name: str) -> None:
    if "_proc" in name and not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc as an unwritable folder")
    outcome = outcomes.bad[name]
    line = assert_user_error(outcome.result, *outcome.case.names)
    for advice in outcome.case.unsaid:
        assert advice not in line, f"{advice!r} suggested in: {line}"
    assert snapshot(outcome.case.protect) == outcome.before, "a file was changed"
    for path in outcome.case.absent:
        assert not path.exists(), f"{path} was created"
    for pattern in (".*.tmp", ".vaekit-probe.*"):  # atomic writes, --out checks
        assert not list((outcomes.root / name).rglob(pattern)), "temporary files left behind"


def test_skip_bad_trains_with_one_warning_naming_the_image(outcomes: Outcomes) -> None:
    res = outcomes.skip_bad
    assert_ok(res)
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cats/bad.png" in warnings[0], res.stderr
    assert "Traceback" not in res.stderr
    config = json.loads((outcomes.root / "skipped" / "config.json").read_text())
    assert config["metadata"]["n_train"] + config["metadata"]["n_test"] == 10  # bad one left out


def test_image_size_resolves_mixed_sizes(outcomes: Outcomes) -> None:
    res = outcomes.image_size
    assert_ok(res)
    config = json.loads((outcomes.root / "sized" / "config.json").read_text())
    assert config["metadata"]["image_shape"] == [1, 8, 8]


@pytest.mark.parametrize("name", SPAWNED)
def test_spawned_processes_answer_like_the_preloaded_ones(outcomes: Outcomes, name: str) -> None:
    real, preloaded = outcomes.spawned[name], outcomes.bad[name].result
    assert (real.returncode, real.stdout, real.stderr) == (
        preloaded.returncode,
        preloaded.stdout,
        preloaded.stderr,
    )
