"""The integer arithmetic that defines quantscope's int8 results.

Every function here is plain numpy, written to be obviously correct rather than
fast; faster paths elsewhere must agree with it bit for bit.
The equations cited as "eq. (n)" are those of ``docs/int8.md``.

Conventions used throughout:

* A quantized tensor ``q`` with scale ``s`` and zero point ``z`` stands for the
  real values ``(q - z) * s`` (eq. (10)). The power-of-two scheme has ``z = 0`` and
  ``s = 2**e``; ``e`` is called the tensor's *exponent*.
* Rounding and saturation are always named (:class:`Rounding`,
  :class:`Saturation`); nothing rounds implicitly.
* Functions on integers (:func:`shift_round`, :func:`divide_round`,
  :func:`requantize_pow2`) use integer operations only, never floats.
* Integer results come back in the *storage* type of their bit width
  (:func:`int_dtype`: ``int8`` for 8 bits, ``int32`` for 32 bits...), except
  :func:`shift_round` and :func:`divide_round`, which return ``int64``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from typing import Any

import numpy as np

from ..calibrate.ranges import RangeMethod
from ..errors import ConfigurationError, QuantscopeError

__all__ = [
    "AccumulatorOverflowError",
    "ExponentMethod",
    "FloatScale",
    "Overflow",
    "PowerOfTwo",
    "Rounding",
    "Saturation",
    "check_accumulator",
    "cpu_int8_saturates",
    "dequantize",
    "divide_round",
    "int_dtype",
    "int_range",
    "pow2_exponent",
    "quantize",
    "quantize_bias_pow2",
    "requantize_pow2",
    "requantize_scale",
    "round_values",
    "saturate",
    "shift_round",
]

#: Widest integer type the quantized tensors may use (bits).
MAX_BITS = 32
#: Largest right or left shift :func:`shift_round` accepts (bits).
MAX_SHIFT = 62


class Rounding(enum.Enum):
    """How a real value is rounded to an integer (eq. (2a)-(2d))."""

    #: Round to nearest, ties away from zero: 2.5 -> 3, -2.5 -> -3 (MATLAB ``round``).
    HALF_AWAY = "half_away"
    #: Round to nearest, ties to even: 2.5 -> 2, -2.5 -> -2 (``np.rint``, onnxruntime).
    HALF_EVEN = "half_even"
    #: Round toward minus infinity: 2.7 -> 2, -2.5 -> -3 (an arithmetic right shift).
    FLOOR = "floor"
    #: Round toward zero (truncate): 2.7 -> 2, -2.7 -> -2.
    ZERO = "zero"


class Saturation(enum.Enum):
    """What happens to an integer outside the range of its type (eq. (2e))."""

    #: Clamp to the nearest representable value: 200 -> 127, -200 -> -128 for int8.
    SATURATE = "saturate"
    #: Two's-complement wrap-around (keep the low bits): 128 -> -128, 256 -> 0 for int8.
    WRAP = "wrap"


class Overflow(enum.Enum):
    """What an integer kernel does when its accumulator leaves the int32 range (eq. (4b))."""

    #: Raise :class:`AccumulatorOverflowError` (the default: an int8 network never should).
    RAISE = "raise"
    #: Wrap to int32 as two's-complement hardware does; the value stays an ``int64``.
    WRAP = "wrap"


class AccumulatorOverflowError(QuantscopeError, OverflowError):
    """An integer accumulator left the range it is defined on (int32, or int64 for shifts)."""


# --------------------------------------------------------------------------- types


def _check_bits(bits: Any, what: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ConfigurationError(f"{what} must be an integer between 2 and {MAX_BITS}, got {bits!r}")
    bits = int(bits)
    if not 2 <= bits <= MAX_BITS:
        raise ConfigurationError(f"{what} must be between 2 and {MAX_BITS}, got {bits}")
    return bits


def _check_rounding(rounding: Any) -> Rounding:
    if not isinstance(rounding, Rounding):
        raise ConfigurationError(f"rounding must be a quantscope Rounding (e.g. Rounding.HALF_AWAY), got {rounding!r}")
    return rounding


def _check_saturation(saturation: Any) -> Saturation:
    if not isinstance(saturation, Saturation):
        raise ConfigurationError(
            f"saturation must be a quantscope Saturation (e.g. Saturation.SATURATE), got {saturation!r}"
        )
    return saturation


def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """The inclusive range ``(lo, hi)`` of a ``bits``-bit integer: (-128, 127) for signed 8 bits."""
    bits = _check_bits(bits)
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def int_dtype(bits: int, signed: bool = True) -> np.dtype:
    """The numpy storage type of a ``bits``-bit integer: the narrowest of 8, 16 and 32 bits."""
    bits = _check_bits(bits)
    width = 8 if bits <= 8 else 16 if bits <= 16 else 32
    return np.dtype(f"{'int' if signed else 'uint'}{width}")


def _as_int64(x: Any, what: str) -> np.ndarray:
    """``x`` as an int64 array; floats are refused (the integer functions never round silently)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{what} must hold integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise AccumulatorOverflowError(f"{what} holds uint64 values beyond the int64 range")
    return arr.astype(np.int64)


