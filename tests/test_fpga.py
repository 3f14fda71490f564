"""The FPGA target: configuration, compile (memory map), cycle model, profile,
resources, simulated board. Published figures are docs/published.md's."""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from tinymodels import make_model, small_cnn, tensor

import quantscope
from quantscope import ConfigurationError, QuantscopeError, UnsupportedModelError, fpga
from quantscope.errors import INTERFACE
from quantscope.fpga import cycles
from quantscope.fpga.config import CONV_THREAD_NUMBERS
from quantscope.zoo import squeezenet

# ------------------------------------------------------------------ models


def mnist_fc(seed: int = 0):
    """docs/published.md's MNIST fully connected network: 28x28x1 input, Flatten,
    dense_6 (784->64) + ReLU, dense_7 (64->32) + ReLU, dense_8 (32->10), Softmax."""
    rng = np.random.default_rng(seed)
    init = {
        "w6": (rng.standard_normal((784, 64)) * 0.05).astype(np.float32),
        "b6": (rng.standard_normal(64) * 0.01).astype(np.float32),
        "w7": (rng.standard_normal((64, 32)) * 0.1).astype(np.float32),
        "b7": (rng.standard_normal(32) * 0.01).astype(np.float32),
        "w8": (rng.standard_normal((32, 10)) * 0.1).astype(np.float32),
        "b8": (rng.standard_normal(10) * 0.01).astype(np.float32),
    }
    nodes = [
        helper.make_node("Flatten", ["imageinput"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w6", "b6"], ["d6"], name="dense_6"),
        helper.make_node("Relu", ["d6"], ["r6"], name="relu_6"),
        helper.make_node("Gemm", ["r6", "w7", "b7"], ["d7"], name="dense_7"),
        helper.make_node("Relu", ["d7"], ["r7"], name="relu_7"),
        helper.make_node("Gemm", ["r7", "w8", "b8"], ["d8"], name="dense_8"),
        helper.make_node("Softmax", ["d8"], ["prob"], name="softmax", axis=1),
    ]
    model = make_model(
        nodes, [tensor("imageinput", ["N", 1, 28, 28])], [tensor("prob", ["N", 10])], init, name="mnist_fc"
    )
    return quantscope.prepare(model)


def conv_net(
    size: int = 32, cin: int = 3, cout: int = 16, k: int = 3, stride: int = 1, tail: str = "pool", seed: int = 0
):
    """input (N, cin, size, size) -> conv (k x k, stride) + ReLU -> [MaxPool 2x2 | Softmax -> conv]."""
    rng = np.random.default_rng(seed)
    init = {
        "cw": (rng.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32),
        "cb": np.zeros(cout, np.float32),
    }
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "cw", "cb"],
            ["c"],
            name="conv1",
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
    ]
    out = (size + 2 * (k // 2) - k) // stride + 1
    if tail == "pool":
        nodes.append(helper.make_node("MaxPool", ["r"], ["y"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]))
        oshape = ["N", cout, out // 2, out // 2]
    elif tail == "softmax_mid":
        init["cw2"] = (rng.standard_normal((4, cout, 1, 1)) * 0.1).astype(np.float32)
        nodes += [
            helper.make_node("Softmax", ["r"], ["s"], name="mid_softmax", axis=1),
            helper.make_node("Conv", ["s", "cw2"], ["y"], name="conv2"),
        ]
        oshape = ["N", 4, out, out]
    elif tail == "sigmoid_mid":
        init["cw2"] = (rng.standard_normal((4, cout, 1, 1)) * 0.1).astype(np.float32)
        nodes += [
            helper.make_node("LRN", ["r"], ["s"], name="lrn1", size=3),
            helper.make_node("Conv", ["s", "cw2"], ["y"], name="conv2"),
        ]
        oshape = ["N", 4, out, out]
    else:
        nodes[-1] = helper.make_node("Relu", ["c"], ["y"], name="relu1")
        oshape = ["N", cout, out, out]
    model = make_model(nodes, [tensor("x", ["N", cin, size, size])], [tensor("y", oshape)], init, name="conv_net")
    return quantscope.prepare(model)


@pytest.fixture(scope="module")
def mnist():
    return mnist_fc()


@pytest.fixture(scope="module")
def squeeze():
    return quantscope.prepare(squeezenet(1000, 227))


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(thread_number=8), "perfect square"),
        (dict(thread_number=1), "perfect square"),
        (dict(thread_number=81), "perfect square"),
        (dict(thread_number=16.0), "perfect square"),
        (dict(thread_number=True), "perfect square"),
        (dict(input_memory_size=(0, 227, 3)), "InputMemorySize"),
        (dict(input_memory_size=(227, 227)), "InputMemorySize"),
        (dict(input_memory_size=5), "InputMemorySize"),
        (dict(output_memory_size=(227, -1, 3)), "OutputMemorySize"),
        (dict(feature_size_limit=0), "FeatureSizeLimit"),
    ],
)
def test_conv_module_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        fpga.ConvModule(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(thread_number=6), "power of two"),
        (dict(thread_number=2), "power of two"),
        (dict(thread_number=128), "power of two"),
        (dict(input_memory_size=0), "fc InputMemorySize"),
        (dict(output_memory_size=-4), "fc OutputMemorySize"),
    ],
)
def test_fc_module_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        fpga.FCModule(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(input_memory_size=0), dict(output_memory_size=2.5)])
def test_adder_module_rejects_bad_values(kwargs):
    with pytest.raises(ConfigurationError, match="adder"):
        fpga.AdderModule(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_frequency_mhz=0), "TargetFrequency"),
        (dict(target_frequency_mhz=-150), "TargetFrequency"),
        (dict(target_frequency_mhz=float("nan")), "TargetFrequency"),
        (dict(target_frequency_mhz="fast"), "TargetFrequency"),
        (dict(data_type="half"), "int8' or 'single"),
        (dict(ddr_bandwidth_bytes_per_cycle=0), "ddr_bandwidth"),
        (dict(ddr_latency_cycles=-1), "ddr_latency"),
        (dict(input_frame_number_limit=0), "InputFrameNumberLimit"),
        (dict(board="de10"), "unknown board"),
        (dict(conv=fpga.FCModule()), "conv must be a ConvModule"),
    ],
)
def test_processor_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        fpga.ProcessorConfig(**kwargs)


