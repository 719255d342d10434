import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.data import images, load_dataset
from vaekit.errors import DataError


def _labeled(root: Path, save_image, n: int = 4, gray_only: bool = False) -> Path:
    for i in range(n):
        save_image(root / "cat" / f"c{i}.png", "L", seed=i)
        save_image(root / "dog" / f"d{i}.JPG", "L" if gray_only else "RGB", seed=10 + i)
    return root


def test_labeled_folder_mixed_modes_becomes_rgb(tmp_path: Path, save_image) -> None:
    root = _labeled(tmp_path / "pets", save_image)
    (root / "notes.txt").write_text("not an image")
    save_image(root / "cat" / ".hidden.png")
    (root / "cat" / ".broken.png").write_bytes(b"garbage")
    ds = load_dataset(root, test_fraction=0.5)
    assert ds.classes == ("cat", "dog")
    assert ds.image_shape == (3, 5, 6)
    assert not ds.official_split
    assert (len(ds.x_train), len(ds.x_test)) == (4, 4)
    assert np.bincount(ds.y_test).tolist() == [2, 2]
    assert ds.paths_train is not None and len(ds.paths_train) == 4
    all_paths = ds.paths_train + ds.paths_test
    assert str(root / "cat" / "c0.png") in all_paths
    assert not any(".hidden" in p for p in all_paths)
    # the gray PNG is repeated over three channels, pixel for pixel
    i = all_paths.index(str(root / "cat" / "c0.png"))
    x = np.concatenate([ds.x_train, ds.x_test])[i]
    expected = np.asarray(Image.open(root / "cat" / "c0.png"))
    for c in range(3):
        np.testing.assert_array_equal(x[c], expected)


def test_gray_folder_and_color_modes(tmp_path: Path, save_image) -> None:
    root = _labeled(tmp_path / "g", save_image, gray_only=True)
    assert load_dataset(root).image_shape == (1, 5, 6)
    assert load_dataset(root, color="rgb").image_shape == (3, 5, 6)
    mixed = _labeled(tmp_path / "m", save_image)
    assert load_dataset(mixed, color="grayscale").image_shape == (1, 5, 6)


def test_flat_folder_is_unlabeled(tmp_path: Path, save_image) -> None:
    for i in range(5):
        save_image(tmp_path / f"{i}.bmp", seed=i)
    ds = load_dataset(tmp_path)
    assert ds.y_train is None and ds.y_test is None and ds.classes == ()
    assert len(ds.x_train) + len(ds.x_test) == 5


def test_unlabeled_subfolder(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path, save_image, n=2)
    for i in range(4):
        save_image(tmp_path / "unlabeled" / f"u{i}.png", seed=20 + i)
    ds = load_dataset(tmp_path, test_fraction=0.25)
    assert ds.classes == ("cat", "dog")
    y = np.concatenate([ds.y_train, ds.y_test])
    assert sorted(y.tolist()) == [-1, -1, -1, -1, 0, 0, 1, 1]


def test_only_unlabeled_subfolder_has_no_labels(tmp_path: Path, save_image) -> None:
    for i in range(3):
        save_image(tmp_path / "unlabeled" / f"u{i}.png", seed=i)
    ds = load_dataset(tmp_path)
    assert ds.y_train is None and ds.classes == ()


def test_train_test_layout(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path / "train", save_image, n=3, gray_only=True)
    save_image(tmp_path / "test" / "cat" / "t.png", seed=99)
    save_image(tmp_path / "test" / "dog" / "t.png", seed=98)
    ds = load_dataset(tmp_path)
    assert ds.official_split
    assert (len(ds.x_train), len(ds.x_test)) == (6, 2)
    assert ds.y_test.tolist() == [0, 1]
    assert ds.paths_test == (str(tmp_path / "test/cat/t.png"), str(tmp_path / "test/dog/t.png"))


