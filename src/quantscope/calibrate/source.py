"""From what a user passes as data to a :class:`~quantscope.calibrate.data.DataSource`.

:func:`as_source` takes arrays, ``(x, y)`` pairs, mappings, ``.npy``/``.npz`` files,
image folders and datastores, iterables and generator functions of batches, and, for a
network with several inputs, mappings keyed by input name
(:mod:`quantscope.calibrate.multi`). Layouts and units: see
:mod:`quantscope.calibrate.data`.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationDataError, ConfigurationError, option
from .arrays import ArraySource
from .data import (
    NUMPY_FILE_ERRORS,
    Batch,
    Conformer,
    DataSource,
    Layout,
    is_arraylike,
    is_source,
    normalize_input_shape,
    to_numpy,
    unreadable,
)
from .npz import member_names, open_member
from .streams import CheckedSource, StreamSource

__all__ = ["as_source", "read_ahead"]

_END = object()


def read_ahead(source: DataSource, batch_size: int) -> Iterator[Batch]:
    """``source.batches(batch_size)``, each next batch read in a background thread while
    the caller works on the current one (image decoding, ``.npz`` inflating and
    ``.npy`` pages overlap the network's runs). Same batches, same order; a reading
    error is raised where the plain loop would raise it. Only for quantscope's own
    readers (image folders, arrays and array files); a user's iterator or data source
    is read in the caller's thread, as it may expect."""
    from .images import ImageDatastore

    batches = iter(source.batches(batch_size))
    reader = source.inner if isinstance(source, CheckedSource) else source
    if not isinstance(reader, (ArraySource, ImageDatastore)):
        yield from batches
        return
    from concurrent.futures import ThreadPoolExecutor

    def read() -> Any:
        batch = next(batches, _END)
        _trim()
        return batch

    with ThreadPoolExecutor(1, thread_name_prefix="quantscope-read") as pool:
        # in the caller's context: a reading error names the options of the caller's
        # interface (errors.INTERFACE: flags on the command line)
        pending = pool.submit(contextvars.copy_context().run, read)
        while True:
            batch = pending.result()
            if batch is _END:
                return
            pending = pool.submit(contextvars.copy_context().run, read)
            yield batch


def _trim() -> None:
    """Give the C allocator's free memory back to the system (glibc's ``malloc_trim``,
    where there is one). The reading thread allocates each batch from an allocator arena
    of its own, which otherwise keeps what the batches freed and grows with the number
    of batches read (an image folder: +11.6% peak memory from 200 to 1,000 samples)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _describe(data: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return f"data file {os.fspath(data)}"
    if isinstance(data, np.ndarray):
        return "data array"
    return f"data ({type(data).__name__})"


def _from_mapping(m: Mapping[str, Any], where: str) -> tuple[Any, Any]:
    keys = sorted(str(k) for k in m.keys())
    inputs = [k for k in keys if k != "y"]
    if "x" in keys:
        name = "x"
    elif len(inputs) == 1:
        name = inputs[0]  # keyed by the model's input name
    else:
        raise CalibrationDataError(
            f"{where} has no array named 'x' (keys found: {keys}); store the inputs under 'x' "
            "(or under the model's input name) and the optional labels under 'y', e.g. "
            "np.savez(path, x=inputs, y=labels)"
        )
    if "y" not in keys:
        labels_like = [k for k in keys if k != name and k.lower() in _LABEL_NAMES]
        if labels_like:
            raise CalibrationDataError(
                f"{where} holds {labels_like[0]!r} next to the inputs {name!r}: quantscope reads labels only "
                f"from an array named 'y'. Rename it (np.savez(path, x=inputs, y=labels)), or remove it to "
                "run without labels"
            )
    return m[name], (m["y"] if "y" in keys else None)


#: Array names that mean labels where 'y' is missing (refused rather than silently unused).
_LABEL_NAMES = frozenset({"y", "label", "labels", "target", "targets", "class", "classes", "gt", "truth"})


class _NpzMembers(Mapping):
    """The arrays of an ``.npz`` file by name, each opened to be read in pieces."""

    def __init__(self, path: Path):
        self.path = path
        self.names = member_names(path)

    def __getitem__(self, name: str) -> Any:
        return open_member(self.path, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _load_path(
    path: Path,
    *,
    layout: str,
    input_shape: tuple[Any, ...] | None,
    labels: Any,
    dtype: Any,
) -> DataSource:
    if not path.exists():
        raise CalibrationDataError(f"data path {path} does not exist; pass an existing .npy/.npz file or image folder")
    if path.is_dir():
        from .images import ImageDatastore

        return as_source(ImageDatastore(path), layout=layout, input_shape=input_shape, labels=labels, dtype=dtype)
    suffix = path.suffix.lower()
    desc = f"data file {path}"
    conf = Conformer(layout=layout, input_shape=input_shape, dtype=dtype, desc=desc)
    try:
        if suffix == ".npy":
            x = np.load(path, mmap_mode="r", allow_pickle=False)
            y = None
        elif suffix == ".npz":  # read in pieces: one batch of it in memory at a time
            x, y = _from_mapping(_NpzMembers(path), desc)
            y = None if y is None else np.asarray(y)
        else:
            raise CalibrationDataError(
                f"{desc}: cannot read files of type '{path.suffix}'; pass a .npy file (inputs "
                "only), a .npz file (arrays 'x' and optional 'y') or a folder of images"
            )
    except CalibrationDataError:
        raise
    except NUMPY_FILE_ERRORS as e:
        raise CalibrationDataError(unreadable(desc, suffix, e)) from None
    if y is not None and labels is not None:
        raise CalibrationDataError(f"{desc} holds labels 'y' and labels= was given too; pass only one of them")
    return ArraySource(x, y if y is not None else _labels_array(labels), conf)


def _labels_array(labels: Any) -> np.ndarray | None:
    return None if labels is None else to_numpy(labels)


def as_source(
    data: Any,
    *,
    layout: str = "NCHW",
    input_shape: tuple[int | None, ...] | None = None,
    labels: Any = None,
    dtype: Any = np.float32,
    inputs: Mapping[str, tuple[Any, Any]] | None = None,
) -> DataSource:
    """Turn what a user passes as data into a :class:`DataSource`.

    Args:
        data: one of
            * an array (numpy, torch tensor, anything with ``__array__``), batch axis first:
              ``(N, C, H, W)``, ``(N, H, W, C)`` with ``layout="NHWC"``, or any rank for
              non-image networks. With an ``input_shape``, ``(N, H, W)`` for a network
              taking ``(None, 1, H, W)`` gets the channel axis, and a single sample
              ``(C, H, W)`` gets the batch axis;
            * a tuple ``(x, y)`` of arrays (inputs and labels). A tuple whose first element
              is not an array is read as a sequence of batches;
            * a mapping with key ``"x"`` and optional ``"y"`` (e.g. ``np.load("d.npz")``);
            * a path (``str`` or ``Path``) to a ``.npy`` file (inputs only, memory-mapped),
              a ``.npz`` file (arrays ``x`` and optional ``y``) or a folder of images
              (:class:`~quantscope.calibrate.images.ImageDatastore`, sized from
              ``input_shape`` when given);
            * an :class:`~quantscope.calibrate.images.ImageDatastore` or any other
              :class:`DataSource` (returned as is when no other argument is given; else
              wrapped to check shapes and add labels; an ImageDatastore without a size or
              channel count gets them from ``input_shape``);
            * an iterable yielding batches: arrays or tensors, ``(inputs, labels)``
              pairs or lists (as a torch ``DataLoader`` does), or :class:`Batch` objects.
              Lists, tuples, DataLoaders and any object whose ``iter()`` returns a new
              iterator are re-iterable; a generator can be read once;
            * a function of no arguments returning such an iterable (a generator
              function): called again at each pass, so re-iterable.
        layout: the layout of rank-4 data as given, ``"NCHW"`` or ``"NHWC"`` (transposed
            to NCHW). Ignored for other ranks.
        input_shape: the network input's shape with the batch axis first, ``None`` for
            symbolic dimensions, e.g. ``(None, 1, 28, 28)``. Every batch is checked.
        labels: labels, one per sample, first axis = samples, when ``data`` carries none.
        dtype: the dtype of ``Batch.x`` (default ``float32``).
        inputs: for a network with several inputs, ``{name: (shape, dtype)}`` of each
            (``Network.input_spec``): the data is then a mapping of arrays keyed by the
            input names (and ``"y"``), a ``.npz`` file of them, or an iterable of such
            mappings (:mod:`quantscope.calibrate.multi`); ``Batch.x`` is an
            :class:`~quantscope.network.Inputs`.

    Raises:
        CalibrationDataError: a file that is missing or unreadable, an ``.npz`` without
            ``x``, a shape that does not fit ``input_shape``, labels that do not match.
            Empty data and NaN/Inf inputs raise when the batches are read.
    """
    if inputs is not None and len(inputs) > 1:
        from .multi import multi_input_source

        return multi_input_source(data, inputs, labels)
    input_shape = normalize_input_shape(input_shape)
    layout = Layout.parse(layout)

    if is_source(data):
        from .images import ImageDatastore

        if isinstance(data, ImageDatastore):
            if layout != "NCHW":
                raise ConfigurationError(
                    option(
                        "an ImageDatastore yields NCHW batches; drop layout='NHWC'",
                        "an image folder is read as NCHW batches; drop --layout NHWC (it is for .npy/.npz arrays)",
                    )
                )
            if input_shape is not None and (data.size is None or data.channels is None):
                data = data.with_input_shape(input_shape, fill_only=True)
        if input_shape is None and labels is None and layout == "NCHW" and np.dtype(dtype) == np.float32:
            return data
        conf = Conformer(
            layout=layout, input_shape=input_shape, dtype=dtype, desc=getattr(data, "desc", None) or _describe(data)
        )
        return CheckedSource(data, conf, _labels_array(labels))

    if isinstance(data, (str, os.PathLike)):
        return _load_path(Path(data), layout=layout, input_shape=input_shape, labels=labels, dtype=dtype)

    desc = _describe(data)
    conf = Conformer(layout=layout, input_shape=input_shape, dtype=dtype, desc=desc)

    if is_arraylike(data) and not isinstance(data, (list, tuple)):
        return ArraySource(to_numpy(data), _labels_array(labels), conf)

    if isinstance(data, tuple) and len(data) == 2 and is_arraylike(data[0]) and not isinstance(data[0], (list, tuple)):
        if data[1] is None or is_arraylike(data[1]) or isinstance(data[1], (list, tuple)):
            if data[1] is not None and labels is not None:
                raise CalibrationDataError(
                    f"{desc}: labels were given twice, as (x, y) and by labels=; pass only one of them"
                )
            y = data[1] if data[1] is not None else labels
            return ArraySource(to_numpy(data[0]), _labels_array(y), conf)

    if isinstance(data, Mapping):
        x, y = _from_mapping(data, desc)
        if y is not None and labels is not None:
            raise CalibrationDataError(
                f"{desc}: labels were given twice, by the mapping's 'y' and by labels=; pass only one of them"
            )
        return ArraySource(to_numpy(x), _labels_array(y if y is not None else labels), conf)

    lab = _labels_array(labels)
    if lab is not None and lab.ndim == 0:
        raise CalibrationDataError(f"{desc}: labels= is a scalar; pass one label per sample")

    if isinstance(data, Iterable):
        it = iter(data)
        if it is data:  # an iterator or generator: one pass only
            return StreamSource(iterator=it, labels=lab, conformer=conf)
        num = _count_sequence(data, conf) if isinstance(data, (list, tuple)) else None
        return StreamSource(factory=lambda: iter(data), labels=lab, conformer=conf, num_samples=num)

    if callable(data):

        def factory() -> Iterator[Any]:
            produced = data()
            if not isinstance(produced, Iterable):
                raise CalibrationDataError(
                    f"{desc}: calling it returned {type(produced).__name__}, not an iterable of "
                    "batches; pass a generator function or an iterable"
                )
            return iter(produced)

        return StreamSource(factory=factory, labels=lab, conformer=conf)

    raise CalibrationDataError(
        f"cannot use an object of type {type(data).__name__} as data; pass an array, an (x, y) "
        "tuple, a .npy/.npz path, an image folder, an ImageDatastore, or an iterable of batches "
        "(a list, a generator, a torch DataLoader; wrap a torch Dataset in a DataLoader)"
    )


def _count_sequence(items: Sequence[Any], conf: Conformer) -> int | None:
    """The number of samples in an in-memory list of batches, from shapes alone."""
    total = 0
    for item in items:
        if isinstance(item, Batch):
            x = item.x
        elif isinstance(item, (tuple, list)) and not is_arraylike(item) and len(item) in (1, 2):
            x = item[0]
        elif isinstance(item, Mapping) and "x" in item:
            x = item["x"]
        else:
            x = item
        shape = getattr(x, "shape", None)
        if shape is None:
            return None
        shape = tuple(int(d) for d in shape)
        try:
            plan = conf.plan(shape, total, single_ok=True)
        except CalibrationDataError:
            return None  # reported, with its position, when iterated
        total += 1 if plan.single else (shape[0] if shape else 0)
    return total
