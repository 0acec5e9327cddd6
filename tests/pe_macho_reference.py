"""The PE and Mach-O readers before the host had its own: pefile and macholib, kept as the test reference.

These are ``formats/_pe.py`` and ``formats/_macho.py`` as they were (the
checks they made before handing a file to the library included), so
``tests/test_pe_macho_reader.py`` compares the ``struct`` readers with the
exact results the host gave before, and ``bench/bench_pe_macho.py`` times
both.  pefile and macholib are test dependencies only (the ``test`` extra).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import BinaryIO

from plugin_host.formats import ExportTable, check_table, machine_name, read_exports
from plugin_host.formats._machines import MACHO_CPUS, PE_MACHINES
from plugin_interface import NotASharedLibraryError

__all__ = ["agree", "outcome", "reference_exports", "reference_macho_exports", "reference_pe_exports"]

_PE32_PLUS = 0x20B


def reference_pe_exports(path: str, as_before: bool = False) -> ExportTable:
    """The export table of a PE library, read by pefile.

    :param as_before: open the file as the host did (``pefile.PE(path)``, an mmap, and ``pe.close()``,
        which runs a full ``gc.collect()``: 5-80 ms in a test process).  By default the file's bytes are
        passed instead and nothing needs closing: the same table, without the collection.
    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    import pefile

    if os.path.getsize(path) < 64:
        raise NotASharedLibraryError(path, "truncated: shorter than a DOS header")
    try:
        if as_before:
            pe = pefile.PE(path, fast_load=True)
        else:
            with open(path, "rb") as f:
                pe = pefile.PE(data=f.read(), fast_load=True)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    except Exception as e:  # PEFormatError, struct.error, ... all mean "malformed"
        raise NotASharedLibraryError(path, f"malformed PE file: {type(e).__name__}: {e}") from e
    try:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
        symbols: dict[str, int] = {}
        export_dir = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        for entry in export_dir.symbols if export_dir is not None else ():
            if entry.name:
                symbols[entry.name.decode("utf-8", "replace")] = int(entry.address)
        regions = tuple(
            (
                int(s.VirtualAddress),
                int(min(s.SizeOfRawData, s.Misc_VirtualSize or s.SizeOfRawData)),
                int(s.PointerToRawData),
            )
            for s in pe.sections
        )
        machine = machine_name(PE_MACHINES, int(pe.FILE_HEADER.Machine))
        pointer_size = 8 if pe.OPTIONAL_HEADER.Magic == _PE32_PLUS else 4
    except Exception as e:  # pefile raises assorted errors on malformed directories
        raise NotASharedLibraryError(path, f"malformed PE file: {type(e).__name__}: {e}") from e
    finally:
        if as_before:
            pe.close()
    return ExportTable(path, "pe", machine, pointer_size, "little", symbols, regions)


_FAT = {0xCAFEBABE: 20, 0xCAFEBABF: 32}  # fat magic -> fat_arch entry size
#: Thin magics as the first 4 bytes: (header size, byte order, 64-bit).
_THIN = {
    b"\xfe\xed\xfa\xce": (28, ">", False),
    b"\xce\xfa\xed\xfe": (28, "<", False),
    b"\xfe\xed\xfa\xcf": (32, ">", True),
    b"\xcf\xfa\xed\xfe": (32, "<", True),
}
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


def reference_macho_exports(path: str) -> ExportTable:
    """The export table of a Mach-O library (thin, or the first slice of a universal one), read by macholib.

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


# ---- comparing a reader with the reference ------------------------------------------------------------------------

Table = tuple[str, int, str, dict[str, int], tuple[tuple[int, int, int], ...]]
#: Where only the reference refuses a file, for a reason of its own: macholib refuses load commands it does not
#: know (dyld skips them, and so does ours), and reads every section's contents (ours reads none).
REFERENCE_STRICTER = ("Unknown load command", "is outside window", "Invalid size")
OUTCOMES = ("both refuse", "ours stricter", "reference stricter", "both read")


def as_tuple(table: ExportTable) -> Table:
    return (table.machine, table.pointer_size, table.byteorder, table.symbols, table.regions)


def reference_exports(path: str | os.PathLike[str]) -> ExportTable:
    """The reference's export table of a PE or Mach-O file (by its first bytes)."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        head = f.read(2)
    return reference_pe_exports(name) if head == b"MZ" else reference_macho_exports(name)


def outcome(read: Callable[[str], ExportTable], path: str) -> Table | NotASharedLibraryError:
    """``read(path)`` as a table, or the NotASharedLibraryError it raised (naming ``path``); nothing else."""
    # Imported here so that bench/bench_pe_macho.py, which times the reference readers, does not load
    # pytest and hypothesis: pefile's close() runs a full gc.collect(), whose cost grows with the heap.
    from test_symbols import deadline

    with deadline():
        try:
            return as_tuple(read(path))
        except NotASharedLibraryError as e:
            assert e.path == path
            return e


def agree(path: str | os.PathLike[str], stats: dict[str, int]) -> None:
    """Both readers read the same table, or ours refuses the file, or the reference does for a reason of its own."""
    name = os.fspath(path)
    mine, reference = outcome(read_exports, name), outcome(reference_exports, name)
    if isinstance(mine, NotASharedLibraryError) and isinstance(reference, NotASharedLibraryError):
        stats["both refuse"] += 1
    elif isinstance(mine, NotASharedLibraryError):
        stats["ours stricter"] += 1  # every offset and size checked (pefile reads what it can and warns)
    elif isinstance(reference, NotASharedLibraryError):
        assert any(reason in reference.detail for reason in REFERENCE_STRICTER), (reference, mine)
        stats["reference stricter"] += 1
    else:
        assert mine == reference, name
        stats["both read"] += 1
