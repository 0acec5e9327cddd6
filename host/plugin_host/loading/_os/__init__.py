"""Platform layer: open, look up and close a shared library by raw handle.

The portable code never touches ``ctypes.CDLL``: a ``CDLL`` caches function
objects that would outlive an unload, and ctypes has no public ``dlclose``.
These functions work on the raw handle that ``_ctypes`` exposes, so the host
decides exactly when a library is closed.
"""

from __future__ import annotations

import sys

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    from .windows import OPEN_MODE, close_library, find_symbol, is_library_loaded, open_library
else:
    from .posix import OPEN_MODE, close_library, find_symbol, is_library_loaded, open_library

__all__ = ["OPEN_MODE", "close_library", "find_symbol", "is_library_loaded", "open_library"]
