"""Prepared (memory-mapped) datasets: ``prepare``, loading, and training beyond a memory limit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit import load_dataset
from vaekit.data.prepared import FORMAT, all_images, manifest_path, prepare
from vaekit.errors import DataError

#: The larger-than-memory test: images of 3x64x64 bytes, more of them than the limit holds.
BIG_SHAPE = (1, 128, 128)
BIG_N = 7_000  # 115 MB of uint8 images
#: Private writable memory the training child may add after a warm-up fit on a few images
#: has paid torch's fixed start-up costs (thread pools, allocator arenas).
BIG_BUDGET = 64 * 2**20


def _folder(root: Path, n_per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            a = rng.integers(0, 256, (10, 12), dtype=np.uint8)
            Image.fromarray(a).save(root / cls / f"{i:02d}.png")
    return root


def test_prepare_digits_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "digits.npy"  # created, as for every --out FILE
    meta = prepare("digits", out)
    assert meta["format"] == FORMAT and manifest_path(out).is_file()
    ref, ds = load_dataset("digits"), load_dataset(out)
    assert isinstance(ds.x_train, np.memmap) and not ds.x_train.flags.writeable
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.x_test, ref.x_test)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    assert ds.classes == ref.classes
    # Train and test are views of one file: all_images returns it without a copy.
    x = all_images(ds)
    assert len(x) == 1797 and np.shares_memory(x, ds.x_train)
    # The manifest works as the spec too; the .npy is a plain array (no pickle).
    assert load_dataset(manifest_path(out)).x_train.shape == ref.x_train.shape
    assert np.load(out, allow_pickle=False).shape == (1797, 1, 8, 8)


def test_prepare_image_folder_keeps_paths_labels_and_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _folder(tmp_path / "imgs")
    (src / "dog" / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "prepared" / "p.npy"
    with pytest.raises(DataError, match=r"bad\.png"):
        prepare(src, out)
    assert not out.exists() and not list(tmp_path.rglob(".*tmp*"))
    with pytest.warns(UserWarning, match="skipped 1"):
        meta = prepare(src, out, skip_bad=True, test_fraction=0.25)
    # 13 listed, 4 of them (ceil(0.25 * 13)) drawn for the test part, 1 unreadable
    assert meta["shape"] == [12, 1, 10, 12] and meta["n_test"] in (3, 4)
    ds = load_dataset(out)
    assert ds.classes == ("cat", "dog")
    # Every row is the image its manifest path names, with that path's class.
    for x, y, p in zip(
        [*ds.x_train, *ds.x_test], [*ds.y_train, *ds.y_test], [*ds.paths_train, *ds.paths_test],
        strict=True,
    ):  # fmt: skip
        np.testing.assert_array_equal(x[0], np.asarray(Image.open(p)))
        assert ds.classes[y] == Path(p).parent.name
    assert json.loads(manifest_path(out).read_text())["paths"][0].startswith(str(src))
    # A relative folder is recorded absolute: the manifest is read from other folders.
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        prepare("imgs", tmp_path / "rel.npy", skip_bad=True)
    assert json.loads((tmp_path / "rel.json").read_text())["paths"][0].startswith(str(src))


def test_prepare_expands_the_home_folder_and_takes_one_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'~/photos' as the README writes it: the manifest's paths and the output were under a
    folder literally named '~' of the working directory. One image is a training part alone."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    src = _folder(tmp_path / "home" / "pics")
    meta = prepare("~/pics", "~/p.npy")
    assert (tmp_path / "home" / "p.npy").is_file() and not (tmp_path / "~").exists()
    assert all(Path(p).is_file() for p in meta["paths"])
    assert meta["paths"][0].startswith(str(src))
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(np.full((10, 12), 9, dtype=np.uint8)).save(one / "only.png")
    prepare(one, tmp_path / "one.npy")
    ds = load_dataset(tmp_path / "one.npy")
    assert ds.x_train.shape == (1, 1, 10, 12) and len(ds.x_test) == 0
    assert list(ds.paths_train) == [str(one / "only.png")]


def test_sizes_that_differ_between_blocks_name_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: 'are 1x10x12 (CxHxW) in the first block but 1x5x5 later', naming no file."""
    import vaekit.data.prepared as prepared

    monkeypatch.setattr(prepared, "PREPARE_BLOCK", 1)  # every image its own block
    src = _folder(tmp_path / "imgs", n_per_class=3)
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(src / "dog" / "odd.png")
    with pytest.raises(DataError, match=r"differ in size \(.*odd\.png.*\); pass --image-size"):
        prepare(src, tmp_path / "p.npy")


