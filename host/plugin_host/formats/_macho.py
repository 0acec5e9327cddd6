"""Mach-O (macOS ``.dylib``) export tables with macholib.

macholib parses the headers and load commands (thin and universal files); the
exported symbols are then read from the symbol table: the external defined
range of ``LC_DYSYMTAB`` (or, without it, every ``N_EXT`` ``N_SECT`` symbol
that is not private-extern).  C names carry a leading underscore on Mach-O,
which is removed.  Of a universal file, the first architecture is read.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from plugin_interface import NotASharedLibraryError

from ._machines import MACHO_CPUS, machine_name
from ._table import ExportTable, check_table

__all__ = ["read_macho_exports"]

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
_N_STAB, _N_PEXT, _N_TYPE, _N_EXT, _N_SECT = 0xE0, 0x10, 0x0E, 0x01, 0x0E
_LC_SEGMENT, _LC_SEGMENT_64 = 0x1, 0x19


def _check_thin(path: str, f: BinaryIO, offset: int, size: int) -> None:
    f.seek(offset)
    head = f.read(32)
    layout = _THIN.get(head[:4])
    if layout is None or len(head) < layout[0]:
        raise NotASharedLibraryError(path, f"no Mach-O header at offset {offset}")
    header_size, order, _ = layout
    ncmds, sizeofcmds = struct.unpack_from(order + "II", head, 16)
    if header_size + sizeofcmds > size or ncmds * 8 > sizeofcmds:
        msg = f"{ncmds} load commands in {sizeofcmds} bytes do not fit in the {size}-byte image at offset {offset}"
        raise NotASharedLibraryError(path, msg)


def _check_headers(path: str, f: BinaryIO, size: int) -> None:
    """Bound every count macholib will loop over by the file size."""
    head = f.read(8)
    entry = _FAT.get(int.from_bytes(head[:4], "big"))
    if entry is None:
        _check_thin(path, f, 0, size)
        return
    count = int.from_bytes(head[4:8], "big")
    if count > MAX_FAT_ARCHS:
        raise NotASharedLibraryError(path, f"universal file with {count} architectures (more than {MAX_FAT_ARCHS})")
    check_table(path, "fat architectures", 8, count, entry, size)
    f.seek(8)
    table = f.read(count * entry)
    for i in range(count):
        if entry == 20:
            arch_offset, arch_size = struct.unpack_from(">8xII4x", table, i * entry)
        else:
            arch_offset, arch_size = struct.unpack_from(">8xQQ8x", table, i * entry)
        if arch_offset + arch_size > size:
            raise NotASharedLibraryError(path, f"architecture {i} runs past the end of the file")
        _check_thin(path, f, arch_offset, arch_size)


def read_macho_exports(path: str) -> ExportTable:
    """The export table of a Mach-O library (thin, or the first slice of a universal one).

    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    from macholib.MachO import MachO

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            _check_headers(path, f, size)
            header = MachO(path).headers[0]
            order = header.endian
            is64 = (
                header.header.magic in (0xFEEDFACF, 0xCFFAEDFE)
                or _THIN.get(header.header.magic.to_bytes(4, "big"), (0, "", False))[2]
            )
            base, slice_size = header.offset, header.size
            regions = tuple(
                (int(cmd.vmaddr), int(cmd.filesize), base + int(cmd.fileoff))
                for lc, cmd, _ in header.commands
                if lc.cmd in (_LC_SEGMENT, _LC_SEGMENT_64)
            )
            symtab = header.getSymbolTableCommand()
            dysymtab = header.getDynamicSymbolTableCommand()
            symbols: dict[str, int] = {}
            if symtab is not None:
                symbols = _read_symbols(path, f, base, slice_size, order, is64, symtab, dysymtab)
            cpu = int(header.header.cputype)
    except NotASharedLibraryError:
        raise
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    except Exception as e:  # macholib raises ValueError, struct.error, KeyError... on malformed files
        raise NotASharedLibraryError(path, f"malformed Mach-O file: {type(e).__name__}: {e}") from e
    return ExportTable(
        path,
        "macho",
        machine_name(MACHO_CPUS, cpu),
        8 if is64 else 4,
        "little" if order == "<" else "big",
        symbols,
        regions,
    )


def _read_symbols(
    path: str, f: BinaryIO, base: int, size: int, order: str, is64: bool, symtab: object, dysymtab: object
) -> dict[str, int]:
    fmt = order + ("IBBHQ" if is64 else "IBBHI")
    entry = struct.calcsize(fmt)
    nsyms, symoff = int(symtab.nsyms), int(symtab.symoff)  # type: ignore[attr-defined]
    stroff, strsize = int(symtab.stroff), int(symtab.strsize)  # type: ignore[attr-defined]
    check_table(path, "symbol table", symoff, nsyms, entry, size)
    check_table(path, "string table", stroff, strsize, 1, size)
    first, count = 0, nsyms
    if dysymtab is not None:
        first, count = int(dysymtab.iextdefsym), int(dysymtab.nextdefsym)  # type: ignore[attr-defined]
        if first + count > nsyms:
            raise NotASharedLibraryError(path, f"external symbols {first}..{first + count} beyond {nsyms} symbols")
    f.seek(base + stroff)
    strtab = f.read(strsize)
    f.seek(base + symoff + first * entry)
    raw = f.read(count * entry)
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