def test_train_only_is_split_and_extra_folders_warn(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path / "train", save_image, n=3, gray_only=True)
    save_image(tmp_path / "val" / "cat" / "v.png")
    with pytest.warns(UserWarning, match=r"ignored: val/"):
        ds = load_dataset(tmp_path)
    assert not ds.official_split and len(ds.x_train) + len(ds.x_test) == 6


def test_corrupt_image(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path, save_image, n=2, gray_only=True)
    (tmp_path / "cat" / "bad.png").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert msg.startswith("image 'cat/bad.png' cannot be read") and "--skip-bad" in msg
    assert "\n" not in msg


def test_unreadable_class_folder_is_an_error(save_image) -> None:
    """A class folder that cannot be listed stops loading and is named (it was skipped
    without a word, and the run trained on the other classes).

    Root lists any folder, so as root the load runs as user 'nobody' (``setpriv``), on a
    folder under /tmp that 'nobody' can reach.
    """
    root = Path(tempfile.mkdtemp(prefix="vaekit-perm-"))
    try:
        root.chmod(0o755)
        _labeled(root / "pets", save_image, n=2, gray_only=True)
        (root / "pets" / "dog").chmod(0)
        load = [
            sys.executable,
            "-c",
            f"from vaekit.data import load_dataset; load_dataset({str(root / 'pets')!r})",
        ]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: every folder is readable")
            load = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *load]
            probe = subprocess.run([*load[:-1], "import vaekit"], capture_output=True)
            if probe.returncode != 0:
                pytest.skip("vaekit cannot be imported as user 'nobody' from this checkout")
        res = subprocess.run(load, capture_output=True, text=True, timeout=120)
        assert res.returncode != 0
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("vaekit.errors.DataError: cannot read ")
        assert str(root / "pets" / "dog") in last and "permission denied" in last
    finally:
        (root / "pets" / "dog").chmod(0o755)
        shutil.rmtree(root)


def _truncated_png(path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_png(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path, save_image, n=2, gray_only=True)
    _truncated_png(tmp_path / "dog" / "half.png")
    with pytest.raises(DataError, match=r"image 'dog/half.png' cannot be read.*truncated"):
        load_dataset(tmp_path)


def test_skip_bad_warns_once_and_continues(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path, save_image, n=5, gray_only=True)  # the test part keeps an image
    (tmp_path / "cat" / "bad.png").write_bytes(b"\x89PNG junk")
    _truncated_png(tmp_path / "dog" / "half.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(tmp_path, skip_bad=True)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "skipped 2 unreadable image(s)" in messages[0]
    assert "'cat/bad.png'" in messages[0] and "'dog/half.png'" in messages[0]
    assert len(ds.x_train) + len(ds.x_test) == 10
    names = {Path(p).name for p in ds.paths_train + ds.paths_test}
    assert "bad.png" not in names and "half.png" not in names and len(names) == 10


def test_skip_bad_all_bad(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"none of the 3 images in .* can be read"):
        load_dataset(tmp_path, skip_bad=True)


def test_decompression_bomb_real_file(tmp_path: Path, save_image) -> None:
    # 8500 x 8500 = 72 MP: above vaekit's 64 MP limit, below Pillow's own ~89 MP warning.
    save_image(tmp_path / "ok.png")
    Image.new("1", (8500, 8500)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(DataError, match=r"'bomb.png' has 72250000 pixels, more than the 64000000"):
        load_dataset(tmp_path)


def test_decompression_bomb_limit(tmp_path: Path, save_image, monkeypatch) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 20)
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"has 30 pixels.*decompression bomb\?"):
        load_dataset(tmp_path)


def test_pillow_bomb_warning_is_an_error(tmp_path: Path, save_image, monkeypatch) -> None:
    # Pillow warns between its limit and twice it; vaekit turns that warning into an error.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"decompression bomb"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("decoders", [("PNG", "AVIF"), ("PNG",)])
def test_empty_folder(tmp_path: Path, monkeypatch, decoders) -> None:
    """The message lists what this installation reads: .avif only where Pillow has AVIF."""
    monkeypatch.setattr(images, "_decoders", lambda: decoders)
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"holds no images \(looked for \.") as exc:
        load_dataset(tmp_path)
    assert (".avif" in str(exc.value)) == ("AVIF" in decoders)


