"""Private copies: the bytes a host loads when it must not load the file in place.

A copy lives in a directory only this process writes to (mode 0700), under a
unique name, created with ``O_EXCL | O_NOFOLLOW``: nothing else can have put
or swapped it there, and the loader never hands back an old mapping of a
path it saw before.

- **Reading** (:func:`read_for_copy`): the file's head (magic, ELF header,
  program headers) is checked through the open descriptor, and its size
  compared with a limit (:data:`~plugin_host.formats.MAX_LIBRARY_BYTES` unless
  told otherwise), before the whole file is read; so a huge or sparse file
  that is no library costs a few reads, never its size in memory.
- **Naming** (:func:`copy_name`): a counter, the original name (shortened to
  fit ``NAME_MAX`` when it must), its suffix.
- **Removing** (:func:`remove_private_copy`): never raises; a copy that cannot
  be removed now goes with its directory at exit.
- **Stale directories** (:func:`remove_stale_copy_dirs`): each directory is
  named ``plugin-host-<pid>-<random>``, and its process keeps it locked
  (``flock`` on the directory itself) while it lives.  When a process first
  makes its directory, it removes the ones whose owner was killed before it
  could remove them itself: same user, our naming, a real directory (never a
  symlink), its lock free and its pid gone.

**Platform-specific behaviour**: stale directories are recognised where
``fcntl`` exists (POSIX); elsewhere they are left alone.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from plugin_interface import ArchitectureMismatchError, NotASharedLibraryError

from ..formats import (
    MAX_LIBRARY_BYTES,
    BinaryFormat,
    check_complete,
    check_elf_complete,
    format_of,
    native_format,
    pread,
    read_capped,
)
from ._precheck import open_checked

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "COPY_DIR_PREFIX",
    "copy_name",
    "make_private_copy",
    "read_for_copy",
    "remove_private_copy",
    "remove_stale_copy_dirs",
    "write_private_copy",
]

#: How every private-copy directory's name starts; the owner's pid follows.
COPY_DIR_PREFIX = "plugin-host-"
#: Bytes kept of a suffix (``.so``, ``.dll``) when a copy's name must be shortened.
_MAX_SUFFIX_BYTES = 16
_DIR_NAME = re.compile(re.escape(COPY_DIR_PREFIX) + r"([0-9]+)-[A-Za-z0-9_]+")
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

_copy_ids = itertools.count()
_private_dir_lock = threading.Lock()
_private_dir: Path | None = None
_private_name_max = 255  # NAME_MAX of _private_dir's file system
_lock_fd: int | None = None  # _private_dir, opened and flock-ed while this process lives
_stale_checked = False


# ---- reading ------------------------------------------------------------------


def read_for_copy(
    path: str | os.PathLike[str],
    max_library_bytes: int = MAX_LIBRARY_BYTES,
    real_path: str | os.PathLike[str] | None = None,
) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` to check and load from a private copy, read once.

    Opened non-blocking; before the whole file is read, the head is checked
    through the descriptor (a library format at all, this host's format, and
    for ELF the header and program headers against the file's size) and the
    size against ``max_library_bytes``.  Every read is capped: a sparse 8 GiB
    file costs a few hundred bytes of reading, not 8 GiB of memory.  The full
    pre-check is the caller's, on the bytes returned (they may differ from
    the head checked here if the file is being rewritten).

    :param max_library_bytes: the largest file read, in bytes.
    :param real_path: the file to read, ``path`` with its symlinks resolved
        (the one the load policy judges; errors still name ``path``).
    :returns: the contents, and the ``fstat`` of the file they were read from.
    :raises NotASharedLibraryError: naming the file: unreadable, a directory
        or special file, no shared library, truncated headers, larger than
        ``max_library_bytes`` (both sizes in the message), or too large to
        hold in memory.
    :raises ArchitectureMismatchError: a library format this host does not load.
    """
    fd, st = open_checked(path, real_path)
    try:
        _check_head(path, fd, st.st_size)
        if st.st_size > max_library_bytes:
            msg = (
                f"it is {st.st_size} bytes, over the limit of {max_library_bytes} bytes for a private copy"
                " (set by PluginManager(max_library_bytes=...))"
            )
            raise NotASharedLibraryError(path, msg)
        return read_capped(fd, st.st_size), st
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot copy it for loading: {e.strerror or e}") from e
    except MemoryError as e:  # one file too large for this process: the others still load
        raise NotASharedLibraryError(path, f"cannot copy it for loading: no memory for {st.st_size} bytes") from e
    finally:
        os.close(fd)


