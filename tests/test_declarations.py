"""Self-describing plugins: the declaration a library embeds, used when the host has none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import plugin_host.registry._declarations
import plugin_interface._traits
import pytest
from conftest import CompilePlugin
from plugin_annotations import write_trait_headers
from plugin_host import PluginManager
from plugin_host.admission import probe_library
from plugin_host.cli import main
from plugin_host.errors import AbiMismatchError, PluginError, UnknownTraitError
from plugin_interface import (
    DECLARATION_FORMAT,
    MAX_DECLARATION_BYTES,
    U32,
    CStr,
    ErrorReason,
    OwnedStr,
    TraitSpec,
    declare_trait,
    declared_traits,
    decode_declaration,
    encode_declaration,
)

#: A trait no Python code in this process declares: only the plugin knows it.
COUNTER = TraitSpec.from_json(
    {
        "name": "Vowels",
        "version": 2,
        "methods": [
            {"name": "count", "params": [["text", "CStr"]], "returns": "U32"},
            {"name": "label", "params": [], "returns": "OwnedStr"},
        ],
    }
)

VOWELS_C = """
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_vowels.h"

static uint32_t count(void *self, const char *text) {
    (void)self;
    uint32_t n = 0;
    for (; *text; text++) n += strchr("aeiou", *text) != NULL;
    return n;
}
static char *label(void *self) { (void)self; return plugin_string_format("vowels"); }
PLUGIN_IMPL(Vowels, Latin, .count = count, .label = label)
PLUGIN_AGGREGATES(Vowels)
"""


@pytest.fixture(scope="module")
def vowels(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("vowels-headers")
    write_trait_headers(headers, [COUNTER])
    return compile_plugin("vowels", VOWELS_C, include_dirs=(headers,))


def test_the_declaration_round_trips_and_says_its_format() -> None:
    data = encode_declaration(COUNTER)
    assert data.startswith(DECLARATION_FORMAT.encode() + b"\n{")
    assert decode_declaration(data + b"\0junk after the NUL") == COUNTER
    assert json.loads(data.split(b"\n", 1)[1]) == COUNTER.to_json()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"plugin-host-trait/2\n{}", "unknown declaration format"),
        (b"plugin-host-trait/1\n{not json", "not JSON"),
        (b"plugin-host-trait/1\n" + b"[" * 100_000, "bytes or more"),
        (b"plugin-host-trait/1\n" + b"[" * 5000 + b"]" * 5000, "not JSON|not a trait declaration"),
        (
            b'plugin-host-trait/1\n{"name": "X", "version": 1, "methods": [{"name": "f", "params": [], '
            b'"returns": "Nope"}]}',
            "not a trait declaration",
        ),
        (b'plugin-host-trait/1\n{"name": "X", "version": 0, "methods": []}', "bad trait version"),
        # The names become generated code and C: the same rules as a Python declaration.
        (
            b'plugin-host-trait/1\n{"name": "X", "version": 1, "methods": [{"name": "type_name", "params": [], '
            b'"returns": "None"}]}',
            "is reserved",
        ),
        (
            b'plugin-host-trait/1\n{"name": "X", "version": 1, "methods": [{"name": "my-m", "params": [], '
            b'"returns": "None"}]}',
            "not a usable method name",
        ),
        (
            b'plugin-host-trait/1\n{"name": "X", "version": 1, "methods": [{"name": "f", "params": [["self", "I32"]], '
            b'"returns": "None"}]}',
            "parameter 'self' is not usable",
        ),
    ],
)
def test_a_bad_declaration_is_refused(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_declaration(data)
    assert len(b"[" * 100_000) > MAX_DECLARATION_BYTES


def test_a_trait_only_the_plugin_declares_loads_and_answers(vowels: Path) -> None:
    assert "Vowels" not in declared_traits()
    with PluginManager() as manager:
        [handle] = manager.load_plugins(vowels)  # no trait: every trait the file implements
        assert handle.trait == COUNTER and handle.trait.name == "Vowels" and handle.trait.version == 2
        latin = handle.proxy("Latin")
        assert latin.count("hello world") == 3  # type: ignore[attr-defined]
        assert latin.label() == "vowels"  # type: ignore[attr-defined]
        assert manager.unload_by_path(vowels) == {"Vowels": 1}


def test_reloads_of_new_builds_decode_a_declaration_once(
    vowels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``plugin-host watch`` does per new file (``reload(trait=None)``): each build carries the
    same declaration, which is decoded once (by content), not per file."""
    decoded: list[bytes] = []

    def counting(data: bytes) -> TraitSpec:
        decoded.append(data)
        return decode_declaration(data)

    monkeypatch.setattr(plugin_host.registry._declarations, "decode_declaration", counting)
    with PluginManager() as manager:
        for i in range(3):
            target = tmp_path / f"libvowels{i}.so"
            target.write_bytes(vowels.read_bytes() + bytes(i))  # other bytes: another build
            [handle] = manager.reload(target, None).handles
            assert handle.trait == COUNTER
            assert handle.proxy("Latin").count("aeiou") == 5  # type: ignore[attr-defined]
        assert len(manager.handles) == 3
    assert len(decoded) <= 1  # none when an earlier test decoded the same bytes


