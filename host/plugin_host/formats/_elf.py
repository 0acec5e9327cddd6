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
    "DynamicFlags1",
    "SectionType",
    "SymbolBinding",
    "UnloadBlockers",
    "check_complete",
    "check_elf_complete",
    "host_elf_identity",
    "read_elf_exports",
    "read_unload_blockers",
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


class DynamicFlags1(enum.IntFlag):
    """Bits of ``DT_FLAGS_1`` (only the one the unload check reads)."""

    DF_1_NODELETE = 0x8


class SectionType(enum.IntEnum):
    """``sh_type`` of a section header (the ones the readers use)."""

    SHT_STRTAB = 3
    SHT_DYNAMIC = 6
    SHT_DYNSYM = 11


class SymbolBinding(enum.IntEnum):
    """``ELF_ST_BIND(st_info)``."""

    STB_LOCAL = 0
    STB_GLOBAL = 1
    STB_WEAK = 2
    STB_GNU_UNIQUE = 10


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


# ---- what keeps a library mapped after dlclose (glibc) ------------------------

#: Imports through which a library registers ``thread_local`` destructors (C++ and Rust std).
THREAD_ATEXIT_SYMBOLS = frozenset({"__cxa_thread_atexit_impl", "__cxa_thread_atexit"})
#: At most this many ``STB_GNU_UNIQUE`` names are kept (the count is always exact).
MAX_UNIQUE_NAMES = 8
#: Bytes of a section header, a symbol and a dynamic entry, by ELF class.
_ENTRY_SIZES = {ElfClass.ELFCLASS32: (40, 16, 8), ElfClass.ELFCLASS64: (64, 24, 16)}


class UnloadBlockers(NamedTuple):
    """What in an ELF file makes glibc keep it mapped after its last ``dlclose``.

    :ivar unique_symbols: the first :data:`MAX_UNIQUE_NAMES` defined
        ``STB_GNU_UNIQUE`` symbols of ``.dynsym`` (g++ gives them to static
        locals of inline functions and template static members, libstdc++'s
        included); glibc never unloads a library that has one.
    :ivar unique_count: how many there are in all.
    :ivar nodelete: ``DF_1_NODELETE`` is set in ``DT_FLAGS_1`` (linked with ``-z nodelete``).
    :ivar thread_local_destructors: it imports ``__cxa_thread_atexit_impl``
        (or libstdc++'s ``__cxa_thread_atexit``): it may register a
        ``thread_local`` destructor, and glibc does not unload it while a
        thread that ran one is alive (closed then, it stays mapped for good:
        nothing closes it again once the thread has exited).
    :ivar weak_thread_atexit: it imports it only weakly, as Rust's std does
        in every ``cdylib`` (used only if the code touches a ``thread_local!``
        with ``Drop``): a reason only once the library did stay mapped.
    """

    unique_symbols: tuple[str, ...] = ()
    unique_count: int = 0
    nodelete: bool = False
    thread_local_destructors: bool = False
    weak_thread_atexit: bool = False

    @property
    def certain(self) -> list[str]:
        """The reasons that always block unloading, as sentences (empty when none)."""
        out = []
        if self.unique_count:
            more = f" (and {self.unique_count - 1} more)" if self.unique_count > 1 else ""
            out.append(
                f"STB_GNU_UNIQUE symbol {self.unique_symbols[0]}{more}: glibc never unloads a library that "
                "exports one (link with a version script that exports only plugin_*: the builder's "
                "restrict_exports, the default for C++)"
            )
        if self.nodelete:
            out.append("DF_1_NODELETE is set (linked with -z nodelete): glibc never unloads it")
        return out

    def possible(self, *, weak: bool = False) -> list[str]:
        """The reasons that block unloading only at times, as sentences.

        :param weak: count a weak import of ``__cxa_thread_atexit_impl`` too.
        """
        if not (self.thread_local_destructors or (weak and self.weak_thread_atexit)):
            return []
        return [
            "thread-local destructors may be pending (it imports __cxa_thread_atexit_impl): glibc does not unload "
            "a library while a thread that used one of its thread_local objects with a destructor is alive"
        ]


