"""Data sources: what calibration and validation read, one batch at a time.

Everything a user may pass as data goes through
:func:`quantscope.calibrate.source.as_source`, which returns a :class:`DataSource`.
A source yields :class:`Batch` objects of a requested size; each call to
:meth:`DataSource.batches` starts over from the first sample (except for a one-shot
generator, which can be read once).

Layouts and units
-----------------
* ``Batch.x`` is ``float32`` (or the ``dtype`` asked for), shape ``(n, *sample)``.
  Image data is NCHW: ``(n, channels, height, width)``.
* ``layout`` names the layout **of the data you pass**. ``"NHWC"`` (channels last,
  as TensorFlow/Keras and most image libraries store images) is transposed to NCHW;
  ``"NCHW"`` (the default) passes rank-4 data through unchanged. For any other rank
  the layout is ignored. A network whose own input is NHWC takes its data as it is:
  leave ``layout="NCHW"`` so that nothing is transposed.
* ``input_shape`` is the network input's shape, batch axis first, ``None`` (or a
  string, or a non-positive int) for a symbolic dimension, e.g. ``(None, 1, 28, 28)``.
  When given, every batch is checked against it and a mismatch raises
  :class:`~quantscope.errors.CalibrationDataError` naming the sample position, the
  shape got, the shape expected and a likely fix.
* ``Batch.index`` holds the 0-based positions of the batch's samples in the source,
  ``int64``, shape ``(n,)``.

Streams (lists, generators, a torch ``DataLoader``, any iterable) are re-chunked to the
requested batch size while holding at most one output batch plus one incoming chunk;
nothing is collected into a list. torch is never imported: a tensor is recognised by
its ``detach``/``cpu``/``numpy`` methods.
"""

from __future__ import annotations

import inspect
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np

from quantscope.errors import CalibrationDataError, ConfigurationError, option

__all__ = ["ArraySource", "Batch", "DataSource", "Layout", "check_not_empty", "check_finite"]


class Layout(StrEnum):
    """The layout of image-like array data a user passes (the network's own is NCHW)."""

    NCHW = "NCHW"  # channels first
    NHWC = "NHWC"  # channels last: transposed to NCHW batch by batch

    @classmethod
    def parse(cls, value: Any) -> Layout:
        """``value`` (a Layout or its name) as a Layout.

        Raises:
            ConfigurationError: not ``"NCHW"`` or ``"NHWC"``.
        """
        try:
            return cls(value)
        except ValueError:
            raise ConfigurationError(
                f"{option('layout', '--layout')} must be 'NCHW' or 'NHWC', got {value!r}"
            ) from None


@dataclass(frozen=True)
class Batch:
    """One batch of samples.

    Attributes:
        x: the inputs, ``float32`` (or the source's dtype), shape ``(n, *input_shape[1:])``,
            NCHW for images.
        y: the labels, shape ``(n,)`` or ``(n, ...)``, or ``None`` when the source has none.
        index: ``int64`` positions (0-based) of these samples in the source, shape ``(n,)``.
    """

    x: np.ndarray
    y: np.ndarray | None
    index: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


