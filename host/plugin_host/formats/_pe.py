"""PE (Windows ``.dll``) export tables, read with ``struct``.

Exported = every named entry of the export directory (what
``GetProcAddress`` finds by name); ordinal-only entries have no name to match
this project's scheme and are skipped, and so is a name whose function RVA is
0 (an unused slot).

Like :mod:`._elf`: the DOS header, the PE signature, the COFF header, the
optional header (PE32 or PE32+), data directory 0 and the section table are
read, then the export directory and its three arrays and the names, each
checked to lie inside the file-backed data of one section before it is read;
counts are capped (:data:`MAX_SECTIONS`, :data:`MAX_EXPORTS`) and every name is
NUL-terminated within its section.  A malformed file gives
:class:`~plugin_interface.NotASharedLibraryError` naming the file and the
flaw.  RVAs map to file offsets as the Windows loader (and pefile) maps
them: ``PointerToRawData`` rounded down to 512 bytes, ``VirtualAddress`` to
the section alignment.  ``tests/test_pe_macho_reader.py`` holds it to
pefile, the reader before it, on every cross-built plugin and on truncated
and fuzzed copies.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from plugin_interface import NotASharedLibraryError

from ._io import READ_FLAGS, pread
from ._machines import PE_MACHINES, machine_name
from ._table import ExportTable, check_table

__all__ = ["MAX_EXPORTS", "MAX_NAME_BYTES", "MAX_SECTIONS", "pe_exports", "read_pe_exports"]

_PE32, _PE32_PLUS = 0x10B, 0x20B
#: More sections than this is treated as corruption (pefile's ``MAX_SECTIONS``; the loader allows 96).
MAX_SECTIONS = 0x800
#: More functions or names than this in an export directory is corruption: a name's ordinal index is 16 bits.
MAX_EXPORTS = 0x10000
#: The longest export name read (MSVC's limit on a decorated name is 4096 characters).
MAX_NAME_BYTES = 4096
#: Bytes read after ``e_lfanew``: signature, COFF header, the largest fixed optional header and one directory.
_NT_HEADERS_BYTES = 4 + 20 + 112 + 8
_COFF = struct.Struct("<4xHH12xH2x")  # Machine, NumberOfSections, SizeOfOptionalHeader (after the signature)
#: The optional header's magic, SectionAlignment, FileAlignment; its fixed size and where NumberOfRvaAndSizes is.
_OPTIONAL = struct.Struct("<H30xII")
_FIXED_OPTIONAL = {_PE32: 96, _PE32_PLUS: 112}
_SECTION = struct.Struct("<8xIIII16x")  # VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData
#: The export directory's Base, NumberOfFunctions, NumberOfNames, AddressOfFunctions, AddressOfNames and
#: AddressOfNameOrdinals.
_EXPORT_DIRECTORY = struct.Struct("<12x4xIIIIII")
#: Bytes allowed in an export name: letters, digits and the punctuation of C++ and MSVC decorations (printable
#: ASCII but the space, ``;`` and ``=``), as pefile allows; pefile stops reading at a name with any other byte.
_NAME_BYTES = frozenset(range(0x21, 0x7F)) - frozenset(b";=")
#: Below the page size, sections are aligned (and mapped) as in the file.
_PAGE = 0x1000
_SECTOR = 0x200


def read_pe_exports(path: str) -> ExportTable:
    """The export table of a PE library.

    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    try:
        fd = os.open(path, READ_FLAGS)
        try:
            return pe_exports(lambda offset, n: pread(fd, n, offset), os.fstat(fd).st_size, path)
        finally:
            os.close(fd)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e


def pe_exports(read: Callable[[int, int], bytes], size: int, path: str, head: bytes | None = None) -> ExportTable:
    """:func:`read_pe_exports` on an image read through ``read(offset, length)``.

    :param size: the image's size in bytes.
    :param head: the image's first 64 bytes, when the caller has them already.
    :raises NotASharedLibraryError: naming ``path`` and what is malformed.
    :raises OSError: from ``read``.
    """
    image = _PeImage(read, size, path, read(0, 64) if head is None else head)
    return ExportTable(
        path,
        "pe",
        machine_name(PE_MACHINES, image.machine),
        8 if image.magic == _PE32_PLUS else 4,
        "little",
        image.exports(),
        image.regions(),
    )


