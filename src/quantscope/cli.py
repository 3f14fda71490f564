"""The ``quantscope`` command: a thin layer over the library.

quantscope calibrate MODEL DATA [--batch-size N] [--out ranges.json|ranges.csv] [--equalize [--absorb-bias]]
                     [--dask ADDRESS|local:N] [--checkpoint PATH] [--report report.html]
quantscope validate MODEL (--calibration DATA | --ranges RANGES.json) --validation DATA
                    [--target fpga|cpu] [--metric top1] [--out result.json] [--report report.html]
quantscope quantize MODEL (--calibration DATA | --ranges RANGES.json) -o model.int8.onnx [--target fpga|cpu]
quantscope compile MODEL --bitstream NAME [--calibration DATA | --ranges RANGES.json]
quantscope profile MODEL --bitstream NAME [--calibration DATA | --ranges RANGES.json] [--frames N]
                   [--report report.html]
quantscope demo [--report quantscope-demo-report.html]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .display import print_ranges, print_validation
from .errors import INTERFACE, QuantscopeError

__all__ = ["main"]


def _cmd_calibrate(args: argparse.Namespace, console: Console) -> int:
    from .calibrate import calibrate

    if args.out and Path(args.out).suffix.lower() not in (".json", ".csv"):
        from .errors import ConfigurationError

        raise ConfigurationError(
            f"--out {args.out}: unknown format {Path(args.out).suffix!r}; use a .json or .csv file"
        )
    network = _prepared(args, console, args.data)
    start = time.perf_counter()
    result = calibrate(
        network,
        _data(args, args.data),
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
        layout=args.layout,
        use_gpu=args.gpu,
        client=args.dask,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        restart=args.restart,
    )
    elapsed = time.perf_counter() - start
    print_ranges(console, result.table)
    console.print(f"{result.num_samples} samples, {len(result)} tensors, {elapsed:.2f} s")
    if args.out:
        path = result.save(args.out)
        console.print(f"wrote {escape(str(path))}")
    _write_report(args, console, result)
    return 0


def _write_report(args: argparse.Namespace, console: Console, *results, **options) -> None:
    """--report PATH: the HTML page and its JSON beside it."""
    if not getattr(args, "report", None):
        return
    import shlex

    from .report import json_path_of, write_report

    command = shlex.join(["quantscope", *args.argv])
    path = write_report(*results, path=args.report, command=command, date=args.report_date, **options)
    console.print(f"wrote {escape(str(path))} (report) and {escape(str(json_path_of(path)))} (its data)")


def _prepared(args: argparse.Namespace, console: Console, data: str | None):
    """The prepared network (--equalize, then --absorb-bias on ``data``), its notes printed."""
    from .network import prepare

    network = prepare(args.model, equalize=getattr(args, "equalize", False))
    if args.command == "validate" and getattr(args, "dask", None):
        from .validate.validate import check_dask_inputs

        check_dask_inputs(network)  # before any pass over the data, not after
    if getattr(args, "absorb_bias", False) and data is not None:
        from .calibrate.absorb import absorb_biases

        network = absorb_biases(network, _data(args, data), batch_size=args.batch_size, layout=args.layout)
    for note in _grouped_notes(network.log.notes):
        console.print(f"[yellow]note:[/] {escape(note)}")
    _equalized_note(network, console)
    return network


def _grouped_notes(notes: list[str], shown: int = 6) -> list[str]:
    """``notes`` with those that differ only in their quoted names (23 BatchNorms not
    folded for one reason, each after its own Flatten) told once, naming the first
    quoted name of the first ``shown`` of them and how many more, in the order they came."""
    import re

    quoted = re.compile(r"'[^']*'")
    groups: dict[str, list[str]] = {}
    first_note: dict[str, str] = {}
    for note in notes:
        key = quoted.sub("{}", note)
        match = quoted.search(note)
        groups.setdefault(key, []).append(match.group(0) if match else "")
        first_note.setdefault(key, note)
    out = []
    for key, names in groups.items():
        if len(names) == 1:
            out.append(first_note[key])
            continue
        listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
        out.append(key.replace(" {}", "").replace("{}", "") + f" ({len(names)} nodes: {listed})")
    return out


def _calibrated(args: argparse.Namespace, console: Console, check=None):
    """The calibration of ARGS' model on --calibration (or --ranges); ``check(network)``,
    when given, runs on the prepared network first (a refusal then costs no pass)."""
    from .calibrate import calibrate

    network = _prepared(args, console, getattr(args, "calibration", None))
    if check is not None:
        check(network)
    if getattr(args, "ranges", None):
        from .calibrate import Calibration

        return Calibration.load(args.ranges).attach(network)
    return calibrate(
        network,
        _data(args, args.calibration),
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
        layout=args.layout,
    )


def _image_flags(args: argparse.Namespace) -> list[str]:
    """The image-folder options given on the command line."""
    return [
        flag
        for flag, value in (
            ("--pixel-scale", getattr(args, "pixel_scale", None)),
            ("--mean", getattr(args, "mean", None)),
            ("--std", getattr(args, "std", None)),
            ("--size", getattr(args, "size", None)),
            ("--channels", getattr(args, "channels", None)),
            ("--extensions", getattr(args, "extensions", None)),
            ("--skip-bad", getattr(args, "skip_bad", False) or None),
            ("--no-labels", getattr(args, "no_labels", False) or None),
            ("--classes", getattr(args, "classes", None)),
        )
        if value is not None
    ]


def _data(args: argparse.Namespace, path: str):
    """A DATA argument: an image folder gets the image options (an ImageDatastore);
    a .npy/.npz path is passed as it is."""
    import os

    given = _image_flags(args)
    if not given:
        return path
    folders = [getattr(args, a, None) for a in ("data", "calibration", "validation")]
    if not os.path.isdir(path) and any(f and os.path.isdir(f) for f in folders):
        return path  # the image options are for the other data argument, a folder
    if not os.path.isdir(path):
        from .errors import ConfigurationError

        preprocess = {"--pixel-scale", "--mean", "--std", "--size", "--channels"} & set(given)
        raise ConfigurationError(
            f"{'/'.join(given)} {'are options' if len(given) > 1 else 'is an option'} of image folders; {path} is "
            "not a folder" + (" (scale, normalize or resize arrays before saving them)" if preprocess else "")
        )
    from .calibrate import ImageDatastore
    from .calibrate.images import DEFAULT_EXTENSIONS

    one = lambda v: None if not v else (v[0] if len(v) == 1 else tuple(v))  # noqa: E731
    extensions = tuple(e if e.startswith(".") else f".{e}" for e in args.extensions or DEFAULT_EXTENSIONS)
    datastore = ImageDatastore(
        path,
        labels=None if args.no_labels else "foldernames",
        extensions=extensions,
        size=tuple(args.size) if args.size else None,
        channels=args.channels,
        scale=1.0 if args.pixel_scale is None else args.pixel_scale,
        mean=one(args.mean),
        std=one(args.std),
        skip_bad=args.skip_bad,
        class_names=_class_names(args.classes) if args.classes else None,
    )
    return datastore


def _class_names(path: str) -> list[str]:
    """The class list of --classes: one name a line (blank lines skipped)."""
    from .errors import ConfigurationError

    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"--classes {path}: cannot read it ({exc}); give a text file, one name a line"
        ) from None
    if not names:
        raise ConfigurationError(f"--classes {path} lists no class names; give one name a line")
    return names


def _add_image_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "image folders", "preprocessing x = (pixel * scale - mean) / std (default: raw pixels 0..255)"
    )
    g.add_argument(
        "--pixel-scale",
        type=float,
        metavar="S",
        help="multiply pixels by S first (1/255 = 0.00392156862745098 for 0..1)",
    )
    g.add_argument("--mean", type=float, nargs="+", metavar="M", help="subtract M (one value, or one per channel)")
    g.add_argument("--std", type=float, nargs="+", metavar="S", help="then divide by S (one value, or one per channel)")
    g.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize every image to H x W pixels")
    g.add_argument("--channels", type=int, choices=(1, 3), help="read images as 1 (grayscale) or 3 (RGB) channels")
    g.add_argument("--extensions", nargs="+", metavar="EXT", help="file types to read (default: common image types)")
    g.add_argument("--skip-bad", action="store_true", help="skip images that do not decode (each is named)")
    g.add_argument("--no-labels", action="store_true", help="ignore class subfolders: the images have no labels")
    g.add_argument(
        "--classes",
        metavar="FILE",
        help="the network's classes in output order, one name a line: subfolder names map to these indices",
    )


def _add_accuracy_options(p: argparse.ArgumentParser, command: str) -> None:
    """The accuracy options (docs/accuracy.md) of validate, quantize, compile and profile."""
    g = p.add_argument_group("accuracy", "int8 accuracy options (docs/accuracy.md)")
    g.add_argument(
        "--equalize",
        action="store_true",
        help="cross-layer equalization of the prepared network (the same float function, weights that suit one "
        "scale per tensor)",
    )
    g.add_argument(
        "--absorb-bias",
        action="store_true",
        help="with --equalize: move what each channel never drops below on the --calibration data out of its bias "
        "into the next layer's (narrower activation ranges; the same float function on that data)",
    )
    g.add_argument(
        "--bias-correction",
        action="store_true",
        help="take each layer's mean output shift, measured on the --calibration data, out of its int32 bias",
    )
    g.add_argument(
        "--gptq",
        action="store_true",
        help="round each conv/fc layer's weights column by column, moving each rounding error onto the weights not "
        "yet rounded so that the layer's output on the --calibration data changes least (GPTQ)",
    )
    g.add_argument(
        "--exponent-method",
        choices=("MinMax", "Histogram"),
        type=lambda v: {"minmax": "MinMax", "histogram": "Histogram"}.get(v.lower(), v),  # any case
        help="fpga target: each activation's exponent from its max |x| (MinMax, default) or the one of least "
        "squared error over its histogram",
    )
    g.add_argument(
        "--per-channel",
        action="store_true",
        help="fpga target: one weight exponent per output channel (beyond MATLAB's processor: compile refuses it "
        "on the presets)",
    )
    if command in ("validate", "quantize"):
        g.add_argument(
            "--range-method",
            choices=("minmax", "percentile", "mse", "entropy"),
            type=str.lower,  # any case, as the Python API
            help="cpu target: each activation's clipping range from the one calibration pass (default minmax)",
        )
        g.add_argument(
            "--percentile", type=float, metavar="P", help="with --range-method percentile: P%% of values in range"
        )
    if command == "validate":
        g.add_argument(
            "--max-drop",
            type=float,
            metavar="D",
            help="keep in float the layers that cost most until the metric is within D of float (cpu; D in the "
            "metric's units, 0.02 = 2 points of top-1); on the fpga target, say which layers would have to change "
            "and each layer's better exponent method",
        )


def _float_layers(plan) -> list[str]:
    from .validate.validate import _float_layers as floats

    return floats(plan)


def _print_fallback(console: Console, fallback, plan=None) -> None:
    """The path of --max-drop and its final set."""
    t = Table(
        title=f"Float fallback: {fallback.metric} within {fallback.max_drop:g} of float ({fallback.float_metric:.4g})",
        header_style="bold",
    )
    for col in ("Step", "Layers in float", fallback.metric, "Quantized bytes"):
        t.add_column(col, overflow="fold")
    for step in fallback.steps:
        t.add_row(
            escape(step.action),
            escape(", ".join(step.keep_float) or "-"),
            f"{step.metric:.6g}",
            f"{step.quantized_bytes:,}",
        )
    console.print(t)
    kept = ", ".join(fallback.keep_float) or "none"
    reached = "reached" if fallback.met else "NOT reached with every candidate layer in float"
    if fallback.fpga:
        target = f"{fallback.metric} within {fallback.max_drop:g} of float"
        if not fallback.keep_float:
            change = f"{target} all in int8: no layer has to change"
        elif fallback.met:
            change = (
                f"{target} (in the emulation) with these {len(fallback.keep_float)} layer(s) changed (more bits, "
                f"per-channel scales, or the host): {escape(kept)}"
            )
        else:
            change = (
                f"{target} NOT reached even with these {len(fallback.keep_float)} layer(s) in float: {escape(kept)}"
            )
        floats = [] if plan is None else _float_layers(plan)
        if floats:
            listed = ", ".join(floats[:6]) + (f" and {len(floats) - 6} more" if len(floats) > 6 else "")
            where = (
                f"fpga target: {len(floats)} layer(s) have no int8 kernel and run in float in the emulation "
                f"({escape(listed)}): the processor cannot run them (compile says which and why); the search "
                f"changed only int8 layers; {change}"
            )
        else:
            where = f"fpga target: every layer runs in int8 on the processor (the results below are all int8); {change}"
        console.print(where)
        if fallback.best_methods:
            hist = sorted(k for k, v in fallback.best_methods.items() if v == "Histogram")
            listed = f" ({escape(', '.join(hist[:8]))}{'...' if len(hist) > 8 else ''})" if hist else ""
            console.print(
                f"better exponent method per layer: Histogram for {len(hist)} of {len(fallback.best_methods)} layers"
                f"{listed}, MinMax for the others; with them {fallback.metric} = {fallback.best_methods_metric:.6g}"
            )
        elif fallback.best_methods_skipped:
            console.print(
                f"[yellow]note:[/] no better exponent method per layer: {escape(fallback.best_methods_skipped)}"
            )
    else:
        console.print(f"target {reached}; layers in float: {escape(kept)}")
        if fallback.keep_float:
            console.print(f"reproduce with: {escape(fallback.flags)}")


def _add_report_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--report",
        metavar="PATH.html",
        help=f"write an HTML report ({what}) and its data as JSON beside it (PATH.json)",
    )
    p.add_argument(
        "--report-date",
        metavar="YYYY-MM-DD",
        help="the date in the report's footer (default: SOURCE_DATE_EPOCH if set, else today)",
    )


def _scheme(args: argparse.Namespace):
    """The --target with --reduce-range, --exponent-method, --per-channel, --range-method
    and --percentile as a scheme."""
    from .errors import ConfigurationError
    from .quantize import FloatScale, PowerOfTwo

    target = getattr(args, "target", "fpga")
    if target == "cpu":
        return FloatScale(
            reduce_range=args.reduce_range,
            range_method=getattr(args, "range_method", None) or "minmax",
            percentile=99.999 if getattr(args, "percentile", None) is None else args.percentile,
        )
    if getattr(args, "reduce_range", False):
        raise ConfigurationError("--reduce-range applies to --target cpu only (the fpga scheme is power-of-two)")
    return PowerOfTwo(
        exponent_method=getattr(args, "exponent_method", None) or "MinMax",
        per_channel=getattr(args, "per_channel", False),
    )


def _equalized_note(network, console: Console) -> None:
    """One line on what --equalize did."""
    if not getattr(network, "equalized", False):
        return
    pairs = network.log.equalized
    if not pairs:
        console.print(
            "[yellow]note:[/] --equalize found no pair of layers to equalize, so the network is unchanged: it needs "
            "a Conv or Gemm feeding only another Conv or Gemm, directly or through Relu, LeakyRelu, PRelu, MaxPool, "
            "AveragePool or one Relu6 (docs/accuracy.md (1)); other activations between them (SiLU, HardSwish, GELU, "
            "Sigmoid...) are not scale-invariant"
        )
        return
    ceilings = sum(1 for p in pairs if p.ceiling)
    spread = max((p.spread_before for p in pairs), default=float("nan"))
    after = max((p.spread_after for p in pairs), default=float("nan"))
    console.print(
        f"equalized {len(pairs)} pair(s) of layers"
        + (f" ({ceilings} through a Relu6, whose ceilings are now per channel)" if ceilings else "")
        + (f"; largest weight channel spread {spread:.3g} -> {after:.3g}" if pairs else "")
    )
    if not getattr(network, "bias_absorbed", False):
        return
    moved = network.log.absorbed
    if not moved:
        console.print(
            "[yellow]note:[/] --absorb-bias moved no bias: no equalized pair linked by nothing, Relu or Relu6 "
            "(into an unpadded convolution or a Gemm) has a channel whose pre-activation stays above 0 on the "
            "calibration data (docs/accuracy.md (3a))"
        )
        return
    top = max(moved, key=lambda p: p.range_before - p.range_after)
    layer_of = network.layer_of
    console.print(
        f"absorbed the biases of {sum(p.channels for p in moved)} channel(s) in {len(moved)} pair(s) into the next "
        f"layer (largest amount {max(p.amount for p in moved):.3g}); largest activation range drop: "
        f"{escape(layer_of.get(top.first, top.first))} {top.range_before:.3g} -> {top.range_after:.3g}"
    )


def _bias_data(args: argparse.Namespace):
    """The calibration data for --bias-correction (None without it)."""
    if not getattr(args, "bias_correction", False):
        return None
    return _data(args, args.calibration)


def _gptq_data(args: argparse.Namespace):
    """The calibration data for --gptq (None without it)."""
    if not getattr(args, "gptq", False):
        return None
    return _data(args, args.calibration)


def _bias_note(args: argparse.Namespace, plan, console: Console) -> None:
    """--bias-correction that found no int32 bias to correct says so (it changes nothing);
    --gptq says what it did."""
    if getattr(args, "bias_correction", False) and plan is not None and not plan.bias_corrections:
        console.print(
            "[yellow]note:[/] --bias-correction changed nothing: no int8 conv/fc layer of this network has an int32 "
            "bias to correct (layers exported without a bias, or kept in float)"
        )
    if getattr(args, "gptq", False) and plan is not None:
        gains = plan.weight_rounding
        if not gains:
            console.print(
                "[yellow]note:[/] --gptq changed nothing: no int8 conv/fc layer of this network has weights it "
                "can round (1-D/2-D Conv, Gemm or MatMul with a constant weight)"
            )
        else:
            values = sorted(gains.values())
            console.print(
                f"GPTQ: {sum(v > 0 for v in values)} of {len(values)} layer(s) rounded against their calibration "
                f"inputs; the weights' share of each layer's output error lower by {values[len(values) // 2]:.1f} dB "
                f"(median; {values[0]:.1f} to {values[-1]:.1f} dB)"
            )


def _saturation_note(args: argparse.Namespace, console: Console) -> None:
    from .quantize import cpu_int8_saturates

    if args.target == "cpu" and not args.reduce_range and cpu_int8_saturates():
        console.print(
            "[yellow]note:[/] this CPU is x86 without VNNI: onnxruntime's int8 kernels saturate pair sums of "
            "8-bit products in int16 here, so the exported model can differ from this emulation; "
            "--reduce-range (7-bit weights) avoids it (docs/int8.md (9))."
        )


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    import json

    from ._io import write_atomic
    from .calibrate.stats import prepare_kernel
    from .validate import validate

    # validation loads numba for its diagnostics anyway: started now, the calibration
    # (with --calibration) gets the compiled statistics pass too (docs/calibration.md)
    prepare_kernel()
    cal = _calibrated(args, console)
    result = validate(
        cal,
        _data(args, args.validation),
        target=_scheme(args),
        metrics=args.metric,
        keep_float=args.keep_float or (),
        require_int8=args.require_int8 or (),
        processor=args.bitstream,
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
        layout=args.layout,
        client=args.dask,
        bias_correction=_bias_data(args),
        gptq=_gptq_data(args),
        max_metric_drop=args.max_drop,
    )
    if result.fallback is not None:
        _print_fallback(console, result.fallback, result.plan)
    print_validation(console, result)
    _bias_note(args, result.plan, console)
    _saturation_note(args, console)
    if args.out:
        path = write_atomic(args.out, json.dumps(result.to_dict(), indent=1, default=float, allow_nan=False))
        console.print(f"wrote {escape(str(path))}")
    _write_report(args, console, result)
    return 0


def _cmd_quantize(args: argparse.Namespace, console: Console) -> int:
    from .simulate import quantize_network

    cal = _calibrated(args, console)
    qnet = quantize_network(
        cal,
        _scheme(args),
        args.keep_float or (),
        require_int8=args.require_int8 or (),
        bias_correction=_bias_data(args),
        gptq=_gptq_data(args),
    )
    t = Table(title=f"Quantized network ({args.target})", header_style="bold")
    for col in ("Layer", "Precision", "Reason"):
        t.add_column(col, overflow="fold")
    for row in qnet.layers.itertuples(index=False):
        t.add_row(escape(str(row[0])), str(row[1]), escape(str(row[2])))
    console.print(t)
    _bias_note(args, qnet.plan, console)
    if qnet.plan.bias_corrections:
        shifts = qnet.layers["BiasShift"].dropna()
        console.print(
            f"bias correction: {len(qnet.plan.bias_corrections)} layer(s), largest mean shift taken out "
            f"{shifts.max():.4g} ({escape(str(qnet.layers.loc[shifts.idxmax(), 'Layer']))})"
        )
    _saturation_note(args, console)
    float_bytes, quant_bytes = qnet.memory
    console.print(f"LearnableParameterMemory: {float_bytes:,} bytes float -> {quant_bytes:,} bytes quantized")
    import warnings

    with warnings.catch_warnings():  # the saturation note above already said it
        warnings.filterwarnings("ignore", message="this CPU is x86 without VNNI", category=UserWarning)
        onnx_path, json_path = qnet.save(args.output)
    console.print(f"wrote {escape(str(onnx_path))} (QDQ ONNX) and {escape(str(json_path))} (exponents/scales)")
    return 0


def _workflow(args: argparse.Namespace, console: Console):
    from .fpga import Workflow, processor
    from .fpga.compile import cost_network
    from .simulate import quantize_network

    if args.calibration or args.ranges:
        # a network the processor cannot run (placement, shapes) is refused before
        # calibration, --gptq and --bias-correction
        cal = _calibrated(args, console, check=lambda network: cost_network(network, processor(args.bitstream)))
        source = quantize_network(cal, _scheme(args), bias_correction=_bias_data(args), gptq=_gptq_data(args))
        _bias_note(args, source.plan, console)
    else:
        source = _prepared(args, console, None)
    return Workflow(
        source, args.bitstream, print_fn=lambda line: console.print(line, markup=False, highlight=False)
    ), source


def _cmd_compile(args: argparse.Namespace, console: Console) -> int:
    workflow, _ = _workflow(args, console)
    workflow.compile()
    return 0


def _cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from .calibrate import as_source

    workflow, source = _workflow(args, console)
    if args.calibration:
        data = _data(args, args.calibration)
        batch = next(as_source(data, layout=args.layout, input_shape=workflow.network.input_shape).batches(args.frames))
        workflow.deploy()
        _, profile = workflow.predict(batch.x, profile=True)
        if len(batch.x) < args.frames:
            console.print(
                f"[yellow]note:[/] {escape(args.calibration)} holds {len(batch.x)} frame(s), fewer than --frames "
                f"{args.frames}: the profile is of {len(batch.x)}"
            )
        console.print(f"Measured on the simulated board with {len(batch.x)} frame(s) of {escape(args.calibration)}:")
    else:
        profile = workflow.estimate_performance(frames=args.frames)
        console.print(
            f"Estimated for {args.frames} frame(s) (no data: pass --calibration to run int8 on the simulated board):"
        )
    console.print(profile.format(), markup=False, highlight=False)
    quantized = source if hasattr(source, "plan") else None
    _write_report(args, console, profile, workflow=workflow, quantized=quantized)
    return 0


def _cmd_optimize(args: argparse.Namespace, console: Console) -> int:
    from .errors import ConfigurationError
    from .fpga import optimize_config

    search = optimize_config(args.model, board=args.board, frames_per_second=args.fps, data_type=args.data_type)
    reasons = {c.reason for c in search.candidates}
    if search.chosen is None and len(reasons) == 1 and all(c.verdict == "does not fit" for c in search.candidates):
        raise ConfigurationError(search.failure())  # the network's own reason: once, not once per configuration
    console.print(search.format(), markup=False, highlight=False)
    if search.chosen is None:
        raise ConfigurationError(search.failure())
    console.print(search.config.summary(), markup=False, highlight=False)
    return 0


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    import shlex

    from .demo import run_demo

    command = shlex.join(["quantscope", *args.argv])
    run_demo(console, quiet=args.quiet, report=args.report, report_date=args.report_date, command=command)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantscope",
        description="Calibrate, quantize, validate and profile networks for int8 on CPUs and FPGAs.",
    )
    parser.add_argument("--version", action="version", version=f"quantscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("calibrate", help="collect every layer's ranges (MATLAB's calibrate)")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("data", help="image folder (labels from subfolders), .npy or .npz (x, optional y)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per run (default 32)")
    p.add_argument("--out", help="write the ranges to this .json (with histograms) or .csv file")
    p.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW", help="layout of array data")
    p.add_argument("--gpu", action="store_true", help="run the float network on a GPU")
    p.add_argument(
        "--dask",
        metavar="ADDRESS|local:N",
        help="run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N to start N "
        "worker processes here; same table bit for bit (pip install quantscope[dask])",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="save the statistics to PATH every --checkpoint-every batches and resume from it when "
        "it exists; removed when the run completes",
    )
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="batches between checkpoints (default 10)")
    p.add_argument("--restart", action="store_true", help="discard an existing --checkpoint and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--equalize",
        action="store_true",
        help="cross-layer equalization before calibrating (the same float function; use it again with --ranges)",
    )
    p.add_argument(
        "--absorb-bias",
        action="store_true",
        help="with --equalize: move what each channel never drops below on DATA out of its bias into the next "
        "layer's, before calibrating (narrower activation ranges; the same float function on DATA)",
    )
    _add_report_options(p, "the ranges: heat map, ranges table, coverage and layers with fpga windows")
    _add_image_options(p)
    p.set_defaults(func=_cmd_calibrate)

    for name, helptext in (
        ("validate", "compare the float and the int8 network on data (MATLAB's validate)"),
        ("quantize", "quantize and export a QDQ ONNX model plus exponents/scales (MATLAB's quantize)"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("model", help="ONNX model file")
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--calibration", help="calibration data: image folder, .npy or .npz")
        source.add_argument(
            "--ranges",
            metavar="RANGES.json",
            help="ranges saved by 'quantscope calibrate --out RANGES.json' for this model, instead of calibrating",
        )
        if name == "validate":
            p.add_argument("--validation", required=True, help="validation data: image folder, .npy or .npz (labels y)")
            p.add_argument(
                "--metric",
                action="append",
                help="top1 (or accuracy; the default with labels), top5; repeat for several",
            )
            p.add_argument(
                "--bitstream",
                help="with --target fpga: add the processor's Frames/s (zcu102_int8, arria10soc_int8, ...)",
            )
            p.add_argument("--out", help="write the result as JSON")
            p.add_argument(
                "--dask",
                metavar="ADDRESS|local:N",
                help="validate on a Dask cluster: a scheduler address (tcp://host:8786) or local:N to start N "
                "worker processes here; same result bit for bit (pip install quantscope[dask])",
            )
            _add_report_options(p, "verdict, error along the network, ranges, coverage, layers (FPGA with --bitstream)")
        else:
            p.add_argument(
                "-o", "--output", required=True, help="QDQ ONNX file to write (exponents/scales beside it as .json)"
            )
        p.add_argument(
            "--target",
            choices=("fpga", "cpu"),
            default="fpga",
            help="fpga (the default, MATLAB's): power-of-two scales for the FPGA processor; cpu: float scales, "
            "per-channel weights, for onnxruntime's int8 kernels",
        )
        p.add_argument(
            "--reduce-range",
            action="store_true",
            help="cpu target: 7-bit weights, for x86 CPUs without VNNI where onnxruntime's int8 kernels saturate",
        )
        p.add_argument("--keep-float", action="append", metavar="LAYER", help="leave this layer in float (repeat)")
        p.add_argument(
            "--require-int8",
            action="append",
            metavar="LAYER",
            help="this layer must run in int8: an error says why when it cannot (repeat)",
        )
        p.add_argument("--batch-size", type=int, default=32, help="samples per run (default 32)")
        p.add_argument(
            "--layout", choices=("NCHW", "NHWC"), default="NCHW", help="layout of 4-D array data (default NCHW)"
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_accuracy_options(p, name)
        _add_image_options(p)
        p.set_defaults(func=_cmd_validate if name == "validate" else _cmd_quantize)

    for name, helptext in (
        ("compile", "compile for an FPGA deep-learning processor: layer placement and DDR memory map"),
        ("profile", "per-layer latency and Frames/s on an FPGA deep-learning processor"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("model", help="ONNX model file")
        p.add_argument(
            "--bitstream", required=True, help="processor preset: zcu102_int8, zc706_int8, arria10soc_int8, *_single"
        )
        source = p.add_mutually_exclusive_group()
        source.add_argument(
            "--calibration", help="calibration data: quantize with it (int8 weight images, measured profile)"
        )
        source.add_argument(
            "--ranges", metavar="RANGES.json", help="quantize with ranges saved by 'quantscope calibrate --out'"
        )
        if name == "profile":
            p.add_argument("--frames", type=int, default=1, help="frames to profile (default 1)")
            _add_report_options(p, "the profile: per-layer cycles, DDR memory map, resources")
        p.add_argument(
            "--batch-size", type=int, default=32, help="samples per run of --calibration's data (default 32)"
        )
        p.add_argument(
            "--layout",
            choices=("NCHW", "NHWC"),
            default="NCHW",
            help="layout of 4-D array data in --calibration (default NCHW)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_accuracy_options(p, name)
        _add_image_options(p)
        p.set_defaults(func=_cmd_compile if name == "compile" else _cmd_profile)

    p = sub.add_parser(
        "optimize",
        help="the cheapest FPGA processor configuration that reaches a frame rate on a board "
        "(MATLAB's optimizeConfigurationForNetwork)",
    )
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--board", required=True, choices=("zcu102", "zc706", "arria10soc"), help="the FPGA board")
    p.add_argument("--fps", type=float, required=True, help="frames per second to reach")
    p.add_argument("--data-type", choices=("int8", "single"), default="int8", help="processor data type (int8)")
    p.set_defaults(func=_cmd_optimize)

    p = sub.add_parser("demo", help="run the whole workflow on a model and data shipped with quantscope")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--report",
        metavar="PATH.html",
        default="quantscope-demo-report.html",
        help="where to write the run's HTML report, its data as JSON beside it (default: %(default)s)",
    )
    p.add_argument(
        "--report-date",
        metavar="YYYY-MM-DD",
        help="the date in the report's footer (default: SOURCE_DATE_EPOCH if set, else today)",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


#: Output flags of each command and the file types they write.
_OUTPUTS = {
    "calibrate": [("out", "--out", (".json", ".csv")), ("report", "--report", (".html", ".htm"))],
    "validate": [("out", "--out", (".json",)), ("report", "--report", (".html", ".htm"))],
    "quantize": [("output", "-o/--output", (".onnx",))],
    "profile": [("report", "--report", (".html", ".htm"))],
    "demo": [("report", "--report", (".html", ".htm"))],
}


def _check_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, flags that cannot work: an output of the wrong type or
    that cannot be written (--report's JSON beside it included), a non-positive
    --pixel-scale, --bitstream with --target cpu, a --report-date that is not a date."""
    from .errors import ConfigurationError

    fps = getattr(args, "fps", None)
    if fps is not None and not (0 < fps < float("inf")):
        raise ConfigurationError(f"--fps {args.fps:g}: give a positive frame rate (frames per second)")
    scale = getattr(args, "pixel_scale", None)
    if scale is not None and not (0 < scale < float("inf")):
        raise ConfigurationError(f"--pixel-scale {args.pixel_scale:g}: give a positive number (1/255 for 0..1 pixels)")
    if getattr(args, "bitstream", None) and getattr(args, "target", None) == "cpu":
        raise ConfigurationError(
            "--bitstream estimates Frames/s on an FPGA processor, which runs --target fpga; drop --bitstream "
            "or use --target fpga"
        )
    _check_accuracy_args(args)
    if getattr(args, "dask", None) is not None:
        from .calibrate.distributed import parse_local

        if not args.dask.strip():
            raise ConfigurationError(f"--dask {args.dask!r}: give a scheduler address (tcp://host:8786) or local:N")
        parse_local(args.dask)  # local:N malformed or too many processes: before any work
    for attr, flag, suffixes in _OUTPUTS.get(args.command, ()):
        value = getattr(args, attr, None)
        if value is not None:
            _check_output(value, flag, suffixes)
    report = getattr(args, "report", None)
    if report:
        data = Path(report).with_suffix(".json")  # where the report's data goes (report.json_path_of)
        out = getattr(args, "out", None)
        if out and Path(out).resolve() == data.resolve():
            raise ConfigurationError(
                f"--report {report} writes its data to {data}, which is also --out {out}; give the report another name"
            )
        _check_output(str(data), "--report", (".json",), shown=report)
    output = getattr(args, "output", None)
    if output and args.command == "quantize":  # the exponents/scales go beside the model
        _check_output(str(Path(output).with_suffix(".json")), "-o/--output", (".json",), shown=output)
    _check_outputs_are_not_inputs(args)
    if getattr(args, "report", None) and getattr(args, "report_date", None) is None:
        from .report.build import report_date

        report_date()  # a malformed SOURCE_DATE_EPOCH: refused before any work, not after it
    if getattr(args, "report_date", None) is not None:
        import datetime

        if not getattr(args, "report", None):
            raise ConfigurationError("--report-date sets the date in the report's footer; add --report PATH.html")
        try:
            datetime.date.fromisoformat(args.report_date)
        except ValueError:
            raise ConfigurationError(
                f"--report-date {args.report_date!r}: give a date as YYYY-MM-DD (e.g. 2026-01-31)"
            ) from None


