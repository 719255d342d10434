from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from vaekit.data import Dataset, load_dataset
from vaekit.data.dataset import seeded_split
from vaekit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.x_train.dtype == np.uint8 and digits.x_train.shape[1:] == (1, 8, 8)
    assert (len(digits.x_train), len(digits.x_test)) == (1437, 360)
    assert digits.y_train.dtype == np.int64
    assert digits.classes == tuple(str(d) for d in range(10))
    assert not digits.official_split and digits.paths_train is None
    assert np.bincount(digits.y_test).min() >= 35  # stratified: about 36 per class
    assert digits.x_train.max() == 255


def test_digits_pixel_scaling(digits: Dataset) -> None:
    raw = load_digits()
    expected = np.rint(raw.images * 255 / 16).astype(np.uint8)
    both = np.concatenate([digits.x_train, digits.x_test])[:, 0]
    labels = np.concatenate([digits.y_train, digits.y_test])
    assert np.array_equal(
        np.sort(both.reshape(1797, -1), axis=0), np.sort(expected.reshape(1797, -1), axis=0)
    )
    assert np.bincount(labels).tolist() == np.bincount(raw.target).tolist()


def test_digits_seeded(digits: Dataset) -> None:
    same = load_dataset("digits", random_state=0)
    np.testing.assert_array_equal(same.x_train, digits.x_train)
    np.testing.assert_array_equal(same.y_test, digits.y_test)
    other = load_dataset("digits", random_state=1)
    assert not np.array_equal(other.y_test, digits.y_test)
    half = load_dataset("digits", test_fraction=0.5)
    assert (len(half.x_train), len(half.x_test)) == (898, 899)


def test_digits_resized_rgb() -> None:
    ds = load_dataset("digits", image_size=16, color="rgb")
    assert ds.image_shape == (3, 16, 16)
    assert np.array_equal(ds.x_train[:, 0], ds.x_train[:, 2])


def test_summary(digits: Dataset) -> None:
    assert digits.summary() == {
        "name": "digits",
        "n_train": 1437,
        "n_test": 360,
        "image_shape": (1, 8, 8),
        "n_classes": 10,
        "classes": digits.classes,
        "official_split": False,
    }


def test_unknown_name() -> None:
    with pytest.raises(DataError) as err:
        load_dataset("cifar-7")
    assert str(err.value) == (
        "no such file or directory: 'cifar-7'; pass digits, fashion-mnist, mnist or a path"
    )


def test_unsupported_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(DataError, match=r"unsupported file type"):
        load_dataset(tmp_path / "data.csv")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_size": 0},
        {"image_size": (8,)},
        {"image_size": True},
        {"image_size": 100_000},
        {"color": "sepia"},
        {"test_fraction": 1.0},
        {"test_fraction": 0},
        {"random_state": 1.5},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        load_dataset("digits", **kwargs)


def test_one_image_is_a_training_part_alone(tmp_path: Path) -> None:
    """One new image must load (to embed or predict it); two cannot give 90 % to a test part."""
    np.save(tmp_path / "one.npy", np.full((1, 4, 4), 200, dtype=np.uint8))
    ds = load_dataset(tmp_path / "one.npy")
    assert ds.x_train.shape == (1, 1, 4, 4) and ds.x_test.shape == (0, 1, 4, 4)
    assert ds.x_train[0, 0, 0, 0] == 200
    np.save(tmp_path / "two.npy", np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match=r"too few to split"):
        load_dataset(tmp_path / "two.npy", test_fraction=0.9)


def test_seeded_split_falls_back_to_shuffle() -> None:
    y = np.array([0, 0, 0, 0, 1])  # class 1 has one member: cannot stratify
    train, test = seeded_split(5, y, 0.4, 0, source="s")
    assert sorted(np.concatenate([train, test]).tolist()) == [0, 1, 2, 3, 4]
    assert len(test) == 2 and np.all(np.diff(train) > 0)


