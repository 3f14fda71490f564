"""Validation: float vs int8 metrics, memory, per-layer diagnostics."""

from .fallback import FallbackResult, FallbackStep
from .metrics import resolve_metrics, top1_accuracy, top5_accuracy
from .validate import ValidationResult, validate

__all__ = [
    "FallbackResult",
    "FallbackStep",
    "ValidationResult",
    "resolve_metrics",
    "top1_accuracy",
    "top5_accuracy",
    "validate",
]
