"""Mach-O (macOS ``.dylib``) export tables, read with ``struct``.

Like :mod:`._elf`: the header (32- or 64-bit, either byte order; of a
universal file, the first architecture's symbols, every architecture's load
commands checked), then the load commands, walked with every ``cmdsize``
checked against ``sizeofcmds`` and the file:
``LC_SEGMENT``/``LC_SEGMENT_64`` give the file-backed regions (each checked to
end inside the file: a half-written file is refused), ``LC_SYMTAB``
and ``LC_DYSYMTAB`` the symbol table.  Exported = the external defined range
of ``LC_DYSYMTAB`` (or, without it, every ``N_EXT`` ``N_SECT`` symbol that is
not private-extern).  C names carry a leading underscore on Mach-O, which is
removed.  Load commands the reader does not use are skipped, as dyld skips
those it does not know.  ``tests/test_pe_macho_reader.py`` holds it to
macholib, the reader before it, on every cross-built plugin and on truncated
and fuzzed copies.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import NamedTuple

from plugin_interface import NotASharedLibraryError

from ._io import READ_FLAGS, pread
from ._machines import MACHO_CPUS, machine_name
from ._table import ExportTable, check_table

__all__ = ["MAX_FAT_ARCHS", "MAX_LOAD_COMMANDS", "macho_exports", "read_macho_exports"]

_FAT = {0xCAFEBABE: 20, 0xCAFEBABF: 32}  # fat magic -> fat_arch entry size
#: Thin magics as the first 4 bytes: (header size, byte order, 64-bit).
_THIN = {
    b"\xfe\xed\xfa\xce": (28, ">", False),
    b"\xce\xfa\xed\xfe": (28, "<", False),
    b"\xfe\xed\xfa\xcf": (32, ">", True),
    b"\xcf\xfa\xed\xfe": (32, "<", True),
}
#: More architectures than this in a universal file is treated as corruption.
MAX_FAT_ARCHS = 32
#: More load commands than this is treated as corruption (real dylibs have a few dozen).
MAX_LOAD_COMMANDS = 0x10000
_N_STAB, _N_PEXT, _N_TYPE, _N_EXT, _N_SECT = 0xE0, 0x10, 0x0E, 0x01, 0x0E
_LC_SEGMENT, _LC_SYMTAB, _LC_DYSYMTAB, _LC_SEGMENT_64 = 0x1, 0x2, 0xB, 0x19
#: Segment commands: (command size before the sections, section size, vmaddr/vmsize/fileoff/filesize format).
_SEGMENTS = {_LC_SEGMENT: (56, 68, "24xI4xII8xI4x"), _LC_SEGMENT_64: (72, 80, "24xQ8xQQ8xI4x")}
_SYMTAB_SIZE, _DYSYMTAB_SIZE = 24, 80


def read_macho_exports(path: str) -> ExportTable:
    """The export table of a Mach-O library (thin, or the first slice of a universal one).

    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    try:
        fd = os.open(path, READ_FLAGS)
        try:
            return macho_exports(lambda offset, n: pread(fd, n, offset), os.fstat(fd).st_size, path)
        finally:
            os.close(fd)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e


def macho_exports(read: Callable[[int, int], bytes], size: int, path: str, head: bytes | None = None) -> ExportTable:
    """:func:`read_macho_exports` on an image read through ``read(offset, length)``.

    The load commands of every architecture of a universal file are walked (a malformed one is refused, as
    macholib refused it), the symbols read are the first one's.

    :param size: the image's size in bytes.
    :param head: the image's first bytes (at least 8), when the caller has them already.
    :raises NotASharedLibraryError: naming ``path`` and what is malformed.
    :raises OSError: from ``read``.
    """
    head = read(0, 32) if head is None else head
    images = [
        _load_commands(read, path, offset, length, head if offset == 0 else read(offset, 32))
        for offset, length in _slices(read, size, path, head)  # bounded: MAX_FAT_ARCHS
    ]
    first = images[0]
    symbols: dict[str, int] = {}
    if first.symtab is not None:
        symbols = _read_symbols(read, path, first, first.symtab)
    return ExportTable(
        path,
        "macho",
        machine_name(MACHO_CPUS, first.cpu),
        8 if first.is64 else 4,
        "little" if first.order == "<" else "big",
        symbols,
        first.regions,
    )


class _Slice(NamedTuple):
    """What the load commands of one image (a thin file, or one architecture of a universal one) say."""

    base: int  # its offset in the file
    size: int
    order: str
    is64: bool
    cpu: int
    regions: tuple[tuple[int, int, int], ...]  # (vmaddr, filesize, file offset) per segment
    symtab: tuple[int, int, int, int] | None  # symoff, nsyms, stroff, strsize
    dysymtab: tuple[int, int] | None  # iextdefsym, nextdefsym


