"""Trait declarations: validation, lookup, and a user-declared trait working
end to end (declaration -> generated header -> compiled plugin -> proxy)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
from conftest import CompilePlugin
from plugin_annotations import write_trait_headers
from plugin_host import PluginManager
from plugin_interface import (
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    RESERVED_METHOD_NAMES,
    U8,
    U16,
    U32,
    U64,
    AlreadyLoadedError,
    Bool,
    Buffer,
    CStr,
    MethodNotProvidedError,
    OwnedStr,
    PluginTrait,
    Size,
    UnknownTraitError,
    declare_trait,
    declared_trait_versions,
    declared_traits,
    resolve_trait,
)
from plugin_interface import long_running as long_running_hint
from plugin_interface._traits import _doc, _fingerprint, _parameter_names


@declare_trait(version=3)
class Calculator(Protocol):
    """Numbers in, numbers out; a read-only buffer."""

    def add(self, a: I32, b: I32) -> I32:
        """a + b."""
        ...

    def scale(self, x: F64) -> F64:
        """x times the instance's factor."""
        ...

    def checksum(self, data: Buffer) -> U64:
        """Sum of the bytes."""
        ...

    def describe(self, label: CStr) -> OwnedStr:
        """A description."""
        ...

    def reset(self) -> None:
        """Nothing in, nothing out."""
        ...


CALCULATOR_C = """
#include "plugin_annotations.h"
#include "plugin_trait_calculator.h"

typedef struct { double factor; int resets; } Calc;
static void *calc_new(void) { Calc *c = calloc(1, sizeof *c); if (c) c->factor = 2.5; return c; }
static void calc_free(void *p) { free(p); }
static int32_t add(void *self, int32_t a, int32_t b) { (void)self; return a + b; }
static double scale(void *self, double x) { return ((Calc *)self)->factor * x; }
static uint64_t checksum(void *self, const uint8_t *d, size_t n) {
    (void)self; uint64_t s = 0; for (size_t i = 0; i < n; i++) s += d[i]; return s;
}
static char *describe(void *self, const char *label) {
    return plugin_string_format("%s: factor %.1f, resets %d", label, ((Calc *)self)->factor, ((Calc *)self)->resets);
}
static void reset(void *self) { ((Calc *)self)->resets++; }

PLUGIN_IMPL_WITH_STATE(Calculator, Basic, calc_new, calc_free,
    .add = add, .scale = scale, .checksum = checksum, .describe = describe, .reset = reset)
PLUGIN_AGGREGATES(Calculator)
"""


def test_user_declared_trait_end_to_end(compile_plugin: CompilePlugin, tmp_path: Path) -> None:
    [header] = write_trait_headers(tmp_path, [Calculator])
    assert header.name == "plugin_trait_calculator.h"
    lib = compile_plugin("calculator", CALCULATOR_C, include_dirs=(tmp_path,))
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, Calculator)
        calc = handle.proxy("Basic")
        assert calc.add(2, 3) == 5  # type: ignore[attr-defined]
        assert calc.scale(4.0) == 10.0  # type: ignore[attr-defined]
        assert calc.checksum(b"\x01\x02\xff") == 258  # type: ignore[attr-defined]
        assert calc.reset() is None  # type: ignore[attr-defined]
        assert calc.describe("calc") == "calc: factor 2.5, resets 1"  # type: ignore[attr-defined]
        with pytest.raises(OverflowError):
            calc.add(2**40, 1)  # type: ignore[attr-defined]
        assert manager.unload_by_path(lib) == {"Calculator": 1}


def test_declared_traits_and_lookup() -> None:
    traits = declared_traits()
    assert {"Greeter", "Transformer", "Calculator"} <= set(traits)
    assert resolve_trait("Greeter") is PluginTrait.Greeter.spec
    assert resolve_trait(PluginTrait.Transformer) is PluginTrait.Transformer.spec
    assert resolve_trait(Calculator).version == 3
    assert [m.name for m in resolve_trait(Calculator).methods] == ["add", "scale", "checksum", "describe", "reset"]
    with pytest.raises(UnknownTraitError, match="known traits: .*Greeter"):
        resolve_trait("Missing")