class _PeImage:
    """The headers and section table of one PE image, and bounded reads of its data by RVA.

    :ivar sections: ``(VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData)`` per section,
        sorted by ``VirtualAddress`` (stable), as pefile lists them.
    """

    def __init__(self, read: Callable[[int, int], bytes], size: int, path: str, head: bytes) -> None:
        self.read, self.size, self.path = read, size, path
        if len(head) < 64 or size < 64:
            raise NotASharedLibraryError(path, "truncated: shorter than a DOS header")
        if head[:2] != b"MZ":
            raise NotASharedLibraryError(path, "no DOS header (MZ)")
        (lfanew,) = struct.unpack_from("<I", head, 0x3C)
        nt = read(lfanew, _NT_HEADERS_BYTES) if lfanew < size else b""  # shorter at the end of the file
        if nt[:4] != b"PE\0\0":
            raise NotASharedLibraryError(path, f"no PE signature at offset {lfanew} (e_lfanew)")
        if len(nt) < 24 + _OPTIONAL.size:
            raise NotASharedLibraryError(path, f"truncated: {size} bytes, shorter than the PE headers")
        self.machine, nsections, optional_size = _COFF.unpack_from(nt)
        self.magic, self.section_alignment, self.file_alignment = _OPTIONAL.unpack_from(nt, 24)
        fixed = _FIXED_OPTIONAL.get(self.magic)
        if fixed is None:
            raise NotASharedLibraryError(path, f"unknown optional header magic 0x{self.magic:x} (not PE32 or PE32+)")
        if len(nt) < 24 + fixed:
            raise NotASharedLibraryError(path, f"truncated: {size} bytes, shorter than the optional header")
        (ndirectories,) = struct.unpack_from("<I", nt, 24 + fixed - 4)
        self.export_rva = 0  # data directory 0, if there is one (its size bounds nothing this reader reads)
        if ndirectories & 0x7FFFFFFF:  # pefile's mask: the count is a signed int on Windows
            if len(nt) < 24 + fixed + 8:
                raise NotASharedLibraryError(path, f"truncated: {size} bytes, shorter than the data directories")
            (self.export_rva,) = struct.unpack_from("<I", nt, 24 + fixed)
        if nsections > MAX_SECTIONS:
            raise NotASharedLibraryError(path, f"{nsections} sections (more than {MAX_SECTIONS})")
        table_offset = lfanew + 24 + optional_size
        check_table(path, "section table", table_offset, nsections, _SECTION.size, size)
        raw = self._read_exactly(table_offset, nsections * _SECTION.size, "the section table")
        sections = list(_SECTION.iter_unpack(raw))
        for i, (_, _, raw_size, raw_offset) in enumerate(sections):
            if raw_size and raw_offset + raw_size > size:
                msg = f"truncated: section {i} ends at byte {raw_offset + raw_size}, the file has {size}"
                raise NotASharedLibraryError(path, msg)
        self.sections = sorted(sections, key=lambda s: s[1])
        self._data: dict[int, bytes] = {}

    def _read_exactly(self, offset: int, length: int, what: str) -> bytes:
        data = self.read(offset, length)
        if len(data) < length:  # the file shrank since its size was taken
            raise NotASharedLibraryError(self.path, f"truncated while reading {what}")
        return data

    def regions(self) -> tuple[tuple[int, int, int], ...]:
        """``(VirtualAddress, file-backed size, PointerToRawData)`` of each section."""
        return tuple(
            (address, min(raw_size, virtual_size or raw_size), raw_offset)
            for virtual_size, address, raw_size, raw_offset in self.sections
        )

    def _section_of(self, rva: int, what: str) -> tuple[int, int]:
        """``(index, file offset)`` of ``rva``: in which section it lies, and where in the file.

        The section's extent and offsets are those pefile (after the loader) uses: the virtual
        address rounded down to the section alignment, the raw offset to 512 bytes, each section
        ending where the next one begins.
        """
        alignment = self.file_alignment if self.section_alignment < _PAGE else self.section_alignment
        for i, (virtual_size, address, raw_size, raw_offset) in enumerate(self.sections):
            start = address - address % alignment if alignment else address
            end = start + max(raw_size, virtual_size)
            if i + 1 < len(self.sections):
                following = self.sections[i + 1][1]
                if following > address and end > following:
                    end = following
            if start <= rva < end:
                if self.section_alignment < _PAGE and raw_offset == address:
                    base = address
                else:
                    base = raw_offset & ~(_SECTOR - 1)
                return i, rva - start + base
        raise NotASharedLibraryError(self.path, f"{what} at RVA 0x{rva:x} lies in no section")

    def _bytes(self, rva: int, length: int, what: str) -> tuple[bytes, int]:
        """The file-backed data of the section holding ``rva`` (read once), and ``rva``'s index in it.

        :raises NotASharedLibraryError: unless all ``length`` bytes at ``rva`` are in the file.
        """
        index, offset = self._section_of(rva, what)
        _, _, raw_size, raw_offset = self.sections[index]
        data = self._data.get(index)
        if data is None:
            data = self._data[index] = self._read_exactly(raw_offset, raw_size, "a section") if raw_size else b""
        at = offset - raw_offset
        if at < 0 or at + length > len(data):
            msg = f"{what} at RVA 0x{rva:x} ({length} bytes) runs past its section's data in the file"
            raise NotASharedLibraryError(self.path, msg)
        return data, at

    def exports(self) -> dict[str, int]:
        """Name -> function RVA of every named export."""
        if not self.export_rva:
            return {}
        data, at = self._bytes(self.export_rva, _EXPORT_DIRECTORY.size, "the export directory")
        _, nfunctions, nnames, functions_rva, names_rva, ordinals_rva = _EXPORT_DIRECTORY.unpack_from(data, at)
        if not nnames:
            return {}
        if nfunctions > MAX_EXPORTS or nnames > MAX_EXPORTS:
            msg = f"export directory of {nfunctions} functions and {nnames} names (more than {MAX_EXPORTS})"
            raise NotASharedLibraryError(self.path, msg)
        data, at = self._bytes(functions_rva, 4 * nfunctions, "the export address table")
        functions = struct.unpack_from(f"<{nfunctions}I", data, at)
        data, at = self._bytes(names_rva, 4 * nnames, "the export name table")
        names = struct.unpack_from(f"<{nnames}I", data, at)
        data, at = self._bytes(ordinals_rva, 2 * nnames, "the export ordinal table")
        ordinals = struct.unpack_from(f"<{nnames}H", data, at)
        symbols: dict[str, int] = {}
        for i, (name_rva, ordinal) in enumerate(zip(names, ordinals, strict=True)):
            if ordinal >= nfunctions:
                msg = f"export name {i}: ordinal index {ordinal} beyond the {nfunctions} functions"
                raise NotASharedLibraryError(self.path, msg)
            address = functions[ordinal]
            if address:  # 0: an unused slot
                name = self._name(name_rva, i)
                if name:
                    symbols[name] = address
        return symbols

    def _name(self, rva: int, index: int) -> str:
        data, at = self._bytes(rva, 1, f"export name {index}")
        end = data.find(b"\0", at, at + MAX_NAME_BYTES + 1)
        if end < 0:
            msg = f"export name {index} at RVA 0x{rva:x} is not NUL-terminated within {MAX_NAME_BYTES} bytes"
            raise NotASharedLibraryError(self.path, msg)
        name = data[at:end]
        if not _NAME_BYTES.issuperset(name):
            msg = f"export name {index} ({name!r}) has a byte no symbol name has (not printable ASCII, or ; =)"
            raise NotASharedLibraryError(self.path, msg)
        return name.decode("ascii")
