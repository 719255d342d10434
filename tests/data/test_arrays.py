import warnings
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import as_image_array, load_dataset
from vaekit.data.arrays import convert_color, encode_labels, resize_images, to_uint8_images
from vaekit.errors import DataError
from vaekit.estimators.base import to_tensor

RNG = np.random.default_rng(0)


def _images(n: int = 20, shape: tuple[int, ...] = (6, 5)) -> np.ndarray:
    return RNG.integers(0, 256, (n, *shape), dtype=np.uint8)


# --- .npy ---------------------------------------------------------------------------------


def test_npy_gray(tmp_path: Path) -> None:
    x = _images()
    np.save(tmp_path / "x.npy", x)
    ds = load_dataset(tmp_path / "x.npy", test_fraction=0.25)
    assert ds.image_shape == (1, 6, 5)
    assert (len(ds.x_train), len(ds.x_test)) == (15, 5)
    assert ds.y_train is None and ds.classes == () and not ds.official_split


def test_npy_channels_last_float(tmp_path: Path) -> None:
    x = RNG.random((10, 7, 5, 3)).astype(np.float32)  # (N, H, W, C)
    np.save(tmp_path / "x.npy", x)
    ds = load_dataset(str(tmp_path / "x.npy"))
    assert ds.image_shape == (3, 7, 5)
    all_x = np.concatenate([ds.x_train, ds.x_test])
    expected = np.rint(x.transpose(0, 3, 1, 2) * 255).astype(np.uint8)
    # the split reorders rows; compare as sorted sets of images
    key = lambda a: np.sort(a.reshape(len(a), -1), axis=0)  # noqa: E731
    np.testing.assert_array_equal(key(all_x), key(expected))


def test_npy_channels_first_rgb(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _images(shape=(3, 4, 4)))
    assert load_dataset(tmp_path / "x.npy").image_shape == (3, 4, 4)


def test_npy_pickled_objects_refused(tmp_path: Path) -> None:
    obj = np.empty(3, dtype=object)
    obj[:] = [{"a": 1}, [2], "three"]
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    with pytest.raises(DataError, match=r"pickled Python objects.*refuses.*safety.*numeric array"):
        load_dataset(tmp_path / "obj.npy")


