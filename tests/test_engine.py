"""The compiled call engine (host/speedups/callengine.c) against the pure-Python path.

Both paths must answer every call alike: the same result, the same error (type, message,
``reason``, ``path``, ``symbol``, ``detail``), the same writes into the caller's buffers and
structs, and the same releases of what the plugin allocated.  These tests make one proxy of
each kind for the same registration (and one module function of each kind for the same C
function) and compare them on every vocabulary type, on catalogued and fuzzed inputs, on real
compiled plugins; a trait of every scalar and a few struct shapes exercises the register
assignment the engine relies on.  Also here: what the engine leaves to Python, the GIL hint,
and the install without the engine (pure Python takes over).
"""

from __future__ import annotations

import array
import copy
import dataclasses
import math
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from conftest import EXTENSIONS_PROMISED, NO_COMPILER_INSTALL, CompilePlugin, is_compiled, run_isolated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_annotations import write_trait_headers
from plugin_host import DynamicModule, PluginManager, PluginTrait
from plugin_host.errors import ArgumentBufferError, ArgumentOverflowError, CallArgumentError
from plugin_host.loading import ModuleFunction, _engine
from plugin_host.registry import make_proxy
from plugin_interface import (
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    Buffer,
    FixedArray,
    MutBuffer,
    MutRef,
    Out,
    OwnedBytes,
    OwnedStr,
    Ref,
    Size,
    Status,
    declare_trait,
    long_running,
    plugin_struct,
)
from test_vocabulary import SIGNAL_C, Frame, Geometry, Point, Signal

REPO = Path(__file__).resolve().parents[1]
CALLENGINE = REPO / "host" / "speedups" / "callengine.c"

#: Where the engine was not built, its tests skip (CI must build it); the ones about its absence still run.
needs_engine = pytest.mark.skipif(
    not _engine.available(), reason="plugin_host.loading._callengine was not built (no C compiler at install time)"
)
SYSV = _engine.ABI == "sysv-x86_64"

# ---- a trait of every scalar, and structs of every eightbyte class ---------------------------------


@plugin_struct
class Pair:
    """8 bytes, an int and a float in one eightbyte: INTEGER."""

    a: I32
    b: F32


@plugin_struct
class FloatInt:
    """SSE then INTEGER."""

    x: F64
    n: I64


@plugin_struct
class IntFloat:
    """INTEGER then SSE."""

    n: I64
    x: F64


@plugin_struct
class Three:
    """12 bytes of floats: two SSE eightbytes, the second half full."""

    a: F32
    b: F32
    c: F32


@plugin_struct
class Tiny:
    """One byte."""

    c: U8


@plugin_struct
class Nested:
    """A struct in a struct, and an array: 16 bytes, INTEGER twice."""

    p: Pair
    w: FixedArray[I16, 3]
    flag: Bool


@plugin_struct
class Big:
    """24 bytes: in memory (a hidden pointer when returned; by value, the Python path)."""

    a: F64
    b: F64
    c: F64


@declare_trait(version=1)
class Abi(Protocol):
    """Identities of every scalar, mixed registers, owned results, and structs by value."""

    def i8(self, x: I8) -> I8: ...
    def i16(self, x: I16) -> I16: ...
    def i32(self, x: I32) -> I32: ...
    def i64(self, x: I64) -> I64: ...
    def u8(self, x: U8) -> U8: ...
    def u16(self, x: U16) -> U16: ...
    def u32(self, x: U32) -> U32: ...
    def u64(self, x: U64) -> U64: ...
    def usize(self, x: Size) -> Size: ...
    def f32(self, x: F32) -> F32: ...
    def f64(self, x: F64) -> F64: ...
    def flag(self, x: Bool) -> Bool: ...

    def mix(self, a: I8, b: F32, c: U64, d: F64, e: Bool, f: I16, g: F32) -> OwnedStr:
        """Every argument printed: shows each arrived in its place."""
        ...

    def floats(self, a: F64, b: F32, c: F64, d: F32, e: F64, f: F32, g: F64, h: F32) -> OwnedStr:
        """Eight floating arguments: every vector register."""
        ...

    def ints(self, a: I64, b: I64, c: I64, d: I64, e: I64) -> I64:
        """Five integers and self: every integer register on System V."""
        ...

    def seven(self, a: I64, b: I64, c: I64, d: I64, e: I64, f: I64, g: I64) -> I64:
        """Eight integer-class arguments with self: more than System V's registers."""
        ...

    def split(self, x: I32, low: Out[U8], half: Out[F32], odd: Out[Bool]) -> Status:
        """Out values; fails (status 3, with a message) for a negative x."""
        ...

    def quiet(self, x: I32) -> Status:
        """Fails (status 4) without a message for a negative x; leaves a message on success."""
        ...

    def blob(self, n: U32) -> OwnedBytes:
        """n bytes 0, 1, 2...; NULL for 0; NULL with a length for 999 (a broken plugin)."""
        ...

    def text(self, n: I32) -> OwnedStr:
        """n stars, or NULL for a negative n; 'h\\xe9' bytes for 1000 (not UTF-8)."""
        ...

    def nothing(self, data: Buffer, into: MutBuffer) -> None:
        """Copies data into into (as far as both go)."""
        ...

    def releases(self) -> U32:
        """How many times free_memory ran."""
        ...

    def pair(self, p: Pair) -> Pair: ...
    def flip(self, v: FloatInt) -> IntFloat: ...
    def unflip(self, v: IntFloat) -> FloatInt: ...
    def rotate(self, t: Three) -> Three: ...
    def tiny(self, t: Tiny) -> Tiny: ...
    def nested(self, n: Nested) -> Nested: ...
    def big(self, x: F64) -> Big: ...
    def big_sum(self, b: Ref[Big]) -> F64: ...
    def grow(self, n: MutRef[Nested], by: I16) -> None: ...

    def describe(self, a: Pair, b: FloatInt, c: F32, d: Three, e: I8) -> OwnedStr:
        """Structs and scalars interleaved, all printed."""
        ...

    def by_value_big(self, b: Big) -> F64:
        """A struct over 16 bytes by value: the stack, so the Python path."""
        ...

    @long_running
    def hold(self, bound_ms: U32) -> Bool:
        """Spins until release() is called or bound_ms pass; whether release() came (the GIL is released)."""
        ...

    def hold_tight(self, bound_ms: U32) -> Bool:
        """The same, not long-running: a compiled call keeps the GIL, so release() cannot come."""
        ...


