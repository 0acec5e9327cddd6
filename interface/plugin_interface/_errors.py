"""The typed errors of the plugin system: one root, one class per concept.

Every error carries the facts as attributes -- ``reason`` (an
:class:`ErrorReason`, so callers never parse messages), ``path``, ``symbol``
where there is one, ``detail`` where the message has a free-text part -- and
names the file and the symbol in its message.  The host adds its own (load
policy, probe) beside the layers that raise them: see ``plugin_host.errors``.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from typing import ClassVar

__all__ = [
    "AbiMismatchError",
    "AlreadyLoadedError",
    "ErrorReason",
    "AlreadyReleasedError",
    "ArchitectureMismatchError",
    "ArgumentBufferError",
    "ArgumentOverflowError",
    "CallArgumentError",
    "InconsistentArrayError",
    "LibraryLoadError",
    "MakerReturnedNullError",
    "MethodNotProvidedError",
    "ModuleNotFoundInPathsError",
    "NoPluginSymbolsError",
    "NotASharedLibraryError",
    "PluginCallError",
    "PluginError",
    "PluginLoadErrors",
    "PluginMethodError",
    "PluginUnloadedError",
    "ReleaseInsideCallError",
    "SignatureError",
    "SymbolNotFoundError",
    "TraitNotImplementedError",
    "UnknownTraitError",
]


class ErrorReason(enum.StrEnum):
    """What went wrong, as a value a caller can compare (``error.reason``); one per error class."""

    ERROR = "error"
    NOT_A_LIBRARY = "not_a_library"
    ARCHITECTURE_MISMATCH = "architecture_mismatch"
    LOADER_REFUSED = "loader_refused"
    NO_PLUGIN_SYMBOLS = "no_plugin_symbols"
    SYMBOL_NOT_FOUND = "symbol_not_found"
    TRAIT_NOT_IMPLEMENTED = "trait_not_implemented"
    ABI_MISMATCH = "abi_mismatch"
    MAKER_RETURNED_NULL = "maker_returned_null"
    INCONSISTENT_ARRAY = "inconsistent_array"
    ALREADY_RELEASED = "already_released"
    ALREADY_LOADED = "already_loaded"
    UNLOADED = "unloaded"
    CALL_FAILED = "call_failed"
    METHOD_FAILED = "method_failed"
    METHOD_NOT_PROVIDED = "method_not_provided"
    UNKNOWN_TRAIT = "unknown_trait"
    LOAD_ERRORS = "load_errors"
    MODULE_NOT_FOUND = "module_not_found"
    BAD_SIGNATURE = "bad_signature"
    BAD_ARGUMENT = "bad_argument"
    INSECURE = "insecure"
    PROBE_CRASHED = "probe_crashed"
    PROBE_EXITED = "probe_exited"
    PROBE_TIMEOUT = "probe_timeout"
    PROBE_PROTOCOL = "probe_protocol"
    BLOCKED = "blocked"
    RELEASE_INSIDE_CALL = "release_inside_call"
    OUT_OF_RANGE = "out_of_range"
    BAD_BUFFER = "bad_buffer"


def _fspath(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


class PluginError(Exception):
    """Root of every error raised by the plugin system.

    :ivar reason: what went wrong (each class has its own :class:`ErrorReason`).
    :ivar path: the library file concerned, when there is one.
    :ivar symbol: the C symbol concerned, when there is one.
    """

    #: The reason every instance of the class carries.
    REASON: ClassVar[ErrorReason] = ErrorReason.ERROR

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        symbol: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: ErrorReason = self.REASON
        self.path = _fspath(path)
        self.symbol = symbol


class NotASharedLibraryError(PluginError):
    """The file is not a shared library this host can load (text, empty, truncated, ...).

    :ivar detail: what is wrong with it.
    """

    REASON = ErrorReason.NOT_A_LIBRARY

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        msg = f"{os.fspath(path)}: not a loadable shared library: {detail}"
        super().__init__(msg, path=path)
        self.detail = detail


class LibraryLoadError(PluginError):
    """The dynamic loader refused the library (undefined symbol, bad format, ...).

    :ivar detail: the loader's message.
    """

    REASON = ErrorReason.LOADER_REFUSED

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        msg = f"{os.fspath(path)}: the dynamic loader refused it: {detail}"
        super().__init__(msg, path=path)
        self.detail = detail


class SymbolNotFoundError(PluginError):
    """A symbol the host needs is not exported by the library."""

    REASON = ErrorReason.SYMBOL_NOT_FOUND

    def __init__(self, path: str | os.PathLike[str] | None, symbol: str, hint: str = "") -> None:
        where = os.fspath(path) if path is not None else "<library>"
        msg = f"{where}: symbol {symbol} is not exported"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg, path=path, symbol=symbol)


class AbiMismatchError(PluginError):
    """A registration or descriptor does not match what the host expects.

    :ivar field: what differs (``"abi_version"``, ``"trait_version"``, ...).
    :ivar expected: what the host expects.
    :ivar found: what the plugin declared.
    :ivar trait: the trait concerned, when the symbol alone does not say it.
    :ivar note: further differences or an explanation (may be empty).
    """

    REASON = ErrorReason.ABI_MISMATCH

    def __init__(
        self,
        path: str | os.PathLike[str],
        symbol: str,
        field: str,
        expected: object,
        found: object,
        *,
        trait: str | None = None,
        note: str = "",
    ) -> None:
        where = f"trait {trait}: " if trait else ""
        msg = f"{os.fspath(path)}: {symbol}: {where}{field} mismatch: host expects {expected!r}, plugin has {found!r}"
        if note:
            msg += f" ({note})"
        super().__init__(msg, path=path, symbol=symbol)
        self.field = field
        self.expected = expected
        self.found = found
        self.trait = trait
        self.note = note


class MakerReturnedNullError(PluginError):
    """A maker (or an aggregate) returned NULL: the plugin could not register."""

    REASON = ErrorReason.MAKER_RETURNED_NULL

    def __init__(self, path: str | os.PathLike[str], symbol: str) -> None:
        msg = f"{os.fspath(path)}: {symbol} returned NULL"
        super().__init__(msg, path=path, symbol=symbol)


class InconsistentArrayError(PluginError):
    """A registration array is malformed (NULL entries, duplicates, factories missing, ...).

    :ivar detail: what is inconsistent.
    """

    REASON = ErrorReason.INCONSISTENT_ARRAY

    def __init__(self, path: str | os.PathLike[str], symbol: str, detail: str) -> None:
        msg = f"{os.fspath(path)}: {symbol} returned an inconsistent array: {detail}"
        super().__init__(msg, path=path, symbol=symbol)
        self.detail = detail


class AlreadyReleasedError(PluginError):
    """A registration set was released twice; the second release did nothing."""

    REASON = ErrorReason.ALREADY_RELEASED

    def __init__(self, path: str | os.PathLike[str], symbol: str) -> None:
        msg = f"{os.fspath(path)}: {symbol}: registrations already released"
        super().__init__(msg, path=path, symbol=symbol)


class AlreadyLoadedError(PluginError):
    """The file is loaded already for another version of the trait; unload it first.

    :ivar loaded: the trait version it is loaded for.
    :ivar wanted: the version asked for.
    """

    REASON = ErrorReason.ALREADY_LOADED

    def __init__(self, path: str | os.PathLike[str], symbol: str, trait: str, loaded: int, wanted: int) -> None:
        msg = (
            f"{os.fspath(path)}: {symbol}: loaded already for {trait} v{loaded}; "
            f"unload it before loading it for {trait} v{wanted}"
        )
        super().__init__(msg, path=path, symbol=symbol)
        self.loaded = loaded
        self.wanted = wanted


class PluginUnloadedError(PluginError):
    """A proxy or handle was used after its library was unloaded."""

    REASON = ErrorReason.UNLOADED

    def __init__(self, path: str | os.PathLike[str], symbol: str | None = None) -> None:
        what = f"{symbol}: " if symbol else ""
        msg = f"{os.fspath(path)}: {what}the library has been unloaded"
        super().__init__(msg, path=path, symbol=symbol)


class PluginCallError(PluginError):
    """A call into a plugin reported failure (for example a NULL string)."""

    REASON = ErrorReason.CALL_FAILED


class PluginMethodError(PluginCallError):
    """A method declared to return ``Status`` reported failure: a non-zero code and the plugin's message.

    :ivar code: the status the method returned.
    :ivar message: what the plugin said (empty when it said nothing).
    """

    REASON = ErrorReason.METHOD_FAILED

    def __init__(self, path: str | os.PathLike[str], symbol: str, code: int, message: str) -> None:
        said = f": {message}" if message else " (no message)"
        super().__init__(f"{os.fspath(path)}: {symbol} failed with status {code}{said}", path=path, symbol=symbol)
        self.code = code
        self.message = message


class MethodNotProvidedError(PluginCallError):
    """A method of the host's trait declaration that an older plugin lacks.

    The plugin was built against an earlier version of the trait (fewer
    methods); its other methods work.

    :ivar method: the method name.
    """

    REASON = ErrorReason.METHOD_NOT_PROVIDED

    def __init__(self, path: str | os.PathLike[str], symbol: str, method: str, provided: int, declared: int) -> None:
        msg = (
            f"{os.fspath(path)}: {symbol}: not provided by this plugin, which was built against "
            f"an earlier trait version with {provided} of the host's {declared} methods"
        )
        super().__init__(msg, path=path, symbol=symbol)
        self.method = method


class UnknownTraitError(PluginError, LookupError):
    """A trait name that is neither built in nor declared (by the host, or by the library at ``path``).

    :ivar name: the name asked for.
    """

    REASON = ErrorReason.UNKNOWN_TRAIT

    def __init__(self, name: str, known: list[str], path: str | os.PathLike[str] | None = None) -> None:
        where = f"{os.fspath(path)}: " if path is not None else ""
        msg = f"{where}unknown trait {name!r}; known traits: {', '.join(sorted(known)) or 'none'}"
        super().__init__(msg, path=path)
        self.name = name


class PluginLoadErrors(ExceptionGroup[PluginError], PluginError):
    """Several files of a directory failed to load; the good ones stayed loaded.

    An :class:`ExceptionGroup` of the files' errors, so ``except*`` picks the
    kinds a caller handles; also a :class:`PluginError` for ``except PluginError``.

    :ivar exceptions: one :class:`PluginError` per failed file (also as ``errors``).
    :ivar loaded: the handles that did load (they remain owned by the manager).
    """

    REASON = ErrorReason.LOAD_ERRORS

    def __new__(
        cls,
        path: str | os.PathLike[str],
        errors: Sequence[PluginError],
        loaded: Sequence[object] = (),
        what: str = "failed to load",
    ) -> PluginLoadErrors:
        lines = "\n".join(f"  - {e}" for e in errors)
        msg = f"{os.fspath(path)}: {len(errors)} plugin file(s) {what}:\n{lines}"
        self = super().__new__(cls, msg, list(errors))
        return self

    def __init__(
        self,
        path: str | os.PathLike[str],
        errors: Sequence[PluginError],
        loaded: Sequence[object] = (),
        what: str = "failed to load",
    ) -> None:
        super().__init__(self.message, list(errors))
        self.reason = self.REASON
        self.path = _fspath(path)
        self.symbol = None
        self.loaded = list(loaded)

    @property
    def errors(self) -> list[PluginError]:
        """The files' errors (the group's ``exceptions``)."""
        return [e for e in self.exceptions if isinstance(e, PluginError)]

    def derive(self, excs: Sequence[PluginError]) -> PluginLoadErrors:  # type: ignore[override]
        """A group of some of the errors, as :meth:`split` and ``except*`` make (same path, same loaded)."""
        return PluginLoadErrors(self.path or "", excs, self.loaded)


class ModuleNotFoundInPathsError(PluginError, LookupError):
    """No shared library of that name where :class:`~plugin_host.DynamicModule` looked.

    :ivar name: the module name asked for (``"my_plugin"``, ``"m"``).
    :ivar searched: every place tried, in order (files, then the system loader).
    """

    REASON = ErrorReason.MODULE_NOT_FOUND

    def __init__(self, name: str, searched: list[str]) -> None:
        places = "\n".join(f"  - {s}" for s in searched) or "  (nowhere: no search path given)"
        msg = (
            f"{name}: no shared library found; looked, in order, in:\n{places}\n"
            "(the current directory is never searched implicitly)"
        )
        super().__init__(msg)
        self.name = name
        self.searched = searched


class SignatureError(PluginError, ValueError):
    """A C signature string that is not a usable function type.

    :ivar signature: the string as given (``"int(int, int)"``).
    :ivar detail: what is wrong with it (the C parser's message).
    """

    REASON = ErrorReason.BAD_SIGNATURE

    def __init__(self, signature: object, detail: str, *, symbol: str | None = None) -> None:
        what = f"{symbol}: " if symbol else ""
        msg = f"{what}bad C signature {signature!r}: {detail}"
        super().__init__(msg, symbol=symbol)
        self.signature = signature
        self.detail = detail


class CallArgumentError(PluginError, TypeError):
    """Arguments that do not fit a C function's signature, caught before the call.

    :ivar signature: the function's C signature.
    :ivar detail: which argument is wrong, and how.
    """

    REASON = ErrorReason.BAD_ARGUMENT

    def __init__(self, path: str | os.PathLike[str], symbol: str, signature: str, detail: str) -> None:
        msg = f"{os.fspath(path)}: {symbol} ({signature}): {detail}"
        super().__init__(msg, path=path, symbol=symbol)
        self.signature = signature
        self.detail = detail

    @staticmethod
    def refused(
        path: str | os.PathLike[str], symbol: str, signature: str, detail: str, original: BaseException
    ) -> CallArgumentError:
        """The error for an argument a conversion refused with ``original`` (cffi's, a buffer exporter's).

        An ``OverflowError`` makes an :class:`ArgumentOverflowError`, a
        ``BufferError`` an :class:`ArgumentBufferError` (each also the builtin
        it comes from, so ``except OverflowError`` still catches it), anything
        else a :class:`CallArgumentError`.  The caller raises it ``from original``.
        """
        kind: type[CallArgumentError] = CallArgumentError
        if isinstance(original, OverflowError):
            kind = ArgumentOverflowError
        elif isinstance(original, BufferError):
            kind = ArgumentBufferError
        return kind(path, symbol, signature, detail)


class ArchitectureMismatchError(NotASharedLibraryError):
    """A shared library built for another machine, word size or byte order.

    :ivar field: ``"machine"``, ``"class"`` or ``"byte order"``.
    :ivar expected: this host's value (``"x86_64"``).
    :ivar found: the file's value (``"aarch64"``).
    """

    REASON = ErrorReason.ARCHITECTURE_MISMATCH

    def __init__(self, path: str | os.PathLike[str], field: str, expected: str, found: str) -> None:
        super().__init__(path, f"built for {found}, this host is {expected}")
        self.field = field
        self.expected = expected
        self.found = found


class NoPluginSymbolsError(PluginError):
    """A shared library that names no ``plugin_register_*`` symbol at all: not a plugin."""

    REASON = ErrorReason.NO_PLUGIN_SYMBOLS

    def __init__(self, path: str | os.PathLike[str]) -> None:
        msg = f"{os.fspath(path)}: no plugin symbols at all (no plugin_register_* name): not a plugin library"
        super().__init__(msg, path=path)


class TraitNotImplementedError(SymbolNotFoundError):
    """The library implements no registration of this trait (neither its aggregate nor any maker).

    :ivar trait: the trait's name.
    """

    REASON = ErrorReason.TRAIT_NOT_IMPLEMENTED

    def __init__(self, path: str | os.PathLike[str], trait: str, symbol: str, hint: str = "") -> None:
        super().__init__(path, symbol, hint or f"the library does not implement trait {trait}")
        self.trait = trait


class ReleaseInsideCallError(PluginError, RuntimeError):
    """A release (unload, reload, close) was asked for by a thread that is itself
    inside a call through what it releases -- a signal handler or a C callback
    running during that call.  Waiting would wait for itself, so nothing was
    released; release once the call has returned.

    :ivar call: the call the thread is inside (``"greet() of <Greeter proxy ...>"``).
    """

    REASON = ErrorReason.RELEASE_INSIDE_CALL

    def __init__(self, path: str | os.PathLike[str], symbol: str | None, call: str) -> None:
        what = f"{symbol}: " if symbol else ""
        msg = (
            f"{os.fspath(path)}: {what}cannot release from inside a call through it on the same thread "
            f"(in {call}: a signal handler or a C callback); nothing was released, release once the call has returned"
        )
        super().__init__(msg, path=path, symbol=symbol)
        self.call = call


class ArgumentOverflowError(CallArgumentError, OverflowError):
    """A number that does not fit its parameter's C type (an integer out of range, an ``int`` too
    large for a ``float``), for a scalar argument, a struct field or a callback's result.

    Also an ``OverflowError``, what cffi raises for it (and a ``TypeError``, as every
    :class:`CallArgumentError`).
    """

    REASON = ErrorReason.OUT_OF_RANGE


class ArgumentBufferError(CallArgumentError, BufferError):
    """A buffer the call cannot pass as its parameter needs: read-only where the plugin writes
    (``MutBuffer``, ``MutArray``), or not C-contiguous.

    Also a ``BufferError``, what cffi raises for a read-only buffer (and a ``TypeError``, as every
    :class:`CallArgumentError`).
    """

    REASON = ErrorReason.BAD_BUFFER
