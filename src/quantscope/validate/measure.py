"""One batch of a validation, measured: the float network's every layer output and the
int8 emulation side by side, and each layer's running sums (:class:`LayerError`).

:class:`BatchValidator` makes a batch's part wherever the batch runs (this process
or a Dask worker); the parts are added in data order by the caller."""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._compiled import kernel, prepare
from ..calibrate.collector import BoundOutputs, create_session, run_checked
from ..calibrate.data import Batch
from ..errors import NonFiniteActivationError
from ..network.network import Inputs, batch_pieces
from ..quantize.numerics import Rounding, Saturation
from ..quantize.plan import QParams, QuantPlan
from ..simulate.engine import IntTensor, Kernels, Simulator
from ..simulate.fast import SESSION_THREADS

__all__ = [
    "BATCH_BYTES",
    "BatchPart",
    "BatchValidator",
    "LayerError",
    "Totals",
    "batch_pieces_of",
    "sample_bytes",
    "samples_at_once",
]


@dataclass
class LayerError:
    """Running sums for one layer's diagnostics (all over the validation data)."""

    signal: float = 0.0  # sum f^2 of the float network's output
    noise: float = 0.0  # sum (f - int8 network's dequantized output)^2
    grid_noise: float = 0.0  # sum (f - dequantize(quantize(f)))^2: the output grid alone
    count: int = 0
    saturated: int = 0  # float values beyond the int8 range (they saturate)
    flushed: int = 0  # nonzero float values that quantize to zero

    def update(
        self,
        f: np.ndarray,
        q: Any,
        qp: QParams | None,
        plan: QuantPlan,
        scratch: _Scratch | None = None,
        layer: str = "",
    ) -> None:
        """Add a batch: ``f`` the float network's output, ``q`` the int8 network's output
        (an :class:`~quantscope.simulate.engine.IntTensor`, or real values of ``f``'s
        shape; None for nothing to compare), ``qp`` the parameters of the output's
        integer grid (None for a float layer).

        Computed in one compiled pass over the values where numba is installed
        (:meth:`_compiled`), else piece by piece (:data:`_PIECE` values at a time) in
        float64 in small reused buffers (``scratch``): each piece stays in the
        processor's cache, and no copy of a whole activation is made. Either way the
        sums are accumulated in a fixed order, so the same data gives the same numbers.

        Raises:
            NonFiniteActivationError: ``f`` holds NaN (``layer`` names it).
        """
        scratch = scratch or _Scratch()
        ints = isinstance(q, IntTensor)
        if ints and q.qp.axis is not None:  # per-channel integers: real values, whole
            q, ints = q.dequantize(), False
        f = np.ascontiguousarray(f).reshape(-1)
        qv = None if q is None else np.ascontiguousarray(q.q if ints else q).reshape(-1)
        if qv is not None and qv.size != f.size:
            raise ValueError(f"layer {layer!r}: int8 output of {qv.size} values against {f.size} float ones")
        qscale = float(q.qp.scale) if ints else None
        qzero = int(q.qp.zero_point) if ints else 0
        grid = _Grid(qp, plan, f.dtype) if qp is not None and qp.axis is None else None
        if self._compiled(f, qv, ints, qscale, qzero, grid, layer):
            return
        for start in range(0, f.size, _PIECE):
            fc = f[start : start + _PIECE]
            x, d, a = scratch.take(fc.size)
            np.copyto(x, fc)
            signal = float(np.einsum("i,i->", x, x))
            if math.isnan(signal):
                raise NonFiniteActivationError(
                    f"NaN in the float network's output of layer {layer!r} during validation; check the "
                    "input data and that layer's weights.",
                    layer=layer,
                )
            qc = None if qv is None else qv[start : start + _PIECE]
            if math.isinf(signal):
                # -inf/+inf in the float output (an attention mask's fill): compare where it is finite
                keep = np.isfinite(x)
                np.copyto(x, 0.0, where=~keep)
                if qc is not None:
                    qc = np.where(keep, qc if not ints else (qc.astype(np.float64) - qzero) * qscale, 0.0)
                    ints_here = False
                fc = x
                signal = float(np.einsum("i,i->", x, x))
            else:
                ints_here = ints
            self.signal += signal
            if qc is not None:
                np.copyto(d, qc)
                if ints_here:  # the real values of the integers (eq. (10))
                    if qzero:
                        np.subtract(d, qzero, out=d)
                    np.multiply(d, qscale, out=d)
                np.subtract(x, d, out=d)
                self.noise += float(np.einsum("i,i->", d, d))
            if grid is not None:
                grid.add(self, fc, x, d, a)
        self.count += f.size

    def _compiled(self, f, qv, ints: bool, qscale, qzero: int, grid: _Grid | None, layer: str) -> bool:
        """:meth:`update` in one compiled pass (``validate/_numba_diagnostics.py``) where
        numba is installed, the arrays are of the kernel's types and the grid rounds to
        nearest: True when done. The same counts as the numpy path, and the same sums
        but for the order of their additions (within about 1e-11 relative). An output
        with NaN raises; one with an infinity (an attention mask's fill) is left to the
        numpy path, which compares where it is finite."""
        if grid is not None and not grid.nearest:
            return False
        if f.dtype not in _KERNEL_FLOATS or (qv is not None and qv.dtype not in _KERNEL_VALUES):
            return False
        sums = kernel(_DIAGNOSTICS, "layer_sums")
        if sums is None:
            return False
        mode = 0 if grid is None else (1 if grid.float32 and f.dtype == np.float32 else 2)
        signal, noise, grid_noise, saturated, flushed = sums(
            f,
            f if qv is None else qv,
            qv is not None,
            ints,
            1.0 if qscale is None else qscale,
            float(qzero),
            mode,
            1.0 if grid is None else grid.s,
            0.0 if grid is None else float(grid.lo),
            0.0 if grid is None else float(grid.hi),
        )
        if math.isnan(signal):
            raise NonFiniteActivationError(
                f"NaN in the float network's output of layer {layer!r} during validation; check the "
                "input data and that layer's weights.",
                layer=layer,
            )
        if math.isinf(signal):
            return False
        self.signal += signal
        self.noise += noise
        self.grid_noise += grid_noise
        self.saturated += int(saturated)
        self.flushed += int(flushed)
        self.count += f.size
        return True

    def merge(self, other: LayerError) -> None:
        """Add ``other``'s sums (another batch's) to these."""
        self.signal += other.signal
        self.noise += other.noise
        self.grid_noise += other.grid_noise
        self.count += other.count
        self.saturated += other.saturated
        self.flushed += other.flushed


