"""ELF: the constants, the header reader the pre-check uses, and the dynamic symbol table.

Like packaging's ``_elffile.py``: ``struct`` reads with every offset and count
checked against the image's size before use, one error type
(:class:`~plugin_interface.NotASharedLibraryError`), constants as
:class:`enum.IntEnum`.  One reader of ``.dynsym``/``.dynstr`` (:class:`_ElfTables`)
serves the export table (``abi check``, host-owned loads), the exports with a
prefix (``reload(trait=None)``) and the unload blockers; it reads only the tables it uses, each bounded by the
file's size, so a malformed file gives a typed error, never a crash or a loop
driven by a corrupted count.  ``tests/test_elf_reader.py`` holds it to
pyelftools' reading of every built plugin and of fuzzed files.

The optional C extension ``plugin_host.formats._elfread`` (host/speedups/elfread.c)
reads the same export table through an open descriptor in a fraction of the
time; :func:`elf_exports_fd` uses it when it was built (and
``PLUGIN_HOST_PURE_PYTHON`` is not set), and this reader whenever it answers
``None`` (anything this reader may refuse).  ``tests/test_elfread.py`` holds the
two to the same table.
"""

from __future__ import annotations

import enum
import functools
import os
import struct
import sys
from collections.abc import Callable
from typing import NamedTuple

try:
    from . import _elfread as _compiled
except ImportError:  # not built (no C compiler at install time): this module's reader
    _compiled = None  # type: ignore[assignment]

from plugin_interface import NotASharedLibraryError

from ._blockers import MAX_UNIQUE_NAMES, THREAD_ATEXIT_SYMBOLS, UnloadBlockers
from ._io import READ_FLAGS, pread
from ._machines import ELF_MACHINES, PLATFORM_MACHINES, ElfMachine, machine_name
from ._sniff import ELF_MAGIC
from ._table import Byteorder, ExportTable, SchemeExports, check_table

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
    "SymbolType",
    "UnloadBlockers",
    "check_complete",
    "check_elf_complete",
    "compiled_elf_exports",
    "compiled_scheme_scan",
    "compiled_reader_available",
    "compiled_reader_enabled",
    "elf_export_names",
    "elf_exports",
    "elf_exports_fd",
    "host_elf_identity",
    "read_elf_exports",
    "read_unload_blockers",
    "set_compiled_reader",
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


class SymbolType(enum.IntEnum):
    """``ELF_ST_TYPE(st_info)`` (the ones the readers use)."""

    STT_NOTYPE = 0
    STT_OBJECT = 1
    STT_FUNC = 2


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
    import platform  # the fallback only: platform's import costs more than reading the header

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


# Plain ints for the loops over entries: an IntEnum member costs a class attribute look-up each time.
_SHT_DYNSYM, _SHT_DYNAMIC = int(SectionType.SHT_DYNSYM), int(SectionType.SHT_DYNAMIC)
_STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE = (
    int(SymbolBinding.STB_GLOBAL),
    int(SymbolBinding.STB_WEAK),
    int(SymbolBinding.STB_GNU_UNIQUE),
)
#: ``st_info`` bindings and types of an exported symbol (global or weak; untyped, object or function).
_EXPORT_BINDS = frozenset({_STB_GLOBAL, _STB_WEAK})
_EXPORT_TYPES = frozenset(int(t) for t in (SymbolType.STT_NOTYPE, SymbolType.STT_OBJECT, SymbolType.STT_FUNC))
#: ``SHN_UNDEF``: an imported (undefined) symbol.
_SHN_UNDEF = 0
#: ``STV_DEFAULT`` in the low bits of ``st_other`` (``ELF_ST_VISIBILITY``, as glibc masks it).
_VISIBILITY_MASK = 0x3
_DT_NULL, _DT_FLAGS_1 = int(DynamicTag.DT_NULL), int(DynamicTag.DT_FLAGS_1)
_DF_1_NODELETE = int(DynamicFlags1.DF_1_NODELETE)
_PT_LOAD = int(SegmentType.PT_LOAD)
#: Bytes of a section header, a symbol and a dynamic entry, by ELF class.
_ENTRY_SIZES = {int(ElfClass.ELFCLASS32): (40, 16, 8), int(ElfClass.ELFCLASS64): (64, 24, 16)}


