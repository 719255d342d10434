import gzip
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import load_dataset
from vaekit.data.idx import read_idx, write_idx
from vaekit.errors import DataError


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_read_round_trip(tmp_path: Path, dtype: str, suffix: str) -> None:
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    b = read_idx(path)
    assert b.dtype == a.dtype and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_write_idx_refuses_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"uint8"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype=np.uint64))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path: Path, idx_arrays: dict, write_idx_folder, gz: bool) -> None:
    folder = write_idx_folder(tmp_path / "idx", idx_arrays, gz=gz)
    ds = load_dataset(folder)
    assert ds.official_split
    assert ds.name == str(folder)
    assert ds.x_train.shape == (30, 1, 6, 5) and ds.x_test.shape == (10, 1, 6, 5)
    np.testing.assert_array_equal(ds.x_train[:, 0], idx_arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test, idx_arrays["y_test"])
    assert ds.y_train.dtype == np.int64
    assert ds.classes == ("0", "1", "2")
    assert ds.paths_train is None


def test_idx_folder_dot_variant_names(tmp_path: Path, idx_arrays: dict) -> None:
    folder = tmp_path / "dots"
    folder.mkdir()
    write_idx(folder / "train-images.idx3-ubyte", idx_arrays["x_train"])
    write_idx(folder / "train-labels.idx1-ubyte", idx_arrays["y_train"])
    ds = load_dataset(folder, test_fraction=0.2)
    assert not ds.official_split  # no t10k files: seeded split
    assert (len(ds.x_train), len(ds.x_test)) == (24, 6)
    assert ds.classes == ("0", "1", "2")


def test_single_idx_file(tmp_path: Path, idx_arrays: dict) -> None:
    path = tmp_path / "imgs-idx3-ubyte.gz"
    write_idx(path, idx_arrays["x_train"])
    ds = load_dataset(path, test_fraction=0.5, random_state=3)
    assert ds.y_train is None and ds.y_test is None and ds.classes == ()
    assert not ds.official_split
    assert (len(ds.x_train), len(ds.x_test)) == (15, 15)
    merged = np.sort(np.concatenate([ds.x_train, ds.x_test]).reshape(30, -1), axis=0)
    np.testing.assert_array_equal(merged, np.sort(idx_arrays["x_train"].reshape(30, -1), axis=0))


def test_single_label_file_is_refused(tmp_path: Path, idx_arrays: dict) -> None:
    path = tmp_path / "train-labels-idx1-ubyte"
    write_idx(path, idx_arrays["y_train"])
    with pytest.raises(DataError, match=r"holds labels"):
        load_dataset(path)


def _raw_idx(tmp_path: Path, name: str, a: np.ndarray) -> Path:
    path = tmp_path / name
    write_idx(path, a)
    return path


def test_truncated_idx(tmp_path: Path, idx_arrays: dict) -> None:
    path = _raw_idx(tmp_path, "train-images-idx3-ubyte", idx_arrays["x_train"])
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(DataError) as err:
        load_dataset(path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg
    assert "is truncated: header says 900 bytes of data, found 893; re-download it" in msg
    assert "\n" not in msg


def test_truncated_gzip(tmp_path: Path, idx_arrays: dict) -> None:
    path = tmp_path / "x-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (200, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"x-idx3-ubyte\.gz.*re-download"):
        load_dataset(path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x01\x08\x03" + bytes(100))
    with pytest.raises(DataError, match=r"is not an IDX file"):
        load_dataset(path)


def test_gzip_of_non_idx(tmp_path: Path) -> None:
    path = tmp_path / "junk.gz"
    path.write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(DataError, match=r"not an IDX file"):
        load_dataset(path)


def test_trailing_bytes(tmp_path: Path, idx_arrays: dict) -> None:
    path = _raw_idx(tmp_path, "train-images-idx3-ubyte", idx_arrays["x_train"])
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(DataError, match=r"has 4 byte.* after the 900 its header announces"):
        load_dataset(path)


def test_count_mismatch(tmp_path: Path, idx_arrays: dict, write_idx_folder) -> None:
    idx_arrays["y_train"] = idx_arrays["y_train"][:-1]
    folder = write_idx_folder(tmp_path / "idx", idx_arrays)
    with pytest.raises(DataError, match=r"holds 30 images but .*train-labels.* holds 29 labels"):
        load_dataset(folder)


def test_labels_of_the_other_split_are_not_a_pair(tmp_path: Path, idx_arrays: dict) -> None:
    # t10k's labels saved under the training labels' name: say they do not belong together.
    folder = tmp_path / "idx"
    folder.mkdir()
    _raw_idx(folder, "train-images-idx3-ubyte", idx_arrays["x_train"])
    _raw_idx(folder, "train-labels-idx1-ubyte", idx_arrays["y_test"])
    with pytest.raises(DataError, match=r"labels, so they are not a pair; put the images' own"):
        load_dataset(folder)


def test_label_file_with_image_dims(tmp_path: Path, idx_arrays: dict, write_idx_folder) -> None:
    idx_arrays["y_train"] = idx_arrays["x_train"]
    folder = write_idx_folder(tmp_path / "idx", idx_arrays)
    with pytest.raises(DataError, match=r"label file has 1"):
        load_dataset(folder)


def test_non_ubyte_images_refused(tmp_path: Path) -> None:
    path = _raw_idx(tmp_path, "x-idx3-ubyte", np.zeros((3, 4, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"unsigned-byte"):
        load_dataset(path)


def test_folder_without_train_images(tmp_path: Path, idx_arrays: dict) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", idx_arrays["x_test"])
    with pytest.raises(DataError, match=r"no train-images-idx3-ubyte"):
        load_dataset(tmp_path)


def test_train_test_image_size_mismatch(tmp_path: Path, idx_arrays: dict, write_idx_folder) -> None:
    idx_arrays["x_test"] = np.zeros((10, 5, 5), dtype=np.uint8)
    folder = write_idx_folder(tmp_path / "idx", idx_arrays)
    with pytest.raises(DataError, match=r"training images are"):
        load_dataset(folder)
