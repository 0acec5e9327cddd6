"""The type vocabulary on a real plugin: arrays, out-parameters, owned bytes and status results.

Each marker: its conversion, its ownership (what the plugin allocates is
released once, by the host, with the plugin's own ``free_memory``), and its bad
inputs (wrong item size or format, non-contiguous, read-only where written).

Every test runs on both call paths (the ``call_path`` fixture): the compiled
call engine and pure Python; tests/test_engine.py compares the two directly.
"""

from __future__ import annotations

import array
import gc
from pathlib import Path
from typing import Any, Protocol

import pytest
from conftest import CompilePlugin, is_compiled, run_isolated
from plugin_annotations import write_trait_headers
from plugin_host import PluginManager
from plugin_host.errors import (
    ArgumentBufferError,
    ArgumentOverflowError,
    CallArgumentError,
    ErrorReason,
    PluginCallError,
    PluginMethodError,
    PluginUnloadedError,
)
from plugin_host.loading import _engine
from plugin_host.registry import PluginObject, _proxy
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
    Array,
    Bool,
    Buffer,
    Callback,
    CStr,
    Drop,
    FixedArray,
    Handle,
    MutArray,
    MutBuffer,
    MutRef,
    Out,
    OwnedBytes,
    OwnedStr,
    Ref,
    Size,
    Status,
    declare_trait,
    plugin_struct,
)

pytestmark = pytest.mark.usefixtures("call_path")


@declare_trait(version=1)
class Signal(Protocol):
    """A little audio-ish toolbox."""

    def total(self, samples: Array[F32]) -> F32:
        """The sum of ``samples``."""
        ...

    def gain(self, samples: MutArray[I16], factor: I16) -> None:
        """Multiply every sample in place."""
        ...

    def divide(self, a: I64, b: I64, quotient: Out[I64], remainder: Out[I64]) -> None:
        """Integer division, both results out."""
        ...

    def peak(self, samples: Array[F32], index: Out[U32]) -> F32:
        """The largest sample, and where it is."""
        ...

    def reversed(self, data: Buffer) -> OwnedBytes:
        """A new buffer, ``data`` back to front (allocated by the plugin)."""
        ...

    def check(self, level: I64) -> Status:
        """Fails (status 7, with a message) for a negative level; succeeds with a note for zero."""
        ...

    def label(self) -> OwnedStr:
        """A new string (allocated by the plugin)."""
        ...

    def broken(self) -> OwnedBytes:
        """A NULL buffer that claims 3 bytes."""
        ...

    def releases(self) -> U32:
        """How many times the plugin's free_memory ran."""
        ...

    def each(self, samples: Array[F32], visit: Callback[[U32, F32], Bool]) -> U32:
        """Call ``visit(index, sample)`` for each sample until it returns false; how many it visited."""
        ...

    def announce(self, say: Callback[[CStr], None]) -> None:
        """Call ``say`` with a greeting, twice."""
        ...

    def keep(self, later: Callback[[], None]) -> None:
        """Keep ``later`` (wrongly) for the next call to ``fire``."""
        ...

    def fire(self) -> None:
        """Call what ``keep`` kept: the callback's call is over by now."""
        ...


SIGNAL_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_signal.h"

static unsigned released;

static float total(void *self, const float *s, size_t n) {
    (void)self;
    float t = 0;
    for (size_t i = 0; i < n; i++) t += s[i];
    return t;
}
static void gain(void *self, int16_t *s, size_t n, int16_t factor) {
    (void)self;
    for (size_t i = 0; i < n; i++) s[i] = (int16_t)(s[i] * factor);
}
static void divide(void *self, int64_t a, int64_t b, int64_t *q, int64_t *r) {
    (void)self;
    *q = a / b;
    *r = a % b;
}
static float peak(void *self, const float *s, size_t n, uint32_t *index) {
    (void)self;
    float best = n ? s[0] : 0;
    *index = 0;
    for (size_t i = 1; i < n; i++) if (s[i] > best) { best = s[i]; *index = (uint32_t)i; }
    return best;
}
static PluginBytes reversed(void *self, const uint8_t *d, size_t n) {
    (void)self;
    PluginBytes out = {NULL, 0};
    if (n == 0) return out;
    out.data = malloc(n);
    if (!out.data) return out;
    for (size_t i = 0; i < n; i++) out.data[i] = d[n - 1 - i];
    out.len = n;
    return out;
}
static int32_t check(void *self, int64_t level, char **error) {
    (void)self;
    if (level == 0) *error = plugin_string_format("zero is a level too");  /* a note, with success */
    if (level >= 0) return 0;
    *error = plugin_string_format("level %lld is below zero", (long long)level);
    return 7;
}
static uint32_t releases(void *self) { (void)self; return released; }
static char *label(void *self) { (void)self; return plugin_string_format("basic"); }
static PluginBytes broken(void *self) { (void)self; PluginBytes out = {NULL, 3}; return out; }
static uint32_t each(void *self, const float *s, size_t n, _Bool (*visit)(void *, uint32_t, float), void *ctx) {
    (void)self;
    uint32_t i = 0;
    while (i < n && visit(ctx, i, s[i])) i++;
    return i;
}
static void announce(void *self, void (*say)(void *, const char *), void *ctx) {
    (void)self;
    say(ctx, "hello");
    say(ctx, "again");
}
static void (*kept)(void *);
static void *kept_context;
static void keep(void *self, void (*later)(void *), void *ctx) { (void)self; kept = later; kept_context = ctx; }
static void fire(void *self) { (void)self; if (kept) kept(kept_context); }
static void counting_free(void *p) { if (p) released++; free(p); }

static void *make_state(void) { return calloc(1, 1); }
PLUGIN_IMPL_WITH_STATE(Signal, Basic, make_state, free, .total = total, .gain = gain, .divide = divide,
                       .peak = peak, .reversed = reversed, .check = check, .releases = releases, .each = each,
                       .announce = announce, .keep = keep, .fire = fire, .label = label, .broken = broken)
