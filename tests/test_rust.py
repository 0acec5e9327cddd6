"""Rust plugins, first class: the generated module (every marker, both editions, -D warnings, no
crates) makes plugins the host loads and checks like C ones, built by the builder from a
plugin.toml with rustc or with a dependency-free Cargo.toml; no panic unwinds into C; the
libraries really unload and reload with fresh static state; the committed example module is
not stale."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Protocol

import cffi
import pytest
from conftest import EXAMPLES, CompilePlugin, mapped_paths, require_language
from plugin_annotations import BuildError, build_plugins, generate_rust_module, load_plugin_spec, write_rust_module
from plugin_host import PluginManager
from plugin_host.abi import check_library, scan_library
from plugin_interface import (
    F32,
    F64,
    I8,
    I64,
    U16,
    U64,
    Array,
    Bool,
    Buffer,
    CStr,
    Drop,
    Handle,
    MakerReturnedNullError,
    MutArray,
    MutBuffer,
    Out,
    OwnedBytes,
    OwnedStr,
    PluginCallError,
    Size,
    Status,
    declare_trait,
)


@declare_trait(version=1)
class Kitchen(Protocol):
    """Every marker through Rust."""

    def sum(self, values: Array[F64]) -> F64:
        """Array[T] in, a scalar out."""
        ...

    def scale(self, values: MutArray[F32], factor: F32) -> None:
        """MutArray[T] written in place."""
        ...

    def split(self, value: U64, high: Out[U16], negative: Out[Bool]) -> I8:
        """Out[T] parameters."""
        ...

    def echo(self, data: Buffer) -> OwnedBytes:
        """Buffer in, OwnedBytes out."""
        ...

    def fill(self, data: MutBuffer, byte: I64) -> Size:
        """MutBuffer written in place."""
        ...

    def check(self, text: CStr) -> Status:
        """0, an error code with a message, or a panic."""
        ...

    def name(self) -> OwnedStr:
        """A string (``type`` would be a Rust keyword: see the keyword test)."""
        ...


KITCHEN_RS = r"""
mod plugin_abi;
use plugin_abi::{Kitchen, PluginError};
use std::ffi::CStr;

#[derive(Default)]
pub struct Stove;

impl Kitchen for Stove {
    fn sum(&self, values: &[f64]) -> f64 { values.iter().sum() }
    fn scale(&self, values: &mut [f32], factor: f32) { for v in values.iter_mut() { *v *= factor; } }
    fn split(&self, value: u64, high: &mut u16, negative: &mut bool) -> i8 {
        *high = (value >> 48) as u16;
        *negative = (value as i64) < 0;
        7
    }
    fn echo(&self, data: &[u8]) -> Vec<u8> {
        if data == b"panic" { panic!("echo asked to panic"); }
        data.iter().rev().copied().collect()
    }
    fn fill(&self, data: &mut [u8], byte: i64) -> usize { data.fill(byte as u8); data.len() }
    fn check(&self, text: &CStr) -> Result<(), PluginError> {
        match text.to_bytes() {
            b"bad" => Err(PluginError::new(7, "bad input")),
            b"panic" => panic!("check asked to panic"),
            _ => Ok(()),
        }
    }
    fn name(&self) -> String { String::from("stove") }
}

