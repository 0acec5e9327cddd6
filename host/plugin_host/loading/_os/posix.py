"""dlopen/dlsym/dlclose through ``_ctypes`` (Linux, macOS and other POSIX).

**Platform-specific behaviour**: the library is opened ``RTLD_NOW |
RTLD_LOCAL``: every undefined symbol is resolved at load time (a missing one is
a load error, not a crash at first call), and the plugin's symbols never
interpose on other libraries.  glibc unmaps a library at ``dlclose`` once its
reference count is zero, unless it was built with ``-z nodelete``, has
``STB_GNU_UNIQUE`` symbols or pending ``thread_local`` destructors.
"""

from __future__ import annotations

import _ctypes
import os

_MODE = os.RTLD_NOW | os.RTLD_LOCAL


def open_library(path: str) -> int:
    """dlopen ``path``; :raises OSError: with the loader's message."""
    handle: int = _ctypes.dlopen(path, _MODE)
    return handle


def find_symbol(handle: int, name: str) -> int | None:
    """The address of ``name`` in the library, or ``None`` if it is not exported."""
    try:
        address: int = _ctypes.dlsym(handle, name)
    except OSError:
        return None
    return address or None


def close_library(handle: int) -> None:
    """dlclose; after this every address taken from ``handle`` is dangling."""
    _ctypes.dlclose(handle)
