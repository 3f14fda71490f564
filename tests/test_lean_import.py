"""Importing quantscope must not import torch or dask."""

import subprocess
import sys


def test_import_does_not_pull_torch_or_dask():
    code = (
        "import sys, quantscope, quantscope.cli, quantscope.calibrate, quantscope.network;"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'dask', 'distributed'));"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_command_line_starts_without_the_numeric_stack():
    """`quantscope --help` and argument errors load only the command line: the numeric
    libraries (numpy, onnx, onnxruntime, pandas...) load when a command runs."""
    code = (
        "import sys, quantscope.cli;"
        "heavy = sorted(m for m in ('numpy', 'onnx', 'onnxruntime', 'onnx_ir', 'pandas', 'ml_dtypes', 'sympy')"
        " if m in sys.modules);"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = subprocess.run([sys.executable, "-m", "quantscope.cli", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "calibrate" in shown.stdout
