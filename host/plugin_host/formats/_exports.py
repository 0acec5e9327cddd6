"""A library's export table, read from the file without loading it.

:func:`read_exports` sniffs the format and hands the file to its reader:
:mod:`._elf` (``.dynsym``), :mod:`._pe` (the export directory) or
:mod:`._macho` (the load commands and the symbol table): our own ``struct``
readers, each reading only the tables it needs through the one descriptor
opened here.  Nothing here executes the file.

Why readers of our own (see the README's "ABI verification"): they are pure
Python, so a malformed file cannot crash the process (LIEF is faster but
compiled, and has had crashes and hangs on malformed input; the ELF table's C
reader, :mod:`._elfread`, answers only what it reads exactly as :mod:`._elf`
would and leaves any other file to it, which tests hold it to); every offset and
count read from a file is checked against the file's size before it drives a
read or a loop, so no input can make them spin or allocate past the file, and
every flaw is a :class:`NotASharedLibraryError`.  The general parsers they
replace (pyelftools took about 10 ms a file, pefile about 7) parse far more
than an export table; they stay in the tests as the references the readers
are compared with.
"""

from __future__ import annotations

import contextlib
import os
import stat

from plugin_interface import NotASharedLibraryError

from ._elf import compiled_elf_exports, compiled_scheme_scan, elf_export_names, elf_exports_fd
from ._io import READ_FLAGS, pread
from ._macho import macho_exports
from ._pe import pe_exports
from ._sniff import BinaryFormat, format_of
from ._table import ExportTable, SchemeExports

__all__ = ["exported_names", "exported_symbols", "open_exports", "open_scheme_exports", "read_exports"]


def read_exports(path: str | os.PathLike[str]) -> ExportTable:
    """The export table of an ELF, PE or Mach-O shared library.

    :raises NotASharedLibraryError: for anything that is not a readable,
        well-formed library of those formats, naming the file and the flaw.
    """
    with open_exports(path) as (table, _):
        return table