def test_a_skipped_image_leaves_the_same_split_in_the_folder_and_its_prepared_file(
    tmp_path: Path,
) -> None:
    """Both split the files listed, then skip the unreadable ones.

    Found by a review: the folder was split after its unreadable files were dropped and
    'vaekit prepare --skip-bad' before, so 11 of 40 test images differed with the same seed.
    A part left without a readable image is an error in both (it was an empty test part
    in the prepared file).
    """
    src = _folder(tmp_path / "imgs", n_per_class=20)
    (src / "cat" / "05.png").write_bytes(b"not a png")
    (src / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 2"):
        direct = load_dataset(src, skip_bad=True, random_state=3)
    with pytest.warns(UserWarning, match="skipped 2"):
        prepare(src, tmp_path / "p.npy", skip_bad=True, random_state=3)
    ds = load_dataset(tmp_path / "p.npy")
    assert (ds.paths_train, ds.paths_test) == (direct.paths_train, direct.paths_test)
    np.testing.assert_array_equal(ds.x_test, direct.x_test)
    assert not direct.official_split and not ds.official_split
    for path in ds.paths_test:
        Path(path).write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="left in the test part"):
        load_dataset(src, skip_bad=True, random_state=3)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="left in a part"):
        prepare(src, tmp_path / "q.npy", skip_bad=True, random_state=3)


def test_prepared_file_errors_are_one_line(tmp_path: Path) -> None:
    out = tmp_path / "d.npy"
    prepare("digits", out)
    with pytest.raises(DataError, match="prepared as 1x8x8"):
        load_dataset(out, image_size=16)
    meta = json.loads(manifest_path(out).read_text())
    meta["shape"][0] += 1
    manifest_path(out).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="prepare"):
        load_dataset(out)
    # A manifest of another version: said once (before, the advice came twice in one line).
    manifest_path(out).write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(DataError, match="version-") as err:
        load_dataset(out)
    assert str(err.value).count("vaekit prepare") == 1


def test_a_manifest_saved_again_by_a_json_tool_is_still_read(tmp_path: Path) -> None:
    # Keys sorted and no spaces (jq -c -S): before, the array then loaded as a plain .npy
    # with a new random split, no labels and no paths, and nothing said so.
    out = tmp_path / "d.npy"
    prepare("digits", out)
    before = load_dataset(out)
    meta = json.loads(manifest_path(out).read_text())
    manifest_path(out).write_text(json.dumps(meta, separators=(",", ":"), sort_keys=True))
    after = load_dataset(out)
    np.testing.assert_array_equal(after.x_test, before.x_test)
    np.testing.assert_array_equal(after.y_train, before.y_train)


@pytest.mark.parametrize("n_train, n_test", [(1797, 0), (1897, -100)])
def test_a_manifest_without_test_images_is_refused_before_training(
    tmp_path: Path, n_train: int, n_test: int
) -> None:
    out = tmp_path / "d.npy"
    prepare("digits", out)
    meta = json.loads(manifest_path(out).read_text())
    manifest_path(out).write_text(json.dumps({**meta, "n_train": n_train, "n_test": n_test}))
    with pytest.raises(DataError, match=rf"{n_train} \+ {n_test} images.*vaekit prepare"):
        load_dataset(out)


