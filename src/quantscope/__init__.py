"""quantscope: calibrate, quantize, validate and profile networks for int8.

The public API, at a glance (explicit re-exports; everything else is private)::

    net = quantscope.prepare("model.onnx")          # load + prepareNetwork
    cal = quantscope.calibrate(net, data)           # MATLAB's calibrate
    cal.table                                       # pandas DataFrame, MATLAB's columns
    cal.save("ranges.json")
    res = quantscope.validate(cal, val_data, target="fpga")   # MATLAB's validate
    res.metric_results["top1_accuracy"]              # float vs int8, memory
    qnet = quantscope.quantize_network(cal, "cpu")   # MATLAB's quantize
    qnet.save("model.int8.onnx")                     # QDQ ONNX + exponents/scales JSON

Importing quantscope imports neither torch nor dask.
"""

from .calibrate import (
    Batch,
    Calibration,
    DataSource,
    ImageDatastore,
    TensorStats,
    as_source,
    calibrate,
)
from .errors import (
    CalibrationDataError,
    ConfigurationError,
    DeviceError,
    ModelLoadError,
    NonFiniteActivationError,
    QuantscopeError,
    UnsupportedModelError,
)
from .network import Network, OptimizedLayer, load_model, prepare
from .quantize import FloatScale, PowerOfTwo, Rounding, Saturation, cpu_int8_saturates
from .simulate import QuantizedNetwork, quantize_network
from .validate import ValidationResult, validate

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Calibration",
    "CalibrationDataError",
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
    "as_source",
    "calibrate",
    "load_model",
    "prepare",
    "quantize_network",
    "validate",
]