def test_npz_object_array_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"'x' in file .*objects.*x\.astype\('uint8'\)"):
        load_dataset(tmp_path / "obj.npz")
    x = np.zeros((4, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "lab.npz", x=x, y=np.array(["cat"] * 4, dtype=object))
    with pytest.raises(DataError, match=r"'y' in file .*objects.*y\.astype\(str\)"):
        load_dataset(tmp_path / "lab.npz")


def test_npy_nan_and_inf_counted(tmp_path: Path) -> None:
    x = RNG.random((5, 4, 4))
    x[0, 0, :2] = np.nan
    x[1, 1, 1] = np.inf
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(DataError, match=r"bad\.npy.*holds 3 NaN or infinite"):
        load_dataset(tmp_path / "bad.npy")


def test_float_out_of_range(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", RNG.random((5, 4, 4)) * 255)
    with pytest.raises(DataError, match=r"\[0, 1\].*divide"):
        load_dataset(tmp_path / "f.npy")


def test_int_out_of_range(tmp_path: Path) -> None:
    np.save(tmp_path / "i.npy", np.full((5, 4, 4), 300, dtype=np.int32))
    with pytest.raises(DataError, match=r"0\.\.255"):
        load_dataset(tmp_path / "i.npy")


def test_nearly_black_integer_images_warn_once(tmp_path: Path) -> None:
    """Integers are 0..255 intensities; a file whose brightest pixel is 16 (scikit-learn's
    digits) is valid but nearly black, so the loader says so, once, naming the file."""
    np.save(tmp_path / "d.npy", RNG.integers(0, 17, (10, 8, 8)).astype(np.int64))
    with pytest.warns(UserWarning, match=r"d\.npy' holds integers of at most 16") as caught:
        load_dataset(tmp_path / "d.npy")
    assert len(caught) == 1
    with pytest.warns(UserWarning, match=r"X holds integers of at most 1,.*booleans"):
        as_image_array(RNG.integers(0, 2, (4, 1, 5, 5)), name="X")
    with pytest.warns(UserWarning, match=r"X holds integers of at most 16"):
        to_tensor(RNG.integers(0, 17, (4, 8, 8)).astype(np.uint8))  # estimators' uint8 path
    # (N, features) too, as the README says: load_digits().data is 2-D and 0..16.
    with pytest.warns(UserWarning, match=r"X holds integers of at most 16"):
        as_image_array(np.tile(np.arange(17), (4, 1)), name="X")
    with pytest.warns(UserWarning, match=r"X holds integers of at most 16"):
        to_tensor(np.tile(np.arange(17, dtype=np.uint8), (4, 1)))
    np.save(tmp_path / "u8.npy", RNG.integers(0, 17, (4, 8, 8)).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a memory-mapped file is not read just to warn
        to_tensor(np.load(tmp_path / "u8.npy", mmap_mode="r"))


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((4, 5, 5), dtype=np.uint8),  # all black: nothing to say
        np.full((4, 5, 5), 32, dtype=np.int64),
        RNG.random((4, 5, 5)) * 0.01,  # dim floats are floats in [0, 1] as asked
    ],
)
def test_other_arrays_do_not_warn(x: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_image_array(x)


@pytest.mark.parametrize("shape", [(10, 784), (10, 4, 4, 4), (10,), (2, 2, 3, 4, 4)])
def test_bad_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    np.save(tmp_path / "s.npy", np.zeros(shape, dtype=np.uint8))
    with pytest.raises(DataError, match=r"has shape"):
        load_dataset(tmp_path / "s.npy")


def test_not_a_npy_file(tmp_path: Path) -> None:
    (tmp_path / "fake.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DataError, match=r"not a .npy file"):
        load_dataset(tmp_path / "fake.npy")


# --- .npz ---------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [("x", "y"), ("images", "labels")])
def test_npz_labeled(tmp_path: Path, keys: tuple[str, str]) -> None:
    x, y = _images(40), np.arange(40) % 4
    np.savez(tmp_path / "d.npz", **{keys[0]: x, keys[1]: y})
    ds = load_dataset(tmp_path / "d.npz", test_fraction=0.25)
    assert ds.classes == ("0", "1", "2", "3")
    assert not ds.official_split
    assert sorted(np.bincount(ds.y_test).tolist()) == [2, 2, 3, 3]  # stratified: 10 of 40


def test_npz_official_test_part(tmp_path: Path) -> None:
    np.savez_compressed(
        tmp_path / "d.npz",
        x=_images(12),
        y=np.arange(12) % 3,
        x_test=_images(6),
        y_test=np.arange(6) % 3,
    )
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.official_split
    assert (len(ds.x_train), len(ds.x_test)) == (12, 6)
    assert ds.y_test.tolist() == [0, 1, 2, 0, 1, 2]


def test_npz_string_labels_and_unlabeled(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x=_images(4), y=np.array(["dog", "cat", "dog", "cat"]))
    ds = load_dataset(tmp_path / "s.npz", test_fraction=0.5)
    assert ds.classes == ("cat", "dog")
    np.savez(tmp_path / "u.npz", x=_images(6), y=np.array([3, 7, -1, 3, 7, -1]))
    ds = load_dataset(tmp_path / "u.npz", test_fraction=0.5)
    assert ds.classes == ("3", "7")
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == [-1, -1, 0, 0, 1, 1]


def test_npz_label_length_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=_images(10), y=np.arange(9))
    with pytest.raises(DataError, match=r"10 images in 'x' but 9 labels in 'y'"):
        load_dataset(tmp_path / "d.npz")


def test_npz_missing_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", pixels=_images(10))
    with pytest.raises(DataError, match=r"\['pixels'\] but no 'x' or 'images'"):
        load_dataset(tmp_path / "d.npz")


def test_npz_test_shape_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=_images(10), x_test=_images(4, (5, 5)))
    with pytest.raises(DataError, match=r"'x_test' images are"):
        load_dataset(tmp_path / "d.npz")


def test_npz_bad_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=_images(4), y=np.array([0.5, 1, 2, 3]))
    with pytest.raises(DataError, match=r"fractional"):
        load_dataset(tmp_path / "d.npz")
    np.savez(tmp_path / "d.npz", x=_images(4), y=np.array([0, -2, 1, 1]))
    with pytest.raises(DataError, match=r"label -2"):
        load_dataset(tmp_path / "d.npz")


# --- helpers ------------------------------------------------------------------------------


def test_encode_labels_remaps_sparse_values() -> None:
    (a, b), classes = encode_labels([(np.array([10, 30, -1]), "a"), (np.array([20]), "b")])
    assert classes == ("10", "20", "30")
    assert a.tolist() == [0, 2, -1] and b.tolist() == [1]
    (none,), classes = encode_labels([(None, "a")])
    assert none is None and classes == ()