if _compiled is not None and _compiled.MAX_UNIQUE_NAMES != MAX_UNIQUE_NAMES:  # a build of another version
    import warnings

    warnings.warn(
        f"plugin_host.formats._elfread keeps {_compiled.MAX_UNIQUE_NAMES} STB_GNU_UNIQUE names, this host "
        f"{MAX_UNIQUE_NAMES}; ELF export tables are read in Python",
        RuntimeWarning,
        stacklevel=1,
    )
    _compiled = None  # type: ignore[assignment]
_use_compiled = _compiled is not None and os.environ.get("PLUGIN_HOST_PURE_PYTHON", "") in ("", "0")
#: The C reader's entry points, when it is in use (one switch for both).
_compiled_reader = _compiled.elf_exports if _use_compiled else None
#: (An extension built from an older elfread.c has no scheme_scan: then abi check reads the export table.)
_compiled_scanner = getattr(_compiled, "scheme_scan", None) if _use_compiled else None


def compiled_reader_available() -> bool:
    """Whether ``plugin_host.formats._elfread`` (the export table read in C) was built and imports."""
    return _compiled is not None


def compiled_reader_enabled() -> bool:
    """Whether :func:`elf_exports_fd` asks the C reader first (off with ``PLUGIN_HOST_PURE_PYTHON=1``)."""
    return _compiled_reader is not None


def set_compiled_reader(enabled: bool) -> bool:
    """Turn the C reader on or off (on only where it was built); returns the previous setting (for tests)."""
    global _compiled_reader, _compiled_scanner
    previous = _compiled_reader is not None
    _compiled_reader = _compiled.elf_exports if enabled and _compiled is not None else None
    _compiled_scanner = getattr(_compiled, "scheme_scan", None) if enabled and _compiled is not None else None
    return previous


def compiled_elf_exports(fd: int, size: int, path: str, ident: bytes) -> ExportTable | None:
    """The C reader's export table of the open file ``fd``, or ``None``.

    ``None`` when the C reader is not in use, and for any file :func:`elf_exports`
    may refuse or that the C leaves to it: then only :func:`elf_exports` decides.

    :param size: the file's size in bytes.
    :param ident: its first 64 bytes (all of it when shorter).
    """
    reader = _compiled_reader
    found = reader(fd, size, ident) if reader is not None else None
    if found is None:
        return None
    e_machine, elf_class, byte_order, symbols, regions, unique, unique_count, nodelete, tls, weak_tls = found
    machine, pointer_size, byteorder = _platform(e_machine, elf_class, byte_order)
    blockers = UnloadBlockers(unique, unique_count, nodelete, tls, weak_tls)
    return ExportTable(path, "elf", machine, pointer_size, byteorder, symbols, regions, blockers)


def _platform(e_machine: int, elf_class: int, byte_order: int) -> tuple[str, int, Byteorder]:
    """The machine's name, the pointer size and the byte order of an ELF header's fields, as the readers give them."""
    return machine_name(ELF_MACHINES, e_machine), 4 if elf_class == 1 else 8, "little" if byte_order == 1 else "big"


def compiled_scheme_scan(
    fd: int, size: int, path: str, ident: bytes, abi_version: int, prefixes: tuple[str, ...]
) -> SchemeExports | None:
    """What the C reader finds of the symbol scheme in the open file ``fd``, or ``None``.

    The C does ``abi check``'s reading of a file in one call: the export
    table (only the ``plugin_`` names kept), each such name parsed by the C
    copy of :func:`plugin_interface.split_symbol` (its grammar is held to it by
    ``tests/test_scheme_scan.py``), and the first read of each descriptor and
    declaration of ``abi_version`` (:class:`SchemeExports`).  ``None`` when the
    C reader is not in use, for any file :func:`elf_exports` may refuse, and
    for what the C leaves to the Python reading (a descriptor or declaration
    not stored in the file or larger than its first read, a ``_v01``...): then
    the caller reads the :class:`ExportTable` and decides.

    :param size: the file's size in bytes.
    :param ident: its first 64 bytes (all of it when shorter).
    :param prefixes: a name that starts with one of these and does not parse is malformed.
    """
    scanner = _compiled_scanner
    found = scanner(fd, size, ident, abi_version, prefixes) if scanner is not None else None
    if found is None:
        return None
    e_machine, elf_class, byte_order, unique, unique_count, nodelete, tls, weak_tls, malformed, symbols = found
    machine, pointer_size, byteorder = _platform(e_machine, elf_class, byte_order)
    blockers = UnloadBlockers(unique, unique_count, nodelete, tls, weak_tls)
    return SchemeExports(path, "elf", machine, pointer_size, byteorder, blockers, malformed, symbols)


