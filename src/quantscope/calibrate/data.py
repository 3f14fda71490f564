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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np

from quantscope.errors import CalibrationDataError, ConfigurationError, option

__all__ = [
    "Batch",
    "Conformer",
    "DataSource",
    "Layout",
    "NUMPY_FILE_ERRORS",
    "check_finite",
    "check_not_empty",
    "unreadable",
]


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
            f"{option('batch_size', '--batch-size')} must be a positive integer, got {batch_size!r}; pass for "
            f"example {option('batch_size=32', '--batch-size 32')}"
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
class ConformPlan:
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

    def plan(self, shape: tuple[int, ...], position: int, *, single_ok: bool) -> ConformPlan:
        """Decide the transform for an incoming array of ``shape`` starting at ``position``."""
        transpose = self.layout == "NHWC" and len(shape) == 4
        got = (shape[0], shape[3], shape[1], shape[2]) if transpose else tuple(shape)
        if self.input_shape is None:
            if len(shape) == 0:
                raise CalibrationDataError(
                    f"{self.desc}, sample {position}: got a scalar, not a batch; each item must "
                    "be an array with the batch axis first, shape (n, ...)"
                )
            return ConformPlan(transpose=transpose)
        expected = self.input_shape[1:]
        if len(got) >= 1 and _fits(got[1:], expected):
            return ConformPlan(transpose=transpose)
        if len(got) == len(self.input_shape) - 1 and len(got) >= 1:
            # (N, H, W) for a network taking (None, 1, H, W): add the channel axis;
            # likewise (N, H, W) for (None, H, W, 1).
            if len(expected) >= 2:
                if not _is_free(expected[0]) and int(expected[0]) == 1 and _fits(got[1:], expected[1:]):
                    return ConformPlan(transpose=transpose, insert_axis=1)
                if not _is_free(expected[-1]) and int(expected[-1]) == 1 and _fits(got[1:], expected[:-1]):
                    return ConformPlan(transpose=transpose, insert_axis=len(got))
            if single_ok and _fits(got, expected):
                return ConformPlan(transpose=transpose, single=True)
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

    def apply(self, plan: ConformPlan, x: np.ndarray, position: int) -> np.ndarray:
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
        x = cast_checked(x, self.dtype, f"{self.desc}, at sample {position}: the network input")
        check_finite(x, position, self.desc)
        return x

    def conform(self, x: np.ndarray, position: int, *, single_ok: bool) -> tuple[np.ndarray, bool]:
        plan = self.plan(tuple(x.shape), position, single_ok=single_ok)
        return self.apply(plan, x, position), plan.single


def cast_checked(x: np.ndarray, dtype: Any, what: str) -> np.ndarray:
    """``x`` as a contiguous array of ``dtype``, refusing what the cast would change
    silently: fractions or non-finite values for an integer input (token ids, file
    bytes), values outside an integer type's range (2**40 wraps in int32), finite
    values beyond float32's range (1e40 becomes inf). ``what`` starts the message."""
    target = np.dtype(dtype)
    if target.kind in "iub" and x.dtype != target and x.size:
        if x.dtype.kind == "f" and (not np.all(np.isfinite(x)) or not np.all(x == np.round(x))):
            raise CalibrationDataError(
                f"{what} takes integers ({target}), and the data holds fractions or non-finite values; "
                "give whole numbers"
            )
        if target.kind != "b" and x.dtype.kind in "iuf":
            info = np.iinfo(target)
            lo, hi = x.min(), x.max()
            if lo < info.min or hi > info.max:
                raise CalibrationDataError(
                    f"{what} takes {target} values ({info.min}..{info.max}), and the data holds values from "
                    f"{lo} to {hi}; give values in the input's range"
                )
    with np.errstate(over="ignore"):  # an overflow is said below, in quantscope's words
        out = np.ascontiguousarray(x, dtype=target)
    if target.kind == "f" and x.dtype.kind == "f" and x.dtype.itemsize > target.itemsize and x.size:
        # a pass over the narrow copy only; the wide data is read again only when it overflowed
        if not np.isfinite(out).all() and np.any(np.isinf(out) & np.isfinite(x)):
            largest = float(np.max(np.abs(x), where=np.isfinite(x), initial=0.0))
            raise CalibrationDataError(
                f"{what} takes {target} values, and the data holds finite values up to {largest:.4g}, beyond "
                f"{target}'s range ({np.finfo(target).max:.4g}); scale the data"
            )
    return out


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
    is_empty = getattr(source, "is_empty", None)  # a stream that can look at its first item
    if n is None and callable(is_empty) and is_empty():
        raise empty_error(desc)
    return source


def check_labels_len(y: np.ndarray, n: int, desc: str) -> None:
    if y.ndim == 0:
        raise CalibrationDataError(f"{desc}: the labels are a scalar; pass one label per sample, shape ({n},)")
    if y.shape[0] != n:
        raise CalibrationDataError(
            f"{desc}: {n} samples but {y.shape[0]} labels; pass one label per sample "
            "(labels first axis = number of samples)"
        )


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
    if isinstance(exc, PermissionError):
        return f"{desc} cannot be read: permission denied; check the file's permissions"
    if isinstance(exc, OSError) and not isinstance(exc, (zipfile.BadZipFile, EOFError)):
        return f"{desc} cannot be read: {exc.strerror or exc}"
    if "object arrays" in text:
        what = (
            "it holds an array of Python objects (dtype=object), which quantscope does not unpickle; "
            "store numbers (a float or integer dtype)"
        )
    elif "mmap length" in text or "greater than file size" in text:
        what = "the file is shorter than its header says (cut short while copying or writing?)"
    elif isinstance(exc, (zlib.error, EOFError)) or "crc" in text:
        what = f"its data is damaged or cut short ({' '.join(str(exc).split()) or type(exc).__name__})"
    elif isinstance(exc, zipfile.BadZipFile) or (suffix == ".npz" and any(w in text for w in zip_words)):
        what = "it is not a zip archive, as an .npz file is"
    elif "pickle" in str(exc).lower() or "magic" in str(exc).lower():
        what = "it does not start with numpy's .npy header (a text file or another format?)"
    else:
        what = " ".join(str(exc).split()) or type(exc).__name__
    return (
        f"{desc} cannot be read as {suffix}: {what}. Write the data with numpy (np.save for .npy, "
        "np.savez for .npz); quantscope never loads pickled objects."
    )