ABI_C = r"""
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "plugin_annotations.h"
#include "plugin_trait_abi.h"

static unsigned released;
static atomic_int entered, freed;
static void counting_free(void *p) { if (p) released++; free(p); }

#define ID(name, T) static T name(void *self, T x) { (void)self; return x; }
ID(i8, int8_t) ID(i16, int16_t) ID(i32, int32_t) ID(i64, int64_t)
ID(u8, uint8_t) ID(u16, uint16_t) ID(u32, uint32_t) ID(u64, uint64_t)
ID(usize, size_t) ID(f32, float) ID(f64, double) ID(flag, _Bool)

static char *mix(void *self, int8_t a, float b, uint64_t c, double d, _Bool e, int16_t f, float g) {
    (void)self;
    return plugin_string_format("a=%d b=%.9g c=%llu d=%.17g e=%d f=%d g=%.9g", a, b, (unsigned long long)c, d, e,
                                f, g);
}
static char *floats(void *self, double a, float b, double c, float d, double e, float f, double g, float h) {
    (void)self;
    return plugin_string_format("%.17g %.9g %.17g %.9g %.17g %.9g %.17g %.9g", a, b, c, d, e, f, g, h);
}
static int64_t ints(void *self, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e) {
    (void)self;
    return a + 10 * b + 100 * c + 1000 * d + 10000 * e;
}
static int64_t seven(void *self, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e, int64_t f, int64_t g) {
    (void)self;
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g;
}
static int32_t split(void *self, int32_t x, uint8_t *low, float *half, _Bool *odd, char **error) {
    (void)self;
    if (x < 0) {
        *error = plugin_string_format("x=%d is negative", x);
        return 3;
    }
    *low = (uint8_t)x;
    *half = (float)x / 2;
    *odd = x % 2;
    return 0;
}
static int32_t quiet(void *self, int32_t x, char **error) {
    (void)self;
    if (x < 0) return 4;
    *error = plugin_string_format("a message on success is released too");
    return 0;
}
static PluginBytes blob(void *self, uint32_t n) {
    (void)self;
    PluginBytes out = {NULL, 0};
    if (n == 999) { out.len = 5; return out; }
    if (n == 0) return out;
    out.data = malloc(n);
    for (uint32_t i = 0; i < n; i++) out.data[i] = (uint8_t)i;
    out.len = n;
    return out;
}
static char *text(void *self, int32_t n) {
    (void)self;
    if (n < 0) return NULL;
    if (n == 1000) return plugin_string_format("h\xe9");
    char *s = malloc((size_t)n + 1);
    memset(s, '*', (size_t)n);
    s[n] = 0;
    return s;
}
static void nothing(void *self, const uint8_t *data, size_t n, uint8_t *into, size_t m) {
    (void)self;
    memcpy(into, data, n < m ? n : m);
}
static uint32_t releases(void *self) { (void)self; return released; }

static Pair pair(void *self, Pair p) { (void)self; p.a *= 2; p.b *= 2; return p; }
static IntFloat flip(void *self, FloatInt v) { (void)self; IntFloat r = {v.n + 1, v.x / 2}; return r; }
static FloatInt unflip(void *self, IntFloat v) { (void)self; FloatInt r = {v.x * 2, v.n - 1}; return r; }
static Three rotate(void *self, Three t) { (void)self; Three r = {t.b, t.c, t.a}; return r; }
static Tiny tiny(void *self, Tiny t) { (void)self; t.c = (uint8_t)(t.c + 1); return t; }
static Nested nested(void *self, Nested n) {
    (void)self;
    n.p.a += 1;
    n.p.b -= 1;
    for (int i = 0; i < 3; i++) n.w[i] = (int16_t)(n.w[i] * -1);
    n.flag = !n.flag;
    return n;
}
static Big big(void *self, double x) { (void)self; Big b = {x, x * 2, x * 3}; return b; }
static double big_sum(void *self, const Big *b) { (void)self; return b->a + b->b + b->c; }
static void grow(void *self, Nested *n, int16_t by) {
    (void)self;
    n->p.a += by;
    for (int i = 0; i < 3; i++) n->w[i] = (int16_t)(n->w[i] + by);
    n->flag = 1;
}
static char *describe(void *self, Pair a, FloatInt b, float c, Three d, int8_t e) {
    (void)self;
    return plugin_string_format("%d %.9g | %.17g %lld | %.9g | %.9g %.9g %.9g | %d", a.a, a.b, b.x, (long long)b.n, c,
                                d.a, d.b, d.c, e);
}
static double by_value_big(void *self, Big b) { (void)self; return b.a - b.b + b.c; }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
static _Bool hold(void *self, uint32_t bound_ms) {
    (void)self;
    atomic_store(&freed, 0);
    atomic_store(&entered, 1);
    double end = now_ms() + bound_ms;
    while (!atomic_load(&freed) && now_ms() < end) {
    }
    atomic_store(&entered, 0);
    return atomic_load(&freed);
}
PLUGIN_EXPORT int holding(void) { return atomic_load(&entered); }
PLUGIN_EXPORT void let_go(void) { atomic_store(&freed, 1); }

PLUGIN_IMPL(Abi, Native, .i8 = i8, .i16 = i16, .i32 = i32, .i64 = i64, .u8 = u8, .u16 = u16, .u32 = u32,
            .u64 = u64, .usize = usize, .f32 = f32, .f64 = f64, .flag = flag, .mix = mix, .floats = floats,
            .ints = ints, .seven = seven, .split = split, .quiet = quiet, .blob = blob, .text = text,
            .nothing = nothing, .releases = releases, .pair = pair, .flip = flip, .unflip = unflip,
            .rotate = rotate, .tiny = tiny, .nested = nested, .big = big, .big_sum = big_sum, .grow = grow,
            .describe = describe, .by_value_big = by_value_big, .hold = hold, .hold_tight = hold)
PLUGIN_AGGREGATES(Abi)
"""


