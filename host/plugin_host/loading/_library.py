"""A loaded shared library with an explicit, guarded lifetime."""

from __future__ import annotations

import ctypes
import os
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from plugin_interface import (
    LibraryLoadError,
    PluginUnloadedError,
    ReleaseInsideCallError,
    SymbolNotFoundError,
    unmaker_counter_symbol,
)

from ..formats import exported_symbols, sniff_format
from . import _accel, _os
from ._copies import make_private_copy, remove_private_copy
from ._unload import StillMapped, check_unloaded

__all__ = ["CallGate", "Library"]

_COUNTER_FN = ctypes.CFUNCTYPE(ctypes.c_size_t)


class CallGate:
    """Lets calls into a library through until it is released, and makes the release wait for them.

    Every guarded call pushes onto the gate's list of calls, checks that the
    gate is open, calls, and pops (:meth:`guarded_source` writes that code;
    proxies and :class:`~plugin_host.loading.ModuleFunction` are generated
    from it).  :meth:`close` marks the gate closed, *then* swaps in a fresh
    list and waits for the old one to drain.

    **Why a release waits only for calls already inside, in bounded time.**
    Under the GIL a ``list.append``, a ``list.pop``, an attribute store and an
    attribute load are each atomic, and what one thread stored is what the
    next one loads.  A call that passed the open check did so before
    :meth:`close` marked the gate closed, so it had read the list before the
    swap and pushed onto it before the mark: it is on the old list, and the
    release waits for it.  A call that checks after the mark sees the gate
    closed, raises :class:`~plugin_interface.PluginUnloadedError` without
    touching the library, and pops again; that is what a caller losing the
    race sees.  After the swap the old list gains no new entry: a caller
    that read it before the swap pushes at most once (without a tracing
    function CPython cannot even switch threads between that read and the
    push), and everyone else pushes onto the fresh list, which nobody waits
    for.  So however many threads keep calling, :meth:`close` waits for the
    calls that were inside the library plus at most one refusal per thread
    already past the read, then returns.

    **Async exceptions**: the push is the first statement inside the call's
    ``try`` whose ``finally`` pops.  CPython runs signal handlers (which may
    raise, e.g. :class:`KeyboardInterrupt`) only after a call returns, on a
    backward jump or at a function's start, and none of those lies between
    the ``try`` and the push: an exception from one arrives after the push,
    inside the ``try``, and the entry never leaks.  (Pushing before the
    ``try`` would leak it when a handler raises right after the push, and
    every later release would wait for good.)

    **Thread-safety**: any thread may call through the gate, and any thread
    may :meth:`close` it, except one that is itself inside a call through it
    (a signal handler or a C callback during the call): waiting would wait
    for itself, so :meth:`close` raises
    :class:`~plugin_interface.ReleaseInsideCallError` and changes nothing.
    """

    __slots__ = ("_calls", "_draining", "_open")

    def __init__(self) -> None:
        self._calls: list[None] = []
        self._draining: list[None] | None = None  # the list close() waits for
        self._open = True

    @property
    def is_open(self) -> bool:
        """Whether calls are let through (:meth:`close` has not started)."""
        return self._open

    @staticmethod
    def guarded_source(gate: str, refused: str, body: Sequence[str]) -> list[str]:
        """The lines of a function body that run ``body`` as one call through a gate.

        For generated code, which must be fast (no method call per enter and
        leave); compile the function with :meth:`define_guarded`.

        :param gate: an expression for the gate, evaluated once (``"self._gate"``).
        :param refused: an expression for the exception raised, without calling
            anything, when the gate is closed.
        :param body: the call's statements, unindented (they may ``return``).
        :returns: the lines, indented as a function body.
        """
        return [
            f"    {_GATE_LOCAL} = {gate}",
            f"    {_CALLS_LOCAL} = {_GATE_LOCAL}._calls",
            "    try:",
            f"        {_CALLS_LOCAL}.append(None)",  # first in the try: see "Async exceptions"
            f"        if not {_GATE_LOCAL}._open:",
            f"            raise {refused}",
            *(f"        {line}" for line in body),
            "    finally:",
            f"        {_CALLS_LOCAL}.pop()",
        ]

    @staticmethod
    def define_guarded(source: str, name: str, namespace: dict[str, Any], filename: str) -> Any:
        """Compile ``source`` (a ``def`` using :meth:`guarded_source`) and return function ``name``.

        The function's code is registered, so :meth:`close` recognises a
        thread that is inside it.

        :param namespace: the function's globals.
        :param filename: what tracebacks show (``"<Greeter proxy>"``).
        """
        exec(compile(source, filename, "exec"), namespace)
        function = namespace[name]
        _guarded_codes.add(function.__code__)
        return function

    def close(self, path: str | os.PathLike[str], symbol: str | None = None) -> None:
        """Refuse new calls, then wait until the calls inside the library returned.

        Idempotent: a second call (or one after an interrupted wait) waits
        for the same calls.

        :param path: the library, and ``symbol`` what is released, for the error.
        :raises ReleaseInsideCallError: the calling thread is inside a call
            through this gate; the gate stays open and nothing changes.
        """
        call = self._call_on_this_thread()
        if call is not None:
            raise ReleaseInsideCallError(path, symbol, call)
        if self._open:
            self._open = False  # first: a call that checks from now on backs out
            self._draining, self._calls = self._calls, []
        draining = self._draining
        delay_s = _FIRST_POLL_S
        while draining:
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, _MAX_POLL_S)

    def _call_on_this_thread(self) -> str | None:
        """The guarded call through this gate the calling thread is inside, if any.

        Walks this thread's frames (a signal handler's and a C callback's
        frames sit on top of the call they interrupt): cheap, and it runs
        only at release, so the call path pays nothing for it.  A frame counts
        while it holds the gate in its local, which is a few instructions
        longer than its entry is on the list (before the push, after the pop):
        a release there is refused too, never wrongly let through.
        """
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            # The local's name first (a C-level tuple scan), the registry only then.
            if _GATE_LOCAL in code.co_varnames and code in _guarded_codes:
                local = frame.f_locals
                if local.get(_GATE_LOCAL) is self:
                    owner = local.get("self")
                    name = frame.f_code.co_name
                    return f"{name}() of {owner!r}" if owner is not None else f"{name}()"
            frame = frame.f_back
        return None

    def __repr__(self) -> str:
        return f"<CallGate {'open' if self._open else 'closed'}>"


