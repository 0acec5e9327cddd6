"""``plugin-host abi check | dump | diff`` through the CLI's main(): the
scheme analysis on real plugins (good and broken), the stable JSON, the exit
bits (1 input error, 2 usage, 4 compatible, 8 incompatible), and the diff
classification a CI job relies on.  tests/test_abi_gate.py covers the CI side:
formats, baselines, contracts, waivers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import plugin_interface._traits
import pytest
from conftest import TEST_PLUGINS, CompilePlugin
from greeter_versions import GREETER_CHANGED, GREETER_V2, build_greeter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_host.abi import LibraryAbi, diff_abi, scan_library
from plugin_host.abi._check import MAX_DUMP_BYTES
from plugin_host.cli import main
from plugin_interface import CStr, OwnedStr, declare_trait

HANDWRITTEN = (TEST_PLUGINS / "handwritten" / "handwritten.c").read_text()

#: Exports that break the scheme in every way abi check knows, in one library.
ODD_EXPORTS = r"""
#include "plugin_interface.h"
#include <stddef.h>
PLUGIN_EXPORT void *plugin_register_Greeter_Lonely_v1(void);      /* no unmaker */
PLUGIN_EXPORT void *plugin_register_Greeter_Lonely_v1(void) { return NULL; }
PLUGIN_EXPORT void *plugin_register_Greeter_Future_v2(void);      /* unknown ABI version */
PLUGIN_EXPORT void *plugin_register_Greeter_Future_v2(void) { return NULL; }
PLUGIN_EXPORT void *plugin_register_all_Greeter_v1(void);         /* no counter, no release */
PLUGIN_EXPORT void *plugin_register_all_Greeter_v1(void) { return NULL; }
PLUGIN_EXPORT void *plugin_register_Greeter_v1(void);             /* malformed: no type */
PLUGIN_EXPORT void *plugin_register_Greeter_v1(void) { return NULL; }
PLUGIN_EXPORT void plugin_unregister_Greeter_Orphan_v1(void *r);  /* unmaker without maker */
PLUGIN_EXPORT void plugin_unregister_Greeter_Orphan_v1(void *r) { (void)r; }
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    status, out, _ = run(capsys, *argv, "--json")
    return status, json.loads(out)


# ---- check ------------------------------------------------------------------------------------