@pytest.fixture(scope="module")
def abi_lib(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("abi-headers")
    write_trait_headers(headers, [Abi])
    return compile_plugin("abi", ABI_C, include_dirs=(headers,), defines=("PLUGIN_FREE_MEMORY=counting_free",))


@pytest.fixture(scope="module")
def signal_lib(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("signal-headers")
    write_trait_headers(headers, [Signal])
    return compile_plugin("signal", SIGNAL_C, include_dirs=(headers,), defines=("PLUGIN_FREE_MEMORY=counting_free",))


@pytest.fixture(scope="module")
def geometry_lib(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_vocabulary import GEOMETRY_C

    headers = tmp_path_factory.mktemp("geometry-headers")
    write_trait_headers(headers, [Geometry])
    return compile_plugin("geometry", GEOMETRY_C, include_dirs=(headers,))


@dataclasses.dataclass
class Twins:
    """A compiled proxy and a pure-Python proxy of one registration."""

    engine: Any
    python: Any


def _require_engine() -> None:
    if not _engine.available():
        if EXTENSIONS_PROMISED:
            pytest.fail("CI installed plugin-host without its call engine")
        pytest.skip("plugin_host.loading._callengine was not built (no C compiler at install time)")


def _twins(handle: Any, type_name: str) -> Twins:
    _require_engine()
    regset = handle.registration_set
    [reg] = [r for r in regset.registrations if r.type_name == type_name]
    previous = _engine.set_enabled(True)
    try:
        engine = make_proxy(regset, reg)
        _engine.set_enabled(False)
        python = make_proxy(regset, reg)
    finally:
        _engine.set_enabled(previous)
    return Twins(engine, python)


@pytest.fixture(scope="module")
def abi(abi_lib: Path) -> Iterator[Twins]:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(abi_lib, Abi)
        yield _twins(handle, "Native")


@pytest.fixture(scope="module")
def signal(signal_lib: Path) -> Iterator[Twins]:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(signal_lib, Signal)
        yield _twins(handle, "Basic")


@pytest.fixture(scope="module")
def plane(geometry_lib: Path) -> Iterator[Twins]:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(geometry_lib, Geometry)
        yield _twins(handle, "Plane")


def outcome(call: Callable[[], object]) -> tuple[Any, ...]:
    """What a call did: ``("ok", value)`` or ``("error", type, message, reason, path, symbol, detail,
    the type of its cause)``.

    Compared by ``repr`` (so a NaN equals a NaN, and a struct's fields count).
    """
    try:
        return ("ok", repr(call()))
    except Exception as e:
        facts = (getattr(e, name, None) for name in ("reason", "path", "symbol", "detail"))
        return ("error", type(e), str(e), *facts, type(e.__cause__))


def agree(twins: Twins, method: str, *args: Any, mutable: bool = False, releases: bool = False) -> tuple[Any, ...]:
    """Call ``method`` on both proxies (each on its own copy of the arguments when they are written
    to) and check they agree: outcome, the arguments afterwards, and the plugin's releases."""
    engine_args = copy.deepcopy(args) if mutable else args
    python_args = copy.deepcopy(args) if mutable else args
    before = twins.engine.releases() if releases else 0
    got = outcome(lambda: getattr(twins.engine, method)(*engine_args))
    middle = twins.engine.releases() if releases else 0
    expected = outcome(lambda: getattr(twins.python, method)(*python_args))
    after = twins.engine.releases() if releases else 0
    assert got == expected, (method, args)
    if mutable:
        assert repr(engine_args) == repr(python_args), (method, args)
    assert middle - before == after - middle, f"{method}{args}: the paths released differently"
    return got


# ---- which methods the engine compiles --------------------------------------------------------------


def test_the_engine_compiles_what_it_can_and_leaves_the_rest_to_python(abi: Twins, signal: Twins) -> None:
    python_only = {"seven", "by_value_big"}  # the stack: more than the registers, a struct over 16 bytes
    if not SYSV:
        python_only |= {"pair", "flip", "unflip", "rotate", "tiny", "nested", "big", "describe"}  # by value
    for method in Abi.__plugin_trait__.methods:  # type: ignore[attr-defined]
        assert is_compiled(getattr(abi.engine, method.name)) is (method.name not in python_only), method.name
        assert not is_compiled(getattr(abi.python, method.name))
    for name in ("each", "announce", "keep"):  # callbacks
        assert not is_compiled(getattr(signal.engine, name))
    assert agree(abi, "seven", 1, 2, 3, 4, 5, 6, 7) == ("ok", repr(1 + 4 + 9 + 16 + 25 + 36 + 49))
    assert agree(abi, "by_value_big", Big(1.0, 2.0, 4.0)) == ("ok", "3.0")


def test_a_compiled_method_reads_like_the_declaration(abi: Twins) -> None:
    import inspect

    mix = abi.engine.mix
    assert mix.__name__ == "mix" and "in its place" in (mix.__doc__ or "")
    assert str(inspect.signature(mix)) == "(a, b, c, d, e, f, g)"
    assert type(abi.engine).__name__ == type(abi.python).__name__ == "AbiProxy"
    assert isinstance(abi.engine, type(abi.python))
    assert repr(abi.engine) == repr(abi.python)


# ---- scalars ----------------------------------------------------------------------------------------

_ANY_VALUE = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**7, 2**8, 2**15, 2**16, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1, True, False]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, "1", b"1", 1j, 2.5, [1]]),
)
_SCALARS = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "f32", "f64", "flag"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(_SCALARS), value=_ANY_VALUE)
def test_every_scalar_converts_and_range_checks_alike(abi: Twins, method: str, value: object) -> None:
    agree(abi, method, value)


@pytest.mark.parametrize("method", _SCALARS)
def test_every_scalar_at_its_limits(abi: Twins, method: str) -> None:
    bits = {"i8": 8, "i16": 16, "i32": 32, "i64": 64, "u8": 8, "u16": 16, "u32": 32, "u64": 64, "usize": 64}
    if method in bits:
        n = bits[method]
        low, high = (-(2 ** (n - 1)), 2 ** (n - 1) - 1) if method.startswith("i") else (0, 2**n - 1)
        for value in (low, high, low - 1, high + 1, 0, True):
            agree(abi, method, value)
        assert getattr(abi.engine, method)(high) == high
    else:
        for value in (0.1, -0.0, 1e39, float("nan"), float("inf"), 3, 2**1000, True, 0, 1, 2, -1):
            agree(abi, method, value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a=st.integers(-128, 127),
    b=st.floats(width=32),
    c=st.integers(0, 2**64 - 1),
    d=st.floats(),
    e=st.booleans(),
    f=st.integers(-(2**15), 2**15 - 1),
    g=st.floats(width=32),
)
def test_mixed_integer_and_floating_arguments_arrive_in_place(abi: Twins, **values: Any) -> None:
    got = agree(abi, "mix", *values.values())
    assert got[0] == "ok" and f"c={values['c']}" in got[1]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.floats(allow_nan=False), min_size=8, max_size=8))
def test_every_floating_register(abi: Twins, values: list[float]) -> None:
    assert agree(abi, "floats", *values)[0] == "ok"