#: Values per piece of :meth:`LayerError.update` (2 MB of float64: stays in cache).
_PIECE = 1 << 18
#: The compiled diagnostics' module (loaded by quantscope._compiled).
_DIAGNOSTICS = "quantscope.validate._numba_diagnostics"
#: Array types the compiled diagnostics take (others run the numpy path).
_KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_KERNEL_VALUES = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64))


class _Grid:
    """The output grid's share of :meth:`LayerError.update`: values that saturate or
    flush to zero, and the squared error of quantizing the float output alone."""

    def __init__(self, qp: QParams, plan: QuantPlan, dtype: np.dtype):
        self.qp, self.plan = qp, plan
        self.s, z = float(qp.scale), int(qp.zero_point)
        self.lo, self.hi = qp.qmin - z, qp.qmax - z
        self.nearest = (
            plan.rounding in (Rounding.HALF_AWAY, Rounding.HALF_EVEN) and plan.saturation is Saturation.SATURATE
        )
        # power of two: the same comparisons and grid in float32, half the bytes (the
        # thresholds (k + 1/2) * 2**e are exact float32 numbers, and so are f * 2**-e
        # rounded to an integer and scaled back)
        self.float32 = self.nearest and qp.exponent is not None and dtype == np.float32

    def add(self, err: LayerError, fc: np.ndarray, x: np.ndarray, d: np.ndarray, a: np.ndarray) -> None:
        """Add piece ``fc`` (float values as given; ``x`` the same in float64); ``d`` and
        ``a`` are scratch (float64 and float32, ``fc``'s size)."""
        s, lo, hi = self.s, self.lo, self.hi
        if self.float32 and fc.dtype == np.float32:
            # t = f / s on the integer grid, in float32: exact (a power of two) but where
            # it underflows (|t| far below 1/2 then, as the exact quotient) or overflows
            # (+-Inf, beyond the range as the exact quotient), so the comparisons with
            # the half-integer thresholds are those of f with (k + 1/2) * s
            t = np.multiply(fc, np.float32(1.0 / s), out=a)
            saturated = int(np.count_nonzero(t > np.float32(hi + 0.5))) + int(
                np.count_nonzero(t < np.float32(lo - 0.5))
            )
            err.saturated += saturated
            # nonzero values in (-1/2, 1/2)
            err.flushed += (
                int(np.count_nonzero(t < np.float32(0.5)))
                - int(np.count_nonzero(t <= np.float32(-0.5)))
                - int(np.count_nonzero(fc == 0))
            )
            g = np.multiply(np.clip(np.rint(t, out=t), np.float32(lo), np.float32(hi), out=t), np.float32(s), out=t)
            if saturated:
                np.copyto(d, g)
                g = np.subtract(x, d, out=d)
            else:
                # nothing saturates: f - g = (t - k) * s with |t - k| <= 1/2 holds in 24
                # bits, so the float32 difference is exact, the float64 one's value
                np.subtract(fc, g, out=g)
                np.copyto(d, g)
                g = d
        else:
            t = np.divide(x, s, out=d)  # f on the integer grid, as quantize divides
            err.saturated += int(np.count_nonzero(t > hi + 0.5)) + int(np.count_nonzero(t < lo - 0.5))
            err.flushed += int(np.count_nonzero((np.abs(t) < 0.5) & (x != 0)))
            if self.nearest:
                # Both round to the nearest integer and differ only in which neighbour a
                # tie takes, at the same distance 1/2: |f - g| is the same value either
                # way, so clip(rint(t), lo, hi) * s gives the same squared errors.
                g = np.multiply(np.clip(np.rint(t, out=t), lo, hi, out=t), s, out=t)
            else:
                g = self.qp.dequantize(self.qp.quantize(x, self.plan.rounding, self.plan.saturation))
            np.subtract(x, g, out=g)
        err.grid_noise += float(np.einsum("i,i->", g, g))


