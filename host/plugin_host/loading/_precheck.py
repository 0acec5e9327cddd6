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
  this host is x86_64" (:class:`~plugin_interface.ArchitectureMismatchError`);
- load segments or header tables past the end of the file (the truncation that
  would SIGBUS; :func:`plugin_host.formats.check_elf_complete`);
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

import os
import re
import stat
import struct
from collections.abc import Sequence

from plugin_interface import ArchitectureMismatchError, NoPluginSymbolsError, NotASharedLibraryError

from ..formats import (
    BYTE_ORDER_NAMES,
    CLASS_NAMES,
    ELF_MACHINES,
    ELF_TYPE_NAMES,
    READ_FLAGS,
    BinaryFormat,
    DynamicTag,
    ElfLayout,
    ElfType,
    SegmentType,
    check_elf_complete,
    format_of,
    host_elf_identity,
    machine_name,
    native_format,
    pread,
)
from . import _accel

__all__ = [
    "HEAD_BYTES",
    "MAX_DYNAMIC_BYTES",
    "MAX_DYNSTR_BYTES",
    "Image",
    "Precheck",
    "check_regular",
    "fast_precheck",
    "fast_precheck_runs",
    "open_checked",
    "open_image",
    "precheck",
    "precheck_image",
]

#: How much of a file the pre-check reads up front; the headers and, for small
#: libraries, the dynamic string table lie within it.  The C pre-check's
#: buffer has the same size (asserted at import, see :mod:`._accel`).
HEAD_BYTES = _accel.HEAD_BYTES
#: A dynamic string table larger than this is treated as corruption (also the C pre-check's limit).
MAX_DYNSTR_BYTES = _accel.MAX_DYNSTR_BYTES
#: A dynamic section larger than this is treated as corruption (also the C pre-check's limit): it is
#: read whole, and a crafted sparse file could otherwise make it gigabytes.
MAX_DYNAMIC_BYTES = _accel.MAX_DYNAMIC_BYTES

_PLUGIN_NAME = re.compile(rb"plugin_[A-Za-z0-9_]+")


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


def open_checked(
    path: str | os.PathLike[str], real_path: str | os.PathLike[str] | None = None
) -> tuple[int, os.stat_result]:
    """Open ``path`` for the pre-check: ``(fd, fstat)``; the caller closes ``fd``.

    Opened non-blocking (a FIFO must not hang the host) and checked to be a
    regular file through the descriptor, so what is checked is what was opened.

    :param real_path: the file to open, ``path`` with its symlinks resolved
        (errors still name ``path``).
    :raises NotASharedLibraryError: a missing or unreadable file, a symlink
        loop, a directory, a device or FIFO.
    """
    try:
        fd = os.open(path if real_path is None else real_path, READ_FLAGS)
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


