"""Bias absorption on calibration data (Nagel et al. 2019, section 4.1.2; docs/accuracy.md
(3a)-(3c)): measure the pre-activations of an equalized network's pairs and move what
never leaves a channel into the next layer's bias (:mod:`quantscope.passes.absorb`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CalibrationDataError, ConfigurationError, option
from ..network import Inputs, Network
from ..network.network import absorbed_copy, absorption_targets, batch_pieces
from .collector import create_session, run_checked
from .source import as_source

__all__ = ["absorb_biases"]


def absorb_biases(network: Network, data: Any, *, batch_size: int = 32, layout: str = "NCHW") -> Network:
    """A copy of the equalized ``network`` whose high biases are absorbed into the next
    layer: the same float function on ``data``, narrower activation ranges.

    For each equalized pair ``first -> link -> second`` whose link is nothing, Relu or
    Relu6 and whose second layer, a Conv, has no padding, ``c_i`` (one per channel of
    ``first``'s output) is subtracted from ``first``'s bias (and from a Relu6's ceiling)
    and ``W2 c`` added to ``second``'s bias. Through a Relu, ``c_i = max(0, min x_i)``
    with ``x_i`` channel ``i`` of ``first``'s output over every sample and position of
    ``data``: exact on every sample of ``data``, and wherever ``x_i >= c_i`` elsewhere.
    Without an activation, ``c_i`` is the middle of ``x_i``'s range (exact for any input).

    Args:
        network: a network prepared with ``equalize=True``.
        data: calibration data (anything :func:`~quantscope.calibrate` takes); all of it
            is run once through the float network. Calibrate the returned network on
            the same data: its activation ranges changed.
        batch_size: samples per run.
        layout: ``"NCHW"`` or ``"NHWC"`` for array data.

    Returns:
        the new network (``bias_absorbed`` True); ``log.absorbed`` lists each pair with
        the channels absorbed, the largest amount moved and its activation's largest
        |value| before and after; ``log.notes`` says which pairs were left and why.
    """
    if not isinstance(network, Network):
        raise ConfigurationError(
            f"{option('absorb_biases', '--absorb-bias')} takes a prepared network "
            f"(quantscope.prepare(model, equalize=True)), got {type(network).__name__}"
        )
    if not network.equalized:
        raise ConfigurationError(
            f"{option('absorb_biases', '--absorb-bias')} moves biases between the layers cross-layer equalization "
            f"paired: {option('prepare the network with equalize=True first', 'add --equalize')}"
        )
    if network.bias_absorbed:
        return network
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        flag = option("batch_size", "--batch-size")
        raise ConfigurationError(f"{flag} must be a positive integer, got {batch_size!r}")
    targets, _ = absorption_targets(network)
    names = sorted({t.value for t in targets})
    ranges = _channel_ranges(network, data, names, batch_size, layout) if names else {}
    return absorbed_copy(network, ranges)


def _channel_ranges(
    network: Network, data: Any, names: list[str], batch_size: int, layout: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel (axis 1) minimum and maximum of each value in ``names`` over ``data``,
    float64 arrays of shape ``(C,)``."""
    source = as_source(
        data, layout=layout, input_shape=network.input_shape, dtype=network.input_dtype, inputs=network.input_spec
    )
    session = create_session(network.session_model(names), spinning=False)
    lows: dict[str, np.ndarray] = {}
    highs: dict[str, np.ndarray] = {}
    fixed = network.fixed_batch
    seen = 0
    for batch in source.batches(fixed or batch_size):
        feeds = network.feeds(batch.x)
        x = Inputs(feeds) if len(feeds) > 1 else feeds[network.input_name]
        for piece, count in batch_pieces(x, fixed or len(x), fixed=fixed is not None):
            outs = run_checked(lambda piece=piece: session.run(names, network.feeds(piece)))
            for name, out in zip(names, outs):
                out = np.asarray(out)
                out = out[:count] if count < len(piece) and len(out) == len(piece) else out
                if out.ndim < 2 or not out.size:
                    continue
                flat = np.moveaxis(out, 1, 0).reshape(out.shape[1], -1)
                lo, hi = flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64)
                lows[name] = lo if name not in lows else np.minimum(lows[name], lo)
                highs[name] = hi if name not in highs else np.maximum(highs[name], hi)
            seen += count
    if seen == 0:
        raise CalibrationDataError(f"the data for {option('absorb_biases', '--absorb-bias')} contains no samples")
    return {name: (lows[name], highs[name]) for name in lows}
