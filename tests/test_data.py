"""Data sources: arrays, files, streams, re-chunking, shape/NaN/empty errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from quantscope.calibrate.data import Batch, DataSource, check_not_empty
from quantscope.calibrate.source import as_source
from quantscope.errors import CalibrationDataError, ConfigurationError

RNG = np.random.default_rng(0)
X = RNG.standard_normal((50, 1, 6, 5)).astype(np.float32)
Y = np.arange(50, dtype=np.int64) % 10


def collect(source, batch_size):
    batches = list(source.batches(batch_size))
    x = np.concatenate([b.x for b in batches])
    y = None if batches[0].y is None else np.concatenate([b.y for b in batches])
    index = np.concatenate([b.index for b in batches])
    return batches, x, y, index


# ------------------------------------------------------------------ arrays and files


def test_nchw_array():
    src = as_source(X, input_shape=(None, 1, 6, 5))
    assert src.num_samples == 50 and not src.has_labels
    batches, x, y, index = collect(src, 16)
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    assert all(b.x.dtype == np.float32 and b.x.flags.c_contiguous for b in batches)
    np.testing.assert_array_equal(x, X)
    assert y is None
    assert index.dtype == np.int64
    np.testing.assert_array_equal(index, np.arange(50))
    # re-iterable: a second pass gives the same data
    np.testing.assert_array_equal(collect(src, 16)[1], X)


def test_nhwc_array_is_transposed():
    nhwc = np.ascontiguousarray(X.transpose(0, 2, 3, 1))  # (50, 6, 5, 1)
    src = as_source(nhwc, layout="NHWC", input_shape=(None, 1, 6, 5))
    _, x, _, _ = collect(src, 7)
    assert x.shape == (50, 1, 6, 5)
    np.testing.assert_array_equal(x, X)
    # a 3-channel case, where a wrong transpose would scramble values
    img = RNG.integers(0, 255, (4, 8, 9, 3)).astype(np.uint8)
    _, x3, _, _ = collect(as_source(img, layout="NHWC"), 3)
    np.testing.assert_array_equal(x3, img.transpose(0, 3, 1, 2).astype(np.float32))


def test_nhwc_data_without_layout_gets_a_hint():
    nhwc = X.transpose(0, 2, 3, 1)
    with pytest.raises(CalibrationDataError) as e:
        as_source(nhwc, input_shape=(None, 1, 6, 5))
    msg = str(e.value)
    assert "sample 0" in msg and "(6, 5, 1)" in msg and "(1, 6, 5)" in msg
    assert "layout='NHWC'" in msg


def test_non_image_ranks_and_dtype():
    tab = RNG.standard_normal((30, 4))
    src = as_source(tab, input_shape=(None, 4), dtype=np.float64)
    _, x, _, _ = collect(src, 8)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, tab)
    # rank 4 with layout="NHWC" is transposed; rank 2 ignores the layout
    _, x2, _, _ = collect(as_source(tab, layout="NHWC"), 8)
    np.testing.assert_array_equal(x2, tab.astype(np.float32))


def test_three_d_gets_channel_axis():
    src = as_source(X[:, 0], input_shape=(None, 1, 6, 5))
    _, x, _, _ = collect(src, 9)
    assert x.shape == (50, 1, 6, 5)
    np.testing.assert_array_equal(x, X)
    # without an input shape nothing is guessed
    assert next(as_source(X[:, 0]).batches(9)).x.shape == (9, 6, 5)


def test_xy_tuple_and_labels_argument():
    for src in (as_source((X, Y)), as_source(X, labels=Y), as_source({"x": X, "y": Y})):
        assert src.has_labels and src.num_samples == 50
        _, x, y, _ = collect(src, 13)
        np.testing.assert_array_equal(x, X)
        np.testing.assert_array_equal(y, Y)
    with pytest.raises(CalibrationDataError, match="50 samples but 49 labels"):
        as_source(X, labels=Y[:49])
    with pytest.raises(CalibrationDataError, match="twice"):
        as_source((X, Y), labels=Y)


def test_npz_with_and_without_y(tmp_path):
    p = tmp_path / "xy.npz"
    np.savez(p, x=X, y=Y)
    src = as_source(p)
    assert src.has_labels and src.num_samples == 50
    _, x, y, _ = collect(src, 20)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)

    q = tmp_path / "x.npz"
    np.savez(q, x=X)
    src = as_source(str(q))
    assert not src.has_labels
    _, x, y, _ = collect(src, 20)
    np.testing.assert_array_equal(x, X)
    assert y is None


def test_npy(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, X.transpose(0, 2, 3, 1))
    src = as_source(p, layout="NHWC", input_shape=(None, 1, 6, 5))
    assert src.num_samples == 50 and not src.has_labels
    _, x, _, _ = collect(src, 64)
    np.testing.assert_array_equal(x, X)


def test_npz_missing_x_lists_keys(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, images=X, labels=Y)
    with pytest.raises(CalibrationDataError) as e:
        as_source(p)
    msg = str(e.value)
    assert "bad.npz" in msg and "'x'" in msg and "images" in msg and "labels" in msg


@pytest.mark.parametrize("key", ["Y", "labels", "target"])
def test_npz_labels_under_another_name_are_refused_not_ignored(tmp_path, key):
    p = tmp_path / "misnamed.npz"
    np.savez(p, x=X, **{key: Y})
    with pytest.raises(CalibrationDataError, match=f"holds '{key}' next to the inputs 'x'.*named 'y'"):
        as_source(p)
    np.savez(p, x=X, y=Y, **{key: Y})  # 'y' is there: the other array is not read
    assert as_source(p).has_labels


def test_bad_paths(tmp_path):
    with pytest.raises(CalibrationDataError, match="does not exist"):
        as_source(tmp_path / "nope.npz")
    csv = tmp_path / "d.csv"
    csv.write_text("1,2\n")
    with pytest.raises(CalibrationDataError, match=r"\.csv"):
        as_source(csv)
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"not a numpy file at all")
    with pytest.raises(CalibrationDataError, match="broken.npy"):
        as_source(broken)


def test_existing_source_returned_as_is():
    src = as_source(X)
    assert isinstance(src, DataSource)
    assert as_source(src) is src


def test_wrapped_source_gets_checked_and_labelled():
    class Custom:
        num_samples = 50
        has_labels = False

        def batches(self, batch_size):
            for i in range(0, 50, batch_size):
                yield Batch(X[i : i + batch_size].transpose(0, 2, 3, 1), None, np.arange(i, min(i + batch_size, 50)))

    src = as_source(Custom(), layout="NHWC", labels=Y, input_shape=(None, 1, 6, 5))
    assert src.has_labels
    _, x, y, _ = collect(src, 11)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    with pytest.raises(CalibrationDataError, match="layout='NHWC'"):
        list(as_source(Custom(), input_shape=(None, 1, 6, 5)).batches(11))


# ------------------------------------------------------------------ streams


def test_list_of_batches_and_pairs():
    chunks = [X[:10], X[10:13], X[13:50]]
    src = as_source(chunks)
    assert src.num_samples == 50 and not src.has_labels
    _, x, y, index = collect(src, 8)
    np.testing.assert_array_equal(x, X)
    assert y is None
    np.testing.assert_array_equal(index, np.arange(50))

    pairs = [(X[i : i + 20], Y[i : i + 20]) for i in range(0, 50, 20)]
    src = as_source(pairs)
    assert src.has_labels
    _, x, y, _ = collect(src, 8)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)


def test_generator_is_one_shot():
    def gen():
        for i in range(0, 50, 10):
            yield X[i : i + 10], Y[i : i + 10]

    src = as_source(gen())
    assert src.num_samples is None
    assert src.has_labels  # peeks the first item without losing it
    _, x, y, _ = collect(src, 7)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    with pytest.raises(CalibrationDataError, match="only be iterated once"):
        src.batches(7)

    # the generator function itself is re-iterable
    src = as_source(gen)
    np.testing.assert_array_equal(collect(src, 7)[1], X)
    np.testing.assert_array_equal(collect(src, 50)[1], X)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_rechunking_gives_the_same_samples(batch_size):
    sizes = [3, 10, 1, 17, 19]  # uneven incoming chunks, 50 in all
    chunks, start = [], 0
    for s in sizes:
        chunks.append((X[start : start + s], Y[start : start + s]))
        start += s
    batches, x, y, index = collect(as_source(chunks), batch_size)
    assert all(len(b) == batch_size for b in batches[:-1]) and 0 < len(batches[-1]) <= batch_size
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    np.testing.assert_array_equal(index, np.arange(50))
    for b in batches:
        np.testing.assert_array_equal(b.y, Y[b.index])


@pytest.mark.parametrize("batch_size", [1, 7, 32, 64])
def test_torch_dataloader(batch_size):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=32)
    src = as_source(loader, input_shape=(None, 1, 6, 5))
    assert src.has_labels
    batches, x, y, index = collect(src, batch_size)
    expected_sizes = [batch_size] * (50 // batch_size) + ([50 % batch_size] if 50 % batch_size else [])
    assert [len(b) for b in batches] == expected_sizes
    assert all(isinstance(b.x, np.ndarray) and b.x.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    np.testing.assert_array_equal(index, np.arange(50))
    # re-iterable, like the loader
    np.testing.assert_array_equal(collect(src, batch_size)[1], X)


def test_torch_tensor_and_unlabelled_loader():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    _, x, _, _ = collect(as_source(torch.from_numpy(X)), 16)
    np.testing.assert_array_equal(x, X)
    loader = DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=16)  # yields [x]
    src = as_source(loader)
    assert not src.has_labels
    np.testing.assert_array_equal(collect(src, 5)[1], X)


def test_stream_is_lazy():
    """A stream holds one batch plus one incoming chunk: it never reads ahead."""
    pulled = []

    def gen():
        for i in range(0, 50, 10):
            pulled.append(i)
            yield X[i : i + 10]

    it = as_source(gen()).batches(7)
    first = next(it)
    assert len(first) == 7 and len(pulled) == 1
    it = as_source(gen).batches(25)
    pulled.clear()
    first = next(it)
    assert len(first) == 25 and len(pulled) == 3

    def endless():
        while True:
            yield X[:10]

    assert len(next(as_source(endless()).batches(4))) == 4


def test_stream_single_samples_with_input_shape():
    # a generator of single samples (C, H, W) becomes batches
    src = as_source(lambda: (X[i] for i in range(50)), input_shape=(None, 1, 6, 5))
    batches, x, _, _ = collect(src, 16)
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    np.testing.assert_array_equal(x, X)


def test_stream_labels_argument_and_mismatch():
    src = as_source([X[:25], X[25:]], labels=Y)
    _, _, y, _ = collect(src, 6)
    np.testing.assert_array_equal(y, Y)
    with pytest.raises(CalibrationDataError, match="49"):
        list(as_source([X[:25], X[25:]], labels=Y[:49]).batches(6))
    with pytest.raises(CalibrationDataError, match="some items carry labels"):
        list(as_source([(X[:25], Y[:25]), X[25:]]).batches(6))


def test_stream_shape_mismatch_names_position():
    chunks = [X[:32], X[32:].transpose(0, 2, 3, 1)]
    with pytest.raises(CalibrationDataError) as e:
        list(as_source(chunks, input_shape=(None, 1, 6, 5)).batches(10))
    msg = str(e.value)
    assert "sample 32" in msg and "(6, 5, 1)" in msg and "(1, 6, 5)" in msg
    assert "layout='NHWC'" in msg


def test_shape_mismatch_resize_hint():
    img = np.zeros((4, 3, 32, 32), np.float32)
    with pytest.raises(CalibrationDataError) as e:
        as_source(img, input_shape=(None, 3, 224, 224))
    msg = str(e.value)
    assert "(3, 32, 32)" in msg and "(3, 224, 224)" in msg and "224x224" in msg


# ------------------------------------------------------------------ empty and non-finite


def test_empty_sources():
    empties = [
        as_source(np.zeros((0, 1, 6, 5), np.float32)),
        as_source([]),
        as_source(iter([])),
        as_source(lambda: iter(())),
    ]
    for src in empties:
        with pytest.raises(CalibrationDataError, match="contains no samples"):
            list(src.batches(4))
    for src in (as_source(np.zeros((0, 3))), as_source([]), as_source(iter([]))):
        with pytest.raises(CalibrationDataError, match="contains no samples"):
            check_not_empty(src)
    full = as_source(iter([X[:3]]))
    assert check_not_empty(full) is full
    assert collect(full, 2)[1].shape == (3, 1, 6, 5)  # the peeked chunk is not lost


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_sample(bad):
    x = X.copy()
    x[37, 0, 2, 3] = bad
    with pytest.raises(CalibrationDataError, match="sample 37"):
        list(as_source(x).batches(16))
    with pytest.raises(CalibrationDataError, match="sample 37"):
        list(as_source([x[:20], x[20:]]).batches(7))
    # the batches before the bad one still come out
    it = as_source(x).batches(16)
    assert len(next(it)) == 16


def test_bad_arguments():
    with pytest.raises(ConfigurationError, match="batch_size"):
        as_source(X).batches(0)
    with pytest.raises(ConfigurationError, match="layout"):
        as_source(X, layout="CHW")
    with pytest.raises(CalibrationDataError, match="object of type"):
        as_source(42)
    with pytest.raises(CalibrationDataError, match="dtype"):
        list(as_source(np.array([["a", "b"]])).batches(1))


def test_data_module_does_not_import_torch():
    code = (
        "import sys, quantscope.calibrate.data, quantscope.calibrate.images;"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_read_ahead_gives_the_same_batches_and_raises_where_the_plain_loop_does(tmp_path):
    """Batches read one ahead in a background thread: the same batches in the same
    order; a file that cannot be decoded raises the same error, after the batches before
    it; a user's generator is read in the caller's thread."""
    import threading

    from PIL import Image

    from quantscope.calibrate.source import as_source, read_ahead

    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 3, 5, 4)).astype(np.float32)
    source = as_source(x)
    plain = list(source.batches(4))
    ahead = list(read_ahead(source, 4))
    assert [b.index.tolist() for b in ahead] == [b.index.tolist() for b in plain]
    assert all(np.array_equal(a.x, b.x) for a, b in zip(ahead, plain))

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "9.png").write_bytes(b"not a png")
    images = as_source(str(folder))
    got = []
    with pytest.raises(CalibrationDataError, match="9.png") as plain_error:
        for b in images.batches(3):
            got.append(b.index.tolist())
    seen = []
    with pytest.raises(CalibrationDataError, match="9.png") as ahead_error:
        for b in read_ahead(images, 3):
            seen.append(b.index.tolist())
    assert seen == got == [[0, 1, 2], [3, 4, 5]] and str(ahead_error.value) == str(plain_error.value)

    threads = []

    def generator():
        for i in range(3):
            threads.append(threading.current_thread())
            yield x[i * 2 : i * 2 + 2]

    assert len(list(read_ahead(as_source(generator()), 2))) == 3
    assert set(threads) == {threading.current_thread()}


def test_a_cast_that_would_change_values_is_refused(tmp_path):
    """Integer inputs (file bytes, token ids) get whole numbers in their type's range, and
    float64 data fits float32: the cast never wraps, truncates or overflows silently."""
    ints = dict(input_shape=(None, 6), dtype=np.int32)
    good = np.arange(12, dtype=np.int64).reshape(2, 6)
    batch = next(as_source(good, **ints).batches(2))
    assert batch.x.dtype == np.int32 and np.array_equal(batch.x, good)
    with pytest.raises(CalibrationDataError, match="takes integers.*fractions"):
        next(as_source(good + 0.5, **ints).batches(2))
    with pytest.raises(CalibrationDataError, match=r"int32 values .*from 1099511627776"):
        next(as_source(good + 2**40, **ints).batches(2))
    np.save(tmp_path / "big.npy", np.full((2, 3, 4, 4), 1e40))
    with pytest.raises(CalibrationDataError, match="big.npy.*beyond float32's range"):
        next(as_source(str(tmp_path / "big.npy"), input_shape=(None, 3, 4, 4)).batches(2))
    two = {"ids": ((None, 5), np.dtype(np.int64)), "mask": ((None, 5), np.dtype(np.int32))}
    with pytest.raises(CalibrationDataError, match="'mask' takes int32"):
        next(as_source({"ids": np.zeros((2, 5)), "mask": np.full((2, 5), 2**33)}, inputs=two).batches(2))


def test_unreadable_array_files_say_what_is_wrong(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    full = tmp_path / "full.npy"
    np.save(full, np.zeros((4, 3, 8, 8), np.float32))
    (tmp_path / "cut.npy").write_bytes(full.read_bytes()[:500])
    for name, message in (("objects.npz", "array of Python objects"), ("cut.npy", "shorter than its header says")):
        with pytest.raises(CalibrationDataError, match=message):
            next(as_source(str(tmp_path / name), input_shape=(None, 3, 8, 8)).batches(2))
