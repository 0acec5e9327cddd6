"""The ELF ``.dynsym`` reader (formats/_elf.py) against pyelftools, the reference.

The host reads ELF export tables with its own ``struct`` reader (pyelftools
took about 10 ms a file, ``abi check``'s whole budget).  pyelftools stays the
reference here, a test dependency: both read every built plugin (C, C++,
Rust, the broken test plugins), synthetic ELF32/ELF64 files of both byte
orders, every truncation of a real library and fuzzed copies, and must agree
on every file both accept; where only one accepts, the reason must be one of
the known, deliberate differences listed below.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_host.formats import (
    ELF_MACHINES,
    check_table,
    exported_names,
    machine_name,
    read_exports,
    read_unload_blockers,
)
from plugin_interface import NotASharedLibraryError
from test_symbols import MUTATION, deadline, mutate

Table = tuple[str, int, str, dict[str, int], tuple[tuple[int, int, int], ...]]

_BINDS = ("STB_GLOBAL", "STB_WEAK")
_TYPES = ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
#: Sizes of a section header, program header and symbol, by ELF class (in bits, as pyelftools counts).
_SIZES = {32: (40, 32, 16), 64: (64, 56, 24)}


def reference_exports(path: Path) -> Table:
    """The export table as pyelftools reads it: the host's reader before it had its own.

    :raises NotASharedLibraryError: as that reader did (its checks of counts against the file size kept).
    """
    name = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            elf = ELFFile(f)
            shent, phent, syment = _SIZES[elf.elfclass]
            if elf["e_phnum"]:
                check_table(name, "program headers", elf["e_phoff"], elf["e_phnum"], elf["e_phentsize"], size)
            if elf["e_shentsize"] != shent:
                raise NotASharedLibraryError(name, f"section header entries of {elf['e_shentsize']} bytes")
            check_table(name, "section headers", elf["e_shoff"], elf.num_sections(), shent, size)
            regions = tuple(
                (seg["p_vaddr"], seg["p_filesz"], seg["p_offset"])
                for seg in elf.iter_segments()
                if seg["p_type"] == "PT_LOAD" and phent == elf["e_phentsize"]
            )
            dynsym = next((s for s in elf.iter_sections() if s["sh_type"] == "SHT_DYNSYM"), None)
            if dynsym is None:
                raise NotASharedLibraryError(name, "no dynamic symbol table (.dynsym)")
            if dynsym["sh_entsize"] != syment:
                raise NotASharedLibraryError(name, f".dynsym entries of {dynsym['sh_entsize']} bytes")
            check_table(name, ".dynsym", dynsym["sh_offset"], dynsym["sh_size"] // syment, syment, size)
            symbols: dict[str, int] = {}
            for sym in dynsym.iter_symbols():
                if (
                    sym["st_shndx"] != "SHN_UNDEF"
                    and sym["st_info"]["bind"] in _BINDS
                    # pyelftools reads 3 bits of visibility; glibc (and our reader) masks 2 (gABI's ELF_ST_VISIBILITY)
                    and sym["st_other"]["visibility"] in ("STV_DEFAULT", "STV_EXPORTED")
                    and sym["st_info"]["type"] in _TYPES
                    and sym.name
                ):
                    symbols[sym.name] = sym["st_value"]
            e_machine = elf.header["e_machine"]
            code = e_machine if isinstance(e_machine, int) else _ELF_MACHINE_CODES.get(e_machine, -1)
            return (
                machine_name(ELF_MACHINES, code),
                elf.elfclass // 8,
                "little" if elf.little_endian else "big",
                symbols,
                regions,
            )
    except NotASharedLibraryError:
        raise
    except Exception as e:  # ELFError, struct and construct errors, ValueError, ...: all mean "malformed"
        raise NotASharedLibraryError(name, f"malformed ELF file: {type(e).__name__}: {e}") from e


_ELF_MACHINE_CODES = {k: v for k, v in ENUM_E_MACHINE.items() if isinstance(v, int)}


def ours(path: Path) -> Table:
    t = read_exports(path)
    return (t.machine, t.pointer_size, t.byteorder, t.symbols, t.regions)


def outcome(read: Any, path: Path) -> Table | NotASharedLibraryError:
    with deadline():
        try:
            result: Table = read(path)
            return result
        except NotASharedLibraryError as e:
            assert e.path == str(path)
            return e


# ---- every built plugin ---------------------------------------------------------------------------------------


def test_every_built_plugin_reads_alike(example_plugins: dict[str, Path], test_plugins: dict[str, Path]) -> None:
    libraries = {**{f"example {k}": v for k, v in example_plugins.items()}, **test_plugins}
    assert len(libraries) >= 12
    for what, lib in sorted(libraries.items()):
        mine, reference = ours(lib), reference_exports(lib)
        assert mine == reference, what
        assert mine[3], what  # not vacuous: every one exports something
        assert_names_agree(lib, mine[3])


#: Prefixes :func:`exported_names` is held to: what ``reload(trait=None)`` asks, and others (a lone surrogate: none).
PREFIXES = ("plugin_register_", "plugin_", "plugin_register_all_", "w", "caf\u00e9", "no_such_prefix", "plugin_\udcff")


def assert_names_agree(lib: Path, symbols: dict[str, int]) -> None:
    """:func:`exported_names` is the export table's names with the prefix, for every prefix."""
    for prefix in PREFIXES:
        assert exported_names(lib, prefix) == sorted(n for n in symbols if n.startswith(prefix)), (lib, prefix)


