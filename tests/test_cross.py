"""The macros compile for Windows (PE .dll) and macOS (Mach-O .dylib), and
``plugin-host abi check`` reads those libraries' exports and descriptors
correctly, from Linux.  The cross-compiler is zig's (the ``ziglang`` package,
``pip install '.[cross]'``); its cache lives in ~/.cache/plugin-host/zig so only
the first run pays for building the C runtimes (about a minute per target)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, WERROR
from greeter_versions import GREETER_CHANGED, SOURCE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pe_macho_reference import OUTCOMES, agree, as_tuple, reference_exports
from plugin_annotations import DEFAULT_CFLAGS, discover_plugins, generate_trait_header, get_include_dirs
from plugin_host.abi import check_library, scan_library
from plugin_host.cli import main
from plugin_host.formats import read_exports
from plugin_interface import NotASharedLibraryError, library_filename
from test_symbols import MUTATION, deadline, mutate

pytest.importorskip("ziglang", reason="the zig cross-compiler is not installed: pip install '.[cross]'")
pytestmark = pytest.mark.cross

#: zig target -> (sys.platform naming the library, format, machine as abi check reports it)
TARGETS = {
    "x86_64-windows-gnu": ("win32", "pe", "x86_64"),
    "x86_64-macos": ("darwin", "macho", "x86_64"),
    "aarch64-macos": ("darwin", "macho", "aarch64"),
}
EXAMPLE_TYPES = {
    "greeters": {"Greeter": ["English", "French", "Spanish"]},
    "host_owned": {"Greeter": ["German", "Italian"]},
    "multi_trait": {"Greeter": ["Counting"], "Transformer": ["Rot13", "Upper"]},
}
COMPILE_TIMEOUT_S = 900  # the first build of a target compiles zig's C runtime for it


def zig_cache() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "plugin-host" / "zig"


def zig_cc(target: str, sources: list[Path], output: Path, defines: tuple[str, ...] = ()) -> Path:
    """Compile ``sources`` into a shared library for ``target`` with the project's warning flags."""
    flags = [f for f in DEFAULT_CFLAGS if not (f == "-fPIC" and "windows" in target)] + WERROR
    cmd = [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        "-target",
        target,
        "-shared",
        *flags,
        *(f"-I{d}" for d in [output.parent, *get_include_dirs()]),
        *(f"-D{d}" for d in defines),
        "-o",
        str(output),
        *map(str, sources),
    ]
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(zig_cache()), "ZIG_LOCAL_CACHE_DIR": str(zig_cache())}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=COMPILE_TIMEOUT_S)
    if done.returncode != 0:
        pytest.fail(f"zig cc -target {target} failed for {output.name}:\n{done.stderr}")
    return output


