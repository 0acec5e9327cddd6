"""The ELF export table read in C (``plugin_host.formats._elfread``) against the Python reader.

``formats`` reads an ELF file's export table in C when the extension was built
(``_elf.elf_exports_fd``); the Python reader (``_elf.elf_exports``) is the
reference and the fallback.  What must hold: C gives a table only for an image
the Python reader reads without an error, and then exactly the Python reader's
table (every field: machine, class, byte order, the exports in the same order,
the load regions, the unload blockers).  Compared here on every built plugin
(C, C++ with STB_GNU_UNIQUE symbols and thread_local destructors, Rust, a
``-z nodelete`` build, the broken test plugins), on synthetic ELF32/ELF64
images of both byte orders with the edge cases of each rule, on every
truncation of a real library and on seeded random mutations; a perturbed
answer and a weakened C are caught.

The C only reads through bounded views (image.h ``ph_view``: every offset and
length checked against the file's size), so the synthetic and truncated images
are read in this process; the random mutations run in a child process, so a
crash there is a failed test, not a lost run.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTENSIONS_PROMISED, NO_COMPILER_INSTALL, REPO, CompilePlugin, run_isolated
from plugin_host.formats import _elf, exported_names, open_exports, read_exports
from plugin_host.formats._elf import elf_exports
from plugin_host.formats._table import ExportTable
from plugin_interface import NotASharedLibraryError
from test_cpp import STL_CPP, THREAD_LOCAL_CPP
from test_elf_reader import PREFIXES, SYNTHETIC, make_elf
from test_unload import GREETER_C

SPEEDUPS = REPO / "host" / "speedups"
INCLUDE = REPO / "interface" / "plugin_interface" / "include"

needs_reader = pytest.mark.skipif(
    not _elf.compiled_reader_available(),
    reason="plugin_host.formats._elfread was not built (no C compiler at install time)",
)


@pytest.fixture(autouse=True)
def _compiled_reader_on() -> Iterator[None]:
    """The C reader in use for the test (where it was built), whatever PLUGIN_HOST_PURE_PYTHON says."""
    previous = _elf.set_compiled_reader(True)
    try:
        yield
    finally:
        _elf.set_compiled_reader(previous)


# ---- the comparison ---------------------------------------------------------------------------------------------


def python_table(data: bytes, path: str) -> ExportTable | NotASharedLibraryError:
    """The Python reader's table of the image, or its error."""
    try:
        return elf_exports(lambda offset, n: data[offset : offset + n], len(data), path, data[:64])
    except NotASharedLibraryError as e:
        return e


def c_table(path: Path) -> ExportTable | None:
    """The C reader's table of the file (read through an open descriptor, as ``open_exports`` does)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return _elf.compiled_elf_exports(fd, os.fstat(fd).st_size, str(path), os.pread(fd, 64, 0))
    finally:
        os.close(fd)


def same(mine: ExportTable, reference: ExportTable) -> bool:
    """Every field equal, the exports in the same order (a dict compares without it)."""
    return mine == reference and list(mine.symbols.items()) == list(reference.symbols.items())


def agree(data: bytes, path: Path, stats: dict[str, int] | None = None) -> ExportTable | None:
    """C gives a table only where Python reads one, and then the same table; C's table (or None)."""
    path.write_bytes(data)
    mine, reference = c_table(path), python_table(data, str(path))
    if mine is not None:
        assert isinstance(reference, ExportTable), f"C read an image the Python reader refuses: {reference}"
        assert same(mine, reference), (mine, reference, mine.unload_blockers, reference.unload_blockers)
    if stats is not None:
        refused = isinstance(reference, NotASharedLibraryError)
        key = "both read" if mine is not None else ("Python refuses" if refused else "C leaves to Python")
        stats[key] = stats.get(key, 0) + 1
    return mine


def serves(data: bytes, path: Path) -> ExportTable:
    """:func:`agree`, and C did read it (a well-formed library must not fall back)."""
    mine = agree(data, path)
    assert mine is not None, f"C left a well-formed library to Python: {path}"
    return mine


# ---- every built plugin -----------------------------------------------------------------------------------------


@needs_reader
def test_every_built_plugin_reads_alike(
    example_plugins: dict[str, Path], test_plugins: dict[str, Path], tmp_path: Path
) -> None:
    libraries = {**{f"example {k}": v for k, v in example_plugins.items()}, **test_plugins}
    assert len(libraries) >= 12
    for what, lib in sorted(libraries.items()):
        table = serves(lib.read_bytes(), tmp_path / lib.name)
        assert table.symbols, what  # not vacuous


