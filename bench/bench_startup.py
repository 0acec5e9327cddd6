#!/usr/bin/env python3
"""Start-up cost: ``import plugin_host`` and ``plugin-host --version`` against ``python -c pass``.

Each command runs as a fresh process, the three alternating, ``--repeats``
times; each figure is the median of the per-round ratios to ``python -c pass``
of the same round, by wall time and by the children's CPU time (user +
system, from ``getrusage``; a busy machine disturbs it much less).  The
interpreter is this one, with the same ``sys.flags`` (an editable install's
path hook costs every command the same).

Targets (issue 16): ``import plugin_host`` <= 3x, ``plugin-host --version`` <= 4x.
Run:

    python bench/bench_startup.py            # after `pip install .`
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import plugin_host": [sys.executable, "-c", "import plugin_host"],
    "plugin-host --version": [sys.executable, "-m", "plugin_host", "--version"],
}
TARGETS = {"import plugin_host": 3.0, "plugin-host --version": 4.0}


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall time and CPU time of one run of ``cmd``, in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    for cmd in COMMANDS.values():  # warm the file cache and the bytecode caches
        run(cmd)
    rounds: list[dict[str, tuple[float, float]]] = []
    for i in range(args.repeats):
        order = list(COMMANDS) if i % 2 == 0 else list(reversed(COMMANDS))
        rounds.append({name: run(COMMANDS[name]) for name in order})
    print(f"python {sys.version.split()[0]}, median of {args.repeats} rounds")
    base = "python -c pass"
    wall0 = statistics.median(r[base][0] for r in rounds) * 1e3
    cpu0 = statistics.median(r[base][1] for r in rounds) * 1e3
    print(f"{base:22s} wall {wall0:6.1f} ms   CPU {cpu0:6.1f} ms")
    met = True
    for name, target in TARGETS.items():
        wall = statistics.median(r[name][0] for r in rounds) * 1e3
        cpu = statistics.median(r[name][1] for r in rounds) * 1e3
        wall_ratio = statistics.median(r[name][0] / r[base][0] for r in rounds)
        cpu_ratio = statistics.median(r[name][1] / max(r[base][1], 1e-6) for r in rounds)
        met &= min(wall_ratio, cpu_ratio) <= target
        print(
            f"{name:22s} wall {wall:6.1f} ms ({wall_ratio:.2f}x)   CPU {cpu:6.1f} ms ({cpu_ratio:.2f}x)   "
            f"target <= {target}x"
        )
    print("all targets met" if met else "some target missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