def test_language_plugins_read_alike(language: str, language_greeter: Any) -> None:
    for host_owned in (False, True):
        lib = language_greeter(language, host_owned)
        assert ours(lib) == reference_exports(lib)


# ---- ELF32 / ELF64, both byte orders, made here -----------------------------------------------------------------


def make_elf(elf_class: int, order: str, symbols: list[tuple[str, int, int, int, int]], machine: int = 62) -> bytes:
    """A minimal ELF shared object: a PT_LOAD header, ``.dynsym``, ``.dynstr``, ``.shstrtab``.

    :param symbols: ``(name, st_info, st_other, st_shndx, st_value)`` after the null symbol.
    """
    is64 = elf_class == 2
    ehsize, phentsize, shentsize, syment = (64, 56, 64, 24) if is64 else (52, 32, 40, 16)
    dynstr = b"\0"
    offsets = []
    for name, *_ in symbols:
        offsets.append(len(dynstr))
        dynstr += name.encode() + b"\0"
    dynsym = b"\0" * syment
    for (_, info, other, shndx, value), name_offset in zip(symbols, offsets, strict=True):
        if is64:
            dynsym += struct.pack(order + "IBBHQQ", name_offset, info, other, shndx, value, 8)
        else:
            dynsym += struct.pack(order + "IIIBBH", name_offset, value, 8, info, other, shndx)
    shstrtab = b"\0.dynsym\0.dynstr\0.shstrtab\0"
    phoff = ehsize
    dynsym_off = phoff + phentsize
    dynstr_off = dynsym_off + len(dynsym)
    shstr_off = dynstr_off + len(dynstr)
    shoff = (shstr_off + len(shstrtab) + 7) // 8 * 8
    total = shoff + 4 * shentsize

    def section(name: int, sh_type: int, offset: int, size: int, link: int, entsize: int) -> bytes:
        if is64:
            return struct.pack(order + "IIQQQQIIQQ", name, sh_type, 2, offset, offset, size, link, 1, 8, entsize)
        return struct.pack(order + "IIIIIIIIII", name, sh_type, 2, offset, offset, size, link, 1, 4, entsize)

    ident = b"\x7fELF" + bytes([elf_class, 1 if order == "<" else 2, 1, 0]) + b"\0" * 8
    if is64:
        header = ident + struct.pack(
            order + "HHIQQQIHHHHHH", 3, machine, 1, 0, phoff, shoff, 0, ehsize, phentsize, 1, shentsize, 4, 3
        )
        phdr = struct.pack(order + "IIQQQQQQ", 1, 5, 0, 0, 0, total, total, 0x1000)
    else:
        header = ident + struct.pack(
            order + "HHIIIIIHHHHHH", 3, machine, 1, 0, phoff, shoff, 0, ehsize, phentsize, 1, shentsize, 4, 3
        )
        phdr = struct.pack(order + "IIIIIIII", 1, 0, 0, 0, total, total, 5, 0x1000)
    body = header + phdr + dynsym + dynstr + shstrtab
    body += b"\0" * (shoff - len(body))
    body += section(0, 0, 0, 0, 0, 0)
    body += section(1, 11, dynsym_off, len(dynsym), 2, syment)  # SHT_DYNSYM -> .dynstr
    body += section(9, 3, dynstr_off, len(dynstr), 0, 0)
    body += section(17, 3, shstr_off, len(shstrtab), 0, 0)
    return body