def _broadcast_param(p: Any, shape: tuple[int, ...], axis: int | None, what: str) -> np.ndarray:
    """A scale or zero point shaped to broadcast against a tensor of ``shape``.

    ``axis=None``: ``p`` must broadcast as it is (a scalar, usually). With an axis,
    ``p`` is a scalar or a 1-D array of one value per index along that axis
    (per-channel).
    """
    arr = np.asarray(p)
    if axis is None or arr.ndim == 0:
        return arr
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise ConfigurationError(f"axis {axis} is out of range for a {ndim}-D tensor")
    if arr.ndim != 1 or arr.shape[0] != shape[axis]:
        raise ConfigurationError(
            f"{what} must hold one value per index along axis {axis} ({shape[axis]}), got shape {arr.shape}"
        )
    out_shape = [1] * ndim
    out_shape[axis % ndim] = arr.shape[0]
    return arr.reshape(out_shape)


# ------------------------------------------------------------------ rounding (eq. 2)


def round_values(x: Any, rounding: Rounding, out: np.ndarray | None = None) -> np.ndarray:
    """Round every element of ``x`` to an integer value with the named rounding, eq. (2a)-(2d).

    Float in (any shape), float64 out, same shape; with ``out`` (a float array of
    ``x``'s shape, ``x`` itself allowed) the result is written there in ``out``'s
    dtype, with no other temporaries than one of ``x``'s size. Exact: no intermediate
    step rounds (``x - floor(x)`` is exact in binary floating point), so
    0.49999999999999994 rounds to 0 with ``HALF_AWAY``, not to 1 as
    ``floor(x + 0.5)`` would give. NaN stays NaN, infinities stay infinite.

    This is the one definition of each rounding on real values; the integer
    requantization (eq. (5)) rounds quotients in integers (:func:`shift_round`).
    """
    rounding = _check_rounding(rounding)
    xf = np.asarray(x, dtype=np.float64) if out is None else np.asarray(x)
    if out is None:
        out = np.empty_like(xf)
    if rounding is Rounding.HALF_EVEN:
        return np.rint(xf, out=out)
    if rounding is Rounding.FLOOR:
        return np.floor(xf, out=out)
    if rounding is Rounding.ZERO:
        return np.trunc(xf, out=out)
    # HALF_AWAY, eq. (2a): |x| rounded half up, sign restored.
    a = np.abs(xf)
    fl = np.floor(a)
    with np.errstate(invalid="ignore"):  # Inf - Inf
        a -= fl
    fl += a >= 0.5
    return np.copysign(fl, xf, out=out)


