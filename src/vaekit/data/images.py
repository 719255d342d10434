"""Folders of image files (PNG, JPEG, BMP, GIF, TIFF, WebP), read with Pillow.

Layouts, checked in this order:

- ``train/`` and optionally ``test/`` sub-folders: each is read by the rules below; without
  ``test/`` the caller makes a seeded split of ``train/``. Without ``test/``, a ``train/``
  beside folders that hold images directly is a class like them (bus/, car/, train/).
- class sub-folders: the sub-folder name is the class; images in deeper folders count for
  the class they sit in. A sub-folder named ``unlabeled/`` holds images without a class.
- images directly in the folder: one unlabeled collection.

Hidden files and folders (name starting with ``.``), the thumbnail and resource folders
other systems add (``SKIPPED_DIRS``) and files that are not images are ignored.
"""

from __future__ import annotations

import functools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps

from vaekit.data.arrays import Color, resample_filter, thread_count, warn_if_dim
from vaekit.data.dataset import UNLABELED, seeded_split
from vaekit.errors import DataError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
    | {".pgm", ".ppm", ".pbm", ".pnm"}  # Netpbm: face datasets ship so
)
#: Images read only where this Pillow has the decoder (AVIF: Pillow 11.2 and newer); on
#: an older one such files are left out of a folder, as before, not refused as unreadable.
OPTIONAL_SUFFIXES = {".avif": "AVIF"}
#: The only Pillow decoders vaekit lets read a file, whatever its name says. Pillow picks a
#: decoder by the file's content, so without this an ``x.png`` holding PostScript would be
#: handed to Ghostscript. MPO is how older Pillows read many cameras' JPEGs.
DECODERS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "TIFF", "WEBP", "PPM", "AVIF")
#: Largest image (width x height) vaekit decodes; bigger ones are treated as decompression
#: bombs. Pillow's own default limit is about 89 MP.
MAX_IMAGE_PIXELS = 64_000_000
#: Pillow modes that hold one gray channel (``color="auto"`` keeps these grayscale).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
#: Pillow modes with an alpha channel; ``_flatten`` composites them over ``BACKGROUND``.
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
#: Colour modes whose pixels may all be gray (``color="auto"`` looks): palettes (every
#: grayscale GIF) and RGBA (Pillow reads 16-bit gray+alpha PNGs as RGBA).
MAYBE_GRAY_MODES = frozenset({"P", "PA", "RGBA", "RGBa"})
#: Transparent pixels show white, as under an image on a web page.
BACKGROUND = (255, 255, 255)
#: Integer modes whose values run to 65535 (16-bit PNG/TIFF); scaled down to 0..255.
WIDE_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
WIDE_INT_MAX = 65535
#: What to do about a folder of nearly black images (see ``arrays.warn_if_dim``).
DIM_IMAGES_ADVICE = (
    "if they store fewer bits than their format holds (say 12-bit data in 16-bit PNGs), "
    "rescale them to the format's full range or save them as 8-bit"
)
UNLABELED_DIR = "unlabeled"
#: Folders that hold no images of the dataset: Synology NAS thumbnails (``cat/@eaDir/
#: x.jpg/SYNOFILE_THUMB_M.jpg``) and macOS resource forks in zip files.
SKIPPED_DIRS = frozenset({"@eaDir", "__MACOSX"})
TRAIN_DIR, TEST_DIR = "train", "test"
#: Warnings point at the caller of ``load_dataset``, four frames up from where they are made.
STACKLEVEL = 5
#: Images decoded per thread-pool task.
DECODE_BLOCK = 64
#: At most this many skipped files are named in the --skip-bad warning.
MAX_LISTED_BAD = 50
SKIP_BAD_HINT = "or pass --skip-bad (skip_bad=True) to skip unreadable images"