def test_mixed_sizes(tmp_path: Path, save_image) -> None:
    save_image(tmp_path / "a.png", size=(6, 5))
    save_image(tmp_path / "b.png", size=(8, 8))
    save_image(tmp_path / "c.webp", "RGB", size=(9, 3))
    with pytest.raises(DataError, match=r"'a.png' is 5x6, 'b.png' is 8x8.*--image-size"):
        load_dataset(tmp_path)
    ds = load_dataset(tmp_path, image_size=(4, 7), test_fraction=0.34)
    assert ds.image_shape == (3, 4, 7)
    assert load_dataset(tmp_path, image_size=16).image_shape == (3, 16, 16)


def test_loose_images_beside_classes(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path, save_image, n=1)
    save_image(tmp_path / "stray.png")
    with pytest.raises(DataError, match=r"\(e\.g\. 'stray.png'\) beside class sub-folders"):
        load_dataset(tmp_path)


def test_nested_class_images_and_formats(tmp_path: Path, save_image) -> None:
    save_image(tmp_path / "a" / "2019" / "x.tiff")
    save_image(tmp_path / "a" / "y.gif")
    save_image(tmp_path / "b" / "z.png", "RGBA")
    Image.new("P", (6, 5)).save(tmp_path / "b" / "p.png")
    ds = load_dataset(tmp_path, test_fraction=0.5)
    assert ds.classes == ("a", "b") and ds.image_shape == (3, 5, 6)


def test_sixteen_bit_png_is_scaled(tmp_path: Path) -> None:
    wide = (np.arange(30, dtype=np.uint16) * 2000).reshape(5, 6)
    for name in ("a.png", "b.png"):
        Image.fromarray(wide).save(tmp_path / name)
    ds = load_dataset(tmp_path)
    expected = np.rint(wide / 257).astype(np.uint8)
    np.testing.assert_array_equal(ds.x_train[0, 0], expected)


def test_single_image_path(tmp_path: Path, save_image) -> None:
    with pytest.raises(DataError, match=r"single image; pass the folder"):
        load_dataset(save_image(tmp_path / "one.png"))


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (6, 4), "red").save(tmp_path / name, exif=exif)
    assert load_dataset(tmp_path).image_shape == (3, 6, 4)


def test_float_tiff_is_read_in_0_1(tmp_path: Path) -> None:
    """Float images follow the array convention: [0, 1] -> 0..255; outside is refused."""
    (tmp_path / "f").mkdir()
    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    Image.fromarray(ramp).save(tmp_path / "f" / "ramp.tif")
    Image.fromarray(ramp).save(tmp_path / "f" / "ramp2.tif")
    ds = load_dataset(tmp_path / "f", test_fraction=0.5)
    np.testing.assert_array_equal(ds.x_train[0, 0], np.rint(ramp * 255).astype(np.uint8))
    Image.fromarray(ramp * 300).save(tmp_path / "f" / "big.tif")
    with pytest.raises(DataError, match=r"big\.tif.*\[0, 1\]"):
        load_dataset(tmp_path / "f")


def test_12_bit_data_in_16_bit_pngs_is_said_nearly_black_naming_the_folder(
    tmp_path: Path,
) -> None:
    """Before, the folder loaded silently; training then warned about 'X' and said to divide."""
    from vaekit.errors import NearlyBlackWarning

    (tmp_path / "b12").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        twelve_bit = rng.integers(0, 4096, (6, 6)).astype(np.uint16)
        Image.fromarray(twelve_bit).save(tmp_path / "b12" / f"{i}.png")
    with pytest.warns(NearlyBlackWarning, match=r"images of '.*b12' .*save them as 8-bit"):
        ds = load_dataset(tmp_path / "b12")
    assert ds.x_train.max() <= 16


