"""Data for networks with several inputs (a transformer's ``input_ids`` and
``attention_mask``, a detector's image and image size).

The data names every input: a mapping ``{input name: array}`` (plus an optional
``"y"`` for labels), an ``.npz`` file holding one array per input name (and ``y``),
or an iterable of such mappings, one batch each. Every array has the batch axis
first; each batch's ``x`` is an :class:`~quantscope.network.Inputs`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationDataError
from ..network.network import Inputs
from .data import (
    NUMPY_FILE_ERRORS,
    Batch,
    cast_checked,
    check_batch_size,
    check_finite,
    fmt_shape,
    to_numpy,
    unreadable,
)

__all__ = ["InputSpec", "multi_input_source"]

#: input name -> (shape with None for free dims, numpy dtype)
InputSpec = Mapping[str, tuple[tuple[Any, ...], np.dtype]]


def _conform(arrays: Mapping[str, Any], spec: InputSpec, desc: str, position: int) -> Inputs:
    """The arrays of one mapping checked against the inputs and cast to their dtypes."""
    names = [str(k) for k in arrays if str(k) != "y"]
    missing = [n for n in spec if n not in names]
    unknown = [n for n in names if n not in spec]
    if missing or unknown:
        raise CalibrationDataError(
            f"{desc}: the network's inputs are {', '.join(spec)}; the data "
            f"{'lacks ' + ', '.join(missing) if missing else ''}{' and ' if missing and unknown else ''}"
            f"{'has unknown key(s) ' + ', '.join(unknown) if unknown else ''} (keys found: {', '.join(names)}). "
            "Key each input's array by the input's name, plus 'y' for labels."
        )
    out = {}
    for name, (shape, dtype) in spec.items():
        x = to_numpy(arrays[name])
        if x.dtype.kind not in "biuf":
            raise CalibrationDataError(f"{desc}: input {name!r} has dtype {x.dtype}, not numbers")
        if shape and (
            x.ndim != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(shape[1:], x.shape[1:]))
        ):
            raise CalibrationDataError(
                f"{desc}, from sample {position} on: input {name!r} is given as an array of shape "
                f"{fmt_shape(x.shape)} (samples first), and the network takes {fmt_shape(shape)} (batch axis first)"
            )
        x = cast_checked(x, dtype, f"{desc}: input {name!r}")
        if x.dtype.kind == "f":
            check_finite(x, position, f"{desc}, input {name!r}")
        out[name] = x
    try:
        return Inputs(out)
    except ValueError as exc:
        raise CalibrationDataError(f"{desc}: {exc}; every input needs one row per sample") from None


class _MultiArraySource:
    """In-memory arrays, one per input (and optional labels)."""

    def __init__(self, x: Inputs, y: np.ndarray | None, desc: str):
        self._x, self._y, self.desc = x, y, desc
        if y is not None and len(y) != len(x):
            raise CalibrationDataError(f"{desc}: {len(y)} labels for {len(x)} samples; give one label per sample")

    @property
    def num_samples(self) -> int:
        return len(self._x)

    @property
    def has_labels(self) -> bool:
        return self._y is not None

    def batches(self, batch_size: int) -> Iterator[Batch]:
        bs = check_batch_size(batch_size)
        for start in range(0, len(self._x), bs):
            stop = min(start + bs, len(self._x))
            y = None if self._y is None else self._y[start:stop]
            yield Batch(x=self._x[start:stop], y=y, index=np.arange(start, stop, dtype=np.int64))


class _MultiStreamSource:
    """An iterable of mappings, one batch each: re-iterable unless it is an iterator."""

    def __init__(self, data: Iterable, spec: InputSpec, desc: str):
        self._data, self._spec, self.desc = data, spec, desc
        self._used = False

    @property
    def num_samples(self) -> int | None:
        if isinstance(self._data, (list, tuple)):
            return sum(len(next(iter(v for k, v in m.items() if k != "y"))) for m in self._data)
        return None

    @property
    def has_labels(self) -> bool:
        first = self._data[0] if isinstance(self._data, (list, tuple)) and self._data else None
        return first is not None and "y" in first

    def batches(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)  # each mapping is one batch, as given
        it = iter(self._data)
        if it is self._data:
            if self._used:
                raise CalibrationDataError(f"{self.desc} is an iterator, read once already; pass a list or a function")
            self._used = True
        start = 0
        for item in it:
            if not isinstance(item, Mapping):
                raise CalibrationDataError(
                    f"{self.desc}: item {start} is a {type(item).__name__}; a network with inputs "
                    f"{', '.join(self._spec)} takes mappings {{input name: array}}"
                )
            x = _conform(item, self._spec, self.desc, start)
            y = to_numpy(item["y"]) if "y" in item else None
            yield Batch(x=x, y=y, index=np.arange(start, start + len(x), dtype=np.int64))
            start += len(x)


def multi_input_source(data: Any, spec: InputSpec, labels: Any = None):
    """A :class:`~quantscope.calibrate.data.DataSource` of :class:`~quantscope.network.Inputs`
    batches for a network with several inputs (``spec``: name -> (shape, dtype)).

    Raises:
        CalibrationDataError: data of another form, a missing or unknown input name, a
            shape or dtype that does not fit.
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        desc = f"data file {path}"
        if path.suffix.lower() != ".npz" or not path.is_file():
            raise CalibrationDataError(
                f"{desc}: a network with several inputs ({', '.join(spec)}) reads a .npz file holding one "
                "array per input name (and optional labels 'y')"
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k]) for k in z.files}
        except NUMPY_FILE_ERRORS as e:
            raise CalibrationDataError(unreadable(desc, ".npz", e)) from None
        return _MultiArraySource(_conform(arrays, spec, desc, 0), _labels(arrays.get("y"), labels, desc), desc)
    if isinstance(data, Mapping):
        desc = "data (mapping)"
        return _MultiArraySource(_conform(data, spec, desc, 0), _labels(data.get("y"), labels, desc), desc)
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, np.ndarray)):
        return _MultiStreamSource(data, spec, f"data ({type(data).__name__})")
    raise CalibrationDataError(
        f"a network with several inputs ({', '.join(spec)}) takes its data as a mapping {{input name: array}} "
        f"(plus 'y' for labels), a .npz file of such arrays, or an iterable of such mappings; got "
        f"{type(data).__name__}"
    )


def _labels(in_data: Any, given: Any, desc: str) -> np.ndarray | None:
    if in_data is not None and given is not None:
        raise CalibrationDataError(f"{desc} holds labels 'y' and labels were given too; pass only one of them")
    y = in_data if in_data is not None else given
    return None if y is None else to_numpy(y)
