"""Rust plugins, first class: the generated module (every marker, both editions, -D warnings, no
crates) makes plugins the host loads and checks like C ones, built by the builder from a
plugin.toml with rustc or with a dependency-free Cargo.toml; no panic unwinds into C; the
libraries really unload and reload with fresh static state; the committed example module is
not stale."""

from __future__ import annotations

import array
import dataclasses
import gc
import json
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import cffi
import pytest
from conftest import EXAMPLES, CompilePlugin, mapped_paths, require_language, run_isolated
from plugin_annotations import (
    BuildError,
    build_plugins,
    generate_rust_module,
    load_plugin_spec,
    write_rust_module,
    write_trait_headers,
)
from plugin_annotations._headers import rust_traits_of
from plugin_host import PluginManager
from plugin_host.abi import check_library, scan_library
from plugin_interface import (
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Array,
    Bool,
    Buffer,
    Callback,
    CStr,
    Drop,
    FixedArray,
    Handle,
    MakerReturnedNullError,
    MutArray,
    MutBuffer,
    MutRef,
    Out,
    OwnedBytes,
    OwnedStr,
    PluginCallError,
    PluginMethodError,
    Ref,
    Size,
    Status,
    declare_trait,
    plugin_struct,
    struct_of,
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
    fn check(&self, text: &str) -> Result<(), PluginError> {
        match text {
            "bad" => Err(PluginError::new(7, "bad input")),
            "worse" => Err("worse input".into()), // code -1
            "panic" => panic!("check asked to panic"),
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
        assert f["check"](this, b"worse", error) == -1  # type: ignore[operator]
        assert ffi.string(error[0]) == b"worse input"
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
        "echo True 1",
        "after 0",
        "unmapped True",
    ]
    assert "check asked to panic" in proc.stderr  # Rust's panic hook still reports it


# ---- the example, built by the builder --------------------------------------------------


@pytest.mark.parametrize(
    ("example", "target"),
    [
        ("rust_greeter", "plugin_interface:Greeter"),
        ("rust_image_filter", "plugin_host.examples.image_traits:ImageFilter"),
    ],
)
def test_the_committed_example_modules_are_not_stale(
    monkeypatch: pytest.MonkeyPatch, example: str, target: str
) -> None:
    monkeypatch.chdir(EXAMPLES.parent)  # the command in its first comment names the path from the repo root
    path = Path(f"native_plugins/{example}/src/plugin_abi.rs")
    traits = rust_traits_of(target)
    assert not write_rust_module(path, traits, targets=[target], check=True), (
        f"regenerate: python -m plugin_annotations rust {target} -o {path}"
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


def _filter_answers(lib: Path) -> list[object]:
    """What native_plugins' ImageFilter ``lib`` answers to a fixed series of calls."""
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib)  # the trait is declared in the plugin alone
        f: Any = handle.proxy("Grey")
        image = {"width": 3, "height": 2, "stride": 4}
        pixels = bytearray([0, 10, 250, 99, 128, 64, 32, 99])
        answers: list[object] = [f.describe(), f.invert(image, pixels), bytes(pixels)]
        answers += [f.adjust(image, pixels, {"gain": 1.5, "offset": -20.0}), bytes(pixels)]
        with pytest.raises(PluginMethodError) as e:
            f.invert({"width": 5, "height": 2, "stride": 4}, pixels)
        sums: list[tuple[int, int]] = []
        answers += [
            (e.value.code, e.value.message),
            f.rows(image, bytes(pixels), lambda y, s: sums.append((y, s))),
            sums,
        ]
        with f.open("a label longer than thirty-one bytes") as session:
            answers += [f.feed(session, image, bytes(pixels)), f.feed(session, image, bytes(pixels[:5]))]
            answers.append(f.report(session))
        answers.append(manager.unload_by_path(lib))
    return answers


def test_the_rust_image_filter_answers_as_the_c_one(example_plugins: dict[str, Path]) -> None:
    require_language("rust")
    c = _filter_answers(example_plugins["image_filter"])
    assert _filter_answers(example_plugins["rust_image_filter"]) == c
    assert c[5] == (1, "2 rows of 4 bytes (5 pixels each) do not fit 8 bytes")
    assert c[6:8] == [0, [(0, 510)]]  # the callback returned None (false): the plugin stopped after one row
    assert c[-2:] == ["a label longer than thirty-one : 9 pixels, mean 188", {"ImageFilter": 1}]  # 31 bytes kept


def test_the_readmes_rust_example_compiles_warning_free(tmp_path: Path) -> None:
    require_language("rust")
    readme = (EXAMPLES.parent / "README.md").read_text()
    start = readme.index("   ```rust\n   mod plugin_abi;\n   use plugin_abi::{Image, ImageFilter")
    end = readme.index("   ```\n", start + 10)
    (tmp_path / "lib.rs").write_text("\n".join(line[3:] for line in readme[start:end].splitlines()[1:]) + "\n")
    shutil.copy(EXAMPLES / "rust_image_filter" / "src" / "plugin_abi.rs", tmp_path / "plugin_abi.rs")
    command = ["rustc", "--edition", "2021", "--crate-type", "cdylib", "-D", "warnings", "--emit=metadata"]
    proc = subprocess.run([*command, str(tmp_path / "lib.rs"), "-o", str(tmp_path / "lib.rmeta")], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


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
        pub struct Fragile;
        impl plugin_abi::Greeter for Fragile {
            fn greet(&self, _name: &str) -> String { String::new() }
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


@plugin_struct
class Token:
    """Fields named like Rust keywords: ``r#type``, ``r#move``."""

    type: U8
    move: F32


class dyn:
    """A handle kind named like a Rust keyword (``Self::r#dyn``)."""


@declare_trait(version=1)
class Keywords(Protocol):
    """Names that are Rust keywords (not C ones): the generator escapes them."""

    def match(self, type: CStr, fn: U16) -> Bool:
        """``r#match(r#type, r#fn)`` in Rust."""
        ...

    def make(self) -> Handle[dyn]: ...
    def loop(self, token: Ref[Token], counter: Handle[dyn]) -> Token: ...
    def unsafe(self, it: Drop[dyn]) -> None: ...


KEYWORDS_RS = r"""
mod plugin_abi;

#[derive(Default)]
pub struct Both;
impl plugin_abi::Keywords for Both {
    type r#dyn = u8;
    fn r#match(&self, r#type: &str, r#fn: u16) -> bool { !r#type.is_empty() && r#fn > 0 }
    fn make(&self) -> Option<u8> { Some(40) }
    fn r#loop(&self, token: &plugin_abi::Token, counter: &u8) -> plugin_abi::Token {
        plugin_abi::Token { r#type: token.r#type + *counter, r#move: -token.r#move }
    }
    fn r#unsafe(&self, _it: u8) {}
}
impl plugin_abi::Kitchen for Both {
    fn sum(&self, values: &[f64]) -> f64 { values.len() as f64 }
    fn scale(&self, _values: &mut [f32], _factor: f32) {}
    fn split(&self, _value: u64, _high: &mut u16, _negative: &mut bool) -> i8 { 0 }
    fn echo(&self, data: &[u8]) -> Vec<u8> { data.to_vec() }
    fn fill(&self, data: &mut [u8], _byte: i64) -> usize { data.len() }
    fn check(&self, _text: &str) -> Result<(), plugin_abi::PluginError> { Ok(()) }
    fn name(&self) -> String { String::new() }
}
plugin_impl!(Keywords, Both, Both);
plugin_impl!(Kitchen, Both, Both);
plugin_aggregates!(Keywords; Both);
plugin_unmaker_counter!(Kitchen);
"""


@pytest.mark.parametrize("edition", ["2021", "2024"])
def test_two_traits_keywords_and_the_vocabulary_compile_warning_free(tmp_path: Path, edition: str) -> None:
    require_language("rust")
    (tmp_path / "lib.rs").write_text(KEYWORDS_RS)
    (tmp_path / "plugin_abi.rs").write_text(generate_rust_module([Keywords, Kitchen]))
    out = tmp_path / "libboth.so"
    rustc = ["rustc", "--edition", edition, "--crate-type", "cdylib", "-D", "warnings"]
    proc = subprocess.run([*rustc, str(tmp_path / "lib.rs"), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with PluginManager() as manager:
        handles = {h.trait.name: h for h in manager.load_plugins(out)}  # the embedded declarations suffice
        assert set(handles) == {"Keywords", "Kitchen"}
        assert handles["Keywords"].is_plugin_owned and not handles["Kitchen"].is_plugin_owned
        both: Any = handles["Keywords"].proxy("Both")
        with both.make() as made:
            assert both.loop(Token(2, 0.5), made) == Token(42, -0.5)
        assert manager.unload_by_path(out) == {"Keywords": 1, "Kitchen": 1}
    # The whole vocabulary (Toolbox's crate, below) in this edition too: checked, not code-generated.
    (tmp_path / "toolbox").mkdir()
    (tmp_path / "toolbox" / "lib.rs").write_text(TOOLBOX_RS)
    (tmp_path / "toolbox" / "plugin_abi.rs").write_text(generate_rust_module([Toolbox]))
    meta = ["--emit=metadata", "-o", str(tmp_path / "toolbox.rmeta")]
    proc = subprocess.run([*rustc, str(tmp_path / "toolbox" / "lib.rs"), *meta], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---- the whole vocabulary, in C and in Rust ---------------------------------------------


@plugin_struct
class Vec2:
    """A point or a direction in the plane."""

    x: F32
    y: F32


@plugin_struct
class Shape:
    """A nested struct, fixed arrays of structs and of scalars, and fields of every width."""

    id: U16
    visible: Bool
    level: I8
    centre: Vec2
    corners: FixedArray[Vec2, 2]
    weights: FixedArray[F64, 3]
    mass: U64


class Counter:
    """The plugin-side object a Toolbox hands out."""


@declare_trait(version=1)
class Toolbox(Protocol):
    """Every marker of the vocabulary, implemented alike in C (TOOLBOX_C) and in Rust (TOOLBOX_RS)."""

    def inc_i8(self, v: I8) -> I8:
        """``v + 1``, wrapping (each scalar passed and returned)."""
        ...

    def inc_i16(self, v: I16) -> I16: ...
    def inc_i32(self, v: I32) -> I32: ...
    def inc_i64(self, v: I64) -> I64: ...
    def inc_u8(self, v: U8) -> U8: ...
    def inc_u16(self, v: U16) -> U16: ...
    def inc_u32(self, v: U32) -> U32: ...
    def inc_u64(self, v: U64) -> U64: ...
    def inc_size(self, v: Size) -> Size: ...

    def half_f32(self, v: F32) -> F32: ...
    def half_f64(self, v: F64) -> F64: ...
    def invert(self, v: Bool) -> Bool: ...

    def mix(
        self, a: I8, b: U16, c: F32, d: I64, e: Bool, f: F64, g: U8, h: Size, i: U32, j: I16, k: U64, q: I32,
        m: F32, n: F64,
    ) -> F64:  # fmt: skip
        """``a * 1 + b * 2 + ... + n * 14``: more arguments than registers, so some go on the stack."""
        ...

    def length(self, text: CStr) -> Size:
        """The bytes of ``text``; ``"panic"`` panics in Rust (a scalar result)."""
        ...

    def shout(self, text: CStr) -> OwnedStr:
        """``text`` upper-cased (ASCII) with ``!``; ``"panic"`` panics in Rust."""
        ...

    def checksum(self, data: Buffer) -> U32: ...
    def fill(self, data: MutBuffer, byte: U8) -> Size: ...

    def reversed(self, data: Buffer) -> OwnedBytes:
        """``data`` back to front; ``b"panic"`` panics in Rust."""
        ...

    def total(self, values: Array[F64]) -> F64: ...
    def count_true(self, flags: Array[Bool]) -> Size: ...

    def scale(self, values: MutArray[F32], factor: F32) -> None:
        """Every value times ``factor``; a factor of 13 panics in Rust (no result)."""
        ...

    def toggle(self, flags: MutArray[Bool]) -> None: ...

    def divide(self, a: I64, b: I64, quotient: Out[I64], remainder: Out[I64]) -> Status:
        """Truncating division; ``b == 0`` fails with status 3 (Rust panics for ``MIN / -1``)."""
        ...

    def classify(self, v: F64, negative: Out[Bool], truncated: Out[I32], half: Out[F32]) -> U8:
        """0 for zero, 1 positive, 2 negative, and three out-parameters."""
        ...

    def check(self, level: I32) -> Status:
        """A negative level fails with status 7; 13 panics in Rust."""
        ...

    def allocations(self) -> U64:
        """The owned results (strings, bytes, messages) the plugin allocated so far."""
        ...

    def releases(self) -> U64:
        """The calls of the registration's free_memory with a non-NULL pointer so far."""
        ...

    def each(self, values: Array[F32], visit: Callback[[U32, F32], Bool]) -> U32: ...
    def announce(self, say: Callback[[CStr], None]) -> None: ...

    def ask(self, oracle: Callback[[CStr, I64], F64]) -> F64:
        """``oracle("pi", 2) + oracle("e", 3)``."""
        ...

    def open(self, label: CStr) -> Handle[Counter]:
        """A new counter; ``"none"`` gives NULL, ``"panic"`` panics in Rust, and discarding a
        ``"fragile"`` one panics in Rust."""
        ...

    def add(self, counter: Handle[Counter], value: I64) -> I64: ...
    def report(self, counter: Handle[Counter]) -> OwnedStr: ...
    def discard(self, counter: Drop[Counter]) -> None: ...
    def alive(self) -> U32: ...

    def dot(self, a: Vec2, b: Vec2) -> F32: ...
    def midpoint(self, a: Vec2, b: Vec2) -> Vec2: ...

    def turn(self, v: Vec2, turned: Out[Vec2], shape: Out[Shape]) -> F32:
        """``v`` turned a quarter (out), a shape made from it (out: nested, fixed arrays), ``v.x + v.y``."""
        ...

    def weight(self, shape: Ref[Shape]) -> F64: ...
    def grow(self, shape: MutRef[Shape], by: F32) -> None: ...

    def mirror(self, shape: Shape) -> Shape:
        """``shape`` mirrored; an id of 13 panics in Rust (a struct result)."""
        ...


TOOLBOX_C = r"""
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_toolbox.h"

static uint64_t allocated, released;
static void counting_free(void *p) { if (p) released++; free(p); }
static void *owned(size_t n) { void *p = malloc(n ? n : 1); if (p) allocated++; return p; }
static char *counted(char *p) { if (p) allocated++; return p; }

#define INC(name, type) static type name(void *self, type v) { (void)self; return (type)((uint64_t)v + 1u); }
INC(inc_i8, int8_t) INC(inc_i16, int16_t) INC(inc_i32, int32_t) INC(inc_i64, int64_t)
INC(inc_u8, uint8_t) INC(inc_u16, uint16_t) INC(inc_u32, uint32_t) INC(inc_u64, uint64_t) INC(inc_size, size_t)
static float half_f32(void *self, float v) { (void)self; return v / 2; }
static double half_f64(void *self, double v) { (void)self; return v / 2; }
static _Bool invert(void *self, _Bool v) { (void)self; return !v; }
static double mix(void *self, int8_t a, uint16_t b, float c, int64_t d, _Bool e, double f, uint8_t g, size_t h,
                  uint32_t i, int16_t j, uint64_t k, int32_t q, float m, double n) {
    (void)self;
    return a * 1.0 + b * 2.0 + c * 3.0 + (double)d * 4.0 + e * 5.0 + f * 6.0 + g * 7.0 + (double)h * 8.0 + i * 9.0
           + j * 10.0 + (double)k * 11.0 + q * 12.0 + m * 13.0 + n * 14.0;
}

static size_t length(void *self, const char *text) { (void)self; return strlen(text); }
static char *shout(void *self, const char *text) {
    (void)self;
    size_t n = strlen(text);
    char *out = owned(n + 2);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) out[i] = (char)toupper((unsigned char)text[i]);
    out[n] = '!';
    out[n + 1] = 0;
    return out;
}
static uint32_t checksum(void *self, const uint8_t *d, size_t n) {
    (void)self;
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++) s += d[i];
    return s;
}
static size_t fill(void *self, uint8_t *d, size_t n, uint8_t byte) { (void)self; memset(d, byte, n); return n; }
static PluginBytes reversed(void *self, const uint8_t *d, size_t n) {
    (void)self;
    PluginBytes out = {NULL, 0};
    if (n == 0 || !(out.data = owned(n))) return out;
    for (size_t i = 0; i < n; i++) out.data[i] = d[n - 1 - i];
    out.len = n;
    return out;
}

static double total(void *self, const double *v, size_t n) {
    (void)self;
    double t = 0;
    for (size_t i = 0; i < n; i++) t += v[i];
    return t;
}
static size_t count_true(void *self, const _Bool *f, size_t n) {
    (void)self;
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += f[i];
    return c;
}
static void scale(void *self, float *v, size_t n, float factor) {
    (void)self;
    for (size_t i = 0; i < n; i++) v[i] *= factor;
}
static void toggle(void *self, _Bool *f, size_t n) { (void)self; for (size_t i = 0; i < n; i++) f[i] = !f[i]; }

static int32_t divide(void *self, int64_t a, int64_t b, int64_t *q, int64_t *r, char **error) {
    (void)self;
    if (b == 0) {
        *error = counted(plugin_string_format("division of %lld by zero", (long long)a));
        return 3;
    }
    *q = a / b;
    *r = a % b;
    return 0;
}
static uint8_t classify(void *self, double v, _Bool *negative, int32_t *truncated, float *half) {
    (void)self;
    *negative = v < 0;
    *truncated = (int32_t)v;
    *half = (float)(v / 2);
    return v == 0 ? 0 : v > 0 ? 1 : 2;
}
static int32_t check(void *self, int32_t level, char **error) {
    (void)self;
    if (level >= 0) return 0;
    *error = counted(plugin_string_format("level %d is below zero", (int)level));
    return 7;
}
static uint64_t allocations(void *self) { (void)self; return allocated; }
static uint64_t releases(void *self) { (void)self; return released; }

static uint32_t each(void *self, const float *v, size_t n, _Bool (*visit)(void *, uint32_t, float), void *ctx) {
    (void)self;
    uint32_t i = 0;
    while (i < n && visit(ctx, i, v[i])) i++;
    return i;
}
static void announce(void *self, void (*say)(void *, const char *), void *ctx) {
    (void)self;
    say(ctx, "hello");
    say(ctx, "again");
}
static double ask(void *self, double (*oracle)(void *, const char *, int64_t), void *ctx) {
    (void)self;
    return oracle(ctx, "pi", 2) + oracle(ctx, "e", 3);
}

typedef struct { char label[32]; int64_t total; } Tally;
static uint32_t alive_counters;
static void *open_counter(void *self, const char *label) {
    (void)self;
    if (strcmp(label, "none") == 0) return NULL;
    Tally *t = calloc(1, sizeof *t);
    if (t) {
        strncpy(t->label, label, sizeof t->label - 1);
        alive_counters++;
    }
    return t;
}
static int64_t add(void *self, void *counter, int64_t v) { (void)self; return ((Tally *)counter)->total += v; }
static char *report(void *self, void *counter) {
    (void)self;
    const Tally *t = counter;
    return counted(plugin_string_format("%s: %lld", t->label, (long long)t->total));
}
static void discard(void *self, void *counter) { (void)self; alive_counters--; free(counter); }
static uint32_t alive(void *self) { (void)self; return alive_counters; }

static float dot(void *self, Vec2 a, Vec2 b) { (void)self; return a.x * b.x + a.y * b.y; }
static float turn(void *self, Vec2 v, Vec2 *turned, Shape *shape) {
    (void)self;
    turned->x = -v.y;
    turned->y = v.x;
    shape->id = 9;
    shape->centre = v;
    shape->corners[1] = *turned;
    shape->weights[2] = 0.5;
    return v.x + v.y;
}
static Vec2 midpoint(void *self, Vec2 a, Vec2 b) {
    (void)self;
    Vec2 m = {(a.x + b.x) / 2, (a.y + b.y) / 2};
    return m;
}
static double weight(void *self, const Shape *s) {
    (void)self;
    double w = (double)s->id + s->level + (double)s->mass + s->centre.x + s->centre.y + s->corners[0].x
               + s->corners[1].y + s->weights[0] + s->weights[1] + s->weights[2];
    return s->visible ? w : -w;
}
static void grow(void *self, Shape *s, float by) {
    (void)self;
    s->id++;
    s->level--;
    s->visible = !s->visible;
    s->mass += 1000;
    s->corners[0].x -= by;
    s->corners[0].y -= by;
    s->corners[1].x += by;
    s->corners[1].y += by;
    for (int i = 0; i < 3; i++) s->weights[i] *= 2;
}
static Shape mirror(void *self, Shape s) {
    (void)self;
    Shape m = s;
    m.id = (uint16_t)(s.id + 100);
    m.level = (int8_t)-s.level;
    m.visible = !s.visible;
    m.mass = s.mass * 2;
    m.centre.x = -s.centre.x;
    m.corners[0].x = -s.corners[0].x;
    m.corners[1].x = -s.corners[1].x;
    m.weights[0] = s.weights[2];
    m.weights[2] = s.weights[0];
    return m;
}

PLUGIN_IMPL(Toolbox, Tools, .inc_i8 = inc_i8, .inc_i16 = inc_i16, .inc_i32 = inc_i32, .inc_i64 = inc_i64,
            .inc_u8 = inc_u8, .inc_u16 = inc_u16, .inc_u32 = inc_u32, .inc_u64 = inc_u64, .inc_size = inc_size,
            .half_f32 = half_f32, .half_f64 = half_f64, .invert = invert, .mix = mix, .length = length,
            .shout = shout, .checksum = checksum, .fill = fill, .reversed = reversed, .total = total,
            .count_true = count_true, .scale = scale, .toggle = toggle, .divide = divide, .classify = classify,
            .check = check, .allocations = allocations, .releases = releases, .each = each, .announce = announce,
            .ask = ask, .open = open_counter, .add = add, .report = report, .discard = discard, .alive = alive,
            .dot = dot, .midpoint = midpoint, .weight = weight, .grow = grow, .mirror = mirror, .turn = turn)
PLUGIN_AGGREGATES(Toolbox)
"""

TOOLBOX_RS = r"""
mod plugin_abi;
use plugin_abi::{PluginError, Shape, Toolbox, Vec2, PLUGIN_OWNED_ALLOCATED, PLUGIN_OWNED_RELEASED};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// The counters alive, of both kinds (their Drop counts down).
static ALIVE: AtomicU32 = AtomicU32::new(0);

/// What a counter handle is; two kinds, so that two implementations hand out two types.
pub trait Tally: Send + Sync + 'static {
    fn new(label: &str) -> Self;
    fn add(&self, value: i64) -> i64;
    fn report(&self) -> String;
    fn fragile(&self) -> bool { false }
}

pub struct Named { label: String, total: AtomicI64 }

impl Tally for Named {
    fn new(label: &str) -> Self {
        ALIVE.fetch_add(1, Ordering::SeqCst);
        Named { label: label.to_string(), total: AtomicI64::new(0) }
    }
    fn add(&self, value: i64) -> i64 { self.total.fetch_add(value, Ordering::SeqCst) + value }
    fn report(&self) -> String { format!("{}: {}", self.label, self.total.load(Ordering::SeqCst)) }
    fn fragile(&self) -> bool { self.label == "fragile" }
}

impl Drop for Named {
    fn drop(&mut self) { ALIVE.fetch_sub(1, Ordering::SeqCst); }
}

pub struct Anonymous(AtomicI64);

impl Tally for Anonymous {
    fn new(_label: &str) -> Self { ALIVE.fetch_add(1, Ordering::SeqCst); Anonymous(AtomicI64::new(0)) }
    fn add(&self, value: i64) -> i64 { self.0.fetch_add(value, Ordering::SeqCst) + value }
    fn report(&self) -> String { format!("?: {}", self.0.load(Ordering::SeqCst)) }
}

impl Drop for Anonymous {
    fn drop(&mut self) { ALIVE.fetch_sub(1, Ordering::SeqCst); }
}

pub struct Tools<C>(PhantomData<fn() -> C>);

impl<C> Default for Tools<C> {
    fn default() -> Self { Tools(PhantomData) }
}

impl<C: Tally> Toolbox for Tools<C> {
    type Counter = C;

    fn inc_i8(&self, v: i8) -> i8 { v.wrapping_add(1) }
    fn inc_i16(&self, v: i16) -> i16 { v.wrapping_add(1) }
    fn inc_i32(&self, v: i32) -> i32 { v.wrapping_add(1) }
    fn inc_i64(&self, v: i64) -> i64 { v.wrapping_add(1) }
    fn inc_u8(&self, v: u8) -> u8 { v.wrapping_add(1) }
    fn inc_u16(&self, v: u16) -> u16 { v.wrapping_add(1) }
    fn inc_u32(&self, v: u32) -> u32 { v.wrapping_add(1) }
    fn inc_u64(&self, v: u64) -> u64 { v.wrapping_add(1) }
    fn inc_size(&self, v: usize) -> usize { v.wrapping_add(1) }
    fn half_f32(&self, v: f32) -> f32 { v / 2.0 }
    fn half_f64(&self, v: f64) -> f64 { v / 2.0 }
    fn invert(&self, v: bool) -> bool { !v }
    fn mix(&self, a: i8, b: u16, c: f32, d: i64, e: bool, f: f64, g: u8, h: usize, i: u32, j: i16, k: u64, q: i32,
           m: f32, n: f64) -> f64 {
        a as f64 * 1.0 + b as f64 * 2.0 + c as f64 * 3.0 + d as f64 * 4.0 + e as u8 as f64 * 5.0 + f * 6.0
            + g as f64 * 7.0 + h as f64 * 8.0 + i as f64 * 9.0 + j as f64 * 10.0 + k as f64 * 11.0
            + q as f64 * 12.0 + m as f64 * 13.0 + n * 14.0
    }

    fn length(&self, text: &str) -> usize {
        if text == "panic" { panic!("length asked to panic"); }
        text.len()
    }
    fn shout(&self, text: &str) -> String {
        if text == "panic" { panic!("shout asked to panic"); }
        format!("{}!", text.to_ascii_uppercase())
    }
    fn checksum(&self, data: &[u8]) -> u32 { data.iter().fold(0u32, |s, &b| s.wrapping_add(b as u32)) }
    fn fill(&self, data: &mut [u8], byte: u8) -> usize { data.fill(byte); data.len() }
    fn reversed(&self, data: &[u8]) -> Vec<u8> {
        if data == b"panic" { panic!("reversed asked to panic"); }
        data.iter().rev().copied().collect()
    }

    fn total(&self, values: &[f64]) -> f64 { values.iter().fold(0.0, |t, v| t + v) }
    fn count_true(&self, flags: &[bool]) -> usize { flags.iter().filter(|&&f| f).count() }
    fn scale(&self, values: &mut [f32], factor: f32) {
        if factor == 13.0 { panic!("scale asked to panic"); }
        for v in values.iter_mut() { *v *= factor; }
    }
    fn toggle(&self, flags: &mut [bool]) { for f in flags.iter_mut() { *f = !*f; } }

    fn divide(&self, a: i64, b: i64, quotient: &mut i64, remainder: &mut i64) -> Result<(), PluginError> {
        if b == 0 { return Err(PluginError::new(3, format!("division of {a} by zero"))); }
        *quotient = a / b; // i64::MIN / -1 panics: attempt to divide with overflow
        *remainder = a % b;
        Ok(())
    }
    fn classify(&self, v: f64, negative: &mut bool, truncated: &mut i32, half: &mut f32) -> u8 {
        *negative = v < 0.0;
        *truncated = v as i32;
        *half = (v / 2.0) as f32;
        if v == 0.0 { 0 } else if v > 0.0 { 1 } else { 2 }
    }
    fn check(&self, level: i32) -> Result<(), PluginError> {
        if level == 13 { panic!("check asked to panic"); }
        if level < 0 { return Err(PluginError::new(7, format!("level {level} is below zero"))); }
        Ok(())
    }
    fn allocations(&self) -> u64 { PLUGIN_OWNED_ALLOCATED.load(Ordering::SeqCst) as u64 }
    fn releases(&self) -> u64 { PLUGIN_OWNED_RELEASED.load(Ordering::SeqCst) as u64 }

    fn each(&self, values: &[f32], visit: &dyn Fn(u32, f32) -> bool) -> u32 {
        let mut i = 0;
        while i < values.len() && visit(i as u32, values[i]) { i += 1; }
        i as u32
    }
    fn announce(&self, say: &dyn Fn(&str)) { say("hello"); say("again"); }
    fn ask(&self, oracle: &dyn Fn(&str, i64) -> f64) -> f64 { oracle("pi", 2) + oracle("e", 3) }

    fn open(&self, label: &str) -> Option<C> {
        match label {
            "panic" => panic!("open asked to panic"),
            "none" => None,
            _ => Some(C::new(label)),
        }
    }
    fn add(&self, counter: &C, value: i64) -> i64 { counter.add(value) }
    fn report(&self, counter: &C) -> String { counter.report() }
    fn discard(&self, counter: C) {
        if counter.fragile() { panic!("discard asked to panic"); } // the unwind drops it all the same
    }
    fn alive(&self) -> u32 { ALIVE.load(Ordering::SeqCst) }

    fn dot(&self, a: Vec2, b: Vec2) -> f32 { a.x * b.x + a.y * b.y }
    fn midpoint(&self, a: Vec2, b: Vec2) -> Vec2 { Vec2 { x: (a.x + b.x) / 2.0, y: (a.y + b.y) / 2.0 } }
    fn turn(&self, v: Vec2, turned: &mut Vec2, shape: &mut Shape) -> f32 {
        *turned = Vec2 { x: -v.y, y: v.x };
        shape.id = 9;
        shape.centre = v;
        shape.corners[1] = *turned;
        shape.weights[2] = 0.5;
        v.x + v.y
    }
    fn weight(&self, s: &Shape) -> f64 {
        let w = s.id as f64 + s.level as f64 + s.mass as f64 + s.centre.x as f64 + s.centre.y as f64
            + s.corners[0].x as f64 + s.corners[1].y as f64 + s.weights[0] + s.weights[1] + s.weights[2];
        if s.visible { w } else { -w }
    }
    fn grow(&self, s: &mut Shape, by: f32) {
        s.id += 1;
        s.level -= 1;
        s.visible = !s.visible;
        s.mass += 1000;
        s.corners[0].x -= by;
        s.corners[0].y -= by;
        s.corners[1].x += by;
        s.corners[1].y += by;
        for w in s.weights.iter_mut() { *w *= 2.0; }
    }
    fn mirror(&self, s: Shape) -> Shape {
        if s.id == 13 { panic!("mirror asked to panic"); }
        let mut m = s;
        m.id = s.id.wrapping_add(100);
        m.level = s.level.wrapping_neg();
        m.visible = !s.visible;
        m.mass = s.mass.wrapping_mul(2);
        m.centre.x = -s.centre.x;
        m.corners[0].x = -s.corners[0].x;
        m.corners[1].x = -s.corners[1].x;
        m.weights = [s.weights[2], s.weights[1], s.weights[0]];
        m
    }
}

plugin_impl!(Toolbox, Tools, Tools<Named>);
plugin_impl!(Toolbox, Spare, Tools<Anonymous>); // another implementation, another handle type
plugin_aggregates!(Toolbox; Tools<Named>, Tools<Anonymous>);
"""

#: The languages the Toolbox is written in: each test below expects the same answers of both.
TOOLBOX_LANGUAGES = ("c", "rust")


@pytest.fixture(scope="module")
def toolbox_library(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``toolbox_library(language)``: the Toolbox plugin in C or in Rust (-Werror / -D warnings), built once."""
    built: dict[str, Path] = {}

    def build(language: str) -> Path:
        require_language(language)
        if language not in built:
            if language == "c":
                headers = tmp_path_factory.mktemp("toolbox-headers")
                write_trait_headers(headers, [Toolbox])
                # The registration's free_memory counts its calls, so a test sees every release.
                defines = ("PLUGIN_FREE_MEMORY=counting_free",)
                built[language] = compile_plugin("toolbox_c", TOOLBOX_C, include_dirs=(headers,), defines=defines)
            else:
                # With debug assertions, a reference the thunks made from a NULL or misaligned
                # pointer aborts (std's checks of unsafe preconditions) instead of going unnoticed.
                sources = {"lib.rs": TOOLBOX_RS, "plugin_abi.rs": generate_rust_module([Toolbox])}
                built[language] = compile_plugin("toolbox_rs", sources, cflags=("-C", "debug-assertions=on"))
        return built[language]

    return build


@pytest.fixture(params=TOOLBOX_LANGUAGES)
def toolbox(request: pytest.FixtureRequest, toolbox_library: Callable[[str], Path]) -> Iterator[Any]:
    """The ``Tools`` implementation of Toolbox through the host's proxy: in C, then in Rust."""
    with PluginManager() as manager:
        [handle] = manager.load_plugins(toolbox_library(request.param), Toolbox)
        yield handle.proxy("Tools")


def _shape(**changes: Any) -> Shape:
    fields: dict[str, Any] = {
        "id": 1,
        "visible": True,
        "level": -2,
        "centre": Vec2(1.0, 2.0),
        "corners": [Vec2(0.0, 0.5), Vec2(4.0, 3.0)],
        "weights": [0.5, 1.0, 2.0],
        "mass": 10,
    }
    return Shape(**(fields | changes))


def test_every_scalar_crosses_at_its_width(toolbox: Any) -> None:
    t = toolbox
    assert (t.inc_i8(127), t.inc_i16(32767), t.inc_i32(2**31 - 1), t.inc_i64(2**63 - 1)) == (
        -(2**7), -(2**15), -(2**31), -(2**63),
    )  # fmt: skip
    assert (t.inc_u8(255), t.inc_u16(65535), t.inc_u32(2**32 - 1), t.inc_u64(2**64 - 1)) == (0, 0, 0, 0)
    assert (t.inc_i8(-1), t.inc_u64(2**63), t.inc_size(41)) == (0, 2**63 + 1, 42)
    assert (t.half_f32(3.0), t.half_f64(-1e300), t.invert(True), t.invert(False)) == (1.5, -1e300 / 2, False, True)
    args = [-3, 60000, 0.5, -(2**40), True, 2.25, 200, 7, 4_000_000_000, -300, 2**50, -70000, -1.5, 1e10]
    expected = 0.0
    for i, value in enumerate(args):  # in C's order (sum() would compensate the rounding)
        expected += float(value) * (i + 1)
    assert t.mix(*args) == expected  # 14 arguments: past the registers, on the stack


def test_strings_and_byte_buffers(toolbox: Any) -> None:
    t = toolbox
    assert (t.length("héllo"), t.length("")) == (6, 0)  # UTF-8 bytes
    assert (t.shout("héllo, world"), t.shout("")) == ("HéLLO, WORLD!", "!")
    assert (t.checksum(b"\x01\x02\xff"), t.checksum(b"")) == (258, 0)
    buf = bytearray(5)
    assert t.fill(memoryview(buf)[1:4], 0x2A) == 3 and buf == b"\x00***\x00"
    assert (t.reversed(b"abc"), t.reversed(bytearray(b"xy")), t.reversed(b"")) == (b"cba", b"yx", b"")


def test_arrays_in_and_in_out(toolbox: Any) -> None:
    t = toolbox
    assert (t.total(array.array("d", [1.5, 2.5, -1.0])), t.total(array.array("d"))) == (3.0, 0.0)
    values = array.array("f", [1.0, -2.0, 0.5])
    assert t.scale(values, 4.0) is None and values.tolist() == [4.0, -8.0, 2.0]  # in place
    flags = bytearray([1, 0, 1, 1])
    assert t.count_true(memoryview(flags).cast("?")) == 3
    assert t.toggle(memoryview(flags).cast("?")) is None and list(flags) == [0, 1, 0, 0]


def test_out_parameters_and_status_results(toolbox: Any) -> None:
    t = toolbox
    assert t.divide(17, -5) == (-3, 2)  # truncating, in C and in Rust
    with pytest.raises(PluginMethodError, match=r"Tools\.divide failed with status 3: division of 4 by zero") as e:
        t.divide(4, 0)
    assert (e.value.code, e.value.message) == (3, "division of 4 by zero")
    assert t.classify(-7.5) == (2, True, -7, -3.75)  # the result, then the out-parameters in order
    assert t.classify(0.0) == (0, False, 0, 0.0)
    assert t.check(5) is None
    with pytest.raises(PluginMethodError, match="failed with status 7: level -3 is below zero"):
        t.check(-3)


def test_callbacks_run_during_the_call(toolbox: Any) -> None:
    t = toolbox
    seen: list[tuple[int, float]] = []

    def visit(index: int, value: float) -> bool:
        seen.append((index, value))
        return value < 2.0

    assert t.each(array.array("f", [0.5, 1.5, 2.5, 3.5]), visit) == 2
    assert seen == [(0, 0.5), (1, 1.5), (2, 2.5)]
    said: list[str] = []
    assert t.announce(said.append) is None and said == ["hello", "again"]
    asked: list[tuple[str, int]] = []
    assert t.ask(lambda name, n: asked.append((name, n)) or n * 10.0) == 50.0
    assert asked == [("pi", 2), ("e", 3)]
    with pytest.raises(KeyError, match="from the oracle"):
        t.ask(lambda name, n: {}["from the oracle"])  # raised again once the plugin returned


def test_handles_live_in_the_plugin_and_are_destroyed_once(toolbox: Any) -> None:
    t = toolbox
    before = t.alive()
    with t.open("apples") as counter:
        assert (t.add(counter, 40), t.add(counter, 2)) == (40, 42)
        assert t.report(counter) == "apples: 42" and t.alive() == before + 1
    assert t.alive() == before and not counter.is_alive
    explicit = t.open("pears")
    t.discard(explicit)  # the trait's Drop method: the finalizer then does nothing
    assert t.alive() == before
    collected = t.open("plums")
    del collected
    gc.collect()
    assert t.alive() == before
    with pytest.raises(PluginCallError, match=r"Toolbox\.Tools\.open returned NULL"):
        t.open("none")  # NULL in C, None in Rust
    assert t.alive() == before


def test_structs_by_value_by_pointer_nested_and_returned(toolbox: Any) -> None:
    t = toolbox
    assert t.dot(Vec2(1.5, 2.0), Vec2(4.0, -0.5)) == 5.0
    assert t.midpoint(Vec2(0.0, 0.0), Vec2(3.0, -4.0)) == Vec2(1.5, -2.0)  # a small struct returned
    total, turned, made = t.turn(Vec2(1.0, 2.0))  # Out[Vec2], Out[Shape]: zeroed, written, returned as objects
    assert (total, turned) == (3.0, Vec2(-2.0, 1.0))
    zero = Vec2(0.0, 0.0)
    assert made == Shape(9, False, 0, Vec2(1.0, 2.0), [zero, Vec2(-2.0, 1.0)], [0.0, 0.0, 0.5], 0)
    assert (t.weight(_shape()), t.weight(_shape(visible=False))) == (18.5, -18.5)
    shape = _shape()
    assert t.grow(shape, 0.5) is None
    grown = _shape(id=2, visible=False, level=-3, corners=[Vec2(-0.5, 0.0), Vec2(4.5, 3.5)], weights=[1.0, 2.0, 4.0])
    assert shape == dataclasses.replace(grown, mass=1010)  # the plugin's writes, copied back
    mirrored = _shape(id=101, visible=False, level=2, centre=Vec2(-1.0, 2.0), weights=[2.0, 1.0, 0.5], mass=20)
    assert t.mirror(_shape()) == dataclasses.replace(mirrored, corners=[Vec2(-0.0, 0.5), Vec2(-4.0, 3.0)])


def test_owned_results_are_released_once_with_the_plugins_free_memory(toolbox: Any) -> None:
    t = toolbox
    allocated, released = t.allocations(), t.releases()
    assert allocated == released  # everything the host was given so far, released
    assert (t.shout("a"), t.reversed(b"xy")) == ("A!", b"yx")
    with pytest.raises(PluginMethodError):
        t.check(-1)  # its message
    with t.open("x") as counter:
        assert t.report(counter) == "x: 0"
    assert t.reversed(b"") == b"" and t.check(1) is None  # {NULL, 0} and success: nothing to release
    assert (t.allocations() - allocated, t.releases() - released) == (4, 4)


@pytest.mark.parametrize("language", TOOLBOX_LANGUAGES)
def test_the_unmaker_counter_equals_the_registrations_and_objects_die_first(
    language: str, toolbox_library: Callable[[str], Path]
) -> None:
    lib = toolbox_library(language)
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, Toolbox)
        assert sorted(handle.type_names) == (["Tools"] if language == "c" else ["Spare", "Tools"])
        kept = handle.proxy("Tools").open("kept")
        result = manager.unload_by_path(lib)
        assert result == {"Toolbox": len(handle.type_names)} and result.unmapped
        assert not kept.is_alive  # destroyed by the release, before the unmakers ran


@pytest.mark.parametrize("language", TOOLBOX_LANGUAGES)
def test_the_descriptor_and_the_embedded_declaration_are_the_traits(
    language: str, toolbox_library: Callable[[str], Path]
) -> None:
    lib = toolbox_library(language)
    problems, checks = check_library(scan_library(lib))
    assert [p for p in problems if p.severity == "error"] == []
    assert checks["Toolbox"].compatibility == "identical"
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib)  # no trait given: the library's own declaration
        assert handle.trait == Toolbox.__plugin_trait__  # type: ignore[attr-defined]


def test_the_generated_trait_is_a_safe_rust_surface() -> None:
    text = generate_rust_module([Toolbox])
    for line in [
        "pub trait Toolbox: Send + Sync {",
        "    type Counter: Send + Sync + 'static;",
        "    fn shout(&self, text: &str) -> String;",
        "    fn fill(&self, data: &mut [u8], byte: u8) -> usize;",
        "    fn scale(&self, values: &mut [f32], factor: f32);",
        "    fn divide(&self, a: i64, b: i64, quotient: &mut i64, remainder: &mut i64) -> Result<(), PluginError>;",
        "    fn each(&self, values: &[f32], visit: &dyn Fn(u32, f32) -> bool) -> u32;",
        "    fn announce(&self, say: &dyn Fn(&str));",
        "    fn open(&self, label: &str) -> Option<Self::Counter>;",
        "    fn add(&self, counter: &Self::Counter, value: i64) -> i64;",
        "    fn discard(&self, counter: Self::Counter);",
        "    fn weight(&self, shape: &Shape) -> f64;",
        "    fn grow(&self, shape: &mut Shape, by: f32);",
        "    fn mirror(&self, shape: Shape) -> Shape;",
        "    pub corners: [Vec2; 2],",
        # the vtable slot spells the C header's `uint32_t (*each)(void *self, const float *values,
        # size_t values_len, _Bool (*visit)(void *, uint32_t, float), void *visit_context)`
        '    pub each: Option<unsafe extern "C" fn(*mut c_void, *const f32, usize, '
        'Option<unsafe extern "C" fn(*mut c_void, u32, f32) -> bool>, *mut c_void) -> u32>,',
    ]:
        assert line in text, line


def test_a_struct_layout_the_compiler_disagrees_with_does_not_compile(tmp_path: Path) -> None:
    require_language("rust")
    text = generate_rust_module([Toolbox])
    layout = struct_of(Shape)
    assert layout is not None
    for f in layout.fields:  # every field's offset and the size, as the C header's _Static_asserts
        assert f"offset_of!(Shape, {f.name}) == {layout.offset(f.name)}, " in text
    assert f'assert!(std::mem::size_of::<Shape>() == {layout.size}, "Shape: the host expects' in text
    offset = layout.offset("mass")
    line = f'offset_of!(Shape, mass) == {offset}, "Shape.mass: the host expects offset {offset}"'
    wrong = f'offset_of!(Shape, mass) == {offset + 8}, "Shape.mass: the host expects offset {offset + 8}"'
    (tmp_path / "plugin_abi.rs").write_text(text.replace(line, wrong))  # a host that lays Shape out otherwise
    (tmp_path / "lib.rs").write_text("mod plugin_abi;\n")
    proc = subprocess.run(
        ["rustc", "--edition", "2021", "--crate-type", "cdylib", str(tmp_path / "lib.rs"), "-o",
         str(tmp_path / "libwrong.so")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"Shape.mass: the host expects offset {offset + 8}" in proc.stderr


def test_a_struct_named_like_the_modules_own_types_is_refused_by_name() -> None:
    vec = plugin_struct(type("Vec", (), {"__annotations__": {"len": I32}}))

    def take(self: object, v: object) -> None: ...

    take.__annotations__ = {"v": vec, "return": None}
    clashing = declare_trait(version=1)(type("Clashing", (), {"take": take}))
    with pytest.raises(ValueError, match="Clashing: struct Vec has a name the generated Rust module uses"):
        generate_rust_module([clashing])


# ---- what only the Rust side does -----------------------------------------------------------


def _call_raw(handle: Any, method: str, c_type: str, *args: object, of: str = "Tools") -> Any:
    """Call vtable slot ``method`` of implementation ``of`` directly (``None`` arguments are NULL): what
    the host never passes."""
    ffi = cffi.FFI()
    reg = next(r for r in handle.registration_set.registrations if r.type_name == of)
    fn = ffi.cast(c_type, reg.methods[method])
    return fn(ffi.cast("void *", reg.instance), *(ffi.NULL if a is None else a for a in args))


def _misaligned(fmt: str, *values: float) -> memoryview:
    """A view one byte into a buffer: its items are misaligned (a Rust reference may not be)."""
    return memoryview(bytearray(b"\0" + struct.pack(f"={len(values)}{fmt}", *values)))[1:].cast(fmt)


def _scaled_misaligned(t: Any) -> list[float]:
    values = _misaligned("f", 1.0, 2.0)
    t.scale(values, -2.0)
    return values.tolist()


#: What the host never makes of a Rust plugin, in a child (a broken thunk would abort it): a panic
#: under each result kind, and arguments no Rust reference may be; what the host sees of each (a
#: value's repr, or the error raised).
PANICS: dict[str, tuple[str, tuple[str, str]]] = {
    "Size": ("t.length('panic')", ("value", "0")),
    "None": ("t.scale(array.array('f', [1.0]), 13.0)", ("value", "None")),
    "OwnedStr": ("t.shout('panic')", ("PluginCallError", "Toolbox.Tools.shout returned NULL")),
    "OwnedBytes": ("t.reversed(b'panic')", ("PluginCallError", "Toolbox.Tools.reversed returned NULL")),
    "Status": ("t.check(13)", ("PluginMethodError", "check failed with status -1: panic: check asked to panic")),
    "Status, an overflow": (
        "t.divide(-2**63, -1)",
        ("PluginMethodError", "divide failed with status -1: panic: attempt to divide with overflow"),
    ),
    "Handle": ("t.open('panic')", ("PluginCallError", "Toolbox.Tools.open returned NULL")),
    "struct": (
        "t.mirror(_shape(id=13))",
        ("value", repr(Shape(0, False, 0, Vec2(0.0, 0.0), [Vec2(0.0, 0.0)] * 2, [0.0] * 3, 0))),
    ),
    "Drop (the object is dropped all the same)": ("(t.discard(t.open('fragile')), t.alive())", ("value", "(None, 0)")),
    "another implementation's handle": (
        "spare.report(t.open('theirs'))",
        ("CallArgumentError", "counter: the Counter object belongs to another implementation"),  # the host's check
    ),
    "another implementation's handle, passed anyway": (  # the module's own check: a type-tagged box
        "not _call_raw(handle, 'report', 'char *(*)(void *, void *)', t.open('theirs')._ptr, of='Spare')",  # NULL
        ("value", "True"),
    ),
    "NULL Ref[Shape]": ("_call_raw(handle, 'weight', 'double(*)(void *, void *)', None)", ("value", "0.0")),
    "NULL Handle[Counter]": (
        "_call_raw(handle, 'add', 'int64_t(*)(void *, void *, int64_t)', None, 5)",
        ("value", "0"),
    ),
    "a misaligned Array[F64] (copied)": ("t.total(_misaligned('d', 1.5, 2.5, 3.0))", ("value", "7.0")),
    "a misaligned MutArray[F32] (copied back)": ("_scaled_misaligned(t)", ("value", "[-2.0, -4.0]")),
    "afterwards": ("t.shout('still here')", ("value", "'STILL HERE!'")),
}


@pytest.fixture(scope="module")
def rust_panics(toolbox_library: Callable[[str], Path]) -> tuple[dict[str, list[str]], str]:
    """What the host saw of each panic in ``PANICS``, run in a child (an unwind into C would abort it)."""
    lib = str(toolbox_library("rust"))
    calls = {name: call for name, (call, _) in PANICS.items()}
    proc = run_isolated(
        f"""
        import array, json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_rust import Toolbox, _call_raw, _misaligned, _scaled_misaligned, _shape
        from plugin_host import PluginManager
        seen = {{}}
        with PluginManager() as manager:
            [handle] = manager.load_plugins({lib!r}, Toolbox)
            t, spare = handle.proxy("Tools"), handle.proxy("Spare")
            for name, call in {calls!r}.items():
                try:
                    seen[name] = ["value", repr(eval(call))]
                except Exception as e:
                    seen[name] = [type(e).__name__, str(e)]
            seen["unmapped"] = ["value", repr(manager.unload_by_path({lib!r}).unmapped)]
        print(json.dumps(seen))
        """,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


@pytest.mark.parametrize("kind", PANICS)
def test_a_panic_under_each_result_kind_is_its_error_path_and_odd_pointers_are_safe(
    rust_panics: tuple[dict[str, list[str]], str], kind: str
) -> None:
    seen, stderr = rust_panics
    outcome, detail = PANICS[kind][1]
    assert seen[kind][0] == outcome and detail in seen[kind][1], seen[kind]
    assert seen["unmapped"] == ["value", "True"]  # and the library unloaded for real afterwards
    assert "asked to panic" in stderr  # Rust's panic hook still reports each panic


def test_free_memory_is_the_c_allocators_free(toolbox_library: Callable[[str], Path]) -> None:
    # As in C (plugin_annotations.h): results are malloc'd, free_memory is free(). In a child: a
    # free_memory of another allocator would crash on these blocks.
    proc = run_isolated(
        f"""
        import ctypes, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_rust import Toolbox
        from plugin_host import PluginManager
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        with PluginManager() as manager:
            [handle] = manager.load_plugins({str(toolbox_library("rust"))!r}, Toolbox)
            free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(handle.registration_set.registrations[0].free_memory)
            tools = handle.proxy("Tools")
            before = tools.releases()
            for size in range(1, 2000):
                free(libc.malloc(size))
            free(None)
            print(tools.releases() - before)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1999"]


def test_rust_reads_a_bool_other_than_0_or_1_as_true(toolbox_library: Callable[[str], Path]) -> None:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(toolbox_library("rust"), Toolbox)
        t: Any = handle.proxy("Tools")
        flags = bytearray([2, 0, 255, 1])  # what a Rust bool may not hold: the thunk reads them as true
        assert t.count_true(memoryview(flags).cast("?")) == 3
        t.toggle(memoryview(flags).cast("?"))
        assert list(flags) == [0, 1, 0, 0]