def test_every_integer_register(abi: Twins) -> None:
    assert agree(abi, "ints", 1, 2, 3, 4, 5) == ("ok", "54321")
    assert abi.engine.ints(-1, 0, 0, 0, 2**40) == -1 + 10000 * 2**40


# ---- owned results, Status, Out, buffers --------------------------------------------------------------


@pytest.mark.parametrize("x", [0, 7, 255, 256, -1, -(2**31), 2**31, "7"])
def test_status_and_out_values(abi: Twins, x: object) -> None:
    agree(abi, "split", x, releases=True)


def test_status_messages_are_released_on_both_paths(abi: Twins) -> None:
    assert agree(abi, "split", 9, releases=True) == ("ok", repr((9, 4.5, True)))
    failed = agree(abi, "split", -2, releases=True)
    assert failed[1].__name__ == "PluginMethodError" and "x=-2 is negative" in failed[2]
    before = abi.engine.releases()
    assert abi.engine.quiet(1) is None  # the message left on success is released as well
    assert abi.engine.releases() == before + 1
    assert agree(abi, "quiet", -1, releases=True)[2].endswith("failed with status 4 (no message)")


@pytest.mark.parametrize("n", [0, 1, 3, 256, 999, -1])
def test_owned_bytes(abi: Twins, n: int) -> None:
    agree(abi, "blob", n, releases=True)


@pytest.mark.parametrize("n", [0, 1, 40, 1000, -1, -5])
def test_owned_strings(abi: Twins, n: int) -> None:
    agree(abi, "text", n, releases=True)


def test_an_owned_string_that_is_not_utf8_is_replaced_alike(abi: Twins) -> None:
    assert agree(abi, "text", 1000) == ("ok", repr("h\ufffd"))


@pytest.mark.parametrize(
    "data",
    [
        b"abc",
        bytearray(b"xyz"),
        memoryview(b"abcdef")[1:4],
        memoryview(b"abcdef")[::2],
        array.array("f", [1.0]),
        "text",
        None,
        b"",
    ],
    ids=repr,
)
def test_buffers_in_and_out(abi: Twins, data: object) -> None:
    got = {}
    for path in ("engine", "python"):
        into = bytearray(4)
        proxy = getattr(abi, path)
        got[path] = outcome(lambda proxy=proxy, into=into: proxy.nothing(data, into)), bytes(into)
    assert got["engine"] == got["python"]
    agree(abi, "nothing", b"ab", data)  # read-only where it is written: refused alike


def test_buffer_views_are_released_after_the_call_and_when_declined(abi: Twins) -> None:
    data, into = bytearray(b"abc"), bytearray(3)
    abi.engine.nothing(data, into)
    assert into == b"abc"
    with pytest.raises(BufferError):
        abi.engine.nothing(data, b"read-only")  # data's view was taken, then the call handed to Python
    data.extend(b"d")  # a view still held would refuse: "Existing exports of data"
    into.extend(b"e")


@pytest.mark.parametrize(
    "samples",
    [
        array.array("f", [1.5, 2.5, -1.0]),
        array.array("f"),
        memoryview(array.array("f", [4.0])),
        array.array("d", [1.0]),
        array.array("i", [1]),
        memoryview(array.array("f", [1.0, 2.0, 3.0]))[::2],
        "1.0, 2.0",
        b"\x00\x00\x80\x3f",
        memoryview(b"\x00\x00\x80\x3f").cast("f"),
        memoryview(bytearray(8)).cast("B", shape=[2, 4]),
    ],
    ids=repr,
)
def test_arrays(signal: Twins, samples: object) -> None:
    agree(signal, "total", samples)
    agree(signal, "peak", samples)


