"""ImageDatastore: a folder of images as NCHW batches, labels, splits, bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantscope.calibrate.data import check_not_empty
from quantscope.calibrate.images import ImageDatastore
from quantscope.calibrate.source import as_source
from quantscope.errors import CalibrationDataError, ConfigurationError

RNG = np.random.default_rng(1)


def rgb(h, w):
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def gray(h, w):
    return Image.fromarray(RNG.integers(0, 256, (h, w), dtype=np.uint8), "L")


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two classes, PNG and JPEG, different sizes, grayscale and RGB: 5 cats, 3 dogs."""
    root = tmp_path / "pets"
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "puppies").mkdir(parents=True)
    rgb(30, 40).save(root / "cat" / "c0.png")
    rgb(20, 20).save(root / "cat" / "c1.jpg", quality=95)
    gray(25, 35).save(root / "cat" / "c2.png")
    gray(16, 16).save(root / "cat" / "c3.JPEG")
    rgb(12, 9).save(root / "cat" / "c4.bmp")
    rgb(50, 40).save(root / "dog" / "d0.jpg")
    gray(16, 16).save(root / "dog" / "d1.png")
    rgb(8, 8).save(root / "dog" / "puppies" / "p0.png")  # nested: still a "dog"
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "._c0.png").write_bytes(b"macOS resource fork")  # hidden: ignored
    return root


def read_all(ds, batch_size=3):
    batches = list(ds.batches(batch_size))
    x = np.concatenate([b.x for b in batches])
    y = None if batches[0].y is None else np.concatenate([b.y for b in batches])
    return batches, x, y, np.concatenate([b.index for b in batches])


def test_files_labels_and_counts(folder):
    ds = ImageDatastore(folder)
    rel = [f.relative_to(folder).as_posix() for f in ds.files]
    assert rel == [
        "cat/c0.png",
        "cat/c1.jpg",
        "cat/c2.png",
        "cat/c3.JPEG",
        "cat/c4.bmp",
        "dog/d0.jpg",
        "dog/d1.png",
        "dog/puppies/p0.png",
    ]
    assert ds.classes == ["cat", "dog"]
    assert ds.labels.tolist() == ["cat"] * 5 + ["dog"] * 3
    assert ds.count_each_label() == {"cat": 5, "dog": 3}
    assert ds.num_samples == 8 and len(ds) == 8 and ds.has_labels


def test_resized_rgb_batches(folder):
    ds = ImageDatastore(folder, size=(16, 12), channels=3)
    batches, x, y, index = read_all(ds, 3)
    assert [len(b) for b in batches] == [3, 3, 2]
    assert x.shape == (8, 3, 16, 12) and x.dtype == np.float32
    np.testing.assert_array_equal(y, [0, 0, 0, 0, 0, 1, 1, 1])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(index, np.arange(8))
    # each sample is the file resized by Pillow (bilinear), channels first, raw 0..255
    for i, f in enumerate(ds.files):
        ref = np.asarray(Image.open(f).convert("RGB").resize((12, 16), Image.Resampling.BILINEAR), np.float32)
        np.testing.assert_array_equal(x[i], ref.transpose(2, 0, 1))
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 200