def test_config_is_frozen_and_with_changes_validates():
    cfg = fpga.processor("zcu102_int8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.target_frequency_mhz = 100  # type: ignore[misc]
    changed = cfg.with_changes(conv_thread_number=16, fc_input_memory_size=1024, target_frequency_mhz=100)
    assert (changed.conv.thread_number, changed.fc.input_memory_size, changed.target_frequency_mhz) == (16, 1024, 100.0)
    assert changed.name == "custom" and cfg.conv.thread_number == 64
    with pytest.raises(ConfigurationError, match="perfect square"):
        cfg.with_changes(conv_thread_number=32)
    with pytest.raises(ConfigurationError, match="unknown processor configuration field"):
        cfg.with_changes(conv_threads=16)


def test_data_type_accepts_strings_and_enum():
    assert fpga.ProcessorConfig(data_type="INT8").data_type is fpga.DataType.INT8
    assert fpga.ProcessorConfig(data_type=fpga.DataType.SINGLE).bytes_per_element == 4


@pytest.mark.parametrize("threads, n", [(4, 2), (9, 4), (16, 4), (25, 8), (36, 8), (49, 8), (64, 8)])
def test_channel_padding_multiple(threads, n):
    # N = 2^nextpow2(sqrt(ConvThreadNumber)) (docs/fpga.md)
    assert fpga.ConvModule(thread_number=threads).channel_multiple == n


def test_presets():
    assert set(fpga.PRESETS) == {
        "zcu102_int8",
        "zc706_int8",
        "arria10soc_int8",
        "zcu102_single",
        "zc706_single",
        "arria10soc_single",
    }
    default = fpga.ProcessorConfig()
    zcu = fpga.processor("zcu102_single")
    # published: MATLAB's default configuration is the ZCU102 single one at 200 MHz
    assert (zcu.conv, zcu.fc, zcu.adder, zcu.target_frequency_mhz) == (default.conv, default.fc, default.adder, 200.0)
    assert zcu.conv == fpga.ConvModule(16, (227, 227, 3), (227, 227, 3), 2048)
    assert zcu.fc == fpga.FCModule(4, 25088, 4096) and zcu.adder == fpga.AdderModule(40, 40)
    assert fpga.processor("arria10soc_single").target_frequency_mhz == 150.0
    for name, cfg in fpga.PRESETS.items():
        assert cfg.name == name
        assert cfg.data_type.value == name.split("_")[1]
        assert cfg.input_frame_number_limit == 30
        if cfg.data_type.value == "int8":
            assert cfg.conv.thread_number == 64
    cfg = fpga.processor("zcu102_int8")
    assert fpga.processor(cfg) is cfg


def test_unknown_bitstream_lists_known_ones():
    with pytest.raises(ConfigurationError) as err:
        fpga.processor("zcu104_int8")
    for name in fpga.PRESETS:
        assert name in str(err.value)


# ------------------------------------------------------------------ memory map (published)

PUBLISHED_MNIST_MAP = [
    ("InputDataOffset", "0x00000000", "368.0 kB"),
    ("OutputResultOffset", "0x0005c000", "4.0 kB"),
    ("SchedulerDataOffset", "0x0005d000", "0.0 kB"),
    ("SystemBufferOffset", "0x0005d000", "20.0 kB"),
    ("InstructionDataOffset", "0x00062000", "4.0 kB"),
    ("FCWeightDataOffset", "0x00063000", "796.0 kB"),
    ("EndOffset", "0x0012a000", "Total: 1192.0 kB"),
]


def test_mnist_memory_map_matches_published_exactly(mnist):
    compiled = fpga.compile_network(mnist, "arria10soc_single")
    print(compiled.format())
    assert compiled.memory_map.rows() == PUBLISHED_MNIST_MAP
    mm = compiled.memory_map
    assert 30 * 28 * 28 * 4 * 4 == 376_320 and mm["InputDataOffset"].size == math.ceil(376_320 / 4096) * 4096
    assert mm.total == 1192 * 1024
    assert "ConvWeightDataOffset" not in mm
    for r in mm.regions:
        assert r.offset % 4096 == 0 and r.size % 4096 == 0
    # every region starts where the previous ends, in MATLAB's order
    names = [r.name for r in mm.regions]
    assert names == [n for n in fpga.compile.REGION_NAMES if n in names]
    assert all(a.end == b.offset for a, b in zip(mm.regions, mm.regions[1:]))


def test_mnist_placement_and_weight_images(mnist):
    compiled = fpga.compile_network(mnist, "arria10soc_single")
    placement = {p.name: p.placement for p in compiled.layers}
    assert placement["imageinput"] == "SW Layer" and placement["softmax"] == "SW Layer"
    assert placement["dense_6_relu_6"] == "HW Layer" and placement["dense_8"] == "HW Layer"
    assert [leg.module for leg in compiled.legs] == ["fc"]
    img = compiled.weight_images["dense_6_relu_6"]
    # flatten of 28x28x1 padded to 4 channels: 3,136 input rows, padding planes at the end
    assert img.weights.shape == (3136, 64) and img.weights.dtype == np.float32
    np.testing.assert_array_equal(img.weights[:784], mnist.constant("w6"))
    assert not img.weights[784:].any()
    assert compiled.weight_images["dense_8"].weights.shape == (32, 12)  # outputs padded to FCThreadNumber
    fc_bytes = sum(i.nbytes for i in compiled.weight_images.values())
    assert math.ceil(fc_bytes / 4096) * 4096 == 796 * 1024


def test_instruction_stream_encoding(mnist):
    compiled = fpga.compile_network(mnist, "arria10soc_single")
    blob = compiled.instructions.tobytes()
    magic, version, count = struct.unpack_from("<8sII", blob)
    assert (magic, version, count) == (b"QSDLPI01", 1, compiled.instruction_count)
    assert len(blob) == 64 + 32 * count
    ops = [struct.unpack_from("<HH7I", blob, 64 + 32 * i)[0] for i in range(count)]
    codes = fpga.compile.OPCODES
    assert ops[0] == codes["LEG_BEGIN"] and ops[-1] == codes["END"]
    assert ops.count(codes["FC_COMPUTE"]) == 3 and ops.count(codes["FC_PREFETCH_WEIGHTS"]) == 2


# ------------------------------------------------------------------ typed instructions

#: sha256 of the MNIST stream on arria10soc_single as compile.py encoded it before the
#: instructions were typed (tagged tuples); the typed encoder writes the same bytes.
MNIST_STREAM_SHA256 = "167cf909b7283a450838972b9976f9a141b8f1ee3c04a4bc177ccff0864b8f65"


def residual_net():
    """conv -> depthwise conv + Clip -> pointwise conv, residual Add, Mul, AveragePool,
    MaxPool, GlobalMaxPool, Flatten, Gemm (transB), Reshape to 4-D, conv, Flatten, Gemm:
    legs conv, fc, conv, fc and every conv-module and adder opcode but GLOBALPOOL's average."""
    rng = np.random.default_rng(3)
    f = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    init = {
        "w1": f(16, 3, 3, 3),
        "wdw": f(16, 1, 3, 3),
        "w2": f(16, 16, 1, 1),
        "fcw": f(24, 16),
        "shape4": np.array([0, 24, 1, 1], np.int64),
        "w3": f(12, 24, 1, 1),
        "fc2w": f(12, 7),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "wdw"], ["dw"], name="dw", pads=[1, 1, 1, 1], group=16),
        helper.make_node("Clip", ["dw"], ["dwr"], name="relu6"),
        helper.make_node("Conv", ["dwr", "w2"], ["c2"], name="pw"),
        helper.make_node("Add", ["c2", "r1"], ["res"], name="residual"),
        helper.make_node("Mul", ["res", "r1"], ["m"], name="gate"),
        helper.make_node("AveragePool", ["m"], ["ap"], name="avg", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("MaxPool", ["ap"], ["mp"], name="maxp", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalMaxPool", ["mp"], ["g"], name="gmp"),
        helper.make_node("Flatten", ["g"], ["fl"], name="flat"),
        helper.make_node("Gemm", ["fl", "fcw"], ["d"], name="dense", transB=1),
        helper.make_node("Reshape", ["d", "shape4"], ["r4"], name="to4d"),
        helper.make_node("Conv", ["r4", "w3"], ["c3"], name="conv3"),
        helper.make_node("Flatten", ["c3"], ["fl2"], name="flat2"),
        helper.make_node("Gemm", ["fl2", "fc2w"], ["y"], name="dense2"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 40, 40])], [tensor("y", ["N", 7])], init, name="residual")
    return quantscope.prepare(model)


