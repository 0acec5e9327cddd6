#!/usr/bin/env python3
"""User-trait benchmarks, each a ratio measured side by side in one run.

1. A proxy call with a struct by value and an ``Array[F32]`` of 64 items
   (``Mixer.mix(levels: Levels, samples: Array[F32]) -> F32``) vs the same call
   made by hand through cffi's ABI mode: ``ffi.cdef`` of the struct and of an
   exported C function with the same body, ``ffi.dlopen``, the struct built
   from the same Python object and passed by value, the floats passed with
   ``ffi.from_buffer``.  Target: <= 1.5x.
2. Reading the ABI of 500 libraries from the files (no loading) with their
   embedded trait declarations (:func:`plugin_host.abi.scan_library`:
   export table, descriptors and declarations, decoded into ``TraitSpec``)
   vs reading their descriptors alone (the same export tables, through one
   open file each, the descriptors decoded, nothing else).  Twice: over copies
   of the examples that embed a declaration (plugins of a few traits: each
   distinct declaration is decoded once, then found by content), and over
   copies of ``image_filter`` (the longest declaration: structs, a callback,
   a handle) whose declarations all differ (a parameter renamed per copy,
   same length), so every one is decoded.  Target: <= 2x.

Each figure is the median of several repeats; the two sides of a ratio
alternate within each repeat so machine noise hits both.  Run:

    python bench/bench_traits.py            # after `pip install .`
"""

from __future__ import annotations

import argparse
import array
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cffi
from plugin_annotations import build_plugins, write_trait_headers
from plugin_host import PluginManager
from plugin_host.abi import scan_library
from plugin_host.abi._check import read_descriptor  # the descriptor half of scan_library
from plugin_host.formats import open_exports
from plugin_interface import F32, Array, declare_trait, parse_symbol, plugin_struct

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 64


@plugin_struct
class Levels:
    """Gain and offset, then the clipping range: an audio effect's parameters."""

    gain: F32
    offset: F32
    low: F32
    high: F32


@declare_trait(version=1)
class Mixer(Protocol):
    """One audio-ish call: parameters in a struct, samples in a float array."""

    def mix(self, levels: Levels, samples: Array[F32]) -> F32:
        """The sum of the samples after gain, offset and clipping."""
        ...


MIXER_C = r"""
/* bench_traits: the same function as a Mixer vtable method and as a plain exported symbol. */
#include "plugin_annotations.h"
#include "plugin_trait_mixer.h"

static float mix_samples(Levels l, const float *s, size_t n) {
    float total = 0;
    for (size_t i = 0; i < n; i++) {
        float v = s[i] * l.gain + l.offset;
        total += v < l.low ? l.low : v > l.high ? l.high : v;
    }
    return total;
}
static float mix(void *self, Levels l, const float *s, size_t n) { (void)self; return mix_samples(l, s, n); }
PLUGIN_EXPORT float bench_mix(Levels l, const float *s, size_t n) { return mix_samples(l, s, n); }

PLUGIN_IMPL(Mixer, Clip, .mix = mix)
PLUGIN_AGGREGATES(Mixer)
"""


def per_call_ns(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


def paired(a: Callable[[], float], b: Callable[[], float], repeats: int) -> tuple[float, float, float, list[float]]:
    """Median of a, median of b, median of the per-repeat ratios a/b, and those ratios."""
    xs, ys, rs = [], [], []
    for i in range(repeats):
        if i % 2:
            y, x = b(), a()
        else:
            x, y = a(), b()
        xs.append(x)
        ys.append(y)
        rs.append(x / y)
    return statistics.median(xs), statistics.median(ys), statistics.median(rs), rs


def build_mixer(tmp: Path) -> Path:
    source = tmp / "src" / "mixer"
    source.mkdir(parents=True)
    write_trait_headers(source, [Mixer])
    (source / "mixer.c").write_text(MIXER_C)
    (source / "plugin.toml").write_text('name = "mixer"\nsources = ["mixer.c"]\n')
    return build_plugins(tmp / "src", tmp / "out").outputs["mixer"]


def bench_struct_array_call(tmp: Path, repeats: int, calls: int) -> float:
    lib = build_mixer(tmp)
    ffi = cffi.FFI()
    ffi.cdef(
        "typedef struct { float gain; float offset; float low; float high; } Levels;"
        "float bench_mix(Levels l, const float *s, size_t n);"
    )
    by_hand = ffi.dlopen(str(lib))
    levels = Levels(0.5, 0.25, -1.0, 1.0)
    samples = array.array("f", [((i * 37) % 64 - 32) / 16 for i in range(SAMPLES)])
    new, from_buffer, c_mix = ffi.new, ffi.from_buffer, by_hand.bench_mix

    def hand() -> float:
        p = new("Levels *", (levels.gain, levels.offset, levels.low, levels.high))
        result: float = c_mix(p[0], from_buffer("float[]", samples), len(samples))
        return result

    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, Mixer)
        mix: Any = handle.proxy("Clip").mix  # type: ignore[attr-defined]
        assert mix(levels, samples) == hand(), (mix(levels, samples), hand())
        t_proxy, t_hand, ratio, ratios = paired(
            lambda: per_call_ns(lambda: mix(levels, samples), calls),
            lambda: per_call_ns(hand, calls),
            repeats,
        )
        ffi.dlclose(by_hand)  # before the manager unloads: the library is then really unmapped
    spread = f"{min(ratios):.2f} to {max(ratios):.2f}"
    print(
        f"struct + Array[F32] x{SAMPLES} call: proxy {t_proxy:6.0f} ns   cffi ABI mode by hand {t_hand:6.0f} ns   "
        f"ratio {ratio:.3f} ({spread})  (target <= 1.5)"
    )
    return ratio