def saturate(x: Any, bits: int, signed: bool = True, mode: Saturation = Saturation.SATURATE) -> np.ndarray:
    """Bring integer values into the ``bits``-bit range, eq. (2e).

    ``x``: integers, or floats holding integer values (any shape). The result
    keeps ``x``'s dtype (``WRAP`` of integers returns int64 where the wrapped
    range does not fit that dtype); the caller casts to :func:`int_dtype`. ``SATURATE`` clamps
    to ``int_range(bits, signed)``; ``WRAP`` keeps the low ``bits`` bits as two's
    complement does (floats must then be finite).
    """
    mode = _check_saturation(mode)
    lo, hi = int_range(bits, signed)
    arr = np.asarray(x)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if mode is Saturation.SATURATE:
        if arr.dtype.kind in "iu":
            # clamp in int64 so that bounds wider than the input type cannot overflow;
            # clamping only moves values toward 0's side of the range, so they fit back
            return np.clip(arr.astype(np.int64), lo, hi).astype(arr.dtype)
        return np.clip(arr, lo, hi)
    # WRAP
    span = 1 << bits
    if arr.dtype.kind in "iu":
        low = _as_int64(arr, "saturate input") & (span - 1)  # low bits, in [0, 2**bits)
        if signed:
            low = np.where(low > hi, low - span, low)
        return low.astype(arr.dtype) if _fits(arr.dtype, lo, hi) else low
    if not np.all(np.isfinite(arr)):
        raise ValueError("saturate: WRAP needs finite values; an infinity or NaN has no low bits")
    low = np.mod(arr, float(span))  # exact for integer-valued floats
    if signed:
        low = np.where(low > hi, low - span, low)
    return low


def _fits(dtype: np.dtype, lo: int, hi: int) -> bool:
    info = np.iinfo(dtype)
    return info.min <= lo and hi <= info.max


# ---------------------------------------------------------------- exponent (eq. 1)


def pow2_exponent(max_abs: float, word_length: int = 8) -> int:
    """The power-of-two exponent ``e`` of a tensor whose largest magnitude is ``max_abs``, eq. (1).

    ``e = floor(log2(max_abs)) - (word_length - 2)``: MATLAB's choice, which puts
    ``max_abs / 2**e`` in ``[2**(WL-2), 2**(WL-1))`` = [64, 128) for WL = 8, so the
    largest value uses the top bit (and saturates to 127 when it rounds to 128).
    ``floor(log2(.))`` is read off the float's binary exponent (``math.frexp``),
    hence exact, also at powers of two: 1.0 -> -6, 0.9 -> -7, 127 * 2**-6 -> -6.

    ``max_abs == 0`` (an all-zero tensor): by convention ``e = -(WL - 2)``, the
    exponent of a unit range (the value for ``max_abs = 1``). Any exponent
    represents zeros exactly; this one keeps a later non-zero tensor at a
    neutral precision (2**-6 for WL = 8).

    Raises :class:`ConfigurationError` for a negative or non-finite ``max_abs``.
    """
    word_length = _check_bits(word_length, "word_length")
    try:
        m = float(max_abs)
    except (TypeError, ValueError):
        raise ConfigurationError(f"max_abs must be a number, got {max_abs!r}") from None
    if not math.isfinite(m) or m < 0:
        raise ConfigurationError(
            f"max_abs must be finite and >= 0 to choose an exponent, got {m!r}; "
            "check the collected ranges for NaN or Inf activations"
        )
    if m == 0.0:
        return -(word_length - 2)
    _, k = math.frexp(m)  # m = f * 2**k with f in [0.5, 1): floor(log2 m) = k - 1
    return (k - 1) - (word_length - 2)


# ------------------------------------------------------- quantize / dequantize (eq. 2, 10)


def quantize(
    x: Any,
    scale: Any,
    zero_point: Any = 0,
    bits: int = 8,
    rounding: Rounding = Rounding.HALF_AWAY,
    saturation: Saturation = Saturation.SATURATE,
    *,
    signed: bool = True,
    axis: int | None = None,
) -> np.ndarray:
    """Quantize real values: ``q = sat(R(x / scale) + zero_point)``, eq. (2).

    ``x``: real values, any shape (float32 or float64; computed in float64).
    ``scale``: positive, a scalar or, with ``axis``, one per index along ``axis``
    (per-channel). The power-of-two scheme passes ``scale = 2.0**e``, for which
    ``x / scale`` is exact. ``zero_point``: integer(s) in the target range, shaped
    like ``scale``. Returns :func:`int_dtype` ``(bits, signed)``: int8 by default.

    Values too small become 0; values too large saturate (or wrap, if asked).
    NaN raises ``ValueError``; +-Inf saturates (``WRAP`` raises).

    The division is in float64; onnxruntime divides float32 by float32, which can
    differ by one step only where the float32 quotient lands on a tie that the
    exact quotient does not.
    """
    bits = _check_bits(bits)
    rounding = _check_rounding(rounding)
    saturation = _check_saturation(saturation)
    xf = np.asarray(x, dtype=np.float64)
    if np.isnan(xf).any():
        raise ValueError("quantize: the input holds NaN; find the layer that produced it")
    s = _broadcast_param(np.asarray(scale, dtype=np.float64), xf.shape, axis, "scale")
    if s.size == 0 or not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ConfigurationError(f"scale must be finite and > 0, got {np.asarray(scale)!r}")
    z = _zero_point(zero_point, xf.shape, axis, bits, signed)
    q = round_values(xf / s, rounding) + z
    return saturate(q, bits, signed, saturation).astype(int_dtype(bits, signed))


