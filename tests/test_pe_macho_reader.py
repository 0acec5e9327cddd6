"""The PE and Mach-O readers (formats/_pe.py, formats/_macho.py) against pefile and macholib, the references.

The host reads PE export directories and Mach-O symbol tables with its own
``struct`` readers; pefile and macholib, the readers before them, stay here
as test dependencies (tests/pe_macho_reference.py holds the old readers as
they were).  This file needs no cross-compiler: small PE32/PE32+ and Mach-O
images (32/64-bit, both byte orders, universal) are made here, read by both
readers, truncated at every length and fuzzed.  tests/test_cross.py compares
the two on every plugin zig cross-builds, on truncations and fuzzed copies.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pe_macho_reference import OUTCOMES, agree, as_tuple, reference_exports
from plugin_host.formats import read_exports
from plugin_host.formats._macho import MAX_FAT_ARCHS
from plugin_host.formats._pe import MAX_EXPORTS, MAX_NAME_BYTES, MAX_SECTIONS
from plugin_interface import ErrorReason, NotASharedLibraryError
from test_symbols import MUTATION, mutate

REPO = Path(__file__).resolve().parents[1]

# ---- PE32 / PE32+ made here ---------------------------------------------------------------------------------------

_FILE_ALIGNMENT, _SECTION_ALIGNMENT = 0x200, 0x1000
#: The exports of the images made here: named, one ordinal-only, one unused (RVA 0) and one forwarded.
PE_EXPORTS = [
    ("plugin_register_all_Greeter_v1", 0x1010),
    ("plugin_abi_descriptor_Greeter_v1", 0x1100),
    ("??0Widget@@QEAA@XZ", 0x1020),  # an MSVC-decorated C++ name
    ("unused_slot", 0),  # RVA 0: not exported
]
PE_EXPECTED = {
    "plugin_register_all_Greeter_v1": 0x1010,
    "plugin_abi_descriptor_Greeter_v1": 0x1100,
    "??0Widget@@QEAA@XZ": 0x1020,
}


def make_pe(
    pe32_plus: bool = True, machine: int = 0x8664, exports: list[tuple[str, int]] = PE_EXPORTS, edata_raw: int = 0x200
) -> bytes:
    """A minimal PE DLL: headers, ``.text`` at RVA 0x1000 and ``.edata`` (the export directory) at 0x2000.

    The export address table has one more function than names (an ordinal-only export) and a forwarder.
    """
    fixed = 112 if pe32_plus else 96
    optional_size = fixed + 16 * 8
    edata_rva, edata_offset = 0x2000, 0x600
    names = [name for name, _ in exports]
    nfunctions = len(exports) + 2  # + an ordinal-only function, + a forwarder
    functions_rva = edata_rva + 40
    names_rva = functions_rva + 4 * nfunctions
    ordinals_rva = names_rva + 4 * (len(names) + 1)
    strings_rva = ordinals_rva + 2 * (len(names) + 1)
    strings = b"plugin.dll\0"
    name_rvas = []
    for name in [*names, "forwarded"]:
        name_rvas.append(strings_rva + len(strings))
        strings += name.encode() + b"\0"
    forwarder_rva = strings_rva + len(strings)
    strings += b"OTHER.function\0"
    functions = [address for _, address in exports] + [0x1030, forwarder_rva]
    edata = struct.pack(
        "<IIHHIIIIIII",
        0,
        0,
        0,
        0,
        strings_rva,
        1,
        nfunctions,
        len(names) + 1,
        functions_rva,
        names_rva,
        ordinals_rva,
    )
    edata += struct.pack(f"<{nfunctions}I", *functions)
    edata += struct.pack(f"<{len(name_rvas)}I", *name_rvas)
    edata += struct.pack(f"<{len(name_rvas)}H", *range(len(names)), nfunctions - 1)
    edata += strings
    assert len(edata) <= edata_raw
    edata_size = len(edata)

    dos = bytearray(64)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)
    coff = struct.pack("<HHIIIHH", machine, 2, 0, 0, 0, optional_size, 0x2022)
    optional = bytearray(optional_size)
    struct.pack_into("<HBBIII", optional, 0, 0x20B if pe32_plus else 0x10B, 14, 0, 0x200, 0x200, 0)
    struct.pack_into("<II", optional, 16, 0x1000, 0x1000)  # AddressOfEntryPoint, BaseOfCode
    struct.pack_into("<II", optional, 32, _SECTION_ALIGNMENT, _FILE_ALIGNMENT)
    struct.pack_into("<II", optional, 56, 0x3000, 0x400)  # SizeOfImage, SizeOfHeaders
    struct.pack_into("<I", optional, fixed - 4, 16)  # NumberOfRvaAndSizes
    struct.pack_into("<II", optional, fixed, edata_rva, edata_size)  # data directory 0: the exports

    def section(name: bytes, virtual_size: int, address: int, raw_size: int, raw_offset: int, flags: int) -> bytes:
        return struct.pack("<8sIIIIIIHHI", name, virtual_size, address, raw_size, raw_offset, 0, 0, 0, 0, flags)

    headers = bytes(dos) + b"PE\0\0" + coff + bytes(optional)
    headers += section(b".text", 0x120, 0x1000, 0x200, 0x400, 0x60000020)
    headers += section(b".edata", edata_size, edata_rva, edata_raw, edata_offset, 0x40000040)
    assert len(headers) <= 0x400
    text = bytes(range(256)) * 2
    return headers.ljust(0x400, b"\0") + text + edata.ljust(edata_raw, b"\0")


@pytest.mark.parametrize(("pe32_plus", "machine", "name"), [(True, 0x8664, "x86_64"), (False, 0x14C, "i386")])
def test_a_pe_image_made_here(tmp_path: Path, pe32_plus: bool, machine: int, name: str) -> None:
    dll = tmp_path / "plugin.dll"
    dll.write_bytes(make_pe(pe32_plus, machine))
    table = read_exports(dll)
    assert as_tuple(table) == as_tuple(reference_exports(dll))
    assert (table.format, table.machine, table.pointer_size) == ("pe", name, 8 if pe32_plus else 4)
    assert table.symbols == {**PE_EXPECTED, "forwarded": table.symbols["forwarded"]}
    assert table.regions == ((0x1000, 0x120, 0x400), (0x2000, table.regions[1][1], 0x600))
    assert table.read("plugin_register_all_Greeter_v1", 4) == bytes([0x10, 0x11, 0x12, 0x13])  # .text at 0x1010


def test_a_pe_image_without_exports(tmp_path: Path) -> None:
    data = bytearray(make_pe())
    struct.pack_into("<II", data, 64 + 24 + 112, 0, 0)  # no export directory
    dll = tmp_path / "plugin.dll"
    dll.write_bytes(bytes(data))
    assert read_exports(dll).symbols == {} == reference_exports(dll).symbols


def _pe_with(tmp_path: Path, offset: int, fmt: str, *values: int) -> Path:
    data = bytearray(make_pe())
    struct.pack_into(fmt, data, offset, *values)
    dll = tmp_path / "malformed.dll"
    dll.write_bytes(bytes(data))
    return dll


_COFF, _OPTIONAL, _SECTIONS = 64 + 4, 64 + 24, 64 + 24 + 240
_EDATA = 0x600  # the export directory's file offset


@pytest.mark.parametrize(
    ("offset", "fmt", "values", "message"),
    [
        (0x3C, "<I", (0x7FFFFFF0,), r"no PE signature at offset 2147483632 \(e_lfanew\)"),
        (64, "<4s", (b"PE\0\1",), "no PE signature at offset 64"),
        (_OPTIONAL, "<H", (0x30B,), r"unknown optional header magic 0x30b \(not PE32 or PE32\+\)"),
        (_COFF + 2, "<H", (MAX_SECTIONS + 1,), f"{MAX_SECTIONS + 1} sections \\(more than {MAX_SECTIONS}\\)"),
        (_COFF + 2, "<H", (900,), r"section table: 900 entries of 40 bytes at offset 328 run past the end"),
        (_SECTIONS + 40 + 16, "<I", (0x10000,), "truncated: section 1 ends at byte 67072, the file has 2048"),
        (_OPTIONAL + 112, "<I", (0x9000,), "the export directory at RVA 0x9000 lies in no section"),
        (_EDATA + 20, "<I", (MAX_EXPORTS + 1,), f"export directory of {MAX_EXPORTS + 1} functions"),
        (_EDATA + 20, "<I", (200,), r"the export address table at RVA 0x2028 \(800 bytes\) runs past its section"),
        (_EDATA + 36, "<I", (0x1000,), r"export name 0: ordinal index \d+ beyond the 6 functions"),
    ],
)
def test_malformed_pe_headers_and_tables(
    tmp_path: Path, offset: int, fmt: str, values: tuple[int, ...], message: str
) -> None:
    dll = _pe_with(tmp_path, offset, fmt, *values)
    with pytest.raises(NotASharedLibraryError, match=message) as caught:
        read_exports(dll)
    assert caught.value.path == str(dll)
    assert caught.value.reason is ErrorReason.NOT_A_LIBRARY


def test_a_pe_name_that_is_not_a_symbol_name_or_not_terminated(tmp_path: Path) -> None:
    data = make_pe()
    dll = tmp_path / "names.dll"
    dll.write_bytes(data.replace(b"plugin_register_all_Greeter_v1", b"plugin register_all_Greeter_v1"))
    with pytest.raises(NotASharedLibraryError, match=r"export name 0 \(b'plugin register_all_Greeter_v1'\)"):
        read_exports(dll)
    at = data.index(b"forwarded\0")
    dll.write_bytes(data[:at] + b"x" * (0x800 - at))  # the last name runs to the end of its section
    with pytest.raises(NotASharedLibraryError, match="export name 4 at RVA 0x[0-9a-f]+ is not NUL-terminated"):
        read_exports(dll)


def test_a_long_pe_name_is_read_whole(tmp_path: Path) -> None:
    """The one deliberate difference from pefile on a well-formed file: it cuts names at 512 bytes, ours reads
    up to MAX_NAME_BYTES (a C++ decorated name can be longer)."""
    long_name = "?" + "VeryLongTemplateArgument@" * 30 + "@Z"  # 753 bytes
    dll = tmp_path / "long.dll"
    dll.write_bytes(make_pe(exports=[(long_name, 0x1010)], edata_raw=0x400))
    assert read_exports(dll).symbols[long_name] == 0x1010
    assert long_name[:512] in reference_exports(dll).symbols
    assert len(long_name.encode()) <= MAX_NAME_BYTES


# ---- Mach-O made here: 32/64-bit, both byte orders, universal --------------------------------------------------

_N_EXT, _N_SECT, _N_PEXT, _N_UNDF = 0x01, 0x0E, 0x10, 0x0
#: (name, n_type, value): locals first, then the external defined, then the undefined, as ld orders them.
MACHO_SYMBOLS = [
    ("_local_helper", _N_SECT, 0x1030),
    ("_plugin_register_all_Greeter_v1", _N_SECT | _N_EXT, 0x1010),
    ("_plugin_abi_descriptor_Greeter_v1", _N_SECT | _N_EXT, 0x1020),
    ("_private_extern", _N_SECT | _N_EXT | _N_PEXT, 0x1038),
    ("_malloc", _N_UNDF | _N_EXT, 0),
]
MACHO_EXPECTED = {"plugin_register_all_Greeter_v1": 0x1010, "plugin_abi_descriptor_Greeter_v1": 0x1020}
#: cputype -> machine name
CPUS = {0x01000007: "x86_64", 0x0100000C: "aarch64", 7: "i386", 18: "ppc"}


def make_macho(is64: bool, order: str, cpu: int = 0x0100000C, dysymtab: bool = True) -> bytes:
    """A minimal Mach-O dylib: ``__TEXT`` (one section), ``__LINKEDIT``, ``LC_SYMTAB`` and ``LC_DYSYMTAB``."""
    header_size = 32 if is64 else 28
    segment_size, section_size = (72, 80) if is64 else (56, 68)
    commands_size = 2 * segment_size + section_size + 24 + (80 if dysymtab else 0)
    text_offset = (header_size + commands_size + 15) // 16 * 16
    text = b"\xc3" * 0x40
    strtab = b" \0"
    nlist = b""
    for name, n_type, value in MACHO_SYMBOLS:
        entry = (len(strtab), n_type, 1 if n_type & _N_SECT else 0, 0, value)
        nlist += struct.pack(order + ("IBBHQ" if is64 else "IBBHI"), *entry)
        strtab += name.encode() + b"\0"
    symoff = text_offset + len(text)
    stroff = symoff + len(nlist)
    end = stroff + len(strtab)

    def segment(name: bytes, vmaddr: int, fileoff: int, filesize: int, sections: bytes, nsects: int) -> bytes:
        size = segment_size + len(sections)
        if is64:
            head = struct.pack(
                order + "II16sQQQQiiII", 0x19, size, name, vmaddr, filesize, fileoff, filesize, 5, 5, nsects, 0
            )
        else:
            head = struct.pack(
                order + "II16sIIIIiiII", 0x1, size, name, vmaddr, filesize, fileoff, filesize, 5, 5, nsects, 0
            )
        return head + sections

    if is64:
        section = struct.pack(
            order + "16s16sQQIIIIIIII", b"__text", b"__TEXT", 0x1000, 0x40, text_offset, 4, 0, 0, 0, 0, 0, 0
        )
    else:
        section = struct.pack(
            order + "16s16sIIIIIIIII", b"__text", b"__TEXT", 0x1000, 0x40, text_offset, 4, 0, 0, 0, 0, 0
        )
    commands = segment(b"__TEXT", 0x1000 - text_offset, 0, text_offset + len(text), section, 1)
    commands += segment(b"__LINKEDIT", 0x3000, symoff, end - symoff, b"", 0)
    commands += struct.pack(order + "IIIIII", 0x2, 24, symoff, len(MACHO_SYMBOLS), stroff, len(strtab))
    if dysymtab:
        commands += struct.pack(order + "II18I", 0xB, 80, 0, 1, 1, 3, 4, 1, *([0] * 12))
    assert len(commands) == commands_size
    magic = 0xFEEDFACF if is64 else 0xFEEDFACE
    header = struct.pack(order + "IiiIIII", magic, cpu, 3, 6, 4 if dysymtab else 3, commands_size, 0)
    header += b"\0\0\0\0" if is64 else b""
    return (header + commands).ljust(text_offset, b"\0") + text + nlist + strtab


def make_fat(slices: list[tuple[int, bytes]]) -> bytes:
    """A universal file of ``(cputype, image)`` slices, each at a 256-byte boundary, the last one ending the file."""
    offset = (8 + 20 * len(slices) + 255) // 256 * 256
    table, body = b"", b""
    for cpu, image in slices:
        body = body.ljust((len(body) + 255) // 256 * 256, b"\0")
        table += struct.pack(">iiIII", cpu, 3, offset + len(body), len(image), 8)
        body += image
    return (struct.pack(">II", 0xCAFEBABE, len(slices)) + table).ljust(offset, b"\0") + body


@pytest.mark.parametrize("is64", [True, False])
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("dysymtab", [True, False])
def test_a_macho_image_made_here(tmp_path: Path, is64: bool, order: str, dysymtab: bool) -> None:
    cpu = (0x0100000C if is64 else 7) if order == "<" else (0x01000012 if is64 else 18)
    dylib = tmp_path / "libplugin.dylib"
    dylib.write_bytes(make_macho(is64, order, cpu, dysymtab))
    table = read_exports(dylib)
    assert as_tuple(table) == as_tuple(reference_exports(dylib))
    machine = {0x0100000C: "aarch64", 7: "i386", 0x01000012: "ppc64", 18: "ppc"}[cpu]
    assert (table.format, table.machine, table.pointer_size) == ("macho", machine, 8 if is64 else 4)
    assert table.byteorder == ("little" if order == "<" else "big")
    assert table.symbols == MACHO_EXPECTED  # without LC_DYSYMTAB: every N_EXT N_SECT symbol not private
    assert len(table.regions) == 2
    assert table.read("plugin_register_all_Greeter_v1", 4) == b"\xc3" * 4


def test_a_universal_file_reads_its_first_slice(tmp_path: Path) -> None:
    first, second = make_macho(True, "<", 0x01000007), make_macho(True, "<", 0x0100000C)
    dylib = tmp_path / "libuniversal.dylib"
    dylib.write_bytes(make_fat([(0x01000007, first), (0x0100000C, second)]))
    table = read_exports(dylib)
    assert as_tuple(table) == as_tuple(reference_exports(dylib))
    assert table.machine == "x86_64" and table.symbols == MACHO_EXPECTED
    assert table.regions[0][2] == 256  # file offsets are the slice's
    assert table.read("plugin_register_all_Greeter_v1", 4) == b"\xc3" * 4


def _macho_with(tmp_path: Path, offset: int, fmt: str, *values: int) -> Path:
    data = bytearray(make_macho(True, "<"))
    struct.pack_into(fmt, data, offset, *values)
    dylib = tmp_path / "libmalformed.dylib"
    dylib.write_bytes(bytes(data))
    return dylib


_CMDS = 32  # the first load command's offset in the 64-bit image
_SYMTAB = _CMDS + 72 + 80 + 72  # LC_SYMTAB after both segments


@pytest.mark.parametrize(
    ("offset", "fmt", "values", "message"),
    [
        (20, "<I", (0x7FFFFFFF,), "4 load commands in 2147483647 bytes do not fit in the"),
        (16, "<I", (6,), "load command 4 of 6 starts past the load commands"),
        (_CMDS + 4, "<I", (0,), r"load command 0 \(0x19\) of 0 bytes runs past"),
        (_CMDS + 4, "<I", (0x1000,), r"load command 0 \(0x19\) of 4096 bytes runs past the 328 bytes"),
        (_CMDS + 64, "<I", (2,), "load command 0: a segment of 2 sections in 152 bytes"),
        (_CMDS + 72 + 80 + 48, "<Q", (0x10000,), "truncated: segment 1 ends at byte 65968 of a 618-byte image"),
        (_SYMTAB + 12, "<I", (0x100000,), "symbol table: 1048576 entries of 16 bytes"),
        (_SYMTAB + 20, "<I", (0xFFFFFFF0,), "string table: 4294967280 entries of 1 bytes"),
        (_SYMTAB + 24 + 20, "<I", (9,), r"external symbols 1\.\.10 beyond 5 symbols"),
    ],
)
def test_malformed_macho_load_commands(
    tmp_path: Path, offset: int, fmt: str, values: tuple[int, ...], message: str
) -> None:
    dylib = _macho_with(tmp_path, offset, fmt, *values)
    with pytest.raises(NotASharedLibraryError, match=message) as caught:
        read_exports(dylib)
    assert caught.value.path == str(dylib)
    assert caught.value.reason is ErrorReason.NOT_A_LIBRARY


def test_malformed_universal_files(tmp_path: Path) -> None:
    image = make_macho(True, "<")
    dylib = tmp_path / "libfat.dylib"
    for data, message in [
        (struct.pack(">II", 0xCAFEBABE, 0), "universal file with no architectures"),
        (struct.pack(">II", 0xCAFEBABE, MAX_FAT_ARCHS + 1), f"universal file with {MAX_FAT_ARCHS + 1} architectures"),
        (make_fat([(7, image)])[:-300], "architecture 0 runs past the end of the file"),
        (make_fat([(7, image), (7, b"\0" * 64)]), "no Mach-O header at offset 1024"),
        (make_fat([(7, image), (7, image[:36] + b"\0\0\0\0" + image[40:])]), r"load command 0 \(0x19\) of 0 bytes"),
    ]:
        dylib.write_bytes(data)
        with pytest.raises(NotASharedLibraryError, match=message):
            read_exports(dylib)


# ---- every truncation, fuzzed images -------------------------------------------------------------------------------

IMAGES = {
    "pe32+": lambda: make_pe(True),
    "pe32": lambda: make_pe(False, 0x14C),
    "macho64-le": lambda: make_macho(True, "<"),
    "macho32-be": lambda: make_macho(False, ">", 18),
    "universal": lambda: make_fat([(0x01000007, make_macho(True, "<", 0x01000007)), (7, make_macho(False, "<", 7))]),
}


@pytest.mark.parametrize("which", list(IMAGES))
def test_truncations_of_an_image_made_here(tmp_path: Path, which: str) -> None:
    data = IMAGES[which]()
    lib = tmp_path / ("libcut.dylib" if not which.startswith("pe") else "cut.dll")
    stats = dict.fromkeys(OUTCOMES, 0)
    for size in sorted({*range(1, min(len(data), 0x200), 7), *range(0x200, len(data), 29), len(data) - 1}):
        lib.write_bytes(data[:size])
        agree(lib, stats)
    assert stats["both read"] == 0, stats  # ours refuses every truncated image (its tables run past the end)


@settings(
    max_examples=int(os.environ.get("PLUGIN_HOST_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(which=st.sampled_from(list(IMAGES)), mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_fuzzed_images_made_here_read_alike(
    tmp_path_factory: pytest.TempPathFactory, which: str, mutations: list[tuple[str, int, int]]
) -> None:
    lib = tmp_path_factory.getbasetemp() / "fuzz-pe-macho" / ("mutant.dll" if which.startswith("pe") else "libm.dylib")
    lib.parent.mkdir(exist_ok=True)
    lib.write_bytes(mutate(IMAGES[which](), mutations, header_bias=False))  # the images are smaller than 1024 bytes
    agree(lib, FUZZ_STATS)


FUZZ_STATS = dict.fromkeys(OUTCOMES, 0)


def test_fuzzing_images_compared_real_tables() -> None:
    """The fuzz comparison above was not vacuous: many mutants were read by both and compared."""
    if sum(FUZZ_STATS.values()) == 0:
        pytest.skip("test_fuzzed_images_made_here_read_alike did not run in this session")
    assert FUZZ_STATS["both read"] >= sum(FUZZ_STATS.values()) // 10, FUZZ_STATS


# ---- pefile and macholib are test dependencies only ---------------------------------------------------------------


def test_the_readers_import_neither_pefile_nor_macholib(tmp_path: Path) -> None:
    (tmp_path / "plugin.dll").write_bytes(make_pe())
    (tmp_path / "libplugin.dylib").write_bytes(make_macho(True, "<"))
    code = (
        "import sys; from plugin_host.formats import read_exports\n"
        "for name in sys.argv[1:]: assert read_exports(name).symbols, name\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pefile', 'macholib'))\n"
        "assert not loaded, loaded\n"
    )
    paths = [str(tmp_path / "plugin.dll"), str(tmp_path / "libplugin.dylib")]
    done = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_pefile_and_macholib_are_not_runtime_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "pefile" not in runtime and "macholib" not in runtime
    test_extra = " ".join(project["optional-dependencies"]["test"])
    assert "pefile" in test_extra and "macholib" in test_extra
