"""Data as sample-addressable shards: arrays, ``.npy``/``.npz`` files and image folders
split into ranges of samples that a worker (or a resumed run) reads on its own, with a
stamp of the data that a checkpoint or a Dask run checks. Streams have no shards."""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationDataError
from .data import NUMPY_FILE_ERRORS, Batch, DataSource, _ArraySource, _Plan
from .source import as_source

__all__ = ["open_data", "sized_shards"]


def _file_stamp(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _array_digest(x: Any) -> str:
    """sha256 of an array's values, read in slices (no full copy)."""
    h = hashlib.sha256()
    n = x.shape[0] if getattr(x, "ndim", 0) else 0
    per_row = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize) if n else 1
    step = max(1, (16 << 20) // per_row)
    for i in range(0, n, step):
        h.update(np.ascontiguousarray(x[i : i + step]).view(np.uint8).reshape(-1).data)
    if not n:
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _array_batches(source: _ArraySource, lo: int, hi: int, batch_size: int, offset: int = 0) -> Iterator[Batch]:
    """Batches of samples ``lo..hi-1`` of an array source, as ``source.batches`` makes
    them (same conversion and checks), with positions and ``Batch.index`` shifted by
    ``offset`` (the shard's first sample in the whole data set).

    Reads ``source``'s array and conversion plan (private to ``data.py``): a public
    ``batches(batch_size, start, stop)`` there would replace this.
    """
    conf = source._conformer
    plan = _Plan(transpose=source._plan.transpose, insert_axis=source._plan.insert_axis)
    x, y = source._x, source._y
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        xb = conf.apply(plan, np.asarray(x[start:stop]), offset + start)
        yb = None if y is None else y[start:stop]
        yield Batch(x=xb, y=yb, index=np.arange(offset + start, offset + stop, dtype=np.int64))


class _Sized:
    """Data addressable by sample position: shards are sample ranges read where they run."""

    num_samples: int

    def describe(self) -> dict:
        """What identifies the data for a checkpoint's fingerprint (JSON-able)."""
        raise NotImplementedError

    def payload(self, start: int, stop: int) -> tuple[tuple, Any]:
        """``(descriptor, bulk)`` for a worker to read samples ``start..stop-1``;
        ``bulk`` (or None) is sent to the worker directly."""
        raise NotImplementedError

    def local_batches(self, batch_size: int, start: int, spec: dict) -> Iterator[Batch]:
        """This process's batches from sample ``start`` to the end."""
        desc, bulk = self.payload(start, self.num_samples)
        return _read(desc, bulk, spec)


class _ArrayShards(_Sized):
    """An array in this process: shards are slices sent to the workers."""

    def __init__(self, source: _ArraySource, stamp: dict | None = None):
        self.source = source
        self.num_samples = source.num_samples
        self._stamp = stamp

    def describe(self) -> dict:
        if self._stamp is not None:
            return self._stamp
        x = self.source._x
        return {"kind": "array", "shape": list(x.shape), "dtype": str(x.dtype), "sha256": _array_digest(x)}

    def payload(self, start: int, stop: int) -> tuple[tuple, Any]:
        return ("array", start, stop), self.source._x[start:stop]

    def local_batches(self, batch_size: int, start: int, spec: dict) -> Iterator[Batch]:
        return _array_batches(self.source, start, self.num_samples, batch_size)


class _NpyShards(_ArrayShards):
    """A ``.npy`` file: each worker memory-maps it and reads its own range."""

    def __init__(self, path: Path, source: _ArraySource):
        super().__init__(
            source,
            stamp={"kind": "npy", **_file_stamp(path), "shape": list(source._x.shape), "dtype": str(source._x.dtype)},
        )
        self.path = str(path.resolve())

    def payload(self, start: int, stop: int) -> tuple[tuple, Any]:
        return ("npy", self.path, start, stop), None


class _NpzShards(_Sized):
    """A ``.npz`` file: each worker loads it (once per run) and reads its own range.

    The client reads only the header of ``x`` for the sample count."""

    def __init__(self, path: Path, num_samples: int, layout: str, input_shape: Any):
        self.path = str(path.resolve())
        self.num_samples = num_samples
        self._stamp = {"kind": "npz", **_file_stamp(path)}
        self._local: _ArraySource | None = None
        self._layout, self._input_shape = layout, input_shape

    def describe(self) -> dict:
        return self._stamp

    def payload(self, start: int, stop: int) -> tuple[tuple, Any]:
        return ("npz", self.path, start, stop), None

    def local_batches(self, batch_size: int, start: int, spec: dict) -> Iterator[Batch]:
        if self._local is None:
            self._local = as_source(self.path, layout=self._layout, input_shape=self._input_shape)
        return _array_batches(self._local, start, self.num_samples, batch_size)


class _ImageShards(_Sized):
    """An image folder: each worker decodes the files of its range."""

    def __init__(self, datastore):
        self.ds = datastore
        self.num_samples = len(datastore.files)

    def describe(self) -> dict:
        ds = self.ds
        h = hashlib.sha256()
        for f in ds.files:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {
            "kind": "images",
            "folder": str(Path(ds.folder).resolve()),
            "files": len(ds.files),
            "files_sha256": h.hexdigest(),
            "size": list(ds.size) if ds.size else None,
            "channels": ds.channels,
            "scale": ds.scale,
            "mean": _plain(ds.mean),
            "std": _plain(ds.std),
            "skip_bad": ds.skip_bad,
        }

    def payload(self, start: int, stop: int) -> tuple[tuple, Any]:
        return ("images", start, stop, self.ds.subset(range(start, stop))), None


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (int, float, str)):
        return v
    return [float(t) for t in np.asarray(v, dtype=np.float64).reshape(-1)]


