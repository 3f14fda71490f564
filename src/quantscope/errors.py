"""The errors quantscope raises for bad input.

Every message names what is wrong, where (file, node, layer, sample) and what to
do about it. All derive from :class:`QuantscopeError`, so a caller can catch one
type; the command line prints the message and exits with status 2.
"""

from __future__ import annotations

from contextvars import ContextVar

#: The interface a call came through: ``"python"`` (the API) or ``"cli"`` (the
#: ``quantscope`` command sets it), so that messages name the options the user has.
INTERFACE: ContextVar[str] = ContextVar("quantscope_interface", default="python")


def option(python: str, cli: str) -> str:
    """``python`` (a keyword, e.g. ``skip_bad=True``) or ``cli`` (a flag, ``--skip-bad``),
    for the interface of the current call."""
    return cli if INTERFACE.get() == "cli" else python


class QuantscopeError(Exception):
    """Base class of every error quantscope raises for a user's input."""


class ModelLoadError(QuantscopeError):
    """The model file cannot be read, is not ONNX, is truncated, or fails the checker."""


class UnsupportedModelError(QuantscopeError):
    """The model uses operators or structures quantscope cannot handle.

    ``nodes`` lists every offending node as ``(node name, op type)``, not only the first.
    """

    def __init__(self, message: str, nodes: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.nodes = list(nodes or [])

    def __reduce__(self):  # keep the nodes when sent between processes
        return (type(self), (str(self), self.nodes))


class CalibrationDataError(QuantscopeError):
    """The data cannot be used: empty, wrong shape, undecodable image, bad file."""


class NonFiniteActivationError(QuantscopeError):
    """A NaN or Inf appeared in a tensor during calibration or validation."""

    def __init__(self, message: str, layer: str):
        super().__init__(message)
        self.layer = layer

    def __reduce__(self):  # picklable, for errors raised on Dask workers
        return (type(self), (str(self), self.layer))


class ConfigurationError(QuantscopeError):
    """An option or configuration value is invalid (unknown layer name, bad range...)."""


class DeviceError(QuantscopeError):
    """The requested execution device (GPU) is not available."""