def _check_accuracy_args(args: argparse.Namespace) -> None:
    """The accuracy options that cannot work together (docs/accuracy.md)."""
    from .errors import ConfigurationError

    target = getattr(args, "target", "fpga")
    for flag, attr in (("--exponent-method", "exponent_method"), ("--per-channel", "per_channel")):
        if getattr(args, attr, None) and target == "cpu":
            raise ConfigurationError(
                f"{flag} is an option of the power-of-two scheme (--target fpga); the cpu target has per-channel "
                "weights already and --range-method for activations"
            )
    for flag, attr in (("--range-method", "range_method"), ("--percentile", "percentile")):
        if getattr(args, attr, None) is not None and target != "cpu":
            raise ConfigurationError(
                f"{flag} chooses the cpu target's activation ranges (--target cpu); for --target fpga use "
                "--exponent-method MinMax|Histogram"
            )
    percentile = getattr(args, "percentile", None)
    if percentile is not None:
        if getattr(args, "range_method", None) != "percentile":
            raise ConfigurationError("--percentile P goes with --range-method percentile")
        if not 0 < percentile <= 100:
            raise ConfigurationError(f"--percentile {percentile:g}: give a share of the values in (0, 100]")
    if getattr(args, "bias_correction", False) and not getattr(args, "calibration", None):
        raise ConfigurationError(
            "--bias-correction measures each layer's output shift on the calibration data: give --calibration DATA"
            + (" instead of --ranges" if getattr(args, "ranges", None) else "")
        )
    if getattr(args, "gptq", False) and not getattr(args, "calibration", None):
        raise ConfigurationError(
            "--gptq rounds the weights against each layer's inputs on the calibration data: give --calibration DATA"
            + (" instead of --ranges" if getattr(args, "ranges", None) else "")
        )
    if getattr(args, "absorb_bias", False):
        if not getattr(args, "equalize", False):
            raise ConfigurationError(
                "--absorb-bias moves biases between the layers cross-layer equalization pairs: add --equalize"
            )
        if args.command == "calibrate":
            if args.out:
                raise ConfigurationError(
                    "--absorb-bias --out: the biases moved depend on DATA, and --ranges cannot reproduce them; "
                    "drop --out, or give the data to validate/quantize/compile/profile with --calibration DATA "
                    "--equalize --absorb-bias"
                )
        elif not getattr(args, "calibration", None):
            raise ConfigurationError(
                "--absorb-bias measures each channel's smallest pre-activation on the calibration data: give "
                "--calibration DATA"
                + (
                    " instead of --ranges (ranges saved without the data cannot say what was moved)"
                    if getattr(args, "ranges", None)
                    else ""
                )
            )
    drop = getattr(args, "max_drop", None)
    if drop is not None and not (0 <= drop < float("inf")):
        raise ConfigurationError(f"--max-drop {drop:g}: give the largest metric drop to accept, a number >= 0")
    if args.command in ("compile", "profile") and not args.calibration:
        unread = _image_flags(args) + [
            flag
            for flag, given in (("--batch-size", args.batch_size != 32), ("--layout", args.layout != "NCHW"))
            if given
        ]
        if unread:
            raise ConfigurationError(
                f"{', '.join(unread)} {'applies' if len(unread) == 1 else 'apply'} to --calibration DATA, which this "
                f"command does not read {'with --ranges' if args.ranges else 'without it'}; drop "
                f"{'it' if len(unread) == 1 else 'them'} or give --calibration DATA"
            )
    if args.command in ("compile", "profile") and not (args.calibration or args.ranges):
        for flag, attr in (("--per-channel", "per_channel"), ("--exponent-method", "exponent_method")):
            if getattr(args, attr, None):
                raise ConfigurationError(
                    f"{flag} quantizes the network: give --calibration DATA or --ranges RANGES.json"
                )


