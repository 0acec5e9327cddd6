"""Bounded, non-blocking reads of files that may be hostile.

Every read of a plugin file goes through these: a FIFO must not block the
host, a descriptor must not leak into a child, and no read is sized by the
file alone.
"""

from __future__ import annotations

import os
import stat

__all__ = ["MAX_LIBRARY_BYTES", "READ_FLAGS", "pread", "read_capped", "read_small_file"]

#: Open flags for reading a file to check: never block on a FIFO, never inherit.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
#: The largest plugin file read whole, in bytes: for a private copy (copy-on-load, reload, probed,
#: hash-allowlisted or untrusted files); a larger one is refused before its contents are read.  1 GiB
#: is above real plugins (a debug build of a big C++ library reaches a few hundred MiB) and below what a
#: host should hold for one file.  ``PluginManager(max_library_bytes=...)`` sets it per manager.
MAX_LIBRARY_BYTES = 1 << 30


def _seek_and_read(fd: int, length: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, length)


#: ``os.pread(fd, length, offset)``, or seek and read where it is missing (Windows); ``os.pread`` itself where
#: it exists (the readers call it thousands of times per ``abi check``: no wrapper frame).
pread = getattr(os, "pread", _seek_and_read)


def read_capped(fd: int, size: int) -> bytes:
    """The first ``size`` bytes of ``fd`` (fewer if the file is shorter), in bounded chunks."""
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = pread(fd, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def read_small_file(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The whole of a small regular file a user names (a contract, a waiver file), read as warily as a library.

    Opened with :data:`READ_FLAGS` (a FIFO does not block), checked to be a
    regular file through the descriptor, and read only up to ``limit`` bytes.

    :param what: what the file should be, for the message (``"a contract"``).
    :raises ValueError: naming the file: it cannot be read, is not a regular
        file, or is larger than ``limit`` bytes.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, READ_FLAGS)
    except OSError as e:
        raise ValueError(f"{name}: cannot read it: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name}: not a regular file")
        if st.st_size > limit:
            raise ValueError(f"{name}: {st.st_size} bytes is too large for {what} (at most {limit})")
        raw = read_capped(fd, limit + 1)
    except OSError as e:
        raise ValueError(f"{name}: cannot read it: {e.strerror or e}") from e
    finally:
        os.close(fd)
    if len(raw) > limit:  # it grew since the fstat
        raise ValueError(f"{name}: too large for {what} (more than {limit} bytes)")
    return raw