def test_a_folder_vaekit_splits_keeps_each_images_place_in_its_listing(tmp_path: Path) -> None:
    """rows_train/rows_test: the place in the sorted listing, so outputs can follow it."""
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds = load_dataset(tmp_path, random_state=3)
    assert sorted(ds.all_rows()) == list(range(10))
    for rows, paths in ((ds.rows_train, ds.paths_train), (ds.rows_test, ds.paths_test)):
        assert [int(Path(p).stem) for p in paths] == rows.tolist()  # 0.png ... 9.png sorted
    os.makedirs(tmp_path / "official" / "train" / "a")
    os.makedirs(tmp_path / "official" / "test" / "a")
    for part in ("train", "test"):
        for i in range(2):
            shutil.copy(tmp_path / f"{i}.png", tmp_path / "official" / part / "a" / f"{i}.png")
    official = load_dataset(tmp_path / "official")
    assert official.rows_train is None and official.all_rows().tolist() == [0, 1, 2, 3]


def test_32_bit_integer_tiff_beyond_16_bits_is_refused(tmp_path: Path) -> None:
    """Mode "I" holds 32-bit values; 0..65535 scale like 16-bit images, the rest is refused."""
    (tmp_path / "i").mkdir()
    ramp = np.linspace(0, 65535, 16).astype(np.int32).reshape(4, 4)
    for name in ("ramp.tif", "ramp2.tif"):
        Image.fromarray(ramp, mode="I").save(tmp_path / "i" / name)
    ds = load_dataset(tmp_path / "i", test_fraction=0.5)
    assert ds.x_train[0, 0].min() == 0 and ds.x_train[0, 0].max() == 255
    Image.fromarray(ramp * 4, mode="I").save(tmp_path / "i" / "big.tif")
    with pytest.raises(DataError, match=r"big\.tif.*0\.\.65535"):
        load_dataset(tmp_path / "i")


def test_linked_sub_folders_are_followed_once(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(3):
        Image.new("L", (4, 4), 10 * i).save(outside / f"{i}.png")
    (tmp_path / "data" / "a").mkdir(parents=True)
    for i in range(3):
        Image.new("L", (4, 4), 100 + i).save(tmp_path / "data" / "a" / f"{i}.png")
    (tmp_path / "data" / "a" / "more").symlink_to(outside)
    (tmp_path / "data" / "a" / "again").symlink_to(outside)  # the same folder twice
    (tmp_path / "data" / "a" / "loop").symlink_to(tmp_path / "data" / "a")  # a cycle
    ds = load_dataset(tmp_path / "data", test_fraction=0.5)
    assert len(ds.x_train) + len(ds.x_test) == 6


def test_links_up_the_tree_or_to_another_class_are_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for c, shade in (("a", 0), ("b", 100)):
        (data / c).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (4, 4), shade + i).save(data / c / f"{i}.png")
    (data / "a" / "up").symlink_to(data)  # the dataset root: every class again under "a"
    (data / "a" / "top").symlink_to(tmp_path)  # above the root
    (data / "a" / "b-too").symlink_to(data / "b")  # a sibling class
    listing = images.list_image_folder(data, str(data))[0]
    assert Counter(listing.names) == {"a": 4, "b": 4}