@pytest.mark.parametrize("bitstream", ["arria10soc_single", "zcu102_int8"])
@pytest.mark.parametrize("which", ["mnist", "small_cnn", "residual", "squeezenet"])
def test_instructions_decode_and_encode_to_the_same_records(which, bitstream, mnist, squeeze):
    from quantscope.fpga.compile import Header, Instruction, decode_stream, encode_stream

    net = {"mnist": lambda: mnist, "small_cnn": lambda: quantscope.prepare(small_cnn()), "residual": residual_net}
    compiled = fpga.compile_network(squeeze if which == "squeezenet" else net[which](), bitstream)
    blob = compiled.instructions.tobytes()
    header, program = decode_stream(blob)
    assert header == Header(compiled.instruction_count, len(compiled.network.layers), len(compiled.legs), 30)
    assert program == list(compiled.program) and len(program) == compiled.instruction_count
    for i, instruction in enumerate(program):
        record = blob[64 + 32 * i : 96 + 32 * i]
        # the record is the documented struct "<HH7I": opcode, index, the operands, zeros after them
        opcode, index, *operands = struct.unpack("<HH7I", record)
        used = instruction.operands()
        assert (opcode, index) == (instruction.OPCODE, instruction.index())
        assert tuple(operands) == used + (0,) * (7 - len(used))
        assert instruction.encode() == instruction.tobytes() == record
        assert Instruction.decode(record) == instruction
    assert header.encode() == blob[:64]
    again = encode_stream(program, layers=header.layers, legs=header.legs, frame_limit=header.frame_limit)
    assert again.tobytes() == blob and again.dtype == np.uint8


def test_typed_instructions_write_the_bytes_of_the_tagged_tuples(mnist):
    import hashlib

    compiled = fpga.compile_network(mnist, "arria10soc_single")
    assert hashlib.sha256(compiled.instructions.tobytes()).hexdigest() == MNIST_STREAM_SHA256
    names = [type(i).__name__ for i in compiled.program]
    assert names == [
        "LegBegin",
        "FcLoadInput",
        "FcLoadWeights",
        "FcCompute",
        "FcPrefetchWeights",
        "FcCompute",
        "FcPrefetchWeights",
        "FcCompute",
        "FcStoreOutput",
        "LegEnd",
        "End",
    ]


def test_residual_network_uses_the_conv_module_and_adder_opcodes():
    from quantscope.fpga.compile import Opcode

    compiled = fpga.compile_network(residual_net(), "zcu102_int8")
    assert [leg.module for leg in compiled.legs] == ["conv", "fc", "conv", "fc"]
    opcodes = {i.OPCODE for i in compiled.program}
    for op in ("CONV", "ADD", "MUL", "AVGPOOL", "MAXPOOL", "GLOBALPOOL", "FC_COMPUTE", "FC_LOAD_WEIGHTS"):
        assert Opcode[op] in opcodes
    add = next(i for i in compiled.program if i.OPCODE == Opcode.ADD)
    assert add.input and add.second_input and add.input != add.second_input and add.weight_bytes == 0


_u16, _u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_instruction_round_trips_through_its_record(data):
    from quantscope.fpga.compile import instructions as ins

    cls = data.draw(st.sampled_from(sorted(ins.INSTRUCTION_CLASSES.values(), key=lambda c: c.OPCODE)))
    fields = dataclasses.fields(cls)
    if cls is ins.LegBegin:
        value = cls(data.draw(_u16), data.draw(st.sampled_from([fpga.Module.CONV, fpga.Module.FC])))
    else:
        value = cls(*[data.draw(_u16 if k == 0 else _u32) for k in range(len(fields))])
    record = value.encode()
    assert len(record) == 32 and ins.Instruction.decode(record) == value