#: The locals of a guarded call (names no trait parameter or C argument uses).
_GATE_LOCAL = "_call_gate_"
_CALLS_LOCAL = "_call_gate_calls_"
#: Code objects of the guarded functions (:meth:`CallGate.define_guarded`).
_guarded_codes: weakref.WeakSet[CodeType] = weakref.WeakSet()
#: How :meth:`CallGate.close` polls for calls in flight: from 50 us, doubling up to 1 ms.
_FIRST_POLL_S = 0.00005
_MAX_POLL_S = 0.001


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

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        load_path: str | os.PathLike[str] | None = None,
        loader_search: bool = False,
    ) -> None:
        """Open ``load_path`` (default ``path``) with the dynamic loader.

        Nothing is checked here: :class:`~plugin_host.admission.Admission`
        decides what may be opened (policy, pre-check, hash, probe) and hands
        over the file to open, which is ``path`` itself or a private copy of
        the bytes it checked.  A private copy belongs to the library from then
        on: it is removed at :meth:`close`, or at once if the loader refuses it.

        :param path: the file the user asked for (what errors and ``path`` name).
        :param load_path: the file to open, when it differs (a private copy).
        :param loader_search: ``path`` is a name the dynamic loader finds
            itself (a soname such as ``libm.so.6`` on its search path, or a
            macOS system library in its cache), as
            :class:`~plugin_host.loading.DynamicModule` may resolve one: it is
            used as given, neither made absolute nor read.
        :raises NotASharedLibraryError: the loader refused a file that is no
            shared library at all (a directory, empty, text...).
        :raises LibraryLoadError: the loader refused it (with its message).
        """
        if loader_search:
            self.path = Path(path)
        else:
            self.path = path if isinstance(path, Path) and path.is_absolute() else Path(path).absolute()
        if load_path is None or load_path is path:
            self.load_path = self.path
        else:
            other = load_path if isinstance(load_path, Path) else Path(load_path)
            # The same file given twice is not a private copy: the identity test at close relies on this.
            self.load_path = self.path if other.absolute() == self.path else other
        try:
            self._handle: int | None = _os.open_library(str(self.load_path))
        except OSError as e:
            self._remove_private_copy()
            # Only now read the file: a directory, empty or text file gets a
            # typed "not a shared library" rather than the loader's wording.
            if not loader_search:
                sniff_format(self.path)
            raise LibraryLoadError(self.path, str(e)) from e
        self._symbols: list[str] | None = None
        self.live_sets = 0  # registration sets alive on this library (a count; see PluginManager.handles)
        self._close_requested = False
        #: After :meth:`close`: why the loader kept the library mapped, or ``None`` if it is gone.
        self.still_mapped: StillMapped | None = None

    @classmethod
    def from_private_copy(
        cls, path: str | os.PathLike[str], inspect: Callable[[Path, bytes, os.stat_result], None] | None = None
    ) -> Library:
        """Copy ``path`` privately (:func:`~plugin_host.loading.make_private_copy`) and open the copy."""
        target = Path(path).absolute()
        return cls(target, load_path=make_private_copy(target, inspect))

    def _remove_private_copy(self) -> None:
        if self.load_path is not self.path:
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
        """The address of exported ``name``, or ``None`` (also for a name no C symbol can have)."""
        handle = self._require_handle(name)
        if "\0" in name:  # the loader would look up the name up to the NUL: another symbol
            return None
        try:
            return _os.find_symbol(handle, name)
        except UnicodeEncodeError:  # a lone surrogate: not a name in the symbol table
            return None

    def symbol(self, name: str, hint: str = "") -> int:
        """The address of exported ``name``.

        :raises SymbolNotFoundError: naming the file and the symbol.
        :raises PluginUnloadedError: after :meth:`close`.
        """
        address = self.find_symbol(name)
        if address is None:
            if not hint and "\0" in name:
                hint = "a C symbol name has no NUL character"
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
        """dlclose the library and remove its private copy; idempotent.

        Then checks that the loader really unmapped it (:attr:`still_mapped`).
        """
        if self._handle is not None:
            handle, self._handle = self._handle, None
            unmapped = _accel.close_library(handle)
            self.still_mapped = check_unloaded(self.path, self.load_path, unmapped)
            self._remove_private_copy()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Library {str(self.path)!r} {state}>"