def test_a_kill_between_the_two_renames_leaves_a_manifest_without_its_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The array used to be renamed into place first: killed then, it was left without a
    # manifest and loaded as a plain .npy (new split, no labels).
    import os

    import vaekit.data.prepared as prepared

    out = tmp_path / "d.npy"
    real = os.replace

    def killed_after_first(src, dst):
        real(src, dst)
        raise KeyboardInterrupt  # as a kill after the first rename

    monkeypatch.setattr(prepared.os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        prepare("digits", out)
    monkeypatch.setattr(prepared.os, "replace", real)
    assert manifest_path(out).exists() and not out.exists()
    with pytest.raises(DataError, match=r"d\.npy.* is missing; run 'vaekit prepare' again"):
        load_dataset(out)
    res = _vaekit("prepare", "digits", "--out", out, "-q")  # and preparing it again works
    assert res.returncode == 0, res.stderr
    assert load_dataset(out).y_train is not None


def _vaekit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaekit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_cli_prepare(tmp_path: Path) -> None:
    out = tmp_path / "d.npy"
    res = _vaekit("prepare", "digits", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "1437 training + 360 test" in res.stderr
    assert load_dataset(out).x_test.shape == (360, 1, 8, 8)
    # Never over an existing file: the source itself, or a .json of the user's.
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "settings"}')
    for args in (
        ("prepare", out, "--out", out),
        ("prepare", "digits", "--out", tmp_path / "mine.npy"),
    ):
        before = {p: p.read_bytes() for p in (out, mine)}
        res = _vaekit(*args)
        assert res.returncode == 2 and "already exists" in res.stderr, res.stderr
        assert {p: p.read_bytes() for p in (out, mine)} == before


#: The child scripts' reading of their own memory use (bytes of a /proc/self/status field).
VM_OF_SELF = """
def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)
"""

CHILD = (
    """
import resource, sys, numpy as np
import torch
from vaekit import VAE, load_dataset
from vaekit.data.prepared import all_images
"""
    + VM_OF_SELF
    + """
torch.set_num_threads(2)
ds = load_dataset(sys.argv[1])
x = all_images(ds)
budget = int(sys.argv[2])
assert x.nbytes > budget, (x.nbytes, budget)
params = dict(latent_dim=4, hidden_dims=(16,), batch_size=64, max_epochs=1, random_state=0)
VAE(**params).fit(np.array(x[:512])).transform(np.array(x[:512]))  # warm-up
# From here on the process may map at most `budget` more bytes of private writable memory
# (RLIMIT_DATA counts those, not the read-only file mapping of the dataset).
limit = vm("VmData") + budget
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
try:
    np.array(x)  # control: a full in-memory copy must fail under the limit
    print("CONTROL-COPY-SUCCEEDED")
except MemoryError:
    pass
vae = VAE(**params).fit(ds.x_train)
z = vae.transform(x)
assert z.shape == (len(x), 4) and np.isfinite(z).all()
assert np.isfinite(vae.history_[-1]["loss"]) and "val_loss" in vae.history_[-1]
print("OK", x.nbytes, limit, vm("VmHWM"), vm("RssAnon"))
"""
)


def test_training_on_data_larger_than_the_memory_limit(tmp_path: Path) -> None:
    """Fit and embed a 115 MB prepared dataset with at most 64 MB of new private memory."""
    arr = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(arr, mode="w+", dtype=np.uint8, shape=(BIG_N, *BIG_SHAPE))
    rng = np.random.default_rng(0)
    for i in range(0, BIG_N, 4000):  # smooth random images, written in blocks
        mm[i : i + 4000] = rng.integers(0, 256, (min(4000, BIG_N - i), 1, 1, 128), np.uint8)
    mm.flush()
    del mm
    meta = {
        "format": FORMAT, "version": 1, "source": "synthetic", "dtype": "uint8",
        "shape": [BIG_N, *BIG_SHAPE], "n_train": BIG_N - 2000, "n_test": 2000,
        "official_split": True, "classes": [], "labels": None, "paths": None,
    }  # fmt: skip
    manifest_path(arr).write_text(json.dumps(meta))
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(arr), str(BIG_BUDGET)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "CONTROL-COPY-SUCCEEDED" not in res.stdout, "the memory limit does not bite"
    assert res.stdout.startswith("OK"), res.stdout


def test_prepare_keeps_training_labels_when_the_test_part_has_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 6, 6), dtype=np.uint8)
    y = np.repeat([0, 1, 2], 10)
    np.savez(tmp_path / "t.npz", x=x, y=y, x_test=x[:5])  # no y_test
    prepare(tmp_path / "t.npz", tmp_path / "t.npy")
    ds = load_dataset(tmp_path / "t.npy")
    np.testing.assert_array_equal(ds.y_train, load_dataset(tmp_path / "t.npz").y_train)
    assert (ds.y_test == -1).all() and len(ds.y_test) == 5