@pytest.mark.parametrize(
    "samples",
    [
        array.array("h", [1, -2, 300]),
        array.array("H", [1]),
        memoryview(array.array("h", [1])).toreadonly(),
        bytearray(4),
        memoryview(bytearray(8)).cast("h"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("factor", [3, 2**15, "x"])
def test_mutable_arrays(signal: Twins, samples: object, factor: object) -> None:
    if isinstance(samples, memoryview):  # a memoryview cannot be deep-copied: compare on two fresh ones
        got = outcome(lambda: signal.engine.gain(samples, factor))
        samples2 = memoryview(bytearray(samples.tobytes())).cast(samples.format) if not samples.readonly else samples
        expected = outcome(lambda: signal.python.gain(samples2, factor))
        assert got == expected
        return
    agree(signal, "gain", samples, factor, mutable=True)


def test_numpy_arrays(signal: Twins) -> None:
    np = pytest.importorskip("numpy")
    for samples in (
        np.array([0.5, 0.25], dtype=np.float32),
        np.arange(6, dtype=np.float32)[::2],
        np.array([1.0]),
        np.zeros((2, 3), dtype=np.float32),
        np.zeros((2, 3), dtype=np.float32).T,
        np.float32(1.0),
        np.array([1.0], dtype="<f4"),  # an explicit byte order: "<f" on a little-endian host
        np.array([1.0], dtype=">f4"),
    ):
        agree(signal, "total", samples)
    for values in (np.array([1, 2, 3], dtype=np.int16), np.array([1, 2], dtype=np.int32)):
        agree(signal, "gain", values, 2, mutable=True)
    agree(signal, "gain", np.array([1], dtype=np.int16), np.int16(3), mutable=True)  # a numpy scalar: Python path


def test_the_vocabulary_of_signal_alike(signal: Twins) -> None:
    agree(signal, "divide", 17, 5)
    agree(signal, "divide", -17, 5)
    agree(signal, "reversed", b"abc", releases=True)
    agree(signal, "reversed", b"", releases=True)
    agree(signal, "check", 5, releases=True)
    agree(signal, "check", -3, releases=True)
    agree(signal, "check", 2**63, releases=True)
    agree(signal, "fire")


# ---- structs -------------------------------------------------------------------------------------------


def test_structs_by_pointer_in_and_out(abi: Twins, plane: Twins) -> None:
    frame = Frame(640, 480, 2560, Point(10.0, 20.0), [0.5, 1.0, 2.0])
    agree(plane, "area", frame)
    agree(plane, "area", {"width": 3, "height": 4, "stride": 12, "origin": {"x": 0.0, "y": 0.0}, "weights": [1, 2, 3]})
    agree(plane, "grow", frame, 10, mutable=True)
    agree(plane, "grow", {"width": 1, "height": 1, "stride": 4, "origin": Point(0.0, 0.0), "weights": (1, 2, 3)}, 1,
          mutable=True)  # fmt: skip
    for bad in (
        Frame(-1, 1, 4, Point(0.0, 0.0), [1.0, 1.0, 1.0]),
        Frame(1, 1, 4, Point(0.0, 0.0), [1.0, 1.0]),
        Frame(1, 1, 4, Point(0.0, 0.0), "abc"),
        Frame(1, 1, 4, {"x": 1.0}, [1.0, 1.0, 1.0]),
        Point(1.0, 2.0),
        {"width": 1},
        None,
    ):
        agree(plane, "area", bad)
        agree(plane, "grow", bad, 1, mutable=True)
    assert agree(plane, "unit")[0] == "ok"  # Out[Frame]: a zeroed struct the plugin fills, a new object
    agree(plane, "unit", 1)
    agree(abi, "big_sum", Big(1.0, 2.0, 3.5))
    n = Nested(Pair(1, 2.5), [1, 2, 3], False)
    agree(abi, "grow", n, 5, mutable=True)
    agree(abi, "grow", n, 2**15, mutable=True)


@pytest.mark.skipif(not SYSV, reason="structs by value are compiled on System V x86-64 only")
def test_structs_by_value_of_every_class(abi: Twins, plane: Twins) -> None:
    assert agree(abi, "pair", Pair(3, 1.5)) == ("ok", repr(Pair(6, 3.0)))
    assert agree(abi, "flip", FloatInt(5.0, 7)) == ("ok", repr(IntFloat(8, 2.5)))
    assert agree(abi, "unflip", IntFloat(8, 2.5)) == ("ok", repr(FloatInt(5.0, 7)))
    assert agree(abi, "rotate", Three(1.0, 2.0, 3.0)) == ("ok", repr(Three(2.0, 3.0, 1.0)))
    assert agree(abi, "tiny", Tiny(254)) == ("ok", repr(Tiny(255)))
    assert agree(abi, "nested", Nested(Pair(1, 2.0), [1, -2, 3], True)) == (
        "ok",
        repr(Nested(Pair(2, 1.0), [-1, 2, -3], False)),
    )
    assert agree(abi, "big", 1.5) == ("ok", repr(Big(1.5, 3.0, 4.5)))  # returned in memory
    got = agree(abi, "describe", Pair(-4, 0.25), FloatInt(-1.5, -(2**40)), 7.5, Three(1.0, 2.0, 3.0), -8)
    assert got == ("ok", repr(f"-4 0.25 | -1.5 {-(2**40)} | 7.5 | 1 2 3 | -8"))
    agree(plane, "length", Point(3.0, 4.0))
    assert agree(plane, "mirror", Point(3.0, 4.0)) == ("ok", repr((5.0, Point(-3.0, -4.0))))
    agree(plane, "middle", Point(0.0, 0.0), Point(2.0, 4.0))
    for bad in (Pair(2**31, 1.0), Pair(1, "x"), Tiny(256), {"c": 1}, {"a": 1}, None, Three(1.0, 2.0, 3.0)):
        agree(abi, "pair", bad)
        agree(abi, "tiny", bad)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(-(2**31), 2**31 - 1), b=st.floats(width=32), x=st.floats(), n=st.integers(-(2**63), 2**63 - 1))
def test_structs_by_value_fuzzed(abi: Twins, a: int, b: float, x: float, n: int) -> None:
    agree(abi, "pair", Pair(a, b))
    agree(abi, "flip", FloatInt(x, n))
    agree(abi, "unflip", IntFloat(n, x))
    agree(abi, "describe", Pair(a, b), FloatInt(x, n), b, Three(b, x if abs(x) < 1e38 else 0.0, b), a % 128)


# ---- argument errors --------------------------------------------------------------------------------------

#: (method, arguments, the error's class, the start of its detail): the engine declines each, Python decides.
_BAD_CALLS: list[tuple[str, tuple[Any, ...], type[CallArgumentError], str]] = [
    ("i8", (128,), ArgumentOverflowError, "x: I8 (int8_t) cannot take 128"),
    ("u64", (-1,), ArgumentOverflowError, "x: U64 (uint64_t) cannot take -1"),
    ("usize", ("1",), CallArgumentError, "x: Size (size_t) cannot take '1'"),
    ("f32", (2**1024,), ArgumentOverflowError, "x: F32 (float) cannot take 1797"),
    ("f64", (None,), CallArgumentError, "x: F64 (double) cannot take None"),
    ("flag", (2,), ArgumentOverflowError, "x: Bool (_Bool) cannot take 2"),
    ("mix", (0, 0.0, 2**64, 0.0, True, 0, 0.0), ArgumentOverflowError, "c: U64 (uint64_t) cannot take"),
    ("mix", (0, 0.0, 0, 0.0, True, 0, "g"), CallArgumentError, "g: F32 (float) cannot take 'g'"),
    ("seven", (1, 2, 3, 4, 5, 6, 2**63), ArgumentOverflowError, "g: I64 (int64_t) cannot take"),  # Python only
    ("split", (2**31,), ArgumentOverflowError, "x: I32 (int32_t) cannot take 2147483648"),
    ("nothing", (b"ab", b"read-only"), ArgumentBufferError, "into: the buffer is read-only, MutBuffer is written"),
    ("nothing", (5, bytearray(2)), CallArgumentError, "data: Buffer takes a bytes-like object, not int"),
    ("nothing", (memoryview(b"abcd")[::2], bytearray(2)), ArgumentBufferError, "data: the buffer is not C-contiguous"),
    ("pair", (Pair(2**31, 1.0),), ArgumentOverflowError, "p.a: I32 (int32_t) cannot take 2147483648"),
    ("tiny", ({"c": 256},), ArgumentOverflowError, "t.c: U8 (uint8_t) cannot take 256"),
    ("grow", (Nested(Pair(1, 2.0), [1, 2**15, 3], False), 1), ArgumentOverflowError, "n.w[1]: I16 (int16_t)"),
    ("grow", (Nested(Pair(1, 2.0), [1, 2, 3], False), 2**15), ArgumentOverflowError, "by: I16 (int16_t)"),
    ("grow", (Nested(Pair(1, "x"), [1, 2, 3], False), 1), CallArgumentError, "n.p.b: F32 (float) cannot take 'x'"),
    ("big_sum", (Big(1.0, "x", 2.0),), CallArgumentError, "b.b: F64 (double) cannot take 'x'"),
    ("describe", (Pair(1, 1.0), FloatInt(1.0, 1), 1.0, Three(1.0, 2.0, 3.0), 128), ArgumentOverflowError, "e: I8"),
]


@pytest.mark.parametrize(("method", "args", "error", "detail"), _BAD_CALLS, ids=repr)
def test_argument_errors_are_typed_alike(
    abi: Twins, abi_lib: Path, method: str, args: tuple[Any, ...], error: type[CallArgumentError], detail: str
) -> None:
    got = agree(abi, method, *args, mutable=method == "grow", releases=True)
    kind, found, _, reason, path, symbol, found_detail, cause = got
    assert kind == "error" and found is error, got
    assert reason is error.REASON and path == str(abi_lib) and symbol == f"Abi.Native.{method}"
    assert found_detail.startswith(detail), found_detail
    assert cause is not type(None) and not issubclass(cause, CallArgumentError)  # chained from what refused it


@pytest.mark.parametrize(
    ("symbol", "signature", "args", "error", "detail"),
    [
        ("si", "int(int)", (2**31,), ArgumentOverflowError, "argument 1: int cannot take 2147483648"),
        ("uc", "unsigned char(unsigned char)", (-1,), ArgumentOverflowError, "argument 1: unsigned char cannot"),
        ("f", "float(float)", (2**1024,), ArgumentOverflowError, "argument 1: float cannot take 1797"),
        ("b", "_Bool(_Bool)", (2,), ArgumentOverflowError, "argument 1: _Bool cannot take 2"),
        ("d", "double(double)", ("x",), CallArgumentError, "argument 1: double cannot take 'x'"),
        ("len", "size_t(const char *)", (5,), CallArgumentError, "argument 1: char * cannot take 5"),
        ("mixed", "double(int, double, float, long, const char *)", (1, 2.5, 0.5, 2**63, "abc"),
         ArgumentOverflowError, "argument 4: long cannot take 9223372036854775808"),
        ("mixed", "double(int, double, float, long, const char *)", (1, 2.5, None, 4, "abc"),
         CallArgumentError, "argument 3: float cannot take None"),
        ("many", "int(int, int, int, int, int, int, int)", (1, 2, 3, 4, 5, 6, "7"),  # cffi's path
         CallArgumentError, "argument 7: int cannot take '7'"),
    ],
)  # fmt: skip
def test_module_argument_errors_are_typed_alike(
    ctypes_lib: Path,
    symbol: str,
    signature: str,
    args: tuple[Any, ...],
    error: type[CallArgumentError],
    detail: str,
) -> None:
    with DynamicModule(ctypes_lib) as mod:
        got = agree_functions(_function_twins(mod, symbol, signature), *args)
        kind, found, _, reason, path, found_symbol, found_detail, cause = got
        assert kind == "error" and found is error, got
        assert reason is error.REASON and path == mod.path and found_symbol == symbol
        assert found_detail.startswith(detail), found_detail
        assert cause is not type(None) and not issubclass(cause, CallArgumentError)


# ---- calls the engine hands to Python ----------------------------------------------------------------


def test_keywords_a_wrong_count_and_an_unloaded_gate(abi_lib: Path, tmp_path: Path) -> None:
    lib = tmp_path / "libabi_own.so"  # its own file: the module's fixture keeps abi_lib loaded
    shutil.copy(abi_lib, lib)
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, Abi)
        twins = _twins(handle, "Native")
        assert agree(twins, "i32", 5) == ("ok", "5")
        assert outcome(lambda: twins.engine.ints(a=1, b=2, c=3, d=4, e=5)) == ("ok", "54321")
        assert outcome(lambda: twins.engine.ints(1, 2, 3, 4, e=5)) == outcome(
            lambda: twins.python.ints(1, 2, 3, 4, e=5)
        )
        agree(twins, "ints", 1, 2)
        agree(twins, "ints")
        manager.unload_by_path(lib)
        for method, args in (("i32", (5,)), ("text", (3,)), ("split", (1,)), ("pair", (Pair(1, 1.0),))):
            got = agree(twins, method, *args)
            assert got[1].__name__ == "PluginUnloadedError"


def test_a_method_an_older_plugin_lacks(compile_plugin: CompilePlugin) -> None:
    from greeter_versions import GREETER_V2, build_greeter

    lib = build_greeter(compile_plugin, None, "NO_AGGREGATE")  # built against version 1
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, GREETER_V2)
        twins = _twins(handle, "English")
        assert is_compiled(twins.engine.shout)
        got = agree(twins, "shout", "x")
        assert got[1].__name__ == "MethodNotProvidedError"
        assert agree(twins, "greet", "x") == ("ok", repr("Hello, x!"))


