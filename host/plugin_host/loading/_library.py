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

from ..formats import exported_names, exported_symbols, sniff_format
from . import _accel, _engine, _os
from ._copies import make_private_copy, remove_private_copy
from ._unload import StillMapped, check_unloaded

__all__ = ["CallGate", "Library"]

_COUNTER_FN = ctypes.CFUNCTYPE(ctypes.c_size_t)
_RELEASE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


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

    **Compiled calls** (:mod:`._engine`) use the gate's atomic side,
    :attr:`engine_gate`: a call increments its count of calls inside, then
    checks that it is open, and decrements the count when it is out;
    :meth:`close` clears its open flag right after the Python one and waits
    for that count too.  Both sides are sequentially consistent, so a compiled
    call that saw the gate open is counted before :meth:`close` reads the
    count.  One that finds it closed backs out at once, in C, and hands the
    call to the Python path (which raises the error).

    **No allocation per call**: the list never runs empty.  It keeps
    ``_IDLE_CALLS`` placeholders, so a push and a pop stay within the room
    CPython already gave it (a list shrinks its storage only below half of
    it) instead of allocating on every enter and freeing on every leave;
    "calls inside" is what lies beyond the placeholders.

    **Thread-safety**: any thread may call through the gate, and any thread
    may :meth:`close` it, except one that is itself inside a call through it
    (a signal handler or a C callback during the call): waiting would wait
    for itself, so :meth:`close` raises
    :class:`~plugin_interface.ReleaseInsideCallError` and changes nothing.
    """

    __slots__ = ("_calls", "_draining", "_engine", "_open")

    def __init__(self) -> None:
        self._calls: list[None] = _idle_calls()
        self._draining: list[None] | None = None  # the list close() waits for
        self._open = True
        self._engine: Any = _engine.new_gate()  # the atomic side compiled calls enter (None without the engine)

    @property
    def engine_gate(self) -> Any:
        """The gate's atomic side for compiled calls (``plugin_host.loading._callengine.Gate``), or ``None``."""
        return self._engine

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
    def define_guarded(
        source: str, name: str, namespace: dict[str, Any], filename: str, bound: dict[str, Any] | None = None
    ) -> Any:
        """Compile ``source`` (a ``def`` using :meth:`guarded_source`) and return function ``name``.

        The function's code is registered, so :meth:`close` recognises a
        thread that is inside it.

        :param namespace: the function's globals.
        :param filename: what tracebacks show (``"<Greeter proxy>"``).
        :param bound: names the function sees as closure variables rather
            than globals (the helpers of generated code: a cell is read with
            less work than a global).
        """
        if bound:
            factory = "_bind_guarded_"
            lines = [f"def {factory}({', '.join(bound)}):", *(f"    {line}" for line in source.splitlines())]
            exec(compile("\n".join([*lines, f"    return {name}"]), filename, "exec"), namespace)
            function = namespace.pop(factory)(**bound)
        else:
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
        engine = self._engine
        if self._open:
            self._open = False  # first: a call that checks from now on backs out
            if engine is not None:
                engine.close()  # and a compiled one
            self._draining, self._calls = self._calls, _idle_calls()
        draining = self._draining
        assert draining is not None
        delay_s = _FIRST_POLL_S
        while len(draining) > _IDLE_CALLS or (engine is not None and engine.inflight):
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
        inside = self._engine.inside() if self._engine is not None else None  # a compiled call has no frame
        if inside is not None:
            name, owner = inside
            return f"{name}() of {owner!r}"
        return None

    def __repr__(self) -> str:
        return f"<CallGate {'open' if self._open else 'closed'}>"


#: Placeholders a gate's list of calls always holds (see "No allocation per call").
_IDLE_CALLS = 8