def test_decoding_refuses_what_is_not_an_instruction():
    from quantscope.fpga.compile import FcCompute, Instruction, decode_stream

    with pytest.raises(ValueError, match="unknown opcode 0x99"):
        Instruction.decode(struct.pack("<HH7I", 0x99, 0, *[0] * 7))
    with pytest.raises(ValueError, match="does not use"):
        Instruction.decode(struct.pack("<HH7I", FcCompute.OPCODE, 3, 1, 5, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="32 bytes"):
        Instruction.decode(b"\x00" * 31)
    with pytest.raises(ValueError, match="magic"):
        decode_stream(b"NOTASTRM" + bytes(56))
    with pytest.raises(ValueError, match="announces 2 instructions"):
        decode_stream(struct.pack("<8sIIIII", b"QSDLPI01", 1, 2, 1, 1, 30) + bytes(36))


def test_placement_and_module_enums_print_as_the_strings(mnist):
    compiled = fpga.compile_network(mnist, "arria10soc_single")
    assert [p.value for p in fpga.Placement] == ["SW Layer", "HW Layer"]
    placements = [p.placement for p in compiled.layers]
    assert set(placements) == {fpga.Placement.SW, fpga.Placement.HW}
    assert "(SW Layer)" in compiled.format() and "(HW Layer)" in compiled.format()
    table = compiled.layer_table
    assert set(table["Placement"].map(str)) == {"SW Layer", "HW Layer"}
    assert "HW Layer" in table.to_string() and "Module.FC" not in table.to_string()
    assert compiled.legs[0].module is fpga.Module.FC and compiled.legs[0].name == "fc_module"
    assert [m.unit_name for m in fpga.Module] == ["conv_module", "fc_module", "adder_module"]
    assert fpga.Module.ADDER.group is fpga.Module.CONV
    # the map's rows are plain text, as MATLAB prints them
    assert all(type(cell) is str for row in compiled.memory_map.rows() for cell in row)
    assert compiled.memory_map[fpga.compile.RegionName.INPUT_DATA] is compiled.memory_map["InputDataOffset"]


def test_option_strings_are_converted_to_enums():
    row = fpga.ProfileRow("Network", 0, "network", 1)
    assert row.kind is fpga.RowKind.NETWORK
    with pytest.raises(ValueError):
        fpga.ProfileRow("x", 0, "nonsense", 1)
    board = fpga.Board("b", "dev", "intel", 1, 1, 1, 1, "ALM")
    assert board.family is fpga.Family.INTEL
    with pytest.raises(ConfigurationError, match="family"):
        fpga.Board("b", "dev", "lattice", 1, 1, 1, 1, "LUT")


def test_yolov8n_input_region_on_64_thread_int8():
    # docs/published.md: 30 x 640 x 640 x 8 padded channels x 1 B = 93.8 MB
    net = conv_net(size=640, cin=3, cout=16, k=3, stride=2)
    cfg = fpga.processor("zcu102_int8")
    assert cfg.conv.thread_number == 64 and cfg.channel_multiple == 8
    mm = fpga.compile_network(net, cfg).memory_map
    assert mm["InputDataOffset"].size == 30 * 640 * 640 * 8 * 1
    assert mm.rows()[0] == ("InputDataOffset", "0x00000000", "93.8 MB")


def test_format_size():
    assert fpga.format_size(0) == "0.0 kB"
    assert fpga.format_size(376832) == "368.0 kB"
    assert fpga.format_size(1192 * 1024, total=True) == "Total: 1192.0 kB"
    assert fpga.format_size(98_304_000) == "93.8 MB"


# ------------------------------------------------------------------ profile (published)

PUBLISHED_PROFILE = """\
              Deep Learning Processor Profiler Performance Results
            LastFrameLatency(cycles)  LastFrameLatency(seconds)  FramesNum  Total Latency  Frames/s
Network              17653                   0.00012                 1          18121       8277.7
    dense_6          17368                   0.00012
    dense_7            160                   0.00000
    dense_8            123                   0.00000
 * The clock frequency of the DL processor is: 150MHz"""


def test_profile_format_reproduces_published_layout():
    layers = tuple(
        cycles.LayerCost(name=n, label=n, kind="fc", module="fc", cycles=c)
        for n, c in [("dense_6", 17368), ("dense_7", 160), ("dense_8", 123)]
    )
    rows = (fpga.ProfileRow("Network", 0, "network", 17653),) + tuple(
        fpga.ProfileRow(c.label, 1, "layer", c.cycles, c.name) for c in layers
    )
    profile = fpga.Profile("arria10soc_single", 150e6, 1, layers, rows)
    assert profile.network_cycles == 17653 and profile.total_latency == 18121
    assert profile.format() == PUBLISHED_PROFILE


def test_mnist_frames_per_second_close_to_published(mnist):
    profile = fpga.estimate_performance(mnist, "arria10soc_single")
    print(profile.format())
    fps = profile.frames_per_second
    print(f"MNIST FC on arria10soc_single: estimated {fps:.1f} Frames/s, published 8277.7 ({fps / 8277.7 - 1:+.2%})")
    assert abs(fps / 8277.7 - 1) < 0.15
    assert [r.label for r in profile.rows] == ["Network", "dense_6", "dense_7", "dense_8"]
    # dense_7 and dense_8 prefetched during the previous layer, as observed
    assert [c.prefetched for c in profile.layers] == [False, True, True]
    for label, published in [("dense_6", 17368), ("dense_7", 160), ("dense_8", 123), ("Network", 17653)]:
        est = profile.cycles_of(label)
        print(f"  {label}: estimated {est} cycles, published {published} ({est / published - 1:+.1%})")
        assert abs(est / published - 1) < 0.15


def check_profile_arithmetic(profile: fpga.Profile, clock_hz: float, frames: int):
    table = profile.table
    for _, row in table.iterrows():
        assert row["LastFrameLatency(seconds)"] == row["LastFrameLatency(cycles)"] / clock_hz
    layer_rows = [r for r in profile.rows if r.kind == "layer"]
    assert profile.network_cycles == sum(r.cycles for r in layer_rows) + cycles.NETWORK_OVERHEAD_CYCLES
    assert profile.total_latency == frames * (profile.network_cycles + cycles.FRAME_OVERHEAD_CYCLES)
    net = table.loc["Network"]
    assert net["FramesNum"] == frames and net["Total Latency"] == profile.total_latency
    assert net["Frames/s"] == pytest.approx(frames * clock_hz / profile.total_latency, rel=1e-12)
    # module rows are the sum of the layers under them
    current, total = None, 0
    for r in list(profile.rows[1:]) + [fpga.ProfileRow("end", 1, "module", 0)]:
        if r.kind == "module":
            if current is not None:
                assert current.cycles == total
            current, total = r, 0
        elif r.kind == "layer":
            total += r.cycles


@pytest.mark.parametrize("frames", [1, 7])
def test_profile_arithmetic_mnist(mnist, frames):
    profile = fpga.estimate_performance(mnist, "arria10soc_single", frames=frames)
    check_profile_arithmetic(profile, 150e6, frames)


def test_profile_frames_validated(mnist):
    with pytest.raises(ConfigurationError, match="frames"):
        fpga.estimate_performance(mnist, "arria10soc_single", frames=0)


# ------------------------------------------------------------------ SqueezeNet


def test_squeezenet_on_zcu102_int8(squeeze):
    compiled = fpga.compile_network(squeeze, "zcu102_int8")
    print(compiled.memory_map.format())
    profile = fpga.profile_compiled(compiled, frames=2)
    print(profile.format())
    mm = compiled.memory_map
    assert [r.name for r in mm.regions] == [
        "InputDataOffset",
        "OutputResultOffset",
        "SchedulerDataOffset",
        "SystemBufferOffset",
        "InstructionDataOffset",
        "ConvWeightDataOffset",
    ]
    assert mm["InputDataOffset"].size == math.ceil(30 * 227 * 227 * 8 / 4096) * 4096  # 3 channels padded to 8, int8
    assert mm["OutputResultOffset"].size == math.ceil(30 * 1000 / 4096) * 4096
    assert mm["SchedulerDataOffset"].size > 0
    conv1 = compiled.weight_images["conv1_relu_conv1"]
    assert conv1.weights.dtype == np.int8 and conv1.weights.shape == (64, 8, 3, 3) and conv1.bias.dtype == np.int32
    assert not conv1.weights[:, 3:].any()
    # placement: data + normalization on the host, flatten + softmax after the last HW layer too
    sw = [p.name for p in compiled.software_layers]
    assert sw == ["data", "data_normalization", "flatten", "prob"]
    assert [r.label for r in profile.rows[:3]] == ["Network", "conv_module", "conv1"]
    assert "fire2-concat" not in [r.label for r in profile.rows]  # Concat is written in place
    check_profile_arithmetic(profile, 250e6, 2)
    assert 1 < profile.frames_per_second < 1000


# ------------------------------------------------------------------ errors


def test_softmax_in_the_middle_is_unsupported():
    net = conv_net(tail="softmax_mid")
    with pytest.raises(UnsupportedModelError, match="mid_softmax") as err:
        fpga.compile_network(net, "zcu102_int8")
    assert ("mid_softmax", "Softmax") in err.value.nodes
    assert "conv2" in str(err.value)


def test_layer_kind_without_module_is_unsupported():
    net = conv_net(tail="sigmoid_mid")
    with pytest.raises(UnsupportedModelError, match=r"1 LRN layer, which the processor has no module for \('lrn1'\)"):
        fpga.estimate_performance(net, "zcu102_single")


def test_every_unsupported_layer_is_named_at_once_grouped_by_kind():
    rng = np.random.default_rng(0)
    nodes, init, prev = [], {}, "x"
    for i in range(3):
        init[f"w{i}"] = (rng.standard_normal((4, 4 if i else 3, 3, 3)) * 0.2).astype(np.float32)
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        act = "Elu" if i < 2 else "Softplus"
        nodes.append(helper.make_node(act, [f"c{i}"], [f"a{i}"], name=f"act{i}"))
        prev = f"a{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["y"], name="gap"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3, 16, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4, 1, 1])],
        [onnx.numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedModelError) as err:
        fpga.compile_network(quantscope.prepare(model), "zcu102_int8")
    text = str(err.value)
    assert "(3 layers)" in text
    assert "1 Softplus layer, which the processor has no module for ('act2')" in text
    assert "2 Elu layers, which the processor has no module for ('act0', 'act1')" in text
    assert 'target="cpu"' in text
    assert sorted(err.value.nodes) == [("act0", "Elu"), ("act1", "Elu"), ("act2", "Softplus")]
    # on the command line the advice names the flags, not Python calls
    token = INTERFACE.set("cli")
    try:
        with pytest.raises(UnsupportedModelError) as err:
            fpga.compile_network(quantscope.prepare(model), "zcu102_int8")
    finally:
        INTERFACE.reset(token)
    assert "--target cpu, without --bitstream" in str(err.value)
    assert "quantize(" not in str(err.value) and "target=" not in str(err.value)


def test_a_channels_last_input_names_the_export_option():
    """tf2onnx's default export transposes NHWC frames first: the error says how to
    export NCHW input instead of only listing Transpose as a kind without a module."""
    init = {"cw": (np.random.default_rng(0).standard_normal((4, 3, 3, 3)) * 0.2).astype(np.float32)}
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2], name="model/conv2d/Conv2D__6"),
        helper.make_node("Conv", ["t", "cw"], ["c"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["y"], name="relu1"),
    ]
    model = make_model(nodes, [tensor("x", [None, 16, 16, 3])], [tensor("y", [None, 4, 16, 16])], init)
    with pytest.raises(UnsupportedModelError, match="--inputs-as-nchw") as err:
        fpga.compile_network(quantscope.prepare(model), "zcu102_int8")
    assert "'model/conv2d/Conv2D__6'" in str(err.value)


