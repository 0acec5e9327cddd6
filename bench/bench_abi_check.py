#!/usr/bin/env python3
"""``plugin-host abi check`` of 500 plugin libraries vs ONE ``nm -D`` process over the same 500 files.

Both sides read the same 500 files, measured side by side in one run,
alternating which goes first in each repeat:

- ``plugin-host abi check DIR``: one process for the whole directory
  (interpreter start-up and imports included), which reads every export
  table, decodes every ABI descriptor and embedded declaration, checks them
  against the host's declarations and prints the report (text; ``--json``
  is measured too, as a diagnostic);
- ``nm -D FILE...``: one process listing the dynamic symbols of all 500 files
  (and nm only lists them).

Wall-clock time is the target; the CPU time of each process (user + system,
from ``getrusage``) is printed too, as it is less disturbed by other jobs on a
shared machine.

The files are copies of the example plugins, each with its implementation
type names rewritten to names of its own (``English`` -> ``E000123``), so no
two libraries export the same maker names, as in a real folder of plugins;
their trait headers (descriptors, declarations) stay shared, as plugins built
against one host's headers share them.  The check's process gets a bytecode
cache of its own (``PYTHONPYCACHEPREFIX`` in the temporary directory, written
by the warm-up run), as an installed package has: a ``PYTHONDONTWRITEBYTECODE``
environment would otherwise make it compile every module on every run.

Target: the check takes at most 1x the time of the one nm process.  Run:

    python bench/bench_abi_check.py            # after `pip install .`
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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
#: Implementation type names of the examples, rewritten per copy (same length, so every offset stays put).
TYPE_NAMES = (b"English", b"French", b"Spanish", b"German", b"Italian", b"Counting", b"Rot13", b"Upper")
TARGET_RATIO = 1.0


def distinct_copy(data: bytes, index: int) -> bytes:
    """``data`` with each type name replaced by one of the same length unique to ``index``."""
    for name in TYPE_NAMES:
        unique = (name[:1] + str(index).zfill(len(name) - 1).encode())[: len(name)]
        data = re.sub(re.escape(name), unique, data)
    return data


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds (user + system) of the process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:  # the copies are identical, clean plugins: nothing to report
        raise SystemExit(f"{argv[:4]} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def spread(values: list[float]) -> str:
    low, high = min(values) * 1000, max(values) * 1000
    return f"median {statistics.median(values) * 1000:7.1f} ms  (min {low:.1f}, max {high:.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=9)
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
            files[-1].write_bytes(distinct_copy(src.read_bytes(), i))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        check = [sys.executable, "-m", "plugin_host", "abi", "check", str(libs)]
        nm = ["nm", "-D", *map(str, files)]
        timed(check, env), timed([*check, "--json"], env), timed(nm)  # warm-up: page cache, bytecode cache
        checks: list[float] = []
        jsons: list[float] = []
        nms: list[float] = []
        ratios: list[float] = []
        cpu_ratios: list[float] = []
        check_cpus: list[float] = []
        nm_cpus: list[float] = []
        for i in range(args.repeats):
            if i % 2:
                n, n_cpu = timed(nm)
                c, c_cpu = timed(check, env)
            else:
                c, c_cpu = timed(check, env)
                n, n_cpu = timed(nm)
            jsons.append(timed([*check, "--json"], env)[0])
            checks.append(c)
            nms.append(n)
            ratios.append(c / n)
            cpu_ratios.append(c_cpu / n_cpu)
            check_cpus.append(c_cpu)
            nm_cpus.append(n_cpu)
    ratio = statistics.median(ratios)
    print(f"{args.files} plugin libraries, {args.repeats} alternating repeats")
    print(f"  plugin-host abi check DIR (1 process):  {spread(checks)}")
    print(f"  nm -D FILE... (1 process):              {spread(nms)}")
    print(f"  ratio abi check / nm: median {ratio:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
    cpu, low, high = statistics.median(cpu_ratios), min(cpu_ratios), max(cpu_ratios)
    print(f"  CPU time (user + system): abi check {spread(check_cpus)}")
    print(f"                            nm        {spread(nm_cpus)}")
    print(f"  ratio of CPU time:                   median {cpu:.2f} (min {low:.2f}, max {high:.2f})")
    print(f"  (diagnostic) abi check DIR --json:      {spread(jsons)}")
    verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
    print(f"  target <= {TARGET_RATIO}: {verdict}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