def _zero_point(zero_point: Any, shape: tuple[int, ...], axis: int | None, bits: int, signed: bool) -> np.ndarray:
    z = np.asarray(zero_point)
    if z.dtype.kind not in "iu":
        zf = z.astype(np.float64)
        if not np.all(np.isfinite(zf)) or not np.all(zf == np.round(zf)):
            raise ConfigurationError(f"zero_point must be an integer, got {zero_point!r}")
    z = z.astype(np.int64)
    lo, hi = int_range(bits, signed)
    if z.size and (z.min() < lo or z.max() > hi):
        raise ConfigurationError(f"zero_point {zero_point!r} is outside the {bits}-bit range [{lo}, {hi}]")
    return _broadcast_param(z, shape, axis, "zero_point")


def dequantize(q: Any, scale: Any, zero_point: Any = 0, *, axis: int | None = None) -> np.ndarray:
    """Real values of a quantized tensor: ``x = (q - zero_point) * scale``, eq. (10).

    ``q``: integers, any shape. ``scale``/``zero_point``: scalars, or with ``axis``
    one per index along ``axis``. Returns float64 (exact for power-of-two scales).
    """
    q64 = _as_int64(q, "dequantize input")
    s = _broadcast_param(np.asarray(scale, dtype=np.float64), q64.shape, axis, "scale")
    z = _broadcast_param(_as_int64(zero_point, "zero_point"), q64.shape, axis, "zero_point")
    return (q64 - z).astype(np.float64) * s


def quantize_bias_pow2(
    bias: Any,
    e_w: int,
    e_x: int,
    rounding: Rounding = Rounding.HALF_AWAY,
    saturation: Saturation = Saturation.SATURATE,
) -> np.ndarray:
    """A bias as int32 at exponent ``e_w + e_x``, the accumulator's, eq. (3).

    ``bias``: real values, shape (M,). Returns int32, shape (M,).
    """
    return quantize(bias, math.ldexp(1.0, int(e_w) + int(e_x)), 0, 32, rounding, saturation)


# ------------------------------------------------------- integer rounding (eq. 5, 6)


def _round_quotient(q: np.ndarray, r: np.ndarray, den: Any, negative: np.ndarray, rounding: Rounding) -> np.ndarray:
    """Round ``n / den`` given ``q = floor(n / den)`` and ``r = n - q*den`` in [0, den), eq. (5b).

    Integer operations only: the fraction ``r / den`` is compared with 1/2 as
    ``2r`` against ``den``.
    """
    if rounding is Rounding.FLOOR:
        return q
    if rounding is Rounding.ZERO:
        return q + ((r != 0) & negative)
    twice = 2 * r
    if rounding is Rounding.HALF_AWAY:
        # a positive tie goes up; a negative tie stays at the floor, which is away from zero
        return q + ((twice > den) | ((twice == den) & ~negative))
    # HALF_EVEN: a tie goes to the even one of q, q + 1
    return q + ((twice > den) | ((twice == den) & ((q & 1) == 1)))


