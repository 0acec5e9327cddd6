"""The ABI gate a CI system speaks: exit bits, formats, baselines, host contracts, waivers.

Every exit bit on real built plugin variants (built once for the module):
identical, appended method, removed method, changed parameter, trait and ABI
version bumps, removed implementation, a file that is not a library, a
corrupt dump.  SARIF is validated against the published SARIF 2.1.0 schema
(tests/data/), JUnit is read back with junitparser, and the contract matrix
is checked for plugins built against versions 1, 2 and 3 of a trait.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import CompilePlugin
from greeter_versions import (
    GREETER,
    GREETER_CHANGED,
    GREETER_V2,
    GREETER_V2_SAME_METHODS,
    GREETER_V3,
    build_greeter,
)
from junitparser import Error, Failure, JUnitXml
from plugin_host.abi import HostContract, load_waivers
from plugin_host.cli import main
from plugin_interface import ABI_VERSION

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())

#: A Greeter of a future ABI: its one implementation exported as _v2 only.
ABI_V2 = r"""
#include "plugin_interface.h"
#include <stddef.h>
PLUGIN_EXPORT void *plugin_register_Greeter_English_v2(void);
PLUGIN_EXPORT void *plugin_register_Greeter_English_v2(void) { return NULL; }
PLUGIN_EXPORT void plugin_unregister_Greeter_English_v2(void *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_English_v2(void *r) { (void)r; }
"""


@pytest.fixture(scope="module")
def variants(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each variant of one Greeter plugin, built once for the module (a corrupt dump and a text file too)."""
    built = {
        "base": build_greeter(compile_plugin, None, "WITH_FRENCH"),
        "rebuilt": build_greeter(compile_plugin, None, "WITH_FRENCH"),
        "appended": build_greeter(compile_plugin, GREETER_V2, "WITH_FRENCH"),
        "changed": build_greeter(compile_plugin, GREETER_CHANGED, "WITH_FRENCH"),
        "trait_bumped": build_greeter(compile_plugin, GREETER_V2_SAME_METHODS, "WITH_FRENCH"),
        "english_only": build_greeter(compile_plugin, None),
        "abi_bumped": compile_plugin("abi_v2", ABI_V2),
        "v1": build_greeter(compile_plugin, GREETER),
        "v2": build_greeter(compile_plugin, GREETER_V2),
        "v3": build_greeter(compile_plugin, GREETER_V3),
    }
    other = tmp_path_factory.mktemp("files")
    built["text"] = other / "libtext.so"
    built["text"].write_text("not a library\n")
    built["corrupt_dump"] = other / "corrupt.abi.json"
    built["corrupt_dump"].write_text('{"schema": "plugin-host-abi/1", "traits": {"Greeter": 3}}')
    return built


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    status, out, _ = run(capsys, *argv, "--format", "json")
    return status, json.loads(out)


def kinds(report: Any) -> set[tuple[str, str]]:
    return {(f["kind"], f["effect"]) for f in report["findings"]}


# ---- exit bits on real variants ----------------------------------------------------------------------------------

DIFF_CASES = [
    # (old, new, exit status, findings as (kind, effect))
    ("base", "rebuilt", 0, set()),
    ("base", "appended", 4, {("method_added", "change"), ("descriptor_changed", "change")}),
    ("appended", "base", 8, {("method_removed", "incompatible"), ("descriptor_changed", "incompatible")}),
    ("base", "changed", 8, {("method_changed", "incompatible")}),
    ("base", "trait_bumped", 4, {("descriptor_changed", "change")}),
    ("base", "english_only", 8, {("registration_removed", "incompatible")}),
    ("english_only", "base", 4, {("registration_added", "change")}),
]


@pytest.mark.parametrize(("old", "new", "status", "found"), DIFF_CASES, ids=[f"{o}->{n}" for o, n, *_ in DIFF_CASES])
def test_diff_exit_bits(
    variants: dict[str, Path], capsys: pytest.CaptureFixture[str], old: str, new: str, status: int, found: set[Any]
) -> None:
    code, report = run_json(capsys, "abi", "diff", str(variants[old]), str(variants[new]))
    assert (code, report["exit_status"]) == (status, status)
    assert kinds(report) == found
    # The usual CI policy: only incompatible changes fail.
    assert main(["abi", "diff", str(variants[old]), str(variants[new]), "--fail-on", "incompatible"]) == status & ~4
    capsys.readouterr()


def test_diff_of_an_abi_version_bump_is_incompatible(
    variants: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "abi", "diff", str(variants["english_only"]), str(variants["abi_bumped"]))
    assert code == 8 | 4  # the bump is incompatible; losing the descriptor (hosts still load it) a compatible change
    assert ("descriptor_removed", "change") in kinds(report)
    [bump] = [c for c in report["changes"] if c["kind"] == "version_bump"]
    assert (bump["type"], bump["old"], bump["new"]) == ("English", [1], [2])


def test_check_exit_bits(variants: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "abi", "check", str(variants["base"]))[0] == 0
    code, report = run_json(capsys, "abi", "check", str(variants["appended"]))
    assert code == 4 and kinds(report) == {("compatible_difference", "change")}
    code, report = run_json(capsys, "abi", "check", str(variants["changed"]))
    assert code == 8 and ("method_mismatch", "incompatible") in kinds(report)
    code, report = run_json(capsys, "abi", "check", str(variants["abi_bumped"]))
    assert code == 8 and ("unknown_version", "incompatible") in kinds(report)
    code, report = run_json(capsys, "abi", "check", str(variants["text"]))
    assert code == 1 and kinds(report) == {("not_a_library", "error")}
    # Bits combine: an input error and an incompatible library in one run.
    assert main(["abi", "check", str(variants["text"]), str(variants["changed"])]) == 9
    assert main(["abi", "check", str(variants["appended"]), "--fail-on", "incompatible"]) == 0
    capsys.readouterr()


def test_input_and_usage_errors(variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "abi", "diff", str(variants["corrupt_dump"]), str(variants["base"]))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {variants['corrupt_dump']}: malformed ABI dump: ")
    code, _, err = run(capsys, "abi", "diff", str(tmp_path / "missing.abi.json"), str(variants["base"]))
    assert code == 2 and "no such file or directory" in err
    code, _, err = run(capsys, "abi", "check", str(variants["base"]), "-o", str(tmp_path / "no" / "dir" / "x"))
    assert code == 2 and "cannot write the output" in err
    with pytest.raises(SystemExit) as exc:
        main(["abi", "check", str(variants["base"]), "--fail-on", "sometimes"])
    assert exc.value.code == 2


def test_errors_go_to_stderr_and_the_report_to_the_output_file(
    variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "report.json"
    code, out, err = run(capsys, "abi", "check", str(variants["changed"]), "--format", "json", "-o", str(out_file))
    assert (code, out, err) == (8, "", "")
    assert json.loads(out_file.read_text())["exit_status"] == 8


# ---- formats -----------------------------------------------------------------------------------------------------


def validate_sarif(text: str) -> dict[str, Any]:
    sarif: dict[str, Any] = json.loads(text)
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(sarif)
    return sarif


def test_sarif_validates_against_the_schema(
    variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    waivers = tmp_path / "waivers.toml"
    future = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    waivers.write_text(
        f'[[waiver]]\nkind = "compatible_difference"\nreason = "v2 is rolling out"\nexpires = {future}\n'
    )
    paths = [str(variants[n]) for n in ("changed", "appended", "text", "base")]
    code, out, _ = run(capsys, "abi", "check", *paths, "--format", "sarif", "--waivers", str(waivers))
    assert code == 9
    sarif = validate_sarif(out)
    [run_] = sarif["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} >= {"descriptor_mismatch", "method_mismatch", "not_a_library"}
    assert all(r["help"]["text"] and r["shortDescription"]["text"] for r in rules)
    by_rule = {r["ruleId"]: r for r in run_["results"]}
    mismatch = by_rule["method_mismatch"]
    assert rules[mismatch["ruleIndex"]]["id"] == "method_mismatch" and mismatch["level"] == "error"
    location = mismatch["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == Path(paths[0]).as_uri()
    assert location["logicalLocations"][0]["fullyQualifiedName"] == "Greeter.greet"
    assert by_rule["not_a_library"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "/libtext.so"
    )
    # The waived compatible difference is reported, suppressed, with its reason.
    [suppression] = by_rule["compatible_difference"]["suppressions"]
    assert suppression["status"] == "accepted" and suppression["justification"].startswith("v2 is rolling out")
    assert run_["invocations"] == [{"executionSuccessful": False, "exitCode": 9}]
    # diff's SARIF too, with relative paths as relative references.
    monkeypatch.chdir(variants["base"].parent.parent)
    rel = os.path.relpath(variants["base"])
    code, out, _ = run(capsys, "abi", "diff", str(variants["appended"]), rel, "--format", "sarif")
    assert code == 8
    results = validate_sarif(out)["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"method_removed", "descriptor_changed"}
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == rel for r in results)


def test_sarif_validation_can_fail() -> None:
    """The schema check is real: a result without a message is refused."""
    broken = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"ruleId": "a"}]}]}
    with pytest.raises(jsonschema.ValidationError, match="'message' is a required property"):
        validate_sarif(json.dumps(broken))


