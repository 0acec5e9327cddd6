#!/usr/bin/env python3
"""Core benchmarks, each a ratio measured side by side in one run.

1. A ``Greeter`` proxy call (str in, str out) vs a bare ctypes call of the same
   vtable function pointer with argtypes/restype preset (bytes in, bytes out),
   both doing the same work, including the ``free_memory`` release call that
   the string-ownership rule needs.  Target: <= 1.2x.
2. A ``Transformer`` proxy call on a 1 MiB bytearray vs the same C function
   called directly through ctypes on the same buffer.  Target: <= 1.05x.
3. ``load_plugins`` of a directory of 200 plugin files vs a bare loop of
   ``ctypes.CDLL`` + the same symbol look-ups.  Target: <= 1.3x.  Two
   diagnostic lines follow: the same load without policy and pre-check, and
   with the per-file checks in pure Python (``plugin_host.loading._speedups`` off, as
   on an install without a C compiler).

Each figure is the median of several repeats; the two sides of a ratio
alternate within each repeat so machine noise hits both.  Run:

    python bench/bench_core.py            # after `pip install .`
"""

from __future__ import annotations

import _ctypes
import argparse
import ctypes
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_untrusted import checks_off  # the same bypass, for the diagnostic line
from plugin_annotations import build_plugins
from plugin_host import PluginManager, PluginTrait
from plugin_host.loading import _accel
from plugin_interface import register_all_symbol, unmaker_counter_symbol, unregister_all_symbol

REPO = Path(__file__).resolve().parents[1]


def per_call_ns(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


def paired(a: Callable[[], float], b: Callable[[], float], repeats: int) -> tuple[float, float, float]:
    """Median of a, median of b, median of the per-repeat ratios a/b."""
    xs, ys, rs = [], [], []
    for i in range(repeats):
        if i % 2:
            y, x = b(), a()
        else:
            x, y = a(), b()
        xs.append(x)
        ys.append(y)
        rs.append(x / y)
    return statistics.median(xs), statistics.median(ys), statistics.median(rs)


def bench_greeter(libs: dict[str, Path], repeats: int, calls: int) -> float:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(libs["greeters"], PluginTrait.Greeter)
        proxy = handle.proxy("English")
        reg = handle.registration_set.registrations[0]
        bare_fn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(reg.methods["greet"])
        bare_free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(reg.free_memory)
        instance = reg.instance
        string_at = ctypes.string_at

        def bare() -> bytes:
            p = bare_fn(instance, b"world")
            try:
                return string_at(p)
            finally:
                bare_free(p)

        greet = proxy.greet  # type: ignore[attr-defined]
        assert bare() == b"Hello, world!" and greet("world") == "Hello, world!"
        t_proxy, t_bare, ratio = paired(
            lambda: per_call_ns(lambda: greet("world"), calls),
            lambda: per_call_ns(bare, calls),
            repeats,
        )
    print(
        f"greeter call:      proxy {t_proxy:8.0f} ns   bare ctypes {t_bare:8.0f} ns   "
        f"ratio {ratio:.3f}  (target <= 1.2)"
    )
    return ratio


def bench_buffer(libs: dict[str, Path], repeats: int, calls: int) -> float:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(libs["multi_trait"], PluginTrait.Transformer)
        proxy = handle.proxy("Upper")
        reg = next(r for r in handle.registration_set.registrations if r.type_name == "Upper")
        fn = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)(
            reg.methods["transform"]
        )
        data = bytearray(b"abcdefgh" * (1 << 17))  # 1 MiB
        view = (ctypes.c_ubyte * len(data)).from_buffer(data)
        instance, n = reg.instance, len(data)
        transform = proxy.transform  # type: ignore[attr-defined]
        t_proxy, t_bare, ratio = paired(
            lambda: per_call_ns(lambda: transform(data), calls),
            lambda: per_call_ns(lambda: fn(instance, view, n), calls),
            repeats,
        )
    print(
        f"1 MiB buffer call: proxy {t_proxy / 1e3:8.1f} us   bare ctypes {t_bare / 1e3:8.1f} us   ratio {ratio:.3f}  "
        "(target <= 1.05)"
    )
    return ratio


