"""Resolve a dataset spec (a built-in name or a path) and return a validated :class:`Dataset`."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.data.arrays import (
    Color,
    convert_color,
    encode_labels,
    load_npy,
    load_npz,
    resize_images,
    to_uint8_images,
    too_large,
)
from vaekit.data.dataset import Dataset, check_split_args, seeded_split
from vaekit.data.download import download
from vaekit.data.idx import IDX_NAME, find_idx_files, load_idx_folder, read_idx_images
from vaekit.data.images import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, load_image_folder
from vaekit.data.prepared import is_prepared, load_prepared
from vaekit.errors import ConfigError, DataError

KNOWN_NAMES = ("digits", "fashion-mnist", "mnist")
COLORS = ("auto", "grayscale", "rgb")
#: Where Debian's dataset packages install (``apt-get install dataset-fashion-mnist``).
DEBIAN_ROOT = Path("/usr/share/datasets")
#: Environment variables, each a root holding one ``<name>/`` folder per dataset: ready
#: files to use as they are, the download cache, and a mirror URL replacing the official ones.
ENV_DATA, ENV_CACHE, ENV_MIRROR = "VAEKIT_DATA", "VAEKIT_CACHE", "VAEKIT_MIRROR"
DEFAULT_CACHE = Path("~/.cache/vaekit")
#: scikit-learn's digits hold 4x4-block counts 0..16 per pixel.
DIGITS_MAX = 16
IDX_FILE_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: SHA-256 of the official gzip files, per dataset and file name.
#: MNIST: the values torchvision, TFDS and others pin for the files on LeCun's site and its
#: mirrors. Fashion-MNIST: the values for the files of zalandoresearch/fashion-mnist (their
#: README lists the matching MD5s). Debian's dataset-fashion-mnist ships the same deflate
#: streams with the gzip name/mtime header stripped, so its .gz files hash differently; local
#: folders are never checksummed, only downloads are.
# fmt: off
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
# fmt: on


@dataclass(frozen=True)
class RemoteDataset:
    """A built-in dataset distributed as the four IDX files."""

    classes: tuple[str, ...]
    image_hw: tuple[int, int]
    mirrors: tuple[str, ...]
    debian_package: str | None = None


REMOTE: dict[str, RemoteDataset] = {
    "mnist": RemoteDataset(
        classes=tuple(str(d) for d in range(10)),
        image_hw=(28, 28),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion-mnist": RemoteDataset(
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        image_hw=(28, 28),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        debian_package="dataset-fashion-mnist",
    ),
}

_Parts = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]


def _check_color(color: object) -> None:
    if color not in COLORS:
        raise ConfigError(f"color must be one of {', '.join(COLORS)}, got {color!r}")


def _check_image_size(image_size: object) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int | np.integer) else image_size
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1 for s in size)
    ):
        raise ConfigError(
            f"image_size must be a positive integer or a (height, width) pair, got {image_size!r}"
        )
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ConfigError(
            f"image_size {tuple(size)} has more than {MAX_IMAGE_PIXELS} pixels; choose a "
            f"smaller size"
        )
    return int(size[0]), int(size[1])


def _known_name(spec: str | os.PathLike[str]) -> str | None:
    if not isinstance(spec, str):
        return None
    name = spec.strip().lower().replace("_", "-")
    return name if name in KNOWN_NAMES else None


def _builtin_name(spec: str) -> str | None:
    """Name the built-in dataset ``spec`` loads (``Digits``: ``digits``), as load_dataset does."""
    known = _known_name(spec)
    if known is None or (spec != known and Path(spec).expanduser().exists()):
        return None  # a folder spelled unlike the name is a path
    return known


def same_data(spec: str, recorded: str | None) -> bool:
    """Whether DATA ``spec`` loads the data a run recorded as ``recorded`` (its ``data``).

    A path is recorded resolved; a built-in name as typed, in any spelling load_dataset
    accepts (``Digits``, ``fashion_mnist``).
    """
    if recorded is None:
        return False
    if spec == recorded or str(Path(spec).resolve()) == recorded:
        return True
    builtin = _builtin_name(spec)
    return builtin is not None and builtin == _builtin_name(recorded)


def cache_root() -> Path:
    """Folder of downloaded datasets: ``$VAEKIT_CACHE`` or ``~/.cache/vaekit``.

    Returns
    -------
    pathlib.Path
        The folder (it may not exist yet).
    """
    return Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).expanduser()


def _complete_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and len(find_idx_files(folder)) == len(IDX_FILE_NAMES)


def local_copy(name: str) -> Path | None:
    """Find the folder on this machine holding all four IDX files of ``name``, or None.

    Looks where :func:`locate_remote` looks (``$VAEKIT_DATA/<name>/``, ``DEBIAN_ROOT/<name>/``,
    the cache), compressed or not, and downloads nothing.
    """
    folders = [DEBIAN_ROOT / name, cache_root() / name]
    if os.environ.get(ENV_DATA):
        folders.insert(0, Path(os.environ[ENV_DATA]).expanduser() / name)
    return next((f for f in folders if _complete_idx_folder(f)), None)


def locate_remote(name: str) -> Path:
    """Find or download the IDX folder of a built-in dataset.

    Looks in ``$VAEKIT_DATA/<name>/``, then ``DEBIAN_ROOT/<name>/``, then the cache
    (``$VAEKIT_CACHE/<name>/``, default ``~/.cache/vaekit/<name>/``). Files missing from the
    cache are downloaded from ``$VAEKIT_MIRROR/<name>/<file>`` when that variable is set,
    else from the official mirrors in turn, and checked against :data:`SHA256`.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion-mnist"``.

    Returns
    -------
    pathlib.Path
        A folder holding all four IDX files.

    Raises
    ------
    DataError
        If ``$VAEKIT_DATA/<name>/`` holds only some of the files, or a download fails.
    """
    remote = REMOTE[name]
    if os.environ.get(ENV_DATA):
        local = Path(os.environ[ENV_DATA]).expanduser() / name
        if local.is_dir() and find_idx_files(local):
            if not _complete_idx_folder(local):
                raise DataError(
                    f"folder {str(local)!r} (from ${ENV_DATA}) lacks some of "
                    f"{', '.join(IDX_FILE_NAMES)}; add the missing files or remove the folder"
                )
            return local
        # A folder without this dataset is normal (it may hold others); one that cannot be
        # meant so is said, or a typo sends training to another copy unnoticed.
        root, wrong = local.parent, ""
        if not root.is_dir():
            wrong = "is not a folder"
        elif find_idx_files(root):
            wrong = f"holds IDX files itself; put them in {str(local)!r}"
        elif local.is_dir():
            wrong = f"has a {name}/ folder without IDX files"
        if wrong:
            warnings.warn(
                f"${ENV_DATA} ({str(root)!r}) {wrong}; looking for {name} elsewhere",
                stacklevel=3,
            )
    found = local_copy(name)  # the same places, in the same order
    if found is not None:
        return found
    cache = cache_root() / name
    mirror = os.environ.get(ENV_MIRROR)
    bases = (mirror.rstrip("/") + "/" + name,) if mirror else remote.mirrors
    hint = f"or put the four IDX files in ${ENV_DATA}/{name}/"
    if remote.debian_package:
        hint += f" or install the Debian package {remote.debian_package}"
    for file_name in IDX_FILE_NAMES:
        if (cache / file_name).is_file():
            continue
        error: DataError | None = None
        for base in bases:  # the first mirror that delivers a verified file wins
            try:
                download(
                    base.rstrip("/") + "/" + file_name,
                    cache / file_name,
                    SHA256[name][file_name],
                    hint=hint,
                )
            except DataError as exc:
                error = exc
                continue
            error = None
            break
        if error is not None:
            raise error
    return cache


def _load_remote(name: str) -> _Parts:
    folder = locate_remote(name)
    remote = REMOTE[name]
    x, y, x_test, y_test = load_idx_folder(folder, str(folder))
    for part, images, labels in (("train", x, y), ("t10k", x_test, y_test)):
        if images is None or labels is None or images.shape[1:] != remote.image_hw:
            raise DataError(
                f"the {part} files of {name} in {str(folder)!r} do not hold labelled "
                f"{remote.image_hw[0]}x{remote.image_hw[1]} images; delete them and load again"
            )
        if labels.max() >= len(remote.classes):
            raise DataError(
                f"the {part} labels of {name} in {str(folder)!r} go up to {labels.max()} but "
                f"{name} has {len(remote.classes)} classes; delete the files and load again"
            )
    assert y is not None and y_test is not None
    return x, y.astype(np.int64), x_test, y_test.astype(np.int64)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # (N, 8, 8) counts 0..16 -> (N, 1, 8, 8) uint8 0..255
    x = np.rint(digits.images * (255 / DIGITS_MAX)).astype(np.uint8)[:, None]
    return x, digits.target.astype(np.int64)


def _load_path(
    path: Path,
    shown: str,
    image_size: tuple[int, int] | None,
    color: Color,
    skip_bad: bool,
    split: tuple[float, int],
) -> dict[str, object]:
    """Read a file or folder into the keyword arguments of :func:`_assemble`.

    ``split`` (test fraction, seed) splits an image folder without ``test/`` by its listing.
    """
    if path.is_dir():
        if find_idx_files(path):
            x, y, x_test, y_test = load_idx_folder(path, shown)
            return _with_labels(shown, x, y, x_test, y_test, "train labels", "t10k labels")
        return load_image_folder(
            path, shown, image_size=image_size, color=color, skip_bad=skip_bad, split=split
        )
    name = path.name.lower()
    if name.endswith(".npy"):
        return {"x_train": load_npy(path, shown)}
    if name.endswith(".npz"):
        x, y, x_test, y_test = load_npz(path, shown)
        return _with_labels(shown, x, y, x_test, y_test, "'y'", "'y_test'")
    if IDX_NAME.match(path.name) or name.endswith((".gz", "-ubyte", ".idx")):
        return {"x_train": read_idx_images(path, shown)}
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise DataError(f"{shown!r} is a single image; pass the folder that holds the images")
    raise DataError(
        f"unsupported file type {shown!r}; pass a folder of images or IDX files, an IDX file, "
        f"a .npy or a .npz file"
    )


def _with_labels(
    shown: str,
    x: np.ndarray,
    y: np.ndarray | None,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    y_what: str,
    y_test_what: str,
) -> dict[str, object]:
    (y, y_test), classes = encode_labels(
        [(y, f"{y_what} of {shown!r}"), (y_test, f"{y_test_what} of {shown!r}")]
    )
    return {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test, "classes": classes}


def as_requested(
    x: np.ndarray, name: str, *, image_size: tuple[int, int] | None, color: Color
) -> np.ndarray:
    """``uint8 (N, C, H, W)`` images of ``x`` in the requested colour and size.

    Each image is converted on its own, so converting blocks of rows gives the same result.
    """
    # e.g. IDX (N, H, W) -> (N, 1, H, W). The .npy/.npz loaders have warned about nearly
    # black integer images already (IDX files and image folders hold 0..255 by format).
    x = to_uint8_images(x, f"images of {name!r}", warn_dim=False)
    if image_size is not None and color == "rgb":
        return convert_color(resize_images(x, image_size), color)  # resize 1 channel, not 3
    x = convert_color(x, color)
    return resize_images(x, image_size) if image_size is not None else x


def _assemble(
    name: str,
    *,
    x_train: np.ndarray,
    y_train: np.ndarray | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    classes: tuple[str, ...] = (),
    paths_train: tuple[str, ...] | None = None,
    paths_test: tuple[str, ...] | None = None,
    official_split: bool | None = None,
    rows_train: np.ndarray | None = None,
    rows_test: np.ndarray | None = None,
    image_size: tuple[int, int] | None,
    color: Color,
    test_fraction: float,
    random_state: int,
) -> Dataset:
    """Bring images to the requested colour and size, split if needed, build the Dataset."""
    x_train = as_requested(x_train, name, image_size=image_size, color=color)
    if official_split is False and x_test is not None and not len(x_test):
        x_test = np.empty((0, *x_train.shape[1:]), dtype=np.uint8)  # a folder of one image
    elif x_test is not None:
        x_test = as_requested(x_test, name, image_size=image_size, color=color)
    official = x_test is not None if official_split is None else official_split
    if x_test is None:
        train_idx, test_idx = seeded_split(
            len(x_train), y_train, test_fraction, random_state, source=repr(name)
        )
        if paths_train is None:  # one array or IDX file: its rows say where each image is
            rows_train, rows_test = train_idx, test_idx
        x_train, x_test = x_train[train_idx], x_train[test_idx]
        if y_train is not None:
            y_train, y_test = y_train[train_idx], y_train[test_idx]
        if paths_train is not None:
            paths_train, paths_test = (
                tuple(paths_train[i] for i in train_idx),
                tuple(paths_train[i] for i in test_idx),
            )
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=classes,
        paths_train=paths_train,
        paths_test=paths_test,
        official_split=official,
        rows_train=rows_train,
        rows_test=rows_test,
    )


def load_dataset(
    spec: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    color: Color = "auto",
    skip_bad: bool = False,
    test_fraction: float = 0.2,
    random_state: int = 0,
) -> Dataset:
    """Load a built-in dataset or the images at a path.

    Parameters
    ----------
    spec : str or os.PathLike
        ``"digits"`` (scikit-learn's 8x8 digits, no download), ``"fashion-mnist"``,
        ``"mnist"``, or a path: a folder of IDX files, a single IDX image file, a ``.npy`` or
        ``.npz`` file, or a folder of images (sub-folders are classes, ``unlabeled/`` holds
        images without a class, ``train/`` and ``test/`` give an official split). Built-in
        names, spelled exactly so, win over a folder of the same name (with a warning);
        write ``./mnist`` for the folder. Other spellings of an existing path (``Digits``)
        are paths.
    image_size : int or (int, int) or None, default=None
        Resize every image to ``(height, width)`` (an int means a square). ``None`` keeps
        the size, which must then be the same for all images.
    color : {"auto", "grayscale", "rgb"}, default="auto"
        ``"auto"`` gives one channel when all images are grayscale and three otherwise.
    skip_bad : bool, default=False
        In image folders, skip unreadable images with one warning listing them instead of
        stopping at the first.
    test_fraction : float, default=0.2
        Share of the images held out as the test part when the source has no official split.
    random_state : int, default=0
        Seed of that split (stratified by label where possible).

    Returns
    -------
    Dataset
        ``uint8 (N, C, H, W)`` images with labels, class names and the train/test split.

    Raises
    ------
    DataError
        For a missing path, an unsupported file, or data that is truncated, corrupt,
        inconsistent or unsafe to load; the one-line message names the file and the fix.
    ConfigError
        For an invalid ``image_size``, ``color``, ``test_fraction`` or ``random_state``.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.image_shape, len(ds.classes), ds.official_split
    ((1, 8, 8), 10, False)
    """
    size = _check_image_size(image_size)
    _check_color(color)
    check_split_args(test_fraction, random_state)
    common = {
        "image_size": size,
        "color": color,
        "test_fraction": test_fraction,
        "random_state": random_state,
    }

    known = _known_name(spec)
    if known is not None and Path(os.fspath(spec)).expanduser().exists():
        if spec != known:  # 'Digits/', 'Fashion_MNIST/': spelled unlike the name, a path
            known = None
        else:
            warnings.warn(
                f"{spec!r} is the built-in dataset; the {spec!r} on disk is not read "
                f"(write ./{spec} for it)",
                stacklevel=2,
            )
    if known == "digits":
        x, y = _load_digits()
        return _assemble(
            known, x_train=x, y_train=y, classes=tuple(str(d) for d in range(10)), **common
        )
    if known is not None:
        x, y, x_test, y_test = _load_remote(known)
        return _assemble(
            known,
            x_train=x,
            y_train=y,
            x_test=x_test,
            y_test=y_test,
            classes=REMOTE[known].classes,
            **common,
        )

    shown = os.fspath(spec)
    path = Path(shown).expanduser()
    if shown and path.is_symlink() and not path.exists():
        raise DataError(
            f"{shown!r} is a symbolic link to nothing (a missing file, or a loop of links); "
            "point it at the data"
        )
    if shown and not path.exists() and is_prepared(path):  # its manifest is there
        return load_prepared(path, shown, image_size=size, color=color)  # says what to redo
    if not shown or not path.exists():
        raise DataError(
            f"no such file or directory: {shown!r}; pass {', '.join(KNOWN_NAMES[:-1])}, "
            f"{KNOWN_NAMES[-1]} or a path"
        )
    if is_prepared(path):  # a 'vaekit prepare' output: memory-mapped, never read whole
        return load_prepared(path, shown, image_size=size, color=color)
    try:
        split = (test_fraction, random_state)
        return _assemble(shown, **_load_path(path, shown, size, color, skip_bad, split), **common)
    except PermissionError as exc:
        raise DataError(
            f"cannot read {exc.filename or shown!r} (permission denied); check its permissions"
        ) from exc
    except MemoryError:  # e.g. the split copy of a memory-mapped .npy larger than memory
        raise too_large(shown) from None
