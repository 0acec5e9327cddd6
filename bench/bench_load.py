#!/usr/bin/env python3
"""Load and unload benchmarks against the loader's own floor, side by side in one run.

Each figure compares the host with a bare loop over the same number of fresh
copies of one plugin that does only what the loader must: ``_ctypes.dlopen``
(no ``ctypes.CDLL``, which builds a class per library) and ``dlsym`` of the
symbols the host needs, then ``dlclose``.

1. plugin-owned load (``plugin_register_all``) of 200 files vs dlopen + 3
   dlsym each.  Target: <= 1.2x.
2. unload of those 200 files (``unload_all``: unregister, counter, close,
   the unmapped check) vs a dlclose loop.  Target: <= 1.5x.
3. the same 200 files loaded again, unchanged, vs dlopen + dlsym again.
   Target: <= 1.2x.
4. host-owned load (makers found in the symbol table) of 200 files vs dlopen
   + dlsym of the same maker and unmaker names, known in advance.  Target:
   <= 1.5x.

Each side gets its own fresh file names per repeat (dlopen of a path already
mapped is a cheap reference count), the sides alternate, and each figure is
the median of the paired per-repeat ratios.  Run:

    python bench/bench_load.py            # after `pip install .`
    python bench/bench_load.py --cpu      # CPU time: less disturbed on a shared machine
    python bench/bench_load.py --instructions   # also instructions per file (callgrind)

``--instructions`` counts each load alone in a child under callgrind
(``valgrind --tool=callgrind``), whose counts repeat exactly where time is
noisy: at two directory sizes, the difference of the totals divided by the
difference of the sizes is one file's count.
"""

from __future__ import annotations

import _ctypes
import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _callgrind import instructions_per_op  # bench/, on the path when a bench runs as a script
from plugin_annotations import build_plugins
from plugin_host import PluginManager, PluginTrait
from plugin_host.formats import exported_symbols
from plugin_interface import register_all_symbol, unmaker_counter_symbol, unregister_all_symbol

REPO = Path(__file__).resolve().parents[1]
MODE = os.RTLD_NOW | os.RTLD_LOCAL
TRAIT = PluginTrait.Greeter
#: Wall time by default; ``--cpu`` measures this process's CPU time (user + system), which other
#: processes on a busy machine disturb much less (a sleep or a wait for the CPU does not count).
CLOCK = time.perf_counter


def copies(src: Path, root: Path, name: str, count: int) -> Path:
    d = root / name
    d.mkdir()
    for i in range(count):
        shutil.copy(src, d / f"lib{src.stem[3:]}_{i:03d}.so")
    return d


def bare_open(d: Path, symbols: list[str]) -> tuple[float, list[int]]:
    start = CLOCK()
    handles = []
    for name in sorted(os.listdir(d)):
        h = _ctypes.dlopen(os.path.join(d, name), MODE)
        for s in symbols:
            _ctypes.dlsym(h, s)
        handles.append(h)
    return CLOCK() - start, handles


def bare_close(handles: list[int]) -> float:
    start = CLOCK()
    for h in handles:
        _ctypes.dlclose(h)
    return CLOCK() - start


