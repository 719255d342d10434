"""Array validation and conversion: numpy files, labels, colour and size, estimator input."""

from __future__ import annotations

import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from PIL import Image

from vaekit.data.dataset import UNLABELED
from vaekit.errors import DataError, DataTypeError, NearlyBlackWarning

Color = Literal["auto", "grayscale", "rgb"]

#: Channel counts vaekit accepts: grayscale or RGB.
CHANNELS = (1, 3)
#: Largest value of an integer image; float images lie in [0, 1].
MAX_PIXEL = 255
#: How far float input may stray from [0, 1] (rounding errors) before it is refused;
#: values that close are clipped.
FLOAT_SLACK = 1e-6
#: Integer images whose brightest pixel is below this are warned about: read as 0..255
#: they are nearly black, which usually means another scale (digits' 0..16, 0/1 masks).
DIM_INTEGER_MAX = 32
#: ITU-R BT.601 luma weights in thousandths, the ones Pillow's ``convert("L")`` uses.
LUMA_WEIGHTS_PER_MILLE = (299, 587, 114)
#: npz keys for the training images and labels, in the order they are looked up.
NPZ_IMAGE_KEYS = ("x", "images")
NPZ_LABEL_KEYS = ("y", "labels")
NPY_MAGIC = b"\x93NUMPY"
#: Threads for Pillow work (decoding, resizing) and images each resize task handles.
MAX_THREADS = 8
RESIZE_BLOCK = 1024


def thread_count() -> int:
    """Threads to use for Pillow work: at most :data:`MAX_THREADS`, at most one per CPU.

    Returns
    -------
    int
        A positive thread count.
    """
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))


def _check_numeric(x: np.ndarray, what: str) -> None:
    """Refuse string, complex and other non-real dtypes (object arrays are converted first)."""
    if x.dtype.kind == "c":
        raise DataError(
            f"{what} has dtype {x.dtype}. Complex data not supported; pass real numbers"
        )
    if x.dtype.kind not in "biuf":
        raise DataError(f"{what} has dtype {x.dtype}; expected numbers (uint8 0-255 or float 0-1)")


def _check_not_empty(x: np.ndarray, what: str) -> None:
    if x.ndim == 2 and x.shape[1] == 0:
        # Wording shared with scikit-learn's check_array, which tools grep for.
        raise DataError(
            f"{what} has 0 feature(s) (shape={x.shape}) while a minimum of 1 is required."
        )
    if x.size == 0:
        raise DataError(f"{what} is empty (shape {x.shape}); give at least one image")


def warn_if_dim(hi: Any, what: str, advice: str | None = None) -> None:
    """Warn when integer images whose brightest pixel is ``hi`` are nearly black.

    Integers are read as intensities out of 255; a brightest pixel in ``1..31`` almost
    surely means another scale (scikit-learn's 0..16 digits, a 0/1 mask). ``advice`` says
    what to do (default: for arrays, divide by ``hi``).
    """
    if 0 < hi < DIM_INTEGER_MAX:
        if advice is None:
            advice = (
                f"if {hi} means white, divide by {hi} and give floats in [0, 1] (or booleans "
                "for 0/1 masks)"
            )
        warnings.warn(
            f"{what} holds integers of at most {hi}, read as intensities out of "
            f"{MAX_PIXEL}: the images are nearly black; {advice}",
            NearlyBlackWarning,
            stacklevel=4,
        )


