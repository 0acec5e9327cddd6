"""The builder's plugin graph: public/private interfaces, link and interface dependencies, cycles."""

from __future__ import annotations

import re
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import cffi
import plugin_annotations._builder as builder
import pytest
from conftest import EXAMPLES, WERROR
from plugin_annotations import (
    BuildError,
    DependencyCycleError,
    DependencyError,
    PluginSpec,
    PluginSpecError,
    build_order,
    build_plugins,
    discover_plugins,
    load_plugin_spec,
)
from plugin_host import DynamicModule, PluginError
from plugin_host.cli import main
from plugin_host.cli._commands import _module_round_trip

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads ELF dynamic sections")


def spec(name: str, link: tuple[str, ...] = (), interface: tuple[str, ...] = (), no_link: bool = False) -> PluginSpec:
    """A spec for graph checks alone (nothing is compiled)."""
    return PluginSpec(
        name=name,
        directory=Path("/nonexistent") / name,
        sources=(),
        link_deps=link,
        interface_deps=interface,
        no_link=no_link,
    )


def write_plugin(root: Path, name: str, toml: str, files: dict[str, str]) -> Path:
    """A plugin directory: ``plugin.toml`` plus files (paths relative to it)."""
    directory = root / name
    for rel, text in {"plugin.toml": toml, **files}.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(textwrap.dedent(text))
    return directory


def dynamic_tags(path: Path, tag: str) -> list[str]:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        dynamic = ELFFile(f).get_section_by_name(".dynamic")
        attr = {"DT_NEEDED": "needed", "DT_RUNPATH": "runpath", "DT_RPATH": "rpath"}[tag]
        return [getattr(t, attr) for t in dynamic.iter_tags() if t.entry.d_tag == tag]  # type: ignore[union-attr]


# A library with a public header and a private one, used by dependants.
CORE_TOML = """
    name = "core"
    sources = ["core.c"]
    public_include = ["include"]
    private_include = ["private"]
"""
CORE_FILES = {
    "include/core.h": """
        #ifndef CORE_H
        #define CORE_H
        #include "plugin_interface.h"
        PLUGIN_EXPORT int core_add(int a, int b);
        #endif
    """,
    "private/core_secret.h": """
        #ifndef CORE_SECRET_H
        #define CORE_SECRET_H
        #define CORE_SECRET_OFFSET 0
        #endif
    """,
    "core.c": """
        #include "core.h"
        #include "core_secret.h"
        int core_add(int a, int b) { return a + b + CORE_SECRET_OFFSET; }
    """,
}


def app_files(include: str) -> dict[str, str]:
    return {
        "app.c": f"""
            #include "{include}"
            #include "core.h"
            PLUGIN_EXPORT int app_twice(int x) {{ return core_add(x, x); }}
        """,
    }


# ---- order and cycles (no compiler) ------------------------------------------


def test_build_order_is_topological_over_link_deps() -> None:
    order = build_order([spec("app", link=("mid",)), spec("mid", link=("core",)), spec("core"), spec("alone")])
    names = [s.name for s in order]
    assert names.index("core") < names.index("mid") < names.index("app")
    assert set(names) == {"app", "mid", "core", "alone"}
    assert build_order(reversed(order)) == order  # deterministic


def test_interface_deps_may_form_a_cycle() -> None:
    order = build_order([spec("foo", interface=("bar",), no_link=True), spec("bar", interface=("foo",), no_link=True)])
    assert [s.name for s in order] == ["bar", "foo"]


@pytest.mark.parametrize(
    ("specs", "cycle"),
    [
        ([spec("foo", link=("bar",)), spec("bar", link=("foo",))], ["bar", "foo", "bar"]),
        ([spec("c", link=("a",)), spec("a", link=("b",)), spec("b", link=("c",))], ["a", "b", "c", "a"]),
        ([spec("selfish", link=("selfish",))], ["selfish", "selfish"]),
    ],
)
def test_link_cycle_is_spelled_out(specs: list[PluginSpec], cycle: list[str]) -> None:
    with pytest.raises(DependencyCycleError, match=f"link dependency cycle: {' -> '.join(cycle)} ") as exc:
        build_order(specs)
    assert exc.value.cycle == cycle
    assert exc.value.plugin == cycle[0]
    assert isinstance(exc.value, BuildError)


def test_unknown_dependency() -> None:
    with pytest.raises(DependencyError, match="plugin app: interface_deps names 'ghost', which is not among") as exc:
        build_order([spec("app", interface=("ghost",))])
    assert exc.value.plugin == "app"
    assert exc.value.dependency == "ghost"


def test_a_no_link_plugin_cannot_be_a_link_dependency() -> None:
    with pytest.raises(DependencyError, match="link_deps names 'foo', which is no_link") as exc:
        build_order([spec("app", link=("foo",)), spec("foo", no_link=True)])
    assert exc.value.dependency == "foo"


def test_duplicate_names() -> None:
    with pytest.raises(DependencyError, match="two plugins are named twin"):
        build_order([spec("twin"), spec("twin")])