def read_unload_blockers(path: str | os.PathLike[str]) -> UnloadBlockers | None:
    """Read :class:`UnloadBlockers` from an ELF file's section headers, ``.dynsym`` and ``.dynamic``.

    Every table is checked against the file's size before it is read, and
    only those three are read.  A file without section headers (stripped
    with ``sstrip``) reports no blockers.

    :returns: ``None`` for a file that is not ELF.
    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, READ_FLAGS)
        try:
            size = os.fstat(fd).st_size
            return _unload_blockers(lambda offset, n: pread(fd, n, offset), size, path)
        finally:
            os.close(fd)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    except struct.error as e:
        raise NotASharedLibraryError(path, f"malformed ELF file: {e}") from e


def _unload_blockers(read: Callable[[int, int], bytes], size: int, path: str) -> UnloadBlockers | None:
    ident = read(0, 64)
    if ident[:4] != ELF_MAGIC:
        return None
    if len(ident) < 64 or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise NotASharedLibraryError(path, "unknown ELF class or byte order, or a truncated ELF header")
    elf_class, order = ident[4], "<" if ident[5] == ElfData.ELFDATA2LSB else ">"
    shent, syment, dynent = _ENTRY_SIZES[ElfClass(elf_class)]
    header, _ = _elf_structs(elf_class, order)
    *_, shoff, _, _, shentsize, shnum = header.unpack_from(ident)
    if not shoff or not shnum:
        return UnloadBlockers()
    if shentsize != shent:
        raise NotASharedLibraryError(path, f"section header entries of {shentsize} bytes")
    check_table(path, "section headers", shoff, shnum, shent, size)
    if elf_class == ElfClass.ELFCLASS32:
        section = struct.Struct(order + "4xI8xIII8xI")  # sh_type, sh_offset, sh_size, sh_link, sh_entsize
    else:
        section = struct.Struct(order + "4xI16xQQI12xQ")
    sections = [section.unpack_from(read(shoff + i * shent, shent)) for i in range(shnum)]

    def table(index: int, what: str, entry: int) -> bytes:
        _, offset, length, _, _ = sections[index]
        check_table(path, what, offset, length // entry, entry, size)
        return read(offset, length - length % entry)

    unique: list[str] = []
    unique_count = 0
    tls = weak_tls = False
    for i, (sh_type, _, _, link, _) in enumerate(sections):
        if sh_type != SectionType.SHT_DYNSYM:
            continue
        if link >= shnum:
            raise NotASharedLibraryError(path, f".dynsym links to section {link} of {shnum}")
        symbols = table(i, ".dynsym", syment)
        strings = table(link, ".dynstr", 1)
        if elf_class == ElfClass.ELFCLASS32:
            entries = ((n, info, shndx) for n, _, _, info, _, shndx in struct.iter_unpack(order + "IIIBBH", symbols))
        else:
            entries = ((n, info, shndx) for n, info, _, shndx, _, _ in struct.iter_unpack(order + "IBBHQQ", symbols))
        for name_offset, info, shndx in entries:
            binding = info >> 4
            if binding == SymbolBinding.STB_GNU_UNIQUE and shndx != 0:
                unique_count += 1
                if len(unique) < MAX_UNIQUE_NAMES:
                    unique.append(_c_string(strings, name_offset))
            elif shndx == 0 and binding in (SymbolBinding.STB_GLOBAL, SymbolBinding.STB_WEAK) and not tls:
                if _c_string(strings, name_offset) in THREAD_ATEXIT_SYMBOLS:
                    tls = binding == SymbolBinding.STB_GLOBAL
                    weak_tls = weak_tls or binding == SymbolBinding.STB_WEAK
    nodelete = False
    for i, (sh_type, *_rest) in enumerate(sections):
        if sh_type != SectionType.SHT_DYNAMIC:
            continue
        fmt = order + ("iI" if elf_class == ElfClass.ELFCLASS32 else "qQ")
        for tag, value in struct.iter_unpack(fmt, table(i, ".dynamic", dynent)):
            if tag == DynamicTag.DT_NULL:
                break
            if tag == DynamicTag.DT_FLAGS_1 and value & DynamicFlags1.DF_1_NODELETE:
                nodelete = True
    return UnloadBlockers(tuple(unique), unique_count, nodelete, tls, weak_tls and not tls)


def _c_string(strings: bytes, offset: int) -> str:
    """The NUL-terminated name at ``offset`` of a string table ("" when out of bounds)."""
    if offset >= len(strings):
        return ""
    end = strings.find(b"\0", offset)
    return strings[offset : end if end >= 0 else len(strings)].decode("utf-8", "backslashreplace")