def test_cost_table_never_counts_an_unknown_kind_as_zero():
    info = cycles.LayerInfo(name="x", label="x", kind="LSTM", in_shapes=((4, 1, 1),), out_shape=(4, 1, 1))
    with pytest.raises(UnsupportedModelError, match="LSTM"):
        cycles.layer_cost(info, fpga.ProcessorConfig())
    for kind in cycles.MODULE_OF:
        assert cycles.COSTS[kind] is not cycles.fused, kind


def test_activation_larger_than_feature_size_limit():
    net = conv_net(size=64)
    cfg = fpga.processor("zcu102_single").with_changes(conv_feature_size_limit=32)
    with pytest.raises(UnsupportedModelError, match="conv1_relu1.*FeatureSizeLimit is 32"):
        fpga.compile_network(net, cfg)


def test_buffer_too_small():
    net = conv_net(size=32)
    cfg = fpga.processor("zcu102_single").with_changes(conv_input_memory_size=(2, 8, 1))
    with pytest.raises(UnsupportedModelError, match="conv1_relu1.*InputMemorySize"):
        fpga.compile_network(net, cfg)


def _dynamic_size_conv() -> onnx.ModelProto:
    """One Conv whose input has symbolic H and W."""
    return make_model(
        [helper.make_node("Conv", ["x", "cw"], ["y"], name="conv1", pads=[1] * 4)],
        [tensor("x", ["N", 3, "H", "W"])],
        [tensor("y", ["N", 4, "H", "W"])],
        {"cw": np.zeros((4, 3, 3, 3), np.float32)},
    )