def open_image(path: str | os.PathLike[str], real_path: str | os.PathLike[str] | None = None) -> tuple[int, Image]:
    """:func:`open_checked`, and the :class:`Image` of the open file: ``(fd, image)``."""
    fd, st = open_checked(path, real_path)
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

    :ivar format: the binary format.
    """

    __slots__ = ("format", "image", "layout")

    def __init__(self, fmt: BinaryFormat, image: Image, layout: ElfLayout | None = None) -> None:
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
    try:
        precheck_image(Image(path, st, fd=fd, data=data))
    except OSError as e:  # a file that opens but cannot be read (/proc/self/mem, an I/O error)
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e


def fast_precheck(
    paths: Sequence[str | os.PathLike[str]], uid: int, *, known: dict[str, bytes] | None = None
) -> list[bool]:
    """The C pre-check (:mod:`._accel`) of many files in one call, when it is built and this host is ELF.

    Per path, ``True`` when the file is a regular file (not a symlink) owned
    by ``uid`` (or root), writable by neither group nor others (the load
    policy's rule for the file, :func:`._policy.permission_problems`), and
    passes every pre-check.
    ``False`` tells nothing more: then :func:`open_checked`, the policy and
    :func:`precheck` decide, and say why.  All ``False`` without the C checks.

    :param known: path -> identity (:func:`._accel.identity_of`) of the files
        that passed before: one that still has it (same device, inode, size,
        mtime, ctime, mode and owner) passes on the rule for the file alone,
        without being read.  Updated for every file that passes.
    """
    host = _c_host()
    if not paths or host is None:
        return [False] * len(paths)
    return _accel.precheck_paths([os.fspath(p) for p in paths], HEAD_BYTES, *host, uid, known)


def fast_precheck_runs() -> bool:
    """Whether :func:`fast_precheck` can say ``True`` at all (the C checks are built, on, and this host is ELF)."""
    return _c_host() is not None


def _c_host() -> tuple[int, int, int] | None:
    """``(class, byte order, machine or -1)`` for the C pre-check, or ``None`` when it does not run here."""
    if not _accel.enabled() or native_format() is not BinaryFormat.ELF:
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
    expected = native_format()
    if fmt is not expected:
        raise ArchitectureMismatchError(path, "format", expected.display_name, fmt.display_name)
    if fmt is not BinaryFormat.ELF:
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
        raise ArchitectureMismatchError(path, "class", CLASS_NAMES[host.elf_class], CLASS_NAMES[elf_class])
    if byte_order != host.byte_order:
        expected, found = BYTE_ORDER_NAMES[host.byte_order], BYTE_ORDER_NAMES[byte_order]
        raise ArchitectureMismatchError(path, "byte order", expected, found)
    layout = check_elf_complete(image.read, image.size, path)  # truncation: what would SIGBUS
    if layout is None:  # pragma: no cover - the magic was checked above
        raise NotASharedLibraryError(path, "not an ELF file")
    if layout.e_type != ElfType.ET_DYN:
        what = ELF_TYPE_NAMES.get(layout.e_type, f"ELF type {layout.e_type}")
        raise NotASharedLibraryError(path, f"it is {what}, not a shared library")
    if host.machine is not None and layout.e_machine != host.machine:
        expected, found = machine_name(ELF_MACHINES, host.machine), machine_name(ELF_MACHINES, layout.e_machine)
        raise ArchitectureMismatchError(path, "machine", expected, found)
    # Fast path: in a small library the dynamic string table lies in the first
    # pages.  A hit elsewhere only lets the exact per-trait check decide later.
    if b"plugin_register_" not in image.head and b"plugin_register_" not in _dynamic_strings(image, layout):
        raise NoPluginSymbolsError(path)
    return layout


def _dynamic_strings(image: Image, layout: ElfLayout) -> bytes:
    """The dynamic string table, found through PT_DYNAMIC's DT_STRTAB and DT_STRSZ."""
    path = image.path
    dynamic = next(
        ((off, sz) for p_type, off, _, sz in layout.program_headers if p_type == SegmentType.PT_DYNAMIC), None
    )
    if dynamic is None:
        raise NotASharedLibraryError(path, "no dynamic section (PT_DYNAMIC): not a shared library")
    d_offset, d_size = dynamic
    if d_offset + d_size > image.size:
        raise NotASharedLibraryError(path, f"truncated: the dynamic section ends past {image.size} bytes")
    if d_size > MAX_DYNAMIC_BYTES:
        msg = f"its dynamic section ({d_size} bytes) is larger than {MAX_DYNAMIC_BYTES} bytes: corrupt"
        raise NotASharedLibraryError(path, msg)
    entry_fmt = layout.order + ("qQ" if layout.elf_class == 2 else "iI")
    entry_len = 16 if layout.elf_class == 2 else 8
    entries = image.read(d_offset, d_size - d_size % entry_len)
    # Entries past DT_NULL are padding (DT_NULL again); a dict keeps the C loop.
    tags = dict(struct.iter_unpack(entry_fmt, entries))
    strtab, strsz = tags.get(DynamicTag.DT_STRTAB), tags.get(DynamicTag.DT_STRSZ)
    if strtab is None or strsz is None:
        raise NotASharedLibraryError(path, "no dynamic string table (DT_STRTAB/DT_STRSZ)")
    for p_type, offset, vaddr, filesz in layout.program_headers:
        if p_type == SegmentType.PT_LOAD and vaddr <= strtab < vaddr + filesz:
            start = strtab - vaddr + offset
            break
    else:
        raise NotASharedLibraryError(path, f"its dynamic string table (address {strtab:#x}) is in no load segment")
    if strsz > MAX_DYNSTR_BYTES or start + strsz > image.size:
        raise NotASharedLibraryError(path, f"its dynamic string table ({strsz} bytes at {start}) lies past the end")
    return image.read(start, strsz)
