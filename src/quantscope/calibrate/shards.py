"""Data as sample-addressable shards: arrays, ``.npy``/``.npz`` files and image folders
split into ranges of samples that a worker (or a resumed run) reads on its own, with a
stamp of the data that a checkpoint or a Dask run checks. Streams have no shards."""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationDataError
from .arrays import ArraySource
from .data import NUMPY_FILE_ERRORS, Batch, DataSource, Layout
from .source import as_source

__all__ = [
    "ArrayShard",
    "BatchesShard",
    "ImageShard",
    "NpyShard",
    "NpzShard",
    "ReadSpec",
    "Shard",
    "SizedData",
    "cached",
    "forget_run",
    "open_data",
    "sized_data",
]


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


@dataclass(frozen=True)
class ReadSpec:
    """How the samples of a shard become batches; the same for every shard of a run.

    ``run`` keys this run's cached files on a worker (``"local"`` in this process)."""

    run: str
    layout: Layout
    input_shape: Any
    batch_size: int
    dtype: Any = np.float32  # of the network's input


class Shard:
    """One range of samples, as sent to the process that reads it. Its ``read``
    gives the very batches the single-process run makes of those samples."""

    def read(self, bulk: Any, spec: ReadSpec) -> Iterator[Batch]:
        """The batches of this shard; ``bulk`` is the data sent with it (or None)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ArrayShard(Shard):
    """Samples ``start..stop-1`` of an array, sent as ``bulk``: ``(x, y)``, the slices of
    the samples and of the labels (None when there are none)."""

    start: int
    stop: int

    def read(self, bulk: Any, spec: ReadSpec) -> Iterator[Batch]:
        x, y = bulk
        src = _array_source(as_source(x, labels=y, layout=spec.layout, input_shape=spec.input_shape, dtype=spec.dtype))
        return src.batches(spec.batch_size, offset=self.start)


@dataclass(frozen=True)
class NpyShard(Shard):
    """Samples ``start..stop-1`` of a ``.npy`` file the reader memory-maps itself."""

    path: str
    start: int
    stop: int

    def read(self, bulk: Any, spec: ReadSpec) -> Iterator[Batch]:
        _need_path(self.path)
        src = _array_source(as_source(self.path, layout=spec.layout, input_shape=spec.input_shape, dtype=spec.dtype))
        return src.batches(spec.batch_size, self.start, self.stop)


@dataclass(frozen=True)
class NpzShard(Shard):
    """Samples ``start..stop-1`` of a ``.npz`` file the reader opens (and reads in pieces)."""

    path: str
    start: int
    stop: int

    def read(self, bulk: Any, spec: ReadSpec) -> Iterator[Batch]:
        _need_path(self.path)
        src = _array_source(as_source(self.path, layout=spec.layout, input_shape=spec.input_shape, dtype=spec.dtype))
        return src.batches(spec.batch_size, self.start, self.stop)


@dataclass(frozen=True)
class ImageShard(Shard):
    """The files of an image folder from file ``start`` on (``datastore`` lists just them)."""

    start: int
    datastore: Any

    def read(self, bulk: Any, spec: ReadSpec) -> Iterator[Batch]:
        _need_path(str(self.datastore.folder))
        return _image_batches(self.datastore, self.start, spec)


@dataclass(frozen=True)
class BatchesShard(Shard):
    """Batches of a stream, read by the client and sent as ``bulk`` (a list of batches)."""

    def read(self, bulk: Any, spec: ReadSpec) -> Iterator[Batch]:
        return iter(bulk)


def _array_source(source: DataSource) -> ArraySource:
    if not isinstance(source, ArraySource):  # as_source of an array or a .npy/.npz file is one
        raise TypeError(f"expected an array source, got {source!r}")
    return source


class SizedData:
    """Data addressable by sample position: shards are sample ranges read where they run."""

    num_samples: int
    #: the class names of labelled image folders (output index i is class i), else None
    classes: list[str] | None = None

    def fingerprint(self) -> dict:
        """What identifies the data for a checkpoint's fingerprint (JSON-able)."""
        raise NotImplementedError

    def shard(self, start: int, stop: int) -> tuple[Shard, Any]:
        """``(shard, bulk)`` for another process to read samples ``start..stop-1``;
        ``bulk`` (or None) is sent to it with the shard."""
        raise NotImplementedError

    def batches(self, spec: ReadSpec, start: int = 0) -> Iterator[Batch]:
        """This process's batches from sample ``start`` to the end."""
        shard, bulk = self.shard(start, self.num_samples)
        return shard.read(bulk, spec)


class _ArrayData(SizedData):
    """An array in this process: shards are slices sent to the workers."""

    def __init__(self, source: ArraySource, stamp: dict | None = None):
        self.source = source
        self.num_samples = source.num_samples
        self._stamp = stamp

    def fingerprint(self) -> dict:
        if self._stamp is not None:
            return self._stamp
        x = self.source.samples
        return {"kind": "array", "shape": list(x.shape), "dtype": str(x.dtype), "sha256": _array_digest(x)}

    def shard(self, start: int, stop: int) -> tuple[Shard, Any]:
        y = self.source.labels
        return ArrayShard(start, stop), (self.source.samples[start:stop], None if y is None else y[start:stop])

    def batches(self, spec: ReadSpec, start: int = 0) -> Iterator[Batch]:
        return self.source.batches(spec.batch_size, start)


