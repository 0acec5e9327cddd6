#!/usr/bin/env python3
"""Call-path benchmarks: each call beside its floors, in one run, interleaved, medians.

For each call, every side runs the same number of calls in a plain loop
(``for _ in range(n): f(x)``, whose own cost every side pays), in short
turns that alternate between the sides in a rotating order, so machine noise
hits them all alike; each figure is the median over repeats, each ratio the
median of the per-repeat ratios.

Sides:

- ``engine``: the host's call, through the compiled call engine
  (``plugin_host.loading._callengine``), as a user writes it
  (``proxy.greet("world")``, ``add(2, 3)``);
- ``python``: the same host call on the pure-Python path (the engine's
  fallback, and what an install without a C compiler runs);
- ``trampoline``: the compiled floor (``bench/floor_ext.c``): one
  hand-written CPython function per call, with the gate as one atomic, the
  argument conversion, a direct typed call, and the copy and free of an owned
  result;
- ``ctypes``: a naive single ctypes call with ``argtypes``/``restype``
  preset: for ``greet``, of a function with the same signature that writes
  into a static buffer (``bench/floor_lib.c``: no allocation, nothing to
  free), called with the same arguments as the proxy's call (the
  registration's instance pointer, and ``bytes``: no encoding) and returning
  ``bytes`` (no decoding); for ``transform``,
  of the plugin's own function on a pre-made ``from_buffer`` view; for
  ``add``, of ``add`` in a plain library;
- ``cffi`` (``add`` only): cffi's ABI mode (``ffi.dlopen``) on the same function.

Buffers at 64 B, 4 KiB and 1 MiB.  Targets (issue 16): ``greet`` engine <=
0.6x ctypes and <= 1.3x the trampoline; ``transform`` at 64 B engine <= 0.3x
ctypes; ``add`` engine <= 0.25x ctypes.

``--instructions`` also counts instructions per call with callgrind
(``valgrind --tool=callgrind``), which repeat exactly where time is noisy:
each side runs alone in a child at two loop lengths, and the difference of
the totals divided by the difference of the lengths is one call's count.

Run (after ``pip install .``; needs a C compiler for the floors):

    python bench/bench_calls.py
    python bench/bench_calls.py --instructions
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.machinery
import importlib.util
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cffi
from _callgrind import instructions_per_op  # bench/, on the path when a bench runs as a script
from plugin_annotations import build_plugins
from plugin_host import DynamicModule, PluginManager, PluginTrait
from plugin_host.loading import _engine
from plugin_host.registry import make_proxy

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZES = (64, 4096, 1 << 20)


# ---- the floors -------------------------------------------------------------------------------------


def _cc() -> list[str]:
    return shlex.split(os.environ.get("CC", "cc"))


def build_floors(out: Path) -> tuple[Any, Path]:
    """Compile bench/floor_ext.c (a CPython extension) and bench/floor_lib.c (a plain library)."""
    out.mkdir(parents=True, exist_ok=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    ext = out / f"_bench_floors{suffix}"
    lib = out / "libbenchfloor.so"
    include = sysconfig.get_paths()["include"]
    flags = ["-O2", "-fPIC", "-shared", "-std=c11"]
    if not ext.exists():
        subprocess.run([*_cc(), *flags, f"-I{include}", str(HERE / "floor_ext.c"), "-o", str(ext)], check=True)
    if not lib.exists():
        subprocess.run([*_cc(), *flags, str(HERE / "floor_lib.c"), "-o", str(lib)], check=True)
    spec = importlib.util.spec_from_file_location("_bench_floors", ext)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, lib


# ---- loops (one per call shape, so every side pays the same loop) -------------------------------------


def loop_method(obj: Any, name: str, args: tuple[object, ...], n: int) -> float:
    """``obj.<name>(*args)`` n times, the attribute looked up per call as a caller writes it: ns per call."""
    names = ", ".join(f"a{i}" for i in range(len(args)))
    code = f"def run(obj, {names}, r):\n    for _ in r:\n        obj.{name}({names})\n"
    scope: dict[str, Any] = {}
    exec(compile(code, "<loop>", "exec"), scope)
    start = time.perf_counter_ns()
    scope["run"](obj, *args, range(n))
    return (time.perf_counter_ns() - start) / n


def loop1(f: Callable[[Any], object], a: object, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        f(a)
    return (time.perf_counter_ns() - start) / n


def loop2(f: Callable[[Any, Any], object], a: object, b: object, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        f(a, b)
    return (time.perf_counter_ns() - start) / n


def loop3(f: Callable[[Any, Any, Any], object], a: object, b: object, c: object, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        f(a, b, c)
    return (time.perf_counter_ns() - start) / n


# ---- the cases ----------------------------------------------------------------------------------------

Side = Callable[[int], float]  # n calls -> ns per call


class Setup:
    """Everything the sides call, made once: proxies on both paths, floors, baselines."""

    def __init__(self, libs: dict[str, Path], floors: Any, floor_lib: Path) -> None:
        self.manager = PluginManager()
        engine_was = _engine.set_enabled(True)
        try:
            [greeters] = self.manager.load_plugins(libs["greeters"], PluginTrait.Greeter)
            [multi] = self.manager.load_plugins(libs["multi_trait"], PluginTrait.Transformer)
            self.greeter = greeters.proxy("English")
            self.upper = multi.proxy("Upper")
            self.module = DynamicModule(floor_lib)
            self.add = self.module.function("add", "int(int, int)")
            _engine.set_enabled(False)
            # The pure-Python path: fresh proxies of the same registrations, and a module function.
            self.greeter_py = make_proxy(greeters.registration_set, greeters.registration_set.registrations[0])
            upper_reg = next(r for r in multi.registration_set.registrations if r.type_name == "Upper")
            self.upper_py = make_proxy(multi.registration_set, upper_reg)
            self.module_py = DynamicModule(floor_lib)
            self.add_py = self.module_py.function("add", "int(int, int)")
        finally:
            _engine.set_enabled(engine_was)
        greet_reg = greeters.registration_set.registrations[0]
        self.greet_reg = greet_reg
        self.upper_reg = upper_reg
        floors.setup(
            greet_reg.methods["greet"],
            greet_reg.instance,
            greet_reg.free_memory,
            upper_reg.methods["transform"],
            upper_reg.instance,
            ctypes.cast(ctypes.CDLL(str(floor_lib)).add, ctypes.c_void_p).value,
        )
        self.floors = floors
        clib = self.clib = ctypes.CDLL(str(floor_lib))
        self.greet_static = clib.greet_static
        self.greet_static.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.greet_static.restype = ctypes.c_char_p
        self.add_ctypes = clib.add
        self.add_ctypes.argtypes = [ctypes.c_int, ctypes.c_int]
        self.add_ctypes.restype = ctypes.c_int
        ffi = cffi.FFI()
        ffi.cdef("int add(int, int);")
        self.cffi_lib = ffi.dlopen(str(floor_lib))
        self.transform_ctypes = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)(
            upper_reg.methods["transform"]
        )
        self.buffers = {size: bytearray(b"abcdefgh" * (size // 8)) for size in SIZES}
        self.views = {size: (ctypes.c_ubyte * size).from_buffer(self.buffers[size]) for size in SIZES}
        self.check()

    def check(self) -> None:
        """Every side does the same work (same answers), and the engine sides really are compiled."""
        assert self.greeter.greet("world") == self.greeter_py.greet("world") == "Hello, world!"  # type: ignore[attr-defined]
        assert self.floors.greet("world") == "Hello, world!"
        assert self.greet_static(None, b"world") == b"Hello, world!"
        assert self.add(2, 3) == self.add_py(2, 3) == self.floors.add(2, 3) == self.add_ctypes(2, 3) == 5
        assert self.cffi_lib.add(2, 3) == 5
        if _engine.available():
            assert isinstance(self.greeter.greet.__self__, _engine.Method)  # type: ignore[attr-defined]
            assert isinstance(self.upper.transform.__self__, _engine.Method)  # type: ignore[attr-defined]
            assert isinstance(self.add, _engine.Function)
        assert not isinstance(self.greeter_py.greet, type(len))  # type: ignore[attr-defined]

    def cases(self) -> dict[str, dict[str, Side]]:
        """Per case, its sides: n -> ns per call."""
        greeter, greeter_py, floors = self.greeter, self.greeter_py, self.floors
        out: dict[str, dict[str, Side]] = {
            "greet": {
                "engine": lambda n: loop1(greeter.greet, "world", n),  # type: ignore[attr-defined]
                "python": lambda n: loop1(greeter_py.greet, "world", n),  # type: ignore[attr-defined]
                "trampoline": lambda n: loop1(floors.greet, "world", n),
                "ctypes": lambda n: loop2(self.greet_static, self.greet_reg.instance, b"world", n),
            },
            # As callers write it: the attribute looked up at each call, on every side.
            "greet, attribute per call": {
                "engine": lambda n: loop_method(greeter, "greet", ("world",), n),
                "python": lambda n: loop_method(greeter_py, "greet", ("world",), n),
                "ctypes": lambda n: loop_method(self.clib, "greet_static", (self.greet_reg.instance, b"world"), n),
            },
        }
        for size in SIZES:
            data, view = self.buffers[size], self.views[size]
            out[f"transform {size} B"] = {
                "engine": lambda n, data=data: loop1(self.upper.transform, data, n),  # type: ignore[attr-defined]
                "python": lambda n, data=data: loop1(self.upper_py.transform, data, n),  # type: ignore[attr-defined]
                "trampoline": lambda n, data=data: loop1(floors.transform, data, n),
                "ctypes": lambda n, view=view, size=size: loop3(
                    self.transform_ctypes, self.upper_reg.instance, view, size, n
                ),
            }
        out["add"] = {
            "engine": lambda n: loop2(self.add, 2, 3, n),
            "python": lambda n: loop2(self.add_py, 2, 3, n),
            "trampoline": lambda n: loop2(floors.add, 2, 3, n),
            "ctypes": lambda n: loop2(self.add_ctypes, 2, 3, n),
            "cffi": lambda n: loop2(self.cffi_lib.add, 2, 3, n),
        }
        return out

    def close(self) -> None:
        self.module.close()
        self.module_py.close()
        self.manager.unload_all()


#: (case, numerator, denominator, target or None): the ratios printed.
RATIOS: list[tuple[str, str, str, float | None]] = [
    ("greet", "engine", "ctypes", 0.6),
    ("greet", "engine", "trampoline", 1.3),
    ("greet", "python", "ctypes", None),
    ("greet, attribute per call", "engine", "ctypes", None),
    ("greet, attribute per call", "python", "ctypes", None),
    ("transform 64 B", "engine", "ctypes", 0.3),
    ("transform 64 B", "engine", "trampoline", None),
    ("transform 64 B", "python", "ctypes", None),
    ("transform 4096 B", "engine", "ctypes", None),
    ("transform 4096 B", "engine", "trampoline", None),
    ("transform 1048576 B", "engine", "ctypes", None),
    ("transform 1048576 B", "engine", "trampoline", None),
    ("add", "engine", "ctypes", 0.25),
    ("add", "engine", "trampoline", None),
    ("add", "engine", "cffi", None),
    ("add", "python", "ctypes", None),
]


#: Each side's calls of one repeat run in this many turns, interleaved with the other sides'.
CHUNKS = 10


def calls_for(case: str, calls: int) -> int:
    if case.startswith("transform "):
        size = int(case.split()[1])
        return max(calls * 64 // size, 20) if size > 64 else calls
    return calls


def measure(
    setup: Setup, repeats: int, calls: int, only: list[str]
) -> tuple[dict[str, dict[str, float]], dict[tuple[str, str, str], float]]:
    """Median ns per call of every side, and the median per-repeat ratios."""
    cases = {c: sides for c, sides in setup.cases().items() if not only or c.startswith(tuple(only))}
    times: dict[str, dict[str, list[float]]] = {c: {s: [] for s in sides} for c, sides in cases.items()}
    for r in range(repeats):
        for case, sides in cases.items():
            names = list(sides)
            n = max(calls_for(case, calls) // CHUNKS, 1)
            total = dict.fromkeys(names, 0.0)
            for k in range(CHUNKS):  # short turns, in a rotating order: noise hits every side alike
                shift = (r + k) % len(names)
                for name in names[shift:] + names[:shift]:
                    total[name] += sides[name](n)
            for name in names:
                times[case][name].append(total[name] / CHUNKS)
    medians = {c: {s: statistics.median(v) for s, v in sides.items()} for c, sides in times.items()}
    ratios = {}
    for case, a, b, _ in RATIOS:
        if case not in cases:
            continue
        per_repeat = [x / y for x, y in zip(times[case][a], times[case][b], strict=True)]
        ratios[(case, a, b)] = statistics.median(per_repeat)
    return medians, ratios


# ---- instruction counts -----------------------------------------------------------------------------


def child(build: Path, case: str, side: str, calls: int) -> None:
    """One side alone (run under callgrind by --instructions)."""
    floors, floor_lib = build_floors(build / "floors")
    libs = {p.name.removeprefix("lib").removesuffix(".so"): p for p in (build / "plugins").glob("lib*.so")}
    setup = Setup(libs, floors, floor_lib)
    gc.disable()  # a collection landing in one loop length but not the other would be counted as calls
    setup.cases()[case][side](calls)
    gc.enable()
    setup.close()


def instructions(build: Path, case: str, side: str, short: int, long: int) -> float:
    """Instructions per call: callgrind totals at two loop lengths, differenced."""
    return instructions_per_op(__file__, build, case, side, short, long)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--instructions", action="store_true", help="also count instructions per call (callgrind)")
    parser.add_argument(
        "--only", nargs="*", default=[], metavar="CASE", help="only these cases (greet, transform, add)"
    )
    parser.add_argument("--child", nargs=4, metavar=("BUILD", "CASE", "SIDE", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        build, case, side, calls = args.child
        child(Path(build), case, side, int(calls))
        return 0
    if not _engine.available():
        print("the call engine is not built (no C compiler at install time?): 'engine' sides run Python")
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        build = Path(tmp)
        libs = build_plugins(REPO / "native_plugins", build / "plugins").outputs
        floors, floor_lib = build_floors(build / "floors")
        setup = Setup(libs, floors, floor_lib)
        print(
            f"python {sys.version.split()[0]}, engine {'on (' + _engine.ABI + ')' if _engine.enabled() else 'OFF'}, "
            f"median of {args.repeats} interleaved repeats, {args.calls} calls each (fewer for big buffers)"
        )
        medians, ratios = measure(setup, args.repeats, args.calls, args.only)
        setup.close()
        for case, sides in medians.items():
            unit, scale = ("us", 1e3) if case.endswith(("4096 B", "1048576 B")) else ("ns", 1.0)
            figures = "   ".join(f"{name} {value / scale:8.1f} {unit}" for name, value in sides.items())
            print(f"{case:26s} {figures}", flush=True)
        met = True
        print()
        for case, a, b, target in RATIOS:
            if (case, a, b) not in ratios:
                continue
            ratio = ratios[(case, a, b)]
            verdict = ""
            if target is not None:
                ok = ratio <= target
                met = met and ok
                verdict = f"  (target <= {target}: {'met' if ok else 'MISSED'})"
            print(f"{case:26s} {a}/{b}: {ratio:6.3f}{verdict}", flush=True)
        if args.instructions:
            if shutil.which("valgrind") is None:
                print("\nvalgrind is not installed: no instruction counts")
            else:
                print("\ninstructions per call (callgrind, differenced over two loop lengths):")
                for case, sides in setup.cases().items():
                    if args.only and not case.startswith(tuple(args.only)):
                        continue
                    # Enough calls that a garbage collection or a dict resize in one run is noise.
                    short = max(calls_for(case, 2000), 20 if case.endswith("1048576 B") else 100)
                    long = 3 * short
                    counts = {s: instructions(build, case, s, short, long) for s in sides}
                    figures = "   ".join(f"{name} {value:8.0f}" for name, value in counts.items())
                    ratio_bits = [f"{a}/{b} {counts[a] / counts[b]:.3f}" for c, a, b, _ in RATIOS if c == case]
                    print(f"{case:26s} {figures}   |  {', '.join(ratio_bits)}", flush=True)
        print("\nall targets met" if met else "\nsome target missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
