"""LoadLibrary/GetProcAddress/FreeLibrary (Windows).

**Platform-specific behaviour**: ``LoadLibraryExW`` with
``LOAD_WITH_ALTERED_SEARCH_PATH`` so a plugin's own dependencies are found next
to it; the current directory is never searched for the plugin itself because
the host always passes an absolute path.
"""

from __future__ import annotations

import ctypes
from ctypes import wintypes

_LOAD_WITH_ALTERED_SEARCH_PATH = 0x00000008
#: No dlopen mode here: the C extension's open-and-register (load.c) does not open on Windows.
OPEN_MODE = 0

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
_kernel32.LoadLibraryExW.argtypes = [wintypes.LPCWSTR, wintypes.HANDLE, wintypes.DWORD]
_kernel32.LoadLibraryExW.restype = wintypes.HMODULE
_kernel32.GetProcAddress.argtypes = [wintypes.HMODULE, wintypes.LPCSTR]
_kernel32.GetProcAddress.restype = ctypes.c_void_p
_kernel32.FreeLibrary.argtypes = [wintypes.HMODULE]
_kernel32.FreeLibrary.restype = wintypes.BOOL
_kernel32.GetModuleHandleW.argtypes = [wintypes.LPCWSTR]
_kernel32.GetModuleHandleW.restype = wintypes.HMODULE


def open_library(path: str) -> int:
    """LoadLibraryExW ``path``; :raises OSError: with the system's message."""
    handle = _kernel32.LoadLibraryExW(path, None, _LOAD_WITH_ALTERED_SEARCH_PATH)
    if not handle:
        raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
    return int(handle)


def find_symbol(handle: int, name: str) -> int | None:
    """GetProcAddress, or ``None`` if ``name`` is not exported."""
    address = _kernel32.GetProcAddress(handle, name.encode())
    return int(address) if address else None


def close_library(handle: int) -> None:
    """FreeLibrary; after this every address taken from ``handle`` is dangling."""
    _kernel32.FreeLibrary(handle)


def is_library_loaded(path: str) -> bool:
    """Whether ``path`` is still loaded in this process (``GetModuleHandleW``; adds no reference)."""
    return bool(_kernel32.GetModuleHandleW(path))