@pytest.mark.parametrize("train", ["train", "Train"])
def test_a_class_named_train_is_a_class(tmp_path: Path, save_image, train: str) -> None:
    for i, cls in enumerate(("bus", "car", train)):
        for j in range(2):
            save_image(tmp_path / cls / f"{j}.png", seed=2 * i + j)
    save_image(tmp_path / "unlabeled" / "u.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(tmp_path, test_fraction=0.5)
    assert ds.classes == tuple(sorted(("bus", "car", train))) and not ds.official_split
    y = np.concatenate([ds.y_train, ds.y_test])
    assert sorted(y.tolist()) == [-1, 0, 0, 1, 1, 2, 2]


def test_train_beside_unlabeled_images_stays_a_split(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path / "train", save_image, n=2, gray_only=True)
    save_image(tmp_path / "unlabeled" / "u.png")
    with pytest.warns(UserWarning, match=r"ignored: unlabeled/"):
        ds = load_dataset(tmp_path)
    assert ds.classes == ("cat", "dog")


def _rgba(under: tuple[int, int, int]) -> Image.Image:
    """A 4x4 RGBA image: transparent left half over ``under``, half-transparent black, red."""
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[:, :2] = (*under, 0)
    a[:, 2] = (0, 0, 0, 128)
    a[:, 3] = (255, 0, 0, 255)
    return Image.fromarray(a, "RGBA")


def test_transparent_pixels_are_composited_over_white(tmp_path: Path) -> None:
    _rgba((0, 0, 0)).save(tmp_path / "black_under.png")
    _rgba((0, 255, 0)).save(tmp_path / "green_under.png")
    ds = load_dataset(tmp_path, test_fraction=0.5)
    assert ds.image_shape == (3, 4, 4)
    first, second = np.concatenate([ds.x_train, ds.x_test])
    np.testing.assert_array_equal(first, second)
    assert (first[:, :, :2] == 255).all()
    assert np.abs(first[:, :, 2].astype(int) - 127).max() <= 1  # blends: 255 * (1 - 128/255)
    assert first[:, :, 3].tolist() == [[255] * 4, [0] * 4, [0] * 4]
    # Palette transparency (GIF, PNG) and gray + alpha too.
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 255, 10, 10, 10])
    p.paste(1, (2, 0, 4, 4))
    p.save(tmp_path / "t.gif", transparency=0)
    la = np.zeros((4, 4, 2), dtype=np.uint8)
    la[:, 2:] = (10, 255)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    for name in ("t.gif", "la.png"):
        x = images._decode(str(tmp_path / name), None, "auto")
        assert isinstance(x, np.ndarray) and x.shape == (4, 4)
        assert (x[:, :2] == 255).all() and (x[:, 2:] == 10).all()


