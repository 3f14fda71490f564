"""quantscope: calibrate, quantize, validate and profile networks for int8.

The public API, at a glance (explicit re-exports; everything else is private)::

    net = quantscope.prepare("model.onnx")          # load + prepareNetwork
    cal = quantscope.calibrate(net, data)           # MATLAB's calibrate
    cal.table                                       # pandas DataFrame, MATLAB's columns
    cal.save("ranges.json")

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

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Calibration",
    "CalibrationDataError",
    "ConfigurationError",
    "DataSource",
    "DeviceError",
    "ImageDatastore",
    "ModelLoadError",
    "Network",
    "NonFiniteActivationError",
    "OptimizedLayer",
    "QuantscopeError",
    "TensorStats",
    "UnsupportedModelError",
    "__version__",
    "as_source",
    "calibrate",
    "load_model",
    "prepare",
]
