"""Listing a library's exported symbols without loading it.

ELF is read with pyelftools, PE with pefile and Mach-O with macholib (pure
Python: they cannot crash the process on a malformed file, which matters
because the host reads untrusted libraries); the backends and
:class:`~plugin_host._exports.ExportTable` live in ``_exports*.py``.  On ELF,
only defined, global/weak, default-visibility function and object symbols of
the dynamic symbol table count as exported.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable
from typing import NamedTuple

from plugin_interface import NotASharedLibraryError

__all__ = [
    "READ_FLAGS",
    "ElfLayout",
    "check_complete",
    "check_elf_complete",
    "exported_symbols",
    "format_of",
    "pread",
    "sniff_format",
]

_ELF_MAGIC = b"\x7fELF"
_MACHO_MAGICS = {
    b"\xfe\xed\xfa\xce",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"\xbe\xba\xfe\xca",
}


def sniff_format(path: str | os.PathLike[str]) -> str:
    """``"elf"``, ``"pe"`` or ``"macho"`` from the file's magic number.

    :raises NotASharedLibraryError: for a directory, an empty, unreadable or
        unrecognised file.
    """
    if os.path.isdir(path):
        raise NotASharedLibraryError(path, "it is a directory")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    return format_of(path, head)


def format_of(path: str | os.PathLike[str], head: bytes) -> str:
    """``"elf"``, ``"pe"`` or ``"macho"`` from a file's first bytes (at least 4).

    :raises NotASharedLibraryError: naming ``path``, for an empty or unrecognised file.
    """
    if not head:
        raise NotASharedLibraryError(path, "the file is empty")
    if head[:4] == _ELF_MAGIC:
        return "elf"
    if head[:2] == b"MZ":
        return "pe"
    if head[:4] in _MACHO_MAGICS:
        return "macho"
    raise NotASharedLibraryError(path, f"unrecognised file format (starts with {head[:16]!r})")


_PT_LOAD = 1


class ElfLayout(NamedTuple):
    """What :func:`check_elf_complete` read: header fields and the program headers.

    :ivar program_headers: ``(p_type, p_offset, p_vaddr, p_filesz)`` per entry.
    """

    elf_class: int
    order: str
    e_type: int
    e_machine: int
    program_headers: list[tuple[int, int, int, int]]


#: Open flags for reading a file to check: never block on a FIFO, never inherit.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def pread(fd: int, length: int, offset: int) -> bytes:
    """``os.pread``, or seek and read where it is missing (Windows)."""
    if hasattr(os, "pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, length)


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
        with open(file, "rb") as f:
            fd = f.fileno()
            check_elf_complete(lambda offset, n: pread(fd, n, offset), os.fstat(fd).st_size, path)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e


def check_elf_complete(read: Callable[[int, int], bytes], size: int, path: str | os.PathLike[str]) -> ElfLayout | None:
    """:func:`check_complete` on an image read through ``read(offset, length)``.

    The pre-check (:mod:`._precheck`) calls this on the very bytes it is about
    to load (an open file or the contents of a private copy) and reuses the
    headers it read.

    :param size: the image's size in bytes.
    :returns: the headers read, or ``None`` for a non-ELF image (not checked).
    :raises NotASharedLibraryError: naming what lies past the end of the image.
    :raises OSError: from ``read``.
    """
    ident = read(0, 64)
    if ident[:4] != _ELF_MAGIC:
        return None
    if len(ident) < 6 or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise NotASharedLibraryError(path, "unknown ELF class or byte order")
    elf_class, order = ident[4], "<" if ident[5] == 1 else ">"
    header, ph_entry = _elf_structs(elf_class, order)
    if len(ident) < header.size:
        raise NotASharedLibraryError(path, f"truncated: {size} bytes, shorter than the ELF header")
    e_type, e_machine, phoff, shoff, phentsize, phnum, shentsize, shnum = header.unpack_from(ident)
    if phoff + phnum * phentsize > size or (shoff and shoff + shnum * shentsize > size):
        raise NotASharedLibraryError(path, f"truncated: its header tables end past {size} bytes")
    if phnum and phentsize < ph_entry.size:
        raise NotASharedLibraryError(path, f"program header entries of {phentsize} bytes")
    table = read(phoff, phnum * phentsize)
    if phentsize == ph_entry.size:
        headers: list[tuple[int, int, int, int]] = list(ph_entry.iter_unpack(table))
    else:
        headers = [ph_entry.unpack_from(table, i * phentsize) for i in range(phnum)]
    for p_type, p_offset, _, p_filesz in headers:
        if p_type == _PT_LOAD and p_offset + p_filesz > size:
            i = headers.index((p_type, p_offset, _, p_filesz))
            msg = f"truncated: segment {i} ends at byte {p_offset + p_filesz}, the file has {size}"
            raise NotASharedLibraryError(path, msg)
    return ElfLayout(elf_class, order, e_type, e_machine, headers)


@functools.cache
def _elf_structs(elf_class: int, order: str) -> tuple[struct.Struct, struct.Struct]:
    """The ELF header (e_type, e_machine, e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize,
    e_shnum) and program header (p_type, p_offset, p_vaddr, p_filesz) formats of one class."""
    if elf_class == 1:
        return struct.Struct(order + "16xHH4x4xII4x2xHHHH2x"), struct.Struct(order + "III4xI12x")
    return struct.Struct(order + "16xHH4x8xQQ4x2xHHHH2x"), struct.Struct(order + "I4xQQ8xQ16x")


def exported_symbols(path: str | os.PathLike[str]) -> list[str]:
    """The names a library exports, sorted (ELF, PE or Mach-O; see :mod:`._exports`).

    :raises NotASharedLibraryError: if the file is not a readable library of a
        supported format, naming the file and what is wrong.
    """
    from ._exports import read_exports

    return read_exports(path).names