def test_every_trait_of_a_file_and_a_directory(example_plugins: dict[str, Path]) -> None:
    with PluginManager() as manager:
        handles = manager.load_plugins(example_plugins["multi_trait"])
        assert sorted(h.trait.name for h in handles) == ["Greeter", "Transformer"]
        directory = example_plugins["greeters"].parent
        names = {(h.path.name, h.trait.name) for h in manager.load_plugins(directory, errors=[])}
        assert {("libgreeters.so", "Greeter"), ("libmulti_trait.so", "Transformer")} <= names


def test_a_python_declaration_that_disagrees_names_the_method(vowels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Declared for this test only: the registry is restored afterwards.
    monkeypatch.setattr(plugin_interface._traits, "_REGISTRY", dict(plugin_interface._traits._REGISTRY))

    @declare_trait(version=2, name="Vowels")
    class Vowels(Protocol):
        def count(self, words: CStr) -> U32: ...  # the parameter renamed: a different signature

        def label(self) -> OwnedStr: ...

    with PluginManager() as manager, pytest.raises(AbiMismatchError) as exc:
        manager.load_plugins(vowels)
    assert exc.value.field == "method 0 `count`"
    assert exc.value.expected == "count(CStr words) -> U32"
    assert exc.value.found == "count(CStr text) -> U32"
    assert exc.value.symbol == "plugin_trait_declaration_Vowels_v1"


def test_the_probe_runs_the_embedded_traits_too(vowels: Path) -> None:
    result = probe_library(vowels, use_cache=False)
    assert result.clean and result.made == 1


# ---- abi check | dump | diff with the embedded declaration ------------------------------------------------


def _abi(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def _vowels_variant(compile_plugin: CompilePlugin, tmp_path: Path, spec: TraitSpec, source: str) -> Path:
    headers = tmp_path / f"headers-{spec.fingerprint:x}"
    write_trait_headers(headers, [spec])
    return compile_plugin("vowels", source, include_dirs=(headers,))


def test_abi_check_uses_a_declaration_only_the_plugin_has(vowels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, report = _abi(capsys, "abi", "check", str(vowels))
    assert status == 0
    [library] = report["libraries"]
    assert library["problems"] == []  # no "not declared in this host": the library says what it is
    trait = library["traits"]["Vowels"]
    assert trait["compatibility"] == "identical"
    assert trait["declaration"] == COUNTER.to_json()


def test_abi_check_refuses_a_declaration_that_is_not_the_descriptors(
    compile_plugin: CompilePlugin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = TraitSpec.from_json({**COUNTER.to_json(), "version": 3})
    headers = tmp_path / "mixed"
    write_trait_headers(headers, [COUNTER])
    header = headers / "plugin_trait_vowels.h"
    lines = header.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("#define PLUGIN_TRAIT_DECLARATION_Vowels"))
    lines[at + 1] = "    " + json.dumps(encode_declaration(other).decode())  # a JSON string is a valid C literal here
    header.write_text("\n".join(lines) + "\n")
    lib = compile_plugin("vowels", VOWELS_C, include_dirs=(headers,))
    status, report = _abi(capsys, "abi", "check", str(lib))
    assert status == 8
    [problem] = report["libraries"][0]["problems"]
    assert problem["kind"] == "declaration_mismatch" and problem["symbol"] == "plugin_trait_declaration_Vowels_v1"
    assert "the declaration (v3, 2 methods) does not match plugin_abi_descriptor_Vowels_v1 (v2" in problem["message"]


def test_abi_dump_and_diff_name_the_methods(
    vowels: Path, compile_plugin: CompilePlugin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["abi", "dump", str(vowels), "-o", str(tmp_path / "old.json")]) == 0
    dumped = json.loads((tmp_path / "old.json").read_text())
    assert dumped["traits"]["Vowels"]["declaration"]["methods"][0] == {
        "name": "count",
        "params": [["text", "CStr"]],
        "returns": "U32",
    }
    changed = TraitSpec.from_json(
        {"name": "Vowels", "version": 2, "methods": [{"name": "count", "params": [["text", "I32"]], "returns": "U32"}]}
    )
    source = (
        VOWELS_C.replace("const char *text", "int32_t text")
        .replace('for (; *text; text++) n += strchr("aeiou", *text) != NULL;', "n = (uint32_t)text;")
        .replace(", .label = label", "")
        .replace('static char *label(void *self) { (void)self; return plugin_string_format("vowels"); }\n', "")
    )
    new = _vowels_variant(compile_plugin, tmp_path, changed, source)
    capsys.readouterr()
    status, report = _abi(capsys, "abi", "diff", str(tmp_path / "old.json"), str(new))
    assert status & 8
    messages = [c["message"] for c in report["changes"] if c["kind"].startswith("method_")]
    assert messages[0] == (
        "`Vowels.count` (slot 0) changed: parameter 1 `text` changed from CStr to I32; "
        "old build: count(CStr text) -> U32; new build: count(I32 text) -> U32"
    )
    assert messages[1].startswith("`Vowels.label` removed: the old build has label() -> OwnedStr (slot 1)")


# ---- the command line sees every trait -----------------------------------------------------------


def test_list_names_a_trait_only_the_plugin_declares_and_its_methods(
    vowels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", str(vowels)]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if "Vowels" in line]
    assert row.split()[1:] == ["Vowels", "v2", "plugin", "Latin", "count,", "label"]


def test_call_converts_arguments_from_the_embedded_declaration(
    vowels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", str(vowels), "Vowels", "Latin", "count", "education"]) == 0
    assert capsys.readouterr().out == "5\n"
    assert main(["call", str(vowels), "Vowels@2", "Latin", "label"]) == 0
    assert capsys.readouterr().out == "vowels\n"
    assert main(["call", str(vowels), "Vowels@1", "Latin", "label"]) == 1
    assert "unknown trait 'Vowels@1'" in capsys.readouterr().err


@pytest.mark.parametrize("only", [[], ["--trait", "Vowels"], ["--trait", "Vowels@2"]])
def test_watch_loads_a_trait_only_the_plugin_declares(vowels: Path, tmp_path: Path, only: list[str]) -> None:
    import shutil
    import subprocess
    import sys

    watched = tmp_path / "watched"
    watched.mkdir()
    shutil.copy(vowels, watched / "libvowels.so")
    command = [sys.executable, "-m", "plugin_host", "watch", str(watched), "--debounce-ms", "20", *only]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            lines = [proc.stdout.readline() for _ in range(2)]
        finally:
            proc.send_signal(2)  # Ctrl-C: unloads and exits 0
            out, err = proc.communicate(timeout=60)
    assert lines[1].startswith("loaded") and "Vowels [Latin]" in lines[1], (lines, err)
    assert "unloaded" in out and "Vowels unmaker counter 1" in out
    assert proc.returncode == 0, err


def test_traits_module_makes_a_python_declaration_known(
    tmp_path: Path, vowels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_vowels.py").write_text(
        "from typing import Protocol\n"
        "from plugin_interface import U32, CStr, OwnedStr, declare_trait\n\n\n"
        "@declare_trait(version=2, name='Vowels')\n"
        "class Vowels(Protocol):\n"
        "    def count(self, text: CStr) -> U32: ...\n"
        "    def label(self) -> OwnedStr: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugin_interface._traits, "_REGISTRY", dict(plugin_interface._traits._REGISTRY))
    assert main(["--traits", "my_vowels", "call", str(vowels), "Vowels", "Latin", "count", "aeiou"]) == 0
    assert capsys.readouterr().out == "5\n"
    assert "Vowels" in declared_traits()  # the Python declaration was used (and agreed with the embedded one)
    assert main(["--traits", "no_such_module", "list", str(vowels)]) == 2
    assert "--traits no_such_module: cannot import it" in capsys.readouterr().err


def test_list_filters_by_a_trait_only_the_plugin_declares(vowels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", str(vowels), "--trait", "Vowels"]) == 0
    assert "Vowels" in capsys.readouterr().out
    assert main(["list", str(vowels), "--trait", "Greeter"]) == 1
    assert "exports no plugin for Greeter" in capsys.readouterr().err


def test_list_honours_the_version_of_a_trait_only_the_plugin_declares(
    vowels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", str(vowels), "--trait", "Vowels@2"]) == 0
    assert "Vowels" in capsys.readouterr().out
    assert main(["list", str(vowels), "--trait", "Vowels@1"]) == 1
    assert "unknown trait 'Vowels@1'; known traits: Vowels@2" in capsys.readouterr().err


def test_load_plugins_by_the_name_of_a_trait_only_the_plugin_declares(
    vowels: Path, example_plugins: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    with PluginManager() as manager:
        [handle] = manager.load_plugins(vowels, "Vowels")
        assert handle.trait == COUNTER
        assert manager.load_plugins(vowels, "Vowels@v2") == [handle]  # already loaded: the same handle
        with pytest.raises(UnknownTraitError, match=r"unknown trait 'Vowels@1'; known traits: Vowels@2") as exc:
            manager.load_plugins(vowels, "Vowels@1")
        assert exc.value.reason is ErrorReason.UNKNOWN_TRAIT
        # A file that does not know the name: the usual unknown trait, and nothing stays open.
        greeters = example_plugins["greeters"]
        with pytest.raises(UnknownTraitError, match=r"unknown trait 'Vowels'; known traits: .*Greeter"):
            manager.load_plugins(greeters, "Vowels")
        assert not manager.is_loaded(greeters)
        assert manager.unload_by_path(vowels) == {"Vowels": 1}
        # A directory: the files that declare it load, the others are reported.
        directory = tmp_path / "mixed"
        directory.mkdir()
        shutil.copy(vowels, directory / "libvowels.so")
        shutil.copy(greeters, directory / "libgreeters.so")
        errors: list[PluginError] = []
        [handle] = manager.load_plugins(directory, "Vowels", errors=errors)
        assert handle.path.name == "libvowels.so" and handle.proxy("Latin").count("aaa") == 3  # type: ignore[attr-defined]
        [error] = errors
        assert isinstance(error, UnknownTraitError) and "libgreeters.so" in str(error)


def test_abi_check_of_a_trait_only_the_plugin_declares(vowels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, report = _abi(capsys, "abi", "check", str(vowels), "--trait", "Vowels")
    assert status == 0, report
    [library] = report["libraries"]
    assert library["problems"] == [] and library["traits"]["Vowels"]["compatibility"] == "identical"
    assert main(["abi", "check", str(vowels), "--trait", "Vowels"]) == 0
    assert "Vowels" in capsys.readouterr().out
    # A name neither the host nor any library checked knows is still a usage error.
    assert main(["abi", "check", str(vowels), "--trait", "Vowles"]) == 2
    assert "unknown trait 'Vowles'; known traits: " in capsys.readouterr().err


def test_abi_diff_of_two_builds_of_a_trait_only_the_plugins_declare(
    vowels: Path, compile_plugin: CompilePlugin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    more = TraitSpec.from_json(
        {
            "name": "Vowels",
            "version": 3,  # a method appended, and the version raised: what a compatible release does
            "methods": [*COUNTER.to_json()["methods"], {"name": "reset", "params": [], "returns": "None"}],
        }
    )
    source = VOWELS_C.replace(
        "PLUGIN_IMPL(Vowels, Latin, .count = count, .label = label)",
        "static void reset(void *self) { (void)self; }\n"
        "PLUGIN_IMPL(Vowels, Latin, .count = count, .label = label, .reset = reset)",
    )
    new = _vowels_variant(compile_plugin, tmp_path, more, source)
    assert main(["abi", "diff", str(vowels), str(new)]) == 4  # a method appended: a compatible change (bit 4)
    out = capsys.readouterr().out
    assert "`Vowels.reset` added in the new build (slot 2): reset() -> None" in out, out
    assert main(["abi", "diff", str(new), str(vowels)]) == 8  # removed: incompatible (bit 8)
    assert "`Vowels.reset` removed: the old build has reset() -> None (slot 2)" in capsys.readouterr().out
    assert main(["abi", "dump", str(new)]) == 0
    dumped = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in dumped["traits"]["Vowels"]["declaration"]["methods"]] == ["count", "label", "reset"]
    with PluginManager() as manager:
        [handle] = manager.load_plugins(new)
        assert handle.trait == more and "Vowels" not in declared_traits()