def test_convert_color_and_resize() -> None:
    rgb = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    rgb[:, 0] = 255  # pure red -> BT.601 luma 76
    gray = convert_color(rgb, "grayscale")
    assert gray.shape == (2, 1, 4, 4) and np.all(gray == 76)
    assert convert_color(gray, "rgb").shape == (2, 3, 4, 4)
    assert resize_images(rgb, (8, 6)).shape == (2, 3, 8, 6)
    assert resize_images(rgb, (4, 4)) is rgb


# --- as_image_array -----------------------------------------------------------------------


def test_as_image_array_uint8() -> None:
    out = as_image_array(np.full((2, 4, 5), 255, dtype=np.uint8))
    assert out.dtype == np.float32 and out.shape == (2, 1, 4, 5) and np.all(out == 1)


def test_as_image_array_layouts() -> None:
    assert as_image_array(np.zeros((2, 3, 4, 5))).shape == (2, 3, 4, 5)
    assert as_image_array(np.zeros((2, 4, 5, 3))).shape == (2, 3, 4, 5)
    flat = as_image_array(np.full((3, 7), 0.5, dtype=np.float64))
    assert flat.shape == (3, 7) and flat.dtype == np.float32 and flat.flags.c_contiguous
    assert as_image_array([[0, 255]]).tolist() == [[0.0, 1.0]]
    assert as_image_array(np.ones((1, 2, 2), dtype=bool)).max() == 1


def test_floats_a_rounding_error_outside_the_range_are_clipped() -> None:
    """MinMaxScaler gives 1.0000000000000002; before, refused as 'from 0 to 1' (a review)."""
    x = np.array([[0.5, 1 + 2e-16, -1e-9, 1 + 5e-7]])
    kept = x.copy()
    out = as_image_array(x)
    assert out.tolist() == [[0.5, 1.0, 0.0, 1.0]]
    np.testing.assert_array_equal(x, kept)  # the user's array is not clipped in place
    np.testing.assert_array_equal(
        to_uint8_images(x[:, None, None, :], "x"), [[[[128, 255, 0, 255]]]]
    )
    with pytest.raises(DataError, match="1 float"):
        as_image_array(np.array([[0.5, 1 + 2e-6]]))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.array([[np.nan, 0.5]]), "1 NaN or infinite"),
        (np.array([[np.inf, 0.5]]), "NaN or infinite"),
        (np.array([[1.5, 0.5]]), r"\[0, 1\]"),
        (np.array([[-0.1, 0.5]]), r"\[0, 1\]"),
        (np.array([[256, 0]]), r"0\.\.255"),
        (np.array([[-1, 0]]), r"0\.\.255"),
        (np.zeros(5), "has shape"),
        (np.zeros((1, 1, 1, 1, 1)), "has shape"),
        (np.zeros((2, 4, 4, 4)), "1 or 3 channels"),
        (np.zeros((0, 4)), "empty"),
        (np.zeros((0, 4, 4)), "empty"),
        (np.array([["a", "b"]]), "dtype"),
        (np.array([[{}, {}]], dtype=object), "dtype"),
        (np.zeros((2, 2), dtype=complex), "dtype"),
    ],
)
def test_as_image_array_rejects(x: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        as_image_array(x, name="X_train")


def test_as_image_array_names_input() -> None:
    with pytest.raises(DataError, match=r"^X_new "):
        as_image_array(np.zeros(3), name="X_new")
    with pytest.raises(DataError, match=r"cannot be read as an array"):
        as_image_array([[1, 2], [3]])


def test_float_images_convert_a_block_of_rows_at_a_time(monkeypatch) -> None:
    # The whole array at once took float temporaries of twice a float file's size (+900 MB
    # for 100,000 28x28 float32 images); blocks give the same bytes and the same checks.
    from vaekit.data import arrays

    x = np.random.default_rng(0).random((25, 4, 5)).astype(np.float32)
    x[3, 0, 0] = 0.5 / 255  # rounds half to even, as np.rint does
    whole = arrays.to_uint8_images(x, "x")
    monkeypatch.setattr(arrays, "_row_blocks", lambda a: arrays.row_blocks(len(a), 20, 40))
    np.testing.assert_array_equal(arrays.to_uint8_images(x, "x"), whole)
    np.testing.assert_array_equal(whole[:, 0], np.rint(x * np.float32(255)).astype(np.uint8))
    x[24, 1, 1] = np.nan  # in the last of the 13 blocks
    with pytest.raises(DataError, match="holds 1 NaN or infinite value"):
        arrays.to_uint8_images(x, "x")