@needs_reader
def test_language_plugins_read_alike(language: str, language_greeter: Any, tmp_path: Path) -> None:
    for host_owned in (False, True):
        lib = language_greeter(language, host_owned)
        assert serves(lib.read_bytes(), tmp_path / lib.name).symbols


@pytest.fixture(scope="module")
def blocked_libraries(compile_plugin: CompilePlugin) -> dict[str, Path]:
    """Libraries glibc keeps mapped, one per reason: STB_GNU_UNIQUE symbols (C++ without the export
    restriction), a thread_local destructor, DF_1_NODELETE."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LDFLAGS", "-Wl,-z,nodelete")
    try:
        nodelete = compile_plugin("nodelete_greeter", GREETER_C)
    finally:
        mp.undo()
    return {
        "unique": compile_plugin("stl_exports_all", {"stl.cpp": STL_CPP}, restrict_exports=False),
        "thread_local": compile_plugin("remembers", {"remembers.cpp": THREAD_LOCAL_CPP}),
        "nodelete": nodelete,
    }


@needs_reader
def test_the_unload_blockers_read_alike(blocked_libraries: dict[str, Path], tmp_path: Path) -> None:
    unique = serves(blocked_libraries["unique"].read_bytes(), tmp_path / "libunique.so").unload_blockers
    assert unique is not None and unique.unique_count >= 1 and unique.unique_symbols[0].startswith("_Z")
    tls = serves(blocked_libraries["thread_local"].read_bytes(), tmp_path / "libtls.so").unload_blockers
    assert tls is not None and tls.thread_local_destructors
    kept = serves(blocked_libraries["nodelete"].read_bytes(), tmp_path / "libkept.so").unload_blockers
    assert kept is not None and kept.nodelete


@needs_reader
def test_the_cpp_runtime_reads_alike(tmp_path: Path) -> None:
    """libstdc++: thousands of exports, more STB_GNU_UNIQUE symbols than are named (the cap), and
    the thread_local destructor import."""
    gxx = shutil.which("g++")
    found = subprocess.run([gxx, "-print-file-name=libstdc++.so"], capture_output=True, text=True) if gxx else None
    runtime = Path(found.stdout.strip()).resolve() if found is not None and found.returncode == 0 else None
    if runtime is None or not runtime.is_file():
        pytest.skip("libstdc++ not found (g++ -print-file-name)")
    table = serves(runtime.read_bytes(), tmp_path / "libstdc++.so")
    blockers = table.unload_blockers
    assert blockers is not None and blockers.unique_count > len(blockers.unique_symbols) == 8
    assert len(table.symbols) > 1000


# ---- synthetic images: each rule's edges, both classes and byte orders ------------------------------------------

CLASSES_AND_ORDERS = [(1, "<"), (1, ">"), (2, "<"), (2, ">")]

Symbol = tuple[
    bytes | int, int, int, int, int
]  # (name, or a raw st_name offset; st_info, st_other, st_shndx, st_value)

GLOBAL_FUNC, WEAK_FUNC, GLOBAL_OBJECT, GLOBAL_NOTYPE, UNIQUE_OBJECT = 0x12, 0x22, 0x11, 0x10, 0xA1
DT_FLAGS_1, DF_1_NODELETE = 0x6FFFFFFB, 0x8


def rich_elf(
    elf_class: int,
    order: str,
    tables: list[list[Symbol]],
    dynamic: list[tuple[int, int]] | None = None,
    loads: Sequence[tuple[int, int, int, int]] = ((1, 0, 0, 0x100), (1, 0x100, 0x10100, 0x80), (4, 0x200, 0, 8)),
    machine: int = 62,
) -> bytes:
    """An ELF shared object with several symbol tables (each ``SHT_DYNSYM`` linked to its own string
    table), an optional ``.dynamic`` section and program headers ``(p_type, p_offset, p_vaddr, p_filesz)``.

    A symbol's name is stored as given (any bytes); an ``int`` is a raw ``st_name``.
    """
    is64 = elf_class == 2
    ehsize, phentsize, shentsize, syment = (64, 56, 64, 24) if is64 else (52, 32, 40, 16)
    body = bytearray(ehsize + phentsize * len(loads))
    sections: list[tuple[int, int, int, int, int]] = [(0, 0, 0, 0, 0)]  # (type, offset, size, link, entsize)
    for symbols in tables:
        strings = b"\0"
        entries = b"\0" * syment
        for name, info, other, shndx, value in symbols:
            if isinstance(name, int):
                offset = name
            else:
                offset = len(strings)
                strings += name + b"\0"
            if is64:
                entries += struct.pack(order + "IBBHQQ", offset, info, other, shndx, value, 8)
            else:
                entries += struct.pack(order + "IIIBBH", offset, value, 8, info, other, shndx)
        sections.append((11, len(body), len(entries), len(sections) + 1, syment))
        body += entries
        sections.append((3, len(body), len(strings), 0, 0))
        body += strings
    if dynamic is not None:
        body += b"\0" * (-len(body) % 8)
        raw = b"".join(struct.pack(order + ("qQ" if is64 else "iI"), tag, value) for tag, value in dynamic)
        sections.append((6, len(body), len(raw), 0, 16 if is64 else 8))
        body += raw
    body += b"\0" * (-len(body) % 8)
    shoff = len(body)
    for sh_type, offset, size, link, entsize in sections:
        if is64:
            body += struct.pack(order + "IIQQQQIIQQ", 0, sh_type, 2, offset, offset, size, link, 0, 8, entsize)
        else:
            body += struct.pack(order + "IIIIIIIIII", 0, sh_type, 2, offset, offset, size, link, 0, 4, entsize)
    ident = b"\x7fELF" + bytes([elf_class, 1 if order == "<" else 2, 1, 0]) + b"\0" * 8
    fields = (3, machine, 1, 0, ehsize, shoff, 0, ehsize, phentsize, len(loads), shentsize, len(sections), 0)
    body[:ehsize] = ident + struct.pack(order + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"), *fields)
    for i, (p_type, p_offset, p_vaddr, p_filesz) in enumerate(loads):
        if is64:
            phdr = struct.pack(order + "IIQQQQQQ", p_type, 5, p_offset, p_vaddr, p_vaddr, p_filesz, p_filesz, 0x1000)
        else:
            phdr = struct.pack(order + "IIIIIIII", p_type, p_offset, p_vaddr, p_vaddr, p_filesz, p_filesz, 5, 0x1000)
        body[ehsize + i * phentsize : ehsize + (i + 1) * phentsize] = phdr
    return bytes(body)


#: Each rule's edges in one table: what counts as an export, how names decode, which value wins.
EDGES: list[Symbol] = [
    (b"plain", GLOBAL_FUNC, 0, 7, 0x1000),
    (b"twice", GLOBAL_FUNC, 0, 7, 0x1010),
    (b"twice", WEAK_FUNC, 0, 7, 0x1020),  # the same name again: the later value, the first position
    (b"object", GLOBAL_OBJECT, 0, 8, 0x2000),
    (b"untyped", GLOBAL_NOTYPE, 0, 0xFFF1, 0x42),  # SHN_ABS
    (b"tls", 0x16, 0, 9, 0x10),  # STT_TLS: not exported
    (b"section", 0x13, 0, 7, 0x1030),  # STT_SECTION: not exported
    (b"hidden", GLOBAL_FUNC, 2, 7, 0x1040),
    (b"protected", GLOBAL_FUNC, 3, 7, 0x1050),
    (b"exported_vis_bits", GLOBAL_FUNC, 0xF4, 7, 0x1060),  # only the low 2 bits are the visibility
    (b"local", 0x02, 0, 7, 0x1070),
    (b"import", GLOBAL_FUNC, 0, 0, 0),
    (b"", GLOBAL_FUNC, 0, 7, 0x1080),  # an empty name: skipped
    (0, GLOBAL_FUNC, 0, 7, 0x1090),  # st_name 0: skipped
    (b"caf\xc3\xa9", GLOBAL_FUNC, 0, 7, 0x10A0),  # UTF-8
    (b"bad\xff\xfeutf8", GLOBAL_FUNC, 0, 7, 0x10B0),  # not UTF-8: U+FFFD
    (b"huge", GLOBAL_FUNC, 0, 7, 0xFFFF_FFFF),
    (b"unique_a", UNIQUE_OBJECT, 0, 8, 0x3000),
    (b"unique_b", 0xA2, 2, 8, 0x3010),  # any type and visibility counts
    (0x7FFF_FFFF, UNIQUE_OBJECT, 0, 8, 0x3020),  # a name past the table: "" (never fatal for a blocker)
    (b"unique_import", UNIQUE_OBJECT, 0, 0, 0),  # undefined: not counted
]


@needs_reader
@pytest.mark.parametrize(("elf_class", "order"), CLASSES_AND_ORDERS)
def test_each_rule_reads_alike(tmp_path: Path, elf_class: int, order: str) -> None:
    table = serves(rich_elf(elf_class, order, [EDGES], machine=183), tmp_path / "libedges.so")
    assert (table.machine, table.pointer_size) == ("aarch64", 4 * elf_class)
    assert table.byteorder == ("little" if order == "<" else "big")
    expected = ["plain", "twice", "object", "untyped", "exported_vis_bits", "caf\u00e9", "bad\ufffd\ufffdutf8", "huge"]
    assert list(table.symbols) == expected
    assert table.symbols["twice"] == 0x1020 and table.symbols["huge"] == 0xFFFF_FFFF
    assert table.regions == ((0, 0x100, 0), (0x10100, 0x80, 0x100))  # PT_LOAD only
    blockers = table.unload_blockers
    assert (
        blockers is not None and blockers.unique_symbols == ("unique_a", "unique_b", "") and blockers.unique_count == 3
    )


@needs_reader
@pytest.mark.parametrize(("elf_class", "order"), CLASSES_AND_ORDERS)
def test_the_test_suites_synthetic_library_reads_alike(tmp_path: Path, elf_class: int, order: str) -> None:
    """test_elf_reader.py's image (pyelftools agrees with the Python reader on it)."""
    assert serves(make_elf(elf_class, order, SYNTHETIC, machine=183), tmp_path / "libsynthetic.so").symbols


