"""quantscope's FPGA processor model against the published board figures
(docs/published.md): LogoNet on arria10soc_int8 (per-layer cycles, DDR map), the MNIST
fully connected network on arria10soc_single (profile, map) and YOLOv8n at 640x640 on
the 64-thread, 250 MHz ZCU102 int8 bitstream (network cycles, DDR total).

Prints one table per network (published, quantscope, difference) and where the
cycles and bytes go; ``--markdown PATH`` writes the tables, ``--json PATH`` the numbers.
Needs torch (the networks are built in plain PyTorch with random weights, quantscope.zoo).

    python benchmarks/fpga_published.py               # all three (~30 s, YOLOv8n's export is most of it)
    python benchmarks/fpga_published.py --yolo-size 320   # a quicker YOLOv8n
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope import fpga, zoo

LOGONET_PUBLISHED = {
    "conv_1": 3_939_296,
    "maxpool_1": 1_544_371,
    "conv_2": 2_910_747,
    "maxpool_2": 577_654,
    "fc_1": 536_206,
    "fc_2": 342_688,
}
LOGONET_MAP = {
    "InputDataOffset": ("0x00000000", "48.0 MB"),
    "OutputResultOffset": ("0x03000000", "4.0 MB"),
    "SystemBufferOffset": ("0x03400000", "60.0 MB"),
    "InstructionDataOffset": ("0x07000000", "8.0 MB"),
    "ConvWeightDataOffset": ("0x07800000", "8.0 MB"),
    "FCWeightDataOffset": ("0x08000000", "12.0 MB"),
    "EndOffset": ("0x08c00000", "Total: 140.0 MB"),
}
MNIST_PUBLISHED = {"dense_6": 17_368, "dense_7": 160, "dense_8": 123, "Network": 17_653}
MNIST_MAP = {
    "InputDataOffset": ("0x00000000", "368.0 kB"),
    "OutputResultOffset": ("0x0005c000", "4.0 kB"),
    "SchedulerDataOffset": ("0x0005d000", "0.0 kB"),
    "SystemBufferOffset": ("0x0005d000", "20.0 kB"),
    "InstructionDataOffset": ("0x00062000", "4.0 kB"),
    "FCWeightDataOffset": ("0x00063000", "796.0 kB"),
    "EndOffset": ("0x0012a000", "Total: 1192.0 kB"),
}
YOLO_CYCLES, YOLO_MB, MNIST_FPS = 34_269_889, 169.5, 8277.7


def mnist_fc():
    """docs/published.md's MNIST network: Flatten, dense_6 784->64 + ReLU, dense_7 64->32
    + ReLU, dense_8 32->10, Softmax (random weights)."""
    rng = np.random.default_rng(0)
    init = {
        "w6": rng.standard_normal((784, 64)).astype(np.float32) * 0.05,
        "b6": np.zeros(64, np.float32),
        "w7": rng.standard_normal((64, 32)).astype(np.float32) * 0.1,
        "b7": np.zeros(32, np.float32),
        "w8": rng.standard_normal((32, 10)).astype(np.float32) * 0.1,
        "b8": np.zeros(10, np.float32),
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
    graph = helper.make_graph(
        nodes,
        "mnist_fc",
        [helper.make_tensor_value_info("imageinput", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _pct(ours: float, published: float) -> str:
    return f"{ours / published - 1:+.1%}"


def _table(title: str, header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(header)]
    lines = [f"### {title}", "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def _map_rows(compiled, published: dict) -> list[list]:
    rows = []
    raw = _raw_sizes(compiled)
    for name, addr, size in compiled.memory_map.rows():
        pub_addr, pub_size = published.get(name, ("-", "-"))
        same = "same" if (addr, size) == (pub_addr, pub_size) else "differs"
        rows.append([name, f"{pub_addr} {pub_size}", f"{addr} {size}", raw.get(name, ""), same])
    return rows


def _raw_sizes(compiled) -> dict[str, str]:
    """Each region's bytes before rounding to the allocation unit (what the rules give)."""
    cfg = compiled.config
    c, h, w = compiled.input_shape
    n = cfg.channel_multiple
    descriptors = sum(cost.descriptors for cost in compiled.costs) * 64
    instructions = compiled.instructions.size
    buffers = sum(nbytes for _, nbytes in compiled.buffers.values())
    images = defaultdict(int)
    for img in compiled.weight_images.values():
        images[img.module] += img.nbytes
    out = {
        "InputDataOffset": cfg.input_frame_number_limit * h * w * -(-c // n) * n * cfg.word_bytes,
        "OutputResultOffset": cfg.input_frame_number_limit * compiled.output_elements * cfg.word_bytes,
        "SystemBufferOffset": buffers,
        "InstructionDataOffset": instructions + (0 if cfg.scheduler_region else descriptors),
        "ConvWeightDataOffset": images.get(fpga.Module.CONV, 0),
        "FCWeightDataOffset": images.get(fpga.Module.FC, 0),
    }
    if cfg.scheduler_region:
        out["SchedulerDataOffset"] = descriptors
    return {k: f"{v:,} B" for k, v in out.items()}


def logonet(results: dict) -> list[str]:
    net = qs.prepare(zoo.logonet())
    compiled = fpga.compile_network(net, "arria10soc_int8")
    profile = fpga.profile_compiled(compiled)
    rows, numbers = [], {}
    for cost in profile.layers:
        published = LOGONET_PUBLISHED.get(cost.label)
        numbers[cost.label] = {"published": published, "quantscope": cost.cycles}
        bound = "compute" if cost.compute_cycles >= cost.transfer_cycles else "DDR port"
        rows.append(
            [
                cost.label,
                f"{published:,}" if published else "held out",
                f"{cost.cycles:,}",
                _pct(cost.cycles, published) if published else "",
                bound,
            ]
        )
    results["logonet"] = {"rows": numbers, "map": compiled.memory_map.rows()}
    return [
        profile.format(),
        _table(
            "LogoNet on arria10soc_int8 (150 MHz): LastFrameLatency per layer, cycles",
            ["layer", "published (board)", "quantscope", "difference", "bound by"],
            rows,
        ),
        _table(
            "LogoNet DDR memory map on arria10soc_int8",
            ["region", "published", "quantscope", "bytes the rules give", ""],
            _map_rows(compiled, LOGONET_MAP),
        ),
    ]


def mnist(results: dict) -> list[str]:
    net = qs.prepare(mnist_fc())
    compiled = fpga.compile_network(net, "arria10soc_single")
    profile = fpga.profile_compiled(compiled)
    rows = []
    for label, published in MNIST_PUBLISHED.items():
        ours = profile.cycles_of(label)
        rows.append([label, f"{published:,}", f"{ours:,}", _pct(ours, published)])
    rows.append(
        ["Frames/s", f"{MNIST_FPS:,}", f"{profile.frames_per_second:,.1f}", _pct(profile.frames_per_second, MNIST_FPS)]
    )
    results["mnist"] = {"frames_per_second": profile.frames_per_second, "map": compiled.memory_map.rows()}
    return [
        _table("MNIST FC on arria10soc_single (150 MHz)", ["row", "published", "quantscope", "difference"], rows),
        _table(
            "MNIST DDR memory map on arria10soc_single",
            ["region", "published", "quantscope", "bytes the rules give", ""],
            _map_rows(compiled, MNIST_MAP),
        ),
    ]


def yolov8n(results: dict, size: int) -> list[str]:
    start = time.perf_counter()
    net = qs.prepare(zoo.yolov8n(size))
    compiled = fpga.compile_network(net, "zcu102_int8")
    profile = fpga.profile_compiled(compiled)
    seconds = time.perf_counter() - start
    total_mb = compiled.memory_map.total / 2**20
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for cost in profile.layers:
        k = kinds[str(cost.kind)]
        k[0] += 1
        k[1] += cost.cycles
        k[2] += int(cost.compute_cycles >= cost.transfer_cycles)
    cycles = profile.network_cycles
    scale = "" if size == 640 else f" (at {size}x{size}: the published figures are for 640x640)"
    rows = [
        ["Network cycles", f"{YOLO_CYCLES:,}", f"{cycles:,}", _pct(cycles, YOLO_CYCLES)],
        ["seconds per frame (250 MHz)", "0.13708", f"{profile.latency_seconds:.5f}", ""],
        ["Frames/s", "7.6", f"{profile.frames_per_second:.1f}", ""],
        ["DDR map total", f"{YOLO_MB} MB", f"{total_mb:.1f} MB", _pct(total_mb, YOLO_MB)],
    ]
    by_kind = [
        [kind, n, f"{c:,}", f"{c / cycles:.1%}", f"{compute} of {n}"]
        for kind, (n, c, compute) in sorted(kinds.items(), key=lambda kv: -kv[1][1])
    ]
    regions = [[r.name, f"{r.size / 2**20:.1f} MB"] for r in compiled.memory_map.regions]
    results["yolov8n"] = {
        "size": size,
        "network_cycles": cycles,
        "ddr_mb": total_mb,
        "by_kind": {k: v[1] for k, v in kinds.items()},
        "regions": {r.name: r.size for r in compiled.memory_map.regions},
        "seconds": seconds,
    }
    return [
        _table(
            f"YOLOv8n on zcu102_int8 (64 threads, 250 MHz){scale}", ["", "published", "quantscope", "difference"], rows
        ),
        _table("YOLOv8n: where the cycles go", ["layer kind", "layers", "cycles", "share", "compute-bound"], by_kind),
        _table("YOLOv8n: DDR regions", ["region", "size"], regions),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yolo-size", type=int, default=640, help="YOLOv8n input size (default 640, published)")
    parser.add_argument("--markdown", help="write the tables to this file")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    results: dict = {}
    blocks = logonet(results) + mnist(results) + yolov8n(results, args.yolo_size)
    text = "\n\n".join(blocks)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