@runtime_checkable
class DataSource(Protocol):
    """What calibration and validation read. See the module docstring for layouts."""

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Yield batches of ``batch_size`` samples (the last may be smaller), from the start."""
        ...

    @property
    def num_samples(self) -> int | None:
        """The number of samples, or ``None`` when unknown (streams)."""
        ...

    @property
    def has_labels(self) -> bool:
        """Whether the batches carry labels (``Batch.y`` is not ``None``)."""
        ...


def is_source(obj: Any) -> bool:
    """Whether ``obj`` is a DataSource, without evaluating its properties."""
    if isinstance(obj, type):
        return False
    for name in ("batches", "num_samples", "has_labels"):
        try:
            inspect.getattr_static(obj, name)
        except AttributeError:
            return False
    return callable(getattr(obj, "batches", None))


# --------------------------------------------------------------------------- helpers


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigurationError(
            f"batch_size must be a positive integer, got {batch_size!r}; pass for example batch_size=32"
        )
    return int(batch_size)


def _is_tensor(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("detach", "cpu", "numpy"))


def is_arraylike(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or _is_tensor(obj) or hasattr(obj, "__array__")


def to_numpy(obj: Any) -> np.ndarray:
    """A numpy view or copy of an array, a torch tensor (on any device) or a nested list."""
    if isinstance(obj, np.ndarray):
        return obj
    if _is_tensor(obj):
        obj = obj.detach().cpu().numpy()
    return np.asarray(obj)


def fmt_shape(shape: Sequence[Any]) -> str:
    dims = ["None" if (d is None) else (repr(d) if isinstance(d, str) else str(int(d))) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _is_free(dim: Any) -> bool:
    """A symbolic dimension: None, a name, or a non-positive int (ONNX's unknown)."""
    return dim is None or isinstance(dim, str) or (isinstance(dim, (int, np.integer)) and dim <= 0)


def _fits(sample_shape: Sequence[int], expected: Sequence[Any]) -> bool:
    return len(sample_shape) == len(expected) and all(
        _is_free(e) or int(e) == int(s) for s, e in zip(sample_shape, expected)
    )


def normalize_input_shape(input_shape: Any) -> tuple[Any, ...] | None:
    if input_shape is None:
        return None
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ConfigurationError(f"input_shape must be a tuple like (None, 1, 28, 28), got {input_shape!r}") from None
    if len(shape) < 1:
        raise ConfigurationError("input_shape must include the batch axis first, e.g. (None, 1, 28, 28); got ()")
    return shape


@dataclass(frozen=True)
class _Plan:
    """How to turn an incoming array into a batch matching the network's input."""

    transpose: bool = False  # NHWC -> NCHW
    insert_axis: int | None = None  # add a size-1 channel axis here (on the batch array)
    single: bool = False  # the array is one sample: add the batch axis


class Conformer:
    """Converts incoming arrays to batches of the network's layout, shape and dtype."""

    def __init__(self, *, layout: str, input_shape: tuple[Any, ...] | None, dtype: Any, desc: str):
        self.layout = Layout.parse(layout)
        self.input_shape = input_shape
        self.dtype = np.dtype(dtype)
        self.desc = desc

    # shape planning ---------------------------------------------------------------

    def plan(self, shape: tuple[int, ...], position: int, *, single_ok: bool) -> _Plan:
        """Decide the transform for an incoming array of ``shape`` starting at ``position``."""
        transpose = self.layout == "NHWC" and len(shape) == 4
        got = (shape[0], shape[3], shape[1], shape[2]) if transpose else tuple(shape)
        if self.input_shape is None:
            if len(shape) == 0:
                raise CalibrationDataError(
                    f"{self.desc}, sample {position}: got a scalar, not a batch; each item must "
                    "be an array with the batch axis first, shape (n, ...)"
                )
            return _Plan(transpose=transpose)
        expected = self.input_shape[1:]
        if len(got) >= 1 and _fits(got[1:], expected):
            return _Plan(transpose=transpose)
        if len(got) == len(self.input_shape) - 1 and len(got) >= 1:
            # (N, H, W) for a network taking (None, 1, H, W): add the channel axis;
            # likewise (N, H, W) for (None, H, W, 1).
            if len(expected) >= 2:
                if not _is_free(expected[0]) and int(expected[0]) == 1 and _fits(got[1:], expected[1:]):
                    return _Plan(transpose=transpose, insert_axis=1)
                if not _is_free(expected[-1]) and int(expected[-1]) == 1 and _fits(got[1:], expected[:-1]):
                    return _Plan(transpose=transpose, insert_axis=len(got))
            if single_ok and _fits(got, expected):
                return _Plan(transpose=transpose, single=True)
        raise self._mismatch(shape, got, position)

    def _mismatch(self, raw: tuple[int, ...], got: tuple[int, ...], position: int) -> CalibrationDataError:
        assert self.input_shape is not None
        expected = self.input_shape[1:]
        sample = got[1:] if len(got) else got
        hints: list[str] = []
        if len(raw) == 4 and self.layout == "NCHW" and _fits((raw[3], raw[1], raw[2]), expected):
            hints.append("it looks like NHWC (channels last): pass " + option("layout='NHWC'", "--layout NHWC"))
        elif len(raw) == 4 and self.layout == "NHWC" and _fits(raw[1:], expected):
            hints.append("the data is NCHW already: drop " + option("layout='NHWC'", "--layout NHWC"))
        elif len(sample) == len(expected) == 3 and not any(_is_free(e) for e in expected):
            c, h, w = (int(e) for e in expected)
            if sample[0] != c and {sample[0], c} <= {1, 3, 4}:
                hints.append(
                    f"the network takes {c}-channel images: convert them "
                    f"({'grayscale' if c == 1 else 'RGB'}; for a folder use "
                    f"{option(f'ImageDatastore(folder, channels={c})', f'--channels {c}')})"
                )
            if tuple(sample[1:]) != (h, w):
                resize = option(f"ImageDatastore(folder, size=({h}, {w}))", f"--size {h} {w}")
                hints.append(f"resize the images to {h}x{w} (for a folder: {resize})")
        if not hints and len(sample) != len(expected):
            hints.append(
                f"the network takes batches of rank {len(self.input_shape)} "
                f"(batch axis first, {fmt_shape(self.input_shape)})"
            )
            known = [int(e) for e in expected if not _is_free(e)]
            if len(known) == len(expected) and int(np.prod(known)) == int(np.prod(sample)):
                hints.append(f"reshape each sample to {fmt_shape(expected)}")
        if not hints:
            hints.append(f"reshape or resize the data so that each sample is {fmt_shape(expected)}")
        got_txt = f"a batch of shape {fmt_shape(raw)}"
        if self.layout == "NHWC" and len(raw) == 4:
            got_txt += f" (NCHW after the NHWC transpose: {fmt_shape(got)})"
        return CalibrationDataError(
            f"{self.desc}, at sample {position}: got {got_txt}, i.e. samples of shape "
            f"{fmt_shape(sample)}, but the network input expects samples of shape "
            f"{fmt_shape(expected)} (input shape {fmt_shape(self.input_shape)}); " + "; ".join(hints)
        )

    # conversion ---------------------------------------------------------------------

    def apply(self, plan: _Plan, x: np.ndarray, position: int) -> np.ndarray:
        """Transform ``x`` by ``plan``, cast to the dtype and check values are finite."""
        if x.dtype.kind not in "biuf":
            raise CalibrationDataError(
                f"{self.desc}, at sample {position}: the inputs have dtype {x.dtype}, not numbers; "
                "pass numeric arrays (float or integer pixels)"
            )
        if plan.single:
            x = x[None]
        if plan.transpose:
            x = x.transpose(0, 3, 1, 2)
        if plan.insert_axis is not None:
            x = np.expand_dims(x, plan.insert_axis)
        x = np.ascontiguousarray(x, dtype=self.dtype)
        check_finite(x, position, self.desc)
        return x

    def conform(self, x: np.ndarray, position: int, *, single_ok: bool) -> tuple[np.ndarray, bool]:
        plan = self.plan(tuple(x.shape), position, single_ok=single_ok)
        return self.apply(plan, x, position), plan.single


def check_finite(x: np.ndarray, first_position: int | np.ndarray, desc: str = "the data") -> None:
    """Raise :class:`CalibrationDataError` if ``x`` (batch axis first) holds a NaN or Inf.

    ``first_position`` is the source position of ``x[0]`` (or the positions of all rows).
    """
    if x.dtype.kind != "f" or x.size == 0:
        return
    if np.isfinite(x).all():
        return
    bad_rows = np.flatnonzero(~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1))
    if isinstance(first_position, np.ndarray):
        positions = [int(first_position[i]) for i in bad_rows]
    else:
        positions = [int(first_position) + int(i) for i in bad_rows]
    first = positions[0]
    row = x[bad_rows[0]]
    kinds = [k for k, m in (("NaN", np.isnan(row)), ("Inf", np.isinf(row))) if m.any()]
    more = ""
    if len(positions) > 1:
        listed = ", ".join(str(p) for p in positions[:10]) + (", ..." if len(positions) > 10 else "")
        more = f" ({len(positions)} samples of this batch are affected: {listed})"
    raise CalibrationDataError(
        f"{desc}: sample {first} contains {' and '.join(kinds)} values{more}; "
        "remove or repair those samples before calibrating or validating"
    )


