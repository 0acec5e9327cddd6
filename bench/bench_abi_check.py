#!/usr/bin/env python3
"""``plugin-host abi check`` over 500 plugin libraries vs ``nm -D --defined-only``.

Both sides read the same 500 files (copies of the example plugins, so the page
cache is warm for both), measured side by side in one run, alternating which
goes first in each repeat:

- ``plugin-host abi check DIR --json``: one process for the whole directory
  (interpreter start-up included), which parses every export table, decodes
  every ABI descriptor and checks it against the host's declarations;
- ``nm -D --defined-only FILE``: one process per file, as a shell loop or a
  CI step would run it (and nm only lists the symbols).

Target: the check takes at most 0.5x the time of the nm loop.  Run:

    python bench/bench_abi_check.py            # after `pip install .`
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plugin_annotations import build_plugins

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("greeters", "host_owned", "multi_trait")
TARGET_RATIO = 0.5


def run_abi_check(directory: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "plugin_host", "abi", "check", str(directory), "--json"],
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"abi check failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return elapsed


def run_nm(files: list[Path]) -> float:
    start = time.perf_counter()
    for f in files:
        subprocess.run(["nm", "-D", "--defined-only", str(f)], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("nm") is None:
        raise SystemExit("nm not found (binutils)")
    with tempfile.TemporaryDirectory(prefix="bench-abi-") as tmp:
        root = Path(tmp)
        built = build_plugins(REPO / "native_plugins", root / "build").outputs
        libs = root / "libs"
        libs.mkdir()
        files = []
        for i in range(args.files):
            src = built[EXAMPLES[i % len(EXAMPLES)]]
            files.append(libs / f"lib{i:04d}_{src.name.removeprefix('lib')}")
            shutil.copyfile(src, files[-1])
        run_abi_check(libs), run_nm(files[:20])  # warm-up: page cache, imports, .pyc files
        checks, nms, ratios = [], [], []
        for i in range(args.repeats):
            if i % 2:
                n = run_nm(files)
                c = run_abi_check(libs)
            else:
                c = run_abi_check(libs)
                n = run_nm(files)
            checks.append(c)
            nms.append(n)
            ratios.append(c / n)
        check, nm, ratio = statistics.median(checks), statistics.median(nms), statistics.median(ratios)
    print(f"{args.files} plugin libraries, median of {args.repeats} repeats")
    print(f"  plugin-host abi check (1 process):    {check * 1000:8.1f} ms  ({check / args.files * 1000:.2f} ms/file)")
    print(f"  nm -D --defined-only (1 per file):    {nm * 1000:8.1f} ms  ({nm / args.files * 1000:.2f} ms/file)")
    verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
    print(f"  ratio abi check / nm: {ratio:.3f}  (target <= {TARGET_RATIO}: {verdict})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