def _idle_calls() -> list[None]:
    """A list of calls with nobody inside, its storage already grown for the first pushes."""
    calls = [None] * _IDLE_CALLS
    calls.append(None)  # grows the storage to 16 slots; popping back to 8 keeps them
    calls.pop()
    return calls


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

    # Class-level defaults: an instance stores only what differs (a directory load makes hundreds).
    _path: Path | None = None  # None: made from _text when first asked for (an adopted library)
    _load_path: Path | None = None  # a private copy, else None: the file itself
    _handle: int | None = None
    _symbols: list[str] | None = None
    #: Registration sets alive on this library (a count; see PluginManager.handles).
    live_sets = 0
    _close_requested = False
    #: After :meth:`close`: why the loader kept the library mapped, or ``None`` if it is gone.
    still_mapped: StillMapped | None = None

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
            self._path = Path(path)
        else:
            self._path = path if isinstance(path, Path) and path.is_absolute() else Path(path).absolute()
        self._text = str(self._path)
        if load_path is not None and load_path is not path:
            other = load_path if isinstance(load_path, Path) else Path(load_path)
            # The same file given twice is not a private copy (close would remove the file itself).
            if other.absolute() != self._path:
                self._load_path = other
        try:
            handle = _os.open_library(self._text if self._load_path is None else str(self._load_path))
        except OSError as e:
            self._remove_private_copy()
            # Only now read the file: a directory, empty or text file gets a
            # typed "not a shared library" rather than the loader's wording.
            if not loader_search:
                sniff_format(self._path)
            raise LibraryLoadError(self._path, str(e)) from e
        self._handle = handle

    @classmethod
    def adopt(cls, path: str, handle: int) -> Library:
        """The library the caller opened itself: ``handle`` is ``dlopen`` of ``path``, in place.

        For the directory load's one-call open-and-register
        (:func:`~plugin_host.loading._accel.open_register_paths`), which makes no
        :class:`~pathlib.Path`: :attr:`path` is made from ``path`` when first asked for.

        :param path: the file opened, absolute and normalised as :class:`~pathlib.Path` would
            print it (it is :attr:`key`).
        :param handle: the handle, which the library owns from now on (and closes).
        """
        library = cls.__new__(cls)
        library._text = path
        library._handle = handle
        return library

    @property
    def path(self) -> Path:
        """The file the user asked for (absolute)."""
        path = self._path
        if path is None:  # an adopted library: made on first use (two racing threads make equal ones)
            path = self._path = Path(self._text)
        return path

    @property
    def key(self) -> str:
        """:attr:`path` as a string (what a manager indexes its libraries by, without hashing a Path)."""
        return self._text

    @property
    def load_path(self) -> Path:
        """The file actually opened: a private copy with copy-on-load, else :attr:`path`."""
        return self.path if self._load_path is None else self._load_path

    @classmethod
    def from_private_copy(
        cls, path: str | os.PathLike[str], inspect: Callable[[Path, bytes, os.stat_result], None] | None = None
    ) -> Library:
        """Copy ``path`` privately (:func:`~plugin_host.loading.make_private_copy`) and open the copy."""
        target = Path(path).absolute()
        return cls(target, load_path=make_private_copy(target, inspect))

    def _remove_private_copy(self) -> None:
        if self._load_path is not None:
            remove_private_copy(self._load_path)

    @property
    def is_open(self) -> bool:
        """Whether the library is still loaded."""
        return self._handle is not None

    def _require_handle(self, symbol: str | None = None) -> int:
        if self._handle is None:
            raise PluginUnloadedError(self._text, symbol)
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

    def exported_names(self, prefix: str) -> list[str]:
        """The exported names that start with ``prefix``, sorted: :meth:`exported_symbols` filtered, without
        reading every name from the file when they were not read yet (:func:`~plugin_host.formats.exported_names`)."""
        if self._symbols is not None:
            return [name for name in self._symbols if name.startswith(prefix)]
        return exported_names(self.load_path, prefix)

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
            self._closed(_accel.close_library(handle))

    def call_release(self, release: int, argument: int, counter: int, *, close: bool = False) -> int | None:
        """Call the plugin's ``void release(argument)``, then read its ``size_t counter()``; with
        ``close``, then :meth:`close`.

        The unload of a plugin-owned registration array through its
        ``plugin_unregister_all``: one call with the C extension
        (``ph_release_close``, unload.c), the close included.  With ``close``
        the library is closed whatever :attr:`live_sets` says: the caller knows
        this was the last set.

        **Safety**: ``release`` and ``counter`` are addresses in this library
        (``counter`` may be 0: not exported); ``argument`` is what ``release`` frees.

        :returns: the counter after the release (``None`` when ``counter`` is 0).
        :raises PluginUnloadedError: the library is closed already.
        :raises OSError: dlclose failed (the release ran).
        """
        handle = self._require_handle()
        if not _accel.enabled():
            _RELEASE_FN(release)(argument)
            count = int(_COUNTER_FN(counter)()) if counter else None
            if close:
                self.close()
            return count
        if not close:
            return _accel.release_close(release, argument, counter, 0)[0]
        self._handle = None
        count, unmapped = _accel.release_close(release, argument, counter, handle)
        self._closed(unmapped)
        return count

    @staticmethod
    def call_release_all(calls: Sequence[tuple[Library, int, int, int]]) -> list[int | None]:
        """:meth:`call_release` with ``close`` for each ``(library, release, argument, counter)``,
        in turn: one call into C for them all with the C extension (a manager's unload of many files).

        :returns: per library, the counter after the release.
        :raises PluginUnloadedError: a library is closed already (before anything is called).
        :raises OSError: a dlclose failed (after every release and close was done).
        """
        if not _accel.enabled():
            return [library.call_release(r, a, c, close=True) for library, r, a, c in calls]
        words: list[int] = []
        handles = []
        for library, release, argument, counter in calls:
            handle = library._require_handle()
            words += (release, argument, counter, handle)
            handles.append(handle)
        for library, *_ in calls:  # only now: nothing is taken if one was closed
            library._handle = None
        results = iter(_accel.release_close_all(words))
        counts: list[int | None] = []
        failed: OSError | None = None
        gone = _accel.CLOSE_UNMAPPED
        for (library, _, _, counter), handle, count, verdict in zip(calls, handles, results, results, strict=True):
            counts.append(count if counter else None)
            if verdict == gone and library._load_path is None:
                continue  # gone, no copy to remove: nothing more to do (still_mapped stays None)
            try:
                library._closed(_accel.close_verdict(verdict, handle))
            except OSError as e:
                failed = failed or e
        if failed is not None:
            raise failed
        return counts

    def _closed(self, unmapped: bool | None) -> None:
        """After the handle was closed: whether the library left (``unmapped``: what the close found out)."""
        # True needs no question to the loader, and no Path (an adopted library has none yet).
        self.still_mapped = None if unmapped else check_unloaded(self.path, self.load_path, unmapped)
        self._remove_private_copy()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Library {self._text!r} {state}>"
