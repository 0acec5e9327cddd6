"""The load-time ABI check: the descriptor is read before any maker runs, a
mismatch is refused with a precise message, and the compatibility rule holds
in both directions (newer plugin / older host and the reverse)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_PLUGINS, CompilePlugin
from greeter_versions import (
    GREETER,
    GREETER_APPENDED_SAME_VERSION,
    GREETER_CHANGED,
    GREETER_V2,
    GREETER_V2_CHANGED,
    build_greeter,
)
from plugin_annotations import BuildError, generate_trait_header
from plugin_host import PluginManager, PluginTrait
from plugin_interface import (
    AbiDescriptor,
    AbiMismatchError,
    MethodNotProvidedError,
    check_descriptor,
)

HANDWRITTEN = (TEST_PLUGINS / "handwritten" / "handwritten.c").read_text()
HANDWRITTEN_DESCRIPTOR = r"""
/* A descriptor written by hand, for a plugin that lies about itself. */
#include "plugin_trait_greeter.h"
#ifndef DESC_VERSION
#  define DESC_VERSION PLUGIN_TRAIT_VERSION_Greeter
#endif
#ifndef DESC_METHODS
#  define DESC_METHODS PLUGIN_TRAIT_METHOD_COUNT_Greeter
#endif
PLUGIN_EXPORT extern const GreeterAbiDescriptor plugin_abi_descriptor_Greeter_v1;
PLUGIN_EXPORT const GreeterAbiDescriptor plugin_abi_descriptor_Greeter_v1 = {
    {(uint32_t)sizeof(GreeterAbiDescriptor), PLUGIN_ABI_VERSION, DESC_VERSION,
     (uint32_t)sizeof(PluginRegistration), (uint32_t)sizeof(GreeterVTable), DESC_METHODS,
     PLUGIN_TRAIT_FINGERPRINT_Greeter},
    {PLUGIN_TRAIT_METHOD_FINGERPRINTS_Greeter}};