plugin_impl!(Kitchen, Stove, Stove);
plugin_aggregates!(Kitchen; Stove);
"""


@pytest.fixture(scope="module")
def kitchen(compile_plugin: CompilePlugin) -> Path:
    require_language("rust")
    return compile_plugin(
        "kitchen", {"lib.rs": KITCHEN_RS, "plugin_abi.rs": generate_rust_module([Kitchen], "plugin_abi")}
    )


def _functions(handle: object) -> tuple[cffi.FFI, dict[str, object]]:
    ffi = cffi.FFI()
    ffi.cdef("typedef struct { uint8_t *data; size_t len; } PluginBytes;")
    reg = handle.registration_set.registrations[0]  # type: ignore[attr-defined]
    spec = Kitchen.__plugin_trait__  # type: ignore[attr-defined]
    fns: dict[str, object] = {m.name: ffi.cast(m.cffi_type, reg.methods[m.name]) for m in spec.methods}
    fns["this"] = ffi.cast("void *", reg.instance)
    fns["free"] = ffi.cast("void(*)(void *)", reg.free_memory)
    return ffi, fns


def test_every_marker_crosses_with_its_c_layout(kitchen: Path) -> None:
    problems, checks = check_library(scan_library(kitchen))
    assert [p for p in problems if p.severity == "error"] == []
    assert checks["Kitchen"].compatibility == "identical"  # descriptor and fingerprints agree
    with PluginManager() as manager:
        [handle] = manager.load_plugins(kitchen, Kitchen)
        ffi, f = _functions(handle)
        this = f["this"]
        values = ffi.new("double[]", [1.5, 2.5, 3.0])
        assert f["sum"](this, values, 3) == 7.0  # type: ignore[operator]
        floats = ffi.new("float[]", [1.0, -2.0])
        f["scale"](this, floats, 2, 3.0)  # type: ignore[operator]
        assert list(floats) == [3.0, -6.0]
        high, negative = ffi.new("uint16_t *"), ffi.new("_Bool *")
        assert f["split"](this, 0xFFFE_0000_0000_0001, high, negative) == 7  # type: ignore[operator]
        assert high[0] == 0xFFFE and negative[0] is True
        assert f["split"](this, 1, ffi.NULL, ffi.NULL) == 7  # type: ignore[operator]  # NULL out-params tolerated
        echoed = f["echo"](this, b"abc", 3)  # type: ignore[operator]
        assert ffi.buffer(echoed.data, echoed.len)[:] == b"cba"
        f["free"](echoed.data)  # type: ignore[operator]
        buf = bytearray(4)
        assert f["fill"](this, ffi.from_buffer(buf), 4, 0x41) == 4  # type: ignore[operator]
        assert buf == b"AAAA"
        name = f["name"](this)  # type: ignore[operator]
        assert ffi.string(name) == b"stove"
        f["free"](name)  # type: ignore[operator]
        error = ffi.new("char **")
        assert f["check"](this, b"fine", error) == 0 and error[0] == ffi.NULL  # type: ignore[operator]
        assert f["check"](this, b"bad", error) == 7  # type: ignore[operator]
        assert ffi.string(error[0]) == b"bad input"
        f["free"](error[0])  # type: ignore[operator]
        assert manager.unload_by_path(kitchen) == {"Kitchen": 1}


def test_a_panic_never_unwinds_into_c(kitchen: Path) -> None:
    # In a child: were a panic to unwind into C, the process would abort.
    code = f"""
        import cffi, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_rust import Kitchen, _functions
        from plugin_host import PluginManager
        with PluginManager() as manager:
            [handle] = manager.load_plugins({str(kitchen)!r}, Kitchen)
            ffi, f = _functions(handle)
            error = ffi.new("char **")
            print("check", f["check"](f["this"], b"panic", error), ffi.string(error[0]).decode())
            f["free"](error[0])
            out = f["echo"](f["this"], b"panic", 5)
            print("echo", out.data == ffi.NULL, out.len)
            print("after", f["check"](f["this"], b"fine", error))
            print("unmapped", manager.unload_by_path({str(kitchen)!r}).unmapped)
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"RUST_BACKTRACE": "0", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "check -1 panic: check asked to panic",
        "echo True 0",
        "after 0",
        "unmapped True",
    ]
    assert "check asked to panic" in proc.stderr  # Rust's panic hook still reports it


# ---- the example, built by the builder --------------------------------------------------


def test_the_committed_example_module_is_not_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parent)  # the command in its first comment names the path from the repo root
    path = Path("native_plugins/rust_greeter/src/plugin_abi.rs")
    assert not write_rust_module(path, ["Greeter"], targets=["plugin_interface:Greeter"], check=True), (
        "regenerate: python -m plugin_annotations rust plugin_interface:Greeter -o "
        "native_plugins/rust_greeter/src/plugin_abi.rs"
    )


