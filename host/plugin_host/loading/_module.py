"""Explicit modules: open any shared library by name, call its C functions by signature.

"Plugin mode": the program decides when a library is loaded and unloaded, and
with it the lifetime of the library's static variables (hot update, on-demand
loading).  A :class:`DynamicModule` needs no plugin ABI at all: it works on
this project's plugins and on ordinary C libraries alike.

>>> with DynamicModule("m") as libm:                           # doctest: +SKIP
...     libm.invoke("cos", "double(double)", 0.0)
1.0
>>> mod = DynamicModule("my_plugin", search_paths=["build"])   # doctest: +SKIP
>>> add = mod.function("add", "int(int, int)")                 # doctest: +SKIP
>>> add(2, 3)                                                  # doctest: +SKIP
5
>>> mod.close()                                                # doctest: +SKIP

Name resolution, in this order (the first hit wins, later places are not
consulted):

1. ``name`` with a directory part (``"build/libfoo.so"``, or any
   :class:`os.PathLike`) is that file and nothing else.
2. For each directory of ``search_paths``, in order: the platform's file name
   for ``name`` (:func:`plugin_interface.library_filename`: ``libname.so``,
   ``name.dll``, ``libname.dylib``), then ``name`` itself when it already
   looks like a file name (contains a dot: ``"libm.so.6"``).
3. Unless ``system=False``: the system's own library path, through
   :func:`ctypes.util.find_library`.  On Linux it returns a soname
   (``"m"`` -> ``libm.so.6``) that the dynamic loader then searches in
   ``LD_LIBRARY_PATH``, the ``ld.so`` cache and the default directories; on
   macOS and Windows it returns an absolute path.

The current directory is never searched implicitly: relative entries of
``search_paths`` are made absolute once, at construction, because the caller
named them; nothing else is relative.
"""

from __future__ import annotations

import abc
import ctypes.util
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cffi
from plugin_interface import (
    CallArgumentError,
    ModuleNotFoundInPathsError,
    PluginUnloadedError,
    SignatureError,
    library_filename,
)

from ..formats import check_complete, sniff_format
from . import _engine, _plans
from ._arguments import CONVERSION_ERRORS, refusal, short_repr
from ._library import CallGate, Library

__all__ = ["DynamicModule", "ModuleFunction", "find_module", "parse_signature"]

#: The signature :meth:`DynamicModule.invoke` assumes when none is given.
VOID_SIGNATURE = "void(void)"

_ffi = cffi.FFI()
_signature_cache: dict[str, CSignature] = {}
_signature_lock = threading.Lock()


@dataclass(frozen=True)
class CSignature:
    """A parsed C function signature.

    :ivar text: the signature as given.
    :ivar ctype: cffi's function pointer type.
    :ivar nargs: the number of parameters.
    :ivar char_params: indexes of ``char *`` parameters (a ``str`` argument
        there is encoded to UTF-8 for the call).
    """

    text: str
    ctype: Any
    nargs: int
    char_params: frozenset[int]

    @property
    def spelling(self) -> str:
        """cffi's canonical spelling (``int(*)(int, int)``)."""
        return str(self.ctype.cname)


