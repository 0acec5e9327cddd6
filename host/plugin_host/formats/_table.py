"""The export table every format reader returns, and the bound every table read obeys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from plugin_interface import NotASharedLibraryError

__all__ = ["ExportTable", "check_table"]

Byteorder = Literal["little", "big"]


@dataclass(frozen=True)
class ExportTable:
    """What a library exports, and where its bytes are in the file.

    :ivar path: the file read.
    :ivar format: ``"elf"``, ``"pe"`` or ``"macho"``.
    :ivar machine: the target, e.g. ``"x86_64"``, ``"aarch64"``, ``"arm64"``.
    :ivar pointer_size: 4 or 8.
    :ivar byteorder: ``"little"`` or ``"big"``.
    :ivar symbols: exported name -> virtual address (an RVA on PE), with
        Mach-O's leading underscore removed.
    :ivar regions: file-backed ranges as ``(address, size, file offset)``.
    """

    path: str
    format: str
    machine: str
    pointer_size: int
    byteorder: Byteorder
    symbols: dict[str, int] = field(repr=False)
    regions: tuple[tuple[int, int, int], ...] = field(repr=False, default=())

    @property
    def names(self) -> list[str]:
        """The exported names, sorted."""
        return sorted(self.symbols)

    def read(self, name: str, size: int) -> bytes:
        """Up to ``size`` bytes of exported data ``name``, from the file.

        Fewer bytes come back when the containing region ends first.

        :raises KeyError: if ``name`` is not exported.
        :raises NotASharedLibraryError: if its address is not backed by the
            file (e.g. zero-initialised data) or the file cannot be read.
        """
        address = self.symbols[name]
        for start, length, offset in self.regions:
            if start <= address < start + length:
                size = min(size, start + length - address)
                try:
                    with open(self.path, "rb") as f:
                        f.seek(offset + address - start)
                        return f.read(size)
                except OSError as e:
                    raise NotASharedLibraryError(self.path, f"cannot read {name}: {e.strerror or e}") from e
        raise NotASharedLibraryError(self.path, f"{name} at 0x{address:x} is not stored in the file")


def check_table(path: str, what: str, offset: int, count: int, entry_size: int, file_size: int) -> None:
    """Refuse a table that would run past the end of the file (before any loop over it).

    :raises NotASharedLibraryError: naming the table and the sizes.
    """
    if offset < 0 or count < 0 or entry_size <= 0 or offset + count * entry_size > file_size:
        msg = f"{what}: {count} entries of {entry_size} bytes at offset {offset} run past the end ({file_size} bytes)"
        raise NotASharedLibraryError(path, msg)