def row_blocks(n_rows: int, row_size: int, values: int = 1 << 22) -> Iterator[slice]:
    """Slices of ``n_rows`` rows, each of about ``values`` values when a row holds ``row_size``.

    For work whose temporaries would be too large for all rows at once (32 MB of float64
    per block by default).
    """
    step = max(1, values // max(1, row_size))
    for start in range(0, n_rows, step):
        yield slice(start, start + step)


def _row_blocks(x: np.ndarray) -> Iterator[slice]:
    """:func:`row_blocks` of the rows of ``x``."""
    return row_blocks(len(x), math.prod(x.shape[1:]))


def _check_values(x: np.ndarray, what: str, *, warn_dim: bool = True) -> None:
    """Integers must lie in 0..255, floats must be finite and lie in [0, 1].

    Floats may stray from [0, 1] by ``FLOAT_SLACK`` (rounding, as ``MinMaxScaler``'s
    1.0000000000000002); the converters clip them.

    With ``warn_dim``, integer images whose brightest pixel is below ``DIM_INTEGER_MAX``
    get a warning (they are valid, but almost surely on another scale).
    """
    kind = x.dtype.kind
    if kind in "iu":
        lo, hi = x.min(), x.max()
        if lo < 0 or hi > MAX_PIXEL:
            raise DataError(
                f"{what} holds integers from {lo} to {hi}; integer images must lie in "
                f"0..{MAX_PIXEL}"
            )
        if warn_dim and x.ndim in (2, 4):  # images (N, C, H, W) or features (N, F)
            warn_if_dim(hi, what)
    elif kind == "f":
        n_bad = x.size - sum(int(np.count_nonzero(np.isfinite(x[r]))) for r in _row_blocks(x))
        if n_bad:
            raise DataError(
                f"{what} holds {n_bad} NaN or infinite value(s); remove or replace them"
            )
        lo, hi = x.min(), x.max()
        if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:
            n_out = int(np.count_nonzero((x < -FLOAT_SLACK) | (x > 1 + FLOAT_SLACK)))
            fix = (
                "rescale feature columns, e.g. sklearn.preprocessing.MinMaxScaler(clip=True)"
                if x.ndim == 2
                else f"divide 0-{MAX_PIXEL} data by {MAX_PIXEL}, or save it as uint8"
            )
            raise DataError(
                f"{what} holds {n_out} float(s) outside [0, 1] (from {lo:.9g} to {hi:.9g}); "
                f"vaekit models intensities, so floats must lie in [0, 1] ({fix})"
            )


def to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """Return a ``(N, C, H, W)`` view of a 3-D or 4-D image array."""
    if x.ndim == 3:  # (N, H, W) -> (N, 1, H, W)
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in CHANNELS:
            return x
        if x.shape[3] in CHANNELS:  # channels last: (N, H, W, C) -> (N, C, H, W)
            return x.transpose(0, 3, 1, 2)
        raise DataError(
            f"{what} has shape {x.shape}; 4-D images need 1 or 3 channels, as (N, C, H, W) "
            f"or (N, H, W, C)"
        )
    fix = ""
    if x.ndim == 2:  # flattened images: the side is a guess only when the row is a square
        side = math.isqrt(x.shape[1])
        shape = f"({x.shape[0]}, {side}, {side})" if side * side == x.shape[1] else "(N, H, W)"
        fix = f"; reshape flattened images to {shape} (one image: (1, H, W)) and save again"
    raise DataError(
        f"{what} has shape {x.shape}; expected images as (N, H, W), (N, C, H, W) or "
        f"(N, H, W, C){fix}"
    )


def to_uint8_images(x: np.ndarray, what: str, *, warn_dim: bool = True) -> np.ndarray:
    """Validate an image array and return it as contiguous ``uint8 (N, C, H, W)``.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with ``C`` in ``{1, 3}``;
        integers in 0..255, floats in [0, 1] or booleans.
    what : str
        How to name the array in error messages, e.g. ``"file 'a.npy'"``.
    warn_dim : bool, default=True
        Warn when integer images are nearly black (see ``DIM_INTEGER_MAX``); callers
        converting an array that was checked already pass False.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(N, C, H, W)``; floats are scaled by 255 and rounded.

    Raises
    ------
    DataError
        If the dtype, shape or values are not those of an image array.
    """
    _check_numeric(x, what)
    x = to_nchw(x, what)
    _check_not_empty(x, what)
    _check_values(x, what, warn_dim=warn_dim)
    if x.dtype.kind == "f":
        out = np.empty(x.shape, dtype=np.uint8)
        for rows in _row_blocks(x):  # float temporaries of one block, not of the whole array
            out[rows] = np.rint(x[rows] * np.float32(MAX_PIXEL))
        return out
    if x.dtype.kind == "b":
        x = x * np.uint8(MAX_PIXEL)
    return np.ascontiguousarray(x, dtype=np.uint8)


def as_image_array(x: object, *, name: str = "x") -> np.ndarray:
    """Validate estimator input and return it as a float32 array in [0, 1].

    Parameters
    ----------
    x : array-like
        Images as ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` (``C`` in ``{1, 3}``),
        or feature vectors as ``(N, F)``. Integers are read as 0..255 pixel values, floats
        must already lie in [0, 1], booleans count as 0 or 1.
    name : str, default="x"
        How to name the input in error messages.

    Returns
    -------
    numpy.ndarray
        C-contiguous ``float32`` array of shape ``(N, C, H, W)`` for images or ``(N, F)`` for
        vectors. It may share memory with ``x`` when ``x`` already is such an array.

    Raises
    ------
    DataError
        For non-numeric or object arrays, a wrong number of dimensions, empty input,
        NaN/inf, or values out of range.

    Examples
    --------
    >>> import numpy as np
    >>> as_image_array(np.full((2, 8, 8), 255, dtype=np.uint8)).shape
    (2, 1, 8, 8)
    """
    if sp.issparse(x):
        raise DataError(
            f"{name} is a sparse matrix; sparse input is not supported, pass X.toarray()"
        )
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name} cannot be read as an array ({exc}); pass a numpy array") from exc
    if arr.dtype == object:
        # Numbers boxed as Python objects (e.g. from pandas) are read as floats.
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataTypeError(
                f"{name} has dtype object with non-numbers ({exc}); pass a numeric array"
            ) from None
    _check_numeric(arr, name)
    if arr.ndim != 2:
        arr = to_nchw(arr, name)
    _check_not_empty(arr, name)
    _check_values(arr, name)
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float32) / np.float32(MAX_PIXEL)
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.dtype.kind == "f" and out.size and (out.min() < 0 or out.max() > 1):
        out = np.clip(out, 0, 1)  # within FLOAT_SLACK of the range; a copy, not the user's
    return out


