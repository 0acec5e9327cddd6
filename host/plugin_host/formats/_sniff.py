"""Which binary format a file is, from its first bytes; which one this host loads.

The one place that knows the formats' magic numbers.  Every other module asks
:func:`format_of` (bytes at hand) or :func:`sniff_format` (a path), and
:func:`native_format` for what the running interpreter can ``dlopen``.
"""

from __future__ import annotations

import enum
import functools
import os
import stat
import sys

from plugin_interface import NotASharedLibraryError

from ._io import READ_FLAGS

__all__ = ["ELF_MAGIC", "MACHO_MAGICS", "BinaryFormat", "format_of", "native_format", "sniff_format"]

ELF_MAGIC = b"\x7fELF"
PE_MAGIC = b"MZ"
#: Thin Mach-O magics (both byte orders, 32 and 64 bit), then universal ("fat") ones.
MACHO_MAGICS = frozenset(
    {
        b"\xfe\xed\xfa\xce",
        b"\xce\xfa\xed\xfe",
        b"\xfe\xed\xfa\xcf",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
        b"\xbe\xba\xfe\xca",
    }
)


class BinaryFormat(enum.StrEnum):
    """A shared-library format; the value is the stable spelling used in JSON dumps."""

    ELF = "elf"
    PE = "pe"
    MACHO = "macho"

    @property
    def display_name(self) -> str:
        """How messages name the format (``"PE (Windows)"``)."""
        return _DISPLAY[self]


_DISPLAY = {BinaryFormat.ELF: "ELF", BinaryFormat.PE: "PE (Windows)", BinaryFormat.MACHO: "Mach-O (macOS)"}


def format_of(path: str | os.PathLike[str], head: bytes) -> BinaryFormat:
    """The format of a file whose first bytes (at least 4 when there are) are ``head``.

    :param path: the name to report.
    :raises NotASharedLibraryError: naming ``path``, for an empty or unrecognised file.
    """
    if not head:
        raise NotASharedLibraryError(path, "the file is empty")
    if head[:4] == ELF_MAGIC:
        return BinaryFormat.ELF
    if head[:2] == PE_MAGIC:
        return BinaryFormat.PE
    if head[:4] in MACHO_MAGICS:
        return BinaryFormat.MACHO
    raise NotASharedLibraryError(path, f"unrecognised file format (starts with {head[:16]!r})")


def sniff_format(path: str | os.PathLike[str]) -> BinaryFormat:
    """The format of the file at ``path``, read through a non-blocking descriptor.

    :raises NotASharedLibraryError: for a directory, a special file, an empty,
        unreadable or unrecognised file.
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as e:
        what = "it is a directory" if os.path.isdir(path) else f"cannot read it: {e.strerror or e}"
        raise NotASharedLibraryError(path, what) from e
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise NotASharedLibraryError(path, "it is a directory")
        if not stat.S_ISREG(mode):
            raise NotASharedLibraryError(path, "it is not a regular file (a device, FIFO or socket)")
        head = os.read(fd, 4)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    finally:
        os.close(fd)
    return format_of(path, head)


@functools.cache
def native_format() -> BinaryFormat:
    """The format the running interpreter loads."""
    if sys.platform.startswith(("win", "cygwin", "msys")):
        return BinaryFormat.PE
    return BinaryFormat.MACHO if sys.platform == "darwin" else BinaryFormat.ELF