def _check_head(path: str | os.PathLike[str], fd: int, size: int) -> None:
    """The checks that need only the head: what decides whether the rest is worth reading."""
    fmt = format_of(path, pread(fd, 64, 0))
    expected = native_format()
    if fmt is not expected:
        raise ArchitectureMismatchError(path, "format", expected.display_name, fmt.display_name)
    if fmt is BinaryFormat.ELF:  # reads the ELF header, and 56 bytes per program header at most
        check_elf_complete(lambda offset, n: pread(fd, n, offset), size, path)


def make_private_copy(
    path: Path,
    inspect: Callable[[Path, bytes, os.stat_result], None] | None = None,
    max_library_bytes: int = MAX_LIBRARY_BYTES,
    real_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Read ``path`` once (:func:`read_for_copy`) and write its bytes to a private copy; the copy's path.

    :param inspect: called as ``inspect(copy, data, stat)`` after the copy is
        written: ``data`` are the very bytes of the copy, ``stat`` the ``fstat``
        of the file they were read from.  It refuses by raising (the copy is
        removed).  Without it the copy is checked for truncation only.
    :param max_library_bytes: the largest file copied, in bytes.
    :param real_path: the file to read, ``path`` with its symlinks resolved
        (the one the load policy judges; errors still name ``path``).
    :raises NotASharedLibraryError: the file cannot be read or copied, is no
        shared library, is truncated or too large.
    """
    # Read once, check and load those bytes: a file or symlink swapped
    # after this read cannot reach the loader.
    data, st = read_for_copy(path, max_library_bytes, real_path)
    target = write_private_copy(path.name, data, path)
    try:
        if inspect is not None:
            inspect(target, data, st)
        else:
            # A copy taken mid-write would make dlopen fault (SIGBUS) on the missing pages.
            check_complete(target, path)
    except BaseException:
        remove_private_copy(target)
        raise
    return target


# ---- writing, naming, removing ---------------------------------------------------


def copy_name(counter: int, name: str, name_max: int = 255) -> str:
    """The name of copy number ``counter`` of a file named ``name``: ``f"{counter}-{name}"``,
    with the part before the suffix shortened until it fits ``name_max`` bytes (as the
    file system encodes it).  The suffix stays when it is short: Windows' loader
    appends ``.dll`` to a name without one."""
    prefix = f"{counter}-"
    full = prefix + name
    if len(os.fsencode(full)) <= name_max:
        return full
    stem, suffix = os.path.splitext(name)
    if len(os.fsencode(suffix)) > _MAX_SUFFIX_BYTES:
        stem, suffix = name, ""
    budget = max(name_max - len(os.fsencode(prefix + suffix)), 0)
    # Characters, not bytes, are cut, so a UTF-8 sequence is never split; each is at least a byte.
    stem = stem[:budget]
    while len(os.fsencode(stem)) > budget:
        stem = stem[:-1]
    return prefix + stem + suffix


def write_private_copy(name: str, data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to a new file with a unique name in the private directory.

    Created with ``O_EXCL | O_NOFOLLOW`` in a directory only this process
    writes to (mode 0700), so nothing else can have put or swapped it there.

    :param name: the original file's name (the copy's is :func:`copy_name` of it).
    :param path: the name to report in errors (the original file).
    :raises NotASharedLibraryError: the copy could not be written.
    """
    try:
        directory = _private_copy_dir()
    except OSError as e:  # no temporary directory to be had (full, read-only, no permission)
        raise NotASharedLibraryError(path, f"cannot make a private copy directory: {e.strerror or e}") from e
    # A unique name: the loader must not hand back an old mapping of the
    # same path, and the original may be rebuilt while this copy is loaded.
    target = directory / copy_name(next(_copy_ids), name, _private_name_max)
    try:
        fd = os.open(target, _CREATE_FLAGS, 0o700)
        with open(fd, "wb") as dst:
            dst.write(data)
    except OSError as e:
        remove_private_copy(target)
        raise NotASharedLibraryError(path, f"cannot copy it for loading: {e.strerror or e}") from e
    return target


def remove_private_copy(copy: Path) -> None:
    """Remove a private copy; never raises (what cannot be removed now goes with the directory at exit)."""
    with contextlib.suppress(OSError):
        copy.unlink(missing_ok=True)


def _name_max(directory: Path) -> int:
    """The longest file name, in bytes, the file system of ``directory`` takes."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return max(os.pathconf(directory, "PC_NAME_MAX"), 16)
    return 255


# ---- the private directory and its lifetime --------------------------------------


def _private_copy_dir() -> Path:
    """A directory only this process writes to, removed at interpreter exit.

    Its file system's ``NAME_MAX`` is then in ``_private_name_max``.  Its first
    creation in a process removes the directories crashed hosts left
    (:func:`remove_stale_copy_dirs`).
    """
    global _private_dir, _private_name_max, _lock_fd, _stale_checked
    with _private_dir_lock:
        if _private_dir is not None and _private_dir.is_dir():
            return _private_dir
        if not _stale_checked:
            _stale_checked = True
            remove_stale_copy_dirs()
        if _lock_fd is not None:  # our directory was removed under us: a new one, a new lock
            with contextlib.suppress(OSError):
                os.close(_lock_fd)
            _lock_fd = None
        pid = os.getpid()
        directory = Path(tempfile.mkdtemp(prefix=f"{COPY_DIR_PREFIX}{pid}-"))
        try:
            _lock_fd = _lock_directory(directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # never leave an unlocked directory behind
            raise
        atexit.register(_remove_own_dir, directory, pid)
        _private_dir, _private_name_max = directory, _name_max(directory)
        return directory


def _lock_directory(directory: Path) -> int | None:
    """Open and lock ``directory`` for as long as this process lives; the descriptor (``None`` without ``fcntl``).

    The lock goes with the process however it ends: that is what tells another
    host the directory is stale.  Until it is taken, the pid in the name (alive)
    keeps other hosts away.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    fd = os.open(directory, _DIR_FLAGS)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_own_dir(directory: Path, pid: int) -> None:
    # A forked child inherits this handler: only the process that made the directory removes it.
    if os.getpid() == pid:
        shutil.rmtree(directory, ignore_errors=True)


def _forget_private_dir() -> None:
    """In a forked child: make a directory of its own on first use, never write into the parent's."""
    global _private_dir, _lock_fd
    if _lock_fd is not None:
        # The parent's descriptor keeps the lock held; the child's duplicate is not needed.
        with contextlib.suppress(OSError):
            os.close(_lock_fd)
    _private_dir, _lock_fd = None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_private_dir)