PLUGIN_AGGREGATES(Signal)
"""


@pytest.fixture(scope="module")
def signal(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("signal-headers")
    write_trait_headers(headers, [Signal])
    # The registration's free_memory counts its calls, so a test sees every release.
    return compile_plugin("signal", SIGNAL_C, include_dirs=(headers,), defines=("PLUGIN_FREE_MEMORY=counting_free",))


#: The Signal methods the engine compiles (the others take callbacks: the Python path).
COMPILED_SIGNAL = ("total", "gain", "divide", "peak", "reversed", "check", "releases", "fire")


@pytest.fixture
def basic(signal: Path, call_path: str) -> Any:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(signal, Signal)
        proxy = handle.proxy("Basic")
        for name in COMPILED_SIGNAL:
            assert is_compiled(getattr(proxy, name)) is (call_path == "engine"), name
        assert not is_compiled(proxy.each)
        yield proxy


def test_the_header_spells_every_marker_in_c(tmp_path: Path) -> None:
    write_trait_headers(tmp_path, [Signal])
    header = (tmp_path / "plugin_trait_signal.h").read_text()
    assert "float (*total)(void *self, const float *samples, size_t samples_len);" in header
    assert "void (*gain)(void *self, int16_t *samples, size_t samples_len, int16_t factor);" in header
    assert "void (*divide)(void *self, int64_t a, int64_t b, int64_t *quotient, int64_t *remainder);" in header
    assert "PluginBytes (*reversed)(void *self, const uint8_t *data, size_t data_len);" in header
    assert "int32_t (*check)(void *self, int64_t level, char **error);" in header


def test_arrays_in_and_in_out_without_a_copy(basic: Any) -> None:
    assert basic.total(array.array("f", [1.5, 2.5, -1.0])) == 3.0
    assert basic.total(memoryview(array.array("f", [4.0]))) == 4.0
    assert basic.total(array.array("f")) == 0.0  # empty is fine
    samples = array.array("h", [1, -2, 300])
    assert basic.gain(samples, 3) is None
    assert samples.tolist() == [3, -6, 900]  # written in place: the caller's own memory


def test_out_parameters_come_back_after_the_result(basic: Any) -> None:
    assert basic.divide(17, 5) == (3, 2)
    assert basic.peak(array.array("f", [1.0, 9.0, 3.0])) == (9.0, 1)


def test_owned_bytes_are_copied_and_released_once_by_the_host(basic: Any) -> None:
    before = basic.releases()
    assert basic.reversed(b"abc") == b"cba"
    assert basic.reversed(bytearray(b"xy")) == b"yx"
    assert basic.releases() == before + 2  # each returned buffer released once, with the plugin's free_memory
    assert basic.reversed(b"") == b""  # NULL with length 0 is an empty result, nothing to release
    assert basic.releases() == before + 2


def test_an_owned_string_is_copied_and_released_once_by_the_host(basic: Any) -> None:
    before = basic.releases()
    assert basic.label() == "basic"
    assert basic.releases() == before + 1  # released once, with the registration's free_memory


def test_a_null_owned_buffer_with_a_length_is_a_typed_error(basic: Any) -> None:
    before = basic.releases()
    with pytest.raises(PluginCallError, match="Signal.Basic.broken returned NULL") as e:
        basic.broken()
    assert e.value.path and e.value.symbol == "broken"
    assert basic.releases() == before  # nothing to release


def test_a_failing_status_is_a_typed_error_with_the_plugins_message(basic: Any) -> None:
    assert basic.check(5) is None
    before = basic.releases()
    assert basic.check(0) is None  # success with a message: no error, but the message is released
    assert basic.releases() == before + 1
    before = basic.releases()
    expected = r"Signal.Basic.check failed with status 7: level -3 is below zero"
    with pytest.raises(PluginMethodError, match=expected) as e:
        basic.check(-3)
    assert e.value.code == 7 and e.value.message == "level -3 is below zero"
    assert basic.releases() == before + 1  # the message was released, once


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (array.array("d", [1.0]), r"items of format 'd' \(8 bytes\), Array\[F32\] needs F32"),
        (array.array("i", [1]), r"items of format 'i' \(4 bytes\), Array\[F32\] needs F32"),
        (memoryview(array.array("f", [1.0, 2.0, 3.0]))[::2], "not C-contiguous"),
        ("1.0, 2.0", r"expected a buffer of F32 items \(Array\[F32\]\), got str"),
        (b"\x00\x00\x80\x3f", r"items of format 'B' \(1 bytes\)"),
    ],
)
def test_bad_arrays_are_refused_before_the_call(basic: Any, value: object, match: str) -> None:
    with pytest.raises(CallArgumentError, match=match) as e:
        basic.total(value)
    assert e.value.symbol == "Signal.Basic.total" and e.value.path


def test_a_read_only_buffer_is_refused_where_it_would_be_written(basic: Any) -> None:
    with pytest.raises(CallArgumentError, match="read-only, MutArray\\[I16\\] is written to"):
        basic.gain(memoryview(array.array("h", [1])).toreadonly(), 2)
    with pytest.raises(CallArgumentError, match="items of format 'H'"):
        basic.gain(array.array("H", [1]), 2)  # unsigned items for a signed array


def test_numpy_arrays_cross_without_a_copy(basic: Any) -> None:
    np = pytest.importorskip("numpy")
    assert basic.total(np.array([0.5, 0.25], dtype=np.float32)) == 0.75
    samples = np.array([1, 2, 3], dtype=np.int16)
    basic.gain(samples, -2)
    assert samples.tolist() == [-2, -4, -6]
    with pytest.raises(CallArgumentError, match="not C-contiguous"):
        basic.total(np.arange(6, dtype=np.float32)[::2])
    with pytest.raises(CallArgumentError, match="'d'"):
        basic.total(np.array([1.0]))  # float64 for an F32 array


def test_a_callback_is_called_during_the_call(basic: Any) -> None:
    seen: list[tuple[int, float]] = []

    def visit(index: int, sample: float) -> bool:
        seen.append((index, sample))
        return sample < 2.0

    assert basic.each(array.array("f", [0.5, 1.5, 2.5, 3.5]), visit) == 2
    assert seen == [(0, 0.5), (1, 1.5), (2, 2.5)]
    said: list[str] = []
    basic.announce(said.append)
    assert said == ["hello", "again"]


def test_an_exception_in_a_callback_is_raised_after_the_plugin_returns(basic: Any) -> None:
    calls: list[int] = []

    def visit(index: int, sample: float) -> bool:
        calls.append(index)
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        basic.each(array.array("f", [1.0, 2.0, 3.0]), visit)
    assert calls == [0]  # the plugin saw false and stopped: nothing unwound through C
    with pytest.raises(OverflowError):  # a result that does not fit the C type is the callback's error too
        basic.each(array.array("f", [1.0]), lambda i, s: 2**40)
    assert basic.each(array.array("f", [1.0]), lambda i, s: False) == 0  # and the proxy still works


def test_a_callback_is_valid_for_the_call_only(basic: Any) -> None:
    late: list[str] = []
    basic.keep(lambda: late.append("called"))
    basic.fire()  # the plugin calls it after keep() returned: it finds nothing, no crash
    assert late == []
    with pytest.raises(CallArgumentError, match="expected a callable"):
        basic.announce("not callable")


def test_the_header_spells_a_callback(tmp_path: Path) -> None:
    write_trait_headers(tmp_path, [Signal])
    header = (tmp_path / "plugin_trait_signal.h").read_text()
    assert (
        "uint32_t (*each)(void *self, const float *samples, size_t samples_len, "
        "_Bool (*visit)(void *, uint32_t, float), void *visit_context);" in header
    )


# ---- plugin-side objects -----------------------------------------------------------------------


class Session:
    """The kind of object a Store hands out (a name for Handle[...] and Drop[...])."""


class Thing:
    """A kind with no Drop method."""


class Cursor:
    """A second kind of object a Store hands out."""


@declare_trait(version=1)
class Store(Protocol):
    """Sessions that live in the plugin."""

    def open(self, label: CStr) -> Handle[Session]:
        """A new session."""
        ...

    def put(self, session: Handle[Session], value: I64) -> None:
        """Add to the session's total."""
        ...

    def total(self, session: Handle[Session]) -> I64:
        """The session's total."""
        ...

    def end(self, session: Drop[Session]) -> None:
        """Destroy a session."""
        ...

    def alive(self) -> U32:
        """How many sessions exist."""
        ...

    def cursor(self) -> Handle[Cursor]:
        """A new cursor."""
        ...

    def close_cursor(self, cursor: Drop[Cursor]) -> None:
        """Destroy a cursor."""
        ...


