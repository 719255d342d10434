"""IDX files, the format of MNIST and Fashion-MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/).

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the values in C order, big-endian. The files are often gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from vaekit.errors import DataError

#: IDX type code -> numpy dtype (big-endian, as stored).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
#: Bytes read from a file at a time, so a lying header cannot make us allocate gigabytes.
CHUNK_BYTES = 1 << 24
#: File-name roles in an IDX folder, e.g. ``train-images-idx3-ubyte.gz`` or the
#: ``train-images.idx3-ubyte`` variant some mirrors use.
IDX_NAME = re.compile(
    r"^(?P<split>train|t10k)-(?P<kind>images|labels)[-.]idx(?P<ndim>\d)-ubyte(?:\.gz)?$",
    re.IGNORECASE,
)


def _open(path: Path) -> IO[bytes]:
    with open(path, "rb") as f:
        head = f.read(len(GZIP_MAGIC))
    return gzip.open(path, "rb") if head == GZIP_MAGIC else open(path, "rb")


def _read_exactly(f: IO[bytes], n: int) -> bytearray:
    """Read up to ``n`` bytes in chunks; fewer only when the file ends early."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(CHUNK_BYTES, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path: str | os.PathLike[str], *, shown: str | None = None) -> np.ndarray:
    """Read an IDX file, plain or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        The file; gzip compression is detected from its first bytes.
    shown : str or None, default=None
        How to name the file in error messages (default: ``path``).

    Returns
    -------
    numpy.ndarray
        The values, in native byte order, with the shape the header gives.

    Raises
    ------
    DataError
        If the magic number or type code is wrong, the file is truncated, has bytes after
        the data, or is a broken gzip stream.
    """
    path = Path(path)
    shown = str(path) if shown is None else shown
    try:
        with _open(path) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_DTYPES:
                raise DataError(
                    f"file {shown!r} is not an IDX file (magic bytes {magic.hex() or 'missing'}"
                    f", expected 0000 followed by a type code and the number of dimensions); "
                    f"check the file name or re-download it"
                )
            dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"file {shown!r} is truncated inside its header; re-download it")
            dims = struct.unpack(f">{ndim}I", dims_raw)
            n_bytes = math.prod(dims) * dtype.itemsize
            data = _read_exactly(f, n_bytes)
            if len(data) < n_bytes:
                raise DataError(
                    f"file {shown!r} is truncated: header says {n_bytes} bytes of data, "
                    f"found {len(data)}; re-download it"
                )
            extra = len(f.read(CHUNK_BYTES))
            if extra:
                raise DataError(
                    f"file {shown!r} has {'more than ' if extra == CHUNK_BYTES else ''}{extra} "
                    f"byte(s) after the {n_bytes} its header announces; re-download it"
                )
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"file {shown!r} is a damaged gzip file ({exc}); re-download it") from exc
    except OSError as exc:
        raise DataError(f"file {shown!r} cannot be read ({exc}); check it") from exc
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : numpy.ndarray
        Values of dtype uint8, int8, int16, int32, float32 or float64, at most 255
        dimensions.

    Raises
    ------
    DataError
        If the dtype has no IDX type code.
    """
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim > 255:
        raise DataError(
            f"cannot write a {array.dtype} array with {array.ndim} dimensions as IDX; use one "
            f"of uint8, int8, int16, int32, float32, float64"
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(header + payload)
    else:
        path.write_bytes(header + payload)


def _require_ubyte(arr: np.ndarray, shown: str) -> None:
    if arr.dtype != np.uint8:
        raise DataError(
            f"file {shown!r} holds {arr.dtype} values; vaekit reads unsigned-byte IDX files "
            f"(type code 0x08) only"
        )


def read_idx_images(path: Path, shown: str) -> np.ndarray:
    """Read an IDX image file as ``uint8 (N, H, W)`` (or ``(N, H, W, C)``).

    Parameters
    ----------
    path : pathlib.Path
        The file.
    shown : str
        How to name it in error messages.

    Returns
    -------
    numpy.ndarray
        The images as stored.

    Raises
    ------
    DataError
        If the file is not a valid unsigned-byte IDX file with 3 or 4 dimensions.
    """
    x = read_idx(path, shown=shown)
    _require_ubyte(x, shown)
    if x.ndim not in (3, 4):
        hint = " (it holds labels)" if x.ndim == 1 else ""
        raise DataError(
            f"file {shown!r} has {x.ndim} dimension(s){hint}; an IDX image file has 3 "
            f"(N, H, W); pass the images file or the folder that holds it"
        )
    if x.shape[0] == 0:
        raise DataError(f"file {shown!r} holds no images; re-download or re-create it")
    return x


def read_idx_labels(path: Path, shown: str) -> np.ndarray:
    """Read an IDX label file as ``uint8 (N,)``.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    shown : str
        How to name it in error messages.

    Returns
    -------
    numpy.ndarray
        The labels.

    Raises
    ------
    DataError
        If the file is not a valid one-dimensional unsigned-byte IDX file.
    """
    y = read_idx(path, shown=shown)
    _require_ubyte(y, shown)
    if y.ndim != 1:
        raise DataError(
            f"file {shown!r} has {y.ndim} dimensions; an IDX label file has 1; check which "
            f"file is which"
        )
    return y


def find_idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """Map ``(split, kind)`` (e.g. ``("train", "images")``) to the IDX file in ``folder``.

    Uncompressed files win over ``.gz`` ones; among equals the name sorts first.

    Parameters
    ----------
    folder : pathlib.Path
        The folder to look in (not recursively).

    Returns
    -------
    dict
        Found roles only; empty when the folder holds no IDX files.
    """
    found: dict[tuple[str, str], Path] = {}
    candidates = sorted(
        (p for p in folder.iterdir() if p.is_file() and IDX_NAME.match(p.name)),
        key=lambda p: (p.suffix.lower() == ".gz", p.name),
    )
    for p in candidates:
        m = IDX_NAME.match(p.name)
        assert m is not None
        found.setdefault((m["split"].lower(), m["kind"].lower()), p)
    return found


def load_idx_folder(
    folder: Path, shown: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Read the train (and, if present, t10k) images and labels of an IDX folder.

    Parameters
    ----------
    folder : pathlib.Path
        Folder holding ``train-images-idx3-ubyte[.gz]`` and optionally the label and
        ``t10k-*`` files.
    shown : str
        How to name the folder in error messages.

    Returns
    -------
    x_train, y_train, x_test, y_test
        ``uint8`` images as stored (``(N, H, W)``) and ``uint8`` labels; missing parts are
        ``None``.

    Raises
    ------
    DataError
        If the training images are missing, a file is invalid, or images and labels differ
        in count or image size.
    """
    files = find_idx_files(folder)
    if ("train", "images") not in files:
        names = ", ".join(sorted(p.name for p in files.values()))
        raise DataError(
            f"folder {shown!r} has IDX files ({names}) but no train-images-idx3-ubyte[.gz]; add it"
        )
    if ("t10k", "labels") in files and ("t10k", "images") not in files:
        raise DataError(
            f"folder {shown!r} has t10k labels but no t10k-images-idx3-ubyte[.gz]; add it"
        )

    def rel(key: tuple[str, str]) -> str:
        return str(Path(shown) / files[key].name)

    parts: dict[str, np.ndarray | None] = {}
    for split in ("train", "t10k"):
        x = y = None
        if (split, "images") in files:
            x = read_idx_images(files[split, "images"], rel((split, "images")))
        if (split, "labels") in files and x is not None:
            y = read_idx_labels(files[split, "labels"], rel((split, "labels")))
            if len(y) != len(x):
                raise DataError(
                    f"{rel((split, 'images'))!r} holds {len(x)} images but "
                    f"{rel((split, 'labels'))!r} holds {len(y)} labels, so they are not a "
                    f"pair; put the images' own labels file beside them (or re-download both)"
                )
        parts[f"x_{split}"], parts[f"y_{split}"] = x, y
    x_train, x_test = parts["x_train"], parts["x_t10k"]
    if x_test is not None and x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(
            f"folder {shown!r}: training images are {x_train.shape[1:]} but test images are "
            f"{x_test.shape[1:]}; use files from the same dataset"
        )
    return x_train, parts["y_train"], x_test, parts["y_t10k"]