GLOBAL_FUNC, GLOBAL_OBJECT, WEAK_FUNC, LOCAL_FUNC, GLOBAL_TLS, UNIQUE_OBJECT = 0x12, 0x11, 0x22, 0x02, 0x16, 0xA1
SYNTHETIC = [
    ("plugin_register_all_Greeter_v1", GLOBAL_FUNC, 0, 7, 0x1100),
    ("plugin_abi_descriptor_Greeter_v1", GLOBAL_OBJECT, 0, 8, 0x2000),
    ("weak_one", WEAK_FUNC, 0, 7, 0x1200),
    ("local_one", LOCAL_FUNC, 0, 7, 0x1300),  # local: not exported
    ("hidden_one", GLOBAL_FUNC, 2, 7, 0x1400),  # STV_HIDDEN
    ("protected_one", GLOBAL_FUNC, 3, 7, 0x1500),  # STV_PROTECTED: not default
    ("imported", GLOBAL_FUNC, 0, 0, 0),  # SHN_UNDEF
    ("tls_one", GLOBAL_TLS, 0, 9, 0x10),  # STT_TLS: not a type the scheme uses
    ("absolute", GLOBAL_OBJECT, 0, 0xFFF1, 0x42),  # SHN_ABS: defined
    ("unique_one", UNIQUE_OBJECT, 0, 8, 0x2100),  # STB_GNU_UNIQUE
    ("caf\u00e9_utf8", GLOBAL_FUNC, 0, 7, 0x1600),  # a UTF-8 name: the non-ASCII path
]


@pytest.mark.parametrize(("elf_class", "order"), [(1, "<"), (1, ">"), (2, "<"), (2, ">")])
def test_synthetic_elf_of_each_class_and_byte_order(tmp_path: Path, elf_class: int, order: str) -> None:
    lib = tmp_path / "libsynthetic.so"
    lib.write_bytes(make_elf(elf_class, order, SYNTHETIC, machine=183))
    mine = ours(lib)
    assert mine == reference_exports(lib)
    assert mine[:3] == ("aarch64", 4 * elf_class, "little" if order == "<" else "big")
    assert mine[3] == {
        "plugin_register_all_Greeter_v1": 0x1100,
        "plugin_abi_descriptor_Greeter_v1": 0x2000,
        "weak_one": 0x1200,
        "absolute": 0x42,
        "caf\u00e9_utf8": 0x1600,
    }
    blockers = read_unload_blockers(lib)
    assert blockers is not None and (blockers.unique_count, blockers.unique_symbols) == (1, ("unique_one",))
    assert_names_agree(lib, mine[3])
    assert exported_names(lib, "plugin_") == ["plugin_abi_descriptor_Greeter_v1", "plugin_register_all_Greeter_v1"]


@pytest.mark.parametrize(("elf_class", "order"), [(1, "<"), (2, ">"), (2, "<")])
def test_names_stored_inside_other_names_are_found(tmp_path: Path, elf_class: int, order: str) -> None:
    """A linker may store a name as the tail of a longer one (``.dynstr`` suffix merging): every
    occurrence of the prefix is a candidate, overlapping ones too; a name is exported by the symbol
    table's rules only (here the longer names are local, or an import)."""
    outer = "xplugin_register_plugin_register_all_Tail_v1"
    symbols = [
        (outer, LOCAL_FUNC, 0, 7, 0x1100),
        ("placeholder_one", GLOBAL_FUNC, 0, 7, 0x1200),  # renamed below to "plugin_register_plugin_..."
        ("placeholder_two", GLOBAL_FUNC, 0, 7, 0x1300),  # renamed below to "plugin_register_all_Tail_v1"
        ("plugin_register_Imported_T_v1", GLOBAL_FUNC, 0, 0, 0),  # SHN_UNDEF: an import, not exported
    ]
    data = bytearray(make_elf(elf_class, order, symbols))
    syment, shent = (24, 64) if elf_class == 2 else (16, 40)
    (shoff,) = struct.unpack_from(order + ("Q" if elf_class == 2 else "I"), data, 40 if elf_class == 2 else 32)
    dynsym_offset = struct.unpack_from(
        order + ("Q" if elf_class == 2 else "I"), data, shoff + shent + (24 if elf_class == 2 else 16)
    )[0]
    inner = outer.index("plugin_register_all_")
    struct.pack_into(order + "I", data, dynsym_offset + 2 * syment, 1 + 1)  # "plugin_register_plugin_..."
    struct.pack_into(order + "I", data, dynsym_offset + 3 * syment, 1 + inner)  # "plugin_register_all_Tail_v1"
    lib = tmp_path / "libtails.so"
    lib.write_bytes(bytes(data))
    symbols_read = ours(lib)[3]
    assert symbols_read == {
        "plugin_register_plugin_register_all_Tail_v1": 0x1200,
        "plugin_register_all_Tail_v1": 0x1300,
    }
    assert symbols_read == reference_exports(lib)[3]
    assert_names_agree(lib, symbols_read)