def remove_stale_copy_dirs(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the private-copy directories of processes that are gone.

    A directory in ``parent`` (default: :func:`tempfile.gettempdir`) is
    removed only when all of this holds: its name is ours
    (``plugin-host-<pid>-<random>``; older hosts' ``plugin-host-<random>`` is
    not), it is a directory and not a symlink, this user owns it, nobody holds
    its lock (its process holds it until it dies, however it dies), and no
    process ``<pid>`` exists.  Never raises.

    :returns: the directories removed.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return []
    where = os.fspath(parent) if parent is not None else tempfile.gettempdir()
    removed: list[Path] = []
    try:
        parent_fd = os.open(where, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return removed
    try:
        names = os.listdir(parent_fd)
    except OSError:
        names = []
    try:
        for name in names:
            match = _DIR_NAME.fullmatch(name)
            if match is None or int(match[1]) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if _remove_if_stale(parent_fd, name, int(match[1])):
                    removed.append(Path(where, name))
    finally:
        os.close(parent_fd)
    return removed


def _remove_if_stale(parent_fd: int, name: str, pid: int) -> bool:
    """Remove ``name`` (in the directory ``parent_fd``) if its owner is provably dead; whether it was."""
    assert fcntl is not None
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or _process_exists(pid):
        return False
    dir_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)  # O_NOFOLLOW: a symlink fails here
    try:
        opened = os.fstat(dir_fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            return False  # replaced since the stat
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive (or a fork of it)
        # Held by us from here on: another host cleaning at the same time skips it.
        shutil.rmtree(name, dir_fd=parent_fd)  # fd-based: refuses symlinks, never follows one
        return True
    finally:
        os.close(dir_fd)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process (EPERM), or cannot tell: not provably dead
    return True
