#!/usr/bin/env python3
"""The PE and Mach-O export readers, before (pefile, macholib) and now (``struct``), per file, in one run.

The files are the example plugins cross-built with zig for x86_64-windows-gnu
(PE ``.dll``), x86_64-macos and aarch64-macos (Mach-O ``.dylib``), as
tests/test_cross.py builds them (``pip install '.[cross]'``; the zig cache in
~/.cache/plugin-host/zig is reused), or the files of ``--dir``.  For each file:

- before: the readers the host had (tests/pe_macho_reference.py, as they were:
  ``pefile.PE(path)`` then ``pe.close()``, which runs a full ``gc.collect()``;
  the collection's cost grows with the process's heap, so "before, no gc" is
  printed too: pefile given the file's bytes, nothing to close);
- now: ``plugin_host.formats.read_exports`` (formats/_pe.py, formats/_macho.py).

The sides alternate in each repeat; each figure is the median time per file
over the repeats, and the ratio is before / now.  Run:

    python bench/bench_pe_macho.py             # after `pip install '.[test,cross]'`
    python bench/bench_pe_macho.py --dir DIR   # the .dll and .dylib files in DIR
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from plugin_annotations import DEFAULT_CFLAGS, discover_plugins, get_include_dirs
from plugin_host.formats import ExportTable, read_exports
from plugin_interface import library_filename

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from pe_macho_reference import reference_macho_exports, reference_pe_exports  # noqa: E402

TARGETS = {"x86_64-windows-gnu": "win32", "x86_64-macos": "darwin", "aarch64-macos": "darwin"}
PLUGINS = ("greeters", "host_owned", "multi_trait")


def build(root: Path) -> list[Path]:
    """The example plugins cross-built for every target (as tests/test_cross.py builds them)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plugin-host" / "zig"
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(cache), "ZIG_LOCAL_CACHE_DIR": str(cache)}
    built = []
    for spec in (s for s in discover_plugins(REPO / "native_plugins") if s.name in PLUGINS):
        for target, platform in TARGETS.items():
            out = root / target / library_filename(spec.name, platform)
            out.parent.mkdir(exist_ok=True)
            flags = [f for f in DEFAULT_CFLAGS if not (f == "-fPIC" and "windows" in target)]
            cmd = [sys.executable, "-m", "ziglang", "cc", "-target", target, "-shared", *flags]
            cmd += [f"-I{d}" for d in [out.parent, *get_include_dirs()]]
            cmd += [f"-D{d}" for d in spec.defines] + ["-o", str(out), *map(str, spec.sources)]
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            built.append(out)
    return built


def before(path: str) -> ExportTable:
    return reference_pe_exports(path, as_before=True) if path.endswith(".dll") else reference_macho_exports(path)


def before_no_gc(path: str) -> ExportTable:
    return reference_pe_exports(path) if path.endswith(".dll") else reference_macho_exports(path)


def timed(read: Callable[[str], ExportTable], path: str, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        read(path)
    return (time.perf_counter() - start) / loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="read the .dll and .dylib files here instead of building")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--loops", type=int, default=20, help="reads per side per repeat")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.dir is not None:
            files = sorted(p for p in args.dir.iterdir() if p.suffix in (".dll", ".dylib"))
        else:
            print("building the example plugins with zig ...", flush=True)
            files = build(Path(tmp))
        sides: dict[str, Callable[[str], ExportTable]] = {
            "before": before,
            "before, no gc": before_no_gc,
            "now": read_exports,
        }
        print(f"{'file':44} {'size':>8} {'before':>10} {'before, no gc':>14} {'now':>9} {'ratio':>7} {'(no gc)':>8}")
        ratios: dict[str, list[float]] = {".dll": [], ".dylib": []}
        for f in files:
            path = str(f)
            assert before(path) == read_exports(path), path  # the same table, or the comparison is moot
            times: dict[str, list[float]] = {name: [] for name in sides}
            for repeat in range(args.repeats):
                order = list(sides.items()) if repeat % 2 == 0 else list(reversed(sides.items()))
                for name, read in order:
                    times[name].append(timed(read, path, args.loops))
            old, old_no_gc, new = (statistics.median(times[n]) for n in sides)
            ratios[f.suffix].append(old / new)
            name = f"{f.parent.name}/{f.name}"
            print(
                f"{name:44} {f.stat().st_size:>8} {old * 1e3:>8.3f}ms {old_no_gc * 1e3:>12.3f}ms "
                f"{new * 1e3:>7.3f}ms {old / new:>6.0f}x {old_no_gc / new:>7.0f}x"
            )
        for suffix, values in ratios.items():
            if values:
                print(f"{suffix}: before / now, median over {len(values)} files: {statistics.median(values):.0f}x")


if __name__ == "__main__":
    main()