STORE_C = r"""
#include <stdlib.h>
#include "plugin_annotations.h"
#include "plugin_trait_store.h"

typedef struct { int64_t total; } Session;
static uint32_t sessions;

static void *open_(void *self, const char *label) {
    (void)self, (void)label;
    sessions++;
    return calloc(1, sizeof(Session));
}
static void put(void *self, void *s, int64_t v) { (void)self; ((Session *)s)->total += v; }
static int64_t total(void *self, void *s) { (void)self; return ((Session *)s)->total; }
static void end(void *self, void *s) { (void)self; sessions--; free(s); }
static uint32_t alive(void *self) { (void)self; return sessions; }
static void *cursor(void *self) { (void)self; return calloc(1, 16); }
static void close_cursor(void *self, void *c) { (void)self; free(c); }
PLUGIN_IMPL(Store, Memory, .open = open_, .put = put, .total = total, .end = end, .alive = alive,
            .cursor = cursor, .close_cursor = close_cursor)
/* A second implementation: its objects are not Memory's (here the same layout; in general not). */
PLUGIN_IMPL(Store, Other, .open = open_, .put = put, .total = total, .end = end, .alive = alive,
            .cursor = cursor, .close_cursor = close_cursor)
PLUGIN_AGGREGATES(Store)
"""