def is_image_name(name: str) -> bool:
    """Whether a folder load reads the file ``name`` as an image (not hidden, a known suffix)."""
    if name.startswith("."):
        return False
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_SUFFIXES or OPTIONAL_SUFFIXES.get(suffix, "-") in _decoders()


def _readable_suffixes() -> list[str]:
    """Return the suffixes this installation reads, sorted (``.avif`` where Pillow has AVIF)."""
    optional = {s for s, decoder in OPTIONAL_SUFFIXES.items() if decoder in _decoders()}
    return sorted(IMAGE_SUFFIXES | optional)


def _is_skipped_dir(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS


def _join_rel(rel_folder: str, name: str) -> str:
    """Path relative to the loaded root, ``/``-separated; the root itself is ``"."``."""
    return name if rel_folder == "." else f"{rel_folder}/{name}"


# Listing works on strings, not pathlib.Path: for folders of 100k images pathlib's
# per-object cost is seconds.


def _images_below(
    folder: str, rel_folder: str, others: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """``(path, relative path)`` of every image under ``folder``, skipped folders pruned.

    Linked folders are followed, as the top-level class folders are; one already listed
    (a second link to the same folder), one that holds ``folder`` (a link back up) and the
    ``others`` (real paths of the sibling class folders) are not entered. A folder that
    cannot be listed raises its ``OSError``.
    """
    found = []
    top = os.path.realpath(folder)
    seen = {top, *others}
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise, followlinks=True):
        kept = []
        for d in sorted(dirnames):  # sorted: which link to a folder is kept never varies
            real = os.path.realpath(os.path.join(dirpath, d))
            if _is_skipped_dir(d) or real in seen or os.path.commonpath([real, top]) == real:
                continue
            seen.add(real)
            kept.append(d)
        dirnames[:] = kept
        sub = os.path.relpath(dirpath, folder).replace(os.sep, "/")
        rel_dir = rel_folder if sub == "." else _join_rel(rel_folder, sub)
        found += [
            (os.path.join(dirpath, f), _join_rel(rel_dir, f))
            for f in filenames
            # a regular file, as _loose_images keeps: reading a FIFO would wait forever
            if is_image_name(f) and os.path.isfile(os.path.join(dirpath, f))
        ]
    return sorted(found, key=lambda pair: pair[1])


def _raise(exc: OSError) -> None:
    """Raise ``exc``: as ``os.walk``'s ``onerror``, a folder that cannot be listed stops loading.

    By default ``os.walk`` skips it without a word, and its images with it.
    """
    raise exc


def _visible_dirs(folder: str) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not _is_skipped_dir(e.name))


def _loose_images(folder: str) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and is_image_name(e.name))


@dataclass
class ImageListing:
    """Image files of one split: paths, paths relative to the root, class (``None``: none)."""

    files: list[str]
    rels: list[str]
    names: list[str | None]


def _list_split(folder: str, rel_folder: str, shown: str) -> ImageListing:
    """Read one folder as class sub-folders or, without sub-folders, as flat unlabeled."""
    names = _visible_dirs(folder)
    # A link inside one class folder to another class folder would label its images twice.
    reals = frozenset(os.path.realpath(os.path.join(folder, d)) for d in names)
    class_dirs = {
        d: pairs
        for d in names
        if (pairs := _images_below(os.path.join(folder, d), _join_rel(rel_folder, d), reals))
    }
    loose = _loose_images(folder)
    if class_dirs and loose:
        where = shown if rel_folder == "." else rel_folder
        raise DataError(
            f"folder {where!r} has images at its top level (e.g. {loose[0]!r}) beside class "
            f"sub-folders; move them into a class sub-folder, or into '{UNLABELED_DIR}/' if "
            f"they have no class"
        )
    if not class_dirs:
        return ImageListing(
            [os.path.join(folder, f) for f in loose],
            [_join_rel(rel_folder, f) for f in loose],
            [None] * len(loose),
        )
    listing = ImageListing([], [], [])
    for name, pairs in class_dirs.items():
        # A folder name that is not valid UTF-8 (a zip from another system) keeps its
        # bytes as escapes, so the class name can be printed, plotted and written.
        shown_name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        label = None if name.lower() == UNLABELED_DIR else shown_name
        listing.files += [f for f, _ in pairs]
        listing.rels += [r for _, r in pairs]
        listing.names += [label] * len(pairs)
    return listing


