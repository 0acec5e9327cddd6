#!/usr/bin/env python3
"""Untrusted-plugin benchmarks (issue 6), measured side by side in one run.

1. ``load_plugins`` of a directory of 200 plugin files with the admission
   checks (load policy + pre-check) against the same load without them (every
   file admitted unchecked, so both sides open and register the directory in
   the one call into C; until this release the unchecked side opened each file
   in Python, which flattered the checks to 0.5x-0.7x).  Target: <= 1.10x.
2. The isolated probe: median wall time per library (child start-up, dlopen,
   makers, unmakers, report).  Target: <= 10 ms (issue 16; it was 80 ms).
3. A probe answered from the cache (unchanged file): median per library; no
   child process is started.

Each ratio is the median of paired, alternating repeats with fresh file names.
Run:

    python bench/bench_untrusted.py            # after `pip install .`
    python bench/bench_untrusted.py --cpu      # the loads by CPU time
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import plugin_host.admission._admission as admission
from plugin_annotations import build_plugins
from plugin_host import PluginManager, PluginTrait
from plugin_host.admission import probe_library
from plugin_host.admission._probe import shared_server
from plugin_host.loading import DirectoryVerdicts, Library

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def checks_off() -> Iterator[None]:
    """The load path without policy and pre-check (what the host did before issue 6)."""
    original_open, original_batch = admission.Admission.open_library, admission.Admission.admitted_in_place

    def bare(
        self: admission.Admission,
        path: Path,
        *,
        copy_on_load: bool,
        dirs: DirectoryVerdicts | None = None,
        admitted: bool = False,
        traits: object = (),
    ) -> Library:
        return Library.from_private_copy(path) if copy_on_load else Library(path)

    def all_admitted(
        self: admission.Admission, paths: list[Path], dirs: DirectoryVerdicts, *, copy_on_load: bool
    ) -> list[bool]:
        # Every file admitted unchecked: the directory load still opens and registers them in its one
        # call into C, as the checked side does, so the ratio is the checks' cost and nothing else.
        return [not copy_on_load] * len(paths)

    admission.Admission.open_library = bare  # type: ignore[method-assign]
    admission.Admission.admitted_in_place = all_admitted  # type: ignore[method-assign]
    try:
        yield
    finally:
        admission.Admission.open_library = original_open  # type: ignore[method-assign]
        admission.Admission.admitted_in_place = original_batch  # type: ignore[method-assign]


def bench_precheck(lib: Path, repeats: int, count: int, clock: Callable[[], float] = time.perf_counter) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-untrusted-") as tmp:
        dirs = []
        for r in range(repeats):
            for side in ("on", "off"):
                d = Path(tmp) / f"{side}{r}"
                d.mkdir()
                for i in range(count):
                    shutil.copy(lib, d / f"libgreeters_{i:03d}.so")
                dirs.append(d)

        def load(d: Path) -> float:
            manager = PluginManager()
            start = clock()
            handles = manager.load_plugins(d, PluginTrait.Greeter)
            elapsed = clock() - start
            assert len(handles) == count
            manager.unload_all()
            return elapsed

        on, off, ratios = [], [], []
        it = iter(dirs)
        for r in range(repeats):
            d_on, d_off = next(it), next(it)
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            t: dict[str, float] = {}
            for side in order:
                if side == "on":
                    t["on"] = load(d_on)
                else:
                    with checks_off():
                        t["off"] = load(d_off)
            on.append(t["on"])
            off.append(t["off"])
            ratios.append(t["on"] / t["off"])
    ratio = statistics.median(ratios)
    print(
        f"load {count} files:  checks on {statistics.median(on) * 1e3:7.1f} ms   off "
        f"{statistics.median(off) * 1e3:7.1f} ms   ratio {ratio:.3f}  (target <= 1.10)"
    )
    return ratio


def server_cpu_s() -> tuple[float, float] | None:
    """CPU seconds of the probe server itself and of the children it reaped (Linux ``/proc``), or ``None``."""
    pid = shared_server().pid
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def bench_probe(lib: Path, repeats: int) -> tuple[float, float]:
    times = []
    cpu_start: tuple[float, tuple[float, float] | None] = (0.0, None)
    for i in range(repeats):
        if i == 1:  # after the server's start-up
            cpu_start = (time.process_time(), server_cpu_s())
        start = time.perf_counter()
        result = probe_library(lib, use_cache=False)
        times.append(time.perf_counter() - start)
        assert result.clean
    host_s, server = time.process_time() - cpu_start[0], server_cpu_s()
    if repeats > 1 and server is not None and cpu_start[1] is not None:
        n = repeats - 1
        own, children = (b - a for a, b in zip(cpu_start[1], server, strict=True))
        print(
            f"probe CPU per library: host {host_s / n * 1e3:.2f} ms, server {own / n * 1e3:.2f} ms, child "
            f"{children / n * 1e3:.2f} ms (clock ticks over {n} probes; load average {os.getloadavg()[0]:.1f})"
        )
    with tempfile.TemporaryDirectory(prefix="bench-probe-cache-") as cache:
        probe_library(lib, cache_dir=cache)
        cached = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = probe_library(lib, cache_dir=cache)
            cached.append(time.perf_counter() - start)
            assert result.cached
    probe_ms, cached_ms = statistics.median(times) * 1e3, statistics.median(cached) * 1e3
    print(
        f"probe per library: median {probe_ms:6.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})"
        f"  (target <= 10 ms)"
    )
    print(f"cached probe:      median {cached_ms:6.3f} ms (hash + cache look-up, no child process)")
    return probe_ms, cached_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--probes", type=int, default=21)
    parser.add_argument(
        "--cpu", action="store_true", help="time the loads by the process's CPU time (steadier on a shared machine)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as build:
        libs = build_plugins(REPO / "native_plugins", build).outputs
        print(f"python {sys.version.split()[0]}, median of {args.repeats} paired repeats")
        clock = time.process_time if args.cpu else time.perf_counter
        ok = [bench_precheck(libs["greeters"], args.repeats, args.files, clock) <= 1.10]
        probe_ms, _ = bench_probe(libs["greeters"], args.probes)
        ok.append(probe_ms <= 10)
    print("all targets met" if all(ok) else "some target missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