def empty_error(desc: str) -> CalibrationDataError:
    return CalibrationDataError(
        f"{desc} contains no samples; pass at least one sample (calibration needs a few hundred representative inputs)"
    )


def check_not_empty(source: DataSource, what: str | None = None) -> DataSource:
    """Raise :class:`CalibrationDataError` if ``source`` is known to hold no samples.

    Sources with a known count are checked by ``num_samples``; a stream made by
    :func:`as_source` is checked by looking at its first item (kept, not lost, for a
    one-shot generator). Other streams are checked when iterated (each source made by
    this module raises at the end of an iteration that produced no sample).
    Returns ``source``.
    """
    desc = what or getattr(source, "desc", None) or "the data"
    n = source.num_samples
    if n == 0:
        raise empty_error(desc)
    if n is None and isinstance(source, StreamSource) and source._peek() is _END:
        raise empty_error(desc)
    return source


def _check_labels_len(y: np.ndarray, n: int, desc: str) -> None:
    if y.ndim == 0:
        raise CalibrationDataError(f"{desc}: the labels are a scalar; pass one label per sample, shape ({n},)")
    if y.shape[0] != n:
        raise CalibrationDataError(
            f"{desc}: {n} samples but {y.shape[0]} labels; pass one label per sample "
            "(labels first axis = number of samples)"
        )