def test_independent_plugins_build_in_parallel_after_their_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scheduler alone: a fake build that records when each plugin ran.
    both_leaves = threading.Barrier(2, timeout=10)  # broken unless the leaves overlap
    finished: list[str] = []

    def fake_build(s: PluginSpec, out: Path, *args: Any) -> None:
        if s.name in ("left", "right"):
            both_leaves.wait()
        else:
            assert set(finished) >= {"left", "right"}, f"{s.name} started before its link deps"
        finished.append(s.name)
        args[3].outputs[s.name] = out / s.library_filename  # result

    monkeypatch.setattr(builder, "_build_one", fake_build)
    specs = [spec("top", link=("left", "right")), spec("left"), spec("right")]
    result = build_plugins(specs, tmp_path, jobs=2)
    assert finished[-1] == "top"
    assert set(result.outputs) == {"top", "left", "right"}


# ---- plugin.toml ---------------------------------------------------------------


def test_plugin_toml_graph_keys(tmp_path: Path) -> None:
    write_plugin(tmp_path, "core", CORE_TOML, CORE_FILES)
    directory = write_plugin(
        tmp_path,
        "app",
        'name = "app"\nsources = ["app.c"]\nlink_deps = ["core"]\ninterface_deps = ["other"]\nno_link = true\n',
        app_files("core.h"),
    )
    app = load_plugin_spec(directory)
    assert (app.link_deps, app.interface_deps, app.no_link) == (("core",), ("other",), True)
    core = load_plugin_spec(tmp_path / "core")
    assert core.public_include == (tmp_path.resolve() / "core" / "include",)
    assert core.private_include == (tmp_path.resolve() / "core" / "private",)
    assert (core.link_deps, core.interface_deps, core.no_link) == ((), (), False)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("no_link = 1", "no_link must be true or false"),
        ('public_include = ["missing"]', "public_include director(ies) not found: missing"),
        ('link_deps = ["not-a-name"]', "link_deps: not plugin names: 'not-a-name'"),
        ('interface_deps = "core"', "interface_deps must be a list of strings"),
    ],
)
def test_plugin_toml_graph_key_errors(tmp_path: Path, extra: str, message: str) -> None:
    directory = write_plugin(tmp_path, "bad", f'sources = ["bad.c"]\n{extra}\n', {"bad.c": "int x;\n"})
    with pytest.raises(PluginSpecError, match=re.escape(message)) as exc:
        load_plugin_spec(directory)
    assert exc.value.path == str(directory.resolve() / "plugin.toml")


