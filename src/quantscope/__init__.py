"""quantscope: calibrate, quantize, validate and profile networks for int8.

The public API, at a glance (explicit re-exports; everything else is private)::

    net = quantscope.prepare("model.onnx")          # load + prepareNetwork
    # (equalize=True, then quantscope.absorb_biases(net, data): docs/accuracy.md)
    cal = quantscope.calibrate(net, data)           # MATLAB's calibrate
    cal.table                                       # pandas DataFrame, MATLAB's columns
    cal.save("ranges.json")
    res = quantscope.validate(cal, val_data, target="fpga")   # MATLAB's validate
    res.metric_results["top1_accuracy"]              # float vs int8, memory
    qnet = quantscope.quantize_network(cal, "cpu")   # MATLAB's quantize
    qnet.save("model.int8.onnx")                     # QDQ ONNX + exponents/scales JSON
    res.report("report.html")                        # one HTML page (+ report.json beside it)

Importing quantscope imports neither torch nor dask.
"""

import importlib
import sys
import types

from .errors import (
    CalibrationDataError,
    ConfigurationError,
    DeviceError,
    ModelLoadError,
    NonFiniteActivationError,
    QuantscopeError,
    UnsupportedModelError,
)

#: Public name -> the module that defines it. Loaded on first use, so that
#: ``quantscope --help`` and ``import quantscope.errors`` stay fast.
_LAZY = {
    **dict.fromkeys(("Batch", "Calibration", "DataSource", "ImageDatastore", "TensorStats"), "quantscope.calibrate"),
    "CalibrationOptions": "quantscope.calibrate",
    **dict.fromkeys(("as_source", "calibrate"), "quantscope.calibrate"),
    "absorb_biases": "quantscope.calibrate.absorb",
    **dict.fromkeys(("Network", "OptimizedLayer", "load_model", "prepare"), "quantscope.network"),
    **dict.fromkeys(("FloatScale", "PowerOfTwo", "Rounding", "Saturation"), "quantscope.quantize"),
    "cpu_int8_saturates": "quantscope.quantize",
    **dict.fromkeys(("QuantizedNetwork", "quantize_network"), "quantscope.simulate"),
    **dict.fromkeys(("ValidationResult", "validate"), "quantscope.validate"),
    "report": "quantscope.report",
}


class _Package(types.ModuleType):
    """quantscope's module object: public names load on first use, and the functions
    ``calibrate``, ``validate`` and ``report`` stay functions when their subpackages load."""

    def __getattr__(self, name: str):
        if name not in _LAZY:
            raise AttributeError(f"module 'quantscope' has no attribute {name!r}")
        value = getattr(importlib.import_module(_LAZY[name]), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return  # the import system binding a subpackage over the function of its name
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_LAZY))


sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Calibration",
    "CalibrationDataError",
    "CalibrationOptions",
    "ConfigurationError",
    "DataSource",
    "DeviceError",
    "FloatScale",
    "cpu_int8_saturates",
    "ImageDatastore",
    "ModelLoadError",
    "Network",
    "NonFiniteActivationError",
    "OptimizedLayer",
    "PowerOfTwo",
    "QuantizedNetwork",
    "QuantscopeError",
    "Rounding",
    "Saturation",
    "TensorStats",
    "UnsupportedModelError",
    "ValidationResult",
    "__version__",
    "absorb_biases",
    "as_source",
    "calibrate",
    "load_model",
    "prepare",
    "quantize_network",
    "report",
    "validate",
]