#: (attribute, flag) of the files a command reads
_INPUTS = (
    ("model", "MODEL"),
    ("data", "DATA"),
    ("calibration", "--calibration"),
    ("validation", "--validation"),
    ("ranges", "--ranges"),
    ("classes", "--classes"),
)


def _check_outputs_are_not_inputs(args: argparse.Namespace) -> None:
    """Refuse an output that would replace one of the command's own inputs (the model
    quantized over itself, ranges overwritten by a report's data...)."""
    from .errors import ConfigurationError

    outputs = []
    for attr, flag in (("out", "--out"), ("output", "-o/--output"), ("report", "--report")):
        value = getattr(args, attr, None)
        if value:
            outputs.append((flag, value, Path(value)))
            side = Path(value).with_suffix(".json")
            if attr != "out" and side != Path(value):  # the report's data, the quantized model's scales
                outputs.append((flag, value, side))
    for attr, in_flag in _INPUTS:
        value = getattr(args, attr, None)
        if not value or not Path(value).exists():
            continue
        for flag, shown, path in outputs:
            try:
                same = path.exists() and path.samefile(value)
            except OSError:
                same = False
            if same or path.resolve() == Path(value).resolve():
                what = "" if str(path) == shown else f" writes {path}, which"
                raise ConfigurationError(
                    f"{flag} {shown}{what} would replace {in_flag} {value}, an input of this command; "
                    "write the output to another file"
                )