def test_a_name_past_the_string_table_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_elf(2, "<", SYNTHETIC[:1]))
    (shoff,) = struct.unpack_from("<Q", data, 40)
    dynstr_header = shoff + 2 * 64
    (dynstr_size,) = struct.unpack_from("<Q", data, dynstr_header + 32)
    struct.pack_into("<Q", data, dynstr_header + 32, dynstr_size - 1)  # cut the last name's NUL off
    lib = tmp_path / "libcut.so"
    lib.write_bytes(bytes(data))
    with pytest.raises(NotASharedLibraryError, match=r"symbol 1: its name \(offset 1\) runs past the end of .dynstr"):
        read_exports(lib)


# ---- truncated and fuzzed copies ----------------------------------------------------------------------------------

#: Where only our reader refuses a file: it bounds every name and string table by the file (pyelftools reads
#: a name wherever its offset points, past .dynstr and the file's end), and it refuses a symbol table link
#: to a section that does not exist (pyelftools reads a header past the table).
OURS_STRICTER = ("runs past the end of .dynstr", ".dynstr:", "links to section", "truncated while reading")


def agree(lib: Path, stats: dict[str, int]) -> None:
    mine, reference = outcome(ours, lib), outcome(reference_exports, lib)
    if isinstance(mine, NotASharedLibraryError) and isinstance(reference, NotASharedLibraryError):
        stats["both refuse"] += 1
    elif isinstance(mine, NotASharedLibraryError):
        assert any(reason in mine.detail for reason in OURS_STRICTER), (mine, reference)
        stats["ours stricter"] += 1
    elif isinstance(reference, NotASharedLibraryError):
        # pyelftools parses every section and segment it meets; ours reads only the tables it uses.
        assert "malformed ELF file" in reference.detail, reference
        stats["reference stricter"] += 1
    else:
        assert mine == reference, lib
        stats["both read"] += 1
    if not isinstance(mine, NotASharedLibraryError):  # the names reader is never stricter, and agrees
        with deadline():
            assert_names_agree(lib, mine[3])


def test_every_truncation_reads_alike(tmp_path: Path, example_plugins: dict[str, Path]) -> None:
    data = example_plugins["greeters"].read_bytes()
    lib = tmp_path / "libtruncated.so"
    stats = dict.fromkeys(("both refuse", "ours stricter", "reference stricter", "both read"), 0)
    for size in sorted({*range(0, 256, 7), *range(0, len(data), max(1, len(data) // 97)), len(data) - 1}):
        lib.write_bytes(data[:size])
        agree(lib, stats)
    assert stats["both refuse"] > 90, stats


@settings(
    max_examples=int(os.environ.get("PLUGIN_HOST_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    which=st.sampled_from(["greeters", "multi_trait", "host_owned"]),
    header_bias=st.booleans(),
    mutations=st.lists(MUTATION, min_size=1, max_size=8),
)
def test_fuzzed_libraries_read_alike(
    tmp_path_factory: pytest.TempPathFactory,
    example_plugins: dict[str, Path],
    which: str,
    header_bias: bool,
    mutations: list[tuple[str, int, int]],
) -> None:
    lib = tmp_path_factory.getbasetemp() / "fuzz-reference" / "libmutant.so"
    lib.parent.mkdir(exist_ok=True)
    lib.write_bytes(mutate(example_plugins[which].read_bytes(), mutations, header_bias))
    agree(lib, FUZZ_STATS)


FUZZ_STATS = dict.fromkeys(("both refuse", "ours stricter", "reference stricter", "both read"), 0)


def test_fuzzing_compared_real_tables() -> None:
    """The fuzz comparison above was not vacuous: many mutants were read by both and compared."""
    if sum(FUZZ_STATS.values()) == 0:
        pytest.skip("test_fuzzed_libraries_read_alike did not run in this session")
    assert FUZZ_STATS["both read"] >= sum(FUZZ_STATS.values()) // 10, FUZZ_STATS