@pytest.mark.parametrize("name", ["world", "Zoë 🌍", "", "a\0b", "a\udc80", 42, b"bytes", None])
def test_c_strings(example_plugins: dict[str, Path], name: object) -> None:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
        for type_name in ("English", "French"):
            agree(_twins(handle, type_name), "greet", name)


def test_a_str_subclass_is_a_str(example_plugins: dict[str, Path]) -> None:
    class Name(str):
        pass

    with PluginManager() as manager:
        [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
        assert agree(_twins(handle, "English"), "greet", Name("sub")) == ("ok", repr("Hello, sub!"))


# ---- DynamicModule ------------------------------------------------------------------------------------

CTYPES_C = r"""
#include <stddef.h>
#include <string.h>
#include "plugin_interface.h"

PLUGIN_EXPORT signed char sc(signed char x) { return x; }
PLUGIN_EXPORT unsigned char uc(unsigned char x) { return x; }
PLUGIN_EXPORT short ss(short x) { return x; }
PLUGIN_EXPORT unsigned short us(unsigned short x) { return x; }
PLUGIN_EXPORT int si(int x) { return x; }
PLUGIN_EXPORT unsigned int ui(unsigned int x) { return x; }
PLUGIN_EXPORT long sl(long x) { return x; }
PLUGIN_EXPORT unsigned long long ull(unsigned long long x) { return x; }
PLUGIN_EXPORT _Bool b(_Bool x) { return x; }
PLUGIN_EXPORT float f(float x) { return x; }
PLUGIN_EXPORT double d(double x) { return x; }
PLUGIN_EXPORT size_t len(const char *s) { return s ? strlen(s) : (size_t)-1; }
PLUGIN_EXPORT double mixed(int a, double b, float c, long d, const char *e) {
    return a + b + c + d + (e ? (double)strlen(e) : -1000.0);
}
PLUGIN_EXPORT int many(int a, int b, int c, int d, int e, int f, int g) { return a + b + c + d + e + f + g; }
PLUGIN_EXPORT char first(const char *s) { return s[0]; }
PLUGIN_EXPORT const char *name(void) { return "name"; }
PLUGIN_EXPORT void nothing(void) {}
"""

#: (symbol, signature, compiled)
_FUNCTIONS = [
    ("sc", "signed char(signed char)", True),
    ("uc", "unsigned char(unsigned char)", True),
    ("ss", "short(short)", True),
    ("us", "unsigned short(unsigned short)", True),
    ("si", "int(int)", True),
    ("ui", "unsigned int(unsigned int)", True),
    ("sl", "long(long)", True),
    ("ull", "unsigned long long(unsigned long long)", True),
    ("b", "_Bool(_Bool)", True),
    ("f", "float(float)", True),
    ("d", "double(double)", True),
    ("len", "size_t(const char *)", True),
    ("first", "char(const char *)", False),  # cffi returns bytes for char
]


@pytest.fixture(scope="module")
def ctypes_lib(compile_plugin: CompilePlugin) -> Path:
    return compile_plugin("ctypes_zoo", CTYPES_C)


def _function_twins(mod: DynamicModule, symbol: str, signature: str) -> Twins:
    _require_engine()
    previous = _engine.set_enabled(True)
    try:
        engine = mod.function(symbol, signature)
        mod._functions.clear()  # the next one is made anew, on the Python path
        _engine.set_enabled(False)
        python = mod.function(symbol, signature)
        mod._functions.clear()
    finally:
        _engine.set_enabled(previous)
    return Twins(engine, python)


def agree_functions(twins: Twins, *args: Any) -> tuple[Any, ...]:
    got, expected = outcome(lambda: twins.engine(*args)), outcome(lambda: twins.python(*args))
    assert got == expected, args
    return got


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(_FUNCTIONS), value=st.one_of(_ANY_VALUE, st.text(max_size=5)))
def test_module_functions_convert_alike(ctypes_lib: Path, which: tuple[str, str, bool], value: object) -> None:
    symbol, signature, compiled = which
    with DynamicModule(ctypes_lib) as mod:
        twins = _function_twins(mod, symbol, signature)
        assert is_compiled(twins.engine) is compiled and not is_compiled(twins.python)
        agree_functions(twins, value)