@pytest.fixture(scope="module")
def cross_built(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(target, plugin) -> the example plugin cross-compiled with -Werror."""
    specs = [s for s in discover_plugins(EXAMPLES) if s.name in EXAMPLE_TYPES]
    root = tmp_path_factory.mktemp("cross")
    jobs: dict[tuple[str, str], Callable[[], Path]] = {}
    for target, (platform, _, _) in TARGETS.items():
        (root / target).mkdir()
        for spec in specs:
            out = root / target / library_filename(spec.name, platform)
            jobs[(target, spec.name)] = lambda t=target, s=spec, o=out: zig_cc(t, list(s.sources), o, s.defines)
    # One target at a time first (warms its cache), then the rest in parallel.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = {}
        for target in TARGETS:
            keys = [k for k in jobs if k[0] == target]
            results[keys[0]] = jobs[keys[0]]()
            futures = {k: pool.submit(jobs[k]) for k in keys[1:]}
            results.update({k: f.result() for k, f in futures.items()})
    return results


def check_json(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, Any]:
    status = main(["abi", "check", *map(str, paths), "--json"])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("plugin", list(EXAMPLE_TYPES))
def test_abi_check_reads_cross_built_exports(
    cross_built: dict[tuple[str, str], Path], capsys: pytest.CaptureFixture[str], target: str, plugin: str
) -> None:
    lib = cross_built[(target, plugin)]
    _, fmt, machine = TARGETS[target]
    status, report = check_json(capsys, lib)
    [entry] = report["libraries"]
    assert status == 0, entry["problems"]
    assert (entry["format"], entry["machine"], entry["pointer_size"]) == (fmt, machine, 8)
    assert {name: t["types"] for name, t in entry["traits"].items()} == EXAMPLE_TYPES[plugin]
    for trait in entry["traits"].values():
        assert trait["compatibility"] == "identical"
        assert trait["aggregate"]["unmaker_counter"] is True
        assert trait["aggregate"]["register_all"] is (plugin != "host_owned")


@pytest.mark.parametrize("target", list(TARGETS))
def test_exports_match_the_elf_build(
    cross_built: dict[tuple[str, str], Path], example_plugins: dict[str, Path], target: str
) -> None:
    """The same plugin exports the same plugin_ symbols on every platform."""
    for plugin in EXAMPLE_TYPES:
        native = {n for n in read_exports(example_plugins[plugin]).names if n.startswith("plugin_")}
        cross = {n for n in read_exports(cross_built[(target, plugin)]).names if n.startswith("plugin_")}
        assert cross == native, (target, plugin)


@pytest.mark.parametrize("target", list(TARGETS))
def test_abi_check_finds_a_mismatch_in_a_cross_built_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    (tmp_path / "greeter.c").write_text(SOURCE)
    (tmp_path / "plugin_trait_greeter.h").write_text(generate_trait_header(GREETER_CHANGED))
    platform, _, _ = TARGETS[target]
    lib = zig_cc(target, [tmp_path / "greeter.c"], tmp_path / library_filename("greeter", platform), ("WITH_TIMES",))
    status, report = check_json(capsys, lib)
    assert status == 8  # incompatible
    kinds = {p["kind"]: p["message"] for p in report["libraries"][0]["problems"]}
    assert set(kinds) == {"descriptor_mismatch", "method_mismatch"}  # the descriptor, and the embedded declaration
    assert "method greet" in kinds["descriptor_mismatch"]
    assert kinds["method_mismatch"].startswith("`Greeter.greet` (method 0): parameter 2 `times` (I32) added")


def test_diff_across_platforms_is_flagged(
    cross_built: dict[tuple[str, str], Path], example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    windows = cross_built[("x86_64-windows-gnu", "greeters")]
    status = main(["abi", "diff", str(example_plugins["greeters"]), str(windows), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 8  # incompatible
    assert {c["kind"] for c in report["changes"]} == {"platform_changed"}


@settings(
    max_examples=int(os.environ.get("PLUGIN_HOST_FUZZ_EXAMPLES", "150")),
    deadline=None,  # bounded by deadline() inside
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    target=st.sampled_from(list(TARGETS)),
    plugin=st.sampled_from(list(EXAMPLE_TYPES)),
    header_bias=st.booleans(),
    mutations=st.lists(MUTATION, min_size=1, max_size=8),
)
def test_mutated_pe_and_macho_give_typed_errors(
    cross_built: dict[tuple[str, str], Path],
    tmp_path_factory: pytest.TempPathFactory,
    target: str,
    plugin: str,
    header_bias: bool,
    mutations: list[tuple[str, int, int]],
) -> None:
    lib = cross_built[(target, plugin)]
    f = tmp_path_factory.getbasetemp() / "fuzz-cross" / lib.name
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(mutate(lib.read_bytes(), mutations, header_bias))
    with deadline():
        try:
            abi = scan_library(f)
        except NotASharedLibraryError as e:
            assert e.path == str(f)
            return
        check_library(abi)


# ---- the PE and Mach-O readers against pefile and macholib (tests/test_pe_macho_reader.py has the rest) ----------


def test_every_cross_built_plugin_reads_as_pefile_and_macholib_read_it(
    cross_built: dict[tuple[str, str], Path],
) -> None:
    for key, lib in sorted(cross_built.items()):
        mine = as_tuple(read_exports(lib))
        assert mine == as_tuple(reference_exports(lib)), key
        assert mine[3] and mine[4], key  # not vacuous: symbols and regions


@pytest.mark.parametrize("target", list(TARGETS))
def test_truncations_of_cross_built_plugins_read_alike(
    cross_built: dict[tuple[str, str], Path], tmp_path: Path, target: str
) -> None:
    original = cross_built[(target, "greeters")]
    data = original.read_bytes()
    lib = tmp_path / original.name
    stats = dict.fromkeys(OUTCOMES, 0)
    for size in sorted({*range(0, 4096, 37), *range(0, len(data), len(data) // 97), len(data) - 1}):
        lib.write_bytes(data[:size])
        agree(lib, stats)
    assert stats["both refuse"] + stats["ours stricter"] > 100, stats


def table_span(data: bytes) -> tuple[int, int]:
    """``(offset, length)`` of the tables the export reader reads past the headers.

    PE: the export directory with its arrays and names (data directory 0); Mach-O (thin, little-endian
    64-bit, as zig builds them): the symbol and string tables.
    """
    if data[:2] == b"MZ":
        import pefile

        pe = pefile.PE(data=data, fast_load=True)
        directory = pe.OPTIONAL_HEADER.DATA_DIRECTORY[0]
        return pe.get_offset_from_rva(directory.VirtualAddress), directory.Size
    ncmds, offset = struct.unpack_from("<I", data, 16)[0], 32
    for _ in range(ncmds):
        cmd, cmdsize = struct.unpack_from("<II", data, offset)
        if cmd == 0x2:  # LC_SYMTAB
            symoff, _, stroff, strsize = struct.unpack_from("<IIII", data, offset + 8)
            return symoff, stroff + strsize - symoff
        offset += cmdsize
    raise AssertionError("no LC_SYMTAB")


@settings(
    max_examples=int(os.environ.get("PLUGIN_HOST_FUZZ_EXAMPLES", "150")),
    deadline=None,  # bounded by deadline() inside agree()
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    target=st.sampled_from(list(TARGETS)),
    plugin=st.sampled_from(list(EXAMPLE_TYPES)),
    where=st.sampled_from(["headers", "tables", "anywhere"]),
    mutations=st.lists(MUTATION, min_size=1, max_size=8),
)
def test_fuzzed_pe_and_macho_read_as_the_references_read_them(
    cross_built: dict[tuple[str, str], Path],
    tmp_path_factory: pytest.TempPathFactory,
    target: str,
    plugin: str,
    where: str,
    mutations: list[tuple[str, int, int]],
) -> None:
    """Ours reads what pefile/macholib read, or refuses the file (or the reference does, for a reason of its own)."""
    lib = cross_built[(target, plugin)]
    data = lib.read_bytes()
    if where == "tables":  # where random offsets rarely land: the export directory, the symbol table
        start, length = table_span(data)
        mutations = [(kind, start + at % length, value) for kind, at, value in mutations]
    f = tmp_path_factory.getbasetemp() / "fuzz-cross-reference" / lib.name
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(mutate(data, mutations, header_bias=where == "headers"))
    agree(f, CROSS_FUZZ_STATS)


CROSS_FUZZ_STATS = dict.fromkeys(OUTCOMES, 0)


def test_fuzzing_cross_built_plugins_compared_real_tables() -> None:
    """The fuzz comparison above was not vacuous: many mutants were read by both and compared."""
    if sum(CROSS_FUZZ_STATS.values()) == 0:
        pytest.skip("test_fuzzed_pe_and_macho_read_as_the_references_read_them did not run in this session")
    assert CROSS_FUZZ_STATS["both read"] >= sum(CROSS_FUZZ_STATS.values()) // 10, CROSS_FUZZ_STATS


@pytest.mark.parametrize("target", TARGETS)
def test_the_hosts_c_checks_compile_for_every_target(target: str, tmp_path: Path) -> None:
    """host/speedups builds warning-free for Windows and macOS too (there only some paths apply)."""
    speedups = Path(__file__).resolve().parents[1] / "host" / "speedups"
    shutil.copy(speedups / "speedups.h", tmp_path)  # zig_cc puts the output's directory on the include path
    sources = [speedups / "speedups.c", speedups / "unload.c"]
    assert zig_cc(target, sources, tmp_path / "speedups.bin").stat().st_size > 0
