"""The processor against published figures and modern networks (docs/published.md,
docs/fpga.md): LogoNet's measured rows and DDR map on arria10soc_int8, a YOLOv8n and a
MobileNetV3 in int8 (lookup-table activations, depthwise convolutions, Resize,
Concat, channel slices) compiled, emulated and profiled, and the configuration
search."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from tinymodels import make_model, tensor

import quantscope as qs
from quantscope import fpga, zoo
from quantscope.cli import main
from quantscope.fpga import cycles
from quantscope.simulate.engine import IntTensor, Simulator
from quantscope.simulate.lut import FUNCTIONS, lookup_table, plan_tables

pytest.importorskip("torch")

#: Published LogoNet rows on arria10soc_int8 (docs/published.md), cycles.
LOGONET_ROWS = {
    "conv_1": 3_939_296,
    "maxpool_1": 1_544_371,
    "conv_2": 2_910_747,
    "maxpool_2": 577_654,
    "fc_1": 536_206,
    "fc_2": 342_688,
}
#: Published LogoNet DDR map on arria10soc_int8 (docs/published.md).
LOGONET_MAP = [
    ("InputDataOffset", "0x00000000", "48.0 MB"),
    ("OutputResultOffset", "0x03000000", "4.0 MB"),
    ("SystemBufferOffset", "0x03400000", "60.0 MB"),
    ("InstructionDataOffset", "0x07000000", "8.0 MB"),
    ("ConvWeightDataOffset", "0x07800000", "8.0 MB"),
    ("FCWeightDataOffset", "0x08000000", "12.0 MB"),
    ("EndOffset", "0x08c00000", "Total: 140.0 MB"),
]


@pytest.fixture(scope="module")
def logonet():
    return qs.prepare(zoo.logonet())


@pytest.fixture(scope="module")
def logonet_compiled(logonet):
    return fpga.compile_network(logonet, "arria10soc_int8")


# ------------------------------------------------------------------ LogoNet


def test_logonet_has_matlabs_layers(logonet):
    names = [layer.members[0] for layer in logonet.layers]
    for name in ("conv_1", "maxpool_1", "conv_4", "maxpool_4", "fc_1", "fc_2", "fc_3", "softmax"):
        assert name in names
    assert logonet.input_name == "imageinput" and logonet.input_shape[1:] == (3, 227, 227)


def test_logonet_rows_within_ten_percent_of_the_board(logonet_compiled):
    profile = fpga.profile_compiled(logonet_compiled)
    print(profile.format())
    for row, published in LOGONET_ROWS.items():
        ours = profile.cycles_of(row)
        print(f"{row:10s} published {published:>10,} quantscope {ours:>10,} ({ours / published - 1:+.1%})")
        assert abs(ours / published - 1) < 0.10, row


def test_logonet_profile_prints_like_matlab(logonet_compiled):
    text = fpga.profile_compiled(logonet_compiled).format()
    lines = text.splitlines()
    labels = [line.split()[0] for line in lines[2:-1]]
    assert labels == [
        "Network",
        "conv_module",
        *("conv_1 maxpool_1 conv_2 maxpool_2 conv_3 maxpool_3 conv_4 maxpool_4".split()),
        "fc_module",
        "fc_1",
        "fc_2",
        "fc_3",
    ]
    assert lines[3].startswith("    conv_module") and lines[4].startswith("        conv_1")
    assert text.endswith("* The clock frequency of the DL processor is: 150MHz")


def test_logonet_memory_map_is_the_published_one(logonet_compiled):
    assert logonet_compiled.memory_map.rows() == LOGONET_MAP
    # softmax runs on the host, as MATLAB's: no cycles
    placement = {p.label: p.placement for p in logonet_compiled.layers}
    assert placement["softmax"] == "SW Layer" and placement["conv_1"] == "HW Layer"


def test_conv_module_model_is_fitted_physics():
    """The conv rows are compute-bound and the max-pool rows bound by the DDR port, each
    from its own formula; no constant is per layer."""
    net = qs.prepare(zoo.logonet())
    costs = {c.label: c for c in fpga.compile_network(net, "arria10soc_int8").costs if not c.fused}
    for conv in ("conv_1", "conv_2"):
        assert costs[conv].compute_cycles > costs[conv].transfer_cycles
    for pool in ("maxpool_1", "maxpool_2"):
        assert costs[pool].transfer_cycles > costs[pool].compute_cycles
    # maxpool_2 carries conv_3's filters, fetched into the weight buffer while it runs
    assert costs["maxpool_2"].transfer_bytes > 4 * (54 * 54 + 109 * 109) * 128


# ------------------------------------------------------------------ modern layers in int8


def _quantized(model: onnx.ModelProto, size: int, n: int = 6):
    net = qs.prepare(model)
    x = np.random.default_rng(0).random((n, 3, size, size)).astype(np.float32)
    cal = qs.calibrate(net, x, progress=False)
    return net, x, qs.quantize_network(cal, "fpga")


@pytest.fixture(scope="module")
def yolo():
    return _quantized(zoo.yolov8n(64), 64)


@pytest.fixture(scope="module")
def mobilenet_v3():
    return _quantized(zoo.mobilenet_v3_small(64), 64)


@pytest.fixture(scope="module")
def mobilenet_v2():
    import torch
    from realdata import mobilenet_v2_module

    model = qs.network.load.load_model(mobilenet_v2_module(), torch.zeros(1, 3, 96, 96))
    net, x, qnet = _quantized(model, 96, n=4)
    return net, x * 255, qs.quantize_network(qs.calibrate(net, x * 255, progress=False), "fpga")


@pytest.mark.parametrize("which", ["yolo", "mobilenet_v3", "mobilenet_v2"])
def test_modern_network_compiles_predicts_bit_exactly_and_profiles(which, request):
    net, x, qnet = request.getfixturevalue(which)
    plan = qnet.plan
    kinds = {layer.kind for layer in net.layers}
    if which == "yolo":
        assert {"Swish", "Concat", "Slice", "Resize", "MaxPool", "Add"} <= kinds
    elif which == "mobilenet_v2":
        assert {"Add", "GlobalAveragePool"} <= kinds
    else:
        assert {"HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Softmax"} <= kinds
        depthwise = [layer for layer in net.layers if layer.kind == "conv" and layer.nodes[0].attributes.get("group")]
        assert depthwise
    # the activations, slices and concatenations run on integers, not in float
    for layer in net.layers:
        if layer.kind in ("Swish", "HardSwish", "HardSigmoid", "Concat", "Slice", "conv"):
            assert plan.is_int(layer) and layer.name not in plan.float_layers, layer.name
    lines: list[str] = []
    workflow = fpga.Workflow(qnet, "zcu102_int8", print_fn=lines.append)
    outputs, profile = workflow.predict(x)
    reference = Simulator(plan, "reference").run(x)[0]
    np.testing.assert_array_equal(outputs, reference)  # the board's predict is the fpga-target emulation
    compiled = workflow.compiled
    # the tables in the weight image are the ones the emulation applies
    tables = plan_tables(plan)
    assert bool(tables) == (which != "mobilenet_v2")  # MobileNetV2: ReLU6 only
    for name, table in tables.items():
        np.testing.assert_array_equal(compiled.weight_images[name].weights, table)
    rows = {r.label for r in profile.rows}
    assert "conv_module" in rows and profile.network_cycles > 0
    if which != "yolo":
        assert "fc_module" in rows
        placement = {p.kind: p.placement for p in compiled.layers}
        assert placement.get("Softmax", "SW Layer") == "SW Layer"
    assert any("Deployment complete" in line for line in lines)


def test_fast_and_reference_engines_agree_on_table_activations(yolo):
    _, x, qnet = yolo
    fast_out, fast_layers = Simulator(qnet.plan, "fast").run(x, collect=True)
    ref_out, ref_layers = Simulator(qnet.plan, "reference").run(x, collect=True)
    np.testing.assert_array_equal(fast_out, ref_out)
    compared = 0
    for name, ref in ref_layers.items():
        if isinstance(ref, IntTensor):
            np.testing.assert_array_equal(fast_layers[name].q, ref.q, err_msg=name)
            compared += 1
    assert compared > 100


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_lookup_table_is_the_function_on_the_int8_grid(kind):
    from quantscope.quantize.numerics import Rounding, Saturation, round_values
    from quantscope.quantize.plan import QParams

    x_qp, y_qp = QParams.pow2(-4), QParams.pow2(-6)
    table = lookup_table(kind, {}, x_qp, y_qp, Rounding.HALF_AWAY, Saturation.SATURATE)
    assert table.shape == (256,) and table.dtype == np.int8
    x = np.arange(-128, 128) / 16.0
    expected = {
        "Sigmoid": 1 / (1 + np.exp(-x)),
        "Tanh": np.tanh(x),
        "HardSigmoid": np.clip(0.2 * x + 0.5, 0, 1),
        "HardSwish": x * np.clip(x / 6 + 0.5, 0, 1),
        "Swish": x / (1 + np.exp(-x)),
    }[kind]
    want = np.clip(round_values(expected * 64, Rounding.HALF_AWAY), -128, 127)
    np.testing.assert_array_equal(table, want)


def test_transposed_convolution_and_a_host_tail():
    rng = np.random.default_rng(0)
    init = {
        "w": (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32),
        "wt": (rng.standard_normal((8, 4, 4, 4)) * 0.2).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["c"], ["t"], name="tanh1"),
        helper.make_node("ConvTranspose", ["t", "wt"], ["u"], name="up1", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Elu", ["u"], ["y"], name="elu_tail"),  # nothing after it: runs on the host
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 16, 16])], [tensor("y", ["N", 4, 32, 32])], init)
    compiled = fpga.compile_network(qs.prepare(model), "zcu102_int8")
    placement = {p.name: (p.placement, p.kind) for p in compiled.layers}
    assert placement["up1"] == ("HW Layer", "ConvTranspose")
    assert placement["tanh1"] == ("HW Layer", "Tanh")
    assert placement["elu_tail"] == ("SW Layer", "Elu")
    profile = fpga.profile_compiled(compiled)
    assert profile.cycles_of("up1") > profile.cycles_of("conv1") > 0
    assert compiled.weight_images["up1"].weights.shape == (8, 8, 4, 4)  # (Cin', Cout', kh, kw), N = 8


def test_resize_and_concat_only_where_the_processor_can():
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["r"], name="up", mode="linear"),
        helper.make_node("Conv", ["r", "w"], ["y"], name="conv1"),
    ]
    init = {
        "scales": np.array([1, 1, 2, 2], np.float32),
        "w": np.ones((4, 3, 1, 1), np.float32),
    }
    model = make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 16, 16])], init)
    with pytest.raises(qs.UnsupportedModelError, match="nearest neighbour with integer factors") as raised:
        fpga.compile_network(qs.prepare(model), "zcu102_int8")
    assert "ConvTranspose" in str(raised.value) and "target='cpu'" in str(raised.value)  # what to do


def test_yolov8n_small_on_the_published_bitstream(yolo):
    net, _, _ = yolo
    compiled = fpga.compile_network(net, "zcu102_int8")
    profile = fpga.profile_compiled(compiled)
    by_kind: dict[str, int] = {}
    for cost in profile.layers:
        by_kind[cost.kind] = by_kind.get(cost.kind, 0) + cost.cycles
    assert set(by_kind) == {"conv", "Swish", "Add", "MaxPool", "Resize"}
    assert len([c for c in profile.layers if c.kind == "conv"]) == 63
    assert compiled.memory_map["InputDataOffset"].size == 30 * 64 * 64 * 8  # 1 B words, N = 8
    # the three head outputs, 30 frames, in the output region
    assert compiled.output_elements == 144 * (8 * 8 + 4 * 4 + 2 * 2)


# ------------------------------------------------------------------ the configuration search


def _small_net():
    return qs.prepare(zoo.mobilenet_v3_small(64))


def test_optimize_config_is_the_cheapest_that_meets_both():
    net = _small_net()
    search = fpga.optimize_config(net, board="zc706", frames_per_second=60)
    print(search.format())
    chosen = search.config
    profile = fpga.estimate_performance(net, chosen)
    resources = fpga.estimate_resources(chosen)
    assert profile.frames_per_second >= 60
    used, available = resources.loc["DL_Processor"], resources.loc["Available"]
    assert all(used[c] <= available[c] for c in ("DSPs", "Block RAM", "LUTs"))
    # every cheaper candidate misses one of the two, the next smaller one in particular
    at = search.candidates.index(search.chosen)
    assert at > 0
    for cheaper in search.candidates[:at]:
        fps = fpga.estimate_performance(net, cheaper.config.with_changes(target_frequency_mhz=200.0))
        r = fpga.estimate_resources(cheaper.config)
        fits = all(r.loc["DL_Processor", c] <= r.loc["Available", c] for c in ("DSPs", "Block RAM", "LUTs"))
        assert fps.frames_per_second < 60 or not fits, cheaper
        assert cheaper.cost <= search.chosen.cost
    # the clock is the lowest of the board's grid that keeps up
    slower = chosen.with_changes(target_frequency_mhz=chosen.target_frequency_mhz - 25)
    assert fpga.estimate_performance(net, slower).frames_per_second < 60
    assert "chosen" in search.format() and "too slow" in search.format()


def test_optimize_config_says_when_nothing_is_fast_enough():
    net = _small_net()
    search = fpga.optimize_config(net, board="arria10soc", frames_per_second=1e6, conv_threads=[16, 64])
    assert search.chosen is None
    with pytest.raises(qs.ConfigurationError, match="no processor configuration reaches"):
        _ = search.config
    with pytest.raises(qs.ConfigurationError, match="unknown board"):
        fpga.optimize_config(net, board="vcu118", frames_per_second=30)
    with pytest.raises(qs.ConfigurationError, match="positive"):
        fpga.optimize_config(net, board="zcu102", frames_per_second=0)


def test_cli_optimize(tmp_path, capsys):
    path = tmp_path / "mnv3.onnx"
    onnx.save(zoo.mobilenet_v3_small(64), path)
    assert main(["optimize", str(path), "--board", "zcu102", "--fps", "30"]) == 0
    out = capsys.readouterr().out
    assert "### Chosen: ConvThreadNumber" in out and "too slow" in out and 'Processor "zcu102_int8_custom"' in out
    assert main(["optimize", str(path), "--board", "zcu102", "--fps", "0"]) == 2
    assert "--fps 0: give a positive frame rate" in capsys.readouterr().err


# ------------------------------------------------------------------ properties on the new kinds


@pytest.mark.parametrize("kind", ["Sigmoid", "Resize", "ConvTranspose"])
def test_more_threads_and_bigger_buffers_never_cost_more(kind):
    c, size = 24, 40
    out = (c, 2 * size, 2 * size) if kind in ("Resize", "ConvTranspose") else (c, size, size)
    info = cycles.LayerInfo(
        name="L",
        label="L",
        kind=kind,
        in_shapes=((c, size, size),),
        out_shape=out,
        kernel=(4, 4) if kind == "ConvTranspose" else (1, 1),
        strides=(2, 2) if kind == "ConvTranspose" else (1, 1),
        pads=(1, 1, 1, 1) if kind == "ConvTranspose" else (0, 0, 0, 0),
    )
    base = fpga.processor("zcu102_int8")
    costs = [cycles.layer_cost(info, base.with_changes(conv_thread_number=t)).cycles for t in (4, 9, 16, 36, 64)]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]
    small = base.with_changes(conv_input_memory_size=(16, 16, 8), conv_output_memory_size=(16, 16, 8))
    assert cycles.layer_cost(info, small).cycles > cycles.layer_cost(info, base).cycles