def test_dynamic_spatial_size_is_unsupported():
    model = _dynamic_size_conv()
    with pytest.raises(UnsupportedModelError, match="fixed input size"):
        fpga.compile_network(quantscope.prepare(model), "zcu102_int8")
    # the configuration search says why nothing fits, not only that nothing does
    search = fpga.optimize_config(quantscope.prepare(model), "zcu102", 10, conv_threads=[4, 16])
    with pytest.raises(ConfigurationError, match=r"^the shape of 'x'.*fixed input size"):
        _ = search.config


# ------------------------------------------------------------------ properties of the cycle model

conv_geometry = st.builds(
    dict,
    cin=st.integers(1, 96),
    cout=st.integers(1, 96),
    size=st.integers(4, 120),
    k=st.sampled_from([1, 3, 5, 7]),
    stride=st.sampled_from([1, 2]),
    depthwise=st.booleans(),
)


def conv_info(g: dict, kind: str = "conv") -> cycles.LayerInfo:
    cin, k, s, size = g["cin"], g["k"], g["stride"], g["size"]
    cout = cin if (g["depthwise"] or kind != "conv") else g["cout"]
    groups = cin if (g["depthwise"] and kind == "conv") else 1
    pad = k // 2
    out = (size + 2 * pad - k) // s + 1
    return cycles.LayerInfo(
        name="L",
        label="L",
        kind=kind,
        in_shapes=((cin, size, size),),
        out_shape=(cout, out, out),
        kernel=(k, k),
        strides=(s, s),
        pads=(pad, pad, pad, pad),
        groups=groups,
    )


@settings(max_examples=60, deadline=None)
@given(
    g=conv_geometry,
    kind=st.sampled_from(["conv", "MaxPool", "GlobalAveragePool", "Add", "Sigmoid"]),
    dtype=st.sampled_from(["int8", "single"]),
)
def test_more_conv_threads_never_cost_more(g, kind, dtype):
    info = conv_info(g, kind)
    base = fpga.ProcessorConfig(data_type=dtype)
    costs = [cycles.layer_cost(info, base.with_changes(conv_thread_number=t)).cycles for t in CONV_THREAD_NUMBERS]
    assert all(a >= b for a, b in zip(costs, costs[1:])), costs
    # doubling the thread array's side (4 -> 16 -> 64 threads) in particular
    assert costs[0] >= costs[2] >= costs[-1]


@settings(max_examples=40, deadline=None)
@given(g=conv_geometry, kind=st.sampled_from(["conv", "MaxPool", "GlobalAveragePool", "Add", "Sigmoid"]))
def test_smaller_buffers_never_cost_less(g, kind):
    info = conv_info(g, kind)
    big = fpga.ProcessorConfig()
    small = big.with_changes(
        conv_input_memory_size=(16, 16, 8), conv_output_memory_size=(16, 16, 8), adder_input_memory_size=4
    )
    try:
        small_cost = cycles.layer_cost(info, small)
    except UnsupportedModelError:
        return  # a row does not fit the small memories at all
    big_cost = cycles.layer_cost(info, big)
    assert small_cost.cycles >= big_cost.cycles
    if small_cost.tiling.tiles > big_cost.tiling.tiles:
        assert small_cost.cycles > big_cost.cycles


@settings(max_examples=30, deadline=None)
@given(fc_in=st.integers(1, 60000), fc_out=st.integers(1, 9000), threads=st.sampled_from([4, 8, 16, 32, 64]))
def test_fc_tiling_and_threads(fc_in, fc_out, threads):
    info = cycles.LayerInfo(
        name="fc",
        label="fc",
        kind="fc",
        in_shapes=((fc_in, 1, 1),),
        out_shape=(fc_out, 1, 1),
        fc_in=fc_in,
        fc_out=fc_out,
        fc_in_padded=fc_in,
        fc_out_padded=fc_out,
    )
    base = fpga.ProcessorConfig()
    more = base.with_changes(fc_thread_number=threads)
    assert cycles.layer_cost(info, more).cycles <= cycles.layer_cost(info, base).cycles
    small = base.with_changes(fc_input_memory_size=512, fc_output_memory_size=256)
    assert cycles.layer_cost(info, small).cycles >= cycles.layer_cost(info, base).cycles


def test_network_that_does_not_fit_costs_more(squeeze):
    fits = fpga.processor("zcu102_int8")
    tight = fits.with_changes(conv_input_memory_size=(56, 56, 8), conv_output_memory_size=(56, 56, 8))
    a, b = fpga.estimate_performance(squeeze, fits), fpga.estimate_performance(squeeze, tight)
    assert b.network_cycles > a.network_cycles
    tiles_a = sum(c.tiling.tiles for c in a.layers)
    tiles_b = sum(c.tiling.tiles for c in b.layers)
    assert tiles_b > tiles_a
    for ca, cb in zip(a.layers, b.layers):
        assert cb.cycles >= ca.cycles, ca.name


def test_doubling_threads_on_a_network(squeeze):
    cfg = fpga.processor("zcu102_single")
    p16 = fpga.estimate_performance(squeeze, cfg)
    p64 = fpga.estimate_performance(squeeze, cfg.with_changes(conv_thread_number=64))
    for a, b in zip(p16.layers, p64.layers):
        assert b.cycles <= a.cycles, a.name
    assert p64.network_cycles < p16.network_cycles


@pytest.mark.parametrize("bitstream", ["arria10soc_single", "zcu102_int8"])
def test_halving_the_clock_doubles_the_seconds(mnist, squeeze, bitstream):
    net = mnist if bitstream.endswith("single") else squeeze
    cfg = fpga.processor(bitstream)
    half = cfg.with_changes(target_frequency_mhz=cfg.target_frequency_mhz / 2)
    a, b = fpga.estimate_performance(net, cfg, frames=3), fpga.estimate_performance(net, half, frames=3)
    assert [r.cycles for r in a.rows] == [r.cycles for r in b.rows]
    for sa, sb in zip(a.table["LastFrameLatency(seconds)"], b.table["LastFrameLatency(seconds)"]):
        assert sb == pytest.approx(2 * sa, rel=1e-12)
    assert b.frames_per_second == pytest.approx(a.frames_per_second / 2, rel=1e-12)


