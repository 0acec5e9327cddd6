"""The export table every format reader returns, and the bound every table read obeys."""

from __future__ import annotations

import os
from typing import Literal

from plugin_interface import NotASharedLibraryError
from plugin_interface._record import Record, setfield

from ._blockers import UnloadBlockers
from ._io import READ_FLAGS, pread

__all__ = ["ExportTable", "SchemeExports", "check_table"]

Byteorder = Literal["little", "big"]


class ExportTable(Record, unshown=("symbols", "regions", "unload_blockers")):
    """What a library exports, and where its bytes are in the file.

    :ivar path: the file read.
    :ivar format: ``"elf"``, ``"pe"`` or ``"macho"``.
    :ivar machine: the target, e.g. ``"x86_64"``, ``"aarch64"``, ``"arm64"``.
    :ivar pointer_size: 4 or 8.
    :ivar byteorder: ``"little"`` or ``"big"``.
    :ivar symbols: exported name -> virtual address (an RVA on PE), with
        Mach-O's leading underscore removed.
    :ivar regions: file-backed ranges as ``(address, size, file offset)``.
    :ivar unload_blockers: what keeps the library mapped after ``dlclose``, when
        the reader found out in the same pass (ELF); ``None`` when it did not look.
    """

    __slots__ = ("byteorder", "format", "machine", "path", "pointer_size", "regions", "symbols", "unload_blockers")
    path: str
    format: str
    machine: str
    pointer_size: int
    byteorder: Byteorder
    symbols: dict[str, int]
    regions: tuple[tuple[int, int, int], ...]
    unload_blockers: UnloadBlockers | None

    def __init__(
        self,
        path: str,
        format: str,
        machine: str,
        pointer_size: int,
        byteorder: Byteorder,
        symbols: dict[str, int],
        regions: tuple[tuple[int, int, int], ...] = (),
        unload_blockers: UnloadBlockers | None = None,
    ) -> None:
        setfield(self, "path", path)
        setfield(self, "format", format)
        setfield(self, "machine", machine)
        setfield(self, "pointer_size", pointer_size)
        setfield(self, "byteorder", byteorder)
        setfield(self, "symbols", symbols)
        setfield(self, "regions", regions)
        setfield(self, "unload_blockers", unload_blockers)

    @property
    def names(self) -> list[str]:
        """The exported names, sorted."""
        return sorted(self.symbols)

    def locate(self, name: str, size: int) -> tuple[int, int]:
        """Where up to ``size`` bytes of exported data ``name`` are in the file: ``(offset, length)``.

        ``length`` is smaller than ``size`` when the containing region ends first.

        :raises KeyError: if ``name`` is not exported.
        :raises NotASharedLibraryError: if its address is not backed by the
            file (e.g. zero-initialised data).
        """
        address = self.symbols[name]
        for start, length, offset in self.regions:
            if start <= address < start + length:
                return offset + address - start, min(size, start + length - address)
        raise NotASharedLibraryError(self.path, f"{name} at 0x{address:x} is not stored in the file")

    def read(self, name: str, size: int, fd: int | None = None) -> bytes:
        """Up to ``size`` bytes of exported data ``name``, from the file.

        Fewer bytes come back when the containing region (or the file) ends first.

        :param fd: an open descriptor of the file to read through (several reads, one open).
        :raises KeyError: if ``name`` is not exported.
        :raises NotASharedLibraryError: if its address is not backed by the
            file (e.g. zero-initialised data) or the file cannot be read.
        """
        offset, length = self.locate(name, size)
        try:
            if fd is not None:
                return pread(fd, length, offset)
            own = os.open(self.path, READ_FLAGS)
            try:
                return pread(own, length, offset)
            finally:
                os.close(own)
        except OSError as e:
            raise NotASharedLibraryError(self.path, f"cannot read {name}: {e.strerror or e}") from e
        except OverflowError as e:  # a corrupted program header: an offset no file has (pread takes an off_t)
            raise NotASharedLibraryError(self.path, f"cannot read {name}: offset {offset:#x} is past any file") from e


#: One name of the symbol scheme as :class:`SchemeExports` gives it: ``(role, trait, type or None, abi,
#: name, data)``, ``data`` the first bytes of a descriptor or declaration (``None`` for the other roles).
SchemeSymbol = tuple[str, str, str | None, int, str, bytes | None]


class SchemeExports(Record, frozen=False):
    """What a library exports under the symbol scheme, read in one pass (ELF, the C reader only).

    The fields of :class:`ExportTable` that ``abi check`` uses, and instead
    of the whole table only the names of the scheme, already parsed, with the
    bytes of the data they export (see ``_elf.compiled_scheme_scan``).

    :ivar malformed: the exported names that start with one of the prefixes asked and do not parse.
    :ivar symbols: every parsed name of the scheme, in the export table's order.
    """

    __slots__ = ("byteorder", "format", "machine", "malformed", "path", "pointer_size", "symbols", "unload_blockers")
    path: str
    format: str
    machine: str
    pointer_size: int
    byteorder: Byteorder
    unload_blockers: UnloadBlockers
    malformed: tuple[str, ...]
    symbols: tuple[SchemeSymbol, ...]

    def __init__(
        self,
        path: str,
        format: str,
        machine: str,
        pointer_size: int,
        byteorder: Byteorder,
        unload_blockers: UnloadBlockers,
        malformed: tuple[str, ...],
        symbols: tuple[SchemeSymbol, ...],
    ) -> None:
        # Mutable, so assigned (a frozen record's setfield calls cost abi check a few us per 100 files).
        self.path = path
        self.format = format
        self.machine = machine
        self.pointer_size = pointer_size
        self.byteorder = byteorder
        self.unload_blockers = unload_blockers
        self.malformed = malformed
        self.symbols = symbols


def check_table(path: str, what: str, offset: int, count: int, entry_size: int, file_size: int) -> None:
    """Refuse a table that would run past the end of the file (before any loop over it).

    :raises NotASharedLibraryError: naming the table and the sizes.
    """
    if offset < 0 or count < 0 or entry_size <= 0 or offset + count * entry_size > file_size:
        msg = f"{what}: {count} entries of {entry_size} bytes at offset {offset} run past the end ({file_size} bytes)"
        raise NotASharedLibraryError(path, msg)
