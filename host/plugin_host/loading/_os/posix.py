"""dlopen/dlsym/dlclose through ``_ctypes`` (Linux, macOS and other POSIX).

**Platform-specific behaviour**: the library is opened ``RTLD_NOW |
RTLD_LOCAL``: every undefined symbol is resolved at load time (a missing one is
a load error, not a crash at first call), and the plugin's symbols never
interpose on other libraries.  glibc unmaps a library at ``dlclose`` once its
reference count is zero, unless it was built with ``-z nodelete``, has
``STB_GNU_UNIQUE`` symbols or pending ``thread_local`` destructors.

The loader's messages are bytes: the path (a file name need not be UTF-8)
and names read from the library (a damaged ``DT_NEEDED`` string).  CPython's
``_ctypes`` decodes them as strict UTF-8 and raises :class:`UnicodeDecodeError`
instead of :class:`OSError`; here they are decoded with ``backslashreplace``
(``caf\\xe9``), so a caller always gets an :class:`OSError` with a printable
message.
"""

from __future__ import annotations

import _ctypes
import os

#: How every library is opened (also by the C extension's open-and-register, load.c).
OPEN_MODE = os.RTLD_NOW | os.RTLD_LOCAL
_MODE = OPEN_MODE


def _loader_message(e: UnicodeDecodeError) -> str:
    """The loader's message that ``_ctypes`` failed to decode, from its raw bytes."""
    return bytes(e.object).decode("utf-8", "backslashreplace")


def open_library(path: str) -> int:
    """dlopen ``path`` (undecodable bytes as surrogates, as :func:`os.fsdecode` gives).

    :raises OSError: with the loader's message.
    """
    try:
        handle: int = _ctypes.dlopen(path, _MODE)
    except UnicodeDecodeError as e:
        msg = _loader_message(e)
        raise OSError(msg) from e
    return handle


def find_symbol(handle: int, name: str) -> int | None:
    """The address of ``name`` in the library, or ``None`` if it is not exported."""
    try:
        address: int = _ctypes.dlsym(handle, name)
    except (OSError, UnicodeDecodeError):  # "<path>: undefined symbol: <name>", the path maybe not UTF-8
        return None
    return address or None


def close_library(handle: int) -> None:
    """dlclose; after this every address taken from ``handle`` is dangling."""
    _ctypes.dlclose(handle)


_RTLD_NOLOAD: int = getattr(os, "RTLD_NOLOAD", 0)


def is_library_loaded(path: str) -> bool:
    """Whether the loader still has ``path`` mapped: ``dlopen(path, RTLD_NOLOAD)``.

    The loader matches the name it opened first (so a private copy removed
    since still counts) and then the file's identity; nothing is loaded.  A
    handle it returns is closed again at once (``RTLD_NOLOAD`` still counts a
    reference).
    """
    if not _RTLD_NOLOAD:  # pragma: no cover - every supported POSIX has it
        return False
    try:
        handle: int = _ctypes.dlopen(path, os.RTLD_LAZY | os.RTLD_LOCAL | _RTLD_NOLOAD)
    except (OSError, UnicodeDecodeError):
        return False
    if not handle:
        return False
    _ctypes.dlclose(handle)
    return True