class _Scratch:
    """Three buffers of :data:`_PIECE` values (two float64, one float32) reused by
    :meth:`LayerError.update` for every layer and batch."""

    def __init__(self) -> None:
        self._x = np.empty(_PIECE)
        self._d = np.empty(_PIECE)
        self._a = np.empty(_PIECE, np.float32)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._x[:n], self._d[:n], self._a[:n]


@dataclass
class BatchPart:
    """What one batch adds to a validation, made where the batch runs."""

    errors: dict[str, LayerError]  # per optimized layer: this batch's sums
    float_scores: np.ndarray  # the float network's first output
    int8_scores: np.ndarray  # the int8 network's, dequantized (float64)
    labels: np.ndarray | None
    count: int


class BatchValidator:
    """Runs batches through the float network (every layer output, onnxruntime) and
    the int8 emulation of ``plan``, and measures each layer: :class:`BatchPart`.

    A second thread runs the float network, then measures each layer
    (:meth:`LayerError.update`) as soon as the emulation has computed its output; the
    emulation runs meanwhile in the calling thread (onnxruntime and numpy release the
    GIL), so the three overlap on two cores. The one measuring thread measures the
    layers one after another, each with the same arithmetic as in one thread, so the
    sums are the same bit for bit.

    ``threads``: onnxruntime threads per operator of the float network and of the
    emulation's layer sessions each (0: half the cores this process may use, at least
    one: the two run side by side, and sessions with a thread per core each would wait
    on each other's threads; on two cores this makes validation 10-20 % faster)."""

    def __init__(self, plan: QuantPlan, kernels: str | Kernels = Kernels.FAST, threads: int = 0):
        network = self.network = plan.network
        prepare(_DIAGNOSTICS, "layer_sums")  # numba loads while the first batch's float network runs
        self.plan = plan
        self.sim = Simulator(plan, kernels=kernels)
        self.sim.output = network.judged_output  # the output the metrics judge
        self.threads = threads = int(threads) or max(1, _usable_cores() // 2)
        names = [layer.output for layer in network.layers if layer.kind != "input"]
        names += [name for name in network.output_names if name not in names]  # an int64 output
        session = create_session(network.session_model(names), spinning=False, threads=threads)
        self.float_outputs = _FloatOutputs(session, network, names)
        self.scratch = _Scratch()  # the measuring thread's buffers
        self._measuring = ThreadPoolExecutor(1, thread_name_prefix="quantscope-measure")
        self._outputs = {layer.name: layer.output for layer in network.layers}

    def shapes_of(self, batch: Any) -> dict[str, tuple]:
        """Every layer output's shape for one sample of ``batch``'s input sizes (the
        float network run on its first sample, once per input size): what a sequence
        length or an image size the model leaves free makes of each layer."""
        x = batch.x
        arrays = x.arrays if isinstance(x, Inputs) else {self.network.input_name: x}
        key = tuple((name, np.shape(a)[1:]) for name, a in arrays.items())  # no cast per batch: a lookup
        known = self.__dict__.setdefault("_shapes", {})
        if key not in known:
            feeds = self.network.feeds(x[:1])
            one = {name: a[:1] for name, a in feeds.items()}
            outs = self.float_outputs(Inputs(one) if len(one) > 1 else one[self.network.input_name])
            known[key] = {name: (1, *np.shape(value)[1:]) for name, value in outs.items() if np.ndim(value)}
            known[key].update({name: (1, *a.shape[1:]) for name, a in feeds.items()})
        return known[key]

    def __call__(self, batch: Any) -> BatchPart:
        network, plan = self.network, self.plan
        feeds = network.feeds(batch.x)
        x = Inputs(feeds) if len(feeds) > 1 else feeds[network.input_name]
        parts: dict[str, LayerError] = {}
        pending: dict[str, Future] = {}

        def fetch() -> dict[str, np.ndarray]:
            outs = self.float_outputs(x)
            outs.update(feeds)
            return outs

        # the float network first in the measuring thread, beside the emulation here;
        # then each layer's measure, queued behind it as the emulation announces them
        fetched = self._measuring.submit(fetch)

        def measure(name: str, value: Any) -> None:
            if name in parts:
                return
            qp = value.qp if isinstance(value, IntTensor) else None
            parts[name] = e = LayerError()
            pending[name] = self._measuring.submit(
                lambda: e.update(fetched.result()[self._outputs[name]], value, qp, plan, self.scratch, name)
            )

        token = SESSION_THREADS.set(self.threads)  # the emulation's layer sessions, made on first use
        try:
            result, layers = self.sim.run(x, collect=True, on_layer=measure)
            for layer in network.layers:  # any layer the emulation did not announce
                measure(layer.name, layers[layer.name])
        except BaseException:
            wait([fetched])
            if fetched.exception() is not None:  # the float network's error comes first, as it runs first
                raise fetched.exception() from None
            raise
        finally:
            SESSION_THREADS.reset(token)
            wait([fetched, *pending.values()])  # the float buffers and the scratch are reused by the next batch
        outs = fetched.result()
        for layer in network.layers:  # the first layer in network order that failed raises
            pending[layer.name].result()
        errors = {layer.name: parts[layer.name] for layer in network.layers}
        return BatchPart(
            errors=errors,
            float_scores=np.array(outs[network.judged_output]),  # a copy: the buffers are reused
            int8_scores=result,
            labels=None if batch.y is None else np.asarray(batch.y),
            count=len(x),
        )


#: Largest size (bytes) of what validation holds for the samples it measures at once:
#: every layer's output of the float network and of the int8 emulation. A batch whose
#: samples would hold more is measured in pieces (:func:`samples_at_once`).
BATCH_BYTES = 1 << 30


def sample_bytes(plan: QuantPlan, shapes: dict[str, tuple] | None = None) -> int | None:
    """Bytes validation holds per sample measured, or None when a layer's shape is not
    known but for the batch axis (a sequence length, a dynamic image size); ``shapes``:
    value shapes for one sample of a batch (:meth:`BatchValidator.shapes_of`), used where the
    network's own are not known.

    Every layer's output twice: the float network's (float32, 4 bytes a value) and the
    emulation's (1 byte for an int8 activation, 4 for a value it keeps in float); twice
    that for a model with a fixed batch, whose pieces are joined into the batch's
    outputs."""
    network = plan.network
    per_sample = 0
    for layer in network.layers:
        shape = network.value_shape(layer.output)
        if shapes and (shape is None or None in shape[1:]):
            shape = shapes.get(layer.output, shape)
        if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape[1:]):
            return None
        values = int(np.prod(shape[1:], dtype=np.int64))
        per_sample += values * (4 + (1 if layer.output in plan.activations else 4))
    return per_sample * (2 if network.fixed_batch is not None else 1)