"""


@pytest.fixture
def manager() -> Iterator[PluginManager]:
    with PluginManager() as m:
        yield m


# ---- refusal before any call -------------------------------------------------------------


@pytest.mark.parametrize("path", ["aggregate", "host-owned"])
def test_changed_header_is_refused_before_any_maker_runs(
    manager: PluginManager, compile_plugin: CompilePlugin, tmp_path: Path, path: str
) -> None:
    marker = tmp_path / "maker-ran"
    defines = ("NO_AGGREGATE",) if path == "host-owned" else ()
    lib = build_greeter(compile_plugin, GREETER_CHANGED, *defines, marker=marker)
    with pytest.raises(AbiMismatchError, match=r"trait Greeter: method greet \(slot 0\) signature mismatch") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    err = exc.value
    assert err.path == str(lib)
    assert err.symbol == "plugin_abi_descriptor_Greeter_v1"
    assert err.trait == "Greeter"
    assert err.field == "method greet (slot 0) signature"
    assert err.expected == "greet(CStr name) -> OwnedStr"
    assert err.found == f"0x{GREET_FINGERPRINT:016x}"
    assert str(lib) in str(err)
    assert not marker.exists(), "a maker ran although the descriptor did not match"
    assert not manager.is_loaded(lib)


GREET_FINGERPRINT = GREETER_CHANGED.methods[0].fingerprint


def test_the_same_plugin_with_the_right_header_runs_its_maker(
    manager: PluginManager, compile_plugin: CompilePlugin, tmp_path: Path
) -> None:
    """The control for the test above: the marker does prove a maker ran."""
    marker = tmp_path / "maker-ran"
    lib = build_greeter(compile_plugin, None, marker=marker)
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    assert handle.proxy("English").greet("you") == "Hello, you!"
    assert marker.exists()


def test_a_version_bump_that_changes_a_method_is_refused(manager: PluginManager, compile_plugin: CompilePlugin) -> None:
    lib = build_greeter(compile_plugin, GREETER_V2_CHANGED)
    with pytest.raises(AbiMismatchError, match="method greet") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.trait == "Greeter"


def test_methods_appended_without_a_version_bump_are_refused(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = build_greeter(compile_plugin, GREETER_APPENDED_SAME_VERSION)
    with pytest.raises(AbiMismatchError, match="without a version bump") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert (exc.value.field, exc.value.expected, exc.value.found) == ("method_count", 1, 2)


# ---- compatibility in both directions ----------------------------------------------------


def test_newer_plugin_that_appends_methods_works_in_an_older_host(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = build_greeter(compile_plugin, GREETER_V2, "WITH_FRENCH")
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)  # the host's Greeter is version 1
    assert sorted(handle.type_names) == ["English", "French"]
    assert handle.proxy("English").greet("old host") == "Hello, old host!"
    assert {r.trait_version for r in handle.registration_set.registrations} == {2}
    assert manager.unload_by_path(lib) == {"Greeter": 2}


def test_older_plugin_works_in_a_newer_host_except_the_new_methods(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = build_greeter(compile_plugin, None, "NO_AGGREGATE")  # built against version 1
    [handle] = manager.load_plugins(lib, GREETER_V2)  # this host declares version 2
    proxy = handle.proxy("English")
    assert proxy.greet("new host") == "Hello, new host!"
    assert proxy.has_method("greet") and not proxy.has_method("shout")
    with pytest.raises(MethodNotProvidedError, match="Greeter.English.shout: not provided") as exc:
        proxy.shout("new host")  # type: ignore[attr-defined]
    assert exc.value.method == "shout"
    assert exc.value.path == str(lib)


def test_newer_plugin_in_a_newer_host_calls_the_appended_method(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = build_greeter(compile_plugin, GREETER_V2)
    [handle] = manager.load_plugins(lib, GREETER_V2)
    assert handle.proxy("English").shout("you") == "HELLO, you!"  # type: ignore[attr-defined]


def test_compatibility_rule_without_loading() -> None:
    host = AbiDescriptor.for_trait(GREETER)
    newer = AbiDescriptor.for_trait(GREETER_V2)
    assert check_descriptor(host, host).status == "identical"
    forward = check_descriptor(host, newer, GREETER)
    assert (forward.status, forward.usable_methods) == ("compatible", 1)
    backward = check_descriptor(newer, host, GREETER_V2)
    assert (backward.status, backward.usable_methods) == ("compatible", 1)
    assert "lacks shout" in str(backward.differences[0])
    changed = check_descriptor(host, AbiDescriptor.for_trait(GREETER_CHANGED), GREETER)
    assert changed.status == "breaking" and changed.usable_methods == 0


# ---- plugins without a descriptor, and lying ones ---------------------------------------------


def test_handwritten_plugin_without_descriptor_still_loads(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = compile_plugin("handwritten", HANDWRITTEN)
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    assert handle.proxy("Polite").greet("sir") == "Good day, sir!"


def test_without_descriptor_another_trait_version_is_refused(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = compile_plugin("handwritten", HANDWRITTEN)
    with pytest.raises(AbiMismatchError, match="no ABI descriptor") as exc:
        manager.load_plugins(lib, GREETER_V2)
    assert (exc.value.field, exc.value.expected, exc.value.found) == ("trait_version", 2, 1)


def test_registration_that_contradicts_its_descriptor_is_refused(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = compile_plugin(
        "handwritten",
        {"handwritten.c": HANDWRITTEN, "descriptor.c": HANDWRITTEN_DESCRIPTOR},
        defines=("BAD_TRAIT_VERSION",),
    )
    with pytest.raises(AbiMismatchError, match="disagrees with plugin_abi_descriptor_Greeter_v1") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert (exc.value.field, exc.value.expected, exc.value.found) == ("trait_version", 1, 2)


def test_inconsistent_descriptor_is_a_typed_error(manager: PluginManager, compile_plugin: CompilePlugin) -> None:
    lib = compile_plugin(
        "handwritten",
        {"handwritten.c": HANDWRITTEN, "descriptor.c": HANDWRITTEN_DESCRIPTOR},
        defines=("DESC_METHODS=100000u",),
    )
    with pytest.raises(AbiMismatchError, match="method_count 100000 exceeds") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.field == "descriptor"


def test_a_header_whose_vtable_disagrees_with_its_method_count_does_not_compile(
    compile_plugin: CompilePlugin,
) -> None:
    header = generate_trait_header(GREETER).replace(
        "#define PLUGIN_TRAIT_METHOD_COUNT_Greeter 1u", "#define PLUGIN_TRAIT_METHOD_COUNT_Greeter 2u"
    )
    from greeter_versions import SOURCE

    with pytest.raises(BuildError, match="does not match its method count"):
        compile_plugin("greeter", {"greeter.c": SOURCE, "plugin_trait_greeter.h": header})