def _is_split_layout(top: str, dirs: dict[str, str]) -> bool:
    """Whether ``train/`` (and ``test/``) are splits rather than classes (bus/, car/, train/).

    ``dirs`` maps the lower-cased names of the sub-folders of ``top`` to their names. A
    ``train/`` is a split when ``test/`` sits beside it, or when no other sub-folder but
    ``unlabeled/`` holds images directly, as class folders do (so ``val/cat/...`` beside
    ``train/`` leaves it a split).
    """
    if TRAIN_DIR not in dirs:
        return False
    others = [d for key, d in dirs.items() if key not in (TRAIN_DIR, UNLABELED_DIR)]
    return TEST_DIR in dirs or not any(_loose_images(os.path.join(top, d)) for d in others)


def list_image_folder(root: Path, shown: str) -> tuple[ImageListing, ImageListing | None]:
    """Find the images of a folder and their classes.

    Parameters
    ----------
    root : pathlib.Path
        The folder.
    shown : str
        The folder as the user named it, for messages.

    Returns
    -------
    train, test
        The listings; ``test`` is ``None`` unless the folder has ``train/`` and ``test/``.

    Raises
    ------
    DataError
        If a split holds no images, or loose images sit beside class sub-folders.
    """
    top = str(root)
    dirs = {d.lower(): d for d in _visible_dirs(top)}
    if _is_split_layout(top, dirs):
        split_dirs = [dirs[TRAIN_DIR]] + ([dirs[TEST_DIR]] if TEST_DIR in dirs else [])
        ignored = [
            d + "/"
            for d in dirs.values()
            if d not in split_dirs and _images_below(os.path.join(top, d), d)
        ]
        ignored += _loose_images(top)
        if ignored:
            warnings.warn(
                f"folder {shown!r} has a {TRAIN_DIR}/ sub-folder, so these entries beside it "
                f"are ignored: {', '.join(ignored)}",
                stacklevel=STACKLEVEL,
            )
    else:
        split_dirs = ["."]
    # top itself, not "top/.": paths in messages read "folder/a/x.png", not "folder/./a/x.png"
    listings = [
        _list_split(top if d == "." else os.path.join(top, d), d, shown) for d in split_dirs
    ]
    for listing, d in zip(listings, split_dirs, strict=True):
        if not listing.files:
            suffixes = ", ".join(_readable_suffixes())
            raise DataError(
                f"folder {shown if d == '.' else d!r} holds no images (looked for {suffixes}); "
                f"add images or pass another path"
            )
    return listings[0], (listings[1] if len(listings) > 1 else None)


@dataclass
class _Bad:
    """Why an image could not be used; ``reason`` completes "image 'x.png' ..."."""

    reason: str


def _flatten(im: Image.Image) -> Image.Image:
    """Composite a transparent image over ``BACKGROUND`` (half-transparent pixels blend).

    Otherwise the colour stored under transparent pixels, which no viewer shows, would
    decide the pixels. Images without transparency are returned as they are.
    """
    if im.mode not in ALPHA_MODES and "transparency" not in im.info:
        return im
    rgba = im.convert("RGBA")  # palette and single-colour (tRNS) transparency become alpha
    out = Image.new("RGB", im.size, BACKGROUND)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _all_gray(im: Image.Image) -> bool:
    """Whether every pixel of a ``P`` or ``RGB`` image has R == G == B."""
    if im.mode == "P":
        palette = im.getpalette() or []
        if palette[0::3] == palette[1::3] == palette[2::3]:  # no need to look at the pixels
            return True
        im = im.convert("RGB")
    # Pillow's RGB -> L weights sum to exactly 1, so gray pixels survive the round trip.
    return ImageChops.difference(im, im.convert("L").convert("RGB")).getbbox() is None