def _atexit(name: bytes, info: int) -> Symbol:
    return (name, info, 0, 0, 0)


#: (imports of the thread_local destructor registration, in order) -> (thread_local_destructors, weak_thread_atexit)
ATEXIT_CASES = [
    ([], (False, False)),
    ([_atexit(b"__cxa_thread_atexit_impl", GLOBAL_FUNC)], (True, False)),
    ([_atexit(b"__cxa_thread_atexit", GLOBAL_FUNC)], (True, False)),
    ([_atexit(b"__cxa_thread_atexit_impl", WEAK_FUNC)], (False, True)),
    ([_atexit(b"__cxa_thread_atexit_impl", WEAK_FUNC), _atexit(b"__cxa_thread_atexit", GLOBAL_FUNC)], (True, False)),
    ([_atexit(b"__cxa_thread_atexit", GLOBAL_FUNC), _atexit(b"__cxa_thread_atexit_impl", WEAK_FUNC)], (True, False)),
    ([_atexit(b"__cxa_thread_atexit_implx", GLOBAL_FUNC)], (False, False)),
    ([_atexit(b"__cxa_thread_atexi", GLOBAL_FUNC)], (False, False)),
    ([_atexit(b"__cxa_thread_atexit_impl", 0x02)], (False, False)),  # a local import: not counted
    ([(b"__cxa_thread_atexit_impl", GLOBAL_FUNC, 0, 7, 0x10)], (False, False)),  # defined, not imported
]


