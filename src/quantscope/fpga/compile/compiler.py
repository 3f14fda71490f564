""":func:`compile_network`: the steps of :mod:`quantscope.fpga.compile`, wired."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError
from ...network import Network, prepare
from ..config import ProcessorConfig, processor
from ..cycles import LayerCost
from .activations import Activations, chw
from .buffers import output_values, system_buffer
from .compiled import CompiledNetwork
from .costs import cost_legs
from .instructions import encode_stream, stream_bytes
from .memory import plan_memory
from .placement import Placement, group_legs, layer_placements, place
from .program import Addresses, DdrAddresses, build_program, descriptor_count
from .weights import weight_images

__all__ = ["compile_network", "cost_network"]


def cost_network(network: Network, config: ProcessorConfig) -> list[LayerCost]:
    """The cycle model's cost of every hardware layer of ``network`` on ``config`` (fused
    ones included), in execution order: placement, legs and costs only, without the
    weight images, the program and the map that :func:`compile_network` builds."""
    acts = Activations(network, config)
    where, _ = place(network, acts)
    legs = group_legs([layer for layer in network.layers if where[layer.name] is Placement.HW])
    return cost_legs(legs, acts, config)[1]


def is_quantized_network(network: Any) -> bool:
    """Whether ``network`` is a :class:`~quantscope.QuantizedNetwork` (duck-typed: the
    fpga stage sits above quantize and needs only its plan and emulation)."""
    return hasattr(network, "plan") and hasattr(network, "predict") and hasattr(network, "network")


def unwrap_quantized(
    qnet: Any, config: ProcessorConfig, quantized: Mapping[str, tuple] | None = None
) -> tuple[Network, dict[str, tuple]]:
    """The float network of a power-of-two :class:`~quantscope.QuantizedNetwork` and the
    int8 weights (and lookup tables) its weight images carry, checked against the
    processor's per-channel support.

    Raises:
        ConfigurationError: the network was quantized for the CPU target.
        UnsupportedModelError: per-channel parameters on a processor without them.
    """
    from ...simulate.lut import plan_tables
    from ..per_channel import check_per_channel

    if getattr(qnet.plan.scheme, "exponent_method", None) is None:  # not PowerOfTwo
        raise ConfigurationError(
            f"the deep-learning processor computes with power-of-two scales, but this network was "
            f"quantized with {type(qnet.plan.scheme).__name__} (the CPU target): quantize it for the "
            'FPGA with quantscope.quantize_network(calibration, "fpga") (or pass the float network to estimate '
            "performance only)"
        )
    check_per_channel(qnet.plan, config)
    if quantized is None:
        quantized = {
            name: (qw, qnet.plan.biases[name][0] if name in qnet.plan.biases else None, qp.exponent)
            for name, (qw, qp) in qnet.plan.weights.items()
        }
        # the activations' lookup tables, as the emulation applies them
        quantized.update({name: (table,) for name, table in plan_tables(qnet.plan).items()})
    return qnet.network, dict(quantized)


def compile_network(
    network: Any,
    config: ProcessorConfig | str,
    *,
    quantized: Mapping[str, tuple] | None = None,
) -> CompiledNetwork:
    """Compile ``network`` for the processor ``config``.

    Args:
        network: a prepared :class:`~quantscope.Network` (or anything
            :func:`quantscope.prepare` accepts), or a :class:`~quantscope.QuantizedNetwork`
            for the FPGA (its int8 weights fill the weight images). Input ``(N, C, H, W)``
            with fixed C, H, W.
        config: a :class:`ProcessorConfig` or a preset name (``"zcu102_int8"``...).
        quantized: for int8 bitstreams, the layers' int8 weights from the quantizer:
            ``{layer name: (int8 weights as stored in the model, int32 bias or None[,
            exponent])}``, and the lookup table of each table activation
            (``{layer name: (256 int8 outputs,)}``, :func:`quantscope.simulate.lut.plan_tables`).
            Layers absent get a stand-in (per-tensor power-of-two weights, bias at the
            weight exponent; a table on a fixed grid); sizes and layout are the same either way.

    Returns:
        a :class:`CompiledNetwork` (placement, legs, weight images, instructions, map).

    Raises:
        UnsupportedModelError: a layer kind the processor lacks (e.g. a Softmax that is
            not the last layer), an activation above FeatureSizeLimit, a row that does not
            fit the conv memories, unknown shapes.
    """
    cfg = processor(config)
    if is_quantized_network(network):
        network, quantized = unwrap_quantized(network, cfg, quantized)
    net = prepare(network) if not isinstance(network, Network) else network
    acts = Activations(net, cfg)

    where, notes = place(net, acts)
    hardware = [layer for layer in net.layers if where[layer.name] is Placement.HW]
    legs = group_legs(hardware)
    infos, costs = cost_legs(legs, acts, cfg)
    cost_of = {c.name: c for c in costs}
    images, weight_bytes = weight_images(net, cfg, hardware, infos, dict(quantized or {}), cost_of)
    buffer = system_buffer(legs, infos, acts, {layer.name for layer in hardware}, cfg)
    output_elements = sum(acts.padded_elements(v) for v in output_values(net, where, acts))

    unplaced = build_program(net, legs, costs, Addresses())  # sizes the map; addresses come after
    input_shape = chw(net.input_shape, net.input_name, net.input_name)
    mm = plan_memory(
        cfg,
        input_shape=input_shape,
        output_elements=output_elements,
        descriptors=descriptor_count(costs),
        system_buffer_bytes=buffer.size,
        instruction_bytes=stream_bytes(len(unplaced)),
        weight_bytes=weight_bytes,
    )
    addresses = DdrAddresses(mm, buffer, images, acts, where, net.input_name, stream_bytes(len(unplaced)))
    program = build_program(net, legs, costs, addresses)
    return CompiledNetwork(
        network=net,
        config=cfg,
        layers=layer_placements(net, where, notes, legs),
        legs=[leg.leg for leg in legs],
        infos=infos,
        costs=costs,
        weight_images=images,
        instructions=encode_stream(
            program, layers=len(net.layers), legs=len(legs), frame_limit=cfg.input_frame_number_limit
        ),
        instruction_count=len(program),
        buffers=buffer.slots,
        memory_map=mm,
        input_shape=input_shape,
        output_elements=output_elements,
        program=tuple(program),
    )