class _NpyData(_ArrayData):
    """A ``.npy`` file: each worker memory-maps it and reads its own range."""

    def __init__(self, path: Path, source: ArraySource):
        x = source.samples
        super().__init__(
            source, stamp={"kind": "npy", **_file_stamp(path), "shape": list(x.shape), "dtype": str(x.dtype)}
        )
        self.path = str(path.resolve())

    def shard(self, start: int, stop: int) -> tuple[Shard, Any]:
        return NpyShard(self.path, start, stop), None


class _NpzData(SizedData):
    """A ``.npz`` file: each worker loads it (once per run) and reads its own range.

    The client reads only the header of ``x`` for the sample count."""

    def __init__(self, path: Path, num_samples: int):
        self.path = str(path.resolve())
        self.num_samples = num_samples
        self._stamp = {"kind": "npz", **_file_stamp(path)}

    def fingerprint(self) -> dict:
        return self._stamp

    def shard(self, start: int, stop: int) -> tuple[Shard, Any]:
        return NpzShard(self.path, start, stop), None


class _ImageData(SizedData):
    """An image folder: each worker decodes the files of its range."""

    def __init__(self, datastore):
        self.ds = datastore
        self.num_samples = len(datastore.files)
        self.classes = getattr(datastore, "classes", None)

    def fingerprint(self) -> dict:
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

    def shard(self, start: int, stop: int) -> tuple[Shard, Any]:
        return ImageShard(start, self.ds.subset(range(start, stop))), None


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
    data: Any, *, layout: str, input_shape: Any, lazy_npz: bool = False, dtype: Any = np.float32
) -> tuple[DataSource | None, SizedData | None]:
    """``(source, sized)``: the data source and, for data of known size, its shards
    (None for a stream). An image folder is listed once, for the shards only (source
    None); with ``lazy_npz`` an ``.npz`` file is not loaded here (only its header read)."""
    path = Path(data) if isinstance(data, (str, os.PathLike)) else None
    skip = path is not None and (path.is_dir() or (lazy_npz and path.suffix.lower() == ".npz" and path.is_file()))
    source = None if skip else as_source(data, layout=layout, input_shape=input_shape, dtype=dtype)
    sized = sized_data(data, source, layout=layout, input_shape=input_shape, lazy_npz=lazy_npz, dtype=dtype)
    if sized is None and source is None:
        source = as_source(data, layout=layout, input_shape=input_shape, dtype=dtype)
    return source, sized


def sized_data(
    data: Any,
    source: DataSource | None,
    *,
    layout: str,
    input_shape: Any,
    lazy_npz: bool = False,
    dtype: Any = np.float32,
) -> SizedData | None:
    """The data as sample-addressable shards, or None for a stream.

    ``source`` is ``as_source(data, ...)`` (may be None when ``lazy_npz`` and ``data`` is
    an ``.npz`` path, which is then not loaded here)."""
    from .images import ImageDatastore

    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return _ImageData(ImageDatastore(path))
        suffix = path.suffix.lower()
        if suffix == ".npy" and isinstance(source, ArraySource):
            return _NpyData(path, source)
        if suffix == ".npz":
            if lazy_npz:
                n = _npz_count(path)
                if n is not None:
                    return _NpzData(path, n)
                source = as_source(data, layout=layout, input_shape=input_shape, dtype=dtype)
            if isinstance(source, ArraySource):
                return _ArrayData(source, stamp={"kind": "npz", **_file_stamp(path)})
    if isinstance(data, ImageDatastore):
        return _ImageData(data)
    if isinstance(source, ArraySource):
        return _ArrayData(source)
    return None


# --------------------------------------------------------------------------- reading a shard

_CACHE_LOCK = threading.Lock()
#: Per worker process: {key: value} of prepared networks and sessions, and loaded .npz
#: arrays, for the run named by the key's first element; dropped when the run ends.
_CACHE: dict[tuple, Any] = {}


def cached(key: tuple, make: Any) -> Any:
    """The value of ``key`` in this process's cache, made by ``make()`` the first time."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


def forget_run(run: str) -> int:
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


def _image_batches(ds, offset: int, spec: ReadSpec) -> Iterator[Batch]:
    src = as_source(ds, layout=spec.layout, input_shape=spec.input_shape, dtype=spec.dtype)
    produced = 0
    try:
        for b in src.batches(spec.batch_size):
            produced += len(b)
            yield Batch(x=b.x, y=b.y, index=b.index + offset)
    except CalibrationDataError:
        # with skip_bad, a shard whose every file failed is empty, not an error:
        # the whole data set is checked for samples when the shards are merged
        skipped = getattr(src, "skipped", [])
        if produced == 0 and ds.skip_bad and len(skipped) == len(ds.files):
            return
        raise