@needs_reader
@pytest.mark.parametrize(("imports", "expected"), ATEXIT_CASES)
@pytest.mark.parametrize(("elf_class", "order"), [(1, ">"), (2, "<")])
def test_the_thread_local_imports_read_alike(
    tmp_path: Path, elf_class: int, order: str, imports: list[Symbol], expected: tuple[bool, bool]
) -> None:
    table = serves(rich_elf(elf_class, order, [[(b"f", GLOBAL_FUNC, 0, 7, 1), *imports]]), tmp_path / "libtls.so")
    assert table.unload_blockers is not None
    assert (table.unload_blockers.thread_local_destructors, table.unload_blockers.weak_thread_atexit) == expected


@needs_reader
@pytest.mark.parametrize(("elf_class", "order"), CLASSES_AND_ORDERS)
def test_every_symbol_table_counts_for_the_blockers_only_the_first_for_the_exports(
    tmp_path: Path, elf_class: int, order: str
) -> None:
    first = [(b"first", GLOBAL_FUNC, 0, 7, 1), *[(b"u%d" % i, UNIQUE_OBJECT, 0, 8, i) for i in range(6)]]
    second = [(b"second", GLOBAL_FUNC, 0, 7, 2), *[(b"v%d" % i, UNIQUE_OBJECT, 0, 8, i) for i in range(5)]]
    second.append(_atexit(b"__cxa_thread_atexit_impl", WEAK_FUNC))
    table = serves(rich_elf(elf_class, order, [first, second]), tmp_path / "libtwo.so")
    assert list(table.symbols) == ["first"]
    blockers = table.unload_blockers
    assert blockers is not None and blockers.unique_count == 11
    assert blockers.unique_symbols == ("u0", "u1", "u2", "u3", "u4", "u5", "v0", "v1")  # the first 8
    assert blockers.weak_thread_atexit and not blockers.thread_local_destructors