def test_module_functions_of_every_shape(ctypes_lib: Path) -> None:
    with DynamicModule(ctypes_lib) as mod:
        mixed = _function_twins(mod, "mixed", "double(int, double, float, long, const char *)")
        assert is_compiled(mixed.engine)
        for args in ((1, 2.5, 0.5, 4, "abc"), (1, 2, 3, 4, b"xy"), (1, 2, 3, 4, None), (1, 2, 3, 4, 5), (1,)):
            agree_functions(mixed, *args)
        many = _function_twins(mod, "many", "int(int, int, int, int, int, int, int)")
        assert not is_compiled(many.engine)  # seven integers: more than System V's six registers
        assert agree_functions(many, 1, 2, 3, 4, 5, 6, 7) == ("ok", "28")
        name = _function_twins(mod, "name", "const char *(void)")
        assert not is_compiled(name.engine)  # a pointer result is cffi's cdata
        nothing = _function_twins(mod, "nothing", "void(void)")
        assert is_compiled(nothing.engine) and agree_functions(nothing) == ("ok", "None")
        agree_functions(nothing, 1)
        assert outcome(lambda: nothing.engine(x=1)) == outcome(lambda: nothing.python(x=1))


def test_a_compiled_module_function_is_a_module_function(ctypes_lib: Path) -> None:
    with DynamicModule(ctypes_lib) as mod:
        twins = _function_twins(mod, "si", "int(int)")
        for attribute in ("symbol", "signature", "is_alive", "_path"):
            assert getattr(twins.engine, attribute) == getattr(twins.python, attribute)
        assert repr(twins.engine) == repr(twins.python)
        assert isinstance(twins.engine, ModuleFunction)
        import weakref

        assert weakref.ref(twins.engine)() is twins.engine
    assert not twins.engine.is_alive and "(closed)" in repr(twins.engine)
    assert agree_functions(twins, 1)[1].__name__ == "PluginUnloadedError"


# ---- the GIL ------------------------------------------------------------------------------------------

_HOLD_CHILD = """
import threading
from plugin_host import PluginManager
from plugin_host.loading import _engine
from test_engine import Abi

lib = {lib!r}
with PluginManager() as manager:
    [handle] = manager.load_plugins(lib, Abi)
    proxy = handle.proxy("Native")
    assert type(proxy.hold).__name__ == type(proxy.hold_tight).__name__ == "builtin_function_or_method"
    import ctypes
    holding = ctypes.CFUNCTYPE(ctypes.c_int)(handle.library.symbol("holding"))
    let_go = ctypes.CFUNCTYPE(None)(handle.library.symbol("let_go"))

    def releaser(done):
        while not holding() and not done.is_set():
            pass
        let_go()

    for method, bound_ms in (("hold", 60_000), ("hold_tight", 300)):
        done = threading.Event()
        t = threading.Thread(target=releaser, args=(done,))
        t.start()
        print(method, getattr(proxy, method)(bound_ms))
        done.set()
        t.join()
"""


