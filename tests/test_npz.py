"""``.npz`` files are read in pieces (a stored member memory-mapped, a compressed one
decompressed as a stream) and give exactly what loading them whole gives."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.calibrate.npz import ZipMemberRows, open_member
from quantscope.errors import CalibrationDataError

MODEL = small_cnn()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i2", "u1"])
def test_members_read_in_pieces_equal_the_loaded_array(tmp_path, save, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((37, 3, 5, 4)) * 50).astype(dtype)
    path = tmp_path / "d.npz"
    save(path, x=x, y=np.arange(37))
    rows = open_member(path, "x")
    assert isinstance(rows, np.memmap if save is np.savez else ZipMemberRows)
    assert rows.shape == x.shape and rows.dtype == x.dtype
    for start, stop in [(0, 8), (8, 16), (30, 37), (3, 5), (0, 37), (36, 50), (5, 5)]:
        np.testing.assert_array_equal(np.asarray(rows[start:stop]), x[start:stop])
    np.testing.assert_array_equal(np.asarray(rows), x)


def test_fortran_order_and_zero_length_members(tmp_path):
    f = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(4, 6))
    np.savez(tmp_path / "f.npz", x=f, e=np.zeros((0, 3), np.float32))
    np.testing.assert_array_equal(open_member(tmp_path / "f.npz", "x"), f)
    assert open_member(tmp_path / "f.npz", "e").shape == (0, 3)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_calibration_from_npz_equals_the_array(tmp_path, save):
    x = images(45, seed=2)
    save(tmp_path / "d.npz", x=x)
    ref = qs.calibrate(MODEL, x, batch_size=8, progress=False)
    got = qs.calibrate(MODEL, tmp_path / "d.npz", batch_size=8, progress=False)
    assert got == ref and got.to_json() == ref.to_json()
    resumed = qs.calibrate(MODEL, tmp_path / "d.npz", batch_size=8, progress=False, checkpoint=tmp_path / "c.json")
    assert resumed == ref


def test_damaged_compressed_data_is_a_clear_error(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (200, 3, 8, 8), dtype=np.uint8)  # any bytes are numbers
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=x)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("x.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[middle : middle + 64] = np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    # the damage is met where the stream reaches it (a zlib error, or the CRC at the end)
    with pytest.raises(CalibrationDataError, match=r"d\.npz cannot be read as \.npz"):
        qs.calibrate(MODEL, path, batch_size=16, progress=False)