#: .dynamic contents -> DF_1_NODELETE set
DYNAMIC_CASES = [
    (None, False),
    ([], False),
    ([(1, 5), (DT_FLAGS_1, DF_1_NODELETE | 1), (0, 0)], True),
    ([(DT_FLAGS_1, 1), (0, 0)], False),
    ([(0, 0), (DT_FLAGS_1, DF_1_NODELETE)], False),  # after DT_NULL: not read
    ([(-5, 0), (DT_FLAGS_1, DF_1_NODELETE)], True),  # a negative tag is just a tag; no DT_NULL at the end
]


@needs_reader
@pytest.mark.parametrize(("dynamic", "nodelete"), DYNAMIC_CASES)
@pytest.mark.parametrize(("elf_class", "order"), CLASSES_AND_ORDERS)
def test_nodelete_reads_alike(
    tmp_path: Path, elf_class: int, order: str, dynamic: list[tuple[int, int]] | None, nodelete: bool
) -> None:
    table = serves(rich_elf(elf_class, order, [[(b"f", GLOBAL_FUNC, 0, 7, 1)]], dynamic), tmp_path / "libdyn.so")
    assert table.unload_blockers is not None and table.unload_blockers.nodelete is nodelete


def _section_header(data: bytearray, index: int) -> int:
    """The offset of section header ``index`` of an ELF64 little-endian image."""
    (shoff,) = struct.unpack_from("<Q", data, 40)
    return shoff + index * 64


def _damaged(damage: str) -> bytes:
    """:func:`rich_elf` (ELF64, two tables, a .dynamic) with one field set to what the Python reader refuses,
    or to what it reads but the C leaves to it."""
    data = bytearray(rich_elf(2, "<", [EDGES[:3], [(b"g", GLOBAL_FUNC, 0, 7, 1)]], [(0, 0)]))
    if damage == "name past .dynstr":  # the last name's NUL cut off
        struct.pack_into(
            "<Q",
            data,
            _section_header(data, 2) + 32,
            struct.unpack_from("<Q", data, _section_header(data, 2) + 32)[0] - 1,
        )
    elif damage == "dynsym entsize":
        struct.pack_into("<Q", data, _section_header(data, 1) + 56, 16)
    elif damage == "second dynsym size":
        struct.pack_into("<Q", data, _section_header(data, 3) + 32, 1 << 40)
    elif damage == "dynsym link":
        struct.pack_into("<I", data, _section_header(data, 1) + 40, 99)
    elif damage == "dynamic size":
        struct.pack_into("<Q", data, _section_header(data, 5) + 32, 1 << 40)
    elif damage == "no dynsym":
        for index in (1, 3):
            struct.pack_into("<I", data, _section_header(data, index) + 4, 2)  # SHT_SYMTAB
    elif damage == "shentsize":
        struct.pack_into("<H", data, 58, 40)
    elif damage == "phnum":
        struct.pack_into("<H", data, 56, 0xFFFF)
    elif damage == "shnum":
        struct.pack_into("<H", data, 60, 0xFFFF)
    elif damage == "class":
        data[4] = 3
    elif damage == "extended numbering":  # e_shnum 0, the count in section 0's sh_size: Python reads it
        (shnum,) = struct.unpack_from("<H", data, 60)
        struct.pack_into("<H", data, 60, 0)
        struct.pack_into("<Q", data, _section_header(data, 0) + 32, shnum)
    elif damage == "phentsize":  # larger program header entries: no regions, nothing refused
        struct.pack_into("<H", data, 54, 64)
        struct.pack_into("<H", data, 56, 1)
    return bytes(data)


REFUSED = {
    "name past .dynstr": r"symbol 3: its name \(offset 13\) runs past the end of .dynstr",
    "dynsym entsize": ".dynsym entries of 16 bytes",
    "second dynsym size": r".dynsym: \d+ entries of 24 bytes",
    "dynsym link": ".dynsym links to section 99 of 6",
    "dynamic size": r".dynamic: \d+ entries of 16 bytes",
    "no dynsym": r"no dynamic symbol table \(.dynsym\)",
    "shentsize": "section header entries of 40 bytes",
    "phnum": "program headers: 65535 entries",
    "shnum": "section headers: 65535 entries",
    "class": "unknown ELF class or byte order",
}


