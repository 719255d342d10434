import gzip
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import load_dataset, registry
from vaekit.data.download import download
from vaekit.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _publish(server, monkeypatch, arrays: dict, tmp_path: Path, write_idx_folder) -> dict:
    """Put gzip IDX files on the server, pin their checksums, point VAEKIT_MIRROR at them."""
    folder = write_idx_folder(tmp_path / "served", arrays)
    table = {}
    for name in registry.IDX_FILE_NAMES:
        body = (folder / name).read_bytes()
        server.files[f"/mnist/{name}"] = body
        table[name] = hashlib.sha256(body).hexdigest()
    monkeypatch.setitem(registry.SHA256, "mnist", table)
    monkeypatch.setenv("VAEKIT_MIRROR", server.url)  # files live under <mirror>/mnist/
    return table


def _cache_files(offline: Path) -> list[str]:
    return sorted(p.name for p in (offline / "cache").rglob("*") if p.is_file())


def test_download_then_cache(
    http_server, monkeypatch, tmp_path, offline, make_idx_arrays, write_idx_folder
) -> None:
    arrays = make_idx_arrays(n_classes=10, hw=(28, 28), n_train=20, n_test=10)
    _publish(http_server, monkeypatch, arrays, tmp_path, write_idx_folder)
    ds = load_dataset("mnist")
    assert len(http_server.requests) == 4
    assert ds.official_split and ds.classes == tuple("0123456789")
    np.testing.assert_array_equal(ds.x_test[:, 0], arrays["x_test"])
    assert _cache_files(offline) == sorted(registry.IDX_FILE_NAMES)

    again = load_dataset("MNIST")
    assert len(http_server.requests) == 4  # served from the cache
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_checksum_mismatch_leaves_nothing(
    http_server, monkeypatch, tmp_path, offline, make_idx_arrays, write_idx_folder
) -> None:
    arrays = make_idx_arrays(n_classes=10, hw=(28, 28))
    table = _publish(http_server, monkeypatch, arrays, tmp_path, write_idx_folder)
    table["train-images-idx3-ubyte.gz"] = "0" * 64
    with pytest.raises(DataError, match=r"failed its SHA-256 check.*VAEKIT_MIRROR") as err:
        load_dataset("mnist")
    assert "\n" not in str(err.value)
    assert _cache_files(offline) == []


def test_interrupted_transfer_leaves_nothing(
    http_server, monkeypatch, tmp_path, offline, make_idx_arrays, write_idx_folder
) -> None:
    arrays = make_idx_arrays(n_classes=10, hw=(28, 28))
    _publish(http_server, monkeypatch, arrays, tmp_path, write_idx_folder)
    http_server.short.add("/mnist/train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"labels-idx1-ubyte\.gz was interrupted after \d+ of"):
        load_dataset("mnist")
    # the first file was complete and verified; the cut one left no trace
    assert _cache_files(offline) == ["train-images-idx3-ubyte.gz"]


def test_unreachable_mirror(offline) -> None:
    with pytest.raises(DataError, match=r"could not download .*VAEKIT_DATA/mnist"):
        load_dataset("mnist")
    assert _cache_files(offline) == []


def test_download_refuses_oversized(http_server, tmp_path, monkeypatch) -> None:
    from vaekit.data import download as download_module

    monkeypatch.setattr(download_module, "MAX_DOWNLOAD_BYTES", 10)
    http_server.files["/big"] = bytes(100)
    with pytest.raises(DataError, match=r"more than 10 bytes"):
        download(f"{http_server.url}/big", tmp_path / "big", "0" * 64)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["data", "debian"])
def test_local_folders_win_over_download(
    where, offline, monkeypatch, make_idx_arrays, write_idx_folder
) -> None:
    arrays = make_idx_arrays(n_classes=10, hw=(28, 28))
    write_idx_folder(offline / where / "fashion-mnist", arrays)
    ds = load_dataset("fashion-mnist")  # VAEKIT_MIRROR points at a closed port
    assert ds.classes[0] == "T-shirt/top" and ds.classes[-1] == "Ankle boot"
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])


def test_incomplete_data_folder(offline, make_idx_arrays, write_idx_folder) -> None:
    arrays = make_idx_arrays(n_classes=10, hw=(28, 28))
    del arrays["y_test"]
    write_idx_folder(offline / "data" / "mnist", arrays)
    with pytest.raises(DataError, match=r"lacks some of .*add the missing files"):
        load_dataset("mnist")


def test_builtin_with_bad_labels(offline, make_idx_arrays, write_idx_folder) -> None:
    arrays = make_idx_arrays(n_classes=12, hw=(28, 28))
    write_idx_folder(offline / "data" / "mnist", arrays)
    with pytest.raises(DataError, match=r"go up to 11 but mnist has 10 classes"):
        load_dataset("mnist")


def test_builtin_with_wrong_size(offline, make_idx_arrays, write_idx_folder) -> None:
    write_idx_folder(offline / "data" / "mnist", make_idx_arrays(n_classes=10))
    with pytest.raises(DataError, match=r"do not hold labelled 28x28 images"):
        load_dataset("mnist")


def test_gzip_roundtrip_of_served_files(tmp_path, make_idx_arrays, write_idx_folder) -> None:
    folder = write_idx_folder(tmp_path / "f", make_idx_arrays())
    raw = gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03"


@pytest.mark.parametrize("mistake", ["missing", "a file", "the dataset folder", "empty"])
def test_a_vaekit_data_that_cannot_be_meant_is_said(
    mistake, offline, monkeypatch, make_idx_arrays, write_idx_folder
) -> None:
    """A typo in $VAEKIT_DATA sent training to the Debian copy without a word (a review);
    a folder that merely holds other datasets stays quiet."""
    write_idx_folder(
        offline / "debian" / "fashion-mnist", make_idx_arrays(n_classes=10, hw=(28, 28))
    )
    data = offline / "mine"
    if mistake == "a file":
        data.write_text("x")
    elif mistake == "the dataset folder":
        write_idx_folder(data, make_idx_arrays(n_classes=10, hw=(28, 28)))
    elif mistake == "empty":
        (data / "fashion-mnist").mkdir(parents=True)
    monkeypatch.setenv("VAEKIT_DATA", str(data))
    with pytest.warns(UserWarning, match=r"\$VAEKIT_DATA .*looking for fashion-mnist elsewhere"):
        assert load_dataset("fashion-mnist").classes[0] == "T-shirt/top"
    (offline / "other" / "mnist").mkdir(parents=True)
    monkeypatch.setenv("VAEKIT_DATA", str(offline / "other"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("fashion-mnist")


def test_local_copy_finds_what_load_dataset_would_use_without_a_download(
    offline: Path, idx_arrays: dict, write_idx_folder
) -> None:
    """``local_copy`` (the benchmarks' "is Fashion-MNIST here?") looks where loading does."""
    assert registry.local_copy("fashion-mnist") is None
    # Uncompressed files in $VAEKIT_DATA count, as load_dataset reads them.
    write_idx_folder(offline / "data" / "fashion-mnist", idx_arrays, gz=False)
    assert registry.local_copy("fashion-mnist") == offline / "data" / "fashion-mnist"
    # So does the download cache; a partial folder does not.
    write_idx_folder(offline / "cache" / "mnist", idx_arrays)
    (offline / "debian" / "mnist").mkdir()
    assert registry.local_copy("mnist") == offline / "cache" / "mnist"
    partial = dict(idx_arrays)
    del partial["y_test"]
    write_idx_folder(offline / "data" / "mnist", partial)
    assert registry.local_copy("mnist") == offline / "cache" / "mnist"