def test_junit_has_a_case_per_library_and_trait(
    variants: dict[str, Path], example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [
        str(variants["changed"]),
        str(variants["appended"]),
        str(variants["text"]),
        str(example_plugins["multi_trait"]),
    ]
    out_file = tmp_path / "abi.xml"
    assert main(["abi", "check", *paths, "--format", "junit", "-o", str(out_file)]) == 13
    xml = JUnitXml.fromfile(str(out_file))
    cases = {(c.classname, c.name): c for suite in xml for c in suite}
    assert {name for (lib, name) in cases if lib == paths[3]} == {"Greeter", "Transformer", "(library)"}
    changed = cases[(paths[0], "Greeter")]
    assert [type(r) for r in changed.result] == [Failure]
    assert changed.result[0].type in ("method_mismatch", "descriptor_mismatch")
    assert [type(r) for r in cases[(paths[2], "(library)")].result] == [Error]
    assert [type(r) for r in cases[(paths[1], "Greeter")].result] == [Failure]  # a compatible change counts by default
    assert cases[(paths[3], "Transformer")].result == []
    assert (xml.tests, xml.failures, xml.errors) == (len(cases), 2, 1)
    # With --fail-on incompatible the compatible plugin passes, its difference in the output.
    assert main(["abi", "check", *paths, "--format", "junit", "-o", str(out_file), "--fail-on", "incompatible"]) == 9
    appended = {(c.classname, c.name): c for suite in JUnitXml.fromfile(str(out_file)) for c in suite}[
        (paths[1], "Greeter")
    ]
    assert appended.result == [] and "compatible_difference" in (appended.system_out or "")
    capsys.readouterr()


def test_markdown_summary_and_github_annotations(
    variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    code, out, _ = run(
        capsys, "abi", "diff", str(variants["base"]), str(variants["changed"]), "--summary", str(summary)
    )
    assert code == 8 and "::error" not in out  # outside GitHub Actions: no annotations unless asked
    text = summary.read_text()
    assert text.startswith("# earlier step\n### plugin-host abi diff: incompatible ABI change (exit status 8)")
    assert "| incompatible | `method_changed` |" in text
    code, out, _ = run(capsys, "abi", "diff", str(variants["base"]), str(variants["changed"]), "--format", "github")
    [line] = out.splitlines()
    assert line.startswith(f"::error file={variants['changed']},title=method_changed (Greeter)::`Greeter.greet`")
    # Under GitHub Actions the annotations come with the text report, never inside a JSON one.
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, _ = run(capsys, "abi", "diff", str(variants["base"]), str(variants["changed"]))
    assert "change " in out and "\n::error file=" in out
    code, out, _ = run(capsys, "abi", "diff", str(variants["base"]), str(variants["changed"]), "--format", "json")
    json.loads(out)
    code, out, _ = run(capsys, "abi", "diff", str(variants["base"]), str(variants["appended"]))
    assert "::notice file=" not in out and "::error file=" in out  # a compatible change fails by default...
    code, out, _ = run(
        capsys, "abi", "diff", str(variants["base"]), str(variants["appended"]), "--fail-on", "incompatible"
    )
    assert code == 0 and "::notice file=" in out and "::error" not in out  # ...not under --fail-on incompatible


def test_github_annotation_escaping(
    tmp_path: Path, variants: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / "lib,odd:name%.so"
    shutil.copyfile(variants["text"], odd)
    code, out, _ = run(capsys, "abi", "check", str(odd), "--format", "github")
    assert code == 1
    assert out.startswith("::error file=" + str(odd).replace("%", "%25").replace(":", "%3A").replace(",", "%2C") + ",")


# ---- baselines ---------------------------------------------------------------------------------------------------


def plugin_dir(root: Path, libs: dict[str, Path]) -> Path:
    root.mkdir()
    for name, lib in libs.items():
        shutil.copyfile(lib, root / name)
    return root


def test_directory_baseline_is_stable_and_diffs_per_library(
    variants: dict[str, Path], example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    released = plugin_dir(
        tmp_path / "released",
        {"libgreeter.so": variants["base"], "libmulti.so": example_plugins["multi_trait"], "libold.so": variants["v1"]},
    )
    baseline = tmp_path / "baseline.json"
    assert main(["abi", "dump", str(released), "-o", str(baseline)]) == 0
    text = baseline.read_text()
    again = tmp_path / "again.json"
    assert main(["abi", "dump", str(released), "-o", str(again)]) == 0
    assert again.read_text() == text  # stable: the same bytes every time
    assert str(tmp_path) not in text  # no absolute paths (nor timestamps: nothing differs between runs)
    data = json.loads(text)
    assert data["schema"] == "plugin-host-abi-baseline/1" and data["abi_version"] == ABI_VERSION
    assert list(data["libraries"]) == ["libgreeter.so", "libmulti.so", "libold.so"]
    assert data["libraries"]["libgreeter.so"]["library"] == "libgreeter.so"
    assert main(["abi", "diff", str(baseline), str(released)]) == 0
    # The new build: one library changed incompatibly, one added, one removed, and a stray non-library.
    build = plugin_dir(
        tmp_path / "build",
        {
            "libgreeter.so": variants["changed"],
            "libmulti.so": example_plugins["multi_trait"],
            "libnew.so": variants["v2"],
        },
    )
    shutil.copyfile(variants["text"], build / "libstray.so")
    capsys.readouterr()
    code, report = run_json(capsys, "abi", "diff", str(baseline), str(build))
    assert code == 1 | 4 | 8
    libraries = {lib["library"]: lib for lib in report["libraries"]}
    assert {Path(name).name: lib["status"] for name, lib in libraries.items()} == {
        "libgreeter.so": "changed",
        "libmulti.so": "unchanged",
        "libnew.so": "added",
        "libold.so": "removed",
    }
    assert str(build / "libgreeter.so") in libraries
    assert {(f["kind"], Path(f["library"]).name) for f in report["findings"]} == {
        ("not_a_library", "libstray.so"),
        ("method_changed", "libgreeter.so"),
        ("library_added", "libnew.so"),
        ("library_removed", "libold.so"),
    }
    code, out, _ = run(capsys, "abi", "diff", str(baseline), str(build))
    assert "libgreeter.so  method_changed   breaking" in out
    assert "3 libraries" not in out and "4 libraries, 1 added, 1 removed" in out
    # Two baselines diff too (a review of the committed file), and a dump of a folder with a stray file is refused.
    code, _, err = run(capsys, "abi", "dump", str(build), "-o", str(tmp_path / "refused.json"))
    assert code == 1 and "libstray.so" in err and not (tmp_path / "refused.json").exists()
    (build / "libstray.so").unlink()
    assert main(["abi", "dump", str(build), "-o", str(tmp_path / "next.json")]) == 0
    assert main(["abi", "diff", str(baseline), str(tmp_path / "next.json"), "--fail-on", "incompatible"]) == 8
    capsys.readouterr()


# ---- host contracts ----------------------------------------------------------------------------------------------


def write_contract(path: Path, name: str, spec: Any) -> Path:
    """What ``abi contract`` writes on a host of that version (made from the same declaration)."""
    path.write_text(json.dumps(HostContract(name, ABI_VERSION, {"Greeter": spec}).to_json()))
    return path


def test_contract_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "host-v1.json"
    assert main(["abi", "contract", "-o", str(out_file)]) == 0
    contract = json.loads(out_file.read_text())
    assert (contract["schema"], contract["name"], contract["abi_version"]) == ("plugin-host-contract/1", "host-v1", 1)
    assert contract["traits"]["Greeter"] == GREETER.to_json()
    assert list(contract["traits"]) == sorted(contract["traits"])
    # --traits adds a module's traits (in a child process: declaring one would stay in this one).
    (tmp_path / "scorer_traits.py").write_text(
        textwrap.dedent(
            """
            from typing import Protocol
            from plugin_interface import CStr, F64, declare_trait

            @declare_trait(version=2)
            class Scorer(Protocol):
                def score(self, text: CStr) -> F64: ...
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "plugin_host", "abi", "contract", "--traits", "scorer_traits", "--name", "with-scorer"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    scored = json.loads(done.stdout)
    assert scored["name"] == "with-scorer" and scored["traits"]["Scorer"]["version"] == 2


def test_contract_matrix_for_plugins_of_three_trait_versions(
    variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host_v1 = tmp_path / "host-v1.json"
    assert main(["abi", "contract", "-o", str(host_v1)]) == 0  # this host declares Greeter v1
    host_v2 = write_contract(tmp_path / "host-v2.json", "host-v2", GREETER_V2)
    host_v3 = write_contract(tmp_path / "host-v3.json", "host-v3", GREETER_V3)
    plugins = plugin_dir(
        tmp_path / "plugins",
        {
            "libv1.so": variants["v1"],
            "libv2.so": variants["v2"],
            "libv3.so": variants["v3"],
            "libz.so": variants["changed"],
        },
    )
    contracts = [a for c in (host_v1, host_v2, host_v3) for a in ("--contract", str(c))]
    code, report = run_json(capsys, "abi", "check", str(plugins), *contracts)
    assert code == 4 | 8
    assert report["contracts"] == ["host-v1", "host-v2", "host-v3"]
    matrix = {
        Path(lib["library"]).name: {c: r["traits"]["Greeter"]["compatibility"] for c, r in lib["contracts"].items()}
        for lib in report["libraries"]
    }
    assert matrix == {
        "libv1.so": {"host-v1": "identical", "host-v2": "compatible", "host-v3": "compatible"},
        "libv2.so": {"host-v1": "compatible", "host-v2": "identical", "host-v3": "compatible"},
        "libv3.so": {"host-v1": "compatible", "host-v2": "compatible", "host-v3": "identical"},
        "libz.so": {"host-v1": "breaking", "host-v2": "breaking", "host-v3": "breaking"},
    }
    # The older plugin's difference names what the newer host lacks; each finding names its contract.
    [lacking] = [f for f in report["findings"] if Path(f["library"]).name == "libv1.so" and f["contract"] == "host-v3"]
    assert "older plugin lacks shout, whisper" in lacking["message"]
    code, out, _ = run(capsys, "abi", "check", str(plugins), *contracts)
    header, _, *rows = out.splitlines()[:6]
    assert header.split()[-3:] == ["host-v1", "host-v2", "host-v3"]
    assert rows[0].split()[-3:] == ["identical", "compatible", "compatible"]
    assert rows[3].split()[-3:] == ["incompatible", "incompatible", "incompatible"]
    assert "[method_mismatch @ host-v2]" in out and "contract host-v2 declares greet(CStr name) -> OwnedStr" in out
    # A plugin gated against the supported hosts only: v2 and v3 plugins pass v2+v3 when compatible changes are ok.
    code = main(
        [
            "abi",
            "check",
            str(plugins / "libv2.so"),
            str(plugins / "libv3.so"),
            *contracts[2:],
            "--fail-on",
            "incompatible",
        ]
    )
    assert code == 0
    capsys.readouterr()


def test_contract_errors_are_input_errors(
    variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    for text, expected in [
        ("{", "not valid JSON"),
        ('{"schema": "plugin-host-contract/1", "name": "x", "abi_version": 2, "traits": {}}', "ABI version 2"),
        ('{"schema": "plugin-host-contract/1", "name": "a b", "abi_version": 1, "traits": {}}', "name must be"),
        (
            '{"schema": "plugin-host-contract/1", "name": "x", "abi_version": 1, "traits": {"Greeter": {"name": 1}}}',
            "trait 'Greeter': not a trait declaration",
        ),
    ]:
        bad.write_text(text)
        code, _, err = run(capsys, "abi", "check", str(variants["base"]), "--contract", str(bad))
        assert code == 1 and err.startswith(f"error: {bad}: ") and expected in err, err


# ---- waivers -----------------------------------------------------------------------------------------------------


def waiver_file(path: Path, expires: datetime.date, **fields: str) -> Path:
    lines = ["[[waiver]]", *(f'{k} = "{v}"' for k, v in fields.items()), f"expires = {expires.isoformat()}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_waivers_accept_until_they_expire(
    variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    old, new = str(variants["base"]), str(variants["changed"])
    fields = {"kind": "method_changed", "trait": "Greeter", "method": "greet", "reason": "greet(times) ships in 2.0"}
    live = waiver_file(tmp_path / "live.toml", today, **fields)  # the last day it applies
    code, report = run_json(capsys, "abi", "diff", old, new, "--waivers", str(live))
    assert code == 0
    [finding] = report["findings"]
    assert finding["waived"] == {
        "reason": "greet(times) ships in 2.0",
        "expires": today.isoformat(),
        "where": f"{live}, waiver 1",
    }
    code, out, _ = run(capsys, "abi", "diff", old, new, "--waivers", str(live))
    assert "breaking (waived)" in out and f"[waived until {today.isoformat()}: greet(times) ships in 2.0]" in out
    expired = waiver_file(tmp_path / "expired.toml", today - datetime.timedelta(days=1), **fields)
    code, report = run_json(capsys, "abi", "diff", old, new, "--waivers", str(expired))
    assert code == 8
    [finding] = report["findings"]
    assert finding["waived"] is None and finding["waiver_expired"]["where"] == f"{expired}, waiver 1"
    code, out, _ = run(capsys, "abi", "diff", old, new, "--waivers", str(expired))
    assert "[waiver expired on" in out
    # A waiver for another method does not match (and is reported as unused).
    other = waiver_file(tmp_path / "other.toml", today, **{**fields, "method": "shout"})
    code, _, err = run(capsys, "abi", "diff", old, new, "--waivers", str(other))
    assert code == 8 and f"warning: {other}, waiver 1: matched no finding (kind method_changed)" in err
    # Library globs match a check's problems too.
    glob = waiver_file(tmp_path / "glob.toml", today, kind="method_mismatch", library="libgreeter*.so", reason="known")
    assert main(["abi", "check", new, "--waivers", str(glob)]) == 8  # the descriptor_mismatch still counts
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[waiver]]\nkind = "x"\nexpires = 2030-01-01\n', "no reason"),
        ('[[waiver]]\nkind = "x"\nreason = "r"\n', "expires must be a date"),
        ('[[waiver]]\nkind = "x"\nreason = "r"\nexpires = "soon"\n', "is not a date"),
        ('[[waiver]]\nkind = "x"\nreason = "r"\nexpires = 2030-01-01\nmethd = "y"\n', "unknown key 'methd'"),
        ('[[waiver]]\nreason = "r"\nexpires = 2030-01-01\n', "no kind"),
        ("waiver = 3\n", "must be an array of tables"),
        ("[[waiver]\n", "not a TOML file"),
    ],
)
def test_bad_waiver_files_are_input_errors(
    text: str, expected: str, variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ValueError, match=expected):
        load_waivers(bad)
    code, _, err = run(capsys, "abi", "check", str(variants["base"]), "--waivers", str(bad))
    assert code == 1 and err.startswith(f"error: {bad}") and expected.split("'")[0] in err


def test_probe_timeout_default_is_the_admission_layers() -> None:
    from plugin_host.admission import DEFAULT_PROBE_TIMEOUT_S
    from plugin_host.cli import _abi

    assert _abi.DEFAULT_PROBE_TIMEOUT_S == DEFAULT_PROBE_TIMEOUT_S


#: What ``abi check FILE`` (text, no --contract, --waivers or --probe) must not import: the layers it does not use,
#: the abi layer's baselines, contracts and waivers, and what only --help or other commands need.
NOT_IMPORTED_BY_ABI_CHECK = (
    "plugin_host.loading",
    "plugin_host.admission",
    "plugin_host.watch",
    "plugin_host._manager",
    "plugin_host.registry",
    "plugin_host.abi._baseline",
    "plugin_host.abi._contract",
    "plugin_host.abi._waivers",
    "elftools",
    "watchdog",
    "cffi",
    "importlib.metadata",
    "dataclasses",  # with the inspect it imports, more than the rest of the imports (plugin_interface/_record.py)
    "inspect",
    "hashlib",  # OpenSSL's bindings; SARIF imports it for its fingerprints
)


def test_abi_check_imports_no_loading_layer(variants: dict[str, Path]) -> None:
    """A check of many files pays only for what it uses: no manager, watcher, loader, probe or pyelftools,
    no baseline, contract or waiver reader."""
    code = (
        "import sys; from plugin_host.cli import main; status = main(['abi', 'check', sys.argv[1]]);"
        f"heavy = sorted(m for m in sys.modules if m.startswith({NOT_IMPORTED_BY_ABI_CHECK!r}));"
        "print(status, heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(variants["base"])], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "0 []"


@pytest.mark.parametrize("module", ["plugin_interface", "plugin_host.cli._abi"])
def test_the_contract_and_the_abi_command_import_no_dataclasses_inspect_or_hashlib(module: str) -> None:
    """What every command and every host pays first (the contract's classes, the built-in traits' declarations,
    their fingerprints) is made without the three modules that cost more than the rest of the imports."""
    code = f"import sys, {module}; print(sorted(m for m in ('dataclasses', 'inspect', 'hashlib') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_abi_check_pauses_the_garbage_collector_and_restores_it(
    variants: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector is off while the libraries are read (a collection would free nothing); after the check it is
    as it was, enabled or not."""
    import gc

    from plugin_host.cli import _abi

    during: list[bool] = []
    scan = _abi.scan_library

    def watched_scan(path: str) -> object:
        during.append(gc.isenabled())
        return scan(path)

    monkeypatch.setattr(_abi, "scan_library", watched_scan)
    assert gc.isenabled()
    assert main(["abi", "check", str(variants["base"])]) == 0
    assert during == [False] and gc.isenabled()
    gc.disable()
    try:
        assert main(["abi", "check", str(variants["base"])]) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()
    capsys.readouterr()


def test_abi_layer_names_imported_on_first_use_are_its_own() -> None:
    """The abi package's lazy names are the same objects as its modules' (and every name in __all__ resolves)."""
    import plugin_host.abi as abi
    from plugin_host.abi import _baseline, _contract, _waivers

    assert abi.load_contract is _contract.load_contract and abi.AbiBaseline is _baseline.AbiBaseline
    assert abi.Waiver is _waivers.Waiver
    assert all(getattr(abi, name) is not None for name in abi.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        abi.nothing  # noqa: B018


@pytest.mark.parametrize("loader", ["contract", "waivers"])
@pytest.mark.parametrize("case", ["missing", "directory", "fifo", "too large"])
def test_a_contract_or_waiver_file_that_is_no_small_file_is_a_clear_error(
    loader: str, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are read by one helper (formats.read_small_file): never blocking, never read whole when huge."""
    import plugin_host.abi._contract as contract
    import plugin_host.abi._waivers as waivers

    path = tmp_path / f"input-{loader}"
    if case == "directory":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)  # opening it for reading without O_NONBLOCK would hang the test
    elif case == "too large":
        monkeypatch.setattr(contract, "MAX_CONTRACT_BYTES", 8)
        monkeypatch.setattr(waivers, "MAX_WAIVER_FILE_BYTES", 8)
        path.write_text("x" * 64)
    load = contract.load_contract if loader == "contract" else waivers.load_waivers
    expected = {
        "missing": "cannot read it",
        "directory": "not a regular file",
        "fifo": "not a regular file",
        "too large": "64 bytes is too large for a",
    }[case]
    with pytest.raises(ValueError, match=expected) as exc:
        load(path)
    assert str(exc.value).startswith(str(path))