@needs_reader
@pytest.mark.parametrize("damage", sorted(REFUSED))
def test_what_python_refuses_c_leaves_to_it_and_the_message_is_pythons(tmp_path: Path, damage: str) -> None:
    lib = tmp_path / "libdamaged.so"
    assert agree(_damaged(damage), lib) is None
    with pytest.raises(NotASharedLibraryError, match=REFUSED[damage]) as exc:
        read_exports(lib)  # through the C reader first
    assert exc.value.path == str(lib)


@needs_reader
@pytest.mark.parametrize("damage", ["extended numbering", "phentsize"])
def test_the_unusual_that_python_reads_c_reads_alike(tmp_path: Path, damage: str) -> None:
    table = serves(_damaged(damage), tmp_path / "libunusual.so")
    if damage == "phentsize":
        assert table.regions == ()


# ---- truncated and mutated copies -------------------------------------------------------------------------------


@needs_reader
@pytest.mark.parametrize("which", ["greeters", "host_owned"])
def test_every_truncation_reads_alike(tmp_path: Path, example_plugins: dict[str, Path], which: str) -> None:
    """Every length of a real library, every byte of the headers and tables included."""
    data = example_plugins[which].read_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 40)
    stats: dict[str, int] = {}
    sizes = {*range(0, 512), *range(0, len(data), 61), *range(shoff - 8, len(data) + 1)}
    for size in sorted(sizes):
        agree(data[:size], tmp_path / "libtruncated.so", stats)
    # The section headers are last: a library cut anywhere loses some, and Python refuses it.
    assert stats.get("both read") == 1 and stats.get("C leaves to Python", 0) == 0, stats


#: The child that compares the two readers on mutants: seeded, a bounded count, one JSON line out.
_FUZZ_CHILD = r"""
import json, os, random, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import elf_mutants as m
from plugin_host.formats import _elf
from plugin_host.formats._elf import elf_exports
from plugin_interface import NotASharedLibraryError

libraries, count, seed, scratch = json.loads(sys.argv[1])
rng = random.Random(seed)
_elf.set_compiled_reader(True)
assert _elf.compiled_reader_enabled()
stats = {"both read": 0, "Python refuses": 0, "C leaves to Python": 0}
failures = []

originals = [Path(p).read_bytes() for p in libraries]
for n in range(count):
    data = bytearray(rng.choice(originals))
    spots = m.hot_spots(data, (m.DYNSYM, m.STRTAB, m.DYNAMIC))
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        start, length = rng.choice(spots)
        at = min(start + rng.randrange(length), len(data) - 1)
        if kind < 0.5:
            data[at] = rng.randrange(256)
        elif kind < 0.8:  # a field-sized value: small counts, offsets near the end, all-ones
            width = rng.choice((1, 2, 4, 8))
            top = (1 << (8 * width)) - 1
            value = rng.choice((0, 1, 2, 0xFF, len(data) - rng.randrange(64), top, rng.getrandbits(8 * width)))
            data[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")[: max(0, len(data) - at)]
        else:
            data[at] ^= 1 << rng.randrange(8)
    data = m.cut(rng, data)
    path = Path(scratch) / "libmutant.so"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        mine = _elf.compiled_elf_exports(fd, len(data), str(path), data[:64])
    finally:
        os.close(fd)
    try:
        reference = elf_exports(lambda o, k: data[o : o + k], len(data), str(path), data[:64])
    except NotASharedLibraryError as e:
        reference = e
    if mine is None:
        stats["Python refuses" if isinstance(reference, NotASharedLibraryError) else "C leaves to Python"] += 1
        continue
    stats["both read"] += 1
    if isinstance(reference, NotASharedLibraryError):
        failures.append((n, "C read an image the Python reader refuses: " + str(reference)))
    elif mine != reference or list(mine.symbols.items()) != list(reference.symbols.items()):
        failures.append((n, f"differ: {mine} {mine.unload_blockers} / {reference} {reference.unload_blockers}"))
print(json.dumps({"stats": stats, "failures": failures[:5], "failed": len(failures)}))
"""

FUZZ_COUNT = int(os.environ.get("PLUGIN_HOST_FUZZ_EXAMPLES", "300")) * 10  # about 0.2 ms each