def _to_mode(im: Image.Image, color: Color) -> Image.Image:
    """Convert a decoded image to mode ``L`` or ``RGB``."""
    if im.mode in WIDE_INT_MODES:
        # Pillow's convert("L") clips 16-bit values at 255; scale 0..65535 to 0..255 instead,
        # rounding, in uint32 (65535 * 255 fits) and in place to keep memory near 4 bytes a
        # pixel. 32-bit integer images (mode "I") can hold more: refused, not clipped.
        wide = np.asarray(im)
        if wide.size and (wide.min() < 0 or wide.max() > WIDE_INT_MAX):
            raise ValueError(
                "integer pixels must lie in 0..65535 (8 or 16 bits); rescale it and save it "
                "as 8 or 16 bits"
            )
        scaled = wide.astype(np.uint32)
        del wide
        scaled *= 255
        scaled += WIDE_INT_MAX // 2
        scaled //= WIDE_INT_MAX
        im = Image.fromarray(scaled.astype(np.uint8))
    if im.mode == "F":
        # Float images follow vaekit's array convention, [0, 1]; Pillow's convert("L") would
        # clip them to 0 and 1 out of 255.
        a = np.asarray(im, dtype=np.float64)
        if not (np.isfinite(a).all() and 0.0 <= a.min() and a.max() <= 1.0):
            raise ValueError("float pixels must lie in [0, 1]; save it as 8-bit or scale it")
        im = Image.fromarray(np.rint(a * 255).astype(np.uint8))
    source_mode = im.mode
    im = _flatten(im)
    if color != "auto":
        target = "L" if color == "grayscale" else "RGB"
    elif source_mode in GRAY_MODES:
        target = "L"
    else:
        gray = source_mode in MAYBE_GRAY_MODES and _all_gray(im)
        target = "L" if gray else "RGB"
    return im if im.mode == target else im.convert(target)


@functools.cache
def _decoders() -> tuple[str, ...]:
    """Return the ``DECODERS`` this Pillow has (naming one it lacks raises ``KeyError``)."""
    Image.init()
    return tuple(f for f in DECODERS if f in Image.OPEN)


def _decode(path: str, size: tuple[int, int] | None, color: Color) -> np.ndarray | _Bad:
    """Read one image as ``uint8 (H, W)`` or ``(H, W, 3)``, or say why it cannot be read."""
    try:
        with Image.open(path, formats=_decoders()) as im:
            n_pixels = im.size[0] * im.size[1]
            if n_pixels > MAX_IMAGE_PIXELS:
                return _Bad(
                    f"has {n_pixels} pixels, more than the {MAX_IMAGE_PIXELS} allowed "
                    f"(decompression bomb?)"
                )
            if size is not None:
                # A JPEG decodes at 1/2, 1/4 or 1/8 scale, several times faster, to a size at
                # least the target's, in both orientations (a rotation tag may turn it).
                side = max(size)
                im.draft(None, (side, side))  # other formats ignore it
            im.load()
            if "exif" in im.info or im.format == "TIFF":  # apply a camera's rotation tag
                im = ImageOps.exif_transpose(im)
            out = _to_mode(im, color)
            if size is not None and out.size != (size[1], size[0]):
                out = out.resize((size[1], size[0]), resample_filter(out.size[::-1], size))
            return np.asarray(out)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _Bad(f"is too large to decode safely ({exc}) (decompression bomb?)")
    except Exception as exc:  # decoders of untrusted files raise many exception types
        return _Bad(f"cannot be read ({type(exc).__name__}: {exc})")


