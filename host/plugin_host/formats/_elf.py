"""ELF: the constants, the header reader the pre-check uses, and the export table.

Like packaging's ``_elffile.py``: ``struct`` reads with every offset and count
checked against the image's size before use, one error type
(:class:`~plugin_interface.NotASharedLibraryError`), constants as
:class:`enum.IntEnum`.  The export table is read with pyelftools (pure Python:
a malformed file cannot crash the process), every count it will loop over
checked against the file's size first.
"""

from __future__ import annotations

import enum
import functools
import os
import platform
import struct
import sys
from collections.abc import Callable
from typing import NamedTuple

from plugin_interface import NotASharedLibraryError

from ._io import READ_FLAGS, pread
from ._machines import ELF_MACHINES, PLATFORM_MACHINES, ElfMachine, machine_name
from ._sniff import ELF_MAGIC
from ._table import ExportTable, check_table

__all__ = [
    "DynamicTag",
    "ElfClass",
    "ElfData",
    "ElfIdentity",
    "ElfLayout",
    "ElfMachine",
    "ElfType",
    "SegmentType",
    "check_complete",
    "check_elf_complete",
    "host_elf_identity",
    "read_elf_exports",
]


class ElfClass(enum.IntEnum):
    """``e_ident[EI_CLASS]``."""

    ELFCLASS32 = 1
    ELFCLASS64 = 2


class ElfData(enum.IntEnum):
    """``e_ident[EI_DATA]``: the byte order."""

    ELFDATA2LSB = 1
    ELFDATA2MSB = 2


class ElfType(enum.IntEnum):
    """``e_type``."""

    ET_NONE = 0
    ET_REL = 1
    ET_EXEC = 2
    ET_DYN = 3
    ET_CORE = 4


class SegmentType(enum.IntEnum):
    """``p_type`` of a program header."""

    PT_LOAD = 1
    PT_DYNAMIC = 2


class DynamicTag(enum.IntEnum):
    """``d_tag`` of a dynamic-section entry."""

    DT_NULL = 0
    DT_NEEDED = 1
    DT_STRTAB = 5
    DT_STRSZ = 10
    DT_FLAGS_1 = 0x6FFFFFFB


#: How messages describe an ELF file that is not a shared library.
ELF_TYPE_NAMES: dict[int, str] = {
    ElfType.ET_NONE: "no file type",
    ElfType.ET_REL: "a relocatable object (.o)",
    ElfType.ET_EXEC: "an executable (not position-independent)",
    ElfType.ET_CORE: "a core dump",
}
CLASS_NAMES: dict[int, str] = {ElfClass.ELFCLASS32: "32-bit (ELF32)", ElfClass.ELFCLASS64: "64-bit (ELF64)"}
BYTE_ORDER_NAMES: dict[int, str] = {ElfData.ELFDATA2LSB: "little-endian", ElfData.ELFDATA2MSB: "big-endian"}
#: Bytes of one program header entry the readers use, by class (the C pre-check agrees: speedups.c).
PHDR_SIZES: dict[int, int] = {ElfClass.ELFCLASS32: 32, ElfClass.ELFCLASS64: 56}
#: Sizes of a section header, program header and symbol, by ELF class (in bits, as pyelftools counts).
_SIZES = {32: (40, 32, 16), 64: (64, 56, 24)}


class ElfIdentity(NamedTuple):
    """What an ELF header says the file was built for."""

    elf_class: int
    byte_order: int
    machine: int | None  # e_machine; None when unknown


