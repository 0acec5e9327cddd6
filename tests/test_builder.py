"""The plugin builder: platform naming, incremental and parallel builds,
CC/CFLAGS, compiler errors with their output, and malformed plugin.toml."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO
from plugin_annotations import (
    BuildError,
    CompilerNotFoundError,
    PluginSpecError,
    build_plugins,
    discover_plugins,
    load_plugin_spec,
)
from plugin_interface import library_filename


def test_examples_build_with_platform_names(example_plugins: dict[str, Path]) -> None:
    assert {"greeters", "host_owned", "multi_trait"} <= set(example_plugins)
    for name, path in example_plugins.items():
        assert path.name == library_filename(name) and path.is_file()


def test_naming_rule_for_every_platform() -> None:
    assert library_filename("greeters", "linux") == "libgreeters.so"
    assert library_filename("greeters", "win32") == "greeters.dll"
    assert library_filename("greeters", "darwin") == "libgreeters.dylib"


def test_noop_rebuild_compiles_nothing(tmp_path: Path) -> None:
    specs = [s for s in discover_plugins(EXAMPLES) if s.name in ("greeters", "host_owned")]
    first = build_plugins(specs, tmp_path, jobs=2)
    assert sorted(first.built) == ["greeters", "host_owned"]
    assert len(first.compiled) == 4
    again = build_plugins(specs, tmp_path)
    assert again.built == [] and again.compiled == []
    assert again.outputs == first.outputs
    # Touching one source recompiles exactly that file and relinks its plugin.
    src = next(s for s in specs if s.name == "greeters").sources[0]
    future = time.time() + 5
    os.utime(src, (future, future))
    try:
        third = build_plugins(specs, tmp_path)
    finally:
        now = time.time()
        os.utime(src, (now, now))
    assert third.compiled == [src]
    assert third.built == ["greeters"]


def test_changed_flags_rebuild(tmp_path: Path) -> None:
    specs = [s for s in discover_plugins(EXAMPLES) if s.name == "host_owned"]
    build_plugins(specs, tmp_path)
    assert build_plugins(specs, tmp_path, defines=["SOMETHING=1"]).built == ["host_owned"]


def test_missing_compiler_is_one_clear_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    with pytest.raises(CompilerNotFoundError, match="no C compiler found: 'no-such-compiler-xyz' is not on PATH"):
        build_plugins(EXAMPLES, tmp_path)


def test_compile_error_carries_the_compiler_output(tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "plugin.toml").write_text('name = "bad"\nsources = ["bad.c"]\n')
    (src / "bad.c").write_text("int f(void) { return undefined_identifier; }\n")
    with pytest.raises(BuildError, match="plugin bad: compiling .*bad.c failed") as exc:
        build_plugins(tmp_path, tmp_path / "out")
    assert "undefined_identifier" in exc.value.output
    assert exc.value.plugin == "bad"


def test_warnings_fail_with_werror(tmp_path: Path) -> None:
    src = tmp_path / "warn"
    src.mkdir()
    (src / "plugin.toml").write_text('name = "warn"\nsources = ["warn.c"]\n')
    (src / "warn.c").write_text("int f(int unused) { return 0; }\n")
    build_plugins(tmp_path, tmp_path / "out1")  # a warning alone does not fail
    with pytest.raises(BuildError, match="unused"):
        build_plugins(tmp_path, tmp_path / "out2", extra_cflags=["-Werror"])


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('name = "x"\nsources = []\n', "sources is empty"),
        ('name = "x"\nsources = ["missing.c"]\n', "source.s. not found: missing.c"),
        ('name = "x"\nsources = "x.c"\n', "sources must be a list of strings"),
        ('name = "x"\nsources = ["x.c"]\nsurprise = 1\n', "unknown key.s. surprise"),
        ("name = = broken", "cannot read plugin description"),
    ],
)
def test_malformed_plugin_toml(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "plugin.toml").write_text(toml)
    (tmp_path / "x.c").write_text("int x;\n")
    with pytest.raises(PluginSpecError, match=message) as exc:
        load_plugin_spec(tmp_path)
    assert exc.value.path == str(tmp_path / "plugin.toml")


def test_build_script_builds_the_examples(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "build_plugins.py"), "--build-dir", str(tmp_path), "--werror"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "built:" in proc.stdout and (tmp_path / library_filename("greeters")).is_file()


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed (CI installs it)")
def test_examples_compile_warning_free_under_clang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "clang")
    monkeypatch.setenv("LDSHARED", "clang -shared")
    result = build_plugins(EXAMPLES, tmp_path, extra_cflags=["-Werror", "-Wpedantic"])
    assert {"greeters", "host_owned", "multi_trait"} <= set(result.built)


def test_cflags_from_the_environment_reach_the_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "flagged"
    src.mkdir()
    (src / "plugin.toml").write_text('name = "flagged"\nsources = ["flagged.c"]\n')
    (src / "flagged.c").write_text("#ifdef FROM_CFLAGS\n#error CFLAGS reached the compiler\n#endif\nint x;\n")
    build_plugins(tmp_path, tmp_path / "out")
    monkeypatch.setenv("CFLAGS", "-DFROM_CFLAGS")
    with pytest.raises(BuildError, match="CFLAGS reached the compiler"):
        build_plugins(tmp_path, tmp_path / "out")  # the flag change alone forces the rebuild


# ---- languages: C++ and Rust through the same builder --------------------------------


@pytest.mark.parametrize(
    ("variable", "language", "source", "sentence"),
    [
        ("CXX", "cpp", "x.cpp", "no C++ compiler found: 'no-such-cxx' is not on PATH; install g++ or clang++"),
        ("RUSTC", "rust", "x.rs", "no Rust compiler found: 'no-such-cxx' is not on PATH; install Rust"),
    ],
)
def test_a_missing_cpp_or_rust_compiler_is_one_clear_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, language: str, source: str, sentence: str
) -> None:
    src = tmp_path / "p"
    src.mkdir()
    (src / "plugin.toml").write_text(f'name = "p"\nlanguage = "{language}"\nsources = ["{source}"]\n')
    (src / source).write_text("")
    monkeypatch.setenv(variable, "no-such-cxx")
    with pytest.raises(CompilerNotFoundError, match=re.escape(sentence)) as exc:
        build_plugins(tmp_path, tmp_path / "out")
    assert exc.value.language == language and exc.value.compiler == "no-such-cxx"
    assert "\n" not in str(exc.value)
    # optional = true: skipped with that sentence as the reason; the others still build.
    (src / "plugin.toml").write_text(f'name = "p"\nlanguage = "{language}"\nsources = ["{source}"]\noptional = true\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "plugin.toml").write_text('name = "c"\nsources = ["c.c"]\n')
    (tmp_path / "c" / "c.c").write_text("int c_plugin_value(void) { return 1; }\n")
    result = build_plugins(tmp_path, tmp_path / "out")
    assert result.built == ["c"] and list(result.skipped) == ["p"]
    assert result.skipped["p"].startswith(sentence.split(";")[0])


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('name = "x"\nsources = ["x.c"]\nlanguage = "go"\n', "language must be one of 'c', 'cpp', 'rust', not 'go'"),
        ('name = "x"\nsources = ["x.c"]\nrestrict_exports = "yes"\n', "restrict_exports must be true or false"),
        ('name = "x"\nsources = ["x.c"]\noptional = 1\n', "optional must be true or false"),
    ],
)
def test_malformed_language_keys(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "plugin.toml").write_text(toml)
    (tmp_path / "x.c").write_text("int x;\n")
    with pytest.raises(PluginSpecError, match=message):
        load_plugin_spec(tmp_path)


def test_the_language_follows_the_sources_and_cpp_exports_only_plugin_symbols(tmp_path: Path) -> None:
    from plugin_annotations import language_of

    assert language_of([Path("a.c")]) == "c"
    assert language_of([Path("a.c"), Path("b.cpp")]) == "cpp"
    assert language_of([Path("lib.rs"), Path("abi.rs")]) == "rust"
    (tmp_path / "plugin.toml").write_text('name = "x"\nsources = ["x.cc"]\n')
    (tmp_path / "x.cc").write_text("")
    spec = load_plugin_spec(tmp_path)
    assert spec.source_language == "cpp" and spec.exports_restricted
    (tmp_path / "plugin.toml").write_text('name = "x"\nsources = ["x.cc"]\nrestrict_exports = false\n')
    assert not load_plugin_spec(tmp_path).exports_restricted