def test_link_cycle_in_plugin_tomls_builds_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name, other in (("foo", "bar"), ("bar", "foo")):
        write_plugin(src, name, f'sources = ["{name}.c"]\nlink_deps = ["{other}"]\n', {f"{name}.c": "int x;\n"})
    with pytest.raises(DependencyCycleError, match="bar -> foo -> bar"):
        build_plugins(src, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


# ---- compiled graphs -----------------------------------------------------------


def test_link_dependency_is_linked_and_loads(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_plugin(src, "core", CORE_TOML, CORE_FILES)
    write_plugin(src, "app", 'sources = ["app.c"]\nlink_deps = ["core"]\n', app_files("plugin_interface.h"))
    result = build_plugins(src, out, extra_cflags=WERROR)
    assert result.built == ["app", "core"]
    with DynamicModule("app", [out], system=False) as app:
        assert app.invoke("app_twice", "int(int)", 21) == 42
    if sys.platform.startswith("linux"):
        assert "libcore.so" in dynamic_tags(out / "libapp.so", "DT_NEEDED")
        # LDSHARED may add the interpreter's own rpath; $ORIGIN must be there.
        rpaths = dynamic_tags(out / "libapp.so", "DT_RUNPATH") + dynamic_tags(out / "libapp.so", "DT_RPATH")
        assert "$ORIGIN" in ":".join(rpaths).split(":")
    assert build_plugins(src, out, extra_cflags=WERROR).built == []  # incremental: nothing to do
    (src / "core" / "core.c").touch()
    assert build_plugins(src, out, extra_cflags=WERROR).built == ["app", "core"]  # relinks the dependant


def test_private_header_of_a_dependency_does_not_compile(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_plugin(src, "core", CORE_TOML, CORE_FILES)
    write_plugin(src, "app", 'sources = ["app.c"]\nlink_deps = ["core"]\n', app_files("core_secret.h"))
    write_plugin(src, "alone", 'sources = ["alone.c"]\n', {"alone.c": "int alone;\n"})
    with pytest.raises(BuildError, match=r"plugin app: compiling .*app\.c failed") as exc:
        build_plugins(src, out, extra_cflags=WERROR)
    assert exc.value.plugin == "app"
    assert "core_secret.h" in exc.value.output
    assert (out / "libcore.so").exists() or sys.platform != "linux"  # the rest still built
    assert (out / "libalone.so").exists() or sys.platform != "linux"


def test_private_header_under_its_directory_name_does_not_compile_either(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_plugin(src, "core", CORE_TOML, CORE_FILES)
    write_plugin(
        src,
        "app",
        'sources = ["app.c"]\ninterface_deps = ["core"]\n',
        {
            "app.c": '#include "private/core_secret.h"\nint app;\n',
        },
    )
    with pytest.raises(BuildError, match="plugin app: compiling"):
        build_plugins(src, tmp_path / "out", extra_cflags=WERROR)


def test_public_interface_is_inherited_transitively(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_plugin(src, "core", CORE_TOML, CORE_FILES)
    write_plugin(
        src,
        "mid",
        'sources = ["mid.c"]\npublic_include = ["include"]\ninterface_deps = ["core"]\n',
        {
            "include/mid.h": '#include "core.h"\n',
            "mid.c": '#include "mid.h"\nint mid;\n',
        },
    )
    write_plugin(
        src,
        "top",
        'sources = ["top.c"]\ninterface_deps = ["mid"]\n',
        {
            "top.c": '#include "core.h"\n#include "mid.h"\nint top;\n',
        },
    )
    assert build_plugins(src, tmp_path / "out", extra_cflags=WERROR).built == ["core", "mid", "top"]


def test_a_failed_link_dependency_skips_its_dependants(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_plugin(src, "core", CORE_TOML, {**CORE_FILES, "core.c": "this is not C\n"})
    write_plugin(src, "app", 'sources = ["app.c"]\nlink_deps = ["core"]\n', app_files("plugin_interface.h"))
    write_plugin(src, "alone", 'sources = ["alone.c"]\n', {"alone.c": "int alone;\n"})
    with pytest.raises(BuildError, match="2 plugins failed") as exc:
        build_plugins(src, tmp_path / "out", extra_cflags=WERROR)
    assert exc.value.plugin == "app, core"
    assert "plugin app: not built: its link dependency core failed" in str(exc.value)
    assert (tmp_path / "out" / "libalone.so").exists() or sys.platform != "linux"


# ---- foo and bar: interfaces that use each other, explicit loading -------------


def test_examples_declare_the_foo_bar_interface_cycle() -> None:
    specs = {s.name: s for s in discover_plugins(EXAMPLES)}
    assert specs["foo"].interface_deps == ("bar",) and specs["bar"].interface_deps == ("foo",)
    assert specs["foo"].no_link and specs["bar"].no_link
    assert specs["foo"].private_include and specs["bar"].private_include


@linux_only
def test_foo_and_bar_do_not_link_to_each_other(example_plugins: dict[str, Path]) -> None:
    for name in ("foo", "bar"):
        needed = dynamic_tags(example_plugins[name], "DT_NEEDED")
        assert not any(n.startswith(("libfoo", "libbar")) for n in needed)


def test_foo_and_bar_call_each_other_through_explicit_loading(example_plugins: dict[str, Path]) -> None:
    ffi = cffi.FFI()
    library_dir = example_plugins["foo"].parent
    modules: dict[str, DynamicModule] = {}
    asked: list[tuple[str, str]] = []

    def find(module: Any, symbol: Any) -> Any:
        name, sym = ffi.string(module).decode(), ffi.string(symbol).decode()
        asked.append((name, sym))
        if name not in modules:  # on-demand loading
            modules[name] = DynamicModule(name, [library_dir], system=False)
            modules[name].invoke(f"{name}_bind", "void(void *)", lookup)
        return ffi.cast("void(*)(void)", modules[name].address(sym))

    lookup = ffi.callback("void (*(const char *, const char *))(void)", find)
    try:
        foo = modules["foo"] = DynamicModule("foo", [library_dir], system=False)
        assert foo.invoke("foo_ping", "int(int)", 3) == -1  # unbound: foo cannot find bar
        foo.invoke("foo_bind", "void(void *)", lookup)
        assert foo.invoke("foo_ping", "int(int)", 7) == 7
        assert asked == [("bar", "bar_pong"), ("foo", "foo_ping")]  # each looked up once
        bar = modules["bar"]
        assert (foo.invoke("foo_hops", "int(void)"), bar.invoke("bar_hops", "int(void)")) == (4, 3)
        assert bar.invoke("bar_pong", "int(int)", 2) == 2  # and the other way round
        for mod in modules.values():
            mod.invoke(f"{mod.name}_bind", "void(void *)", ffi.NULL)
            mod.close()
        with foo:
            assert foo.invoke("foo_hops", "int(void)") == 0  # fresh static state after reload
    finally:
        for mod in modules.values():
            mod.close()


def test_demo_round_trip(example_plugins: dict[str, Path]) -> None:
    lines = _module_round_trip(example_plugins["foo"].parent, hops=5)
    assert lines[0].startswith("foo_ping(5) = 5 hops: foo played 3, bar 2")
    assert "foo_hops() = 0" in lines[1]


def test_demo_round_trip_reports_a_missing_module(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="foo: no shared library found"):
        _module_round_trip(tmp_path)


def test_demo_command_shows_the_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "foo_ping(5) = 5 hops" in out
    assert "fresh static state" in out