@needs_engine
def test_the_gil_is_released_only_around_long_running_methods(abi_lib: Path) -> None:
    """``hold`` (``@long_running``) lets another Python thread call ``let_go`` while the plugin waits;
    ``hold_tight`` (the same C function, no hint) keeps the GIL: the other thread cannot run until
    the call gives up (its bound), so the plugin never sees ``let_go``."""
    env_path = str(Path(__file__).parent)
    proc = run_isolated(f"import sys; sys.path.insert(0, {env_path!r})\n" + _HOLD_CHILD.format(lib=str(abi_lib)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["hold True", "hold_tight False"]


def test_the_hint_is_in_the_declaration_and_not_in_the_abi() -> None:
    spec = Abi.__plugin_trait__  # type: ignore[attr-defined]
    assert spec.method("hold").long_running and not spec.method("hold_tight").long_running
    assert spec.method("hold").signature == "hold(U32 bound_ms) -> Bool"
    unhinted = spec.method("hold").replace(long_running=False)
    assert unhinted == spec.method("hold") and unhinted.fingerprint == spec.method("hold").fingerprint
    from plugin_interface import TraitSpec, decode_declaration, encode_declaration

    assert decode_declaration(encode_declaration(spec)).method("hold").long_running  # carried in the JSON
    assert '"long_running"' not in encode_declaration(PluginTrait.Greeter.spec).decode()  # only where given
    whole = PluginTrait.Greeter.spec.replace(long_running=True)
    assert whole == PluginTrait.Greeter.spec and whole.is_long_running(whole.methods[0])
    assert TraitSpec.from_json(whole.to_json()).long_running
    with pytest.raises(ValueError, match="long_running is 'yes'"):
        TraitSpec.from_json({**whole.to_json(), "long_running": "yes"})


# ---- the build ----------------------------------------------------------------------------------------


def test_ci_builds_and_uses_the_engine() -> None:
    if not EXTENSIONS_PROMISED:
        pytest.skip("only CI's usual install promises a C compiler at install time")
    assert _engine.available() and _engine.enabled()


def test_an_install_made_without_a_compiler_has_no_engine() -> None:
    """CI's second run of the suite installs with ``CC=false``: this checks that it really ran without the engine."""
    if not NO_COMPILER_INSTALL:
        pytest.skip("PLUGIN_HOST_TEST_INSTALL=no-compiler says the install was made without a C compiler")
    assert not _engine.available() and not _engine.enabled()


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_the_engine_compiles_warning_free(cc: str, tmp_path: Path) -> None:
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    import sysconfig

    include = sysconfig.get_paths()["include"]
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-c", "-DPy_LIMITED_API=0x030B0000"]
    cmd = [cc, *flags, f"-I{include}", str(CALLENGINE), "-o", str(tmp_path / "callengine.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@needs_engine
def test_the_engine_refuses_a_plan_it_cannot_call() -> None:
    gate = _engine.new_gate()
    e = _engine._ext
    scalar = (e.P_SCALAR, e.S_I64, 0, "", None, "")
    void = (e.R_VOID, 0, None, "")
    with pytest.raises(ValueError, match="do not fit in registers"):
        _engine.Method(((scalar,) * 7, void, e.F_SELF), 1, gate, print, "seven")
    with pytest.raises(ValueError, match="bad"):
        _engine.Method((((99, 0, 0, "", None, ""),), void, 0), 1, gate, print, "bad")
    with pytest.raises(TypeError, match="gate must be a Gate"):
        _engine.Method(((), void, 0), 1, object(), print, "nogate")
    with pytest.raises(ValueError, match="free function"):
        _engine.Method(((), (e.R_OWNEDSTR, 0, None, ""), 0), 1, gate, print, "owned")


@needs_engine
def test_the_pure_python_switch_turns_the_engine_off(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "from plugin_host.loading import _engine; print(_engine.available(), _engine.enabled())"
    monkeypatch.setenv("PLUGIN_HOST_PURE_PYTHON", "1")
    assert run_isolated(code).stdout.split() == ["True", "False"]


_NO_ENGINE_CHILD = """
import sys
sys.modules["plugin_host.loading._callengine"] = None  # as on an install without a C compiler
from plugin_host import DynamicModule, PluginManager, PluginTrait
from plugin_host.loading import CallGate, ModuleFunction, _engine

assert not _engine.available() and not _engine.enabled() and _engine.ABI == ""
from plugin_host.loading import _plans
assert _plans.trait_method_plan(PluginTrait.Greeter.spec.methods[0], False) is None
assert CallGate().engine_gate is None
with PluginManager() as manager:
    [handle] = manager.load_plugins({greeters!r}, PluginTrait.Greeter)
    proxy = handle.proxy("English")
    print(type(proxy.greet).__name__, proxy.greet("world"))
with DynamicModule({ctypes_lib!r}) as mod:
    si = mod.function("si", "int(int)")
    print(type(si).__name__, si(41) + 1)
"""


def test_without_the_engine_python_takes_over(example_plugins: dict[str, Path], ctypes_lib: Path) -> None:
    code = _NO_ENGINE_CHILD.format(greeters=str(example_plugins["greeters"]), ctypes_lib=str(ctypes_lib))
    proc = run_isolated(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["method Hello, world!", "ModuleFunction 42"]
    assert proc.stderr == ""  # no warning: the install said it when it could not build the engine


@pytest.mark.slow
def test_an_install_without_a_c_compiler_builds_no_engine_and_works(
    tmp_path: Path, example_plugins: dict[str, Path]
) -> None:
    """The real thing: a wheel built with a compiler that always fails (``CC=false``) has neither
    extension, says so while building, and the host it installs works in pure Python."""
    source = tmp_path / "source"  # a copy: the build writes build/ next to setup.py
    junk = shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__", "*.so", ".*_cache")
    shutil.copytree(REPO, source, ignore=junk)
    env = {**os.environ, "CC": "false", "CXX": "false", "LDSHARED": "false"}
    command = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    build = subprocess.run([*command, str(source)], capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    for extension in ("loading._callengine", "loading._speedups", "formats._elfread"):
        assert f'building extension "plugin_host.{extension}" failed' in build.stdout + build.stderr
    [wheel] = tmp_path.glob("plugin_host-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names  # the .pyi stubs are package data
    code = f"""
        import sys
        sys.path.insert(0, {str(tmp_path / "site")!r})
        import plugin_host
        assert plugin_host.__file__.startswith({str(tmp_path / "site")!r}), plugin_host.__file__
        from plugin_host import PluginManager, PluginTrait
        from plugin_host.formats import _elf
        from plugin_host.loading import _accel, _engine
        assert not _engine.available() and not _accel.available() and not _elf.compiled_reader_available()
        with PluginManager() as manager:
            [handle] = manager.load_plugins({str(example_plugins["greeters"])!r}, PluginTrait.Greeter)
            print(handle.proxy("English").greet("no compiler"))
        """
    proc = run_isolated(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "Hello, no compiler!"


def test_nan_compares_by_repr() -> None:
    """The comparison helper itself: NaN results agree, distinct ones do not."""
    assert outcome(lambda: math.nan) == outcome(lambda: float("nan"))
    assert outcome(lambda: 1.0) != outcome(lambda: 2.0)


def test_version_says_which_call_path_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from plugin_host.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("calls: compiled (plugin_host.loading._callengine" in out) == _engine.enabled()


# ---- the pure-Python path's gate --------------------------------------------------------------------


def test_the_python_gate_allocates_nothing_per_call(signal: Twins) -> None:
    """A call pushes onto the gate's list of calls and pops: the list's storage is the same inside a
    call (seen from a callback the plugin calls) as outside, so nothing is allocated or freed per call."""
    calls = signal.python._gate._calls
    sizes: list[int] = []
    outside = sys.getsizeof(calls)
    signal.python.each(array.array("f", [1.0, 2.0]), lambda i, s: sizes.append(sys.getsizeof(calls)) or True)
    assert sizes == [outside, outside] and sys.getsizeof(calls) == outside