def _check_output(value: str, flag: str, suffixes: tuple[str, ...], shown: str | None = None) -> None:
    """Refuse an output path of the wrong type, a folder, or one that cannot be written."""
    from .errors import ConfigurationError

    shown = shown or value
    if not value.strip():
        raise ConfigurationError(f"{flag} {value!r}: give a file name (an empty path writes nothing)")
    path = Path(value)
    if shown == value and path.suffix.lower() not in suffixes:
        kinds = " or ".join(suffixes)
        raise ConfigurationError(f"{flag} {value}: unknown format {path.suffix!r}; write a {kinds} file")
    if Path(shown).is_dir() or path.is_dir():
        if shown != value and not Path(shown).is_dir():  # the data file beside the page
            raise ConfigurationError(
                f"{flag} {shown} writes {value} beside it, which is a folder; give the output another name"
            )
        raise ConfigurationError(f"{flag} {shown} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".quantscope-check-"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"{flag} {shown}: cannot write in {existing} ({exc.strerror or exc}); choose a folder you can write to"
        ) from None


class _ConsoleHandler(logging.Handler):
    """quantscope's warnings (a skipped image...) on stderr, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        Console(stderr=True, soft_wrap=True).print(
            f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False
        )


def _show_warnings() -> None:
    log = logging.getLogger("quantscope")
    if not any(isinstance(h, _ConsoleHandler) for h in log.handlers):
        log.addHandler(_ConsoleHandler(logging.WARNING))
        log.propagate = False


def main(argv: list[str] | None = None) -> int:
    """The ``quantscope`` command. Exit status: 0, 2 for a bad input (a message),
    130 when interrupted (Ctrl-C, at any moment, start-up included)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # during start-up (parsing, imports); a run's own is handled in _main
        Console(stderr=True, soft_wrap=True).print("[bold red]interrupted[/]", highlight=False)
        return 130


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the report shows the command
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # files and pipes: keep table rows on one line
    token = INTERFACE.set("cli")  # messages name flags, not Python keywords
    _show_warnings()
    try:
        _check_args(args)
        return args.func(args, console)
    except QuantscopeError as exc:
        # soft wrap: never a line break inside a message (a path), whatever the width
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except OSError as exc:  # a file that cannot be read or written (permissions, a folder, a full disk)
        where = f"{exc.filename}: " if exc.filename else ""
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(where)}{escape(exc.strerror or str(exc))}; check the path, its "
            "permissions and the free space",
            highlight=False,
        )
        return 2
    except KeyboardInterrupt:
        checkpoint = getattr(args, "checkpoint", None)
        hint = (
            f"; the checkpoint {checkpoint} holds what was counted: rerun the same command to resume"
            if checkpoint
            else ""
        )
        Console(stderr=True, soft_wrap=True).print(f"[bold red]interrupted[/]{escape(hint)}", highlight=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - a defect of quantscope's own, told in one message
        if os.environ.get("QUANTSCOPE_TRACEBACK"):
            raise
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(_first_line(exc))}. This is a "
            "quantscope defect, not a problem with your input as far as quantscope can tell: please report it "
            "with the command and the model; QUANTSCOPE_TRACEBACK=1 shows where it happened",
            highlight=False,
        )
        return 1
    finally:
        INTERFACE.reset(token)


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