@dataclass
class Decoded:
    """Images decoded from a list of files, and the files skipped as unreadable."""

    x: np.ndarray | None  # uint8 (N, C, H, W); None when no file could be read
    kept: np.ndarray  # (N,) indices into the files of the rows of x
    bad: list[str]  # "'rel' (reason)" of each skipped file


def decode_images(
    files: list[str],
    rels: list[str],
    shown: str,
    *,
    image_size: tuple[int, int] | None,
    color: Color,
    skip_bad: bool,
) -> Decoded:
    """Decode image files into one ``uint8 (N, C, H, W)`` array.

    Skipped files are only collected: the caller, which may decode a folder in several
    calls, reports them once with :func:`report_skipped`.

    Parameters
    ----------
    files : list of str
        The images, in output order.
    rels : list of str
        The same paths as messages show them (relative to the folder the user named).
    shown : str
        That folder as the user wrote it.
    image_size : tuple of int or None
        Target ``(height, width)``; ``None`` requires all images to have one size.
    color : {"auto", "grayscale", "rgb"}
        ``"auto"`` gives one channel when every image is grayscale, else three.
    skip_bad : bool
        Skip unreadable images instead of raising at the first.

    Returns
    -------
    Decoded
        The images, the indices into ``files`` of those kept, and the skipped files.

    Raises
    ------
    DataError
        For an unreadable image or decompression bomb (unless ``skip_bad``), or for mixed
        sizes without ``image_size``.
    """
    decoded: list[np.ndarray] = []
    kept: list[int] = []
    bad: list[str] = []
    first: tuple[str, tuple[int, ...]] | None = None
    with warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; make that an error too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        pool = ThreadPoolExecutor(max_workers=thread_count())
        try:
            # Blocks of files per task: one future per small image costs more than decoding it.
            blocks = pool.map(
                lambda block: [_decode(p, image_size, color) for p in block],
                (files[i : i + DECODE_BLOCK] for i in range(0, len(files), DECODE_BLOCK)),
            )
            results = (res for block in blocks for res in block)
            for i, (rel, res) in enumerate(zip(rels, results, strict=True)):
                if isinstance(res, _Bad):
                    if not skip_bad:
                        raise DataError(
                            f"image {rel!r} {res.reason}; fix or remove it, {SKIP_BAD_HINT}"
                        )
                    bad.append(f"{rel!r} ({res.reason})")
                    continue
                if first is None:
                    first = (rel, res.shape[:2])
                elif res.shape[:2] != first[1]:
                    (h0, w0), (h1, w1) = first[1], res.shape[:2]
                    raise DataError(
                        f"images in {shown!r} differ in size ({first[0]!r} is {h0}x{w0}, "
                        f"{rel!r} is {h1}x{w1}, height x width); pass --image-size "
                        f"(image_size=) to resize them all to one size"
                    )
                decoded.append(res)
                kept.append(i)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if not decoded:
        return Decoded(None, np.zeros(0, dtype=np.int64), bad)
    h, w = decoded[0].shape[:2]
    channels = 3 if any(a.ndim == 3 for a in decoded) else 1
    x = np.empty((len(decoded), channels, h, w), dtype=np.uint8)
    for i, a in enumerate(decoded):
        x[i] = a if a.ndim == 2 else a.transpose(2, 0, 1)  # gray broadcasts over 3 channels
    return Decoded(x, np.asarray(kept, dtype=np.int64), bad)


