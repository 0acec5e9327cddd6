"""plugin_host.testing's Hypothesis side on a real plugin: strategies_for(trait) draws what a proxy
takes (a real plugin receives every drawn value intact: strings with non-ASCII and edge cases, arrays
of any length including empty, boundary integers, structs field by field, callbacks), methods taking
a Handle or Drop are left out, and fuzz_proxy runs every method, in-process or each call in a fork,
with a property check; call_forked hands back results and exceptions and turns a crash or a hang
into PluginCrash."""

from __future__ import annotations

import array
import os
import signal
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from conftest import CompilePlugin
from hypothesis import HealthCheck, find, given, settings
from plugin_host import PluginManager
from plugin_host.examples.image_traits import ImageFilter
from plugin_host.registry import TraitProxy
from plugin_host.testing import PluginCrash, call_forked, fuzz_proxy, strategies_for, strategy_for
from plugin_interface import (
    F64,
    I8,
    I32,
    I64,
    U8,
    U64,
    Array,
    Bool,
    Callback,
    CStr,
    FixedArray,
    Handle,
    MutBuffer,
    Out,
    OwnedStr,
    Ref,
    Size,
    declare_trait,
    plugin_struct,
)


@plugin_struct
class Corner:
    x: F64
    y: F64


@plugin_struct
class Box:
    width: F64
    tags: FixedArray[U8, 3]
    corner: Corner


@declare_trait(version=1)
class Sampler(Protocol):
    """One method per kind of parameter; each tells what it received."""

    def echo(self, text: CStr) -> OwnedStr: ...

    def count(self, values: Array[I64]) -> Size: ...

    def truths(self, flags: Array[Bool]) -> Size: ...

    def fill(self, data: MutBuffer) -> Size: ...

    def describe(self, box: Ref[Box]) -> OwnedStr: ...

    def ask(self, question: Callback[[I32], I32]) -> I32: ...

    def same(self, big: U64, small: I8) -> U64: ...


SAMPLER_C = r"""
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_sampler.h"

static char *echo(void *self, const char *text) { (void)self; return plugin_string_format("%s", text); }
static size_t count(void *self, const int64_t *values, size_t values_len) {
    (void)self;
    (void)values;
    return values_len;
}
static size_t truths(void *self, const _Bool *flags, size_t flags_len) {
    (void)self;
    size_t n = 0;
    for (size_t i = 0; i < flags_len; i++) {
        n += flags[i];
    }
    return n;
}
static size_t fill(void *self, uint8_t *data, size_t data_len) {
    (void)self;
    memset(data, 7, data_len);
    return data_len;
}
static char *describe(void *self, const Box *box) {
    (void)self;
    return plugin_string_format("%.17g %d %d %d %.17g %.17g", box->width, box->tags[0], box->tags[1], box->tags[2],
                                box->corner.x, box->corner.y);
}
static int32_t ask(void *self, int32_t (*question)(void *, int32_t), void *question_context) {
    (void)self;
    return question(question_context, 5);
}
static uint64_t same(void *self, uint64_t big, int8_t small) {
    (void)self;
    return big + (uint64_t)(small - small);
}

PLUGIN_IMPL(Sampler, Plain, .echo = echo, .count = count, .truths = truths, .fill = fill, .describe = describe,
            .ask = ask, .same = same)
PLUGIN_AGGREGATES(Sampler)
"""

DRAWS = settings(max_examples=60, database=None, suppress_health_check=[HealthCheck.too_slow])
SEARCH = settings(max_examples=5000, database=None)


@pytest.fixture(scope="module")
def sampler(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraitProxy]:
    from plugin_annotations import write_trait_headers

    headers = tmp_path_factory.mktemp("sampler_headers")
    write_trait_headers(headers, [Sampler])
    library = compile_plugin("sampler", SAMPLER_C, include_dirs=(headers,))
    with PluginManager() as manager:
        [handle] = manager.load_plugins(library, Sampler)
        yield handle.proxy("Plain")


STRATEGIES = strategies_for(Sampler)


@DRAWS
@given(STRATEGIES["echo"])
def test_drawn_strings_reach_the_plugin_intact(sampler: TraitProxy, kwargs: dict[str, Any]) -> None:
    assert "\x00" not in kwargs["text"]
    assert sampler.echo(**kwargs) == kwargs["text"]  # type: ignore[attr-defined]


@DRAWS
@given(STRATEGIES["count"])
def test_drawn_arrays_reach_the_plugin_with_their_length(sampler: TraitProxy, kwargs: dict[str, Any]) -> None:
    assert isinstance(kwargs["values"], array.array)
    assert sampler.count(**kwargs) == len(kwargs["values"])  # type: ignore[attr-defined]


@DRAWS
@given(STRATEGIES["truths"])
def test_drawn_bool_arrays_reach_the_plugin(sampler: TraitProxy, kwargs: dict[str, Any]) -> None:
    assert sampler.truths(**kwargs) == sum(kwargs["flags"])  # type: ignore[attr-defined]


@DRAWS
@given(STRATEGIES["fill"])
def test_drawn_buffers_are_writable(sampler: TraitProxy, kwargs: dict[str, Any]) -> None:
    assert sampler.fill(**kwargs) == len(kwargs["data"])  # type: ignore[attr-defined]
    assert set(kwargs["data"]) <= {7}