def test_check_examples_is_clean(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    libs = [str(example_plugins[n]) for n in ("greeters", "host_owned", "multi_trait")]
    status, out, _ = run(capsys, "abi", "check", *libs)
    assert status == 0
    assert "library" in out and "host check" in out
    assert "English, French, Spanish" in out
    assert "3 libraries checked: 0 error(s), 0 warning(s)" in out


def test_check_json_schema(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    status, report = run_json(capsys, "abi", "check", str(example_plugins["multi_trait"]))
    assert status == 0
    assert report["schema"] == "plugin-host-abi-check/2" and report["ok"] is True
    assert (report["exit_status"], report["findings"]) == (0, [])
    [lib] = report["libraries"]
    assert lib["library"] == str(example_plugins["multi_trait"])
    assert (lib["ok"], lib["format"], lib["pointer_size"], lib["problems"]) == (True, "elf", 8, [])
    assert set(lib["traits"]) == {"Greeter", "Transformer"}
    greeter = lib["traits"]["Greeter"]
    assert greeter["types"] == ["Counting"]
    assert greeter["registrations"] == [{"type": "Counting", "abi": 1, "maker": True, "unmaker": True}]
    assert greeter["aggregate"] == {"register_all": True, "unregister_all": True, "unmaker_counter": True}
    assert greeter["compatibility"] == "identical" and greeter["differences"] == []
    assert greeter["descriptor"]["method_count"] == 1
    assert greeter["descriptor"]["fingerprint"].startswith("0x")


def test_check_host_owned_library_needs_no_aggregate(
    example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = run_json(capsys, "abi", "check", str(example_plugins["host_owned"]))
    assert status == 0
    greeter = report["libraries"][0]["traits"]["Greeter"]
    assert greeter["types"] == ["German", "Italian"]
    assert greeter["aggregate"] == {"register_all": False, "unregister_all": False, "unmaker_counter": True}


def test_check_finds_every_scheme_problem(compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]) -> None:
    lib = compile_plugin("odd", ODD_EXPORTS)
    status, report = run_json(capsys, "abi", "check", str(lib))
    assert status == 8 and report["ok"] is False
    problems = {(p["kind"], p["symbol"]) for p in report["libraries"][0]["problems"]}
    assert problems == {
        ("malformed_symbol", "plugin_register_Greeter_v1"),
        ("unknown_version", "plugin_register_Greeter_Future_v2"),
        ("missing_unmaker", "plugin_register_Greeter_Lonely_v1"),
        ("unmaker_without_maker", "plugin_unregister_Greeter_Orphan_v1"),
        ("aggregate_without_counter", "plugin_register_all_Greeter_v1"),
        ("aggregate_without_release", "plugin_register_all_Greeter_v1"),
        ("missing_descriptor", "plugin_abi_descriptor_Greeter_v1"),
    }
    status, out, _ = run(capsys, "abi", "check", str(lib))
    assert "error: " in out and "[missing_unmaker] plugin_register_Greeter_Lonely_v1: maker without its unmaker" in out


def test_check_handwritten_plugin_warns_about_the_missing_descriptor(
    compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = compile_plugin("handwritten", HANDWRITTEN)
    status, report = run_json(capsys, "abi", "check", str(lib))
    assert status == 0  # a warning does not fail the check
    [problem] = report["libraries"][0]["problems"]
    assert (problem["severity"], problem["kind"]) == ("warning", "missing_descriptor")
    assert report["libraries"][0]["traits"]["Greeter"]["compatibility"] == "unchecked"


#: A descriptor in zero-initialised data (.bss): exported, but not stored in the file.
BSS_DESCRIPTOR = r"""
#include "plugin_interface.h"
PLUGIN_EXPORT void *plugin_register_Greeter_Zero_v1(void);
PLUGIN_EXPORT void *plugin_register_Greeter_Zero_v1(void) { return 0; }
PLUGIN_EXPORT void plugin_unregister_Greeter_Zero_v1(void *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_Zero_v1(void *r) { (void)r; }
PLUGIN_EXPORT unsigned char plugin_abi_descriptor_Greeter_v1[64];
unsigned char plugin_abi_descriptor_Greeter_v1[64];
"""


def test_check_says_why_a_descriptor_is_unreadable(
    compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = run_json(capsys, "abi", "check", str(compile_plugin("bss", BSS_DESCRIPTOR)))
    assert status == 8
    [problem] = report["libraries"][0]["problems"]
    assert (problem["kind"], problem["symbol"]) == ("descriptor_unreadable", "plugin_abi_descriptor_Greeter_v1")
    assert problem["message"].startswith("plugin_abi_descriptor_Greeter_v1: plugin_abi_descriptor_Greeter_v1 at 0x")
    assert problem["message"].endswith("is not stored in the file")


def test_check_reports_a_descriptor_mismatch(compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]) -> None:
    lib = build_greeter(compile_plugin, GREETER_CHANGED)
    status, report = run_json(capsys, "abi", "check", str(lib))
    assert status == 8
    method, descriptor = report["libraries"][0]["problems"]
    assert descriptor["kind"] == "descriptor_mismatch" and descriptor["trait"] == "Greeter"
    assert "method greet (slot 0) signature" in descriptor["message"]
    # The embedded declaration names the method and what changed in it.
    assert method["kind"] == "method_mismatch" and method["symbol"] == "plugin_trait_declaration_Greeter_v1"
    assert method["message"] == (
        "`Greeter.greet` (method 0): parameter 2 `times` (I32) added in the plugin (the host declares "
        "greet(CStr name) -> OwnedStr; the plugin has greet(CStr name, I32 times) -> OwnedStr)"
    )
    assert method["method"] == "greet"
    assert report["libraries"][0]["traits"]["Greeter"]["compatibility"] == "breaking"


def test_check_accepts_a_compatible_newer_plugin(
    compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = run_json(capsys, "abi", "check", str(build_greeter(compile_plugin, GREETER_V2)))
    assert status == 4  # a compatible difference is a change: exit bit 4
    greeter = report["libraries"][0]["traits"]["Greeter"]
    assert greeter["compatibility"] == "compatible"
    assert "newer plugin appends 1 method" in greeter["differences"][0]


def test_check_trait_filter_and_directory(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    status, report = run_json(capsys, "abi", "check", str(example_plugins["multi_trait"]), "--trait", "Transformer")
    assert status == 0
    assert list(report["libraries"][0]["traits"]) == ["Transformer"]
    status, report = run_json(capsys, "abi", "check", str(example_plugins["greeters"]), "--trait", "Transformer")
    assert status == 8
    assert report["libraries"][0]["problems"][0]["kind"] == "no_plugin"
    status, report = run_json(capsys, "abi", "check", str(example_plugins["greeters"].parent), "--trait", "Greeter")
    assert {Path(lib["library"]).name for lib in report["libraries"]} >= {"libgreeters.so", "libhost_owned.so"}


def known_traits(err: str, asked: str) -> set[str]:
    """The known traits of an ``unknown trait`` usage error about ``asked`` (which must not be one of them)."""
    prefix = f"error: unknown trait {asked!r}; known traits: "
    assert err.startswith(prefix), err
    known = set(err.removeprefix(prefix).strip().split(", "))
    assert asked not in known
    return known


def test_check_trait_at_version_checks_that_version(
    example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--trait Name@N`` is the host's version N of the trait, not a name no library exports."""
    for asked in ("Greeter@1", "Greeter@v1"):
        status, report = run_json(capsys, "abi", "check", str(example_plugins["greeters"]), "--trait", asked)
        assert status == 0, report
        [library] = report["libraries"]
        assert library["problems"] == []
        assert list(library["traits"]) == ["Greeter"]
        assert library["traits"]["Greeter"]["compatibility"] == "identical"


def test_check_trait_at_an_unknown_version_is_a_usage_error(
    example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """No host declaration and no library checked has version 3: a typo, refused like an unknown name."""
    status, out, err = run(capsys, "abi", "check", str(example_plugins["greeters"]), "--trait", "Greeter@3")
    assert status == 2 and out == ""
    assert {"Greeter@1", "Transformer@1"} <= known_traits(err, "Greeter@3")  # (other tests declare more)


def test_check_trait_at_an_older_declared_version(
    example_plugins: dict[str, Path],
    compile_plugin: CompilePlugin,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With Greeter v1 and v2 declared, ``Greeter`` is v2 (the latest) and ``Greeter@1`` is v1."""
    monkeypatch.setattr(plugin_interface._traits, "_REGISTRY", dict(plugin_interface._traits._REGISTRY))

    @declare_trait(version=2, name="Greeter")
    class GreeterV2(Protocol):
        def greet(self, name: CStr) -> OwnedStr: ...
        def shout(self, name: CStr) -> OwnedStr: ...

    assert GreeterV2.__plugin_trait__ == GREETER_V2  # type: ignore[attr-defined]
    v1, v2 = str(example_plugins["greeters"]), str(build_greeter(compile_plugin, GREETER_V2))
    for lib, asked, expected in [
        (v1, "Greeter", ("compatible", 4)),  # an older plugin than the host's v2
        (v1, "Greeter@1", ("identical", 0)),
        (v2, "Greeter@2", ("identical", 0)),
        (v2, "Greeter@1", ("compatible", 4)),  # a newer plugin than the host's v1
    ]:
        status, report = run_json(capsys, "abi", "check", lib, "--trait", asked)
        assert (report["libraries"][0]["traits"]["Greeter"]["compatibility"], status) == expected, (lib, asked)


def test_check_trait_at_a_version_only_the_plugin_declares(
    compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    """The host declares Greeter v1 only: ``Greeter@2`` means each file's own declaration of version 2."""
    v2 = str(build_greeter(compile_plugin, GREETER_V2))
    status, report = run_json(capsys, "abi", "check", v2, "--trait", "Greeter@2")
    assert status == 0, report
    assert report["libraries"][0]["traits"]["Greeter"]["declaration"]["version"] == 2
    assert report["libraries"][0]["traits"]["Greeter"]["compatibility"] == "identical"
    status, _, err = run(capsys, "abi", "check", v2, "--trait", "Greeter@3")
    assert status == 2 and {"Greeter@1", "Greeter@2", "Transformer@1"} <= known_traits(err, "Greeter@3")


def test_check_not_a_library_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "libtext.so"
    text.write_text("not a library\n")
    status, report = run_json(capsys, "abi", "check", str(text))
    assert status == 1
    [problem] = report["libraries"][0]["problems"]
    assert problem["kind"] == "not_a_library"
    assert problem["message"].startswith("not a loadable shared library: unrecognised file format (starts with b'not ")
    status, _, err = run(capsys, "abi", "check", str(tmp_path / "missing.so"))
    assert status == 2 and "no such file" in err
    status, _, err = run(capsys, "abi", "check", str(text), "--trait", "NoSuchTrait")
    assert status == 2 and "unknown trait 'NoSuchTrait'" in err
    with pytest.raises(SystemExit) as exc:
        main(["abi", "check"])
    assert exc.value.code == 2


# ---- dump and diff ----------------------------------------------------------------------------------


def dump(capsys: pytest.CaptureFixture[str], lib: Path, out: Path) -> Path:
    status, text, _ = run(capsys, "abi", "dump", str(lib))
    assert status == 0
    out.write_text(text)
    return out


def test_dump_round_trips_through_diff(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = dump(capsys, example_plugins["greeters"], tmp_path / "greeters.abi.json")
    data = json.loads(saved.read_text())
    assert data["schema"] == "plugin-host-abi/1" and data["abi_version"] == 1
    assert data["traits"]["Greeter"]["types"] == ["English", "French", "Spanish"]
    status, out, _ = run(capsys, "abi", "diff", str(saved), str(example_plugins["greeters"]))
    assert status == 0 and "no change to the exported ABI" in out
    status, report = run_json(capsys, "abi", "diff", str(saved), str(saved))
    assert report == {
        "schema": "plugin-host-abi-diff/2",
        "old": str(saved),
        "new": str(saved),
        "breaking": False,
        "changes": [],
        "libraries": [{"library": str(saved), "status": "unchanged", "breaking": False, "changes": []}],
        "exit_status": 0,
        "findings": [],
    }


def test_dump_to_a_file(example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.abi.json"
    assert main(["abi", "dump", str(example_plugins["greeters"]), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["schema"] == "plugin-host-abi/1"


def changes(report: Any) -> set[tuple[str, str]]:
    return {(c["kind"], c["classification"]) for c in report["changes"]}


def test_diff_removed_impl_is_breaking_added_impl_is_compatible(
    compile_plugin: CompilePlugin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = build_greeter(compile_plugin, None, "WITH_FRENCH")
    english = build_greeter(compile_plugin, None)
    status, report = run_json(capsys, "abi", "diff", str(both), str(english))
    assert status == 8 and report["breaking"] is True
    [removed] = report["changes"]
    assert (removed["kind"], removed["classification"], removed["trait"], removed["type"]) == (
        "registration_removed",
        "breaking",
        "Greeter",
        "French",
    )
    status, report = run_json(capsys, "abi", "diff", str(english), str(both))
    assert status == 4 and report["breaking"] is False
    assert changes(report) == {("registration_added", "compatible")}
    status, out, _ = run(capsys, "abi", "diff", str(both), str(english))
    assert "registration_removed  breaking" in out and "1 breaking change(s)" in out


def test_diff_changed_signature_is_breaking(
    compile_plugin: CompilePlugin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = dump(capsys, build_greeter(compile_plugin, None), tmp_path / "old.abi.json")
    new = build_greeter(compile_plugin, GREETER_CHANGED)
    status, report = run_json(capsys, "abi", "diff", str(old), str(new))
    assert status == 8
    # The method change names the method, the parameter and both builds; the descriptor's own view of the
    # same slot is not repeated (the declarations say more), only the method count it also changed.
    assert changes(report) == {("method_changed", "breaking")}
    [method] = [c for c in report["changes"] if c["kind"] == "method_changed"]
    assert method["message"] == (
        "`Greeter.greet` (slot 0) changed: parameter 2 `times` (I32) added; "
        "old build: greet(CStr name) -> OwnedStr; new build: greet(CStr name, I32 times) -> OwnedStr"
    )
    assert "host" not in method["message"] and "plugin" not in method["message"]
    assert (method["old"], method["new"]) == ("greet(CStr name) -> OwnedStr", "greet(CStr name, I32 times) -> OwnedStr")
    assert method["method"] == "greet"


def test_diff_appended_method_with_version_bump_is_compatible(
    compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    old = build_greeter(compile_plugin, None)
    new = build_greeter(compile_plugin, GREETER_V2)
    status, report = run_json(capsys, "abi", "diff", str(old), str(new))
    assert status == 4
    assert changes(report) == {("descriptor_changed", "compatible"), ("method_added", "compatible")}
    [change] = [c for c in report["changes"] if c["kind"] == "descriptor_changed"]
    assert (change["old"], change["new"]) == (1, 2)
    assert change["message"].startswith("Greeter: trait_version: old build has 1, new build has 2: compatible")
    [added] = [c for c in report["changes"] if c["kind"] == "method_added"]
    assert added["message"] == "`Greeter.shout` added in the new build (slot 1): shout(CStr name) -> OwnedStr"
    assert added["method"] == "shout"
    # The other way round, a release drops a method: loadable, but its callers break.
    status, report = run_json(capsys, "abi", "diff", str(new), str(old))
    assert status == 8
    assert changes(report) == {("descriptor_changed", "breaking"), ("method_removed", "breaking")}
    assert any("must not drop methods" in c["message"] for c in report["changes"])
    [removed] = [c for c in report["changes"] if c["kind"] == "method_removed"]
    assert removed["message"] == (
        "`Greeter.shout` removed: the old build has shout(CStr name) -> OwnedStr (slot 1), the new build does not; "
        "hosts that call it break"
    )


def test_diff_version_bump_and_removed_symbols(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = dump(capsys, example_plugins["greeters"], tmp_path / "old.abi.json")
    bumped = json.loads(old.read_text())
    greeter = bumped["traits"]["Greeter"]
    greeter["symbols"] = [s.replace("_v1", "_v2") if "English" in s else s for s in greeter["symbols"]]
    greeter["symbols"].remove("plugin_unregister_all_Greeter_v1")
    new = tmp_path / "new.abi.json"
    new.write_text(json.dumps(bumped))
    status, report = run_json(capsys, "abi", "diff", str(old), str(new))
    assert status == 8
    assert changes(report) == {("version_bump", "breaking"), ("symbol_removed", "breaking")}


def test_diff_trait_added_and_removed(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    greeters, multi = str(example_plugins["greeters"]), str(example_plugins["multi_trait"])
    status, report = run_json(capsys, "abi", "diff", greeters, multi)
    assert ("trait_added", "compatible") in changes(report)
    status, report = run_json(capsys, "abi", "diff", multi, greeters)
    assert status & 8 and ("trait_removed", "breaking") in changes(report)


def test_diff_usage_errors(
    tmp_path: Path, example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    lib = str(example_plugins["greeters"])
    status, _, err = run(capsys, "abi", "diff", str(tmp_path / "missing.json"), lib)
    assert status == 2 and "no such file" in err
    bad = tmp_path / "bad.abi.json"
    # A bad dump is an input error (1), not a usage error: the command line was right.
    bad.write_text('{"schema": "something-else"}')
    status, _, err = run(capsys, "abi", "diff", str(bad), lib)
    assert status == 1 and "not a plugin-host ABI dump or baseline" in err
    bad.write_text("{ not json")
    status, _, err = run(capsys, "abi", "diff", str(bad), lib)
    assert status == 1 and "not valid JSON" in err


# ---- hostile dumps: every malformed dump is a usage error naming the file, never a traceback ----------------------


def _greeter_dump(lib: Path) -> dict[str, Any]:
    return scan_library(lib).to_json()


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A mutation of a dump: ``path`` is "a/b/0/c" through its objects and lists."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[int(last) if isinstance(target, list) else last]
        else:
            target[int(last) if isinstance(target, list) else last] = value

    return mutate


_DELETE = object()
_DESCRIPTOR = "traits/Greeter/descriptor"
#: (mutation, what the message must say): each was a traceback or a silent mis-read before.
BAD_DUMPS = {
    "negative method_count": (_set(f"{_DESCRIPTOR}/method_count", -1), "method_count must be an integer"),
    "fewer fingerprints than method_count": (
        _set(f"{_DESCRIPTOR}/method_fingerprints", []),
        "method_count 1 but 0 method fingerprint(s)",
    ),
    "more fingerprints than method_count": (
        _set(f"{_DESCRIPTOR}/method_count", 0),
        "method_count 0 but 1 method fingerprint(s)",
    ),
    "absurd method_count": (_set(f"{_DESCRIPTOR}/method_count", 1 << 31), "method_count 2147483648 but 1"),
    "too many methods": (
        lambda d: d["traits"]["Greeter"]["descriptor"].update(method_count=5000, method_fingerprints=["0x1"] * 5000),
        "method_count 5000 exceeds 4096",
    ),
    "struct_size too small": (_set(f"{_DESCRIPTOR}/struct_size", 8), "struct_size 8 is too small"),
    "method_count a string": (_set(f"{_DESCRIPTOR}/method_count", "1"), "method_count must be an integer"),
    "method_count true": (_set(f"{_DESCRIPTOR}/method_count", True), "method_count must be an integer"),
    "missing trait_version": (_set(f"{_DESCRIPTOR}/trait_version", _DELETE), "trait_version must be an integer"),
    "fingerprint not hex": (_set(f"{_DESCRIPTOR}/fingerprint", "0xnothex"), "fingerprint must be a 0x-prefixed"),
    "fingerprint over 64 bits": (_set(f"{_DESCRIPTOR}/fingerprint", "0x" + "f" * 17), "64-bit hex"),
    "method fingerprint a number": (
        _set(f"{_DESCRIPTOR}/method_fingerprints/0", 12),
        "method_fingerprints[0] must be",
    ),
    "descriptor a list": (_set(_DESCRIPTOR, [1, 2]), "not an object"),
    "pointer_size infinite": (_set("pointer_size", float("inf")), "pointer_size must be 4 or 8"),
    "pointer_size zero": (_set("pointer_size", 0), "pointer_size must be 4 or 8"),
    "library nested": (_set("library", [[[]]]), "library, format and machine must be strings"),
    "unknown format": (_set("format", "coff"), "format must be one of elf, pe, macho"),
    "traits a list": (_set("traits", []), "traits must be an object"),
    "trait not an object": (_set("traits/Greeter", "x"), "trait Greeter: must be an object"),
    "trait name with a space": (
        lambda d: d["traits"].update({"Gr eeter": d["traits"].pop("Greeter")}),
        "not a trait name",
    ),
    "symbol not a string": (_set("traits/Greeter/symbols/0", 7), "symbols must be a list of strings"),
    "symbol of another trait": (
        _set("traits/Greeter/symbols/0", "plugin_register_Transformer_X_v1"),
        "is not one of its symbols",
    ),
    "_vN beyond int()": (
        _set("traits/Greeter/symbols/0", "plugin_register_all_Greeter_v" + "1" * 5000),
        "is not one of its symbols",
    ),
    "descriptor_error a number": (_set("traits/Greeter/descriptor_error", 3), "descriptor_error must be"),
    "malformed a string": (_set("malformed", "abc"), "malformed must be a list of strings"),
}


@pytest.mark.parametrize("case", BAD_DUMPS, ids=list(BAD_DUMPS))
def test_diff_refuses_a_malformed_dump(
    case: str, example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, expected = BAD_DUMPS[case]
    data = _greeter_dump(example_plugins["greeters"])
    mutate(data)
    bad = tmp_path / "bad.abi.json"
    bad.write_text(json.dumps(data))  # Infinity, as Python's json writes and reads it
    good = str(example_plugins["greeters"])
    for argv in (["abi", "diff", str(bad), good], ["abi", "diff", good, str(bad), "--json"]):
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == ""
        assert err.startswith(f"error: {bad}: malformed ABI dump: ") and expected in err, err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"schema": "plugin-host-abi/1", "traits": ' + "[" * 100_000, "not valid JSON: nested too deeply"),
        ('{"schema": "plugin-host-abi/1", "pointer_size": ' + "9" * 5000 + "}", "not valid JSON: Exceeds the limit"),
        ('{"schema": "plugin-host-abi/1", "traits": {"Gree', "not valid JSON: Unterminated string"),
        (b'{"schema": "\xff"}', "not valid JSON: 'utf-8' codec can't decode"),
    ],
    ids=["deep nesting", "5000-digit integer", "truncated", "not UTF-8"],
)
def test_diff_refuses_invalid_json(
    text: str | bytes,
    expected: str,
    example_plugins: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.abi.json"
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    status, _, err = run(capsys, "abi", "diff", str(bad), str(example_plugins["greeters"]))
    assert status == 1 and err.startswith(f"error: {bad}: ") and expected in err, err


def test_diff_refuses_a_huge_dump_unread(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge.abi.json"
    with huge.open("wb") as f:  # sparse: costs no disk
        f.write(b"{")
        f.truncate(MAX_DUMP_BYTES + 1)
    status, _, err = run(capsys, "abi", "diff", str(huge), str(example_plugins["greeters"]))
    assert status == 1 and f"{huge}: {MAX_DUMP_BYTES + 1} bytes is too large for an ABI dump" in err


def test_diff_of_accepted_dumps_never_fails(example_plugins: dict[str, Path]) -> None:
    """Any dump ``from_json`` accepts can be diffed against any other: the validation is complete."""
    base = _greeter_dump(example_plugins["greeters"])
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner))
    fields = [
        "pointer_size",
        "format",
        "malformed",
        *(f"{_DESCRIPTOR}/{f}" for f in ("struct_size", "vtable_size", "method_count", "trait_version")),
        *(f"{_DESCRIPTOR}/{f}" for f in ("registration_size", "abi_version", "fingerprint", "method_fingerprints")),
        "traits/Greeter/symbols",
    ]
    small_ints = st.integers(0, 64)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(fields), values | small_ints), max_size=4), st.booleans())
    def check(mutations: list[tuple[str, object]], old_first: bool) -> None:
        data = json.loads(json.dumps(base))
        for path, value in mutations:
            _set(path, value)(data)
        try:
            mutated = LibraryAbi.from_json(data, "mutated")
        except ValueError:
            return
        original = LibraryAbi.from_json(base, "base")
        pair = (mutated, original) if old_first else (original, mutated)
        for change in diff_abi(*pair):
            json.dumps(change.to_json())

    check()


# ---- check --probe ------------------------------------------------------------------------------------------------

#: A Greeter whose second type's maker misbehaves per define: MAKER_SEGFAULT, MAKER_EXIT (exit(4)), MAKER_HANG.
MAKER_CRASH = r"""
/* maker_crash.c -- a good Greeter (Fine) and one (Bad) whose maker crashes, exits or hangs. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *say(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Fine, %s!", name);
}

static void *bad_new(void) {
#if defined(MAKER_SEGFAULT)
    raise(SIGSEGV);
#elif defined(MAKER_EXIT)
    exit(4);
#elif defined(MAKER_HANG)
    for (;;) pause();
#endif
    return malloc(1);
}

static void bad_free(void *instance) { free(instance); }

PLUGIN_IMPL(Greeter, Fine, .greet = say)
PLUGIN_IMPL_WITH_STATE(Greeter, Bad, bad_new, bad_free, .greet = say)
PLUGIN_UNMAKER_COUNTER(Greeter)
"""


@pytest.mark.parametrize(
    ("define", "kind", "status", "message", "timeout"),
    [
        ("MAKER_SEGFAULT", "probe_crashed", "crashed", "crashed with SIGSEGV (signal 11)", "10"),
        ("MAKER_EXIT", "probe_exited", "exited", "the process exited with status 4", "10"),
        ("MAKER_HANG", "probe_timeout", "timeout", "no answer within 1 s (killed)", "1"),
    ],
)
def test_check_probe_reports_a_maker_that_crashes_exits_or_hangs(
    define: str,
    kind: str,
    status: str,
    message: str,
    timeout: str,
    compile_plugin: CompilePlugin,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lib = compile_plugin("maker_crash", MAKER_CRASH, defines=(define,))
    # The static check sees nothing wrong: only running the maker shows it.
    assert run(capsys, "abi", "check", str(lib))[0] == 0
    code, report = run_json(capsys, "abi", "check", str(lib), "--probe", "--probe-timeout", timeout)
    assert code == 8 and report["ok"] is False
    [entry] = report["libraries"]
    assert entry["probe"] == {"status": status, "made": 0}
    [problem] = entry["problems"]
    assert (problem["severity"], problem["kind"]) == ("error", kind)
    assert problem["message"].startswith(f"isolated probe: {message} during ")
    if define != "MAKER_HANG":  # where a timeout strikes depends on the machine's speed
        # The step the probe names: the stage of the registration pipeline that ran the maker.
        assert problem["symbol"].startswith("plugin_register_")
        assert problem["message"].startswith(f"isolated probe: {message} during {problem['symbol']}")
    code, out, err = run(capsys, "abi", "check", str(lib), "--probe", "--probe-timeout", timeout)
    assert code == 8 and err == ""
    assert f"error: {lib}: [{kind}] isolated probe: {message}" in out
    assert "1 library checked: 1 error(s), 0 warning(s)" in out


def test_check_probe_of_good_and_safely_failing_plugins(
    example_plugins: dict[str, Path], test_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good, null_maker = example_plugins["greeters"], test_plugins["null_maker"]
    code, report = run_json(capsys, "abi", "check", str(good), str(null_maker), "--probe")
    assert code == 8
    clean, failed = report["libraries"]
    assert (clean["ok"], clean["probe"], clean["problems"]) == (True, {"status": "clean", "made": 3}, [])
    assert failed["probe"]["status"] == "failed"
    [problem] = failed["problems"]
    assert problem["kind"] == "probe_failed" and "plugin_register_all_Greeter_v1 returned NULL" in problem["message"]
    code, out, _ = run(capsys, "abi", "check", str(good), "--probe")
    assert code == 0 and "clean (3 made)" in out.splitlines()[2]
    # Without --probe nothing runs and the JSON has no probe entry.
    code, report = run_json(capsys, "abi", "check", str(good))
    assert code == 0 and "probe" not in report["libraries"][0]


def test_check_probe_skips_what_this_host_cannot_load(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "libother.so"
    data = bytearray(example_plugins["greeters"].read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine: aarch64 (the export table still reads)
    other.write_bytes(bytes(data))
    code, report = run_json(capsys, "abi", "check", str(other), "--probe")
    [entry] = report["libraries"]
    assert code == 0 and entry["probe"] == {"status": "skipped", "made": 0}
    [problem] = entry["problems"]
    assert (problem["severity"], problem["kind"]) == ("warning", "probe_skipped")
    assert "built for aarch64" in problem["message"]


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "1e9", "soon"])
def test_check_probe_timeout_must_be_sensible(timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["abi", "check", "x.so", "--probe", "--probe-timeout", timeout])
    assert exc.value.code == 2 and "--probe-timeout" in capsys.readouterr().err


def test_dump_output_that_cannot_be_written(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = str(example_plugins["greeters"])
    missing = tmp_path / "no" / "such" / "folder" / "x.abi.json"
    for output, reason in [(missing, "No such file or directory"), (tmp_path, "Is a directory")]:
        status, out, err = run(capsys, "abi", "dump", lib, "-o", str(output))
        assert (status, out) == (2, "")
        assert err == f"error: {output}: cannot write the output: {reason}\n"
    assert not missing.parent.exists()


def test_diff_inputs_that_are_not_regular_files(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = str(example_plugins["greeters"])
    empty = tmp_path / "empty"
    empty.mkdir()
    # A folder is a build to compare (a baseline's other side): from nothing, one library was added.
    status, out, _ = run(capsys, "abi", "diff", str(empty), lib)
    assert status == 4 and "library_added" in out
    status, _, err = run(capsys, "abi", "diff", lib, "/dev/null")
    assert status == 1
    assert err == (
        "error: /dev/null: not a loadable shared library: it is not a regular file (a device, FIFO or socket)\n"
    )
