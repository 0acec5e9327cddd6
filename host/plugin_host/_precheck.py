"""The pre-check: read a library's headers before any ``dlopen`` sees it.

``dlopen`` runs native code and trusts the file: a truncated library faults
with SIGBUS inside the loader, a library for another machine gets the
misleading "No such file or directory", and a text file gets the loader's
wording.  The pre-check reads the headers of the exact bytes about to be
loaded (an open file descriptor, or the contents of the private copy) and
refuses with a typed error naming the file:

- not a shared library: a directory, a non-regular file, empty, text, an
  executable or object file (:class:`~plugin_interface.NotASharedLibraryError`);
- wrong binary format, word size, byte order or machine: "built for aarch64,
  this host is x86-64" (:class:`~plugin_interface.ArchitectureMismatchError`);
- load segments or header tables past the end of the file (the truncation that
  would SIGBUS; :func:`._symbols.check_elf_complete`);
- no ``plugin_register_`` name in the dynamic string table at all
  (:class:`~plugin_interface.NoPluginSymbolsError`).

It is cheap on purpose (it runs on every load): one ``open``, one ``fstat``,
one read of the first pages, and ``struct`` unpacking; no symbol table is
decoded.  The exact per-trait symbol checks stay with the loader
(:func:`~plugin_host.register_trait`).

**Platform-specific behaviour**: the ELF checks run where the host itself is
an ELF program (Linux, the BSDs); elsewhere only the binary format is compared.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from plugin_interface import ArchitectureMismatchError, NoPluginSymbolsError, NotASharedLibraryError

from . import _accel
from ._symbols import _ELF_MAGIC, _PT_LOAD, READ_FLAGS, ElfLayout, check_elf_complete, format_of, pread

__all__ = [
    "HEAD_BYTES",
    "Image",
    "Precheck",
    "fast_precheck",
    "host_elf_identity",
    "open_checked",
    "open_image",
    "precheck",
    "precheck_image",
]

#: How much of a file the pre-check reads up front; the headers and, for small
#: libraries, the dynamic string table lie within it.
HEAD_BYTES = 8192
#: A dynamic string table larger than this is treated as corruption.
MAX_DYNSTR_BYTES = 16 << 20

_FORMAT_NAMES = {"elf": "ELF", "pe": "PE (Windows)", "macho": "Mach-O (macOS)"}
_ET_NAMES = {
    0: "no file type",
    1: "a relocatable object (.o)",
    2: "an executable (not position-independent)",
    4: "a core dump",
}
_ET_DYN = 3
_PT_DYNAMIC = 2
_DT_STRTAB, _DT_STRSZ = 5, 10
#: e_machine -> name, as ``uname -m`` / the toolchains spell them.
_MACHINE_NAMES = {
    2: "sparc",
    3: "x86 (i386)",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    43: "sparc64",
    62: "x86-64",
    183: "aarch64",
    243: "riscv",
    258: "loongarch",
}
#: platform.machine() -> e_machine, the fallback when the interpreter's own header cannot be read.
_PLATFORM_MACHINES = {
    "x86_64": 62,
    "amd64": 62,
    "aarch64": 183,
    "arm64": 183,
    "i386": 3,
    "i686": 3,
    "x86": 3,
    "armv7l": 40,
    "armv6l": 40,
    "riscv64": 243,
    "ppc64le": 21,
    "ppc64": 21,
    "s390x": 22,
    "loongarch64": 258,
}
_PLUGIN_NAME = re.compile(rb"plugin_[A-Za-z0-9_]+")


@dataclass(frozen=True)
class ElfIdentity:
    """What an ELF header says the file was built for."""

    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    byte_order: int  # 1 = little, 2 = big
    machine: int | None  # e_machine; None when unknown


def _machine_name(machine: int | None) -> str:
    if machine is None:
        return "an unknown machine"
    return _MACHINE_NAMES.get(machine, f"machine {machine}")


def _expected_format() -> str:
    if sys.platform.startswith(("win", "cygwin", "msys")):
        return "pe"
    return "macho" if sys.platform == "darwin" else "elf"


@functools.cache
def host_elf_identity() -> ElfIdentity:
    """The class, byte order and machine of this interpreter (what it can load).

    Read from the interpreter's own ELF header; derived from
    :func:`platform.machine`, :data:`sys.maxsize` and :data:`sys.byteorder`
    when that cannot be read.
    """
    try:
        with open(os.path.realpath(sys.executable), "rb") as f:
            head = f.read(20)
        if head[:4] == _ELF_MAGIC and head[4] in (1, 2) and head[5] in (1, 2):
            order = "<" if head[5] == 1 else ">"
            (machine,) = struct.unpack_from(order + "H", head, 18)
            return ElfIdentity(head[4], head[5], machine)
    except OSError:
        pass
    return ElfIdentity(
        2 if sys.maxsize > 2**32 else 1,
        1 if sys.byteorder == "little" else 2,
        _PLATFORM_MACHINES.get(platform.machine().lower()),
    )


class Image:
    """The bytes about to be loaded, read once: an open file or a private copy's contents.

    :ivar path: the name to report (the file the user asked for).
    :ivar stat: ``fstat`` of the file the bytes come from.
    :ivar head: the first :data:`HEAD_BYTES` bytes (all of them for a copy's contents).
    """

    __slots__ = ("_fd", "head", "path", "stat")

    def __init__(
        self, path: str | os.PathLike[str], st: os.stat_result, *, data: bytes | None = None, fd: int | None = None
    ) -> None:
        if (data is None) == (fd is None):
            raise ValueError("give exactly one of data and fd")
        self.path = os.fspath(path)
        self.stat = st
        self._fd = fd
        self.head = data if data is not None else pread(fd, HEAD_BYTES, 0)  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        """The image's size in bytes (of the contents read, for a copy)."""
        return self.stat.st_size if self._fd is not None else len(self.head)

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at the end of the image)."""
        if offset + length <= len(self.head) or self._fd is None:
            return self.head[offset : offset + length]
        return pread(self._fd, length, offset)


def open_checked(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """Open ``path`` for the pre-check: ``(fd, fstat)``; the caller closes ``fd``.

    Opened non-blocking (a FIFO must not hang the host) and checked to be a
    regular file through the descriptor, so what is checked is what was opened.

    :raises NotASharedLibraryError: a missing or unreadable file, a symlink
        loop, a directory, a device or FIFO.
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        return fd, st
    except OSError as e:
        os.close(fd)
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    except BaseException:
        os.close(fd)
        raise


