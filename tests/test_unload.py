"""Unload you can trust: after the last close the host asks the loader whether the library is
gone, and when it is not, says why (STB_GNU_UNIQUE symbols, DF_1_NODELETE, thread-local
destructors, another handle) -- as a warning, on the handle and in unload_by_path's result --
and ``abi check`` says the same from the file alone.  The reasons reader is bounded."""

from __future__ import annotations

import ctypes
import shutil
import struct
from pathlib import Path

import pytest
from conftest import CompilePlugin, mapped_paths
from plugin_host import LibraryStillMappedWarning, PluginManager, UnloadResult
from plugin_host.abi import check_library, scan_library
from plugin_host.formats import UnloadBlockers, read_unload_blockers
from plugin_host.loading import Library, _accel
from plugin_host.loading._unload import check_unloaded
from plugin_interface import NotASharedLibraryError

GREETER_C = """
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"
static int calls;
static char *greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("call %d, %s", ++calls, name);
}
PLUGIN_IMPL(Greeter, Counting, .greet = greet)
PLUGIN_AGGREGATES(Greeter)
"""


@pytest.fixture(scope="module")
def nodelete(compile_plugin: CompilePlugin) -> Path:
    """A C Greeter linked with -z nodelete (the builder honours LDFLAGS)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LDFLAGS", "-Wl,-z,nodelete")
    try:
        return compile_plugin("nodelete_greeter", GREETER_C)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def clean(compile_plugin: CompilePlugin) -> Path:
    return compile_plugin("clean_greeter", GREETER_C)


# ---- the reader (formats) ---------------------------------------------------


def test_the_reader_finds_nodelete_and_nothing_in_a_clean_library(nodelete: Path, clean: Path) -> None:
    blockers = read_unload_blockers(nodelete)
    assert blockers is not None and blockers.nodelete and blockers.unique_count == 0
    [reason] = blockers.certain
    assert reason.startswith("DF_1_NODELETE is set")
    assert read_unload_blockers(clean) == UnloadBlockers()


def test_the_reader_ignores_files_that_are_not_elf(tmp_path: Path) -> None:
    (tmp_path / "dump.json").write_text('{"schema": "plugin-host-abi/1"}')
    assert read_unload_blockers(tmp_path / "dump.json") is None


def _section_header_offset(data: bytes) -> tuple[int, int]:
    shoff, _, _, _, _, _, shnum, _ = struct.unpack_from("<QIHHHHHH", data, 0x28)
    return shoff, shnum


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("shnum", "section headers: .* run past the end"),
        ("dynsym_size", r"\.dynsym: .* run past the end"),
        ("dynsym_link", r"\.dynsym links to section"),
        ("truncate", "section headers: .* run past the end|truncated"),
    ],
)
def test_a_damaged_file_is_a_typed_error_not_a_long_read(
    clean: Path, tmp_path: Path, damage: str, message: str
) -> None:
    data = bytearray(clean.read_bytes())
    shoff, shnum = _section_header_offset(data)
    dynsym = next(i for i in range(shnum) if struct.unpack_from("<I", data, shoff + i * 64 + 4)[0] == 11)
    entry = shoff + dynsym * 64
    if damage == "shnum":
        struct.pack_into("<H", data, 0x3C, 0xFFFF)
    elif damage == "dynsym_size":
        struct.pack_into("<Q", data, entry + 32, 1 << 40)
    elif damage == "dynsym_link":
        struct.pack_into("<I", data, entry + 40, 0xFFFF)
    else:
        data = data[: shoff + 10]
    bad = tmp_path / f"lib{damage}.so"
    bad.write_bytes(bytes(data))
    with pytest.raises(NotASharedLibraryError, match=message) as exc:
        read_unload_blockers(bad)
    assert exc.value.path == str(bad)


# ---- the host: Library and PluginManager ----------------------------------------


def test_a_clean_unload_is_verified_and_says_so(clean: Path, tmp_path: Path) -> None:
    lib = shutil.copy(clean, tmp_path / "libclean.so")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, "Greeter")
        assert handle.proxy("Counting").greet("a") == "call 1, a"  # type: ignore[attr-defined]
        result = manager.unload_by_path(lib)
    assert isinstance(result, UnloadResult) and result == {"Greeter": 1}
    assert result.unmapped and result.still_mapped == [] and result.reasons == ()
    assert handle.unload_warning is None and handle.library.still_mapped is None
    assert str(lib) not in mapped_paths()


def test_nodelete_is_reported_by_unload_by_path_and_the_handle(nodelete: Path, tmp_path: Path) -> None:
    lib = shutil.copy(nodelete, tmp_path / "libkept.so")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, "Greeter")
        assert handle.proxy("Counting").greet("a") == "call 1, a"  # type: ignore[attr-defined]
        with pytest.warns(LibraryStillMappedWarning, match="libkept.so: cannot unload: DF_1_NODELETE") as caught:
            result = manager.unload_by_path(lib)
    assert result == {"Greeter": 1}  # still the counters
    assert not result.unmapped
    [kept] = result.still_mapped
    assert kept.path == Path(lib) and kept.reasons == result.reasons
    assert result.reasons[0].startswith("DF_1_NODELETE")
    [warning] = caught
    assert isinstance(warning.message, LibraryStillMappedWarning)
    assert warning.message.path == Path(lib) and warning.message.reasons == result.reasons
    assert handle.unload_warning is not None and handle.unload_warning.reasons == result.reasons
    assert str(lib) in mapped_paths()  # what the warning says is true
    # And why it matters: the static state survived the "unload".
    with pytest.warns(LibraryStillMappedWarning):
        with PluginManager() as manager:
            [again] = manager.load_plugins(lib, "Greeter")
            assert again.proxy("Counting").greet("b") == "call 2, b"  # type: ignore[attr-defined]


def test_another_handle_is_the_reason_when_the_file_has_none(clean: Path, tmp_path: Path) -> None:
    lib = shutil.copy(clean, tmp_path / "libshared.so")
    other = ctypes.CDLL(str(lib))  # never closed: a copy of its own, so no other test sees it
    assert other is not None
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, "Greeter")
        with pytest.warns(LibraryStillMappedWarning, match="another handle is still open") as caught:
            handle.unload()
    assert len(caught) == 1
    assert handle.unload_warning is not None and "ctypes.CDLL" in str(handle.unload_warning)


def test_library_close_records_what_the_loader_did(clean: Path, nodelete: Path, tmp_path: Path) -> None:
    gone = Library(clean)
    gone.close()
    assert gone.still_mapped is None
    kept = Library(shutil.copy(nodelete, tmp_path / "libnodelete_lib.so"))
    kept.close()  # a Library alone never warns: the manager does
    assert kept.still_mapped is not None and "DF_1_NODELETE" in kept.still_mapped.reasons[0]


@pytest.mark.parametrize("c_checks", [True, False], ids=["c", "python"])
@pytest.mark.parametrize("case", ["clean", "nodelete", "another handle"])
def test_both_ways_of_asking_agree_with_the_process_maps(
    case: str, c_checks: bool, clean: Path, nodelete: Path, tmp_path: Path
) -> None:
    """The C close (load address among the loaded objects) and the RTLD_NOLOAD question tell the same truth."""
    if c_checks and not _accel.available():
        pytest.skip("the C extension is not built")
    lib = Path(shutil.copy(nodelete if case == "nodelete" else clean, tmp_path / f"lib{case.replace(' ', '_')}.so"))
    if case == "another handle":
        assert ctypes.CDLL(str(lib)) is not None  # never closed: this copy is the test's own
    previous = _accel.set_enabled(c_checks)
    try:
        library = Library(lib)
        if c_checks:  # the C side's own answer, before the NOLOAD confirmation
            assert _accel.close_library(library._handle) is (case == "clean")  # type: ignore[arg-type]
            library._handle = None
            library.still_mapped = check_unloaded(library.path, library.load_path, case == "clean")
        else:
            library.close()
    finally:
        _accel.set_enabled(previous)
    assert (library.still_mapped is None) is (case == "clean")
    assert (str(lib) in mapped_paths()) is (case != "clean")


def test_a_private_copy_is_checked_before_it_is_removed(nodelete: Path, tmp_path: Path) -> None:
    lib = shutil.copy(nodelete, tmp_path / "libcopied.so")
    with PluginManager(copy_on_load=True) as manager:
        [handle] = manager.load_plugins(lib, "Greeter")
        copy = handle.library.load_path
        with pytest.warns(LibraryStillMappedWarning, match="DF_1_NODELETE"):
            result = manager.unload_by_path(lib)
    assert not copy.exists()  # removed all the same
    assert result.still_mapped[0].load_path == copy


# ---- abi check: the same causes, from the file ------------------------------------


def test_abi_check_warns_about_nodelete_before_anyone_loads_it(nodelete: Path, clean: Path) -> None:
    problems, _ = check_library(scan_library(nodelete))
    [problem] = [p for p in problems if p.kind == "unload_blocked"]
    assert problem.severity == "warning"
    assert problem.message.startswith("cannot unload: DF_1_NODELETE is set")
    clean_problems, _ = check_library(scan_library(clean))
    assert not [p for p in clean_problems if p.kind.startswith("unload")]


@pytest.mark.parametrize("how", ["handle.unload", "unload_by_path", "unload_all", "unload_all, a gate made"])
@pytest.mark.parametrize("where", ["file", "directory"])
def test_the_warning_names_the_callers_line(nodelete: Path, tmp_path: Path, how: str, where: str) -> None:
    """Whichever way the unload goes (one by one, or a run released in one call), the warning
    points at the code that asked for it, not at the host's own files."""
    d = tmp_path / "plugins"
    d.mkdir()
    lib = Path(shutil.copy(nodelete, d / "libkept.so"))
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib if where == "file" else d, "Greeter")
        if how.endswith("a gate made"):
            handle.proxies()
        with pytest.warns(LibraryStillMappedWarning, match="DF_1_NODELETE") as caught:
            if how == "handle.unload":
                handle.unload()
            elif how == "unload_by_path":
                manager.unload_by_path(lib)
            else:
                manager.unload_all()
    [warning] = caught
    assert warning.filename == __file__