@functools.cache
def host_elf_identity() -> ElfIdentity:
    """The class, byte order and machine of this interpreter (what it can load).

    Read from the interpreter's own ELF header; derived from
    :func:`platform.machine`, :data:`sys.maxsize` and :data:`sys.byteorder`
    when that cannot be read.
    """
    try:
        fd = os.open(os.path.realpath(sys.executable), READ_FLAGS)
        try:
            head = pread(fd, 20, 0)
        finally:
            os.close(fd)
        if head[:4] == ELF_MAGIC and head[4] in (1, 2) and head[5] in (1, 2):
            order = "<" if head[5] == ElfData.ELFDATA2LSB else ">"
            (machine,) = struct.unpack_from(order + "H", head, 18)
            return ElfIdentity(head[4], head[5], machine)
    except OSError:
        pass
    known = PLATFORM_MACHINES.get(platform.machine().lower())
    code = next((c for c, m in ELF_MACHINES.items() if m is known), None) if known is not None else None
    return ElfIdentity(
        ElfClass.ELFCLASS64 if sys.maxsize > 2**32 else ElfClass.ELFCLASS32,
        ElfData.ELFDATA2LSB if sys.byteorder == "little" else ElfData.ELFDATA2MSB,
        code,
    )


class ElfLayout(NamedTuple):
    """What :func:`check_elf_complete` read: header fields and the program headers.

    :ivar program_headers: ``(p_type, p_offset, p_vaddr, p_filesz)`` per entry.
    """

    elf_class: int
    order: str
    e_type: int
    e_machine: int
    program_headers: list[tuple[int, int, int, int]]


