"""Trait declarations: validation, lookup, and a user-declared trait working
end to end (declaration -> generated header -> compiled plugin -> proxy)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest
from conftest import CompilePlugin
from plugin_annotations import write_trait_headers
from plugin_host import PluginManager
from plugin_interface import (
    F64,
    I32,
    U64,
    Buffer,
    CStr,
    OwnedStr,
    PluginTrait,
    UnknownTraitError,
    declare_trait,
    declared_traits,
    resolve_trait,
)


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

    with pytest.raises(ValueError, match="already declared with a different definition"):

        @declare_trait(name="Greeter")
        class Greeter2(Protocol):
            def other(self) -> None: ...