def _labels_1d(y: np.ndarray, what: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # Keras-style (N, 1) column
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what} has shape {y.shape}; labels must be a 1-D array, one per image")
    return y


def encode_labels(
    labels: list[tuple[np.ndarray | None, str]],
) -> tuple[list[np.ndarray | None], tuple[str, ...]]:
    """Turn raw label arrays into class indices over one shared, sorted class list.

    Integer labels keep their order (``-1`` stays "unlabeled"); string labels are sorted.
    Class ``k`` is named after the ``k``-th smallest distinct value, so labels ``0..K-1`` map
    to themselves and are named ``"0"`` .. ``"K-1"``.

    Parameters
    ----------
    labels : list of (numpy.ndarray or None, str)
        Each raw label array (``None`` when absent) with its name for error messages.

    Returns
    -------
    encoded : list of numpy.ndarray or None
        ``int64`` class indices, ``-1`` for unlabeled, in the input order.
    classes : tuple of str
        Class names.

    Raises
    ------
    DataError
        For labels that are neither integers nor strings, NaN or fractional values, labels
        below -1, or integer and string labels mixed.
    """
    cleaned: list[np.ndarray | None] = []
    kinds = set()
    for y, what in labels:
        if y is None:
            cleaned.append(None)
            continue
        y = _labels_1d(np.asarray(y), what)
        kind = y.dtype.kind
        if kind in "US":
            y = y.astype(str)
            kinds.add("str")
        elif kind in "biuf":
            if kind == "f":
                if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                    raise DataError(
                        f"{what} holds NaN or fractional labels; labels must be whole numbers"
                    )
            y = y.astype(np.int64)
            if y.size and y.min() < UNLABELED:
                raise DataError(
                    f"{what} holds label {y.min()}; labels must be class numbers >= 0, or "
                    f"{UNLABELED} for an unlabeled image"
                )
            kinds.add("int")
        else:
            raise DataError(f"{what} has dtype {y.dtype}; labels must be integers or strings")
        cleaned.append(y)
    if len(kinds) > 1:
        names = " and ".join(what for _, what in labels)
        raise DataError(f"{names} mix integer and string labels; use one kind")
    present = [y for y in cleaned if y is not None]
    if not present:
        return cleaned, ()
    values = np.unique(np.concatenate(present))
    if "int" in kinds:
        values = values[values != UNLABELED]
    classes = tuple(str(v) for v in values)
    encoded: list[np.ndarray | None] = []
    for y in cleaned:
        if y is None:
            encoded.append(None)
            continue
        idx = np.searchsorted(values, y).astype(np.int64)
        if "int" in kinds:
            idx[y == UNLABELED] = UNLABELED
        encoded.append(idx)
    return encoded, classes