def test_the_rust_command_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "abi.rs"
    cmd = [sys.executable, "-m", "plugin_annotations", "rust", "plugin_interface:Greeter", "-o", str(out)]
    assert subprocess.run([*cmd, "--check"], capture_output=True).returncode == 1
    subprocess.run(cmd, check=True, capture_output=True)
    assert subprocess.run([*cmd, "--check"], capture_output=True).returncode == 0
    text = out.read_text()
    assert "macro_rules! plugin_impl" in text and "$crate::abi::GreeterVTable" in text
    assert "plugin_trait_declaration_Greeter_v1" in text
    bad = subprocess.run([*cmd[:4], "no_such_module_xyz", "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "no_such_module_xyz: cannot import it" in bad.stderr


def test_the_example_greets_panics_safely_and_unloads_for_real(language_greeter: object, tmp_path: Path) -> None:
    lib = shutil.copy(language_greeter("rust"), tmp_path / "librust_greeter.so")  # type: ignore[operator]
    for _ in range(2):
        with PluginManager() as manager:
            [handle] = manager.load_plugins(lib, "Greeter")
            assert handle.is_plugin_owned and sorted(handle.type_names) == ["Counting", "English", "French"]
            counting = handle.proxy("Counting")
            assert counting.greet("a") == "call 1, a"  # type: ignore[attr-defined]
            with pytest.raises(PluginCallError, match="Greeter.Counting.greet returned NULL"):
                counting.greet("")  # type: ignore[attr-defined]  # panics inside; the host gets NULL
            assert counting.greet("b") == "call 2, b"  # type: ignore[attr-defined]
            result = manager.unload_by_path(lib)
        assert result == {"Greeter": 3} and result.unmapped
        assert str(lib) not in mapped_paths()


def _crate(tmp_path: Path, lib_rs: str, manifest: str | None, name: str = "crate_greeter") -> Path:
    src = tmp_path / name
    (src / "src").mkdir(parents=True)
    (src / "src" / "lib.rs").write_text(lib_rs)
    write_rust_module(src / "src" / "plugin_abi.rs", ["Greeter"])
    (src / "plugin.toml").write_text(f'name = "{name}"\nsources = ["src/lib.rs", "src/plugin_abi.rs"]\n')
    if manifest is not None:
        (src / "Cargo.toml").write_text(manifest)
    return src


CARGO_2024 = """
[package]
name = "crate-greeter"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]
"""


@pytest.mark.parametrize("how", ["rustc", "cargo, edition 2024"])
def test_a_crate_builds_from_plugin_toml_with_rustc_or_cargo(tmp_path: Path, how: str) -> None:
    require_language("rust")
    lib_rs = (EXAMPLES / "rust_greeter" / "src" / "lib.rs").read_text()
    if how.startswith("cargo") and shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    src = _crate(tmp_path, lib_rs, CARGO_2024 if how.startswith("cargo") else None)
    result = build_plugins([load_plugin_spec(src)], tmp_path / "out", extra_cflags=["-Werror"])
    assert result.built == ["crate_greeter"]
    again = build_plugins([load_plugin_spec(src)], tmp_path / "out", extra_cflags=["-Werror"])
    assert again.built == [] and again.compiled == []  # incremental
    with PluginManager() as manager:
        [handle] = manager.load_plugins(result.outputs["crate_greeter"], "Greeter")
        assert handle.proxy("French").greet("Ada") == "Bonjour, Ada!"  # type: ignore[attr-defined]
        assert manager.unload_by_path(handle.path).unmapped


def test_a_cargo_manifest_with_dependencies_is_refused_in_one_sentence(tmp_path: Path) -> None:
    require_language("rust")
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    src = _crate(tmp_path, "", CARGO_2024 + '\n[dependencies]\nserde = "1"\n')
    with pytest.raises(
        BuildError, match=r"declares dependencies \(\[dependencies\] serde\); plugins build with no crates"
    ):
        build_plugins([load_plugin_spec(src)], tmp_path / "out")


def test_a_panicking_constructor_is_a_maker_returning_null(compile_plugin: CompilePlugin) -> None:
    require_language("rust")
    lib_rs = """
        mod plugin_abi;
        use std::ffi::CStr;
        pub struct Fragile;
        impl plugin_abi::Greeter for Fragile {
            fn greet(&self, _name: &CStr) -> String { String::new() }
        }
        fn make() -> Fragile { panic!("no instance today") }
        plugin_impl!(Greeter, Fragile, Fragile, make());
        plugin_aggregates!(Greeter; Fragile);
    """
    lib = compile_plugin("fragile_rs", {"lib.rs": lib_rs, "plugin_abi.rs": generate_rust_module(["Greeter"])})
    with PluginManager() as manager:
        with pytest.raises(MakerReturnedNullError, match="plugin_register_all_Greeter_v1 returned NULL") as exc:
            manager.load_plugins(lib, "Greeter")
        assert exc.value.path == str(lib)


@declare_trait(version=1)
class Keywords(Protocol):
    """Names that are Rust keywords (not C ones): the generator escapes them."""

    def match(self, type: CStr, fn: U16) -> Bool:
        """``r#match(r#type, r#fn)`` in Rust."""
        ...


KEYWORDS_RS = r"""
mod plugin_abi;
use std::ffi::CStr;

#[derive(Default)]
pub struct Both;
impl plugin_abi::Keywords for Both {
    fn r#match(&self, r#type: &CStr, r#fn: u16) -> bool { !r#type.is_empty() && r#fn > 0 }
}
impl plugin_abi::Kitchen for Both {
    fn sum(&self, values: &[f64]) -> f64 { values.len() as f64 }
    fn scale(&self, _values: &mut [f32], _factor: f32) {}
    fn split(&self, _value: u64, _high: &mut u16, _negative: &mut bool) -> i8 { 0 }
    fn echo(&self, data: &[u8]) -> Vec<u8> { data.to_vec() }
    fn fill(&self, data: &mut [u8], _byte: i64) -> usize { data.len() }
    fn check(&self, _text: &CStr) -> Result<(), plugin_abi::PluginError> { Ok(()) }
    fn name(&self) -> String { String::new() }
}
plugin_impl!(Keywords, Both, Both);
plugin_impl!(Kitchen, Both, Both);
plugin_aggregates!(Keywords; Both);
plugin_unmaker_counter!(Kitchen);
"""


@pytest.mark.parametrize("edition", ["2021", "2024"])
def test_two_traits_and_keywords_in_one_module_compile_warning_free(tmp_path: Path, edition: str) -> None:
    require_language("rust")
    (tmp_path / "lib.rs").write_text(KEYWORDS_RS)
    (tmp_path / "plugin_abi.rs").write_text(generate_rust_module([Keywords, Kitchen]))
    out = tmp_path / "libboth.so"
    proc = subprocess.run(
        ["rustc", "--edition", edition, "--crate-type", "cdylib", "-D", "warnings", str(tmp_path / "lib.rs"),
         "-o", str(out)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with PluginManager() as manager:
        handles = {h.trait.name: h for h in manager.load_plugins(out)}  # the embedded declarations suffice
        assert set(handles) == {"Keywords", "Kitchen"}
        assert handles["Keywords"].is_plugin_owned and not handles["Kitchen"].is_plugin_owned
        assert manager.unload_by_path(out) == {"Keywords": 1, "Kitchen": 1}


class Session:
    """The kind of object Sessions hands out."""


@declare_trait(version=1)
class Sessions(Protocol):
    """Handle and Drop, which the Rust generator does not convert yet."""

    def open(self) -> Handle[Session]:
        """A plugin-side object."""
        ...

    def close(self, session: Drop[Session]) -> None:
        """Destroys it."""
        ...


def test_markers_the_generator_does_not_convert_yet_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"Sessions.open: the Rust generator does not support Handle\[Session\] yet"):
        generate_rust_module([Sessions])
