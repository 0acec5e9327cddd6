"""What a caller's objects, a plugin's bytes or a second interpreter can do to the compiled call engine.

Each case was found by review of ``host/speedups/callengine.c`` and failed (or crashed) before its fix; the
engine must answer as the pure-Python path does, or leave the call to it.  Cases that crashed the
interpreter run in a child.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from conftest import CompilePlugin, is_compiled, run_isolated
from plugin_annotations import write_trait_headers
from plugin_host import DynamicModule, PluginManager
from plugin_host.loading import _engine, _plans
from plugin_interface import F64, U8, Bool, FixedArray, Out, Ref, declare_trait, plugin_struct, resolve_trait

pytestmark = pytest.mark.skipif(not _engine.available(), reason="the call engine was not built")


@plugin_struct
class HPoint:
    x: F64
    y: F64


@plugin_struct
class HSegment:
    points: FixedArray[HPoint, 2]


@plugin_struct
class HFlags:
    on: Bool
    n: U8


@declare_trait(version=1)
class Hostile(Protocol):
    def total(self, segment: Ref[HSegment]) -> F64: ...
    def norm(self, point: Ref[HPoint]) -> F64: ...
    def flag(self, out: Out[Bool]) -> None: ...
    def flags(self, out: Out[HFlags]) -> None: ...


HOSTILE_C = r"""
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_hostile.h"
static double total(void *self, const HSegment *s) {
    (void)self;
    return s->points[0].x + s->points[0].y + s->points[1].x + s->points[1].y;
}
static double norm(void *self, const HPoint *p) { (void)self; return p->x + p->y; }
/* A _Bool byte that is neither 0 nor 1 (what a plugin's memset leaves). */
static void flag(void *self, _Bool *out) { (void)self; memset(out, 2, 1); }
static void flags(void *self, HFlags *out) { (void)self; memset(out, 2, sizeof *out); }
PLUGIN_IMPL(Hostile, Impl, .total = total, .norm = norm, .flag = flag, .flags = flags)
PLUGIN_AGGREGATES(Hostile)
"""


@pytest.fixture(scope="module")
def hostile(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("hostile-headers")
    write_trait_headers(headers, [Hostile])
    return compile_plugin("hostile", HOSTILE_C, include_dirs=(headers,))


@pytest.fixture(params=["engine", "python"])
def proxy(request: pytest.FixtureRequest, hostile: Path) -> Iterator[Any]:
    previous = _engine.set_enabled(request.param == "engine")
    try:
        with PluginManager() as manager:
            [handle] = manager.load_plugins(hostile, Hostile)
            made = handle.proxy("Impl")
            assert is_compiled(made.total) is (request.param == "engine")
            yield made
    finally:
        _engine.set_enabled(previous)


def test_a_bool_byte_other_than_0_or_1_is_refused_on_both_paths(proxy: Any) -> None:
    """cffi refuses such a byte; the engine read it as True (and a struct field as True too)."""
    with pytest.raises(ValueError, match="got a _Bool of value 2, expected 0 or 1"):
        proxy.flag()
    with pytest.raises(ValueError, match="got a _Bool of value 2, expected 0 or 1"):
        proxy.flags()


class _Key(str):
    """A dict key equal to a field name, whose comparison runs code (``action``)."""

    action: Any = None

    def __hash__(self) -> int:
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        if _Key.action is not None:
            action, _Key.action = _Key.action, None
            action()
        return str.__eq__(self, other)

    __ne__ = str.__ne__


def test_a_keyboard_interrupt_while_an_argument_is_read_is_raised_on_both_paths(proxy: Any) -> None:
    """The engine used to swallow it (and leave the call to the Python path, which read the argument again)."""

    def interrupt() -> None:
        raise KeyboardInterrupt

    point = {_Key("x"): 1.0, "y": 2.0}
    _Key.action = interrupt
    with pytest.raises(KeyboardInterrupt):
        proxy.norm(point)
    assert proxy.norm({"x": 1.0, "y": 2.0}) == 3.0


def test_an_instance_with_its_own_attribute_look_up_is_read_once(proxy: Any) -> None:
    """The engine leaves a class with a ``__getattribute__`` to the Python path rather than read it twice."""
    reads: list[str] = []

    class Counted(HPoint):
        def __getattribute__(self, name: str) -> Any:
            if name in ("x", "y"):
                reads.append(name)
            return object.__getattribute__(self, name)

    assert proxy.norm(Counted(1.0, 2.0)) == 3.0
    assert sorted(reads) == ["x", "y"]


_EMPTIED_CHILD = """
import gc
from plugin_host import PluginManager
from plugin_host.loading import _engine
from plugin_interface import CallArgumentError
from test_engine_hostile import Hostile, _Key

holder = []

def empty():
    holder[0].clear()  # the list held the only reference to the dict being read
    holder.clear()
    gc.collect()