@DRAWS
@given(STRATEGIES["describe"])
def test_drawn_structs_reach_the_plugin_field_by_field(sampler: TraitProxy, kwargs: dict[str, Any]) -> None:
    box = kwargs["box"]
    assert isinstance(box, Box) and isinstance(box.corner, Corner) and len(box.tags) == 3
    expected = [box.width, *box.tags, box.corner.x, box.corner.y]
    received = sampler.describe(**kwargs).split()  # type: ignore[attr-defined]
    assert [float(v) for v in received] == pytest.approx(expected, nan_ok=True)


@DRAWS
@given(STRATEGIES["ask"])
def test_drawn_callbacks_answer_the_plugin(sampler: TraitProxy, kwargs: dict[str, Any]) -> None:
    question = kwargs["question"]
    assert sampler.ask(**kwargs) == question.value  # type: ignore[attr-defined]
    assert question.calls == [(5,)]


@DRAWS
@given(STRATEGIES["same"])
def test_drawn_integers_are_in_range(sampler: TraitProxy, kwargs: dict[str, Any]) -> None:
    assert sampler.same(**kwargs) == kwargs["big"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("marker", "value"),
    [(I32, -(2**31)), (I32, 2**31 - 1), (I8, -128), (U64, 2**64 - 1), (Size, 0), (I64, -1)],
)
def test_boundary_integers_are_drawn(marker: object, value: int) -> None:
    assert find(strategy_for(marker), lambda v: v == value, settings=SEARCH) == value


def test_empty_arrays_and_buffers_are_drawn() -> None:
    assert find(strategy_for(Array[I32]), lambda a: len(a) == 0, settings=SEARCH) == array.array("i")
    assert find(strategy_for(MutBuffer), lambda b: len(b) == 0, settings=SEARCH) == bytearray()


def test_strings_beyond_ascii_and_the_edge_cases_are_drawn() -> None:
    astral = find(strategy_for(CStr), lambda s: any(ord(c) > 0xFFFF for c in s), settings=SEARCH)
    assert any(ord(c) > 0xFFFF for c in astral)
    for edge in ("", "%s%s%s%n", "\u202eevil"):
        assert find(strategy_for(CStr), lambda s, edge=edge: s == edge, settings=SEARCH) == edge


def test_struct_fields_are_drawn_one_by_one() -> None:
    box = find(strategy_for(Ref[Box]), lambda b: b.corner.y < 0 and b.tags[2] == 255, settings=SEARCH)
    assert box == Box(0.0, [0, 0, 255], Corner(0.0, -1.0))  # shrunk field by field: the others are 0


def test_methods_taking_a_handle_or_a_drop_are_left_out() -> None:
    assert set(strategies_for(ImageFilter)) == {"describe", "invert", "adjust", "rows", "open"}
    with pytest.raises(ValueError, match=r"no strategy for Handle\[Session\]: the object comes from the plugin"):
        strategy_for(Handle["Session"])
    with pytest.raises(ValueError, match=r"no strategy for Out\[I32\]: not an argument \(the proxy returns it\)"):
        strategy_for(Out[I32])


def test_fuzz_proxy_runs_every_method_in_process_with_a_property(sampler: TraitProxy) -> None:
    seen: set[str] = set()

    def check(method: str, kwargs: dict[str, Any], result: object) -> None:
        seen.add(method)
        if method == "echo":
            assert result == kwargs["text"]

    fuzz_proxy(sampler, isolated=False, max_examples=10, check=check, settings=settings(database=None))
    assert seen == {m.name for m in Sampler.__plugin_trait__.methods}  # type: ignore[attr-defined]


def test_fuzz_proxy_reports_a_broken_property_with_the_minimal_example(sampler: TraitProxy) -> None:
    def check(method: str, kwargs: dict[str, Any], result: object) -> None:
        assert method != "count" or result < 3, f"count({kwargs}) = {result}"

    with pytest.raises(AssertionError, match=r"count\(\{'values': array\('q', \[0, 0, 0\]\)\}\) = 3") as caught:
        fuzz_proxy(sampler, methods=["count"], max_examples=50, check=check, settings=settings(database=None))
    assert caught.value.__notes__  # Hypothesis' report of the failing case


def test_call_forked_returns_what_the_child_returned_or_raised() -> None:
    assert call_forked(lambda: (os.getpid(), "done"))[0] != os.getpid()
    with pytest.raises(KeyError, match="missing") as caught:
        call_forked(lambda: {}["missing"])
    assert "(raised in the child process)" in caught.value.__notes__[0]


def test_call_forked_turns_a_crash_or_a_hang_into_plugin_crash() -> None:
    with pytest.raises(PluginCrash, match=r"^the poke crashed the child process: SIGSEGV \(signal 11") as crashed:
        call_forked(lambda: os.kill(os.getpid(), signal.SIGSEGV), what="the poke")
    assert crashed.value.signal == "SIGSEGV" and crashed.value.exit_code == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in crashed.value.report
    with pytest.raises(PluginCrash, match=r"^the nap timed out after 0.2 s and was stopped") as hung:
        call_forked(lambda: time.sleep(60), what="the nap", timeout_s=0.2)
    assert hung.value.exit_code is None
    with pytest.raises(PluginCrash, match=r"exit status 3"):
        call_forked(lambda: os._exit(3))