def convert_color(x: np.ndarray, color: Color) -> np.ndarray:
    """Convert ``uint8 (N, C, H, W)`` images to the requested colour mode.

    Parameters
    ----------
    x : numpy.ndarray
        ``uint8`` images with 1 or 3 channels.
    color : {"auto", "grayscale", "rgb"}
        ``"auto"`` keeps the channels; ``"grayscale"`` takes the BT.601 luma of RGB images;
        ``"rgb"`` repeats a gray channel three times.

    Returns
    -------
    numpy.ndarray
        ``uint8`` images with the requested channels.
    """
    if color == "grayscale" and x.shape[1] == 3:
        weights = np.array(LUMA_WEIGHTS_PER_MILLE, dtype=np.uint32).reshape(1, 3, 1, 1)
        total = sum(LUMA_WEIGHTS_PER_MILLE)
        luma = (x * weights).sum(axis=1, keepdims=True, dtype=np.uint32) + total // 2
        return (luma // total).astype(np.uint8)
    if color == "rgb" and x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    return x


def resample_filter(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Image.Resampling:
    """Pick LANCZOS when an image shrinks in either direction, BILINEAR when it only grows.

    Parameters
    ----------
    src_hw, dst_hw : tuple of int
        Source and target ``(height, width)``.

    Returns
    -------
    PIL.Image.Resampling
        The filter to pass to :meth:`PIL.Image.Image.resize`.
    """
    if dst_hw[0] < src_hw[0] or dst_hw[1] < src_hw[1]:
        return Image.Resampling.LANCZOS
    return Image.Resampling.BILINEAR


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8 (N, C, H, W)`` images to ``size = (height, width)`` with Pillow.

    Parameters
    ----------
    x : numpy.ndarray
        ``uint8`` images with 1 or 3 channels.
    size : tuple of int
        Target ``(height, width)``; the aspect ratio is not kept.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(N, C, height, width)``; ``x`` itself when no resize is needed.
    """
    n, c, h, w = x.shape
    if (h, w) == tuple(size):
        return x
    resample = resample_filter((h, w), size)
    out = np.empty((n, c, *size), dtype=np.uint8)

    def resize_range(start: int) -> None:
        for i in range(start, min(start + RESIZE_BLOCK, n)):
            # (C, H, W) -> (H, W) or (H, W, C), the layouts Pillow understands
            img = x[i, 0] if c == 1 else x[i].transpose(1, 2, 0)
            resized = np.asarray(Image.fromarray(img).resize((size[1], size[0]), resample))
            out[i] = resized[None] if c == 1 else resized.transpose(2, 0, 1)

    # Pillow releases the GIL while resizing, so threads share the work.
    with ThreadPoolExecutor(max_workers=thread_count()) as pool:
        list(pool.map(resize_range, range(0, n, RESIZE_BLOCK)))
    return out


def too_large(shown: str) -> DataError:
    """Say that a data file does not fit in memory, and how ``vaekit prepare`` gets round it."""
    return DataError(
        f"file {shown!r} holds more data than fits in memory; convert it once with 'vaekit "
        "prepare FILE --out NEW.npy' (it streams .npy files and image folders) and use NEW.npy"
    )


def _refuse_pickle(exc: Exception, shown: str) -> DataError:
    if "allow_pickle" in str(exc) or "Python objects" in str(exc):
        return DataError(
            f"file {shown!r} holds pickled Python objects, which vaekit refuses to load for "
            f"safety; save a numeric array instead (e.g. x.astype('uint8'))"
        )
    return DataError(f"file {shown!r} cannot be read ({exc}); re-create it with numpy.save/savez")


def _check_declared_size(f: Any, size: int, what: str) -> None:
    """Refuse an array whose header declares more data than its ``size`` bytes can hold.

    Reads only the header of the ``.npy`` stream ``f``, so a damaged header declaring
    terabytes is refused instead of making NumPy try to allocate them.
    """
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
            version, np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(f)
    except (ValueError, OSError, EOFError):
        return  # np.load reports a bad header itself, with the file's name
    if dtype.hasobject:
        return  # refused as pickled data when loaded
    if any(d < 0 for d in shape):
        raise DataError(
            f"{what} declares the shape {tuple(shape)}, with a negative size; it is damaged — "
            "re-create it"
        )
    declared = math.prod(shape) * dtype.itemsize
    held = size - f.tell()
    if declared > held:
        raise DataError(
            f"{what} declares {declared:,} bytes of data ({dtype} {tuple(shape)}) but holds "
            f"{held:,}; it is truncated or damaged — re-create it"
        )


def open_npy(path: Path, shown: str) -> np.ndarray:
    """Memory-map the array of a ``.npy`` file (read-only), checking it first.

    Nothing is read but the header: the file may be larger than memory. Raises
    :class:`DataError` for a file that is not ``.npy``, is truncated, or holds objects.
    """
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise DataError(f"file {shown!r} is not a .npy file; re-create it with numpy.save")
        f.seek(0)
        _check_declared_size(f, os.fstat(f.fileno()).st_size, f"file {shown!r}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _refuse_pickle(exc, shown) from exc


def load_npy(path: Path, shown: str) -> np.ndarray:
    """Load the image array of a ``.npy`` file without ever unpickling.

    The file is memory-mapped, so only the images (converted) take memory, not a second
    copy of the file; callers that split it copy the rows they keep.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    shown : str
        The path as the user gave it, for error messages.

    Returns
    -------
    numpy.ndarray
        ``uint8`` images of shape ``(N, C, H, W)``.

    Raises
    ------
    DataError
        If the file is not a ``.npy`` file, holds objects, or holds no valid images.
    """
    x = open_npy(path, shown)
    try:
        return to_uint8_images(x, f"file {shown!r}")
    except MemoryError:
        raise too_large(shown) from None


def load_npz(
    path: Path, shown: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Load images and labels from a ``.npz`` file without ever unpickling.

    The training images are under ``x`` or ``images``, their labels (optional) under ``y`` or
    ``labels``; an official test part may be given as ``x_test`` and ``y_test``.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    shown : str
        The path as the user gave it, for error messages.

    Returns
    -------
    x, y, x_test, y_test
        ``uint8 (N, C, H, W)`` images and raw (not yet encoded) labels; absent parts are
        ``None``.

    Raises
    ------
    DataError
        For a file that is not a zip archive, missing keys, object arrays, invalid images or
        labels whose length differs from the number of images.
    """
    if not zipfile.is_zipfile(path):
        raise DataError(f"file {shown!r} is not a .npz archive; re-create it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)

            def pick(options: tuple[str, ...]) -> str | None:
                found = [k for k in options if k in keys]
                if len(found) > 1:
                    raise DataError(
                        f"file {shown!r} has both {found[0]!r} and {found[1]!r}; keep only one"
                    )
                return found[0] if found else None

            x_key, y_key = pick(NPZ_IMAGE_KEYS), pick(NPZ_LABEL_KEYS)
            if x_key is None:
                raise DataError(
                    f"file {shown!r} has arrays {sorted(keys)} but no 'x' or 'images'; save the "
                    f"images under 'x' (labels under 'y', optional test part under "
                    f"'x_test'/'y_test')"
                )
            if "y_test" in keys and "x_test" not in keys:
                raise DataError(f"file {shown!r} has 'y_test' but no 'x_test'; add the test images")
            raw = {}
            for k in (x_key, y_key, "x_test", "y_test"):
                if k not in keys:
                    continue
                member = z.zip.getinfo(f"{k}.npy")
                with z.zip.open(member) as f:
                    _check_declared_size(f, member.file_size, f"array {k!r} in file {shown!r}")
                try:
                    raw[k] = z[k]
                except ValueError as exc:
                    if "allow_pickle" not in str(exc):
                        raise
                    fix = "y.astype(str)" if k in (y_key, "y_test") else "x.astype('uint8')"
                    raise DataError(
                        f"array {k!r} in file {shown!r} holds Python objects, which vaekit "
                        f"refuses to unpickle for safety; save it as numbers or text (e.g. {fix})"
                    ) from None
    except MemoryError:
        raise too_large(shown) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, DataError):
            raise
        raise _refuse_pickle(exc, shown) from exc

    x = to_uint8_images(raw[x_key], f"array {x_key!r} in file {shown!r}")
    x_test = None
    if "x_test" in raw:
        x_test = to_uint8_images(raw["x_test"], f"array 'x_test' in file {shown!r}")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"file {shown!r}: 'x_test' images are {x_test.shape[1:]} but {x_key!r} images "
                f"are {x.shape[1:]} (C, H, W); they must agree"
            )
    y = raw.get(y_key) if y_key else None
    y_test = raw.get("y_test")
    for xs, ys, xk, yk in ((x, y, x_key, y_key), (x_test, y_test, "x_test", "y_test")):
        if ys is not None and xs is not None:
            ys_1d = _labels_1d(ys, f"array {yk!r} in file {shown!r}")
            if len(ys_1d) != len(xs):
                raise DataError(
                    f"file {shown!r} has {len(xs)} images in {xk!r} but {len(ys_1d)} labels in "
                    f"{yk!r}; give exactly one label per image"
                )
    return x, y, x_test, y_test