def test_grayscale_conversion(folder):
    ds = ImageDatastore(folder, size=(10, 10), channels=1)
    _, x, _, _ = read_all(ds, 8)
    assert x.shape == (8, 1, 10, 10)
    ref = np.asarray(Image.open(ds.files[0]).convert("L").resize((10, 10), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_array_equal(x[0, 0], ref)
    # a grayscale image read as RGB repeats its one channel
    _, x3, _, _ = read_all(ImageDatastore(folder, size=(10, 10), channels=3), 8)
    np.testing.assert_array_equal(x3[2, 0], x3[2, 1])
    np.testing.assert_array_equal(x3[2, 0], x3[2, 2])


def test_uniform_colour_survives_resize(tmp_path):
    Image.new("RGB", (37, 23), (10, 200, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (5, 61), (10, 200, 30)).save(tmp_path / "b.png")
    ds = ImageDatastore(tmp_path, size=(7, 9))
    _, x, y, _ = read_all(ds)
    assert y is None and not ds.has_labels  # images directly in the folder: unlabelled
    assert x.shape == (2, 3, 7, 9)
    np.testing.assert_array_equal(x[:, 0], 10)
    np.testing.assert_array_equal(x[:, 1], 200)
    np.testing.assert_array_equal(x[:, 2], 30)


def test_preprocessing_scale_mean_std(tmp_path):
    Image.new("RGB", (4, 4), (51, 102, 255)).save(tmp_path / "a.png")
    ds = ImageDatastore(tmp_path, scale=1 / 255, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    x = next(ds.batches(1)).x[0]
    expected = [(0.2 - 0.1) / 0.5, (0.4 - 0.2) / 0.25, (1.0 - 0.3) / 2.0]
    for c in range(3):
        np.testing.assert_allclose(x[c], expected[c], rtol=1e-5)
    ds = ImageDatastore(tmp_path, mean=100.0, std=2.0)
    np.testing.assert_allclose(next(ds.batches(1)).x[0, 2], (255 - 100) / 2)
    with pytest.raises(ConfigurationError, match="std"):
        ImageDatastore(tmp_path, std=0)
    with pytest.raises(ConfigurationError, match="mean"):
        ImageDatastore(tmp_path, channels=1, mean=(1, 2, 3))


def test_sixteen_bit_grayscale_keeps_its_values_on_the_8_bit_scale(tmp_path):
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    x = next(ImageDatastore(tmp_path).batches(1)).x
    assert x.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(x[0, 0], values.astype(np.float32) * np.float32(255 / 65535), rtol=1e-6)
    assert x[0, 0, 1, 1] == np.float32(255.0)


def test_different_sizes_without_size_raise(folder):
    with pytest.raises(CalibrationDataError) as e:
        list(ImageDatastore(folder, channels=3).batches(1))  # also with batch size 1
    msg = str(e.value)
    assert "c1.jpg" in msg and "c0.png" in msg and "size=(30, 40)" in msg


def test_with_input_shape(folder):
    ds = ImageDatastore(folder).with_input_shape((None, 1, 28, 28))
    assert ds.size == (28, 28) and ds.channels == 1
    assert next(ds.batches(4)).x.shape == (4, 1, 28, 28)
    assert ImageDatastore(folder).with_input_shape(("N", 3, None, None)).size is None
    with pytest.raises(CalibrationDataError, match="NCHW"):
        ImageDatastore(folder).with_input_shape((None, 10))
    with pytest.raises(CalibrationDataError, match="channels"):
        ImageDatastore(folder).with_input_shape((None, 224, 224, 3))


def test_as_source_folder_sized_from_network(folder):
    src = as_source(folder, input_shape=(None, 3, 32, 24))
    batches = list(src.batches(5))
    assert [b.x.shape for b in batches] == [(5, 3, 32, 24), (3, 3, 32, 24)]
    assert src.has_labels and src.num_samples == 8
    assert isinstance(as_source(str(folder)), ImageDatastore)
    ds = ImageDatastore(folder, size=(8, 8), channels=3)
    assert as_source(ds) is ds
    with pytest.raises(CalibrationDataError, match="8x8|(3, 8, 8)"):
        list(as_source(ds, input_shape=(None, 3, 16, 16)).batches(4))


def test_split_each_label(folder):
    ds = ImageDatastore(folder, size=(8, 8))
    for fraction in (0.0, 0.3, 0.5, 0.7, 1.0):
        a, b = ds.split_each_label(fraction, seed=3)
        counts = ds.count_each_label()
        assert a.count_each_label() == {k: math.floor(fraction * n + 0.5) for k, n in counts.items()}
        assert b.count_each_label() == {k: n - math.floor(fraction * n + 0.5) for k, n in counts.items()}
        assert not set(a.files) & set(b.files)
        assert sorted(a.files + b.files) == sorted(ds.files)
        assert a.classes == b.classes == ["cat", "dog"]
    # 0.5 of 5 cats rounds half up, as MATLAB: 3
    assert ds.split_each_label(0.5)[0].count_each_label() == {"cat": 3, "dog": 2}
    # deterministic with a seed, and the seed matters
    a1, _ = ds.split_each_label(0.6, seed=7)
    a2, _ = ds.split_each_label(0.6, seed=7)
    assert a1.files == a2.files
    draws = {tuple(ds.split_each_label(0.6, seed=s)[0].files) for s in range(8)}
    assert len(draws) > 1
    # without a seed: each label's first files, in file order
    first, _ = ds.split_each_label(0.4)
    assert [f.name for f in first.files] == ["c0.png", "c1.jpg", "d0.jpg"]
    # labels follow the files into the parts and keep the class indices
    _, _, y, _ = read_all(first)
    np.testing.assert_array_equal(y, [0, 0, 1])
    assert first.size == (8, 8)
    with pytest.raises(ConfigurationError, match="fraction"):
        ds.split_each_label(1.5)


def test_corrupt_image_names_the_file(folder):
    bad = folder / "dog" / "broken.png"
    bad.write_bytes(np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8).tobytes())
    ds = ImageDatastore(folder, size=(8, 8), channels=3)
    with pytest.raises(CalibrationDataError) as e:
        list(ds.batches(4))
    assert "broken.png" in str(e.value) and "skip_bad=True" in str(e.value)

    ds = ImageDatastore(folder, size=(8, 8), channels=3, skip_bad=True)
    batches, x, y, index = read_all(ds, 4)
    assert x.shape[0] == 8 and ds.num_samples == 9
    assert len(ds.skipped) == 1 and ds.skipped[0][0] == bad and ds.skipped[0][1]
    bad_pos = ds.files.index(bad)
    assert bad_pos not in index.tolist() and len(index) == 8
    np.testing.assert_array_equal(y, [0] * 5 + [1] * 3)


def test_truncated_jpeg(tmp_path):
    rgb(64, 64).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(CalibrationDataError, match="t.jpg"):
        list(ImageDatastore(tmp_path).batches(1))
    ds = ImageDatastore(tmp_path, skip_bad=True)
    with pytest.raises(CalibrationDataError, match="contains no samples"):
        list(ds.batches(1))
    assert len(ds.skipped) == 1


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(CalibrationDataError, match="contains no samples"):
        ImageDatastore(tmp_path)
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(CalibrationDataError, match="contains no samples"):
        as_source(tmp_path)
    with pytest.raises(CalibrationDataError, match="does not exist"):
        ImageDatastore(tmp_path / "missing")
    gray(4, 4).save(tmp_path / "only.png")
    empty_part, _ = ImageDatastore(tmp_path).split_each_label(0.0)
    with pytest.raises(CalibrationDataError, match="contains no samples"):
        check_not_empty(empty_part)


def test_images_at_root_and_in_class_folders_is_ambiguous(folder):
    gray(8, 8).save(folder / "stray.png")
    with pytest.raises(CalibrationDataError, match="stray.png"):
        ImageDatastore(folder)
    ds = ImageDatastore(folder, labels=None, size=(4, 4), channels=1)
    assert not ds.has_labels and ds.num_samples == 9
    assert next(ds.batches(9)).y is None


def test_real_photos_at_imagenet_size(tmp_path):
    data = pytest.importorskip("skimage.data")
    for name in ("chelsea", "coffee", "astronaut"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / f"{name}.jpg", quality=90)
    ds = ImageDatastore(tmp_path).with_input_shape((None, 3, 224, 224))
    assert [f.name for f in ds.files] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    src = as_source(ds, input_shape=(None, 3, 224, 224))
    (batch,) = list(src.batches(8))
    assert batch.x.shape == (3, 3, 224, 224) and batch.y is None
    assert batch.x.min() >= 0 and batch.x.max() <= 255
    # real photos: every channel varies, and the three photos differ
    assert (batch.x.std(axis=(2, 3)) > 10).all()
    assert np.abs(batch.x[0] - batch.x[1]).mean() > 10
    # the cat photo is mostly warm: more red than blue on average
    cat = batch.x[1]
    assert cat[0].mean() > cat[2].mean()


def test_16_bit_images_read_on_the_8_bit_scale_and_float_images_are_refused(tmp_path):
    """A 16-bit PNG among 8-bit images is scaled to 0..255 (one scale for the folder);
    a floating-point TIFF, which has no agreed full scale, is refused by name."""
    gray8 = (np.arange(16 * 16).reshape(16, 16) % 256).astype(np.uint8)
    Image.fromarray(gray8).save(tmp_path / "a_8bit.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "b_16bit.png")  # the same image, 16 bits
    assert Image.open(tmp_path / "b_16bit.png").mode.startswith("I;16")
    batch = next(ImageDatastore(tmp_path, labels=None).batches(2))
    np.testing.assert_allclose(batch.x[1], batch.x[0], atol=1e-3)
    assert batch.x.max() <= 255.0
    Image.fromarray(gray8.astype(np.float32) / 255).save(tmp_path / "c_float.tif")
    with pytest.raises(CalibrationDataError, match=r"c_float.tif: a floating-point image"):
        list(ImageDatastore(tmp_path, labels=None).batches(3))


def test_webp_images_are_read(tmp_path):
    pixels = (np.arange(8 * 8 * 3).reshape(8, 8, 3) % 256).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "b.webp", lossless=True)
    ds = ImageDatastore(tmp_path, labels=None)
    assert [Path(f).name for f in ds.files] == ["a.png", "b.webp"]
    batch = next(ds.batches(2))
    np.testing.assert_array_equal(batch.x[0], batch.x[1])


def test_a_class_list_with_duplicate_names_keeps_every_position(folder):
    """ImageNet's class list names "crane" and "maillot" twice: each line is an output
    index, so a duplicate earlier in the list must not move the classes after it; a
    subfolder named like a duplicated entry is ambiguous and refused."""
    ds = ImageDatastore(folder, size=(8, 8), channels=3, class_names=["bird", "crane", "crane", "dog", "cat"])
    _, _, y, _ = read_all(ds)
    assert sorted(set(y.tolist())) == [3, 4]
    assert y.tolist().count(4) == 5 and y.tolist().count(3) == 3
    with pytest.raises(CalibrationDataError, match=r"'cat' \(list entries 2, 4\).*ambiguous"):
        ImageDatastore(folder, class_names=["dog", "cat", "bird", "cat"])


def test_class_folders_linked_from_elsewhere_are_read_and_a_link_loop_ends(tmp_path, folder):
    root = tmp_path / "linked"
    root.mkdir()
    (root / "cat").symlink_to(folder / "cat", target_is_directory=True)
    (root / "dog").mkdir()
    rgb(8, 8).save(root / "dog" / "d.png")
    (root / "dog" / "again").symlink_to(root, target_is_directory=True)  # a loop back up
    ds = ImageDatastore(root)
    assert ds.classes == ["cat", "dog"]
    assert ds.count_each_label() == {"cat": 5, "dog": 1}


def test_a_size_beyond_the_bound_or_unlike_the_networks_is_refused_before_decoding(folder):
    with pytest.raises(ConfigurationError, match="at most 16384 pixels a side"):
        ImageDatastore(folder, size=(100000, 100000))
    sized = ImageDatastore(folder, size=(40, 40))
    with pytest.raises(CalibrationDataError, match=r"resizes the images to 40x40 pixels, and the network takes 32x32"):
        as_source(sized, input_shape=(None, 3, 32, 32))
    assert as_source(ImageDatastore(folder, size=(32, 32)), input_shape=(None, 3, 32, 32)).size == (32, 32)