def test_dataset_validates_itself() -> None:
    x = np.zeros((4, 1, 2, 2), dtype=np.uint8)
    with pytest.raises(DataError, match=r"uint8"):
        Dataset("d", x.astype(np.float32), None, x, None, ())
    with pytest.raises(DataError, match=r"channels"):
        Dataset("d", np.zeros((4, 2, 2, 2), np.uint8), None, x, None, ())
    with pytest.raises(DataError, match=r"must agree"):
        Dataset("d", x, None, np.zeros((4, 1, 3, 3), np.uint8), None, ())
    with pytest.raises(DataError, match=r"int64"):
        Dataset("d", x, np.zeros(3, np.int64), x, None, ("a",))
    with pytest.raises(DataError, match=r"outside"):
        Dataset("d", x, np.full(4, 2, np.int64), x, None, ("a", "b"))
    with pytest.raises(DataError, match=r"paths_test"):
        Dataset("d", x, None, x, None, (), paths_test=("a",))
    ok = Dataset("d", x, np.array([0, 1, -1, 1]), x, None, ("a", "b"))
    assert ok.image_shape == (1, 2, 2) and ok.official_split


def test_a_folder_spelled_unlike_a_builtin_name_is_read_as_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("Digits", "digits"):
        for c in ("cat", "dog"):
            (tmp_path / name / c).mkdir(parents=True, exist_ok=True)
            for i in range(6):
                Image.new("L", (4, 4), 40 * i).save(tmp_path / name / c / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    folder = load_dataset("Digits")  # a relative path that happens to match a name
    assert folder.classes == ("cat", "dog") and folder.image_shape == (1, 4, 4)
    with pytest.warns(UserWarning, match=r"'digits' is the built-in dataset.*\./digits"):
        builtin = load_dataset("digits")  # the exact name: the built-in, with a warning
    assert len(builtin.x_train) + len(builtin.x_test) == 1797
    assert len(load_dataset("./digits").x_train) + len(load_dataset("./digits").x_test) == 12


def test_all_labels_fills_a_part_without_labels() -> None:
    x = np.zeros((4, 1, 2, 2), np.uint8)
    ds = Dataset("t", x_train=x, y_train=np.array([0, 1, 1, 0]), x_test=x[:2], y_test=None,
                 classes=("a", "b"))  # fmt: skip
    np.testing.assert_array_equal(ds.all_labels(), [0, 1, 1, 0, -1, -1])
    unlabeled = Dataset("u", x_train=x, y_train=None, x_test=x[:2], y_test=None, classes=())
    assert unlabeled.all_labels() is None


def test_draw_labels_spreads_the_remainder_and_explains_shortfalls() -> None:
    """One function draws the labels for vaekit classify and bench/classification.py."""
    from vaekit.data.dataset import draw_labels
    from vaekit.errors import ConfigError

    y = np.repeat(np.arange(4), 10)
    kept = draw_labels(y, 10, seed=0)
    assert np.bincount(kept[kept >= 0], minlength=4).tolist() == [3, 3, 2, 2]
    assert (kept[kept >= 0] == y[kept >= 0]).all()
    np.testing.assert_array_equal(draw_labels(y, 10, seed=0), kept)  # seeded
    assert np.array_equal(draw_labels(y, None, seed=0), y)
    with pytest.raises(ConfigError, match="fewer than the 4 classes"):
        draw_labels(y, 3, seed=0)
    with pytest.raises(ConfigError, match="44 labels are more than the 40 labeled"):
        draw_labels(y, 44, seed=0)
    # A class short of its share gives all it has; the others share the rest evenly, so
    # every N up to all the labels works (a user's "all 1,437" on the digits did not).
    uneven = np.repeat(np.arange(4), [2, 10, 10, 9])
    for n, counts in ((20, [2, 6, 6, 6]), (29, [2, 9, 9, 9]), (30, [2, 10, 9, 9]), (31, None)):
        kept = draw_labels(uneven, n, seed=0)
        assert np.bincount(kept[kept >= 0], minlength=4).tolist() == (
            counts or np.bincount(uneven).tolist()
        )


def test_dataset_repr_summarises_instead_of_printing_the_arrays() -> None:
    text = repr(load_dataset("digits"))
    assert text == "Dataset('digits', 1437 train + 360 test, 1x8x8, 10 classes, seeded split)"