def test_gray_palettes_and_gray_rgba_are_one_channel(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 240, 16, dtype=np.uint8), (4, 1))
    Image.fromarray(gray).save(tmp_path / "gray.gif")  # mode P, an all-gray palette
    # Gray colours picked from a colour palette: gray all the same.
    p = Image.new("P", (15, 4), 1)
    p.putpalette([255, 0, 0, 90, 90, 90])
    p.save(tmp_path / "p.png")
    # Pillow reads 16-bit gray + alpha PNGs as RGBA with R == G == B.
    rgba = np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    ds = load_dataset(tmp_path, image_size=(4, 15))
    assert ds.image_shape == (1, 4, 15)
    p.putpalette([255, 0, 0, 90, 90, 91])
    p.save(tmp_path / "p.png")
    assert load_dataset(tmp_path, image_size=(4, 15)).image_shape == (3, 4, 15)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_scaling_is_exact_and_narrow(tmp_path: Path, mode: str) -> None:
    import tracemalloc

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 65536, (256, 256)).astype(np.uint16 if mode == "I;16" else np.int32)
    wide[0, :2] = (0, 65535)
    im = Image.fromarray(wide)
    assert im.mode == mode
    tracemalloc.start()
    out = np.asarray(images._to_mode(im, "auto"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The formula of vaekit 0.x, in int64.
    expected = (wide.astype(np.int64) * 255 + 65535 // 2) // 65535
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert peak < 12 * wide.size  # bytes of numpy arrays; int64 arithmetic took 17 a pixel


def test_nas_thumbnail_and_macos_folders_are_skipped(tmp_path: Path, save_image) -> None:
    _labeled(tmp_path, save_image, n=2, gray_only=True)
    save_image(tmp_path / "cat" / "@eaDir" / "c0.png" / "SYNOFILE_THUMB_M.jpg", "RGB")
    save_image(tmp_path / "@eaDir" / "cat" / "SYNOFILE_THUMB_S.jpg", "RGB")
    save_image(tmp_path / "__MACOSX" / "cat" / "c0.png")
    ds = load_dataset(tmp_path, test_fraction=0.5)
    assert ds.classes == ("cat", "dog") and ds.image_shape == (1, 5, 6)
    assert not any("@eaDir" in p or "MACOSX" in p for p in ds.paths_train + ds.paths_test)


def test_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path, monkeypatch) -> None:
    from PIL import JpegImagePlugin

    yy, xx = np.mgrid[0:320, 0:400]
    smooth = np.stack([xx * 255 // 400, yy * 255 // 320, (xx + yy) * 255 // 720], axis=-1)
    noise = np.random.default_rng(0).integers(-20, 21, smooth.shape)
    path = tmp_path / "big.jpg"
    Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    drafted = []  # what each draft call returned: (mode, box of the original it covers)
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def draft(im, mode, size):
        drafted.append(real_draft(im, mode, size))
        return drafted[-1]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    x = images._decode(str(path), (30, 45), "auto")
    assert drafted[0] is not None and drafted[0][1][2:] == (100, 80)  # 1/4 scale
    with Image.open(path) as im:
        full = np.asarray(im.resize((45, 30), Image.Resampling.LANCZOS))
    assert isinstance(x, np.ndarray) and x.shape == full.shape
    diff = np.abs(x.astype(int) - full)
    assert diff.mean() < 1 and diff.max() <= 4  # the same picture


def test_netpbm_and_jfif_names_are_images(tmp_path: Path) -> None:
    """Face datasets (e.g. AT&T's) come as .pgm; some browsers save JPEGs as .jfif."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(["a/x.pgm", "a/y.ppm", "b/z.jfif", "b/w.pnm"]):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        mode = "L" if i % 2 == 0 else "RGB"
        size = (5, 6) if mode == "L" else (5, 6, 3)
        img = Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), mode)
        img.save(tmp_path / name, format="JPEG" if name.endswith(".jfif") else "PPM")
    ds = load_dataset(tmp_path, test_fraction=0.5)
    assert ds.classes == ("a", "b") and ds.image_shape == (3, 5, 6)
    assert len(ds.x_train) + len(ds.x_test) == 4


@pytest.mark.parametrize("fmt", ["PCX", "TGA", "ICO"])
def test_only_listed_decoders_read_a_file_whatever_its_name(
    tmp_path: Path, save_image, fmt: str
) -> None:
    """Pillow picks its decoder from the content: an 'x.png' that is really another format
    (PostScript would go to Ghostscript) is refused, not decoded."""
    _labeled(tmp_path, save_image, n=2, gray_only=True)
    Image.new("L", (8, 8), 7).save(tmp_path / "cat" / "odd.png", format=fmt)
    with pytest.raises(DataError, match=r"image 'cat/odd.png' cannot be read"):
        load_dataset(tmp_path)


def test_avif_files_are_left_out_where_pillow_cannot_read_them(
    tmp_path: Path, save_image, monkeypatch
) -> None:
    """Pillow reads AVIF from 11.2 on; an older one must not turn a folder's phone photos
    into unreadable-image errors (before 2026-12-06 .avif files were not looked at)."""
    _labeled(tmp_path, save_image, n=2, gray_only=True)
    (tmp_path / "cat" / "phone.avif").write_bytes(b"not decodable here")
    monkeypatch.setattr(images, "_decoders", lambda: ("PNG", "JPEG"))
    ds = load_dataset(tmp_path, test_fraction=0.5)
    assert len(ds.x_train) + len(ds.x_test) == 4


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_among_the_images_is_left_out(tmp_path: Path, save_image) -> None:
    # Before: opening it as an image waited forever for a writer.
    _labeled(tmp_path, save_image, n=2)
    os.mkfifo(tmp_path / "cat" / "pipe.png")
    ds = load_dataset(tmp_path)
    assert len(ds.x_train) + len(ds.x_test) == 4