def test_signatures_and_fingerprint_follow_the_declaration() -> None:
    spec = resolve_trait(Calculator)
    assert spec.method("checksum").c_params == ["void *self", "const uint8_t *data", "size_t data_len"]
    assert spec.method("describe").cffi_type == "char *(*)(void *, const char *)"
    assert spec.fingerprint != PluginTrait.Greeter.spec.fingerprint
    assert spec.fingerprint == resolve_trait(Calculator).fingerprint


def test_unannotated_parameter_is_rejected() -> None:
    with pytest.raises(TypeError, match="parameter 'x' has annotation .* not a parameter marker"):

        @declare_trait()
        class Bad(Protocol):
            def f(self, x: int) -> I32: ...


def test_owned_string_is_not_a_parameter() -> None:
    with pytest.raises(TypeError, match="not a parameter marker"):

        @declare_trait()
        class Bad2(Protocol):
            def f(self, x: OwnedStr) -> None: ...


def test_bad_trait_name_and_conflicting_redeclaration() -> None:
    with pytest.raises(ValueError, match="letters and digits"):

        @declare_trait(name="has_underscore")
        class Bad3(Protocol):
            def f(self) -> None: ...

    with pytest.raises(ValueError, match="Greeter v1 is already declared with a different definition"):

        @declare_trait(name="Greeter")
        class Greeter2(Protocol):
            def other(self) -> None: ...


# ---- several versions in one process -------------------------------------------------


@declare_trait(version=1, name="Scorer")
class ScorerV1(Protocol):
    """Scores a text."""

    def score(self, text: CStr) -> F64:
        """How much ``text`` is worth."""
        ...


@declare_trait(version=2, name="Scorer")
class ScorerV2(Protocol):
    """Scores a text, and says who scored."""

    def score(self, text: CStr) -> F64:
        """How much ``text`` is worth."""
        ...

    def name(self) -> OwnedStr:
        """Who is scoring (appended in v2)."""
        ...


SCORER_C = """
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_scorer.h"

static double score(void *self, const char *text) { (void)self; return (double)strlen(text) * SCALE; }
#if PLUGIN_TRAIT_VERSION_Scorer >= 2
static char *name(void *self) { (void)self; return plugin_string_format("scorer v%u", PLUGIN_TRAIT_VERSION_Scorer); }
PLUGIN_IMPL(Scorer, Length, .score = score, .name = name)
#else
PLUGIN_IMPL(Scorer, Length, .score = score)
#endif
PLUGIN_AGGREGATES(Scorer)
"""


