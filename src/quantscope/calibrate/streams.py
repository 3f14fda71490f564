"""Samples that come as a stream (lists, generators, DataLoaders, any iterable),
re-chunked to the requested batch size, and the wrapper that checks a user's own
:class:`~quantscope.calibrate.data.DataSource`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import CalibrationDataError
from .data import (
    Batch,
    Conformer,
    DataSource,
    check_batch_size,
    check_labels_len,
    empty_error,
    is_arraylike,
    to_numpy,
)

__all__ = ["CheckedSource", "StreamSource"]


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

    def is_empty(self) -> bool:
        """Whether the stream yields nothing (its first item is looked at and kept)."""
        return self._peek() is _END

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
                check_labels_len(y, n, f"{self.desc}, at sample {pos}")
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
            check_labels_len(labels, n, self.desc)

    @property
    def num_samples(self) -> int | None:
        return self._inner.num_samples

    @property
    def inner(self) -> DataSource:
        """The source it checks."""
        return self._inner

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
