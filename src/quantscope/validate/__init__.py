"""Validation: float vs int8 metrics, memory, per-layer diagnostics."""

from .metrics import resolve_metrics, top1_accuracy, top5_accuracy
from .validate import ValidationResult, validate

__all__ = ["ValidationResult", "resolve_metrics", "top1_accuracy", "top5_accuracy", "validate"]