def _npz_count(path: Path) -> int | None:
    """Samples in ``x`` of an ``.npz`` file from its header alone, or None (let
    ``as_source`` report the problem)."""
    try:
        with zipfile.ZipFile(path) as z, z.open("x.npy") as f:
            major, _minor = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _fortran, _dtype = read(f)
    except NUMPY_FILE_ERRORS:
        return None
    return int(shape[0]) if len(shape) else None


def open_data(
    data: Any, *, layout: str, input_shape: Any, lazy_npz: bool = False
) -> tuple[DataSource | None, _Sized | None]:
    """``(source, sized)``: the data source and, for data of known size, its shards
    (None for a stream). An image folder is listed once, for the shards only (source
    None); with ``lazy_npz`` an ``.npz`` file is not loaded here (only its header read)."""
    path = Path(data) if isinstance(data, (str, os.PathLike)) else None
    skip = path is not None and (path.is_dir() or (lazy_npz and path.suffix.lower() == ".npz" and path.is_file()))
    source = None if skip else as_source(data, layout=layout, input_shape=input_shape)
    sized = sized_shards(data, source, layout=layout, input_shape=input_shape, lazy_npz=lazy_npz)
    if sized is None and source is None:
        source = as_source(data, layout=layout, input_shape=input_shape)
    return source, sized


def sized_shards(
    data: Any, source: DataSource | None, *, layout: str, input_shape: Any, lazy_npz: bool = False
) -> _Sized | None:
    """The data as sample-addressable shards, or None for a stream.

    ``source`` is ``as_source(data, ...)`` (may be None when ``lazy_npz`` and ``data`` is
    an ``.npz`` path, which is then not loaded here)."""
    from .images import ImageDatastore

    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return _ImageShards(ImageDatastore(path))
        suffix = path.suffix.lower()
        if suffix == ".npy" and isinstance(source, _ArraySource):
            return _NpyShards(path, source)
        if suffix == ".npz":
            if lazy_npz:
                n = _npz_count(path)
                if n is not None:
                    return _NpzShards(path, n, layout, input_shape)
                source = as_source(data, layout=layout, input_shape=input_shape)
            if isinstance(source, _ArraySource):
                return _ArrayShards(source, stamp={"kind": "npz", **_file_stamp(path)})
    if isinstance(data, ImageDatastore):
        return _ImageShards(data)
    if isinstance(source, _ArraySource):
        return _ArrayShards(source)
    return None


# --------------------------------------------------------------------------- reading a shard

_CACHE_LOCK = threading.Lock()
#: Per worker process: {key: value} of prepared networks and sessions, and loaded .npz
#: arrays, for the run named by the key's first element; dropped when the run ends.
_CACHE: dict[tuple, Any] = {}


def _cached(key: tuple, make):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


def _forget(run: str) -> int:
    """Drop this worker's cache entries of run ``run`` (called through ``client.run``)."""
    with _CACHE_LOCK:
        keys = [k for k in _CACHE if k[0] == run]
        for k in keys:
            del _CACHE[k]
    return len(keys)


def _where() -> str:
    try:
        from distributed import get_worker

        return f"Dask worker {get_worker().address}"
    except Exception:  # not on a worker (a local read)
        return "this machine"


def _need_path(path: str) -> None:
    if not os.path.exists(path):
        raise CalibrationDataError(
            f"data path {path} does not exist on {_where()}: the workers read .npy/.npz files and "
            "image folders themselves, so they must see them at the same path (a shared filesystem); "
            "otherwise load the data in the client (np.load) and pass the array, which is then sent "
            "to the workers"
        )


def _read(desc: tuple, bulk: Any, spec: dict) -> Iterator[Batch]:
    """The batches of one shard, as the single-process run makes them."""
    kind = desc[0]
    layout, input_shape, bs = spec["layout"], spec["input_shape"], spec["batch_size"]
    if kind == "npy":
        _, path, start, stop = desc
        _need_path(path)
        src = as_source(path, layout=layout, input_shape=input_shape)
        return _array_batches(src, start, stop, bs)
    if kind == "npz":
        _, path, start, stop = desc
        _need_path(path)
        st = os.stat(path)
        src = _cached(
            (spec["run"], "npz", path, st.st_mtime_ns, st.st_size),
            lambda: as_source(path, layout=layout, input_shape=input_shape),
        )
        return _array_batches(src, start, stop, bs)
    if kind == "array":
        _, start, stop = desc
        src = as_source(bulk, layout=layout, input_shape=input_shape)
        return _array_batches(src, 0, stop - start, bs, offset=start)
    if kind == "images":
        _, start, stop, ds = desc
        _need_path(str(ds.folder))
        return _image_batches(ds, start, bs, layout, input_shape)
    if kind == "batches":
        return iter(bulk)
    raise ValueError(f"unknown shard kind {kind!r}")


def _image_batches(ds, offset: int, bs: int, layout: str, input_shape: Any) -> Iterator[Batch]:
    src = as_source(ds, layout=layout, input_shape=input_shape)
    produced = 0
    try:
        for b in src.batches(bs):
            produced += len(b)
            yield Batch(x=b.x, y=b.y, index=b.index + offset)
    except CalibrationDataError:
        # with skip_bad, a shard whose every file failed is empty, not an error:
        # the whole data set is checked for samples when the shards are merged
        skipped = getattr(src, "skipped", [])
        if produced == 0 and ds.skip_bad and len(skipped) == len(ds.files):
            return
        raise
