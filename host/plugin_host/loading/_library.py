"""A loaded shared library with an explicit, guarded lifetime."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from pathlib import Path

from plugin_interface import (
    LibraryLoadError,
    PluginUnloadedError,
    SymbolNotFoundError,
    unmaker_counter_symbol,
)

from ..formats import exported_symbols, sniff_format
from . import _os
from ._copies import make_private_copy, remove_private_copy

__all__ = ["CallGate", "Library"]

_COUNTER_FN = ctypes.CFUNCTYPE(ctypes.c_size_t)


class CallGate:
    """Counts calls in flight so a release waits for them.

    Enter appends to a list, leave pops; both are atomic under the GIL and
    cost tens of nanoseconds.  :meth:`close` first marks the gate closed, then
    waits for the list to drain: a caller that entered before the mark is
    waited for, one that enters after it sees ``open`` false and backs out.

    **Thread-safety**: any thread may call through the gate; :meth:`close` may
    be called from any thread except one that is itself inside a call.
    """

    __slots__ = ("inflight", "open")

    def __init__(self) -> None:
        self.inflight: list[None] = []
        self.open = True

    def close(self, poll_s: float = 0.0002) -> None:
        """Refuse new calls, then wait until the calls in flight returned."""
        self.open = False
        while self.inflight:
            time.sleep(poll_s)


class Library:
    """One opened shared library.

    :ivar path: the file the user asked for.
    :ivar load_path: the file actually opened (a private copy with copy-on-load).

    **Safety**: addresses from :meth:`symbol` are valid until :meth:`close`.
    Nothing here keeps a ``ctypes`` function object bound to the handle, so
    closing really unmaps the library once no other user holds it.

    **Thread-safety**: :meth:`symbol` may run on any thread while the library
    is open; :meth:`close` must not race with itself (the manager serialises).
    """

    def __init__(self, path: str | os.PathLike[str], *, load_path: str | os.PathLike[str] | None = None) -> None:
        """Open ``load_path`` (default ``path``) with the dynamic loader.

        Nothing is checked here: :class:`~plugin_host.admission.Admission`
        decides what may be opened (policy, pre-check, hash, probe) and hands
        over the file to open, which is ``path`` itself or a private copy of
        the bytes it checked.  A private copy belongs to the library from then
        on: it is removed at :meth:`close`, or at once if the loader refuses it.

        :param path: the file the user asked for (what errors and ``path`` name).
        :param load_path: the file to open, when it differs (a private copy).
        :raises NotASharedLibraryError: the loader refused a file that is no
            shared library at all (a directory, empty, text...).
        :raises LibraryLoadError: the loader refused it (with its message).
        """
        self.path = path if isinstance(path, Path) and path.is_absolute() else Path(path).absolute()
        self.load_path = self.path if load_path is None else Path(load_path)
        try:
            self._handle: int | None = _os.open_library(str(self.load_path))
        except OSError as e:
            self._remove_private_copy()
            # Only now read the file: a directory, empty or text file gets a
            # typed "not a shared library" rather than the loader's wording.
            sniff_format(self.path)
            raise LibraryLoadError(self.path, str(e)) from e
        self._symbols: list[str] | None = None
        self.live_sets = 0  # registration sets alive on this library (a count; see PluginManager.handles)
        self._close_requested = False

    @classmethod
    def from_private_copy(
        cls, path: str | os.PathLike[str], inspect: Callable[[Path, bytes, os.stat_result], None] | None = None
    ) -> Library:
        """Copy ``path`` privately (:func:`~plugin_host.loading.make_private_copy`) and open the copy."""
        target = Path(path).absolute()
        return cls(target, load_path=make_private_copy(target, inspect))

    def _remove_private_copy(self) -> None:
        if self.load_path != self.path:
            remove_private_copy(self.load_path)

    @property
    def is_open(self) -> bool:
        """Whether the library is still loaded."""
        return self._handle is not None

    def _require_handle(self, symbol: str | None = None) -> int:
        if self._handle is None:
            raise PluginUnloadedError(self.path, symbol)
        return self._handle

    def find_symbol(self, name: str) -> int | None:
        """The address of exported ``name``, or ``None``."""
        return _os.find_symbol(self._require_handle(name), name)

    def symbol(self, name: str, hint: str = "") -> int:
        """The address of exported ``name``.

        :raises SymbolNotFoundError: naming the file and the symbol.
        :raises PluginUnloadedError: after :meth:`close`.
        """
        address = self.find_symbol(name)
        if address is None:
            raise SymbolNotFoundError(self.path, name, hint)
        return address

    def exported_symbols(self) -> list[str]:
        """Every exported name, read from the file (not from the loaded image)."""
        if self._symbols is None:
            self._symbols = exported_symbols(self.load_path)
        return self._symbols

    def get_unmaker_counter(self, trait: str) -> int:
        """``plugin_unmaker_counter_<trait>_v1()``.

        :raises SymbolNotFoundError: if the library does not export it.
        """
        address = self.symbol(unmaker_counter_symbol(trait))
        return int(_COUNTER_FN(address)())

    def get_unmaker_counter_or_none(self, trait: str) -> int | None:
        """:meth:`get_unmaker_counter`, or ``None`` when the library does not export it."""
        address = self.find_symbol(unmaker_counter_symbol(trait))
        return None if address is None else int(_COUNTER_FN(address)())

    def request_close(self) -> bool:
        """Close now if no registration set is alive, else when the last one is released.

        The manager uses this, so a set made directly with ``register_trait``
        on a manager's library never outlives the code it points into.

        :returns: whether the library was closed now.
        """
        if self.live_sets == 0:
            self.close()
            return True
        self._close_requested = True
        return False

    def release_handle(self) -> None:
        """Count one registration set as released (called by the set itself)."""
        self.live_sets -= 1
        if self.live_sets == 0 and self._close_requested:
            self.close()

    def close(self) -> None:
        """dlclose the library and remove its private copy; idempotent."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            _os.close_library(handle)
            self._remove_private_copy()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Library {str(self.path)!r} {state}>"