@pytest.fixture(scope="module")
def store(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("store-headers")
    write_trait_headers(headers, [Store])
    return compile_plugin("store", STORE_C, include_dirs=(headers,))


def test_a_handle_is_a_python_object_destroyed_exactly_once(store: Path) -> None:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(store, Store)
        memory: Any = handle.proxy("Memory")
        with memory.open("a") as session:
            assert isinstance(session, PluginObject) and session.kind == "Session" and session.is_alive
            memory.put(session, 40)
            memory.put(session, 2)
            assert memory.total(session) == 42
            assert memory.alive() == 1
        assert not session.is_alive and memory.alive() == 0  # `with` destroyed it
        session.close()  # a second close does nothing
        assert memory.alive() == 0
        with pytest.raises(CallArgumentError, match="the Session object was destroyed already"):
            memory.total(session)
        explicit = memory.open("b")
        memory.end(explicit)  # the trait's own Drop method: the finalizer then does nothing
        assert memory.alive() == 0 and not explicit.is_alive
        with pytest.raises(CallArgumentError, match="the Session object was destroyed already"):
            memory.end(explicit)  # never twice, even through the Drop method itself
        assert memory.alive() == 0
        collected = memory.open("c")
        assert memory.alive() == 1
        del collected
        gc.collect()
        assert memory.alive() == 0  # the finalizer destroyed it, once


def test_unloading_destroys_live_objects_first_and_later_use_is_refused(store: Path) -> None:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(store, Store)
        memory: Any = handle.proxy("Memory")
        kept = [memory.open("x"), memory.open("y")]
        assert memory.alive() == 2
        counter = manager.unload_by_path(store)
        assert counter == {"Store": 2}  # both implementations released
        assert not any(s.is_alive for s in kept)
        with pytest.raises(PluginUnloadedError):
            memory.total(kept[0])
        kept[1].close()  # nothing to do: the release destroyed it
        del kept
        gc.collect()  # and the finalizers do not call into the unloaded library


def test_a_handle_of_another_kind_or_another_object_is_refused(store: Path) -> None:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(store, Store)
        memory: Any = handle.proxy("Memory")
        other: Any = handle.proxy("Other")
        with pytest.raises(CallArgumentError, match="expected a Session object, got int"):
            memory.total(12345)
        with memory.cursor() as cursor, pytest.raises(CallArgumentError, match="a Cursor object where a Session"):
            memory.total(cursor)
        with memory.open("mine") as session:
            memory.put(session, 5)
            with pytest.raises(CallArgumentError, match="the Session object belongs to another implementation") as e:
                other.total(session)  # Other would read Memory's object as its own
            assert e.value.symbol == "Store.Other.total"
            with pytest.raises(CallArgumentError, match="belongs to another implementation"):
                other.end(session)
            assert session.is_alive and memory.total(session) == 5
        assert memory.alive() == 0


def test_a_handle_without_its_drop_method_is_refused_at_declaration() -> None:
    with pytest.raises(
        TypeError, match=r"Handle\[Thing\] needs exactly one method whose only parameter is Drop\[Thing\]"
    ):

        @declare_trait()
        class Leaky(Protocol):
            def make(self) -> Handle[Thing]: ...


# ---- structs ----------------------------------------------------------------------------------------


@plugin_struct
class Point:
    """A point in the plane."""

    x: F64
    y: F64


@plugin_struct
class Frame:
    """An image's geometry: nested struct and a fixed array."""

    width: U32
    height: U32
    stride: U32
    origin: Point
    weights: FixedArray[F32, 3]


@declare_trait(version=1)
class Geometry(Protocol):
    """Structs by value, by pointer (in and in/out), nested, with fixed arrays, and returned."""

    def length(self, p: Point) -> F64:
        """The distance to the origin (by value)."""
        ...

    def area(self, frame: Ref[Frame]) -> U64:
        """width * height (by pointer, read only)."""
        ...

    def grow(self, frame: MutRef[Frame], by: U32) -> None:
        """Grow the frame in place: every size by ``by``, the origin moved, the weights doubled."""
        ...

    def middle(self, a: Point, b: Point) -> Point:
        """A new point (returned by value)."""
        ...

    def mirror(self, p: Point, mirrored: Out[Point]) -> F64:
        """``p`` mirrored through the origin (out), and its length."""
        ...

    def unit(self, frame: Out[Frame]) -> None:
        """A 1x1 frame at (1, 2) with weights 1, 2, 3 (out: nested struct and fixed array)."""
        ...


GEOMETRY_C = r"""
#include <math.h>
#include "plugin_annotations.h"
#include "plugin_trait_geometry.h"

static double length(void *self, Point p) { (void)self; return sqrt(p.x * p.x + p.y * p.y); }
static uint64_t area(void *self, const Frame *f) { (void)self; return (uint64_t)f->width * f->height; }
static void grow(void *self, Frame *f, uint32_t by) {
    (void)self;
    f->width += by;
    f->height += by;
    f->stride = f->width * 4;
    f->origin.x -= by;
    f->origin.y -= by;
    for (int i = 0; i < 3; i++) f->weights[i] *= 2;
}
static Point middle(void *self, Point a, Point b) {
    (void)self;
    Point m = {(a.x + b.x) / 2, (a.y + b.y) / 2};
    return m;
}
static double mirror(void *self, Point p, Point *out) {
    (void)self;
    if (out->x != 0 || out->y != 0) return -1;  /* the host must hand over a zeroed struct */
    out->x = -p.x;
    out->y = -p.y;
    return sqrt(p.x * p.x + p.y * p.y);
}
static void unit(void *self, Frame *f) {
    (void)self;
    Frame u = {1, 1, 4, {1.0, 2.0}, {1.0f, 2.0f, 3.0f}};
    *f = u;
}
PLUGIN_IMPL(Geometry, Plane, .length = length, .area = area, .grow = grow, .middle = middle, .mirror = mirror,
            .unit = unit)
PLUGIN_AGGREGATES(Geometry)
"""


@pytest.fixture(scope="module")
def geometry(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("geometry-headers")
    write_trait_headers(headers, [Geometry])
    # The header's _Static_asserts hold the host's offsets and sizes to the compiler's: it must compile.
    return compile_plugin("geometry", GEOMETRY_C, include_dirs=(headers,))


@pytest.fixture
def plane(geometry: Path, call_path: str) -> Any:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(geometry, Geometry)
        proxy = handle.proxy("Plane")
        for name in ("length", "area", "grow", "middle", "mirror", "unit"):
            # Structs by value only where the engine knows the calling convention (System V x86-64).
            by_value = name in ("length", "middle", "mirror")
            expected = call_path == "engine" and (not by_value or _engine.ABI == "sysv-x86_64")
            assert is_compiled(getattr(proxy, name)) is expected, name
        yield proxy


def test_structs_by_value_by_pointer_and_returned(plane: Any) -> None:
    assert plane.length(Point(3.0, 4.0)) == 5.0
    assert plane.length({"x": 6.0, "y": 8.0}) == 10.0  # any object with the fields, or a dict
    frame = Frame(640, 480, 2560, Point(10.0, 20.0), [0.5, 1.0, 2.0])
    assert plane.area(frame) == 640 * 480
    assert plane.grow(frame, 10) is None
    assert frame == Frame(650, 490, 2600, Point(0.0, 10.0), [1.0, 2.0, 4.0])  # the plugin's writes, copied back
    middle = plane.middle(Point(0.0, 0.0), Point(2.0, 4.0))
    assert isinstance(middle, Point) and middle == Point(1.0, 2.0)


def test_out_structs_come_back_as_new_objects(plane: Any) -> None:
    assert plane.mirror(Point(3.0, 4.0)) == (5.0, Point(-3.0, -4.0))
    frame = plane.unit()
    assert isinstance(frame, Frame) and frame == Frame(1, 1, 4, Point(1.0, 2.0), [1.0, 2.0, 3.0])
    assert plane.unit() is not frame  # a new object per call


def test_the_header_and_the_declaration_spell_out_structs(tmp_path: Path) -> None:
    write_trait_headers(tmp_path, [Geometry])
    header = (tmp_path / "plugin_trait_geometry.h").read_text()
    assert "double (*mirror)(void *self, Point p, Point *mirrored);" in header
    assert "void (*unit)(void *self, Frame *frame);" in header
    spec = Geometry.__plugin_trait__  # type: ignore[attr-defined]
    assert spec.method("mirror").signature == (
        "mirror(Point{x:F64@0,y:F64@8}#16 p, Out[Point{x:F64@0,y:F64@8}#16] mirrored) -> F64"
    )
    from plugin_interface import TraitSpec

    assert TraitSpec.from_json(spec.to_json()) == spec  # read back from an embedded declaration


def test_a_struct_by_value_from_any_object_with_its_fields(plane: Any) -> None:
    import types

    class Loose(dict[str, float]):
        """A dict subclass: read by key, on the careful path."""

    for value in (Point(3.0, 4.0), {"x": 3.0, "y": 4.0}, types.SimpleNamespace(x=3.0, y=4.0), Loose(x=3.0, y=4.0)):
        assert plane.length(value) == 5.0, value
        assert plane.length(value) == 5.0, value  # a second time: the reader remembered for the type
    assert plane.length(Point(3, 4)) == 5.0  # ints for float fields convert too
    assert plane.length(Point(True, 0.0)) == 1.0
    frame = Frame(640, 480, 2560, Point(0.0, 0.0), [1.0, 1.0, 1.0])
    for _ in range(2):  # another struct, refused every time (not remembered as a reader)
        with pytest.raises(CallArgumentError, match="p: a Frame where a Point is expected"):
            plane.length(frame)
    with pytest.raises(CallArgumentError, match=r"p.x: F64 \(double\) cannot take '3': must be real number") as e:
        plane.length(Point("3", 4.0))  # type: ignore[arg-type]
    assert e.value.symbol == "Geometry.Plane.length"
    with pytest.raises(CallArgumentError, match="p: Point needs field 'y'"):
        plane.length(types.SimpleNamespace(x=1.0))


def test_a_wrong_struct_is_refused_before_the_call(plane: Any) -> None:
    with pytest.raises(CallArgumentError, match="p: a Frame where a Point is expected"):
        plane.length(Frame(1, 1, 4, Point(0.0, 0.0), [1.0, 1.0, 1.0]))
    with pytest.raises(CallArgumentError, match="p: Point needs field 'y'"):
        plane.length({"x": 1.0})
    with pytest.raises(CallArgumentError, match="frame.weights: 3 items expected, got 2"):
        plane.area(Frame(1, 1, 4, Point(0.0, 0.0), [1.0, 1.0]))
    with pytest.raises(CallArgumentError, match="frame"):
        plane.area(Frame(-1, 1, 4, Point(0.0, 0.0), [1.0, 1.0, 1.0]))  # out of range for a uint32_t


def test_the_layout_enters_the_header_the_fingerprint_and_the_declaration(tmp_path: Path) -> None:
    write_trait_headers(tmp_path, [Geometry])
    header = (tmp_path / "plugin_trait_geometry.h").read_text()
    assert "typedef struct Frame {" in header and "    float weights[3];" in header and "    Point origin;" in header
    assert 'PLUGIN_STATIC_ASSERT(offsetof(Frame, origin) == 16, "Frame.origin: the host expects offset 16");' in header
    assert "Point (*middle)(void *self, Point a, Point b);" in header
    assert header.index("typedef struct Point") < header.index("typedef struct Frame")  # nested first
    spec = Geometry.__plugin_trait__  # type: ignore[attr-defined]
    assert spec.method("area").signature == (
        "area(Ref[Frame{width:U32@0,height:U32@4,stride:U32@8,origin:Point{x:F64@0,y:F64@8}#16@16,"
        "weights:F32[3]@32}#48] frame) -> U64"
    )
    from plugin_interface import TraitSpec, decode_declaration, encode_declaration

    assert decode_declaration(encode_declaration(spec)) == spec  # an embedded declaration carries the layouts
    assert TraitSpec.from_json(spec.to_json()).fingerprint == spec.fingerprint


# ---- argument errors ----------------------------------------------------------------------------------


@declare_trait(version=1)
class Checked(Protocol):
    """One method per scalar marker, then strings, buffers and out-parameters: for the argument errors."""

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

    def text(self, s: CStr, times: U8) -> Size:
        """strlen(s) * times."""
        ...

    def count(self, data: Buffer) -> Size:
        """len(data)."""
        ...

    def fill(self, into: MutBuffer, byte: U8) -> Size:
        """Every byte of ``into`` set to ``byte``."""
        ...

    def twice(self, doubled: Out[U16], x: U8) -> None:
        """2 * x, out (the out-parameter comes first: the parameter named is ``x``)."""
        ...

    def halve(self, x: I32, half: Out[I32]) -> Status:
        """x / 2, out."""
        ...

    def ask(self, answer: Callback[[U32], I8]) -> I32:
        """What ``answer(7)`` returns."""
        ...

    def pick(self, choose: Callback[[U32], I8], values: Array[I32]) -> I32:
        """What ``choose(len(values))`` returns."""
        ...

    def both(self, first: Callback[[U32], I8], second: Callback[[U32], I8]) -> I32:
        """``first(1) + second(2)``."""
        ...

    def calls(self) -> U32:
        """How many calls reached the plugin (the other methods count)."""
        ...


CHECKED_C = r"""
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_checked.h"

static unsigned ncalls;
#define ID(name, T) static T name(void *self, T x) { (void)self; ncalls++; return x; }
ID(i8, int8_t) ID(i16, int16_t) ID(i32, int32_t) ID(i64, int64_t)
ID(u8, uint8_t) ID(u16, uint16_t) ID(u32, uint32_t) ID(u64, uint64_t)
ID(usize, size_t) ID(f32, float) ID(f64, double) ID(flag, _Bool)
static size_t text(void *self, const char *s, uint8_t times) { (void)self; ncalls++; return strlen(s) * times; }
static size_t count(void *self, const uint8_t *d, size_t n) { (void)self, (void)d; ncalls++; return n; }
static size_t fill(void *self, uint8_t *d, size_t n, uint8_t byte) {
    (void)self;
    ncalls++;
    memset(d, byte, n);
    return n;
}
static void twice(void *self, uint16_t *doubled, uint8_t x) { (void)self; ncalls++; *doubled = (uint16_t)(2u * x); }
static int32_t halve(void *self, int32_t x, int32_t *half, char **error) {
    (void)self, (void)error;
    ncalls++;
    *half = x / 2;
    return 0;
}
static int32_t ask(void *self, int8_t (*answer)(void *, uint32_t), void *ctx) {
    (void)self;
    ncalls++;
    return answer(ctx, 7);
}
static int32_t pick(void *self, int8_t (*choose)(void *, uint32_t), void *ctx, const int32_t *values, size_t n) {
    (void)self, (void)values;
    ncalls++;
    return choose(ctx, (uint32_t)n);
}
static int32_t both(void *self, int8_t (*first)(void *, uint32_t), void *first_ctx, int8_t (*second)(void *, uint32_t),
                    void *second_ctx) {
    (void)self;
    ncalls++;
    return first(first_ctx, 1) + second(second_ctx, 2);
}
static uint32_t calls(void *self) { (void)self; return ncalls; }
PLUGIN_IMPL(Checked, Strict, .i8 = i8, .i16 = i16, .i32 = i32, .i64 = i64, .u8 = u8, .u16 = u16, .u32 = u32,
            .u64 = u64, .usize = usize, .f32 = f32, .f64 = f64, .flag = flag, .text = text, .count = count,
            .fill = fill, .twice = twice, .halve = halve, .ask = ask, .pick = pick, .both = both, .calls = calls)
PLUGIN_AGGREGATES(Checked)
"""


@pytest.fixture(scope="module")
def checked_lib(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("checked-headers")
    write_trait_headers(headers, [Checked])
    return compile_plugin("checked", CHECKED_C, include_dirs=(headers,))


@pytest.fixture
def strict(checked_lib: Path, call_path: str) -> Any:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(checked_lib, Checked)
        proxy = handle.proxy("Strict")
        for method in Checked.__plugin_trait__.methods:  # type: ignore[attr-defined]
            callbacks = ("ask", "pick", "both")  # the Python path's
            assert is_compiled(getattr(proxy, method.name)) is (call_path == "engine" and method.name not in callbacks)
        yield proxy


_BIG_FLOAT = 2**1024  # an int no double holds


#: (method, arguments, the error's class, the builtin it also is, the start of its detail)
BAD_ARGUMENTS: list[tuple[str, tuple[Any, ...], type[CallArgumentError], type[Exception], str]] = [
    ("i8", (128,), ArgumentOverflowError, OverflowError, "x: I8 (int8_t) cannot take 128: integer 128 does not fit"),
    ("i8", (-129,), ArgumentOverflowError, OverflowError, "x: I8 (int8_t) cannot take -129"),
    ("i8", ("1",), CallArgumentError, TypeError, "x: I8 (int8_t) cannot take '1': an integer is required"),
    ("i16", (2**15,), ArgumentOverflowError, OverflowError, "x: I16 (int16_t) cannot take 32768"),
    ("i16", (1.5,), CallArgumentError, TypeError, "x: I16 (int16_t) cannot take 1.5"),
    ("i32", (2**31,), ArgumentOverflowError, OverflowError, "x: I32 (int32_t) cannot take 2147483648"),
    ("i32", (None,), CallArgumentError, TypeError, "x: I32 (int32_t) cannot take None"),
    ("i64", (2**63,), ArgumentOverflowError, OverflowError, "x: I64 (int64_t) cannot take 9223372036854775808"),
    ("i64", (b"1",), CallArgumentError, TypeError, "x: I64 (int64_t) cannot take b'1'"),
    ("u8", (-1,), ArgumentOverflowError, OverflowError, "x: U8 (uint8_t) cannot take -1"),
    ("u8", (256,), ArgumentOverflowError, OverflowError, "x: U8 (uint8_t) cannot take 256"),
    ("u16", (65536,), ArgumentOverflowError, OverflowError, "x: U16 (uint16_t) cannot take 65536"),
    ("u32", (2**32,), ArgumentOverflowError, OverflowError, "x: U32 (uint32_t) cannot take 4294967296"),
    ("u32", ([1],), CallArgumentError, TypeError, "x: U32 (uint32_t) cannot take [1]"),
    ("u64", (2**64,), ArgumentOverflowError, OverflowError, "x: U64 (uint64_t) cannot take 18446744073709551616"),
    ("u64", (-1,), ArgumentOverflowError, OverflowError, "x: U64 (uint64_t) cannot take -1"),
    ("usize", (-1,), ArgumentOverflowError, OverflowError, "x: Size (size_t) cannot take -1"),
    ("usize", (1.0,), CallArgumentError, TypeError, "x: Size (size_t) cannot take 1.0"),
    ("f32", (_BIG_FLOAT,), ArgumentOverflowError, OverflowError, "x: F32 (float) cannot take 1797"),
    ("f32", ("1.0",), CallArgumentError, TypeError, "x: F32 (float) cannot take '1.0': must be real number"),
    ("f64", (_BIG_FLOAT,), ArgumentOverflowError, OverflowError, "x: F64 (double) cannot take 1797"),
    ("f64", (1j,), CallArgumentError, TypeError, "x: F64 (double) cannot take 1j"),
    ("flag", (2,), ArgumentOverflowError, OverflowError, "x: Bool (_Bool) cannot take 2"),
    ("flag", ("yes",), CallArgumentError, TypeError, "x: Bool (_Bool) cannot take 'yes'"),
    ("text", (42, 1), CallArgumentError, TypeError, "s: CStr takes a str, not int"),
    ("text", (b"abc", 1), CallArgumentError, TypeError, "s: CStr takes a str, not bytes"),
    ("text", (None, 1), CallArgumentError, TypeError, "s: CStr takes a str, not NoneType"),
    ("text", ("ab\udc80", 1), CallArgumentError, TypeError, "s: CStr 'ab\\udc80' has no UTF-8 form: "),
    ("text", ("abc", 256), ArgumentOverflowError, OverflowError, "times: U8 (uint8_t) cannot take 256"),
    ("count", (5,), CallArgumentError, TypeError, "data: Buffer takes a bytes-like object, not int"),
    ("count", ("text",), CallArgumentError, TypeError, "data: Buffer takes a bytes-like object, not str"),
    ("count", (memoryview(b"abcdef")[::2],), ArgumentBufferError, BufferError, "data: the buffer is not C-contiguous"),
    ("fill", (b"read-only", 1), ArgumentBufferError, BufferError, "into: the buffer is read-only, MutBuffer is"),
    ("fill", (memoryview(bytearray(2)).toreadonly(), 1), ArgumentBufferError, BufferError, "into: the buffer is read"),
    ("fill", (bytearray(2), -1), ArgumentOverflowError, OverflowError, "byte: U8 (uint8_t) cannot take -1"),
    ("twice", (300,), ArgumentOverflowError, OverflowError, "x: U8 (uint8_t) cannot take 300"),
    ("twice", ("2",), CallArgumentError, TypeError, "x: U8 (uint8_t) cannot take '2'"),
    ("halve", (2**31,), ArgumentOverflowError, OverflowError, "x: I32 (int32_t) cannot take 2147483648"),
]


@pytest.mark.parametrize(("method", "args", "error", "builtin", "detail"), BAD_ARGUMENTS, ids=repr)
def test_every_bad_argument_is_a_typed_error_naming_the_file_the_method_and_the_parameter(
    strict: Any,
    checked_lib: Path,
    method: str,
    args: tuple[Any, ...],
    error: type[CallArgumentError],
    builtin: type[Exception],
    detail: str,
) -> None:
    before = strict.calls()
    with pytest.raises(error) as e:
        getattr(strict, method)(*args)
    assert type(e.value) is error and isinstance(e.value, builtin)  # `except OverflowError` keeps working
    assert e.value.reason is error.REASON
    assert e.value.path == str(checked_lib) and e.value.symbol == f"Checked.Strict.{method}"
    assert e.value.detail.startswith(detail), e.value.detail
    assert e.value.signature == Checked.__plugin_trait__.method(method).signature  # type: ignore[attr-defined]
    assert str(e.value).startswith(f"{checked_lib}: Checked.Strict.{method} (")
    assert not isinstance(e.value.__cause__, CallArgumentError)  # chained from what refused the value
    assert e.value.__cause__ is not None or "C-contiguous" in detail or "read-only" in detail
    assert strict.calls() == before  # refused before the call: the plugin never ran


def test_good_arguments_still_pass(strict: Any) -> None:
    assert [strict.i8(-128), strict.u64(2**64 - 1), strict.usize(0), strict.flag(True)] == [-128, 2**64 - 1, 0, True]
    assert strict.f32(1.5) == 1.5 and strict.f64(2**1023) == 2.0**1023
    assert strict.text("héllo", 2) == 12 and strict.count(memoryview(b"abc")) == 3
    into = bytearray(3)
    assert strict.fill(into, 7) == 3 and into == b"\x07\x07\x07"
    assert strict.twice(21) == 42 and strict.halve(-9) == -4
    assert strict.ask(lambda n: n * 2) == 14


@pytest.mark.parametrize(
    ("result", "error", "builtin", "detail"),
    [
        (128, ArgumentOverflowError, OverflowError, "answer: the callback returned 128, which I8 (int8_t) cannot take"),
        ("1", CallArgumentError, TypeError, "answer: the callback returned '1', which I8 (int8_t) cannot take"),
        (1.5, CallArgumentError, TypeError, "answer: the callback returned 1.5, which I8 (int8_t) cannot take"),
    ],
)
def test_a_callback_returning_a_bad_value_is_a_typed_error_after_the_plugin_returns(
    strict: Any,
    checked_lib: Path,
    result: object,
    error: type[CallArgumentError],
    builtin: type[Exception],
    detail: str,
) -> None:
    before = strict.calls()
    with pytest.raises(error) as e:
        strict.ask(lambda n: result)
    assert type(e.value) is error and isinstance(e.value, builtin)
    assert e.value.reason is error.REASON
    assert e.value.path == str(checked_lib) and e.value.symbol == "Checked.Strict.ask"
    assert e.value.detail.startswith(detail), e.value.detail
    assert isinstance(e.value.__cause__, builtin) and not isinstance(e.value.__cause__, CallArgumentError)
    assert strict.calls() == before + 1  # the plugin ran, saw the result's zero, and returned: nothing unwound
    assert strict.ask(lambda n: -n) == -7  # and the proxy still works
    with pytest.raises(KeyError, match="its own"):  # what a callback raises itself is still raised as it is

        def own(n: int) -> int:
            raise KeyError("its own")

        strict.ask(own)


def test_a_call_refused_after_its_callback_was_made_leaves_no_callback_behind(strict: Any) -> None:
    live = dict(_proxy._LIVE)
    before = strict.calls()
    assert strict.pick(lambda n: n, array.array("i", [1, 2, 3])) == 3
    assert strict.both(lambda n: n, lambda n: 10 * n) == 21
    with pytest.raises(CallArgumentError, match="values: expected a buffer of I32 items"):
        strict.pick(lambda n: n, [1, 2])  # the callback is made, then the array refused
    with pytest.raises(CallArgumentError, match="second: expected a callable"):
        strict.both(lambda n: n, 42)  # the first callback is made, then the second refused
    assert strict.calls() == before + 2  # neither refused call reached the plugin
    assert _proxy._LIVE == live  # and no callback of theirs is still registered (with its proxy and function)


def test_a_bad_struct_field_names_the_field(plane: Any, geometry: Path) -> None:
    cases: list[tuple[str, tuple[Any, ...], type[CallArgumentError], str]] = [
        ("area", (Frame(-1, 1, 4, Point(0.0, 0.0), [1.0, 1.0, 1.0]),), ArgumentOverflowError, "frame.width: U32"),
        ("area", (Frame(1, 2**32, 4, Point(0.0, 0.0), [1.0, 1.0, 1.0]),), ArgumentOverflowError, "frame.height: U32"),
        ("area", (Frame(1, 1, 4, Point("0", 0.0), [1.0, 1.0, 1.0]),), CallArgumentError, "frame.origin.x: F64"),
        ("area", (Frame(1, 1, 4, Point(0.0, 0.0), [1.0, "x", 1.0]),), CallArgumentError, "frame.weights[1]: F32"),
        ("area", (Frame(1, 1, 4, Point(0.0, 0.0), 5),), CallArgumentError, "frame.weights: a sequence of 3 items"),
        ("grow", (Frame(1, 1, 4, Point(0.0, _BIG_FLOAT), [1.0] * 3), 1), ArgumentOverflowError, "frame.origin.y: F64"),
        ("grow", (Frame(1, 1, 4, Point(0.0, 0.0), [1.0] * 3), -1), ArgumentOverflowError, "by: U32 (uint32_t)"),
        ("length", (Point("3", 4.0),), CallArgumentError, "p.x: F64 (double) cannot take '3': must be real number"),
        ("length", ({"x": 1.0, "y": None},), CallArgumentError, "p.y: F64 (double) cannot take None"),
        ("middle", (Point(0.0, 0.0), Point(1.0, _BIG_FLOAT)), ArgumentOverflowError, "b.y: F64 (double) cannot take"),
    ]
    for method, args, error, detail in cases:
        with pytest.raises(error) as e:
            getattr(plane, method)(*args)
        assert type(e.value) is error, (method, args)
        assert e.value.reason is error.REASON
        assert e.value.path == str(geometry) and e.value.symbol == f"Geometry.Plane.{method}"
        assert e.value.detail.startswith(detail), e.value.detail
        assert e.value.__cause__ is not None and not isinstance(e.value.__cause__, CallArgumentError)
        assert str(e.value).count(str(geometry)) == 1  # one message, not one wrapped in another


def test_a_read_only_or_scattered_array_is_a_buffer_error(basic: Any) -> None:
    with pytest.raises(ArgumentBufferError, match=r"samples: the buffer is read-only, MutArray\[I16\]") as e:
        basic.gain(memoryview(array.array("h", [1])).toreadonly(), 2)
    assert isinstance(e.value, BufferError) and e.value.reason is ErrorReason.BAD_BUFFER
    with pytest.raises(ArgumentBufferError, match="samples: the buffer is not C-contiguous") as e:
        basic.total(memoryview(array.array("f", [1.0, 2.0, 3.0]))[::2])
    with pytest.raises(ArgumentOverflowError, match=r"factor: I16 \(int16_t\) cannot take 32768") as e:
        basic.gain(array.array("h", [1]), 2**15)
    assert e.value.reason is ErrorReason.OUT_OF_RANGE


_CYCLE_CHILD = """
import gc, sys
sys.path.insert(0, {tests!r})
from plugin_host import PluginManager
from plugin_host.errors import CallArgumentError
from plugin_host.loading import _engine
from test_vocabulary import Signal

_engine.set_enabled({engine!r})
with PluginManager() as manager:
    [handle] = manager.load_plugins({lib!r}, Signal)
    proxy = handle.proxy("Basic")

    def fail():
        samples = memoryview(bytearray(8)).cast("h")
        try:
            proxy.gain(samples, "not a number")
        except CallArgumentError as e:
            kept = e  # a cycle: kept -> its traceback -> this frame -> kept

    for _ in range(20):
        fail()
        gc.collect()
print("survived")
"""


def test_a_failed_call_kept_in_a_reference_cycle_does_not_crash_the_collector(signal: Path, call_path: str) -> None:
    """The traceback of a refused call keeps the proxy method's frame, which held cffi's view of the caller's
    memoryview: collected in a cycle, that crashed the interpreter (SIGSEGV) until a failure dropped the views."""
    code = _CYCLE_CHILD.format(tests=str(Path(__file__).parent), engine=call_path == "engine", lib=str(signal))
    proc = run_isolated(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "survived"