answers = []
for on in (True, False):
    _engine.set_enabled(on)
    with PluginManager() as manager:
        [handle] = manager.load_plugins({lib!r}, Hostile)
        proxy = handle.proxy("Impl")
        for _ in range(20):
            points = [{{_Key("x"): 1.0, "y": 2.0}}, {{"x": 3.0, "y": 4.0}}]
            holder[:] = [points]
            _Key.action = empty
            try:
                answers.append(repr(proxy.total({{"points": points}})))
            except CallArgumentError as e:  # the list was emptied: "2 items expected, got 0" on both paths
                answers.append(type(e).__name__)
            del points
            junk = [bytearray(b"\\xff" * 64) for _ in range(100)]
print(set(answers) <= {{"10.0", "CallArgumentError"}}, len(answers))
"""


def test_a_list_of_structs_emptied_while_an_item_is_read_does_not_crash(
    hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine read the items of a list through borrowed references: freed memory under the debug allocator."""
    monkeypatch.setenv("PYTHONMALLOC", "debug")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    proc = run_isolated(_EMPTIED_CHILD.format(lib=str(hostile)), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "True 40"


UPCASE_C = r"""
#include <ctype.h>
#include "plugin_interface.h"
PLUGIN_EXPORT void upcase(char *s) { for (; *s; s++) *s = (char)toupper((unsigned char)*s); }
"""


@pytest.mark.parametrize("engine", [True, False], ids=["engine", "python"])
def test_a_function_writing_through_its_char_pointer_leaves_the_str_alone(
    compile_plugin: CompilePlugin, engine: bool
) -> None:
    """A ``str`` for a ``char *`` is copied for the call (the engine passed the str's own bytes: "hello" read HELLO)."""
    lib = compile_plugin("upcase", UPCASE_C)
    previous = _engine.set_enabled(engine)
    try:
        with DynamicModule(lib) as module:
            upcase = module.function("upcase", "void(char *)")
            assert is_compiled(upcase) is engine
            word = "".join(["he", "llo"])
            upcase(word)
            upcase("hello")
            upcase("x" * 2000)  # longer than the engine's buffer for copies: the Python path's
            assert word == "hello" and "hello".upper() == "HELLO" and "".join(["he", "llo"]) == word
            buffer = bytearray(b"bytes\0")
            module.function("upcase", "void(char *)")(bytes(buffer))  # a bytes is passed as cffi passes it
    finally:
        _engine.set_enabled(previous)


def test_a_second_interpreter_gets_the_python_path_and_leaves_the_first_one_compiled(
    compile_plugin: CompilePlugin,
) -> None:
    """The engine's types are process-wide: a subinterpreter importing it used to replace them, and the main
    interpreter's DynamicModule.function then failed with 'gate must be a Gate'."""
    lib = compile_plugin("upcase", UPCASE_C)
    code = f"""
        import sys
        import _xxsubinterpreters as interpreters
        from plugin_host import DynamicModule
        from conftest import is_compiled
        interp = interpreters.create()
        interpreters.run_string(interp, textwrap.dedent('''
            import sys
            sys.path[:0] = {{path!r}}
            try:
                import plugin_host.loading._callengine
            except ImportError as e:
                assert "one interpreter per process" in str(e), e
            else:
                raise AssertionError("imported in a second interpreter")
        '''.format(path=sys.path)))
        interpreters.destroy(interp)
        with DynamicModule({str(lib)!r}) as module:
            upcase = module.function("upcase", "void(char *)")
            print(is_compiled(upcase))
        """
    tests = str(Path(__file__).parent)
    path_line = f"sys.path.insert(0, {tests!r})\nfrom conftest"
    code = "import textwrap\n" + textwrap.dedent(code).replace("from conftest", path_line)
    proc = run_isolated(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "True"


@plugin_struct
class HSmall:
    a: U8


def test_a_plan_whose_struct_classes_do_not_match_its_size_is_refused() -> None:
    """One eightbyte class per 8 bytes, no more: a 1-byte struct with two classes copied (size_t)-7 bytes."""

    @declare_trait(version=1)
    class Small(Protocol):
        def take(self, s: HSmall) -> HSmall: ...

    spec = resolve_trait(Small)
    plan = _plans.trait_method_plan(spec.methods[0], False)
    assert plan is not None
    params, result, flags = plan
    gate = _engine.new_gate()
    _engine.Method(plan, 1, gate, print, "take")  # the plan as made: one class for one byte
    [param] = params
    with pytest.raises(ValueError, match="bad struct classes"):
        _engine.Method((((*param[:5], "II"),), result, flags), 1, gate, print, "take")
    with pytest.raises(ValueError, match="bad result struct classes"):
        _engine.Method((params, (*result[:3], "II"), flags), 1, gate, print, "take")