def read_descriptors_alone(path: Path) -> int:
    """The export table and every ABI descriptor of one file, decoded (no declaration)."""
    found = 0
    with open_exports(path) as (table, fd):
        for name in table.symbols:
            parsed = parse_symbol(name) if name.startswith("plugin_abi_descriptor_") else None
            if parsed is not None:
                read_descriptor(table, parsed.trait, fd)
                found += 1
    return found


def distinct_declaration(data: bytes, index: int) -> bytes:
    """image_filter's bytes with its declaration's parameter ``visit`` renamed, the same length, per ``index``."""
    renamed, n = re.subn(b'"visit"', b'"v%04d"' % index, data)
    assert n == 1, "image_filter's declaration names its callback parameter `visit` once"
    return renamed


def bench_declarations(libs: dict[str, Path], tmp: Path, repeats: int, count: int, distinct: bool) -> float:
    directory = tmp / ("distinct" if distinct else "copies")
    directory.mkdir()
    files = []
    if distinct:
        data = libs["image_filter"].read_bytes()
        for i in range(count):
            files.append(directory / f"libimage_filter_{i:03d}.so")
            files[-1].write_bytes(distinct_declaration(data, i))
    else:
        sources = [p for p in libs.values() if any(t.declaration for t in scan_library(p).traits.values())]
        for i in range(count):
            source = sources[i % len(sources)]
            files.append(directory / f"{source.stem}_{i:03d}{source.suffix}")
            shutil.copy(source, files[-1])
    # Both sides decode the same descriptors; the declaration side also decodes every declaration.
    for f in files:
        abi = scan_library(f)
        assert all(t.declaration is not None and t.descriptor is not None for t in abi.traits.values()), f
        assert read_descriptors_alone(f) == len(abi.traits)

    def with_declarations() -> float:
        start = time.perf_counter()
        for f in files:
            scan_library(f)
        return time.perf_counter() - start

    def descriptors_alone() -> float:
        start = time.perf_counter()
        for f in files:
            read_descriptors_alone(f)
        return time.perf_counter() - start

    if distinct:
        names = {scan_library(f).traits["ImageFilter"].declaration.method("rows").params[2].name for f in files}
        assert len(names) == count, "every copy declares its own parameter name"
    t_decl, t_desc, ratio, ratios = paired(with_declarations, descriptors_alone, repeats)
    spread = f"{min(ratios):.2f} to {max(ratios):.2f}"
    what = "distinct declarations" if distinct else "copies of the examples"
    print(
        f"read {count} files ({what}): with declarations {t_decl * 1e3:7.1f} ms   "
        f"descriptors alone {t_desc * 1e3:7.1f} ms   ratio {ratio:.3f} ({spread})  (target <= 2)"
    )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-traits-") as build:
        tmp = Path(build)
        libs = build_plugins(REPO / "native_plugins", tmp / "examples").outputs
        print(f"python {sys.version.split()[0]}, median of {args.repeats} paired repeats (spread of the ratios)")
        met = [
            bench_struct_array_call(tmp, args.repeats, args.calls) <= 1.5,
            bench_declarations(libs, tmp, args.repeats, args.files, distinct=False) <= 2.0,
            bench_declarations(libs, tmp, args.repeats, args.files, distinct=True) <= 2.0,
        ]
    print("all targets met" if all(met) else "some target missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