def open_exports(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[tuple[ExportTable, int]]:
    """:func:`read_exports`, and the file still open (non-blocking, read-only) for reads of its data.

    ``abi check`` reads each library's descriptors and declarations through
    the descriptor the export table was read through: one open per file.
    Use as ``with open_exports(path) as (table, fd):``.

    :raises NotASharedLibraryError: as :func:`read_exports` (on entering).
    """
    return _OpenExports(os.fspath(path))


def open_scheme_exports(
    path: str | os.PathLike[str], abi_version: int, prefixes: tuple[str, ...]
) -> contextlib.AbstractContextManager[tuple[SchemeExports | ExportTable, int]]:
    """:func:`open_exports`, answered by the C reader's scheme scan where it answers.

    ``abi check``'s reading of a file: for an ELF library the C reader reads
    the names of the symbol scheme and their data in one call
    (:class:`SchemeExports`, see ``_elf.compiled_scheme_scan``); for any other
    file, and whatever the C leaves to Python, the :class:`ExportTable` of
    :func:`open_exports`.  Use as ``with open_scheme_exports(...) as (found, fd):``.

    :param abi_version: the ``_vN`` whose descriptors and declarations are read.
    :param prefixes: a name that starts with one of these and does not parse is malformed.
    :raises NotASharedLibraryError: as :func:`read_exports` (on entering).
    """
    return _OpenSchemeExports(os.fspath(path), abi_version, prefixes)


class _Open:
    """The open file of a context below, closed on leaving."""

    __slots__ = ("_fd", "_name")

    def __init__(self, name: str) -> None:
        self._name, self._fd = name, -1

    def _open(self) -> int:
        """Open the file (once: a second entry would leak the first descriptor)."""
        if self._fd >= 0:
            raise RuntimeError(f"the context of {self._name!r} is entered already")
        fd = self._fd = _open(self._name)
        return fd

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class _OpenExports(_Open):
    """:func:`open_exports`' context (a class: a generator's costs ``abi check`` about 2 us a file)."""

    __slots__ = ()

    def __enter__(self) -> tuple[ExportTable, int]:
        fd = self._open()
        try:
            return _exports(fd, self._name), fd
        except BaseException:
            self._fd = -1
            os.close(fd)
            raise


class _OpenSchemeExports(_Open):
    """:func:`open_scheme_exports`' context."""

    __slots__ = ("_abi_version", "_prefixes")

    def __init__(self, name: str, abi_version: int, prefixes: tuple[str, ...]) -> None:
        self._name, self._fd, self._abi_version, self._prefixes = name, -1, abi_version, prefixes

    def __enter__(self) -> tuple[SchemeExports | ExportTable, int]:
        fd = self._open()
        try:
            return _scheme_exports(fd, self._name, self._abi_version, self._prefixes), fd
        except BaseException:
            self._fd = -1
            os.close(fd)
            raise


def _open(name: str) -> int:
    """``name`` opened non-blocking and read-only.

    :raises NotASharedLibraryError: it cannot be opened (a directory: said so).
    """
    try:
        return os.open(name, READ_FLAGS)
    except OSError as e:
        what = "it is a directory" if os.path.isdir(name) else f"cannot read it: {e.strerror or e}"
        raise NotASharedLibraryError(name, what) from e


def _exports(fd: int, name: str) -> ExportTable:
    try:
        size, head, fmt = _sniff(fd, name)
        return _table(fd, name, size, head, fmt)
    except OSError as e:
        raise NotASharedLibraryError(name, f"cannot read it: {e.strerror or e}") from e


def _scheme_exports(fd: int, name: str, abi_version: int, prefixes: tuple[str, ...]) -> SchemeExports | ExportTable:
    try:
        size, head, fmt = _sniff(fd, name)
        if fmt is BinaryFormat.ELF:
            found = compiled_scheme_scan(fd, size, name, head, abi_version, prefixes)
            if found is not None:
                return found
        return _table(fd, name, size, head, fmt)
    except OSError as e:
        raise NotASharedLibraryError(name, f"cannot read it: {e.strerror or e}") from e


def _table(fd: int, name: str, size: int, head: bytes, fmt: BinaryFormat) -> ExportTable:
    """The export table of the open file ``name`` of that size, first bytes and format.

    :raises OSError: reading it failed.
    """
    if fmt is BinaryFormat.ELF:
        return elf_exports_fd(fd, size, name, head)

    def read(offset: int, n: int) -> bytes:  # through the descriptor already open: one open per file
        return pread(fd, n, offset)

    if fmt is BinaryFormat.PE:
        return pe_exports(read, size, name, head)
    return macho_exports(read, size, name, head)


def _sniff(fd: int, name: str) -> tuple[int, bytes, BinaryFormat]:
    """The size, first 64 bytes and format of the open file ``name``.

    :raises NotASharedLibraryError: a directory, or not a regular file.
    :raises OSError: reading it failed.
    """
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise NotASharedLibraryError(name, "it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise NotASharedLibraryError(name, "it is not a regular file (a device, FIFO or socket)")
    head = pread(fd, 64, 0)
    return st.st_size, head, format_of(name, head[:4])


def exported_names(path: str | os.PathLike[str], prefix: str) -> list[str]:
    """The names a library exports that start with ``prefix`` (not empty), sorted.

    :func:`exported_symbols` filtered; an ELF file is read by
    :func:`~._elf.elf_export_names`, which decodes only those names (the
    other formats are read whole).  ``reload(trait=None)`` finds a file's
    traits from its ``plugin_register_`` names this way.

    :raises NotASharedLibraryError: as :func:`exported_symbols` (for ELF, only
        about the tables read and the names asked for).
    """
    if not prefix:
        raise ValueError("exported_names needs a prefix; exported_symbols lists every name")
    name = os.fspath(path)
    fd = _open(name)
    try:
        size, head, fmt = _sniff(fd, name)
        if fmt is BinaryFormat.ELF:
            # A table the C reader gives is one elf_exports would give, so its names are
            # elf_export_names' (which may refuse less: it reads less); a prefix holding U+FFFD could
            # match a name's undecodable byte, which the search of the bytes does not.
            table = compiled_elf_exports(fd, size, name, head) if "\ufffd" not in prefix else None
            if table is not None:
                return sorted(n for n in table.symbols if n.startswith(prefix))
            return elf_export_names(lambda offset, n: pread(fd, n, offset), size, name, prefix, head)
    except OSError as e:
        raise NotASharedLibraryError(name, f"cannot read it: {e.strerror or e}") from e
    finally:
        os.close(fd)
    return [n for n in read_exports(name).names if n.startswith(prefix)]


def exported_symbols(path: str | os.PathLike[str]) -> list[str]:
    """The names a library exports, sorted.

    :raises NotASharedLibraryError: if the file is not a readable library of a
        supported format, naming the file and what is wrong.
    """
    return read_exports(path).names