def shift_round(acc: Any, shift: int, rounding: Rounding) -> np.ndarray:
    """``R(acc / 2**shift)`` in integers only: an arithmetic shift with rounding, eq. (5).

    ``acc``: integers, any shape. ``shift``: an ``int`` in [-62, 62]; a negative
    shift is an exact left shift (raises :class:`AccumulatorOverflowError` if the
    result leaves int64). Returns int64, same shape.

    With ``q = acc >> s`` (floor) and ``r = acc & (2**s - 1)`` (the bits shifted
    out), the result is ``q`` plus one where the rounding asks for it, eq. (5b).
    For ``HALF_AWAY`` this equals ``sign(a) * ((|a| + 2**(s-1)) >> s)`` and never
    overflows, even at ``acc = -2**63``.
    """
    rounding = _check_rounding(rounding)
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)):
        raise ConfigurationError(f"shift must be an int, got {shift!r}")
    shift = int(shift)
    if abs(shift) > MAX_SHIFT:
        raise ConfigurationError(f"shift must be within [-{MAX_SHIFT}, {MAX_SHIFT}], got {shift}")
    a = _as_int64(acc, "shift_round input")
    if shift == 0:
        return a
    if shift < 0:
        k = -shift
        lo, hi = -(1 << (63 - k)), (1 << (63 - k)) - 1
        if a.size and (a.min() < lo or a.max() > hi):
            raise AccumulatorOverflowError(f"shifting left by {k} bits leaves the int64 range")
        return a << k
    q = a >> shift  # arithmetic: floor(a / 2**shift)
    r = a & ((1 << shift) - 1)
    return _round_quotient(q, r, 1 << shift, a < 0, rounding)


def divide_round(num: Any, den: Any, rounding: Rounding) -> np.ndarray:
    """``R(num / den)`` in integers only, for ``den > 0``, eq. (6b).

    ``num``: integers, any shape; ``den``: positive integers broadcasting against
    ``num`` (at most 2**62). Returns int64. Used for average pooling.
    """
    rounding = _check_rounding(rounding)
    n = _as_int64(num, "divide_round numerator")
    d = _as_int64(den, "divide_round denominator")
    if d.size and (d.min() <= 0 or d.max() > (1 << MAX_SHIFT)):
        raise ValueError("divide_round: the denominator must be in [1, 2**62]")
    q = n // d  # floor division
    r = n - q * d  # in [0, d)
    return _round_quotient(q, r, d, n < 0, rounding)


# ------------------------------------------------------------- requantization (eq. 5, 9)


def check_accumulator(
    acc: Any, overflow: Overflow = Overflow.RAISE, bits: int = 32, what: str = "accumulator"
) -> np.ndarray:
    """Apply the overflow policy to an exact accumulator, eq. (4b). Returns int64.

    ``RAISE``: raise :class:`AccumulatorOverflowError` if any value is outside
    the signed ``bits``-bit range (int32). ``WRAP``: keep the low ``bits`` bits as
    two's complement, which is what a wrapping int32 accumulator holds after the
    same sum in any order (integer addition modulo 2**32 is associative).
    """
    if not isinstance(overflow, Overflow):
        raise ConfigurationError(f"overflow must be a quantscope Overflow (e.g. Overflow.RAISE), got {overflow!r}")
    a = _as_int64(acc, what)
    lo, hi = int_range(bits, True)
    if overflow is Overflow.WRAP:
        return saturate(a, bits, True, Saturation.WRAP)
    if a.size:
        amin, amax = int(a.min()), int(a.max())
        if amin < lo or amax > hi:
            n = int(np.count_nonzero((a < lo) | (a > hi)))
            raise AccumulatorOverflowError(
                f"{what}: {n} value(s) leave the int{bits} range [{lo}, {hi}] "
                f"(min {amin}, max {amax}); the int8 operands or the int32 bias are too large "
                "for this layer's size. Pass overflow=Overflow.WRAP to emulate wrapping hardware."
            )
    return a