def _load_commands(read: Callable[[int, int], bytes], path: str, base: int, size: int, header: bytes) -> _Slice:
    """The header (its first 32 bytes are ``header``) and load commands of the ``size``-byte image at ``base``."""
    layout = _THIN.get(header[:4])
    if layout is None or len(header) < layout[0]:
        raise NotASharedLibraryError(path, f"no Mach-O header at offset {base}")
    header_size, order, is64 = layout
    cpu, ncmds, sizeofcmds = struct.unpack_from(order + "i8xII", header, 4)
    if header_size + sizeofcmds > size or ncmds * 8 > sizeofcmds or ncmds > MAX_LOAD_COMMANDS:
        msg = f"{ncmds} load commands in {sizeofcmds} bytes do not fit in the {size}-byte image at offset {base}"
        raise NotASharedLibraryError(path, msg)
    commands = read(base + header_size, sizeofcmds)
    if len(commands) < sizeofcmds:
        raise NotASharedLibraryError(path, "truncated while reading the load commands")
    regions: list[tuple[int, int, int]] = []
    symtab: tuple[int, int, int, int] | None = None
    dysymtab: tuple[int, int] | None = None
    offset = 0
    for i in range(ncmds):  # bounded: ncmds * 8 <= sizeofcmds <= the image's size
        if offset + 8 > sizeofcmds:
            raise NotASharedLibraryError(path, f"load command {i} of {ncmds} starts past the load commands")
        cmd, cmdsize = struct.unpack_from(order + "II", commands, offset)
        if cmdsize < 8 or offset + cmdsize > sizeofcmds:
            msg = f"load command {i} (0x{cmd:x}) of {cmdsize} bytes runs past the {sizeofcmds} bytes of load commands"
            raise NotASharedLibraryError(path, msg)
        segment = _SEGMENTS.get(cmd)
        if segment is not None:
            fixed, section, fmt = segment
            if cmdsize < fixed:
                raise NotASharedLibraryError(path, f"load command {i}: a segment command of {cmdsize} bytes")
            vmaddr, fileoff, filesize, nsects = struct.unpack_from(order + fmt, commands, offset)
            if cmdsize != fixed + nsects * section:
                msg = f"load command {i}: a segment of {nsects} sections in {cmdsize} bytes"
                raise NotASharedLibraryError(path, msg)
            if fileoff + filesize > size:  # a half-written file: dyld would fault mapping it
                msg = f"truncated: segment {len(regions)} ends at byte {fileoff + filesize} of a {size}-byte image"
                raise NotASharedLibraryError(path, msg)
            regions.append((vmaddr, filesize, base + fileoff))
        elif cmd == _LC_SYMTAB and symtab is None:
            if cmdsize < _SYMTAB_SIZE:
                raise NotASharedLibraryError(path, f"load command {i}: LC_SYMTAB of {cmdsize} bytes")
            symtab = struct.unpack_from(order + "8xIIII", commands, offset)
        elif cmd == _LC_DYSYMTAB and dysymtab is None:
            if cmdsize < _DYSYMTAB_SIZE:
                raise NotASharedLibraryError(path, f"load command {i}: LC_DYSYMTAB of {cmdsize} bytes")
            dysymtab = struct.unpack_from(order + "16xII", commands, offset)
        offset += cmdsize
    if offset != sizeofcmds:
        raise NotASharedLibraryError(path, f"{ncmds} load commands fill {offset} of the {sizeofcmds} bytes declared")
    return _Slice(base, size, order, is64, cpu, tuple(regions), symtab, dysymtab)


def _slices(read: Callable[[int, int], bytes], size: int, path: str, head: bytes) -> list[tuple[int, int]]:
    """``(offset, size)`` of each image in the file: the file itself, or each architecture of a universal file."""
    entry = _FAT.get(int.from_bytes(head[:4], "big"))
    if entry is None:
        return [(0, size)]
    if len(head) < 8:
        raise NotASharedLibraryError(path, "truncated: shorter than a universal header")
    count = int.from_bytes(head[4:8], "big")
    if count > MAX_FAT_ARCHS:
        raise NotASharedLibraryError(path, f"universal file with {count} architectures (more than {MAX_FAT_ARCHS})")
    if not count:
        raise NotASharedLibraryError(path, "universal file with no architectures")
    check_table(path, "fat architectures", 8, count, entry, size)
    table = read(8, count * entry)
    if len(table) < count * entry:
        raise NotASharedLibraryError(path, "truncated while reading the fat architectures")
    slices: list[tuple[int, int]] = [
        struct.unpack_from(">8xII4x" if entry == 20 else ">8xQQ8x", table, i * entry) for i in range(count)
    ]
    for i, (arch_offset, arch_size) in enumerate(slices):
        if arch_offset + arch_size > size:
            raise NotASharedLibraryError(path, f"architecture {i} runs past the end of the file")
    return slices


def _read_symbols(
    read: Callable[[int, int], bytes], path: str, image: _Slice, symtab: tuple[int, int, int, int]
) -> dict[str, int]:
    """The exported symbols: the external defined range of ``LC_DYSYMTAB``, or all external defined ones."""
    fmt = image.order + ("IBBHQ" if image.is64 else "IBBHI")
    entry = struct.calcsize(fmt)
    symoff, nsyms, stroff, strsize = symtab
    check_table(path, "symbol table", symoff, nsyms, entry, image.size)
    check_table(path, "string table", stroff, strsize, 1, image.size)
    first, count = 0, nsyms
    if image.dysymtab is not None:
        first, count = image.dysymtab
        if first + count > nsyms:
            raise NotASharedLibraryError(path, f"external symbols {first}..{first + count} beyond {nsyms} symbols")
    strtab = read(image.base + stroff, strsize) if strsize else b""
    raw = read(image.base + symoff + first * entry, count * entry) if count else b""
    if len(strtab) < strsize or len(raw) < count * entry:
        raise NotASharedLibraryError(path, "truncated while reading the symbol table")
    symbols: dict[str, int] = {}
    for strx, ntype, _sect, _desc, value in struct.iter_unpack(fmt, raw):
        if ntype & _N_STAB or ntype & _N_PEXT or not ntype & _N_EXT or (ntype & _N_TYPE) != _N_SECT:
            continue
        if not 0 < strx < len(strtab):
            continue
        end = strtab.find(b"\0", strx)
        name = strtab[strx : end if end >= 0 else len(strtab)].decode("utf-8", "replace")
        symbols[name[1:] if name.startswith("_") else name] = value
    return symbols