def elf_exports_fd(fd: int, size: int, path: str, ident: bytes) -> ExportTable:
    """:func:`elf_exports` of the open file ``fd``: read in C when the extension is in use.

    :param size: the file's size in bytes.
    :param ident: its first 64 bytes (all of it when shorter).
    :raises NotASharedLibraryError: naming ``path`` and what is malformed (always :func:`elf_exports`' message).
    :raises OSError: from reading ``fd``.
    """
    table = compiled_elf_exports(fd, size, path, ident)
    if table is not None:
        return table
    return elf_exports(lambda offset, n: pread(fd, n, offset), size, path, ident)


def read_elf_exports(path: str) -> ExportTable:
    """The export table of an ELF shared library.

    Exported = defined, global or weak, default-visibility function, object
    or untyped symbols of the dynamic symbol table (``.dynsym``): what
    ``dlsym`` can find, and what ``nm -D --defined-only`` lists minus
    hidden/internal ones.  The table also carries the file's
    :class:`UnloadBlockers`, read in the same pass.

    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    try:
        fd = os.open(path, READ_FLAGS)
        try:
            return elf_exports_fd(fd, os.fstat(fd).st_size, path, pread(fd, 64, 0))
        finally:
            os.close(fd)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e


def elf_exports(read: Callable[[int, int], bytes], size: int, path: str, ident: bytes | None = None) -> ExportTable:
    """:func:`read_elf_exports` on an image read through ``read(offset, length)``.

    Reads the ELF header, the section headers, ``.dynsym`` with its string
    table, ``.dynamic`` and the program headers: each one's extent checked
    against ``size`` before it is read, every exported symbol's name within
    its string table.  Nothing else of the file is read.

    :param ident: the image's first 64 bytes, when the caller has them already.
    :raises NotASharedLibraryError: naming ``path`` and what is malformed.
    :raises OSError: from ``read``.
    """
    elf = _ElfTables(read, size, path, read(0, 64) if ident is None else ident)
    if not elf.dynsym:
        raise NotASharedLibraryError(path, "no dynamic symbol table (.dynsym)")
    symbols: dict[str, int] = {}
    blockers = _Blockers()
    for n, index in enumerate(elf.dynsym):
        table = elf.symbol_table(index)
        _read_symbols(table, symbols if n == 0 else None, blockers)
    return ExportTable(
        path,
        "elf",
        machine_name(ELF_MACHINES, elf.e_machine),
        4 if elf.elf_class == 1 else 8,
        "little" if elf.order == "<" else "big",
        symbols,
        elf.load_regions(),
        blockers.result(elf.nodelete()),
    )


def elf_export_names(
    read: Callable[[int, int], bytes], size: int, path: str, prefix: str, ident: bytes | None = None
) -> list[str]:
    """The names :func:`elf_exports` would export that start with ``prefix`` (not empty), sorted.

    What ``reload(trait=None)`` asks (the ``plugin_register_`` names), without
    reading every export: the string table is searched for the prefix (every
    name that has it begins at one of its occurrences, also a name the linker
    stored as the tail of a longer one), then only the symbols naming one of
    those occurrences are read and judged by :func:`elf_exports`' rules.  The
    same tables are read, with the same bounds; other names are not decoded,
    so a malformed one that :func:`elf_exports` would refuse is not looked at.

    :raises NotASharedLibraryError: naming ``path`` and what is malformed.
    :raises OSError: from ``read``.
    """
    elf = _ElfTables(read, size, path, read(0, 64) if ident is None else ident)
    if not elf.dynsym:
        raise NotASharedLibraryError(path, "no dynamic symbol table (.dynsym)")
    data, strings = elf.symbol_data(elf.dynsym[0])  # the exports are the first table's (elf_exports)
    try:
        wanted = prefix.encode()
    except UnicodeEncodeError:  # a lone surrogate: no name decodes to one (elf_exports decodes with "replace")
        return []
    if wanted not in strings:  # the common answer for all but the plugin names: no entry is read
        return []
    found: dict[int, bytes] = {}  # offset -> the name there (NUL-terminated inside the table)
    start = strings.find(wanted, 1)  # offset 0 names no symbol (elf_exports skips it)
    while start >= 0:
        end = strings.find(b"\0", start)
        if end < 0:
            break
        found[start] = strings[start:end]
        start = strings.find(wanted, start + 1)  # overlapping: "p_p_x" holds the name "p_x" too
    entry = elf.syment
    unpack = struct.Struct(elf.order + ("IIIBBH" if elf.elf_class == 1 else "IBBHQQ")).unpack_from
    column = _words(data, 0, entry, elf.order)  # st_name
    names: set[str] = set()
    for offset, raw in found.items():
        index = -1
        while True:
            try:
                index = column.index(offset, index + 1)
            except ValueError:
                break
            fields = unpack(data, index * entry)
            if elf.elf_class == 1:
                _, _, _, info, other, shndx = fields
            else:
                _, info, other, shndx, _, _ = fields
            if (
                shndx != _SHN_UNDEF
                and info >> 4 in _EXPORT_BINDS
                and info & 0xF in _EXPORT_TYPES
                and not other & _VISIBILITY_MASK
            ):
                names.add(raw.decode("latin-1") if raw.isascii() else raw.decode("utf-8", "replace"))
                break
    return sorted(names)


def _words(data: bytes, word: int, entry: int, order: str) -> list[int]:
    """32-bit word ``word`` of every ``entry``-byte entry of ``data`` (whole entries)."""
    if (order == "<") == (sys.byteorder == "little"):  # a strided view: no Python loop per entry
        return memoryview(data).cast("I")[word :: entry // 4].tolist()
    return [value for (value,) in struct.iter_unpack(f"{order}{4 * word}xI{entry - 4 * word - 4}x", data)]


class _Blockers:
    """What :func:`_read_symbols` found that keeps a library mapped (see :class:`UnloadBlockers`)."""

    def __init__(self) -> None:
        self.unique: list[str] = []
        self.unique_count = 0
        self.tls = self.weak_tls = False

    def result(self, nodelete: bool) -> UnloadBlockers:
        return UnloadBlockers(tuple(self.unique), self.unique_count, nodelete, self.tls, self.weak_tls and not self.tls)


def _read_symbols(table: _Symbols, exports: dict[str, int] | None, blockers: _Blockers) -> None:
    """One pass over a symbol table: its exports into ``exports`` (unless ``None``), its unload blockers."""
    imports_atexit = b"__cxa_thread_atexit" in table.strings  # most libraries: no import name to decode
    text = table.text
    for index, (name_offset, info, other, shndx, value) in enumerate(table.entries):
        binding = info >> 4
        if shndx != _SHN_UNDEF:
            if binding in _EXPORT_BINDS:
                if exports is not None and info & 0xF in _EXPORT_TYPES and not other & _VISIBILITY_MASK and name_offset:
                    # The common case inline (an ASCII table, the name NUL-terminated inside it); name() otherwise.
                    if text is not None and (end := text.find("\0", name_offset)) >= 0:
                        name = text[name_offset:end]
                    else:
                        name = table.name(name_offset, index)
                    if name:
                        exports[name] = value
            elif binding == _STB_GNU_UNIQUE:
                blockers.unique_count += 1
                if len(blockers.unique) < MAX_UNIQUE_NAMES:
                    blockers.unique.append(table.name_or_empty(name_offset, index))
        elif imports_atexit and binding in _EXPORT_BINDS and not blockers.tls:
            if table.name_or_empty(name_offset, index) in THREAD_ATEXIT_SYMBOLS:
                blockers.tls = binding == _STB_GLOBAL
                blockers.weak_tls = blockers.weak_tls or binding == _STB_WEAK


class _Symbols:
    """One symbol table: its entries as ``(st_name, st_info, st_other, st_shndx, st_value)``, and its names."""

    def __init__(self, path: str, entries: list[tuple[int, int, int, int, int]], strings: bytes) -> None:
        self.path, self.entries, self.strings = path, entries, strings
        # Names are nearly always ASCII: then one decode serves every look-up.
        self.text = strings.decode("latin-1") if strings.isascii() else None

    def name(self, offset: int, symbol: int) -> str:
        """The name at ``offset`` of the string table (of entry ``symbol``, for the message).

        :raises NotASharedLibraryError: if it is not NUL-terminated inside the string table.
        """
        text = self.text
        end = text.find("\0", offset) if text is not None else self.strings.find(b"\0", offset)
        if end < 0:
            msg = (
                f".dynsym symbol {symbol}: its name (offset {offset}) runs past the end of .dynstr "
                f"({len(self.strings)} bytes)"
            )
            raise NotASharedLibraryError(self.path, msg)
        if text is not None:
            return text[offset:end]
        return self.strings[offset:end].decode("utf-8", "replace")

    def name_or_empty(self, offset: int, symbol: int) -> str:
        """:meth:`name`, or ``""`` when it is not inside the string table (an unload reason is never fatal)."""
        try:
            return self.name(offset, symbol)
        except NotASharedLibraryError:
            return ""


class _ElfTables:
    """The ELF header and section headers of one image, and bounded reads of its tables.

    Like packaging's ``_elffile.ELFFile``: ``struct`` reads, every offset and
    count checked against the image's size before it drives a read or a loop.

    :ivar sections: ``(sh_type, sh_offset, sh_size, sh_link, sh_entsize)`` per section header.
    :ivar dynsym: the indexes of the ``SHT_DYNSYM`` sections (one in a real library).
    """

    def __init__(self, read: Callable[[int, int], bytes], size: int, path: str, ident: bytes) -> None:
        self.read, self.size, self.path = read, size, path
        if len(ident) < 6 or ident[:4] != ELF_MAGIC or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise NotASharedLibraryError(path, "unknown ELF class or byte order")
        self.elf_class, self.order = ident[4], "<" if ident[5] == 1 else ">"
        header, self._ph_entry = _elf_structs(self.elf_class, self.order)
        if len(ident) < header.size:
            raise NotASharedLibraryError(path, f"truncated: {size} bytes, shorter than the ELF header")
        _, self.e_machine, self.phoff, shoff, self.phentsize, self.phnum, shentsize, shnum = header.unpack_from(ident)
        shent, self.syment, self.dynent = _ENTRY_SIZES[self.elf_class]
        if self.phnum:
            check_table(path, "program headers", self.phoff, self.phnum, self.phentsize, size)
        if shoff and shentsize != shent:  # without section headers (sstrip) the field is 0
            raise NotASharedLibraryError(path, f"section header entries of {shentsize} bytes")
        section = _section_struct(self.elf_class, self.order)  # exactly one entry long
        if shoff and not shnum:  # extended numbering: section 0's sh_size holds the count
            check_table(path, "section headers", shoff, 1, shent, size)
            shnum = section.unpack(self._read_exactly(shoff, shent, "the section headers"))[2]
        elif not shoff:
            shnum = 0
        check_table(path, "section headers", shoff, shnum, shent, size)
        raw = self._read_exactly(shoff, shnum * shent, "the section headers") if shnum else b""
        # Only the types of all sections are read (strided, no Python loop per section); a section's
        # header is unpacked when one is used.
        self._section_headers, self._section, self.section_count = raw, section, shnum
        types = _words(raw, 1, shent, self.order)  # sh_type: the second 32-bit word of either class
        self.dynsym = _indexes(types, _SHT_DYNSYM)
        self._dynamic = _indexes(types, _SHT_DYNAMIC)

    def section(self, index: int) -> tuple[int, int, int, int, int]:
        """``(sh_type, sh_offset, sh_size, sh_link, sh_entsize)`` of section ``index`` (below :attr:`section_count`)."""
        fields: tuple[int, int, int, int, int] = self._section.unpack_from(
            self._section_headers, index * self._section.size
        )
        return fields

    def _read_exactly(self, offset: int, length: int, what: str) -> bytes:
        data = self.read(offset, length)
        if len(data) < length:  # the file shrank since its size was taken
            raise NotASharedLibraryError(self.path, f"truncated while reading {what}")
        return data

    def table(self, index: int, what: str, entry: int) -> bytes:
        """The whole entries of section ``index`` (checked to lie inside the image)."""
        _, offset, length, _, _ = self.section(index)
        count = length // entry
        check_table(self.path, what, offset, count, entry, self.size)
        return self._read_exactly(offset, count * entry, what) if count else b""

    def symbol_data(self, index: int) -> tuple[bytes, bytes]:
        """The entries of symbol table ``index`` and its linked string table, both checked to lie inside the image."""
        _, _, _, link, entsize = self.section(index)
        if entsize != self.syment:
            raise NotASharedLibraryError(self.path, f".dynsym entries of {entsize} bytes")
        data = self.table(index, ".dynsym", self.syment)
        if link >= self.section_count:
            raise NotASharedLibraryError(self.path, f".dynsym links to section {link} of {self.section_count}")
        return data, self.table(link, ".dynstr", 1)

    def symbol_table(self, index: int) -> _Symbols:
        """Symbol table ``index`` and its linked string table (:meth:`symbol_data`)."""
        data, strings = self.symbol_data(index)
        entries: list[tuple[int, int, int, int, int]]
        if self.elf_class == 1:
            entries = [
                (name, info, other, shndx, value)
                for name, value, info, other, shndx in struct.iter_unpack(self.order + "II4xBBH", data)
            ]
        else:  # the fields in the order wanted already (st_size skipped): no tuple rebuilt per symbol
            entries = list(struct.iter_unpack(self.order + "IBBHQ8x", data))
        return _Symbols(self.path, entries, strings)

    def nodelete(self) -> bool:
        """Whether ``DF_1_NODELETE`` is set in ``DT_FLAGS_1`` of a ``.dynamic`` section."""
        fmt = self.order + ("iI" if self.elf_class == 1 else "qQ")
        for index in self._dynamic:
            for tag, value in struct.iter_unpack(fmt, self.table(index, ".dynamic", self.dynent)):
                if tag == _DT_NULL:
                    break
                if tag == _DT_FLAGS_1 and value & _DF_1_NODELETE:
                    return True
        return False

    def load_regions(self) -> tuple[tuple[int, int, int], ...]:
        """``(p_vaddr, p_filesz, p_offset)`` of each ``PT_LOAD`` segment (none if the entries are of another size)."""
        if not self.phnum or self.phentsize != self._ph_entry.size:
            return ()
        raw = self._read_exactly(self.phoff, self.phnum * self.phentsize, "the program headers")
        return tuple(
            (vaddr, filesz, offset)
            for p_type, offset, vaddr, filesz in self._ph_entry.iter_unpack(raw)
            if p_type == _PT_LOAD
        )


def _indexes(values: list[int], wanted: int) -> list[int]:
    """The positions of ``wanted`` in ``values`` (searched by ``list.index``: no Python loop per value)."""
    found: list[int] = []
    index = -1
    for _ in range(values.count(wanted)):
        index = values.index(wanted, index + 1)
        found.append(index)
    return found


@functools.cache
def _section_struct(elf_class: int, order: str) -> struct.Struct:
    """A section header's ``sh_type, sh_offset, sh_size, sh_link, sh_entsize`` (the struct is one entry long)."""
    if elf_class == ElfClass.ELFCLASS32:
        return struct.Struct(order + "4xI8xIII8xI")
    return struct.Struct(order + "4xI16xQQI12xQ")


# ---- what keeps a library mapped after dlclose (glibc) ------------------------


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
    elf = _ElfTables(read, size, path, ident)
    blockers = _Blockers()
    for index in elf.dynsym:
        _read_symbols(elf.symbol_table(index), None, blockers)
    return blockers.result(elf.nodelete())