def requantize_pow2(
    acc: Any,
    e_acc: int,
    e_out: int,
    bits: int = 8,
    rounding: Rounding = Rounding.HALF_AWAY,
    saturation: Saturation = Saturation.SATURATE,
) -> np.ndarray:
    """Move integers from exponent ``e_acc`` to exponent ``e_out``, eq. (5).

    ``q = sat(shift_round(acc, e_out - e_acc))``. ``acc``: integers (an int32
    accumulator at ``e_acc = e_w + e_x``, or any integer tensor), any shape.
    Returns :func:`int_dtype` ``(bits)``: int8 by default. ``e_out < e_acc`` is an
    exact left shift followed by saturation.
    """
    bits = _check_bits(bits)
    for name, e in (("e_acc", e_acc), ("e_out", e_out)):
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
            raise ConfigurationError(f"{name} must be an integer exponent, got {e!r}")
    shifted = shift_round(acc, int(e_out) - int(e_acc), rounding)
    return saturate(shifted, bits, True, saturation).astype(int_dtype(bits, True))


def requantize_scale(
    acc: Any,
    multiplier: Any,
    zero_point: Any = 0,
    bits: int = 8,
    rounding: Rounding = Rounding.HALF_EVEN,
    saturation: Saturation = Saturation.SATURATE,
    *,
    signed: bool = True,
    axis: int | None = None,
    negative_slope: Any = None,
) -> np.ndarray:
    """Requantize an accumulator with a real multiplier (float-scale CPU scheme), eq. (9).

    ``q = sat(R(acc * multiplier) + zero_point)``, the product in float64, where
    ``multiplier = s_x * s_w / s_y`` (a scalar, or one per output channel along
    ``axis``). ``acc``: integers, any shape. Returns :func:`int_dtype` ``(bits, signed)``.
    ``negative_slope``: a LeakyRelu's ``alpha`` or a PRelu's slopes (real, broadcasting
    to ``acc`` as numpy broadcasts): each negative product ``v`` becomes ``fl64(v *
    slope)`` before ``R``, eq. (9a), the activation applied to the real output as
    onnxruntime applies it between a float Conv and the ``QuantizeLinear`` after it.
    """
    bits = _check_bits(bits)
    rounding = _check_rounding(rounding)
    a = _as_int64(acc, "requantize_scale input")
    m = _broadcast_param(np.asarray(multiplier, dtype=np.float64), a.shape, axis, "multiplier")
    if m.size == 0 or not (np.all(np.isfinite(m)) and np.all(m > 0)):
        raise ConfigurationError(f"multiplier must be finite and > 0, got {np.asarray(multiplier)!r}")
    z = _zero_point(zero_point, a.shape, axis, bits, signed)
    v = a.astype(np.float64) * m
    if negative_slope is not None:
        slope = np.asarray(negative_slope, dtype=np.float64)
        if not np.all(np.isfinite(slope)):
            raise ConfigurationError("negative_slope must be finite")
        v = np.where(v < 0, v * slope, v)
    q = round_values(v, rounding) + z
    return saturate(q, bits, signed, saturation).astype(int_dtype(bits, signed))


# ------------------------------------------------------------------ configuration


class ExponentMethod(enum.StrEnum):
    """How :class:`PowerOfTwo` picks each activation's exponent."""

    #: eq. (1) on the collected max |x| (MATLAB's)
    MINMAX = "MinMax"
    #: the exponent with the least expected squared error over the histogram
    HISTOGRAM = "Histogram"


@dataclasses.dataclass(frozen=True)
class PowerOfTwo:
    """The FPGA scheme: symmetric, per tensor, zero point 0, scale ``2**e`` (eq. (1)-(8)).

    ``word_length``: bits of weights and activations (8). ``exponent_method``:
    ``"MinMax"`` (eq. (1) on the collected max |x|) or ``"Histogram"`` (the
    exponent minimising the expected squared error over the histogram; the network's
    outputs keep MinMax unless ``range_methods`` names their layers).
    ``rounding``/``saturation``: used to quantize and requantize.
    ``per_channel``: one weight exponent per output channel (eq. (1) on each
    channel's max |w|, docs/accuracy.md (6)) instead of one per tensor: beyond what
    MATLAB's processor runs, so the FPGA compile accepts it only for a processor whose
    configuration says it can (``ProcessorConfig.per_channel_weights``).
    """

    word_length: int = 8
    exponent_method: ExponentMethod = ExponentMethod.MINMAX
    rounding: Rounding = Rounding.HALF_AWAY
    saturation: Saturation = Saturation.SATURATE
    per_channel: bool = False

    def __post_init__(self) -> None:
        _check_bits(self.word_length, "PowerOfTwo.word_length")
        if not isinstance(self.per_channel, (bool, np.bool_)):
            raise ConfigurationError(f"PowerOfTwo.per_channel must be True or False, got {self.per_channel!r}")
        try:
            object.__setattr__(self, "exponent_method", ExponentMethod(self.exponent_method))
        except ValueError:
            raise ConfigurationError(
                f"PowerOfTwo.exponent_method must be one of {', '.join(repr(m.value) for m in ExponentMethod)}, "
                f"got {self.exponent_method!r}"
            ) from None
        _check_rounding(self.rounding)
        _check_saturation(self.saturation)

    @property
    def qmin(self) -> int:
        """Smallest integer: -2**(WL-1)."""
        return int_range(self.word_length)[0]

    @property
    def qmax(self) -> int:
        """Largest integer: 2**(WL-1) - 1."""
        return int_range(self.word_length)[1]