@needs_reader
def test_mutated_libraries_read_alike(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """Seeded random mutations of the bytes each reader reads (and cuts), compared in a child process."""
    libraries = [str(example_plugins[k]) for k in ("greeters", "host_owned", "multi_trait")]
    argument = json.dumps([libraries, FUZZ_COUNT, 20261201, str(tmp_path)])
    proc = subprocess.run(
        [sys.executable, "-c", _FUZZ_CHILD, argument, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"the child died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == 0, report
    stats = report["stats"]
    assert sum(stats.values()) == FUZZ_COUNT
    # Not vacuous: many mutants compared as tables, many refused.
    assert stats["both read"] >= FUZZ_COUNT // 10 and stats["Python refuses"] >= FUZZ_COUNT // 10, stats


# ---- the comparison can fail ------------------------------------------------------------------------------------


@needs_reader
@pytest.mark.parametrize("field", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_a_perturbed_answer_is_caught(
    example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: int
) -> None:
    """Each field of the C answer changed in turn (an extra symbol, a region, a blocker...): the comparison fails."""
    reader = _elf._compiled_reader
    assert reader is not None

    def perturbed(fd: int, size: int, ident: bytes) -> Any:
        found = reader(fd, size, ident)
        assert found is not None
        changed: list[Any] = list(found)
        value = changed[field]
        if isinstance(value, bool):
            changed[field] = not value
        elif field in (1, 2):  # the class, the byte order: the other one
            changed[field] = 3 - value
        elif isinstance(value, int):
            changed[field] = value + 1 if field else 3  # e_machine 3: x86 (i386)
        elif isinstance(value, dict):
            changed[field] = {**value, "plugin_extra": 1}
        else:
            changed[field] = (*value, value[0] if value else "x")
        return tuple(changed)

    data = example_plugins["greeters"].read_bytes()
    agree(data, tmp_path / "libgreeters.so")
    monkeypatch.setattr(_elf, "_compiled_reader", perturbed)
    with pytest.raises(AssertionError):
        agree(data, tmp_path / "libgreeters.so")


def _build_elfread(tmp_path: Path, mutate: Any) -> Any:
    """elfread.c with ``mutate`` applied, compiled and imported under another name."""
    source = tmp_path / "elfread.c"
    text = (SPEEDUPS / "elfread.c").read_text()
    source.write_text(mutate(text).replace("PyInit__elfread", "PyInit__elfread_mutant"))
    out = tmp_path / "_elfread_mutant.so"
    include = sysconfig.get_paths()["include"]
    flags = ["-std=c11", "-O1", "-fPIC", "-shared", "-DPy_LIMITED_API=0x030B0000"]
    cmd = ["cc", *flags, f"-I{include}", "-I", str(SPEEDUPS), "-I", str(INCLUDE), str(source), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import importlib.util

    spec = importlib.util.spec_from_file_location("_elfread_mutant", out)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _no_visibility_check(source: str) -> str:
    check = "(other & 0x3u) != 0 || name_offset == 0"
    assert source.count(check) == 1, "the visibility rule in elfread.c changed shape"
    return source.replace(check, "name_offset == 0")


def _no_dt_null_stop(source: str) -> str:
    check = "if (tag == DT_NULL) {\n                break;"
    assert source.count(check) == 1, "the DT_NULL stop in elfread.c changed shape"
    return source.replace(check, "if (tag == DT_NULL) {\n                continue;")


@needs_reader
@pytest.mark.parametrize(
    ("mutate", "image"),
    [
        (_no_visibility_check, rich_elf(2, "<", [EDGES])),
        (_no_dt_null_stop, rich_elf(1, ">", [EDGES[:1]], [(0, 0), (DT_FLAGS_1, DF_1_NODELETE)])),
    ],
)
def test_a_weakened_c_reader_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutate: Any, image: bytes
) -> None:
    """One rule removed from the C (safe to read in this process: no bound is removed), and the comparison fails."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    agree(image, tmp_path / "libimage.so")
    mutant = _build_elfread(tmp_path, mutate)
    monkeypatch.setattr(_elf, "_compiled_reader", mutant.elf_exports)
    with pytest.raises(AssertionError):
        agree(image, tmp_path / "libimage.so")


# ---- where the host uses it -------------------------------------------------------------------------------------


@needs_reader
def test_the_readers_of_formats_ask_c_first_and_python_after_a_none(
    example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = example_plugins["greeters"]
    with_c = {"read_exports": read_exports(lib), "read_elf_exports": _elf.read_elf_exports(str(lib))}
    with open_exports(lib) as (with_c["open_exports"], _):
        pass
    names_with_c = {prefix: exported_names(lib, prefix) for prefix in PREFIXES}
    calls: list[int] = []
    reader = _elf._compiled_reader
    assert reader is not None

    def counted(fd: int, size: int, ident: bytes) -> Any:
        calls.append(fd)
        return reader(fd, size, ident)

    def refusing(fd: int, size: int, ident: bytes) -> Any:
        calls.append(fd)
        return None

    monkeypatch.setattr(_elf, "_compiled_reader", counted)
    read_exports(lib), _elf.read_elf_exports(str(lib)), exported_names(lib, "plugin_")
    with open_exports(lib):
        pass
    assert len(calls) == 4  # each asked C once
    monkeypatch.setattr(_elf, "_compiled_reader", refusing)  # every file left to Python: the same answers
    assert same(read_exports(lib), with_c["read_exports"])
    assert same(_elf.read_elf_exports(str(lib)), with_c["read_elf_exports"])
    with open_exports(lib) as (table, _):
        assert same(table, with_c["open_exports"])
    assert {prefix: exported_names(lib, prefix) for prefix in PREFIXES} == names_with_c
    _elf.set_compiled_reader(False)  # off: C is not asked
    calls.clear()
    assert same(read_exports(lib), with_c["read_exports"]) and calls == []
    assert same(with_c["read_exports"], with_c["open_exports"])
    assert same(with_c["read_exports"], with_c["read_elf_exports"])


@needs_reader
@pytest.mark.parametrize(("elf_class", "order"), CLASSES_AND_ORDERS)
def test_exported_names_through_c_are_the_names_readers(tmp_path: Path, elf_class: int, order: str) -> None:
    lib = tmp_path / "libnames.so"
    lib.write_bytes(rich_elf(elf_class, order, [[*EDGES, (b"plugin_register_x", GLOBAL_FUNC, 0, 7, 5)]]))
    for prefix in (*PREFIXES, "bad", "\ufffd", "bad\ufffd"):
        _elf.set_compiled_reader(True)
        mine = exported_names(lib, prefix)
        _elf.set_compiled_reader(False)
        assert mine == exported_names(lib, prefix), prefix
    assert exported_names(lib, "plugin_") == ["plugin_register_x"]


def test_the_pure_python_switch_turns_the_c_reader_off(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "from plugin_host.formats import _elf; print(_elf.compiled_reader_available(), _elf.compiled_reader_enabled())"
    )
    monkeypatch.setenv("PLUGIN_HOST_PURE_PYTHON", "1")
    assert run_isolated(code).stdout.split() == [str(_elf.compiled_reader_available()), "False"]
    monkeypatch.setenv("PLUGIN_HOST_PURE_PYTHON", "0")
    available = str(_elf.compiled_reader_available())
    assert run_isolated(code).stdout.split() == [available, available]


def test_ci_builds_the_c_reader() -> None:
    if not EXTENSIONS_PROMISED:
        pytest.skip("only CI's usual install promises a C compiler at install time")
    assert _elf.compiled_reader_available(), "CI installed plugin-host without plugin_host.formats._elfread"


def test_an_install_made_without_a_compiler_has_no_c_reader() -> None:
    """CI's second run of the suite installs with ``CC=false``: this checks that it ran without the C reader."""
    if not NO_COMPILER_INSTALL:
        pytest.skip("PLUGIN_HOST_TEST_INSTALL=no-compiler says the install was made without a C compiler")
    assert not _elf.compiled_reader_available()
    assert _elf.compiled_elf_exports(0, 0, "x", b"") is None


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_the_c_reader_compiles_warning_free(cc: str, tmp_path: Path) -> None:
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    include = sysconfig.get_paths()["include"]
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-c", "-DPy_LIMITED_API=0x030B0000"]
    cmd = [cc, *flags, f"-I{include}", "-I", str(SPEEDUPS), "-I", str(INCLUDE), str(SPEEDUPS / "elfread.c")]
    proc = subprocess.run([*cmd, "-o", str(tmp_path / "elfread.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_open_exports_refuses_a_second_entry_and_leaks_no_descriptor(example_plugins: dict[str, Path]) -> None:
    context = open_exports(example_plugins["greeters"])
    before = set(os.listdir("/proc/self/fd"))
    with context as (table, fd):
        with pytest.raises(RuntimeError, match="entered already"), context:
            pass
        assert table.symbols and os.fstat(fd)  # the first entry's descriptor is still open
    assert set(os.listdir("/proc/self/fd")) <= before
