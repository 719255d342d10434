"""Prepared datasets: one memory-mapped ``uint8`` array plus a JSON manifest.

``vaekit prepare DATA --out FILE.npy`` converts any supported source once into

* ``FILE.npy`` - a plain NumPy file holding ``uint8 (N_train + N_test, C, H, W)``: the
  training images, then the test images. It is opened with ``mmap_mode="r"`` (never
  ``allow_pickle``), so only the pages a batch touches are read and memory use does not
  grow with the dataset;
* ``FILE.json`` - the manifest: format name and version, shape, the split sizes, labels,
  class names and the source path of every image.

Image folders are decoded in blocks straight into the memory map, so folders larger than
memory can be prepared; other sources (IDX, ``.npz``, built-in names) are loaded once and
written. Training, ``transform`` and clustering then read the array one batch at a time.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.arrays import Color, open_npy
from vaekit.data.dataset import UNLABELED, Dataset, seeded_split
from vaekit.data.images import decode_images, list_image_folder, report_skipped
from vaekit.errors import DataError

FORMAT = "vaekit-prepared"
VERSION = 1
MANIFEST_SUFFIX = ".json"
#: Image files decoded per block while preparing a folder (bounds the memory in use).
PREPARE_BLOCK = 4096
#: Bytes of source rows read per block while preparing a ``.npy`` file.
PREPARE_BLOCK_BYTES = 16 * 2**20


def manifest_path(array_path: str | os.PathLike[str]) -> Path:
    """Return the manifest beside a prepared array: ``data.npy`` -> ``data.json``."""
    return Path(array_path).with_suffix(MANIFEST_SUFFIX)


def array_path(manifest: str | os.PathLike[str]) -> Path:
    """Return the array beside a manifest: ``data.json`` -> ``data.npy``."""
    return Path(manifest).with_suffix(".npy")


def is_prepared(path: Path) -> bool:
    """Whether ``path`` is a prepared array (``.npy`` with a vaekit manifest) or manifest.

    A manifest is recognised by its format name anywhere in it, not by its layout: one saved
    again by a JSON tool (keys sorted, no spaces) must not turn its array into a plain
    ``.npy`` with a new split and no labels; :func:`load_prepared` then checks it in full.
    """
    name = path.name.lower()
    if name.endswith(".npy"):
        manifest = manifest_path(path)
    elif name.endswith(MANIFEST_SUFFIX):
        manifest = path
    else:
        return False
    token, tail = FORMAT.encode(), b""
    try:
        with open(manifest, "rb") as f:
            while chunk := f.read(1 << 20):
                if token in tail + chunk:
                    return True
                tail = chunk[-len(token) :]
    except OSError:
        return False
    return False


# --- reading ------------------------------------------------------------------------------
def load_prepared(
    path: Path,
    shown: str,
    *,
    image_size: tuple[int, int] | None = None,
    color: Color = "auto",
) -> Dataset:
    """Open a prepared dataset without reading its images.

    Parameters
    ----------
    path : pathlib.Path
        The ``.npy`` array or its ``.json`` manifest.
    shown : str
        The path as the user wrote it, for messages.
    image_size : (int, int) or None
        Must equal the prepared ``(H, W)`` when given (prepared images are not resized).
    color : {"auto", "grayscale", "rgb"}
        Must match the prepared channels unless ``"auto"``.

    Returns
    -------
    Dataset
        ``x_train`` and ``x_test`` are read-only views of one memory map.

    Raises
    ------
    DataError
        If the manifest is unreadable or does not match the array.
    """
    manifest = path if path.name.lower().endswith(MANIFEST_SUFFIX) else manifest_path(path)
    arr_file = array_path(manifest)
    redo = f"run 'vaekit prepare' again to rebuild {str(arr_file)!r}"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise DataError(f"{str(manifest)!r} is not a version-{VERSION} vaekit manifest; {redo}")
        x = open_npy(arr_file, str(arr_file))  # checks the header: truncated, negative sizes
        n_train, n_test = int(meta["n_train"]), int(meta["n_test"])
        shape = tuple(int(s) for s in meta["shape"])
        classes = tuple(str(c) for c in meta["classes"])
        y = None if meta["labels"] is None else np.asarray(meta["labels"])
        if y is not None and y.dtype.kind not in "iu":
            raise ValueError("its labels are not all integers")
        paths = meta["paths"]
        p = None if paths is None else tuple(str(s) for s in paths)
    except FileNotFoundError as exc:
        raise DataError(f"{exc.filename!r} is missing; {redo}") from None
    except DataError:  # a ValueError too, but already says what to do
        raise
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise DataError(
            f"prepared data {shown!r} cannot be read ({type(exc).__name__}: {exc}); {redo}"
        ) from None
    if (
        x.dtype != np.uint8
        or x.shape != shape
        or n_train + n_test != shape[0]
        or n_train < 1
        or n_test < (shape[0] > 1)  # every split holds out a test image; one image cannot
    ):
        raise DataError(
            f"{str(arr_file)!r} holds {x.dtype} {x.shape} but its manifest says uint8 {shape} "
            f"with {n_train} + {n_test} images; {redo}"
        )
    want_c = {"grayscale": 1, "rgb": 3}.get(color)
    if (image_size is not None and tuple(image_size) != shape[2:]) or want_c not in (
        None,
        shape[1],
    ):
        raise DataError(
            f"{shown!r} was prepared as {'x'.join(map(str, shape[1:]))} (CxHxW) images; drop "
            "--image-size/--color or prepare it again with the ones you need"
        )
    y = None if y is None else y.astype(np.int64)
    if (y is not None and y.shape != (shape[0],)) or (p is not None and len(p) != shape[0]):
        raise DataError(f"the manifest {str(manifest)!r} does not match its array; {redo}")
    return Dataset(
        name=shown,
        x_train=x[:n_train],
        y_train=None if y is None else y[:n_train],
        x_test=x[n_train:],
        y_test=None if y is None else y[n_train:],
        classes=classes,
        paths_train=None if p is None else p[:n_train],
        paths_test=None if p is None else p[n_train:],
        official_split=bool(meta.get("official_split", True)),
    )


def all_images(ds: Dataset) -> np.ndarray:
    """Training then test images as one array, without a copy when they share a memory map.

    A prepared dataset stores the test rows right after the training rows, so the two
    parts are views of one file and this returns the whole file's view; other datasets are
    concatenated in memory.
    """
    a, b = ds.x_train, ds.x_test
    base = a.base if isinstance(a.base, np.memmap) else None
    if (
        base is not None
        and b.base is base
        and a.flags.c_contiguous
        and b.flags.c_contiguous
        and len(a) + len(b) == len(base)
        and a.ctypes.data == base.ctypes.data
        and b.ctypes.data == base.ctypes.data + a.nbytes
    ):
        return np.asarray(base)
    return np.concatenate([a, b])


# --- writing ------------------------------------------------------------------------------
def _manifest(
    source: str,
    shape: tuple[int, ...],
    n_train: int,
    labels: np.ndarray | None,
    classes: tuple[str, ...],
    paths: list[str] | None,
    official_split: bool,
) -> dict[str, Any]:
    return {
        "format": FORMAT,  # is_prepared() looks for it
        "version": VERSION,
        "source": source,
        "dtype": "uint8",
        "shape": list(shape),
        "n_train": n_train,
        "n_test": shape[0] - n_train,
        "official_split": official_split,
        "classes": list(classes),
        "labels": None if labels is None else [int(v) for v in labels],
        "paths": paths,
    }


#: ``posix_fallocate`` errors that mean "this file system cannot reserve", not "no space".
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}


def _new_array_file(tmp: Path, out: Path, shape: tuple[int, ...]) -> np.memmap:
    """Create a uint8 ``.npy`` memory map at ``tmp``, its disk blocks reserved up front.

    ``open_memmap`` makes a sparse file; writing into its pages on a full disk kills the
    process with SIGBUS. Reserving the blocks first turns that into an ``OSError`` that
    names ``out``, the file the user asked for.
    """
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                del mm
                raise OSError(exc.errno, exc.strerror, str(out)) from None
        finally:
            os.close(fd)
    return mm


def _commit(tmp_array: Path, out: Path, meta: dict[str, Any]) -> None:
    """Put the manifest in place, then the finished array (each renamed atomically).

    Any old array goes first and the new one comes last, so a kill in between leaves a
    manifest without its array, which :func:`load_prepared` reports as missing; never an
    array beside another array's manifest, nor one without a manifest, which would load as
    a plain ``.npy`` with a new split and no labels.
    """
    tmp_manifest = out.with_name(f".{out.stem}.json.tmp")
    try:
        tmp_manifest.write_text(json.dumps(meta) + "\n", encoding="utf-8")
    except OSError as exc:
        tmp_manifest.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(manifest_path(out))) from None
    out.unlink(missing_ok=True)
    os.replace(tmp_manifest, manifest_path(out))
    os.replace(tmp_array, out)


def _tmp_for(out: Path) -> Path:
    return out.with_name(f".{out.name}.tmp")


def write_prepared(ds: Dataset, out: Path, source: str) -> dict[str, Any]:
    """Write an in-memory :class:`Dataset` as a prepared array + manifest; return the manifest."""
    shape = (len(ds.x_train) + len(ds.x_test), *ds.image_shape)
    tmp = _tmp_for(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # as every other --out FILE
        mm = _new_array_file(tmp, out, shape)
        mm[: len(ds.x_train)] = ds.x_train
        mm[len(ds.x_train) :] = ds.x_test
        mm.flush()
        del mm
        labels = ds.all_labels()  # a part without labels (npz without y_test) is unlabeled
        paths = None
        if ds.paths_train is not None and ds.paths_test is not None:
            paths = [*ds.paths_train, *ds.paths_test]
        meta = _manifest(
            source, shape, len(ds.x_train), labels, ds.classes, paths, ds.official_split
        )
        _commit(tmp, out, meta)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def prepare_image_folder(
    root: Path,
    shown: str,
    out: Path,
    *,
    image_size: tuple[int, int] | None,
    color: Color,
    skip_bad: bool,
    test_fraction: float,
    random_state: int,
) -> dict[str, Any]:
    """Decode an image folder block by block into a prepared array; return the manifest.

    The folder rules are those of ``load_dataset`` (class sub-folders, ``unlabeled/``,
    ``train/``/``test/``); without ``test/`` the seeded split is drawn from the listing
    before any image is decoded. At most ``PREPARE_BLOCK`` decoded images are in memory.
    """
    train, test = list_image_folder(root, shown)
    names = train.names + (test.names if test is not None else [])
    classes = tuple(sorted({n for n in names if n is not None}))
    index = {name: k for k, name in enumerate(classes)}
    y_all = np.array([UNLABELED if n is None else index[n] for n in names], dtype=np.int64)
    files = train.files + (test.files if test is not None else [])
    rels = train.rels + (test.rels if test is not None else [])
    if test is None:
        tr, te = seeded_split(
            len(files), y_all if classes else None, test_fraction, random_state,
            source=repr(shown),
        )  # fmt: skip
        order = np.concatenate([tr, te])
        n_train_listed = len(tr)
    else:
        order = np.arange(len(files))
        n_train_listed = len(train.files)

    tmp = _tmp_for(out)
    mm: np.memmap | None = None
    kept: list[int] = []  # positions in ``order`` of the images written, in row order
    first = ""  # the first image written, named if a later block's size differs
    bad: list[str] = []  # skipped files of all blocks, reported once
    n_train = 0
    try:
        for start in range(0, len(order), PREPARE_BLOCK):
            block = order[start : start + PREPARE_BLOCK]
            decoded = decode_images(
                [files[i] for i in block],
                [rels[i] for i in block],
                shown,
                image_size=image_size,
                color=color,
                skip_bad=skip_bad,
            )
            bad += decoded.bad
            x = decoded.x
            if x is None:  # every file of this block was skipped
                continue
            if mm is None:
                first = rels[block[decoded.kept[0]]]
                shape = (len(order), *x.shape[1:])
                out.parent.mkdir(parents=True, exist_ok=True)
                mm = _new_array_file(tmp, out, shape)
            elif x.shape[1:] != mm.shape[1:]:
                if color == "auto" and x.shape[2:] == mm.shape[2:]:
                    # Gray blocks first, a colour image later: "auto" means three channels
                    # for the whole folder, as load_dataset gives. Start again in RGB.
                    del mm
                    return prepare_image_folder(
                        root, shown, out, image_size=image_size, color="rgb",
                        skip_bad=skip_bad, test_fraction=test_fraction,
                        random_state=random_state,
                    )  # fmt: skip
                later = rels[block[decoded.kept[0]]]
                raise DataError(
                    f"images of {shown!r} differ in size ({first!r} is "
                    f"{'x'.join(map(str, mm.shape[1:]))} CxHxW, {later!r} is "
                    f"{'x'.join(map(str, x.shape[1:]))}); pass --image-size and --color to make "
                    "them all alike"
                )
            mm[len(kept) : len(kept) + len(x)] = x
            kept += (start + decoded.kept).tolist()
        # report_skipped < prepare_image_folder < prepare < its caller
        report_skipped(bad, len(order), len(kept), shown, stacklevel=4)
        assert mm is not None
        n_train = sum(1 for k in kept if k < n_train_listed)
        # A part left empty (train, or test: always listed but for a single image)
        if n_train == 0 or (n_train == len(kept) and len(order) > 1):
            raise DataError(f"no readable images left in a part of {shown!r}; fix the images")
        if len(kept) < len(order):  # some images were skipped: shrink the file
            mm = _shrunk(mm, tmp, len(kept), out)
        shape = mm.shape
        mm.flush()
        del mm
        src = order[np.asarray(kept)]
        labels = y_all[src] if classes else None
        # Absolute: the manifest is read from other working folders than this one.
        paths = [os.path.abspath(os.path.join(root, rels[i])) for i in src]  # ~ expanded
        meta = _manifest(shown, shape, n_train, labels, classes, paths, test is not None)
        _commit(tmp, out, meta)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def _shrunk(mm: np.memmap, tmp: Path, n: int, final: Path) -> np.memmap:
    """Copy the first ``n`` rows of ``mm`` (file ``tmp``) into a new ``tmp``; return it.

    ``final`` is the file the user asked for, named in errors.
    """
    smaller = tmp.with_name(tmp.name + "2")
    try:
        out = _new_array_file(smaller, final, (n, *mm.shape[1:]))
        step = max(1, PREPARE_BLOCK)
        for i in range(0, n, step):
            out[i : i + step] = mm[i : min(n, i + step)]
        out.flush()
        del mm
        shutil.move(smaller, tmp)
        return np.load(tmp, mmap_mode="r+", allow_pickle=False)
    finally:
        smaller.unlink(missing_ok=True)


def prepare(
    spec: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    color: Color = "auto",
    skip_bad: bool = False,
    test_fraction: float = 0.2,
    random_state: int = 0,
) -> dict[str, Any]:
    """Convert a dataset once into a memory-mapped ``.npy`` plus a ``.json`` manifest.

    Parameters
    ----------
    spec : str or os.PathLike
        Anything :func:`vaekit.load_dataset` accepts. Image folders and ``.npy`` files are
        converted block by block (they may be larger than memory); other sources are
        loaded, then written.
    out : str or os.PathLike
        The array file to write, ending in ``.npy``; the manifest goes beside it with the
        suffix ``.json``. Both are written atomically (temporary file, then rename).
    image_size, color, skip_bad, test_fraction, random_state
        As for :func:`vaekit.load_dataset`; the split is fixed once here.

    Returns
    -------
    dict
        The manifest (without having to read it back).

    Examples
    --------
    >>> meta = prepare("digits", "/tmp/digits.npy")  # doctest: +SKIP
    >>> load_dataset("/tmp/digits.npy").x_train.shape  # doctest: +SKIP
    (1437, 1, 8, 8)
    """
    from vaekit.data.dataset import check_split_args
    from vaekit.data.idx import find_idx_files
    from vaekit.data.registry import (
        _check_color,
        _check_image_size,
        _known_name,
        load_dataset,
    )

    out = Path(out).expanduser()  # as the source is: "~/photos.npy" is not a folder "~"
    if not out.name.lower().endswith(".npy"):
        raise DataError(f"the prepared file must end in .npy, got {str(out)!r}")
    shown = os.fspath(spec)
    path = Path(shown).expanduser()
    folder = _known_name(spec) is None and path.is_dir() and not find_idx_files(path)
    if folder and not is_prepared(path):
        return prepare_image_folder(
            path,
            shown,
            out,
            image_size=_check_image_size(image_size),
            color=color,
            skip_bad=skip_bad,
            test_fraction=test_fraction,
            random_state=random_state,
        )
    if path.is_file() and path.name.lower().endswith(".npy") and not is_prepared(path):
        _check_color(color)
        check_split_args(test_fraction, random_state)
        return prepare_npy(
            path,
            shown,
            out,
            image_size=_check_image_size(image_size),
            color=color,
            test_fraction=test_fraction,
            random_state=random_state,
        )
    ds = load_dataset(
        spec,
        image_size=image_size,
        color=color,
        skip_bad=skip_bad,
        test_fraction=test_fraction,
        random_state=random_state,
    )
    return write_prepared(ds, out, ds.name)


def prepare_npy(
    path: Path,
    shown: str,
    out: Path,
    *,
    image_size: tuple[int, int] | None,
    color: Color,
    test_fraction: float,
    random_state: int,
) -> dict[str, Any]:
    """Convert a ``.npy`` file block by block from a memory map; return the manifest.

    The rows, the seeded split and the conversions are those of ``load_dataset``, which
    would hold the whole array in memory; here one block of ``PREPARE_BLOCK_BYTES`` (at
    most ``PREPARE_BLOCK`` images) is, with its conversion.
    """
    from vaekit.data.registry import as_requested

    src = open_npy(path, shown)
    if src.ndim not in (3, 4) or len(src) == 0:  # as_requested says what is wrong (shape
        as_requested(src, shown, image_size=image_size, color=color)  # checks read no pixels)
    train, test = seeded_split(len(src), None, test_fraction, random_state, source=repr(shown))
    order = np.concatenate([train, test])
    block = max(1, min(PREPARE_BLOCK, PREPARE_BLOCK_BYTES // max(1, src[:1].nbytes)))
    tmp = _tmp_for(out)
    mm: np.memmap | None = None
    try:
        for start in range(0, len(order), block):
            rows = order[start : start + block]
            x = as_requested(src[rows], shown, image_size=image_size, color=color)
            if mm is None:
                mm = _new_array_file(tmp, out, (len(order), *x.shape[1:]))
            mm[start : start + len(x)] = x
        assert mm is not None
        shape = mm.shape
        mm.flush()
        del mm
        meta = _manifest(shown, shape, len(train), None, (), None, False)
        _commit(tmp, out, meta)
    finally:
        tmp.unlink(missing_ok=True)
    return meta