def report_skipped(
    bad: list[str], n_files: int, n_read: int, shown: str, *, stacklevel: int
) -> None:
    """Fail when none of a folder's images could be read, else warn once about those skipped.

    Parameters
    ----------
    bad : list of str
        ``Decoded.bad`` of every call that decoded the folder.
    n_files, n_read : int
        Images in the folder, and how many of them were read.
    shown : str
        The folder as the user wrote it.
    stacklevel : int
        Passed to :func:`warnings.warn`, to point at the user's call.

    Raises
    ------
    DataError
        When ``n_read`` is 0.
    """
    if n_read == 0:
        raise DataError(
            f"none of the {n_files} images in {shown!r} can be read (e.g. {bad[0]}); check "
            f"the files"
        )
    if bad:
        listed = ", ".join(bad[:MAX_LISTED_BAD])
        more = f" and {len(bad) - MAX_LISTED_BAD} more" if len(bad) > MAX_LISTED_BAD else ""
        warnings.warn(
            f"skipped {len(bad)} unreadable image(s) in {shown!r}: {listed}{more}",
            stacklevel=stacklevel,
        )


def load_image_folder(
    root: Path,
    shown: str,
    *,
    image_size: tuple[int, int] | None,
    color: Color,
    skip_bad: bool,
    split: tuple[float, int],
) -> dict[str, object]:
    """Read an image folder into arrays, labels and source paths.

    Parameters
    ----------
    root : pathlib.Path
        The folder.
    shown : str
        The folder as the user wrote it.
    image_size : tuple of int or None
        Target ``(height, width)``, or ``None`` to require one common size.
    color : {"auto", "grayscale", "rgb"}
        Colour mode of the output.
    skip_bad : bool
        Skip unreadable images with a warning.
    split : (float, int)
        Test fraction and seed: without a ``test/`` folder, the files listed are split
        before any is decoded, as ``vaekit prepare`` splits them, so an image skipped as
        unreadable leaves the others where they were.

    Returns
    -------
    dict
        ``x_train``, ``y_train``, ``x_test``, ``y_test`` (labels ``None`` when no image has
        a class), ``classes``, ``paths_train``, ``paths_test`` and ``official_split``
        (whether the split is the folder's own ``train/`` and ``test/``).

    Raises
    ------
    DataError
        See :func:`list_image_folder` and :func:`decode_images`.
    """
    train, test = list_image_folder(root, shown)
    splits = [train] if test is None else [train, test]
    files = [p for s in splits for p in s.files]
    rels = [r for s in splits for r in s.rels]
    names = [n for s in splits for n in s.names]
    decoded = decode_images(
        files, rels, shown, image_size=image_size, color=color, skip_bad=skip_bad
    )
    report_skipped(decoded.bad, len(files), len(decoded.kept), shown, stacklevel=STACKLEVEL)
    x, kept = decoded.x, decoded.kept
    if x is not None:
        warn_if_dim(int(x.max()), f"the images of {shown!r}", DIM_IMAGES_ADVICE)
    classes = tuple(sorted({n for n in names if n is not None}))
    index = {name: k for k, name in enumerate(classes)}
    y_all = np.array([UNLABELED if n is None else index[n] for n in names], dtype=np.int64)
    paths_all = np.array([os.path.join(shown, r) for r in rels], dtype=object)
    row = np.full(len(files), -1)  # listed file -> its row of x (-1: skipped)
    row[kept] = np.arange(len(kept))
    n_train = len(train.files)
    if test is not None:
        parts = {"train": np.arange(n_train), "test": np.arange(n_train, len(files))}
    else:
        tr, te = seeded_split(len(files), y_all if classes else None, *split, source=repr(shown))
        parts = {"train": tr, "test": te}
    out: dict[str, object] = {"classes": classes, "official_split": test is not None}
    for part, listed in parts.items():
        idx = listed[row[listed] >= 0]
        if len(idx) == 0 and len(listed):  # (a single image has no test part at all)
            raise DataError(
                f"no readable images left in the {part} part of {shown!r}; fix the images"
            )
        out[f"x_{part}"] = x[row[idx]]
        out[f"y_{part}"] = y_all[idx] if classes else None
        out[f"paths_{part}"] = tuple(paths_all[idx])
        if test is None:  # vaekit's split: each image's place in the folder's sorted listing
            out[f"rows_{part}"] = idx.astype(np.int64)
    return out