@dataclasses.dataclass(frozen=True)
class FloatScale:
    """The CPU scheme: float scales as onnxruntime's int8 kernels use them (eq. (2), (9)).

    ``per_channel``: weights symmetric per output channel (else per tensor).
    ``symmetric_activations``: activations with zero point 0 (else asymmetric,
    with a zero point). ``rounding``: ties to even, as onnxruntime rounds.
    ``reduce_range``: weights on 7 bits, ``[-64, 64]`` (onnxruntime's
    ``reduce_range``). x86 CPUs without VNNI (AVX2 only) run onnxruntime's int8
    convolutions and matrix products with ``vpmaddubsw``, which adds pairs of
    u8 x s8 products in int16 *with saturation*: full 8-bit weights can overflow
    there (``2 * 255 * 127 > 32767``) and the deployed model then differs from the
    exact integer arithmetic; 7-bit weights cannot (``2 * 255 * 64 < 32767``).
    See docs/int8.md (9) and :func:`cpu_int8_saturates`.
    ``range_method``: how each activation's clipping range is chosen from its
    calibration statistics (:class:`~quantscope.calibrate.RangeMethod`: ``"minmax"``,
    ``"percentile"`` with ``percentile``, ``"mse"``, ``"entropy"``; docs/ranges.md);
    the network's outputs keep min/max unless ``range_methods`` names their layers
    (docs/accuracy.md).
    """

    per_channel: bool = True
    symmetric_activations: bool = False
    reduce_range: bool = False
    rounding: Rounding = Rounding.HALF_EVEN
    saturation: Saturation = Saturation.SATURATE
    range_method: RangeMethod = RangeMethod.MINMAX
    percentile: float = 99.999

    def __post_init__(self) -> None:
        for name in ("per_channel", "symmetric_activations", "reduce_range"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigurationError(f"FloatScale.{name} must be True or False, got {value!r}")
        _check_rounding(self.rounding)
        _check_saturation(self.saturation)
        try:
            method = RangeMethod(str(self.range_method).lower())
        except ValueError:
            raise ConfigurationError(
                f"FloatScale.range_method must be one of {', '.join(repr(m.value) for m in RangeMethod)}, "
                f"got {self.range_method!r}"
            ) from None
        object.__setattr__(self, "range_method", method)
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 < float(p) <= 100:
            raise ConfigurationError(f"FloatScale.percentile must be a number in (0, 100], got {p!r}")
        object.__setattr__(self, "percentile", float(p))

    @property
    def weight_qmax(self) -> int:
        """Largest weight magnitude in integers: 127, or 64 with ``reduce_range``."""
        return 64 if self.reduce_range else 127


@functools.lru_cache(maxsize=1)
def cpu_int8_saturates() -> bool:
    """True when this machine is an x86 CPU without VNNI (AVX512-VNNI or AVX-VNNI),
    where onnxruntime's u8 x s8 kernels saturate pair sums in int16 (so full 8-bit
    weights can give results that differ from the exact arithmetic; use
    ``FloatScale(reduce_range=True)``). False elsewhere, and where it cannot tell.
    Reads ``/proc/cpuinfo`` (Linux)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), None)
    except OSError:
        return False
    if flags is None:
        return False
    return "avx512_vnni" not in flags and "avx_vnni" not in flags