def timed(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


class Round:
    """One repeat: the host's four figures and the bare loop's, on fresh copies."""

    def __init__(self, libs: dict[str, Path], root: Path, count: int, r: int) -> None:
        self.owned = copies(libs["greeters"], root, f"owned{r}", count)
        self.bare_owned = copies(libs["greeters"], root, f"bare_owned{r}", count)
        self.hosted = copies(libs["host_owned"], root, f"hosted{r}", count)
        self.bare_hosted = copies(libs["host_owned"], root, f"bare_hosted{r}", count)
        self.count = count

    def host(self) -> dict[str, float]:
        manager = PluginManager()
        out = {"load": timed(lambda: manager.load_plugins(self.owned, TRAIT))}
        assert len(manager.handles) == self.count
        out["unload"] = timed(manager.unload_all)
        out["again"] = timed(lambda: manager.load_plugins(self.owned, TRAIT))
        manager.unload_all()
        out["host_owned"] = timed(lambda: manager.load_plugins(self.hosted, TRAIT))
        manager.unload_all()
        return out

    def bare(self, owned_symbols: list[str], hosted_symbols: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        out["load"], handles = bare_open(self.bare_owned, owned_symbols)
        out["unload"] = bare_close(handles)
        out["again"], handles = bare_open(self.bare_owned, owned_symbols)
        bare_close(handles)
        out["host_owned"], handles = bare_open(self.bare_hosted, hosted_symbols)
        bare_close(handles)
        return out


def child(build: Path, kind: str, side: str, count: int) -> None:
    """One load alone, of ``count`` fresh copies (run under callgrind by ``--instructions``)."""
    libs = {"load": build / "libgreeters.so", "host_owned": build / "libhost_owned.so"}
    src = libs[kind]
    symbols = _symbols(src) if kind == "host_owned" else _owned_symbols()
    with tempfile.TemporaryDirectory(prefix="bench-load-child-") as tmp:
        warm = copies(src, Path(tmp), "warm", 2)
        d = copies(src, Path(tmp), "d", count)
        manager = PluginManager()
        manager.load_plugins(warm, TRAIT)  # imports and first-use caches: in both lengths alike
        manager.unload_all()
        gc.disable()  # a collection in one length but not the other would be counted as files
        if side == "host":
            manager.load_plugins(d, TRAIT)
        else:
            bare_open(d, symbols)
        gc.enable()


def _owned_symbols() -> list[str]:
    return [register_all_symbol(TRAIT), unregister_all_symbol(TRAIT), unmaker_counter_symbol(TRAIT)]


def _symbols(lib: Path) -> list[str]:
    return [n for n in exported_symbols(lib) if n.startswith("plugin_")]


def instructions(build: Path, kind: str, side: str, short: int = 20, long: int = 220) -> float:
    """Instructions per file: callgrind totals of two directory sizes, differenced."""
    return instructions_per_op(__file__, build, kind, side, short, long)


TARGETS = {"load": 1.2, "unload": 1.5, "again": 1.2, "host_owned": 1.5}
LABELS = {
    "load": "plugin-owned load",
    "unload": "unload_all",
    "again": "same files again",
    "host_owned": "host-owned load",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--cpu", action="store_true", help="CPU time of this process instead of wall time")
    parser.add_argument("--instructions", action="store_true", help="also instructions per file (callgrind)")
    parser.add_argument("--child", nargs=4, metavar=("BUILD", "KIND", "SIDE", "FILES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        build, kind, side, files = args.child
        child(Path(build), kind, side, int(files))
        return 0
    global CLOCK
    CLOCK = time.process_time if args.cpu else time.perf_counter
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        root = Path(tmp)
        libs = build_plugins(REPO / "native_plugins", root / "build").outputs
        owned_symbols = _owned_symbols()
        hosted_symbols = _symbols(libs["host_owned"])
        rounds = [Round(libs, root, args.files, r) for r in range(args.repeats + 1)]
        warm = rounds.pop()
        warm.host(), warm.bare(owned_symbols, hosted_symbols)
        hosts: list[dict[str, float]] = []
        bares: list[dict[str, float]] = []
        for i, rnd in enumerate(rounds):
            if i % 2:
                bares.append(rnd.bare(owned_symbols, hosted_symbols))
                hosts.append(rnd.host())
            else:
                hosts.append(rnd.host())
                bares.append(rnd.bare(owned_symbols, hosted_symbols))
        counts: dict[str, dict[str, float]] = {}
        if args.instructions and shutil.which("valgrind") is not None:
            for kind in ("load", "host_owned"):
                counts[kind] = {side: instructions(root / "build", kind, side) for side in ("host", "bare")}
    clock = "CPU time" if args.cpu else "wall time"
    print(f"python {sys.version.split()[0]}, {args.files} files, {clock}, median of {args.repeats} paired repeats")
    met = True
    for key, target in TARGETS.items():
        h = statistics.median(x[key] for x in hosts) * 1e3
        b = statistics.median(x[key] for x in bares) * 1e3
        ratios = sorted(x[key] / y[key] for x, y in zip(hosts, bares, strict=True))
        ratio = statistics.median(ratios)
        met &= ratio <= target
        print(
            f"{LABELS[key]:18s} host {h:7.1f} ms   bare loop {b:7.1f} ms   ratio {ratio:5.2f} "
            f"(spread {ratios[0]:.2f}-{ratios[-1]:.2f})  target <= {target}"
        )
    if args.instructions:
        if not counts:
            print("valgrind is not installed: no instruction counts")
        for kind, sides in counts.items():
            print(
                f"{LABELS[kind]:18s} instructions per file (callgrind, 200 files more): host {sides['host']:8.0f}"
                f"   bare loop {sides['bare']:8.0f}   ratio {sides['host'] / sides['bare']:5.2f}"
            )
    print("all targets met" if met else "some target missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