def bench_load(libs: dict[str, Path], repeats: int, count: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        rounds = []
        # Fresh file names per repeat and side: dlopen of an already-mapped
        # path is a cheap refcount bump, which would flatter either side.
        for r in range(repeats):
            pair = []
            for side in ("manager", "bare", "unchecked", "pure", "manager_again"):
                d = Path(tmp) / f"{side}{r}"
                d.mkdir()
                for i in range(count):
                    shutil.copy(libs["greeters"], d / f"libgreeters_{i:03d}.so")
                pair.append(d)
            rounds.append(pair)
        symbols = [register_all_symbol("Greeter"), unregister_all_symbol("Greeter"), unmaker_counter_symbol("Greeter")]

        def manager_load(d: Path) -> float:
            manager = PluginManager()
            start = time.perf_counter()
            handles = manager.load_plugins(d, PluginTrait.Greeter)
            elapsed = time.perf_counter() - start
            assert len(handles) == count
            manager.unload_all()
            return elapsed

        def manager_load_unchecked(d: Path) -> float:
            with checks_off():
                return manager_load(d)

        def manager_load_pure_python(d: Path) -> float:
            previous = _accel.set_enabled(False)
            try:
                return manager_load(d)
            finally:
                _accel.set_enabled(previous)

        def bare_load(d: Path) -> float:
            start = time.perf_counter()
            loaded = []
            for f in sorted(d.iterdir()):
                lib = ctypes.CDLL(str(f), mode=ctypes.RTLD_LOCAL)
                for s in symbols:
                    getattr(lib, s)
                loaded.append(lib)
            elapsed = time.perf_counter() - start
            for lib in loaded:
                _ctypes.dlclose(lib._handle)
            return elapsed

        it_m = iter(r[0] for r in rounds)
        it_b = iter(r[1] for r in rounds)
        it_u = iter(r[2] for r in rounds)
        it_p = iter(r[3] for r in rounds)
        it_m2 = iter(r[4] for r in rounds)
        t_m, t_b, ratio = paired(lambda: manager_load(next(it_m)), lambda: bare_load(next(it_b)), repeats)
        t_u = statistics.median(manager_load_unchecked(next(it_u)) for _ in range(repeats))
        # Paired with the C checks: unpaired medians taken minutes apart move with the machine's load.
        t_p, _, pure_ratio = paired(
            lambda: manager_load_pure_python(next(it_p)), lambda: manager_load(next(it_m2)), repeats
        )
    print(
        f"load {count} files:    manager {t_m * 1e3:7.1f} ms   bare CDLL loop {t_b * 1e3:7.1f} ms   "
        f"ratio {ratio:.3f}  (target <= 1.3)"
    )
    print(
        f"  diagnostic: same load without policy + pre-check {t_u * 1e3:7.1f} ms   "
        f"ratio to the bare loop {t_u / t_b:.3f}"
    )
    checks = "C checks in use" if _accel.enabled() else "C checks NOT in use: the figures above are pure Python"
    print(
        f"  diagnostic: same load with the checks in pure Python {t_p * 1e3:7.1f} ms   "
        f"{pure_ratio:.3f}x the load with C checks (paired), so about {pure_ratio * ratio:.2f}x the bare loop  "
        f"({checks})"
    )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as build:
        libs = build_plugins(REPO / "native_plugins", build).outputs
        print(f"python {sys.version.split()[0]}, median of {args.repeats} paired repeats")
        ratios = [
            bench_greeter(libs, args.repeats, args.calls) <= 1.2,
            bench_buffer(libs, args.repeats, max(args.calls // 500, 20)) <= 1.05,
            bench_load(libs, args.repeats, args.files) <= 1.3,
        ]
    print("all targets met" if all(ratios) else "some target missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
