"""The in-memory dataset record and the seeded train/test split shared by all readers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaekit.errors import ConfigError, DataError

#: Label value that marks an image without a class (semi-supervised data).
UNLABELED = -1


@dataclass(frozen=True, eq=False)
class Dataset:
    """Validated images and labels, split into a training and a test part.

    Every reader in :mod:`vaekit.data` returns one of these. Images stay ``uint8`` in memory
    and are converted to float per batch by the training code.

    Parameters
    ----------
    name : str
        The spec that was loaded: ``"digits"``, ``"fashion-mnist"``, ``"mnist"`` or the path
        as given.
    x_train : numpy.ndarray
        ``uint8`` images of shape ``(N, C, H, W)`` with ``C`` in ``{1, 3}``.
    y_train : numpy.ndarray or None
        ``int64`` labels of shape ``(N,)``; ``-1`` marks an unlabeled image. ``None`` when
        the source has no labels at all.
    x_test : numpy.ndarray
        ``uint8`` images of shape ``(M, C, H, W)``, same ``(C, H, W)`` as ``x_train``.
    y_test : numpy.ndarray or None
        ``int64`` labels of shape ``(M,)`` or ``None``.
    classes : tuple of str
        Class names; ``classes[k]`` is the name of label ``k``. Empty when unlabeled.
    paths_train : tuple of str or None, default=None
        Source file of each training image (image folders only).
    paths_test : tuple of str or None, default=None
        Source file of each test image (image folders only).
    official_split : bool, default=True
        ``False`` when vaekit made the train/test split itself with a seed.
    rows_train, rows_test : numpy.ndarray or None, default=None
        Where vaekit split DATA itself, each image's row in the array or IDX file, or its
        place in the image folder's sorted listing (``int64``, sorted within each part);
        ``None`` where DATA came split.

    Raises
    ------
    DataError
        If the arrays do not have the types and shapes described above.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    classes: tuple[str, ...]
    paths_train: tuple[str, ...] | None = None
    paths_test: tuple[str, ...] | None = None
    official_split: bool = True
    rows_train: np.ndarray | None = None
    rows_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        for part, x in (("x_train", self.x_train), ("x_test", self.x_test)):
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
                raise DataError(
                    f"dataset {self.name!r}: {part} must be a uint8 array of shape (N, C, H, W)"
                )
            if x.shape[1] not in (1, 3):
                raise DataError(
                    f"dataset {self.name!r}: {part} has {x.shape[1]} channels; expected 1 or 3"
                )
        if len(self.x_train) == 0:
            raise DataError(f"dataset {self.name!r} has no training images")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"dataset {self.name!r}: training images are {self.x_train.shape[1:]} but test "
                f"images are {self.x_test.shape[1:]} (C, H, W); they must agree"
            )
        for part, y, x in (
            ("y_train", self.y_train, self.x_train),
            ("y_test", self.y_test, self.x_test),
        ):
            if y is None:
                continue
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (len(x),):
                raise DataError(
                    f"dataset {self.name!r}: {part} must be an int64 array of shape ({len(x)},)"
                )
            if y.size and (y.min() < UNLABELED or y.max() >= len(self.classes)):
                raise DataError(
                    f"dataset {self.name!r}: {part} holds labels outside "
                    f"{UNLABELED}..{len(self.classes) - 1} for {len(self.classes)} classes; "
                    "give each image its class index (-1 for unlabeled) or prepare it again"
                )
        for part, paths, x in (
            ("paths_train", self.paths_train, self.x_train),
            ("paths_test", self.paths_test, self.x_test),
            ("rows_train", self.rows_train, self.x_train),
            ("rows_test", self.rows_test, self.x_test),
        ):
            if paths is not None and len(paths) != len(x):
                raise DataError(
                    f"dataset {self.name!r}: {part} has {len(paths)} entries for {len(x)} images"
                )

    def __repr__(self) -> str:
        """Summarise, not print the arrays: ``Dataset('digits', 1437 train + 360 test, ...)``."""
        labels = f"{len(self.classes)} classes" if self.classes else "unlabeled"
        split = "official split" if self.official_split else "seeded split"
        return (
            f"Dataset({self.name!r}, {len(self.x_train)} train + {len(self.x_test)} test, "
            f"{'x'.join(map(str, self.image_shape))}, {labels}, {split})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def all_labels(self) -> np.ndarray | None:
        """Training then test labels as one array (``-1`` for a part without labels).

        ``None`` when neither part has labels. A part may lack them while the other has
        them (an ``.npz`` with ``y`` but no ``y_test``).
        """
        if self.y_train is None and self.y_test is None:
            return None
        parts = zip((self.y_train, self.y_test), (self.x_train, self.x_test), strict=True)
        return np.concatenate(
            [np.full(len(x), UNLABELED, dtype=np.int64) if y is None else y for y, x in parts]
        )

    def all_rows(self) -> np.ndarray:
        """Where each image of :meth:`all_images` order (training, then test) is in DATA.

        ``rows_train`` then ``rows_test`` where vaekit split DATA itself; where DATA came
        split (two files, ``train/`` and ``test/`` folders, a prepared file) the position in
        that order. This is the ``index`` column of the CLI's CSV files.
        """
        if self.rows_train is None or self.rows_test is None:
            return np.arange(len(self.x_train) + len(self.x_test), dtype=np.int64)
        return np.concatenate([self.rows_train, self.rows_test]).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        """Describe the dataset in a JSON-serialisable dictionary.

        Returns
        -------
        dict
            Keys ``name``, ``n_train``, ``n_test``, ``image_shape`` (C, H, W), ``n_classes``,
            ``classes`` and ``official_split``.
        """
        return {
            "name": self.name,
            "n_train": len(self.x_train),
            "n_test": len(self.x_test),
            "image_shape": self.image_shape,
            "n_classes": len(self.classes),
            "classes": self.classes,
            "official_split": self.official_split,
        }


def draw_labels(y: np.ndarray, n_labels: int | None, seed: int) -> np.ndarray:
    """Keep ``n_labels`` of the labels ``y``, as evenly over the classes as they go.

    ``n_labels // K`` images of each of the ``K`` classes present (the first
    ``n_labels % K`` classes one more) are drawn with ``seed``; every other label becomes
    ``-1`` (unlabeled). A class with fewer images than its share gives all it has and the
    others share the rest the same way, so ``n_labels`` up to the number of labeled images
    always works (all of them keeps every label). ``None`` keeps every label.
    The benchmarks and ``vaekit classify --labels N`` draw with this one function.

    Raises
    ------
    ConfigError
        If ``n_labels`` is fewer than the classes or more than the labeled images.
    """
    if n_labels is None:
        return y.copy()
    present, counts = np.unique(y[y >= 0], return_counts=True)
    if n_labels < len(present):
        raise ConfigError(
            f"{n_labels} labels are fewer than the {len(present)} classes; ask for at least "
            f"{len(present)}"
        )
    if n_labels > counts.sum():
        raise ConfigError(
            f"{n_labels} labels are more than the {counts.sum()} labeled training images; "
            "ask for fewer (or leave the number out to keep every label)"
        )
    want = np.zeros(len(present), dtype=np.int64)
    open_ = np.ones(len(present), dtype=bool)  # classes whose share is not yet settled
    budget = n_labels
    while True:
        base, extra = divmod(budget, int(open_.sum()))
        share = np.zeros_like(want)
        share[open_] = base + (np.arange(open_.sum()) < extra)
        short = open_ & (counts < share)
        if not short.any():
            want[open_] = share[open_]
            break
        want[short], open_[short] = counts[short], False  # all they have
        budget -= int(counts[short].sum())
    rng = np.random.default_rng(seed)
    out = np.full_like(y, UNLABELED)
    for c, k in zip(present, want, strict=True):
        out[rng.choice(np.flatnonzero(y == c), k, replace=False)] = c
    return out


def check_split_args(test_fraction: float, random_state: int) -> None:
    """Reject a test fraction outside (0, 1) or a non-integer seed.

    Parameters
    ----------
    test_fraction : float
        Share of the images that goes to the test part.
    random_state : int
        Seed of the split.

    Raises
    ------
    ConfigError
        If either value is of the wrong type or range.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise ConfigError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise ConfigError(f"random_state must be an integer, got {random_state!r}")


def seeded_split(
    n: int, y: np.ndarray | None, test_fraction: float, random_state: int, *, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into sorted train and test indices with a fixed seed.

    The split is stratified by label when every label value (``-1`` included) occurs at least
    twice and both parts can hold one image of each; otherwise it is a plain shuffle. A
    single image is the training part alone, with an empty test part: there is nothing to
    hold out, and it can still be embedded or predicted by a trained run.

    Parameters
    ----------
    n : int
        Number of images.
    y : numpy.ndarray or None
        Labels used for stratification, or ``None``.
    test_fraction : float
        Share of the images that goes to the test part (rounded up).
    random_state : int
        Seed of the split.
    source : str
        Name of the data source, for error messages.

    Returns
    -------
    train_idx, test_idx : numpy.ndarray
        Sorted ``int64`` indices.

    Raises
    ------
    DataError
        If there is no image, or ``test_fraction`` leaves the training part empty.
    """
    if n == 1:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    n_test = math.ceil(test_fraction * n)
    if n < 2 or n_test >= n:
        raise DataError(
            f"{source} holds {n} image(s), too few to split off a test part with "
            f"test_fraction={test_fraction}; add images or lower the test fraction"
        )
    stratify = None
    if y is not None:
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() >= 2 and min(n_test, n - n_test) >= len(counts):
            stratify = y
    # Imported here: scikit-learn takes a second to import, which the CLI's quick answers
    # (argument and bad-input errors) should not pay.
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=n_test, random_state=int(random_state), stratify=stratify
    )
    return np.sort(train_idx), np.sort(test_idx)