@pytest.fixture(scope="module")
def scorers(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One Scorer plugin built against each declared version: version -> library."""
    built = {}
    for version, trait in ((1, ScorerV1), (2, ScorerV2)):
        headers = tmp_path_factory.mktemp(f"scorer-v{version}")
        write_trait_headers(headers, [trait])
        built[version] = compile_plugin(
            f"scorer{version}", SCORER_C, defines=(f"SCALE={version}.0",), include_dirs=(headers,)
        )
    return built


def test_both_versions_of_a_trait_live_in_one_process() -> None:
    assert [s.version for s in declared_trait_versions("Scorer")] == [1, 2]
    assert resolve_trait("Scorer") is resolve_trait(ScorerV2)  # a bare name means the latest
    assert resolve_trait("Scorer@1") is resolve_trait(ScorerV1) and resolve_trait("Scorer@v2").version == 2
    assert declared_traits()["Scorer"].version == 2
    with pytest.raises(UnknownTraitError, match="Scorer@7"):
        resolve_trait("Scorer@7")


def test_a_v1_plugin_in_a_v2_host_and_back(scorers: dict[int, Path]) -> None:
    with PluginManager() as manager:
        [old] = manager.load_plugins(scorers[1], ScorerV2)  # v1 plugin, v2 host
        proxy = old.proxy("Length")
        assert proxy.score("abcd") == 4.0  # type: ignore[attr-defined]
        assert not proxy.has_method("name")
        with pytest.raises(MethodNotProvidedError, match="Scorer.Length.name"):
            proxy.name()  # type: ignore[attr-defined]
        [new] = manager.load_plugins(scorers[2], ScorerV1)  # v2 plugin, v1 host: it sees v1's methods
        assert new.proxy("Length").score("abcd") == 8.0  # type: ignore[attr-defined]
        assert not hasattr(new.proxy("Length"), "name")
        assert manager.unload_by_path(scorers[1]) == {"Scorer": 1}
        with pytest.raises(AlreadyLoadedError, match="loaded already for Scorer v1; unload it before") as exc:
            manager.load_plugins(scorers[2], ScorerV2)  # one file, one version of a trait at a time
        assert exc.value.loaded == 1 and exc.value.wanted == 2
        manager.unload_by_path(scorers[2])
        [same] = manager.load_plugins(scorers[2], ScorerV2)  # and the v2 plugin in the v2 host
        assert same.proxy("Length").name() == "scorer v2"  # type: ignore[attr-defined]


@pytest.mark.parametrize("reserved", sorted(RESERVED_METHOD_NAMES))
def test_a_method_named_like_a_proxy_attribute_is_refused_at_declaration(reserved: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"def {reserved}(self) -> None: ...", {"__annotations__": {}}, namespace)
    with pytest.raises(ValueError, match=f"Clash.{reserved}: the name is taken by every proxy's own attributes"):
        declare_trait()(type("Clash", (Protocol,), {reserved: namespace[reserved]}))


def test_headers_for_any_module(tmp_path: Path) -> None:
    """``python -m plugin_annotations headers MODULE[:TRAIT] -o DIR``, and the header says exactly that."""
    (tmp_path / "my_traits.py").write_text(
        "from typing import Protocol\n"
        "from plugin_interface import CStr, F64, declare_trait\n\n\n"
        "@declare_trait(version=4)\n"
        "class Ranker(Protocol):\n"
        "    def rank(self, text: CStr) -> F64: ...\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "plugin_annotations", "headers", "my_traits:Ranker", "-o", "out"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    header = (tmp_path / "out" / "plugin_trait_ranker.h").read_text()
    assert "`python -m plugin_annotations headers my_traits:Ranker -o out`" in header
    assert "#define PLUGIN_TRAIT_VERSION_Ranker 4u" in header
    check = subprocess.run([*command, "--check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stdout == ""
    missing = subprocess.run(
        [*command[:4], "my_traits:Nope", "-o", "out"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "declares no trait 'Nope'" in missing.stderr
    no_dir = subprocess.run(command[:5], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert no_dir.returncode == 2 and "-o DIR is required" in no_dir.stdout + no_dir.stderr


# ---- the scalar vocabulary -------------------------------------------------------------


@declare_trait(version=1)
class Widths(Protocol):
    """Every fixed-width scalar, in and out: each method returns its argument plus one."""

    def i8(self, x: I8) -> I8: ...
    def i16(self, x: I16) -> I16: ...
    def i32(self, x: I32) -> I32: ...
    def i64(self, x: I64) -> I64: ...
    def u8(self, x: U8) -> U8: ...
    def u16(self, x: U16) -> U16: ...
    def u32(self, x: U32) -> U32: ...
    def u64(self, x: U64) -> U64: ...
    def f32(self, x: F32) -> F32: ...
    def f64(self, x: F64) -> F64: ...
    def sz(self, x: Size) -> Size: ...
    def flag(self, x: Bool) -> Bool: ...


WIDTHS_C = """
#include "plugin_annotations.h"
#include "plugin_trait_widths.h"
#define PLUS_ONE(name, type) static type name(void *self, type x) { (void)self; return (type)(x + 1); }
PLUS_ONE(i8, int8_t) PLUS_ONE(i16, int16_t) PLUS_ONE(i32, int32_t) PLUS_ONE(i64, int64_t)
PLUS_ONE(u8, uint8_t) PLUS_ONE(u16, uint16_t) PLUS_ONE(u32, uint32_t) PLUS_ONE(u64, uint64_t)
PLUS_ONE(f32, float) PLUS_ONE(f64, double) PLUS_ONE(sz, size_t)
static _Bool flag(void *self, _Bool x) { (void)self; return !x; }
PLUGIN_IMPL(Widths, Plus, .i8 = i8, .i16 = i16, .i32 = i32, .i64 = i64, .u8 = u8, .u16 = u16, .u32 = u32,
            .u64 = u64, .f32 = f32, .f64 = f64, .sz = sz, .flag = flag)
PLUGIN_AGGREGATES(Widths)
"""


def test_every_scalar_crosses_with_its_c_type_and_range(compile_plugin: CompilePlugin, tmp_path: Path) -> None:
    write_trait_headers(tmp_path, [Widths])
    header = (tmp_path / "plugin_trait_widths.h").read_text()
    assert "int8_t (*i8)(void *self, int8_t x);" in header and "float (*f32)(void *self, float x);" in header
    lib = compile_plugin("widths", WIDTHS_C, include_dirs=(tmp_path,))
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, Widths)
        p: Any = handle.proxy("Plus")
        assert (p.i8(126), p.i8(127), p.u8(254), p.u8(255)) == (127, -128, 255, 0)  # C's wrap-around, not ours
        assert (p.i16(-32768), p.u16(65535), p.i32(-1), p.u32(2**32 - 1)) == (-32767, 0, 0, 0)
        assert (p.i64(2**63 - 2), p.u64(2**64 - 2), p.sz(41)) == (2**63 - 1, 2**64 - 1, 42)
        assert p.f32(0.5) == 1.5 and p.f64(1e300) == 1e300 + 1 and p.f32(1e39) == float("inf")
        assert p.flag(True) is False and p.flag(False) is True
        for method, bad in (("i8", 128), ("i8", -129), ("u8", -1), ("u16", 65536), ("u64", 2**64), ("i64", 2**63)):
            with pytest.raises(OverflowError):  # checked before the call: never truncated silently
                getattr(p, method)(bad)
        with pytest.raises(TypeError):
            p.i32(1.5)
        assert manager.unload_by_path(lib) == {"Widths": 1}
    spec = resolve_trait(Widths)
    assert [m.params[0].ctype.name for m in spec.methods][:4] == ["I8", "I16", "I32", "I64"]
    assert len(set(spec.method_fingerprints)) == len(spec.methods)  # every type enters the fingerprint


@pytest.mark.parametrize("name", ["size", "int", "return"])
def test_a_method_named_like_a_c_word_is_refused(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"def {name}_(self) -> None: ...", {}, namespace)
    with pytest.raises(ValueError, match=f"CWord.{name}: a method cannot be called '{name}' in C"):
        declare_trait()(type("CWord", (Protocol,), {name: namespace[f"{name}_"]}))


# ---- declarations read without inspect -------------------------------------------------------------------------


def documented(doc: object) -> Callable[..., None]:
    """A method whose ``__doc__`` is ``doc`` (set, not written: a formatter would rewrite a docstring)."""

    def method(self: Any, text: CStr) -> None: ...

    method.__doc__ = doc  # type: ignore[assignment]
    return method


#: Docstrings ``inspect.getdoc`` cleans, by what is special in them; True: read without ``inspect``.
DOCS: dict[str, tuple[object, bool]] = {
    "one line": ("One line.", True),
    "tabs": ("\tTabbed\tinside\t", True),
    "trailing spaces": ("Trailing spaces.   ", True),
    "leading spaces": ("   Leading spaces.", True),
    "a carriage return": ("One\rline for cleandoc", True),
    "blank": ("   ", True),
    "empty": ("", True),
    "a form feed first": ("\x0cForm feed (3.11 strips it, 3.13 does not)", False),
    "an ideographic space first": ("\u3000Wide", False),
    "several lines": ("First line.\n\n        Indented more.\n    Back.\n    ", False),
    "a first line blank": ("\n    Below.\n    ", False),
    "none": (None, False),
    "not text": (5, False),
}


def plain(self: Any, a: I32, b: I32 = 2) -> I32: ...
def self_only(self: Any) -> None: ...
def keyword_only(self: Any, a: I32, *, b: I32 = 1) -> None: ...
def positional_only(self: Any, a: I32, /, b: I32) -> None: ...
def starred(self: Any, *args: I32, **kwargs: I32) -> None: ...


@functools.wraps(plain)
def wrapped(*args: Any, **kwargs: Any) -> Any:
    return plain(*args, **kwargs)


def with_signature(self: Any, hidden: I32) -> None: ...


with_signature.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("self", "shown")]
)


def with_attribute(self: Any) -> None: ...


with_attribute.custom = 1  # type: ignore[attr-defined]


@long_running_hint
def hinted(self: Any, data: Buffer) -> None: ...


#: Functions by their parameters; True: read without ``inspect``.
PARAMETERS: list[tuple[Callable[..., object], bool]] = [
    (plain, True),
    (self_only, True),
    (hinted, True),
    (lambda self, x: None, True),
    (keyword_only, False),
    (positional_only, False),
    (starred, False),
    (wrapped, False),
    (with_signature, False),
    (with_attribute, False),
]


class DocBase:
    def inherited(self) -> None:
        """Documented on the base."""


class DocChild(DocBase):
    def inherited(self) -> None:  # no docstring: inspect finds the base's
        ...


class OneLine(Protocol):
    """A class of one line."""


class SeveralLines(Protocol):
    """A class.

    Of several lines.
    """


class Undocumented(Protocol):  # inspect.getdoc gives Protocol's own docstring
    pass


@pytest.mark.parametrize("doc", list(DOCS), ids=str)
def test_docstrings_are_read_as_inspect_reads_them(doc: str) -> None:
    method = documented(DOCS[doc][0])
    assert _doc(method) == (inspect.getdoc(method) or "")


@pytest.mark.parametrize("func", [f for f, _ in PARAMETERS], ids=lambda f: f.__name__)
def test_parameters_are_read_as_inspect_reads_them(func: Any) -> None:
    assert _parameter_names(func) == list(inspect.signature(func).parameters)


@pytest.mark.parametrize(
    "obj", [DocChild.inherited, DocBase.inherited, OneLine, SeveralLines, Undocumented], ids=lambda o: o.__qualname__
)
def test_inherited_and_class_docstrings_are_read_as_inspect_reads_them(obj: Any) -> None:
    assert _doc(obj) == (inspect.getdoc(obj) or "")


def test_plain_methods_and_one_line_docstrings_need_no_inspect(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast paths are the ones taken: with ``inspect`` not importable, they still answer (the others fail)."""
    docs = {name: documented(doc) for name, (doc, _) in DOCS.items()}
    expected_docs = {name: inspect.getdoc(method) or "" for name, method in docs.items()}
    expected_names = [list(inspect.signature(f).parameters) for f, _ in PARAMETERS]
    expected_class = inspect.getdoc(OneLine)
    monkeypatch.setitem(sys.modules, "inspect", None)
    for name, (_, fast) in DOCS.items():
        if fast:
            assert _doc(docs[name]) == expected_docs[name], name
        else:
            with pytest.raises(ImportError):
                _doc(docs[name])
    for (func, fast), names in zip(PARAMETERS, expected_names, strict=True):
        if fast:
            assert _parameter_names(func) == names  # type: ignore[arg-type]
        else:
            with pytest.raises(ImportError):
                _parameter_names(func)  # type: ignore[arg-type]
    assert _doc(OneLine) == expected_class


def test_fingerprints_are_sha256_whichever_module_computes_them() -> None:
    signatures = ";".join(m.signature for m in resolve_trait(Calculator).methods)
    for text in ("", "greet(CStr name) -> OwnedStr", "é" * 300, signatures):
        assert _fingerprint(text) == int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    assert PluginTrait.Greeter.spec.fingerprint == 0x276281F942385C9F  # what every built Greeter plugin carries
    assert PluginTrait.Transformer.spec.fingerprint == 0x100343B50125688B
