"""``plugin-host abi check | dump | diff`` through the CLI's main(): the
scheme analysis on real plugins (good and broken), the stable JSON, the exit
codes, and the diff classification a CI job relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_PLUGINS, CompilePlugin
from greeter_versions import GREETER_CHANGED, GREETER_V2, build_greeter
from plugin_host.cli import main

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
    assert report["schema"] == "plugin-host-abi-check/1" and report["ok"] is True
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
    assert status == 1 and report["ok"] is False
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


def test_check_reports_a_descriptor_mismatch(compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]) -> None:
    lib = build_greeter(compile_plugin, GREETER_CHANGED)
    status, report = run_json(capsys, "abi", "check", str(lib))
    assert status == 1
    [problem] = report["libraries"][0]["problems"]
    assert problem["kind"] == "descriptor_mismatch" and problem["trait"] == "Greeter"
    assert "method greet (slot 0) signature" in problem["message"]
    assert report["libraries"][0]["traits"]["Greeter"]["compatibility"] == "breaking"


def test_check_accepts_a_compatible_newer_plugin(
    compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = run_json(capsys, "abi", "check", str(build_greeter(compile_plugin, GREETER_V2)))
    assert status == 0
    greeter = report["libraries"][0]["traits"]["Greeter"]
    assert greeter["compatibility"] == "compatible"
    assert "newer plugin appends 1 method" in greeter["differences"][0]


def test_check_trait_filter_and_directory(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    status, report = run_json(capsys, "abi", "check", str(example_plugins["multi_trait"]), "--trait", "Transformer")
    assert status == 0
    assert list(report["libraries"][0]["traits"]) == ["Transformer"]
    status, report = run_json(capsys, "abi", "check", str(example_plugins["greeters"]), "--trait", "Transformer")
    assert status == 1
    assert report["libraries"][0]["problems"][0]["kind"] == "no_plugin"
    status, report = run_json(capsys, "abi", "check", str(example_plugins["greeters"].parent), "--trait", "Greeter")
    assert {Path(lib["library"]).name for lib in report["libraries"]} >= {"libgreeters.so", "libhost_owned.so"}


def test_check_not_a_library_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "libtext.so"
    text.write_text("not a library\n")
    status, report = run_json(capsys, "abi", "check", str(text))
    assert status == 1
    assert report["libraries"][0]["problems"][0]["kind"] == "not_a_library"
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
        "schema": "plugin-host-abi-diff/1",
        "old": str(saved),
        "new": str(saved),
        "breaking": False,
        "changes": [],
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
    assert status == 1 and report["breaking"] is True
    [removed] = report["changes"]
    assert (removed["kind"], removed["classification"], removed["trait"], removed["type"]) == (
        "registration_removed",
        "breaking",
        "Greeter",
        "French",
    )
    status, report = run_json(capsys, "abi", "diff", str(english), str(both))
    assert status == 0 and report["breaking"] is False
    assert changes(report) == {("registration_added", "compatible")}
    status, out, _ = run(capsys, "abi", "diff", str(both), str(english))
    assert "registration_removed  breaking" in out and "1 breaking change(s)" in out


def test_diff_changed_signature_is_breaking(
    compile_plugin: CompilePlugin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = dump(capsys, build_greeter(compile_plugin, None), tmp_path / "old.abi.json")
    new = build_greeter(compile_plugin, GREETER_CHANGED)
    status, report = run_json(capsys, "abi", "diff", str(old), str(new))
    assert status == 1
    assert changes(report) == {("descriptor_changed", "breaking")}
    assert "greet(CStr name) -> OwnedStr" in report["changes"][0]["message"]


def test_diff_appended_method_with_version_bump_is_compatible(
    compile_plugin: CompilePlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    old = build_greeter(compile_plugin, None)
    new = build_greeter(compile_plugin, GREETER_V2)
    status, report = run_json(capsys, "abi", "diff", str(old), str(new))
    assert status == 0
    assert changes(report) == {("descriptor_changed", "compatible")}
    [change] = report["changes"]
    assert (change["old"], change["new"]) == (1, 2)
    # The other way round, a release drops a method: loadable, but its callers break.
    status, report = run_json(capsys, "abi", "diff", str(new), str(old))
    assert status == 1
    assert changes(report) == {("descriptor_changed", "breaking")}
    assert "must not drop methods" in report["changes"][0]["message"]


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
    assert status == 1
    assert changes(report) == {("version_bump", "breaking"), ("symbol_removed", "breaking")}


def test_diff_trait_added_and_removed(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    greeters, multi = str(example_plugins["greeters"]), str(example_plugins["multi_trait"])
    status, report = run_json(capsys, "abi", "diff", greeters, multi)
    assert ("trait_added", "compatible") in changes(report)
    status, report = run_json(capsys, "abi", "diff", multi, greeters)
    assert status == 1 and ("trait_removed", "breaking") in changes(report)


def test_diff_usage_errors(
    tmp_path: Path, example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    lib = str(example_plugins["greeters"])
    status, _, err = run(capsys, "abi", "diff", str(tmp_path / "missing.json"), lib)
    assert status == 2 and "no such file" in err
    bad = tmp_path / "bad.abi.json"
    bad.write_text('{"schema": "something-else"}')
    status, _, err = run(capsys, "abi", "diff", str(bad), lib)
    assert status == 2 and "not a plugin-host ABI dump" in err
    bad.write_text("{ not json")
    status, _, err = run(capsys, "abi", "diff", str(bad), lib)
    assert status == 2 and "not valid JSON" in err
