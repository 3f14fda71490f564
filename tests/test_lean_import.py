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