def test_prepare_auto_colour_over_blocks_matches_load_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colour image after the first block of gray ones: three channels for all."""
    from vaekit.data import prepared

    monkeypatch.setattr(prepared, "PREPARE_BLOCK", 4)
    src = tmp_path / "flat"
    src.mkdir()
    for i in range(10):
        mode = "RGB" if i == 8 else "L"
        Image.new(mode, (3, 3), (i, 2 * i, 3 * i) if mode == "RGB" else i).save(src / f"{i}.png")
    prepare(src, tmp_path / "p.npy")
    direct, prep = load_dataset(src), load_dataset(tmp_path / "p.npy")
    assert prep.image_shape == direct.image_shape == (3, 3, 3)
    np.testing.assert_array_equal(prep.x_train, direct.x_train)


@pytest.mark.parametrize("source", ["digits", "folder"])
@pytest.mark.parametrize("failing", ["posix_fallocate", "write_text"])
def test_prepare_on_a_full_disk_names_the_file_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, failing: str
) -> None:
    """No space for the array or its manifest: an OSError naming the file, no temp files.

    Without the reserved blocks the array's memory map was written on a full disk and the
    process died of SIGBUS, leaving the temp file behind.
    """
    import errno
    import os

    from vaekit.data import prepared

    if failing == "posix_fallocate" and not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this system")
    spec = "digits" if source == "digits" else str(_folder(tmp_path / "src"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.npy").write_bytes(b"the user's")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = prepared.os if failing == "posix_fallocate" else Path
    monkeypatch.setattr(target, failing, disk_full)
    out = out_dir / "x.npy"
    with pytest.raises(OSError) as info:
        prepare(spec, out)
    want = out if failing == "posix_fallocate" else manifest_path(out)
    assert info.value.filename == str(want) and info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.npy"]


NPY_CHILD = (
    """
import resource, sys
from vaekit import load_dataset
from vaekit.data.prepared import prepare
from vaekit.errors import DataError
"""
    + VM_OF_SELF
    + """
src, out, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
import sklearn.model_selection  # imports cost memory too: made before the limit
limit = vm("VmData") + budget  # private writable memory from here on (not file mappings)
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
try:
    load_dataset(src)  # holds its split images in memory: must fail, clearly
    print("CONTROL-LOAD-SUCCEEDED")
except DataError as exc:
    assert "vaekit prepare" in str(exc), exc
