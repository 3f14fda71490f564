"""Samples held in an array: :class:`ArraySource`, read by any range of samples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import CalibrationDataError
from .data import (
    Batch,
    Conformer,
    ConformPlan,
    check_batch_size,
    check_labels_len,
    empty_error,
    to_numpy,
)

__all__ = ["ArraySource"]


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
            check_labels_len(y, x.shape[0], self.desc)
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
        plan = ConformPlan(transpose=self._plan.transpose, insert_axis=self._plan.insert_axis)
        for start in range(lo, hi, bs):
            stop = min(start + bs, hi)
            x = self._conformer.apply(plan, np.asarray(self._x[start:stop]), offset + start)
            y = None if self._y is None else self._y[start:stop]
            yield Batch(x=x, y=y, index=np.arange(offset + start, offset + stop, dtype=np.int64))

    def __repr__(self) -> str:
        return f"<data source: {self.desc}, {self.num_samples} samples, labels={self.has_labels}>"