def samples_at_once(plan: QuantPlan, shapes: dict[str, tuple] | None = None) -> int | None:
    """How many samples validation measures at once: as many as keep
    :func:`sample_bytes` within :data:`BATCH_BYTES` (at least 1; a multiple of a fixed
    batch), or None when that size is not known: batches are then measured whole.
    ``shapes``: every value's shape for one sample of a batch
    (:meth:`BatchValidator.shapes_of`), where the model leaves sizes free."""
    per_sample = sample_bytes(plan, shapes)
    if per_sample is None:
        return None
    samples = max(1, BATCH_BYTES // max(per_sample, 1))
    fixed = plan.network.fixed_batch
    if fixed is not None:
        samples = max(fixed, samples // fixed * fixed)
    return int(samples)


def batch_pieces_of(batch: Batch, samples: int | None) -> list[Batch]:
    """``batch`` in consecutive pieces of at most ``samples`` samples from its start
    (the batch itself when it is no larger, or ``samples`` is None)."""
    if samples is None or len(batch) <= samples:
        return [batch]
    return [
        Batch(
            x=batch.x[start : start + samples],
            y=None if batch.y is None else batch.y[start : start + samples],
            index=batch.index[start : start + samples],
        )
        for start in range(0, len(batch), samples)
    ]


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Totals:
    """The batches' parts added in data order (so any split of the data into shards
    gives the same sums, bit for bit)."""

    def __init__(self, network) -> None:
        self.errors = {layer.name: LayerError() for layer in network.layers}
        self.float_scores: list[np.ndarray] = []
        self.int8_scores: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.labelled = True
        self.count = 0

    def add(self, part: BatchPart) -> None:
        for name, e in part.errors.items():
            self.errors[name].merge(e)
        self.float_scores.append(part.float_scores)
        self.int8_scores.append(part.int8_scores)
        if part.labels is None:
            self.labelled = False
        else:
            self.labels.append(part.labels)
        self.count += part.count


class _FloatOutputs:
    """The float network's every layer output for a batch, into buffers reused from
    batch to batch (:class:`~quantscope.calibrate.collector.BoundOutputs`) when every
    shape is known and float32; overwritten by the next batch of the same size."""

    def __init__(self, session, network, names: list[str]):
        self.session, self.network, self.names = session, network, names
        shapes = [network.value_shape(name) for name in names]
        floats = all(o.type == "tensor(float)" for o in session.get_outputs())
        self._bound = (
            BoundOutputs(session, names, shapes, keep=1)
            if floats and network.fixed_batch is None and BoundOutputs.possible(shapes)
            else None
        )

    def __call__(self, x) -> dict[str, np.ndarray]:
        if self._bound is None:
            return _run_float(self.session, self.network, self.names, x)
        return dict(zip(self.names, self._bound(self.network.feeds(x))))


def _run_float(session, network, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The float network's outputs ``names`` for batch ``x``; a model exported with a
    fixed batch runs it piece by piece."""
    if network.fixed_batch is None or len(x) == network.fixed_batch:
        return dict(zip(names, run_checked(lambda: session.run(names, network.feeds(x)))))
    parts = [
        [
            out[:count] if count < network.fixed_batch else out
            for out in run_checked(lambda piece=piece: session.run(names, network.feeds(piece)))
        ]
        for piece, count in batch_pieces(x, network.fixed_batch, fixed=True)
    ]
    return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}