# ------------------------------------------------------------------ resources


def test_resources_reproduce_published_calibration_points():
    zcu = fpga.estimate_resources("zcu102_single")
    print(zcu)
    assert tuple(zcu.loc["DL_Processor", ["DSPs", "Block RAM", "LUTs"]]) == (377, 508, 234175)
    assert tuple(zcu.loc["Available", ["DSPs", "Block RAM", "LUTs"]]) == (2520, 912, 274080)
    custom = fpga.processor("arria10soc_single").with_changes(
        conv_thread_number=4,
        conv_input_memory_size=(28, 28, 1),
        conv_output_memory_size=(10, 10, 1),
        conv_feature_size_limit=1024,
        fc_input_memory_size=1024,
        fc_output_memory_size=1024,
    )
    arria = fpga.estimate_resources(custom)
    assert tuple(arria.loc["DL_Processor", ["DSPs", "Block RAM bits", "LUTs"]]) == (231, 16_442_624, 117_943)
    shipped = fpga.estimate_resources("arria10soc_single")
    print(shipped)
    dsp, lut = shipped.loc["DL_Processor", "DSPs"], shipped.loc["DL_Processor", "LUTs"]
    print(
        f"arria10soc_single: estimated {dsp} DSP (published 278, {dsp / 278 - 1:+.0%}), "
        f"{lut} LUT-equivalents (published 93,578 ALM, {lut / 93578 - 1:+.0%})"
    )
    assert shipped.loc["Available", "DSPs"] == 1687 and shipped.loc["Available", "LUTs"] == 251680
    assert 0.5 < dsp / 278 < 1.5


def test_resources_grow_with_threads():
    cfg = fpga.processor("zcu102_int8")
    prev = None
    for t in CONV_THREAD_NUMBERS:
        r = fpga.estimate_resources(cfg.with_changes(conv_thread_number=t)).loc["DL_Processor"]
        if prev is not None:
            assert r["DSPs"] > prev["DSPs"] and r["LUTs"] > prev["LUTs"]
        prev = r
    for name in fpga.PRESETS:  # every shipping preset fits its device
        df = fpga.estimate_resources(name)
        assert (df.loc["DL_Processor"] <= df.loc["Available"]).all(), name


# ------------------------------------------------------------------ simulated board


def test_workflow_deploy_predict_and_profile(mnist):
    lines: list[str] = []
    calls = []

    def run_int8(x):
        calls.append(x.shape)
        return np.zeros((x.shape[0], 10), np.float32)

    wf = fpga.Workflow(mnist, bitstream="arria10soc_single", run_int8=run_int8, print_fn=lines.append)
    wf.deploy()
    text = "\n".join(lines)
    assert "### Programming FPGA Bitstream" in text
    assert "### Loading weights to FC Processor." in text and "Conv Processor" not in text
    assert "### Deploying instructions" in text and '"FCWeightDataOffset"' in text
    compiled = wf.compiled
    board = wf.target
    fc = compiled.memory_map["FCWeightDataOffset"]
    assert board.read(fc.offset, fc.size) == compiled.fc_weight_bytes()
    ins = compiled.memory_map["InstructionDataOffset"]
    assert board.read(ins.offset, compiled.instructions.size) == compiled.instructions.tobytes()
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    out, profile = wf.predict(x)
    assert out.shape == (5, 10) and calls == [(5, 1, 28, 28)]
    assert profile.frames == 5
    est = wf.estimate_performance(frames=5)
    assert est.total_latency == profile.total_latency
    out1, none = wf.predict(x[0], profile=False)
    assert none is None and calls[-1] == (1, 1, 28, 28)
    with pytest.raises(ConfigurationError, match="does not match"):
        wf.predict(np.zeros((2, 3, 28, 28), np.float32))


def test_predict_without_int8_emulator_says_what_is_needed(mnist):
    wf = fpga.Workflow(mnist, print_fn=lambda s: None)
    assert wf.bitstream == "arria10soc_int8"
    with pytest.raises(fpga.QuantizedNetworkRequired, match="quantized network") as err:
        wf.predict(np.zeros((1, 1, 28, 28), np.float32))
    assert isinstance(err.value, QuantscopeError) and isinstance(err.value, NotImplementedError)


def test_workflow_with_conv_network_and_rich_console():
    from rich.console import Console

    console = Console(record=True, width=200)
    net = quantscope.prepare(small_cnn())
    wf = fpga.Workflow(net, bitstream="zc706_int8", print_fn=console)
    wf.deploy()
    text = console.export_text()
    assert "### Loading weights to Conv Processor." in text and "### Loading weights to FC Processor." in text
    profile = wf.estimate_performance(frames=2)
    labels = [r.label for r in profile.rows]
    assert labels[:2] == ["Network", "conv_module"] and "fc_module" in labels
    check_profile_arithmetic(profile, 200e6, 2)
    print(profile.format())


def test_fc_on_a_multidimensional_activation_is_unsupported():
    init = {"w": np.zeros((8, 4), np.float32)}
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [tensor("x", ["N", 3, 8, 8])],
        [tensor("y", ["N", 3, 8, 4])],
        init,
    )
    with pytest.raises(UnsupportedModelError, match="mm.*vector"):
        fpga.compile_network(quantscope.prepare(model), "zcu102_single")