meta = prepare(src, out)  # streams
print("OK", meta["n_train"], meta["n_test"])
"""
)


def test_prepare_streams_a_npy_larger_than_the_memory_limit(tmp_path: Path) -> None:
    """A plain 115 MB .npy: load_dataset needs it in memory, prepare does not.

    Before, prepare loaded the whole array (and load_dataset read it, then copied it for
    the split), so a .npy larger than memory could not be used at all.
    """
    src = tmp_path / "plain.npy"
    mm = np.lib.format.open_memmap(src, mode="w+", dtype=np.uint8, shape=(BIG_N, *BIG_SHAPE))
    mm[:, 0, ::7, ::5] = 200  # a pattern, written as a view: no full array in this process
    mm.flush()
    del mm
    out = tmp_path / "prepared.npy"
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NPY_CHILD), str(src), str(out), str(BIG_BUDGET)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "CONTROL-LOAD-SUCCEEDED" not in res.stdout, "the memory limit does not bite"
    assert res.stdout.startswith("OK"), res.stdout
    ds = load_dataset(out)
    assert len(ds.x_train) + len(ds.x_test) == BIG_N
    assert ds.x_train[3, 0, 7, 5] == 200 and ds.x_train[3, 0, 1, 1] == 0


def test_prepare_of_a_npy_matches_load_dataset(tmp_path: Path) -> None:
    """The streamed conversion gives load_dataset's rows, split and conversions exactly."""
    x = np.random.default_rng(0).random((300, 9, 7, 3)).astype(np.float32)  # floats, NHWC
    np.save(tmp_path / "f.npy", x)
    for i, kw in enumerate([{}, {"image_size": 5, "color": "grayscale", "random_state": 4}]):
        want = load_dataset(tmp_path / "f.npy", **kw)
        prepare(tmp_path / "f.npy", tmp_path / f"p{i}.npy", **kw)
        got = load_dataset(tmp_path / f"p{i}.npy")
        np.testing.assert_array_equal(got.x_train, want.x_train)
        np.testing.assert_array_equal(got.x_test, want.x_test)


@pytest.mark.parametrize("bad_block", ["first", "last"])
def test_prepare_skip_bad_survives_a_block_of_only_unreadable_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_block: str
) -> None:
    """As load_dataset: fail only when no image of the folder reads; warn once, in total."""
    import warnings

    from vaekit.data import prepared

    monkeypatch.setattr(prepared, "PREPARE_BLOCK", 4)
    src = tmp_path / "flat"
    src.mkdir()
    for i in range(10):
        Image.new("L", (3, 3), i).save(src / f"{i}.png")
    # Rows are in split order (8 training rows, then 2 test rows), so the files of the
    # first (or second) block of 4 are those rows; the test part keeps its images.
    order = prepare(src, tmp_path / "all.npy")["paths"]
    bad = order[:4] if bad_block == "first" else order[4:8]
    bad.append(order[5] if bad_block == "first" else order[0])  # and one more elsewhere
    for path in bad:
        Path(path).write_bytes(b"not a png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = prepare(src, tmp_path / "p.npy", skip_bad=True)
    assert [str(w.message).split(":")[0] for w in caught] == [
        f"skipped 5 unreadable image(s) in {str(src)!r}"
    ]
    assert caught[0].filename == __file__
    assert sorted(meta["paths"]) == sorted(set(order) - set(bad))
    with pytest.warns(UserWarning, match="skipped 5"):
        direct = load_dataset(src, skip_bad=True)
    assert load_dataset(tmp_path / "p.npy").image_shape == direct.image_shape == (1, 3, 3)
    for path in order:
        Path(path).write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"none of the 10 images in .* can be read"):
        prepare(src, tmp_path / "p.npy", skip_bad=True)


@pytest.mark.parametrize(
    ("array", "shape"), [(np.array(5), "()"), (np.zeros((30, 64)), "(30, 64)")]
)
def test_prepare_of_a_npy_that_holds_no_images_names_its_shape(tmp_path, array, shape) -> None:
    """A 0-d array ended in an IndexError traceback; a 2-D one was reported as one row."""
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(DataError, match=re.escape(f"has shape {shape}")):
        prepare(tmp_path / "a.npy", tmp_path / "p.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