def open_image(path: str | os.PathLike[str]) -> tuple[int, Image]:
    """:func:`open_checked`, and the :class:`Image` of the open file: ``(fd, image)``."""
    fd, st = open_checked(path)
    try:
        return fd, Image(path, st, fd=fd)
    except OSError as e:
        os.close(fd)
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e


def check_regular(path: str | os.PathLike[str], st: os.stat_result) -> None:
    """Refuse a directory, device, FIFO or socket.

    :raises NotASharedLibraryError: naming what the file is.
    """
    if stat.S_ISREG(st.st_mode):
        return
    what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
    raise NotASharedLibraryError(path, f"it is {what}")


class Precheck:
    """What the pre-check found.

    :ivar format: ``"elf"``, ``"pe"`` or ``"macho"``.
    """

    __slots__ = ("format", "image", "layout")

    def __init__(self, fmt: str, image: Image, layout: ElfLayout | None = None) -> None:
        self.format = fmt
        self.image = image
        self.layout = layout

    def plugin_symbols(self) -> list[str]:
        """Every ``plugin_*`` name in the dynamic string table (defined or not), sorted.

        Reads the image again: call it while its file descriptor is open.
        """
        if self.layout is None:
            return []
        return sorted({m.decode() for m in _PLUGIN_NAME.findall(_dynamic_strings(self.image, self.layout))})


def precheck(
    path: str | os.PathLike[str], st: os.stat_result, *, fd: int | None = None, data: bytes | None = None
) -> None:
    """:func:`precheck_image` where only the verdict matters (the load path).

    The C version (:mod:`._accel`) runs first when it is built; only when it
    does not pass everything does the Python version run, to raise the typed
    error with its message.  Give exactly one of ``fd`` (an open file whose
    ``fstat`` is ``st``) and ``data`` (the image's bytes).

    :raises NotASharedLibraryError: see :func:`precheck_image`.
    :raises ArchitectureMismatchError: see :func:`precheck_image`.
    :raises NoPluginSymbolsError: see :func:`precheck_image`.
    """
    host = _c_host()
    if host is not None and _accel.elf_precheck_passes(fd, data, st.st_size, HEAD_BYTES, *host):
        return
    precheck_image(Image(path, st, fd=fd, data=data))


def fast_precheck(paths: list[Path], uid: int) -> list[bool]:
    """The C pre-check (:mod:`._accel`) of many files in one call, when it is built and this host is ELF.

    Per path, ``True`` when the file is a regular file owned by ``uid`` (or
    root), writable by neither group nor others, and passes every pre-check.
    ``False`` tells nothing more: then :func:`open_checked`, the policy and
    :func:`precheck` decide, and say why.  All ``False`` without the C checks.
    """
    host = _c_host()
    if not paths or host is None:
        return [False] * len(paths)
    return _accel.precheck_paths([os.fspath(p) for p in paths], HEAD_BYTES, *host, uid)