def check_complete(file: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> None:
    """Refuse an ELF file shorter than its own headers say (a half-written file).

    The dynamic loader maps segments without comparing them with the file's
    size; touching a page past the end of a truncated library raises SIGBUS
    inside ``dlopen``.  Reading the headers here turns that crash into an
    error.  Other formats are not checked.

    :param file: the file to read.
    :param path: the name to report (default ``file``), e.g. the original of a private copy.
    :raises NotASharedLibraryError: naming what lies past the end of the file.
    """
    path = file if path is None else path
    try:
        fd = os.open(file, READ_FLAGS)
        try:
            check_elf_complete(lambda offset, n: pread(fd, n, offset), os.fstat(fd).st_size, path)
        finally:
            os.close(fd)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e


def check_elf_complete(read: Callable[[int, int], bytes], size: int, path: str | os.PathLike[str]) -> ElfLayout | None:
    """:func:`check_complete` on an image read through ``read(offset, length)``.

    The pre-check calls this on the very bytes it is about to load (an open
    file or the contents of a private copy) and reuses the headers it read.
    Only the bytes each program header entry is read for are read
    (``e_phnum`` entries of the size the readers use), whatever ``e_phentsize`` says.

    :param size: the image's size in bytes.
    :returns: the headers read, or ``None`` for a non-ELF image (not checked).
    :raises NotASharedLibraryError: naming what lies past the end of the image.
    :raises OSError: from ``read``.
    """
    ident = read(0, 64)
    if ident[:4] != ELF_MAGIC:
        return None
    if len(ident) < 6 or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise NotASharedLibraryError(path, "unknown ELF class or byte order")
    elf_class, order = ident[4], "<" if ident[5] == ElfData.ELFDATA2LSB else ">"
    header, ph_entry = _elf_structs(elf_class, order)
    if len(ident) < header.size:
        raise NotASharedLibraryError(path, f"truncated: {size} bytes, shorter than the ELF header")
    e_type, e_machine, phoff, shoff, phentsize, phnum, shentsize, shnum = header.unpack_from(ident)
    if phoff + phnum * phentsize > size or (shoff and shoff + shnum * shentsize > size):
        raise NotASharedLibraryError(path, f"truncated: its header tables end past {size} bytes")
    if phnum and phentsize < ph_entry.size:
        raise NotASharedLibraryError(path, f"program header entries of {phentsize} bytes")
    if phentsize == ph_entry.size:
        headers: list[tuple[int, int, int, int]] = list(ph_entry.iter_unpack(read(phoff, phnum * phentsize)))
    else:  # larger entries: read only the part of each that is used
        headers = [ph_entry.unpack(read(phoff + i * phentsize, ph_entry.size)) for i in range(phnum)]
    for i, (p_type, p_offset, _, p_filesz) in enumerate(headers):
        if p_type == SegmentType.PT_LOAD and p_offset + p_filesz > size:
            msg = f"truncated: segment {i} ends at byte {p_offset + p_filesz}, the file has {size}"
            raise NotASharedLibraryError(path, msg)
    return ElfLayout(elf_class, order, e_type, e_machine, headers)


@functools.cache
def _elf_structs(elf_class: int, order: str) -> tuple[struct.Struct, struct.Struct]:
    """The ELF header (e_type, e_machine, e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize,
    e_shnum) and program header (p_type, p_offset, p_vaddr, p_filesz) formats of one class."""
    if elf_class == ElfClass.ELFCLASS32:
        return struct.Struct(order + "16xHH4x4xII4x2xHHHH2x"), struct.Struct(order + "III4xI12x")
    return struct.Struct(order + "16xHH4x8xQQ4x2xHHHH2x"), struct.Struct(order + "I4xQQ8xQ16x")


_BINDS = ("STB_GLOBAL", "STB_WEAK")
_TYPES = ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")


def read_elf_exports(path: str) -> ExportTable:
    """The export table of an ELF shared library.

    Exported = defined, global or weak, default-visibility function, object
    or untyped symbols of the dynamic symbol table (``.dynsym``): what
    ``dlsym`` can find, and what ``nm -D --defined-only`` lists minus
    hidden/internal ones.

    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    from elftools.elf.elffile import ELFFile  # only abi check and host-owned loads read symbol tables

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            elf = ELFFile(f)
            shent, phent, syment = _SIZES[elf.elfclass]
            # Counts drive pyelftools' loops: check them against the file first.
            if elf["e_phnum"]:
                check_table(path, "program headers", elf["e_phoff"], elf["e_phnum"], elf["e_phentsize"], size)
            if elf["e_shentsize"] != shent:
                raise NotASharedLibraryError(path, f"section header entries of {elf['e_shentsize']} bytes")
            check_table(path, "section headers", elf["e_shoff"], elf.num_sections(), shent, size)
            regions = tuple(
                (seg["p_vaddr"], seg["p_filesz"], seg["p_offset"])
                for seg in elf.iter_segments()
                if seg["p_type"] == "PT_LOAD" and phent == elf["e_phentsize"]
            )
            dynsym = next((s for s in elf.iter_sections() if s["sh_type"] == "SHT_DYNSYM"), None)
            if dynsym is None:
                raise NotASharedLibraryError(path, "no dynamic symbol table (.dynsym)")
            if dynsym["sh_entsize"] != syment:
                raise NotASharedLibraryError(path, f".dynsym entries of {dynsym['sh_entsize']} bytes")
            check_table(path, ".dynsym", dynsym["sh_offset"], dynsym["sh_size"] // syment, syment, size)
            symbols: dict[str, int] = {}
            for sym in dynsym.iter_symbols():  # type: ignore[attr-defined]
                if (
                    sym["st_shndx"] != "SHN_UNDEF"
                    and sym["st_info"]["bind"] in _BINDS
                    and sym["st_other"]["visibility"] == "STV_DEFAULT"
                    and sym["st_info"]["type"] in _TYPES
                    and sym.name
                ):
                    symbols[sym.name] = sym["st_value"]
            machine = _machine_of(elf.header["e_machine"])
            little = elf.little_endian
            pointer_size = elf.elfclass // 8
    except NotASharedLibraryError:
        raise
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    except Exception as e:
        # pyelftools raises ELFError, but also ValueError, KeyError, IndexError,
        # struct and construct errors... on malformed files; all mean the same.
        raise NotASharedLibraryError(path, f"malformed ELF file: {type(e).__name__}: {e}") from e
    return ExportTable(path, "elf", machine, pointer_size, "little" if little else "big", symbols, regions)


def _machine_of(e_machine: object) -> str:
    """Our name for pyelftools' spelling of ``e_machine`` (``"EM_X86_64"`` or a number)."""
    if isinstance(e_machine, str) and e_machine in ElfMachine.__members__:
        return str(ELF_MACHINES[ElfMachine[e_machine]])
    if isinstance(e_machine, int):
        return machine_name(ELF_MACHINES, e_machine)
    return str(e_machine).removeprefix("EM_").lower()