def test_int8_weight_images_take_the_quantizer_weights(mnist):
    q6 = np.arange(784 * 64, dtype=np.int64).reshape(784, 64) % 100 - 50
    compiled = fpga.compile_network(
        mnist, "arria10soc_int8", quantized={"dense_6_relu_6": (q6.astype(np.int8), np.arange(64), -7)}
    )
    img = compiled.weight_images["dense_6_relu_6"]
    assert img.weights.dtype == np.int8 and img.bias.dtype == np.int32 and img.exponent == -7
    np.testing.assert_array_equal(img.weights[:784], q6)
    assert not img.weights[784:].any()
    # a layer without given weights gets the power-of-two stand-in, same layout
    assert compiled.weight_images["dense_7_relu_7"].weights.shape == (64, 32)
    # int8 FC weights: 1 B each (+ int32 biases); input region 30 x 28 x 28 x 8 (64 threads: N = 8) words of
    # 4 B on arria10soc_int8, in 4 MiB units; 1 B words in 4 KiB units on zcu102_int8
    assert compiled.memory_map["InputDataOffset"].size == 4 * 2**20
    other = fpga.compile_network(mnist, "zcu102_int8")
    assert other.memory_map["InputDataOffset"].size == math.ceil(30 * 28 * 28 * 8 / 4096) * 4096


def yolov8n_conv_layers() -> list[cycles.LayerInfo]:
    """YOLOv8n at 640x640 (width 0.25, depth 0.33): its convolutions, SPPF max pools
    and bottleneck adds as LayerInfo, without an ONNX model (the whole network, SiLU
    and Resize included, is quantscope.zoo.yolov8n: tests/test_fpga_models.py and
    benchmarks/fpga_published.py)."""
    layers: list[cycles.LayerInfo] = []

    def conv(cin, cout, k, s, size):
        pad = k // 2
        out = (size + 2 * pad - k) // s + 1
        layers.append(
            cycles.LayerInfo(
                name=f"conv{len(layers)}",
                label="c",
                kind="conv",
                in_shapes=((cin, size, size),),
                out_shape=(cout, out, out),
                kernel=(k, k),
                strides=(s, s),
                pads=(pad,) * 4,
            )
        )
        return out

    def c2f(cin, cout, n, size, shortcut=True):
        c = cout // 2
        conv(cin, 2 * c, 1, 1, size)
        for _ in range(n):
            conv(c, c, 3, 1, size)
            conv(c, c, 3, 1, size)
            if shortcut:
                layers.append(
                    cycles.LayerInfo(
                        name=f"add{len(layers)}",
                        label="a",
                        kind="Add",
                        in_shapes=((c, size, size),) * 2,
                        out_shape=(c, size, size),
                    )
                )
        conv((2 + n) * c, cout, 1, 1, size)

    s = conv(3, 16, 3, 2, 640)
    s = conv(16, 32, 3, 2, s)
    c2f(32, 32, 1, s)
    s = conv(32, 64, 3, 2, s)
    c2f(64, 64, 2, s)
    s = conv(64, 128, 3, 2, s)
    c2f(128, 128, 2, s)
    s = conv(128, 256, 3, 2, s)
    c2f(256, 256, 1, s)
    conv(256, 128, 1, 1, s)
    for _ in range(3):
        layers.append(
            cycles.LayerInfo(
                name=f"pool{len(layers)}",
                label="p",
                kind="MaxPool",
                in_shapes=((128, s, s),),
                out_shape=(128, s, s),
                kernel=(5, 5),
                pads=(2,) * 4,
            )
        )
    conv(512, 256, 1, 1, s)
    c2f(384, 128, 1, 40, False)
    c2f(192, 64, 1, 80, False)
    conv(64, 64, 3, 2, 80)
    c2f(192, 128, 1, 40, False)
    conv(128, 128, 3, 2, 40)
    c2f(384, 256, 1, 20, False)
    for ch, size in [(64, 80), (128, 40), (256, 20)]:
        for c_mid in (64, 80):
            conv(ch, c_mid, 3, 1, size)
            conv(c_mid, c_mid, 3, 1, size)
            conv(c_mid, c_mid, 1, 1, size)
    return layers


def test_yolov8n_conv_layers_order_of_magnitude():
    # Published: 34,269,889 cycles per frame (custom ZCU102 int8 bitstream, 64 threads, 250 MHz) for the
    # whole network; these layers alone are a sanity check (the whole network: benchmarks/fpga_published.py).
    cfg = fpga.processor("zcu102_int8")
    layers = yolov8n_conv_layers()
    macs = sum(
        i.out_shape[0] * i.out_shape[1] * i.out_shape[2] * (i.in_shapes[0][0] // i.groups) * i.kernel[0] * i.kernel[1]
        for i in layers
        if i.kind == "conv"
    )
    assert round(macs / 1e9, 2) == 4.37  # YOLOv8n: 8.7 GFLOPs
    total = sum(cycles.layer_cost(i, cfg).cycles for i in layers) + cycles.NETWORK_OVERHEAD_CYCLES
    print(
        f"YOLOv8n conv/pool/add layers on zcu102_int8: {total} cycles, "
        f"published network 34,269,889 ({total / 34269889 - 1:+.0%})"
    )
    assert 0.4 < total / 34_269_889 < 1.5


def test_the_refusal_advises_for_the_kinds_it_names():
    """The advice fits the missing kinds: a BatchNormalization after a ReLU (it folds
    only into the Conv before it) is not told to change its activations, an Elu is."""
    rng = np.random.default_rng(0)
    init = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        **{k: rng.uniform(0.5, 1.5, 4).astype(np.float32) for k in ("scale", "bias", "mean", "var")},
    }

    def net(activation: str, bn_after: bool):
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node(activation, ["c"], ["a"], name="act"),
            helper.make_node("BatchNormalization", ["a", "scale", "bias", "mean", "var"], ["b"], name="bn")
            if bn_after
            else helper.make_node("Identity", ["a"], ["b"], name="same"),
            helper.make_node("GlobalAveragePool", ["b"], ["y"], name="gap"),
        ]
        return quantscope.prepare(make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 1, 1])], init))

    with pytest.raises(UnsupportedModelError) as bn:
        fpga.estimate_performance(net("Relu", True), "zcu102_int8")
    assert "place it after the convolution" in str(bn.value) and "activations the processor has" not in str(bn.value)
    with pytest.raises(UnsupportedModelError) as elu:
        fpga.estimate_performance(net("Elu", False), "zcu102_int8")
    assert "in place of Elu" in str(elu.value) and "BatchNormalization" not in str(elu.value)


def test_cli_optimize_says_once_why_no_configuration_can_run_the_network(tmp_path, capsys):
    from quantscope.cli import main

    model = _dynamic_size_conv()
    onnx.save(model, tmp_path / "dyn.onnx")
    assert main(["optimize", str(tmp_path / "dyn.onnx"), "--board", "zcu102", "--fps", "30"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("symbolic dimension") == 1, captured