def _c_host() -> tuple[int, int, int] | None:
    """``(class, byte order, machine or -1)`` for the C pre-check, or ``None`` when it does not run here."""
    if not _accel.enabled() or _expected_format() != "elf":
        return None
    host = host_elf_identity()
    return host.elf_class, host.byte_order, -1 if host.machine is None else host.machine


def precheck_image(image: Image) -> Precheck:
    """Refuse an image the host must not ``dlopen``; see the module's description.

    :raises NotASharedLibraryError: not a shared library, or truncated.
    :raises ArchitectureMismatchError: built for another format, word size,
        byte order or machine.
    :raises NoPluginSymbolsError: no plugin symbol at all.
    :raises OSError: reading the image failed.
    """
    path = image.path
    head = image.read(0, 64)
    fmt = format_of(path, head)
    expected = _expected_format()
    if fmt != expected:
        raise ArchitectureMismatchError(path, "format", _FORMAT_NAMES[expected], _FORMAT_NAMES[fmt])
    if fmt != "elf":
        return Precheck(fmt, image)
    return Precheck(fmt, image, _check_elf(image, head))


def _check_elf(image: Image, head: bytes) -> ElfLayout:
    """The ELF checks; returns the headers read."""
    path = image.path
    host = host_elf_identity()
    if len(head) < 6 or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise NotASharedLibraryError(path, "unknown ELF class or byte order")
    elf_class, byte_order = head[4], head[5]
    if elf_class != host.elf_class:
        bits = {1: "32-bit (ELF32)", 2: "64-bit (ELF64)"}
        raise ArchitectureMismatchError(path, "class", bits[host.elf_class], bits[elf_class])
    if byte_order != host.byte_order:
        orders = {1: "little-endian", 2: "big-endian"}
        raise ArchitectureMismatchError(path, "byte order", orders[host.byte_order], orders[byte_order])
    layout = check_elf_complete(image.read, image.size, path)  # truncation: what would SIGBUS
    if layout is None:  # pragma: no cover - the magic was checked above
        raise NotASharedLibraryError(path, "not an ELF file")
    if layout.e_type != _ET_DYN:
        what = _ET_NAMES.get(layout.e_type, f"ELF type {layout.e_type}")
        raise NotASharedLibraryError(path, f"it is {what}, not a shared library")
    if host.machine is not None and layout.e_machine != host.machine:
        raise ArchitectureMismatchError(path, "machine", _machine_name(host.machine), _machine_name(layout.e_machine))
    # Fast path: in a small library the dynamic string table lies in the first
    # pages.  A hit elsewhere only lets the exact per-trait check decide later.
    if b"plugin_register_" not in image.head and b"plugin_register_" not in _dynamic_strings(image, layout):
        raise NoPluginSymbolsError(path)
    return layout


def _dynamic_strings(image: Image, layout: ElfLayout) -> bytes:
    """The dynamic string table, found through PT_DYNAMIC's DT_STRTAB and DT_STRSZ."""
    path = image.path
    dynamic = next(((off, sz) for p_type, off, _, sz in layout.program_headers if p_type == _PT_DYNAMIC), None)
    if dynamic is None:
        raise NotASharedLibraryError(path, "no dynamic section (PT_DYNAMIC): not a shared library")
    d_offset, d_size = dynamic
    if d_offset + d_size > image.size:
        raise NotASharedLibraryError(path, f"truncated: the dynamic section ends past {image.size} bytes")
    entry_fmt = layout.order + ("qQ" if layout.elf_class == 2 else "iI")
    entry_len = 16 if layout.elf_class == 2 else 8
    entries = image.read(d_offset, d_size - d_size % entry_len)
    # Entries past DT_NULL are padding (DT_NULL again); a dict keeps the C loop.
    tags = dict(struct.iter_unpack(entry_fmt, entries))
    strtab, strsz = tags.get(_DT_STRTAB), tags.get(_DT_STRSZ)
    if strtab is None or strsz is None:
        raise NotASharedLibraryError(path, "no dynamic string table (DT_STRTAB/DT_STRSZ)")
    for p_type, offset, vaddr, filesz in layout.program_headers:
        if p_type == _PT_LOAD and vaddr <= strtab < vaddr + filesz:
            start = strtab - vaddr + offset
            break
    else:
        raise NotASharedLibraryError(path, f"its dynamic string table (address {strtab:#x}) is in no load segment")
    if strsz > MAX_DYNSTR_BYTES or start + strsz > image.size:
        raise NotASharedLibraryError(path, f"its dynamic string table ({strsz} bytes at {start}) lies past the end")
    return image.read(start, strsz)