# --------------------------------------------------------------------------- arrays


class ArraySource:
    """Samples held in an array (or a memory-mapped ``.npy``), converted batch by batch.

    ``samples`` is the array as given (batch axis first, the user's layout and dtype);
    ``labels`` the labels ``(N,)`` or None. Batches are conformed to the network's
    input (NCHW, its dtype) as they are read: any range of samples can be read on its
    own (:meth:`batches` with ``start``/``stop``), which is how a resumed run or a Dask
    worker reads its part.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None, conformer: Conformer):
        self.desc = conformer.desc
        self._conformer = conformer
        if x.ndim == 0:
            raise CalibrationDataError(
                f"{self.desc}: got a scalar, not an array of samples; pass an array with the "
                "batch axis first, shape (n, ...)"
            )
        self._plan = conformer.plan(tuple(x.shape), 0, single_ok=True)
        if self._plan.single:
            x = x[None]
        self._x = x
        if y is not None:
            y = to_numpy(y)
            if self._plan.single and y.ndim == 0:
                y = y[None]
            _check_labels_len(y, x.shape[0], self.desc)
        self._y = y

    @property
    def samples(self) -> Any:
        """The samples as given, batch axis first (not conformed, not copied)."""
        return self._x

    @property
    def labels(self) -> np.ndarray | None:
        return self._y

    @property
    def num_samples(self) -> int:
        return int(self._x.shape[0])

    @property
    def has_labels(self) -> bool:
        return self._y is not None

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None, offset: int = 0) -> Iterator[Batch]:
        """Batches of ``batch_size`` samples of ``start..stop-1`` (``stop`` None: to the end).

        ``offset`` is added to the positions in ``Batch.index`` and in error messages:
        the position of this array's first sample in a larger data set (a shard sent
        to a worker). Reading the whole array raises for an empty one.
        """
        bs = check_batch_size(batch_size)
        n = self.num_samples
        stop = n if stop is None else min(int(stop), n)
        return self._iterate(bs, int(start), stop, int(offset))

    def _iterate(self, bs: int, lo: int, hi: int, offset: int) -> Iterator[Batch]:
        if self.num_samples == 0:
            raise empty_error(self.desc)
        plan = _Plan(transpose=self._plan.transpose, insert_axis=self._plan.insert_axis)
        for start in range(lo, hi, bs):
            stop = min(start + bs, hi)
            x = self._conformer.apply(plan, np.asarray(self._x[start:stop]), offset + start)
            y = None if self._y is None else self._y[start:stop]
            yield Batch(x=x, y=y, index=np.arange(offset + start, offset + stop, dtype=np.int64))

    def __repr__(self) -> str:
        return f"<data source: {self.desc}, {self.num_samples} samples, labels={self.has_labels}>"


# --------------------------------------------------------------------------- streams

_END = object()


class StreamSource:
    """Batches from an iterable, re-chunked to the requested size.

    ``factory`` returns a fresh iterator for a re-iterable source; ``iterator`` is a
    one-shot iterator (a generator), which can be read once.
    """

    def __init__(
        self,
        *,
        factory: Callable[[], Iterator[Any]] | None = None,
        iterator: Iterator[Any] | None = None,
        labels: np.ndarray | None,
        conformer: Conformer,
        num_samples: int | None = None,
    ):
        self.desc = conformer.desc
        self._factory = factory
        self._iterator = iterator
        self._head: Any = None  # first item of a one-shot iterator, peeked and kept
        self._head_taken = False
        self._consumed = False  # a one-shot iterator has handed out items to batches()
        self._labels = labels
        self._conformer = conformer
        self._num_samples = num_samples
        self._has_labels: bool | None = None if labels is None else True

    @property
    def one_shot(self) -> bool:
        return self._factory is None

    @property
    def num_samples(self) -> int | None:
        return self._num_samples

    @property
    def has_labels(self) -> bool:
        if self._has_labels is None:
            first = self._peek()
            self._has_labels = False if first is _END else self._split(first, 0)[1] is not None
        return self._has_labels

    def _peek(self) -> Any:
        """The first item, without losing it (one-shot) or by a throw-away iterator."""
        if self.one_shot:
            if self._consumed:
                return None
            if not self._head_taken:
                assert self._iterator is not None
                self._head = next(self._iterator, _END)
                self._head_taken = True
            return self._head
        assert self._factory is not None
        it = self._factory()
        try:
            return next(it, _END)
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()

    def _split(self, item: Any, position: int) -> tuple[Any, Any]:
        """(inputs, labels or None) of one item, still unconverted."""
        if isinstance(item, Batch):
            return item.x, item.y
        if isinstance(item, (tuple, list)) and not is_arraylike(item):
            if len(item) == 2:
                return item[0], item[1]
            if len(item) == 1:
                return item[0], None
            raise CalibrationDataError(
                f"{self.desc}, at sample {position}: an item is a {type(item).__name__} of "
                f"{len(item)} elements; each item must be a batch of inputs or an "
                "(inputs, labels) pair"
            )
        if isinstance(item, Mapping):
            if "x" not in item:
                raise CalibrationDataError(
                    f"{self.desc}, at sample {position}: an item is a mapping with keys "
                    f"{sorted(map(str, item))}, without 'x'; yield arrays, (inputs, labels) "
                    "pairs, or mappings with keys 'x' and optionally 'y'"
                )
            return item["x"], item.get("y")
        return item, None

    def _open(self) -> Iterator[Any]:
        if self.one_shot:
            if self._consumed:
                raise CalibrationDataError(
                    f"{self.desc} is a one-shot generator/iterator and has already been read: "
                    "it can only be iterated once. Pass something re-iterable instead: a list, "
                    "an array, a DataLoader, or the generator function itself "
                    "(as_source(make_batches) rather than as_source(make_batches()))"
                )
            assert self._iterator is not None
            it = self._iterator
            if self._head_taken:
                head = self._head
                if head is _END:
                    return iter(())

                def chained() -> Iterator[Any]:
                    yield head
                    yield from it

                return chained()
            return it
        assert self._factory is not None
        return self._factory()

    def batches(self, batch_size: int) -> Iterator[Batch]:
        bs = check_batch_size(batch_size)
        it = self._open()
        return self._iterate(it, bs)

    def _iterate(self, it: Iterator[Any], bs: int) -> Iterator[Batch]:
        pend_x: list[np.ndarray] = []
        pend_y: list[np.ndarray] = []
        pend_n = 0
        pos = 0  # position of the next incoming sample
        out = 0  # position of the next outgoing sample
        item_has_y: bool | None = None
        conf = self._conformer
        labels = self._labels

        def emit(xs: list[np.ndarray], ys: list[np.ndarray], n: int) -> Batch:
            nonlocal out
            x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=0)
            y = None
            if labels is not None:
                y = labels[out : out + n]
            elif ys:
                y = ys[0] if len(ys) == 1 else np.concatenate(ys, axis=0)
            b = Batch(x=x, y=y, index=np.arange(out, out + n, dtype=np.int64))
            out += n
            return b

        for item in it:
            if self.one_shot:
                self._consumed = True
                self._head_taken = False
                self._head = None
            raw_x, raw_y = self._split(item, pos)
            if raw_x is None:
                raise CalibrationDataError(
                    f"{self.desc}, at sample {pos}: an item has no inputs (None); yield arrays "
                    "or (inputs, labels) pairs"
                )
            x, single = conf.conform(to_numpy(raw_x), pos, single_ok=True)
            n = int(x.shape[0])
            y = None
            if raw_y is not None:
                y = to_numpy(raw_y)
                if single and y.ndim == 0:
                    y = y[None]
                _check_labels_len(y, n, f"{self.desc}, at sample {pos}")
            this_has_y = y is not None
            if labels is not None and this_has_y:
                raise CalibrationDataError(
                    f"{self.desc}: labels were given twice, by labels= and by the stream's "
                    "(inputs, labels) items; pass only one of them"
                )
            if item_has_y is None:
                item_has_y = this_has_y
                if self._has_labels is None:
                    self._has_labels = this_has_y
            elif item_has_y != this_has_y:
                raise CalibrationDataError(
                    f"{self.desc}, at sample {pos}: some items carry labels and others do not; "
                    "yield (inputs, labels) pairs throughout, or inputs only"
                )
            if labels is not None and pos + n > len(labels):
                raise CalibrationDataError(
                    f"{self.desc}: the stream yields more samples than the {len(labels)} labels "
                    f"given by labels= (sample {len(labels)} has none); pass one label per sample"
                )
            pos += n
            if n == 0:
                continue
            start = 0
            if pend_n:
                take = min(bs - pend_n, n)
                pend_x.append(x[:take])
                if y is not None:
                    pend_y.append(y[:take])
                pend_n += take
                start = take
                if pend_n == bs:
                    b = emit(pend_x, pend_y, pend_n)
                    pend_x, pend_y, pend_n = [], [], 0
                    yield b
            while n - start >= bs:
                yield emit([x[start : start + bs]], [] if y is None else [y[start : start + bs]], bs)
                start += bs
            if start < n:
                # copy the remainder so that the incoming chunk can be freed
                pend_x.append(np.array(x[start:]))
                if y is not None:
                    pend_y.append(np.array(y[start:]))
                pend_n += n - start
        if pend_n:
            b = emit(pend_x, pend_y, pend_n)
            pend_x, pend_y = [], []
            yield b
        if pos == 0:
            raise empty_error(self.desc)
        if labels is not None and pos != len(labels):
            raise CalibrationDataError(
                f"{self.desc}: the stream yielded {pos} samples but labels= holds {len(labels)}; "
                "pass one label per sample"
            )

    def __repr__(self) -> str:
        kind = "one-shot stream" if self.one_shot else "stream"
        return f"<data source: {self.desc} ({kind})>"


# --------------------------------------------------------------------------- wrapper


class CheckedSource:
    """Applies layout, shape, dtype, finiteness checks and labels to another DataSource."""

    def __init__(self, inner: DataSource, conformer: Conformer, labels: np.ndarray | None):
        self._inner = inner
        self._conformer = conformer
        self._labels = labels
        self.desc = conformer.desc
        n = inner.num_samples
        if labels is not None and n is not None:
            _check_labels_len(labels, n, self.desc)

    @property
    def num_samples(self) -> int | None:
        return self._inner.num_samples

    @property
    def has_labels(self) -> bool:
        return self._labels is not None or self._inner.has_labels

    def batches(self, batch_size: int) -> Iterator[Batch]:
        bs = check_batch_size(batch_size)
        return self._iterate(self._inner.batches(bs))

    def _iterate(self, inner: Iterator[Batch]) -> Iterator[Batch]:
        count = 0
        for b in inner:
            index = np.asarray(b.index, dtype=np.int64)
            first = int(index[0]) if index.size else count
            x, _ = self._conformer.conform(to_numpy(b.x), first, single_ok=False)
            y = b.y
            if self._labels is not None:
                if y is not None:
                    raise CalibrationDataError(
                        f"{self.desc}: labels were given twice, by labels= and by the source; pass only one of them"
                    )
                if index.size and int(index.max()) >= len(self._labels):
                    raise CalibrationDataError(
                        f"{self.desc}: sample {int(index.max())} has no label (labels= holds "
                        f"{len(self._labels)}); pass one label per sample"
                    )
                y = self._labels[index]
            count += int(x.shape[0])
            yield Batch(x=x, y=y, index=index)
        if count == 0:
            raise empty_error(self.desc)

    def __getattr__(self, name: str) -> Any:
        # expose the wrapped source's extras (files, classes, skipped...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<checked {self._inner!r}>"


#: What numpy, zipfile and zlib raise on a damaged ``.npy``/``.npz`` file.
NUMPY_FILE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    TypeError,
    OverflowError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    SyntaxError,  # numpy parses the .npy header with Python's tokenizer
    tokenize.TokenError,
    RuntimeError,  # zipfile: an encrypted member
)


def unreadable(desc: str, suffix: str, exc: BaseException) -> str:
    """The message for a ``.npy``/``.npz`` file numpy cannot read: what it is not, in
    quantscope's words (numpy's own may suggest unsafe pickle loading)."""
    text = str(exc).lower()
    zip_words = ("zip", "pickle", "magic")
    if isinstance(exc, zipfile.BadZipFile) or (suffix == ".npz" and any(w in text for w in zip_words)):
        what = "it is not a zip archive, as an .npz file is"
    elif "pickle" in str(exc).lower() or "magic" in str(exc).lower():
        what = "it does not start with numpy's .npy header (a text file or another format?)"
    else:
        what = " ".join(str(exc).split()) or type(exc).__name__
    return (
        f"{desc} cannot be read as {suffix}: {what}. Write the data with numpy (np.save for .npy, "
        "np.savez for .npz); quantscope never loads pickled objects."
    )
