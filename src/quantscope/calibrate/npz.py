"""Arrays of an ``.npz`` file read in pieces, so that calibration and validation hold
one batch of it at a time, never the whole array.

An ``.npz`` file is a zip archive of ``.npy`` files. A member stored without
compression (``np.savez``) is memory-mapped where it lies in the archive: its
``.npy`` header is read, then the rows are the file's bytes at a fixed offset. A
compressed member (``np.savez_compressed``) is decompressed as a stream, rows in
order: :class:`ZipMemberRows` reads the rows asked for, going on from where it
stopped (and starting over only when asked for rows before that). Either way the
result slices like an array (``x[start:stop]``), has ``shape``, ``dtype`` and
``ndim``, and reading a batch costs the memory of that batch.
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationDataError
from .data import NUMPY_FILE_ERRORS, unreadable

__all__ = ["ZipMemberRows", "member_names", "open_member"]


def member_names(path: str | Path) -> list[str]:
    """The array names of the ``.npz`` file at ``path`` (member names without ``.npy``)."""
    with zipfile.ZipFile(path) as z:
        return [n[: -len(".npy")] if n.endswith(".npy") else n for n in z.namelist()]


def _read_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _minor = np.lib.format.read_magic(f)
    read = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
    if read is None:
        raise ValueError(f"unsupported .npy format version {major}")
    shape, fortran, dtype = read(f)
    return tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype)


def open_member(path: str | Path, name: str) -> Any:
    """The array ``name`` of the ``.npz`` file at ``path``, readable in row ranges.

    Returns a read-only ``np.memmap`` for a stored member of a C-order array of plain
    numbers; a :class:`ZipMemberRows` for a compressed one; the loaded array for
    anything else (Fortran order, object or structured dtypes are not row-addressable:
    ``np.load`` reads them, and refuses pickled objects).

    Raises what numpy and zipfile raise on a damaged file
    (:data:`~quantscope.calibrate.data.NUMPY_FILE_ERRORS`).
    """
    path = Path(path)
    member = f"{name}.npy"
    with zipfile.ZipFile(path) as z:
        zinfo = z.getinfo(member)
        with z.open(zinfo) as f:
            shape, fortran, dtype = _read_header(f)
            header_len = f.tell()
    plain = not fortran and not dtype.hasobject and dtype.fields is None and len(shape) >= 1
    if not plain:
        with np.load(path, allow_pickle=False) as z:
            return z[name]
    if zinfo.compress_type == zipfile.ZIP_STORED and not zinfo.flag_bits & 0x1:
        with open(path, "rb") as raw:  # the local file header: 30 bytes, then name and extra field
            raw.seek(zinfo.header_offset)
            local = raw.read(30)
        if local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local file header of {member}")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        offset = zinfo.header_offset + 30 + name_len + extra_len + header_len
        if 0 in shape:
            return np.empty(shape, dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return ZipMemberRows(path, member, shape, dtype, header_len)


class ZipMemberRows:
    """A compressed ``.npy`` member of a zip archive, read by rows (the first axis).

    ``shape``, ``dtype``, ``ndim`` and ``len()`` as an array's; ``rows[start:stop]``
    (step 1) returns those rows as a new array. Reads are sequential: rows after the
    last ones read are reached by decompressing on; rows before them, by starting
    over. Thread-safe (one reader at a time).
    """

    def __init__(self, path: Path, member: str, shape: tuple[int, ...], dtype: np.dtype, header_len: int):
        self.path = path
        self.member = member
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)
        self.size = int(np.prod(shape, dtype=np.int64))
        self.nbytes = self.size * dtype.itemsize
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._header_len = header_len
        self._zip: zipfile.ZipFile | None = None
        self._f: Any = None
        self._row = 0  # the next row the open stream gives
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[0 : self.shape[0]]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            return self[i : i + 1][0]
        if not isinstance(key, slice) or key.step not in (None, 1):
            return np.asarray(self)[key]
        start, stop, _ = key.indices(self.shape[0])
        n = max(0, stop - start)
        if n == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)
        with self._lock:
            try:
                if self._f is None or start < self._row:
                    self._reopen()
                self._skip((start - self._row) * self._row_bytes)
                buf = self._read(n * self._row_bytes)
            except NUMPY_FILE_ERRORS as e:
                self.close()
                raise CalibrationDataError(unreadable(f"data file {self.path}", ".npz", e)) from None
            self._row = start + n
        return np.frombuffer(buf, dtype=self.dtype).reshape((n, *self.shape[1:]))

    def _reopen(self) -> None:
        self.close()
        self._zip = zipfile.ZipFile(self.path)
        self._f = self._zip.open(self.member)
        self._f.read(self._header_len)
        self._row = 0

    def _skip(self, nbytes: int) -> None:
        while nbytes > 0:
            got = len(self._f.read(min(nbytes, 16 << 20)))
            if got == 0:
                raise EOFError(f"{self.member} in {self.path} ends early")
            nbytes -= got

    def _read(self, nbytes: int) -> bytearray:
        buf = bytearray(nbytes)
        view = memoryview(buf)
        done = 0
        while done < nbytes:
            got = self._f.readinto(view[done:])
            if not got:
                raise EOFError(f"{self.member} in {self.path} ends early")
            done += got
        return buf

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._zip.close()
        self._f = self._zip = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_zip=None, _f=None, _row=0, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<rows of {self.member} in {self.path}: shape {self.shape}, {self.dtype}>"
