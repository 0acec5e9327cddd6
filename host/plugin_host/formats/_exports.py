"""A library's export table, read from the file without loading it.

:func:`read_exports` sniffs the format and hands the file to its reader:
:mod:`._elf` (pyelftools), :mod:`._pe` (pefile) or :mod:`._macho`
(macholib).  Nothing here executes the file.

Why these parsers (see the README's "ABI verification"): they are pure Python,
so a malformed file cannot crash the process (LIEF is ~30x faster but
compiled, and has had crashes and hangs on malformed input); they raise
assorted exceptions on malformed files, which every reader turns into
:class:`NotASharedLibraryError`; and every count read from a file is checked
against the file's size before it drives a loop, so no input can make them
spin.
"""

from __future__ import annotations

import os

from ._elf import read_elf_exports
from ._macho import read_macho_exports
from ._pe import read_pe_exports
from ._sniff import BinaryFormat, sniff_format
from ._table import ExportTable

__all__ = ["exported_symbols", "read_exports"]


def read_exports(path: str | os.PathLike[str]) -> ExportTable:
    """The export table of an ELF, PE or Mach-O shared library.

    :raises NotASharedLibraryError: for anything that is not a readable,
        well-formed library of those formats, naming the file and the flaw.
    """
    fmt = sniff_format(path)
    if fmt is BinaryFormat.ELF:
        return read_elf_exports(os.fspath(path))
    if fmt is BinaryFormat.PE:
        return read_pe_exports(os.fspath(path))
    return read_macho_exports(os.fspath(path))


def exported_symbols(path: str | os.PathLike[str]) -> list[str]:
    """The names a library exports, sorted.

    :raises NotASharedLibraryError: if the file is not a readable library of a
        supported format, naming the file and what is wrong.
    """
    return read_exports(path).names