def parse_signature(signature: str) -> CSignature:
    """Parse a C function type (``"int(int, int)"``, ``"double cos(double)"``) with cffi's C parser.

    Parameter names and a function name are allowed and ignored.  The result
    is cached per string, so a signature is parsed once per process.

    :raises SignatureError: not a string, not valid C, an unknown type, not a
        function type, or variadic (variadic arguments cannot be checked).
    """
    if not isinstance(signature, str):
        raise SignatureError(signature, f"a signature is a string like 'int(int, int)', not {type(signature).__name__}")
    cached = _signature_cache.get(signature)
    if cached is not None:
        return cached
    if not signature.strip():
        raise SignatureError(signature, "empty signature")
    if any(c in signature for c in ";{}#"):
        raise SignatureError(signature, "one function type only: no ';', '{', '}' or '#'")
    try:
        # The private flag is what ffi.callback() uses to accept a function
        # type ("int(int)") where typeof() wants a pointer ("int(*)(int)").
        ctype = _ffi._typeof(signature, consider_function_as_funcptr=True)
    except Exception as e:  # CDefError, TypeError (incomplete types), ... all mean "not valid"
        reason = " ".join(str(e).split()) or type(e).__name__
        raise SignatureError(signature, reason) from e
    if ctype.kind != "function":
        raise SignatureError(signature, f"{ctype.cname!r} is not a function type")
    complex_types = [_complex_spelling(t) for t in (ctype.result, *ctype.args) if _is_complex(t)]
    if complex_types:
        # cffi marks such a type variadic; the truth is that its ABI mode (libffi) cannot call it.
        raise SignatureError(
            signature,
            f"{' and '.join(dict.fromkeys(complex_types))} cannot be passed to or returned from a call "
            "in cffi's ABI mode (pass a pointer instead)",
        )
    if ctype.ellipsis:
        raise SignatureError(signature, "variadic functions are not supported (their arguments cannot be checked)")
    char_params = frozenset(i for i, a in enumerate(ctype.args) if a.kind == "pointer" and a.item.cname == "char")
    parsed = CSignature(signature, ctype, len(ctype.args), char_params)
    with _signature_lock:
        return _signature_cache.setdefault(signature, parsed)


def _is_complex(ctype: Any) -> bool:
    """Whether a cffi type is ``float _Complex`` or ``double _Complex``."""
    return bool(ctype.kind == "primitive" and "complex" in ctype.cname.lower())


def _complex_spelling(ctype: Any) -> str:
    """The C spelling of a complex type (cffi names it ``_cffi_double_complex_t``)."""
    return "float _Complex" if "float" in ctype.cname else "double _Complex"


def find_module(
    name: str | os.PathLike[str],
    search_paths: Sequence[str | os.PathLike[str]] = (),
    *,
    system: bool = True,
) -> str:
    """Resolve a module name to what the loader should open (see the module docstring).

    :returns: an absolute file path, or (for the system's path on Linux) a
        soname the dynamic loader resolves itself.
    :raises ModuleNotFoundInPathsError: listing every place tried.
    """
    text = os.fspath(name)
    if isinstance(name, os.PathLike) or os.sep in text or (os.altsep and os.altsep in text):
        path = Path(text).absolute()
        if path.is_file():
            return str(path)
        raise ModuleNotFoundInPathsError(text, [str(path)])
    if not text or text in (".", ".."):
        raise ModuleNotFoundInPathsError(text, [])
    searched: list[str] = []
    file_names = [library_filename(text)]
    if "." in text and text not in file_names:
        file_names.append(text)
    for directory in search_paths:
        for file_name in file_names:
            candidate = Path(directory).absolute() / file_name
            searched.append(str(candidate))
            if candidate.is_file():
                return str(candidate)
    if system:
        found = ctypes.util.find_library(text)
        if found and (os.path.isabs(found) or os.sep not in found):
            return found
        searched.append(f"the system library path (ctypes.util.find_library({text!r}) found nothing)")
    raise ModuleNotFoundInPathsError(text, searched)


class _FunctionInfo:
    """What both kinds of :class:`ModuleFunction` have besides the call."""

    __slots__ = ()
    _gate: CallGate
    _path: str
    symbol: str
    signature: CSignature

    @property
    def is_alive(self) -> bool:
        """Whether calls are accepted (the module was not closed since this was made)."""
        return self._gate.is_open

    def _bad_arguments(self, reason: str) -> CallArgumentError:
        return CallArgumentError(self._path, self.symbol, self.signature.text, reason)

    def _call_refused(self, args: tuple[Any, ...], error: BaseException) -> None:
        """After cffi refused the call's arguments with ``error``: raise the typed error naming the first refused.

        cffi converts the arguments in order; each is asked again alone, with the same conversion.
        Returns when none is refused (``error`` was not about an argument: the caller raises it).

        :param args: the arguments as passed (a ``str`` for a ``char *`` encoded: it converts, so
            what is refused is shown as it was given).
        :raises CallArgumentError: ``argument 2: unsigned char cannot take 256: ...`` (an
            :class:`~plugin_interface.ArgumentOverflowError` for a value out of range), chained from ``error``.
        """
        for i, (ctype, value) in enumerate(zip(self.signature.ctype.args, args, strict=True)):
            refused = refusal(ctype.cname, value)
            if refused is not None:
                detail = f"argument {i + 1}: {ctype.cname} cannot take {short_repr(value)}: {refused}"
                signature = self.signature.text
                raise CallArgumentError.refused(self._path, self.symbol, signature, detail, refused) from error

    def _unloaded(self) -> PluginUnloadedError:
        return PluginUnloadedError(self._path, self.symbol)

    def __repr__(self) -> str:
        state = "" if self._gate.is_open else " (closed)"
        return f"<ModuleFunction {self.symbol} {self.signature.spelling} from {self._path}{state}>"


