"""Private copies: the bytes a host loads when it must not load the file in place.

A copy lives in a directory only this process writes to (mode 0700), under a
unique name, created with ``O_EXCL | O_NOFOLLOW``: nothing else can have put
or swapped it there, and the loader never hands back an old mapping of a
path it saw before.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from plugin_interface import NotASharedLibraryError

from ..formats import READ_FLAGS, check_complete
from ._precheck import check_regular

__all__ = ["make_private_copy", "write_private_copy"]

_copy_ids = itertools.count()
_private_dir_lock = threading.Lock()
_private_dir: Path | None = None
_copy_ids = itertools.count()


def _private_copy_dir() -> Path:
    """A directory only this process writes to, removed at interpreter exit."""
    global _private_dir
    with _private_dir_lock:
        if _private_dir is None or not _private_dir.is_dir():
            import atexit

            _private_dir = Path(tempfile.mkdtemp(prefix="plugin-host-"))
            atexit.register(shutil.rmtree, _private_dir, True)
        return _private_dir


def write_private_copy(name: str, data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to a new file with a unique name in the private directory.

    Created with ``O_EXCL | O_NOFOLLOW`` in a directory only this process
    writes to (mode 0700), so nothing else can have put or swapped it there.

    :param path: the name to report in errors (the original file).
    :raises NotASharedLibraryError: the copy could not be written.
    """
    # A unique name: the loader must not hand back an old mapping of the
    # same path, and the original may be rebuilt while this copy is loaded.
    target = _private_copy_dir() / f"{next(_copy_ids)}-{name}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, 0o700)
        with open(fd, "wb") as dst:
            dst.write(data)
    except OSError as e:
        target.unlink(missing_ok=True)
        raise NotASharedLibraryError(path, f"cannot copy it for loading: {e.strerror or e}") from e
    return target


def make_private_copy(path: Path, inspect: Callable[[Path, bytes, os.stat_result], None] | None = None) -> Path:
    """Read ``path`` once and write its bytes to a private copy; the copy's path.

    :param inspect: called as ``inspect(copy, data, stat)`` after the copy is
        written: ``data`` are the very bytes of the copy, ``stat`` the ``fstat``
        of the file they were read from.  It refuses by raising (the copy is
        removed).  Without it the copy is checked for truncation only.
    :raises NotASharedLibraryError: the file cannot be read or copied, or is truncated.
    """
    # Read once, check and load those bytes: a file or symlink swapped
    # after this read cannot reach the loader.
    try:
        fd = os.open(path, READ_FLAGS)
        with open(fd, "rb") as src:
            st = os.fstat(src.fileno())
            check_regular(path, st)
            data = src.read()
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot copy it for loading: {e.strerror or e}") from e
    target = write_private_copy(path.name, data, path)
    try:
        if inspect is not None:
            inspect(target, data, st)
        else:
            # A copy taken mid-write would make dlopen fault (SIGBUS) on the missing pages.
            check_complete(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
