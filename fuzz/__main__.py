"""Run the fuzzing harnesses: ``python -m fuzz [--seconds S] [HARNESS ...]``.

Each harness runs in its own process for S seconds (libFuzzer's ``-max_total_time``),
starting from the valid files of its ``seeds()`` (the corpus grows in a temporary folder);
the exit status is non-zero when any harness found a crash (its input is written to
``fuzz/crashes/``)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

HARNESSES = ("model", "npy", "npz", "image", "ranges", "checkpoint")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("harness", nargs="*", help=f"harnesses to run (default all: {', '.join(HARNESSES)})")
    parser.add_argument("--seconds", type=int, default=30, help="time per harness (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed (default 1: the same inputs each run)")
    args = parser.parse_args()
    unknown = [h for h in args.harness if h not in HARNESSES]
    if unknown:
        parser.error(f"unknown harness {', '.join(unknown)}; choose from {', '.join(HARNESSES)}")
    crashes = Path(__file__).resolve().parent / "crashes"
    crashes.mkdir(exist_ok=True)
    failed = []
    for name in args.harness or HARNESSES:
        corpus = Path(tempfile.mkdtemp(prefix=f"quantscope-fuzz-{name}-"))
        for i, seed in enumerate(importlib.import_module(f"fuzz.{name}").seeds()):
            (corpus / f"seed{i}").write_bytes(seed)
        cmd = [
            sys.executable,
            "-m",
            f"fuzz.{name}",
            f"-max_total_time={args.seconds}",
            "-rss_limit_mb=4096",
            "-timeout=30",
            f"-seed={args.seed}",
            f"-artifact_prefix={crashes}/{name}-",
            str(corpus),
        ]
        print(f"fuzz {name}: {args.seconds} s", flush=True)
        done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
        tail = [line for line in done.stderr.splitlines() if line.startswith(("#", "Done", "==", "INFO: -max"))][-2:]
        print("  " + "\n  ".join(tail), flush=True)
        if done.returncode != 0:
            failed.append(name)
            print(done.stderr[-3000:], flush=True)
    print(f"{len(args.harness or HARNESSES) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