class ModuleFunction(_FunctionInfo, metaclass=abc.ABCMeta):
    """A C function of a :class:`DynamicModule`, callable with a fixed signature.

    Arguments are checked before the call: their number here, their types by
    cffi's conversion (an ``int`` that does not fit, a ``str`` where a number
    goes...), both raised as :class:`CallArgumentError` naming the argument
    (:class:`~plugin_interface.ArgumentOverflowError`, also an
    ``OverflowError``, for a value out of range).  A ``str`` passed to a
    ``char *`` parameter is encoded to UTF-8 and lives for the call only.

    This class is the pure-Python path.  With the call engine,
    :meth:`DynamicModule.function` returns a compiled twin for the signatures
    it can do (scalars, ``char *``; a scalar or ``void`` result): the same
    attributes and errors (what it does not convert itself it hands to a
    :class:`ModuleFunction`), and ``isinstance(f, ModuleFunction)`` holds.

    :ivar symbol: the C function's name.
    :ivar signature: the parsed signature.

    **Safety**: the signature is a promise the caller makes; a wrong one (the
    C function really takes a ``double``) is undefined behaviour the host
    cannot detect.  Pointers returned by the function point into the module
    and dangle after :meth:`DynamicModule.close`.

    **Thread-safety**: callable from any thread; a call that started before
    :meth:`DynamicModule.close` finishes before the library is unmapped, and
    calls after it raise :class:`PluginUnloadedError`.  A compiled function
    keeps the GIL during the C call unless it was made ``long_running``;
    this one (cffi) always releases it.
    """

    __slots__ = ("__weakref__", "_fn", "_gate", "_path", "signature", "symbol")

    def __init__(self, path: str, symbol: str, signature: CSignature, address: int, gate: CallGate) -> None:
        self._path = path
        self._gate = gate
        self._fn = _ffi.cast(signature.ctype, address)
        self.symbol = symbol
        self.signature = signature

    def _encode_strings(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """``args`` with each ``str`` for a ``char *`` parameter encoded to UTF-8."""
        char_params = self.signature.char_params
        encoded = list(args)
        for i in char_params:
            if isinstance(encoded[i], str):
                try:
                    encoded[i] = encoded[i].encode()
                except UnicodeEncodeError as e:  # a lone surrogate has no UTF-8 form
                    raise self._bad_arguments(f"argument {i + 1}: {e}") from e
        return tuple(encoded)

    # Generated from the gate's own call protocol (CallGate.guarded_source), as the proxies are.
    __call__: Callable[..., Any] = CallGate.define_guarded(
        "\n".join(
            [
                "def __call__(self, *args):",
                "    sig = self.signature",
                "    if len(args) != sig.nargs:",
                "        raise self._bad_arguments(f'takes {sig.nargs} argument(s), got {len(args)}')",
                "    if sig.char_params:",
                "        args = self._encode_strings(args)",
                *CallGate.guarded_source(
                    "self._gate",
                    "self._unloaded()",
                    [
                        "try:",  # costs nothing until it catches (3.11)
                        "    return self._fn(*args)",
                        "except _CONVERSION_ERRORS as e:",
                        # C code cannot raise Python exceptions: these come from
                        # cffi converting the arguments, before the function runs.
                        "    self._call_refused(args, e)",
                        "    raise",
                    ],
                ),
            ]
        ),
        "__call__",
        {"_CONVERSION_ERRORS": CONVERSION_ERRORS},
        "<ModuleFunction>",
    )


if _engine.Function is not None:
    # A compiled function is a ModuleFunction: its attributes and repr are the Python one's.
    ModuleFunction.register(_engine.Function)


def _make_function(
    path: str, symbol: str, signature: CSignature, address: int, gate: CallGate, long_running: bool
) -> ModuleFunction:
    """The compiled function when the engine can call ``signature``, else the Python one."""
    python = ModuleFunction(path, symbol, signature, address, gate)
    plan = _plans.signature_plan(signature.ctype, long_running) if _engine.enabled() else None
    if plan is None or gate.engine_gate is None:
        return python
    try:
        # Named "__call__" for CallGate's message, as the Python path's frame is.
        compiled: ModuleFunction = _engine.Function(plan, address, gate.engine_gate, python, "__call__")
    except ValueError:  # a plan this build of the engine refuses
        return python
    return compiled


class DynamicModule:
    """A shared library opened explicitly, whose C functions are looked up explicitly.

    :param name: a module name (``"my_plugin"``, ``"m"``), a full file name
        (``"libm.so.6"``) or a path; resolved as the module docstring says.
    :param search_paths: directories tried first, in order.
    :param system: also try the system's library path after ``search_paths``.
    :raises ModuleNotFoundInPathsError: listing every place tried.
    :raises NotASharedLibraryError: the file found is not a library (a text
        file, a linker script such as glibc's ``libc.so``...).
    :raises LibraryLoadError: the dynamic loader refused it.

    :ivar name: the name asked for.
    :ivar path: what the loader opens: an absolute path, or a soname.

    The library is opened at construction; :meth:`close` (or leaving a
    ``with`` block) closes it and :meth:`open` opens it again, with fresh
    static variables.  A module that is never closed stays loaded until the
    process exits.

    **Safety**: addresses and the functions from :meth:`function` are valid
    until :meth:`close`.  Functions made before a close refuse calls for good,
    even after :meth:`open` (the library may be mapped elsewhere).  Plain
    addresses from :meth:`address` that the caller handed to C code have no
    such guard: they dangle.

    **Thread-safety**: functions may be called from any thread.
    :meth:`close` waits for the calls inside the library (however many
    threads keep calling, the wait ends once those return) and, from inside
    one of them on the same thread (a signal handler, a C callback), raises
    :class:`~plugin_interface.ReleaseInsideCallError` instead of waiting for
    itself.  :meth:`open` and :meth:`close` are serialised by a lock.

    **Platform-specific behaviour**: on POSIX the library is opened
    ``RTLD_NOW | RTLD_LOCAL``.  Static state is only fresh after a reopen if
    the close really unmapped the library: the loader keeps it mapped while
    another user holds it (a second :class:`DynamicModule` or a
    :class:`~plugin_host.PluginManager` on the same file, a library that
    depends on it, the C runtime itself), or when it was built with
    ``-z nodelete`` or has ``STB_GNU_UNIQUE`` symbols (glibc).  On Windows
    ``LoadLibraryExW`` gets an absolute path, so the current directory is not
    searched there either.
    """

    def __init__(
        self,
        name: str | os.PathLike[str],
        search_paths: Sequence[str | os.PathLike[str]] = (),
        *,
        system: bool = True,
    ) -> None:
        if isinstance(search_paths, (str, os.PathLike)):
            raise TypeError("search_paths is a list of directories, not one path")
        self.name = os.fspath(name)
        self.search_paths = tuple(Path(p).absolute() for p in search_paths)
        self.path = find_module(name, self.search_paths, system=system)
        # Reentrant: a signal handler may close the module while close() waits on the same thread.
        self._lock = threading.RLock()
        self._library: Library | None = None
        self._gate = CallGate()
        self._functions: dict[tuple[str, str, bool], ModuleFunction] = {}
        self.open()

    # ---- lifetime -------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the library is loaded."""
        return self._library is not None

    def open(self) -> DynamicModule:
        """Load the library if it is closed (a no-op when open); returns ``self``.

        A file is checked first, as the admission checks a plugin's (a file
        that is no library gets a typed error, a truncated one would fault
        inside ``dlopen``), then opened in place by the same
        :class:`~plugin_host.loading.Library` the plugins use; a name the
        loader resolves itself (a soname, a macOS system library kept in the
        loader's cache) is handed over unread.

        :raises NotASharedLibraryError: the file is not a library, or is truncated.
        :raises LibraryLoadError: the loader refused it.
        """
        with self._lock:
            if self._library is not None:
                return self
            on_disk = os.path.isabs(self.path) and os.path.exists(self.path)  # macOS system libs live in a cache
            if on_disk:
                sniff_format(self.path)  # a typed error for text files, directories, ...
                check_complete(self.path)  # a truncated library would SIGBUS inside dlopen
            library = Library(self.path, loader_search=not on_disk)
            self._gate = CallGate()
            self._library = library
            return self

    def close(self) -> None:
        """Refuse new calls, wait for the calls inside the library, then unload; idempotent.

        :raises ReleaseInsideCallError: called from inside a call of this
            module's functions on the same thread (a signal handler, a C
            callback): it would wait for itself.  Nothing changes; close once
            the call has returned.
        """
        with self._lock:
            library = self._library
            if library is None:
                return
            self._gate.close(self.path)
            if self._library is not library:
                return  # a close nested in the wait (a signal handler) finished it
            self._library = None
            self._functions.clear()
            library.close()

    def __enter__(self) -> DynamicModule:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- symbols --------------------------------------------------------------

    def _require_library(self, symbol: str) -> Library:
        library = self._library
        if library is None:
            raise PluginUnloadedError(self.path, symbol)
        return library

    def has_symbol(self, symbol: str) -> bool:
        """Whether the library exports ``symbol``.

        :raises PluginUnloadedError: after :meth:`close`.
        """
        return self._require_library(symbol).find_symbol(symbol) is not None

    def address(self, symbol: str) -> int:
        """The address of exported ``symbol`` (to hand to C code; see **Safety**).

        :raises SymbolNotFoundError: naming the file and the symbol (also for
            a name no C symbol can have, such as one holding a NUL).
        :raises PluginUnloadedError: after :meth:`close`.
        """
        return self._require_library(symbol).symbol(symbol)

    def function(self, symbol: str, signature: str = VOID_SIGNATURE, *, long_running: bool = False) -> ModuleFunction:
        """A reusable callable for C function ``symbol`` with C type ``signature``.

        The same (symbol, signature, long_running) returns the same object until :meth:`close`.

        :param long_running: the function blocks or runs long: the GIL is
            released around its calls (a compiled call keeps it otherwise,
            which is cheaper for a short call; see :class:`ModuleFunction`).
        :raises SignatureError: ``signature`` is not a C function type.
        :raises SymbolNotFoundError: the library does not export ``symbol``.
        :raises PluginUnloadedError: after :meth:`close`.
        """
        key = (symbol, signature, long_running) if isinstance(signature, str) else None
        if key is not None:
            cached = self._functions.get(key)
            if cached is not None and cached.is_alive:
                return cached
        try:
            parsed = parse_signature(signature)
        except SignatureError as e:
            raise SignatureError(signature, e.detail, symbol=symbol) from e
        # The gate first, then the address: if a close slips in between, the
        # function holds a closed gate and refuses every call.  No lock here,
        # so a C callback into the host may look functions up while close()
        # waits for the call it runs in.
        gate = self._gate
        fn = _make_function(self.path, symbol, parsed, self.address(symbol), gate, long_running)
        self._functions[(symbol, parsed.text, long_running)] = fn
        return fn

    def invoke(self, symbol: str, signature: str = VOID_SIGNATURE, *args: Any) -> Any:
        """Call C function ``symbol`` once: ``invoke("add", "int(int, int)", 2, 3)``.

        Without a signature the function is called as ``void(void)``.

        :returns: the C result (``None`` for ``void``; cffi ``cdata`` for pointers).
        :raises SignatureError, SymbolNotFoundError, PluginUnloadedError: as
            :meth:`function`.
        :raises CallArgumentError: wrong number or types of arguments.
        """
        return self.function(symbol, signature)(*args)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<DynamicModule {self.name!r} from {self.path!r} {state}>"
