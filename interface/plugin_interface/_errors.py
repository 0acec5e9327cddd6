"""The typed errors of the plugin system: one root, one class per concept.

Every error carries the facts as attributes (``path``, ``symbol``, ...) and
names the file and the symbol in its message.
"""

from __future__ import annotations

import os

__all__ = [
    "AbiMismatchError",
    "AlreadyReleasedError",
    "ArchitectureMismatchError",
    "BlockedPluginError",
    "CallArgumentError",
    "InconsistentArrayError",
    "InsecurePluginError",
    "LibraryLoadError",
    "MakerReturnedNullError",
    "MethodNotProvidedError",
    "ModuleNotFoundInPathsError",
    "NoPluginSymbolsError",
    "NotASharedLibraryError",
    "PluginCallError",
    "PluginError",
    "PluginLoadErrors",
    "PluginUnloadedError",
    "ProbeCrashedError",
    "ProbeError",
    "ProbeExitedError",
    "ProbeProtocolError",
    "ProbeTimeoutError",
    "SignatureError",
    "SymbolNotFoundError",
    "UnknownTraitError",
]


def _fspath(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


class PluginError(Exception):
    """Root of every error raised by the plugin system.

    :ivar path: the library file concerned, when there is one.
    :ivar symbol: the C symbol concerned, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        symbol: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = _fspath(path)
        self.symbol = symbol


class NotASharedLibraryError(PluginError):
    """The file is not a shared library this host can load (text, empty, ...)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        msg = f"{os.fspath(path)}: not a loadable shared library: {reason}"
        super().__init__(msg, path=path)
        self.reason = reason


class LibraryLoadError(PluginError):
    """The dynamic loader refused the library (undefined symbol, bad format, ...)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        msg = f"{os.fspath(path)}: the dynamic loader refused it: {reason}"
        super().__init__(msg, path=path)
        self.reason = reason


class SymbolNotFoundError(PluginError):
    """A symbol the host needs is not exported by the library."""

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

    def __init__(self, path: str | os.PathLike[str], symbol: str) -> None:
        msg = f"{os.fspath(path)}: {symbol} returned NULL"
        super().__init__(msg, path=path, symbol=symbol)


class InconsistentArrayError(PluginError):
    """A registration array is malformed (NULL entries, factories missing, ...)."""

    def __init__(self, path: str | os.PathLike[str], symbol: str, reason: str) -> None:
        msg = f"{os.fspath(path)}: {symbol} returned an inconsistent array: {reason}"
        super().__init__(msg, path=path, symbol=symbol)
        self.reason = reason


class AlreadyReleasedError(PluginError):
    """A registration set was released twice; the second release did nothing."""

    def __init__(self, path: str | os.PathLike[str], symbol: str) -> None:
        msg = f"{os.fspath(path)}: {symbol}: registrations already released"
        super().__init__(msg, path=path, symbol=symbol)


class PluginUnloadedError(PluginError):
    """A proxy or handle was used after its library was unloaded."""

    def __init__(self, path: str | os.PathLike[str], symbol: str | None = None) -> None:
        what = f"{symbol}: " if symbol else ""
        msg = f"{os.fspath(path)}: {what}the library has been unloaded"
        super().__init__(msg, path=path, symbol=symbol)


class PluginCallError(PluginError):
    """A call into a plugin reported failure (for example a NULL string)."""


class MethodNotProvidedError(PluginCallError):
    """A method of the host's trait declaration that an older plugin lacks.

    The plugin was built against an earlier version of the trait (fewer
    methods); its other methods work.

    :ivar method: the method name.
    """

    def __init__(self, path: str | os.PathLike[str], symbol: str, method: str, provided: int, declared: int) -> None:
        msg = (
            f"{os.fspath(path)}: {symbol}: not provided by this plugin, which was built against "
            f"an earlier trait version with {provided} of the host's {declared} methods"
        )
        super().__init__(msg, path=path, symbol=symbol)
        self.method = method


class UnknownTraitError(PluginError, LookupError):
    """A trait name that is neither built in nor declared."""

    def __init__(self, name: str, known: list[str]) -> None:
        msg = f"unknown trait {name!r}; known traits: {', '.join(sorted(known)) or 'none'}"
        super().__init__(msg)
        self.name = name


class PluginLoadErrors(PluginError):
    """Several files of a directory failed to load; the good ones stayed loaded.

    :ivar errors: one :class:`PluginError` per failed file.
    :ivar loaded: the handles that did load (they remain owned by the manager).
    """

    def __init__(self, path: str | os.PathLike[str], errors: list[PluginError], loaded: list[object]) -> None:
        lines = "\n".join(f"  - {e}" for e in errors)
        msg = f"{os.fspath(path)}: {len(errors)} plugin file(s) failed to load:\n{lines}"
        super().__init__(msg, path=path)
        self.errors = errors
        self.loaded = loaded


class ModuleNotFoundInPathsError(PluginError, LookupError):
    """No shared library of that name where :class:`~plugin_host.DynamicModule` looked.

    :ivar name: the module name asked for (``"my_plugin"``, ``"m"``).
    :ivar searched: every place tried, in order (files, then the system loader).
    """

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
    :ivar reason: what is wrong with it (the C parser's message).
    """

    def __init__(self, signature: object, reason: str, *, symbol: str | None = None) -> None:
        what = f"{symbol}: " if symbol else ""
        msg = f"{what}bad C signature {signature!r}: {reason}"
        super().__init__(msg, symbol=symbol)
        self.signature = signature
        self.reason = reason


class CallArgumentError(PluginError, TypeError):
    """Arguments that do not fit a C function's signature, caught before the call.

    :ivar signature: the function's C signature.
    :ivar reason: which argument is wrong, and how.
    """

    def __init__(self, path: str | os.PathLike[str], symbol: str, signature: str, reason: str) -> None:
        msg = f"{os.fspath(path)}: {symbol} ({signature}): {reason}"
        super().__init__(msg, path=path, symbol=symbol)
        self.signature = signature
        self.reason = reason


# ---- untrusted plugins: policy, pre-check, isolated probe (issue 6) ----------


class InsecurePluginError(PluginError):
    """The load policy refused a file before reading it as a library.

    :ivar reason: why (``"writable by group and others (mode 0o666)"``, ...).
    :ivar opt_out: how to load it anyway, per manager.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, opt_out: str) -> None:
        msg = f"{os.fspath(path)}: refused by the load policy: {reason}; to load it anyway: {opt_out}"
        super().__init__(msg, path=path)
        self.reason = reason
        self.opt_out = opt_out


class ArchitectureMismatchError(NotASharedLibraryError):
    """A shared library built for another machine, word size or byte order.

    :ivar field: ``"machine"``, ``"class"`` or ``"byte order"``.
    :ivar expected: this host's value (``"x86-64"``).
    :ivar found: the file's value (``"aarch64"``).
    """

    def __init__(self, path: str | os.PathLike[str], field: str, expected: str, found: str) -> None:
        super().__init__(path, f"built for {found}, this host is {expected}")
        self.field = field
        self.expected = expected
        self.found = found


class NoPluginSymbolsError(SymbolNotFoundError):
    """A shared library that exports no ``plugin_register_*`` symbol at all."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, "plugin_register_*", "no plugin symbols at all: not a plugin library")


class ProbeError(PluginError):
    """The isolated probe (a child process) saw the library fail fatally.

    The host process did not load the library.  The failure is recorded in
    the blocklist until the file changes.

    :ivar step: what the child was doing (``"dlopen"`` = constructors, or a symbol).
    """

    def __init__(self, path: str | os.PathLike[str], what: str, step: str) -> None:
        symbol = step if step.startswith("plugin_") else None
        msg = f"{os.fspath(path)}: isolated probe: {what} during {step}; not loaded into the host"
        super().__init__(msg, path=path, symbol=symbol)
        self.step = step


class ProbeCrashedError(ProbeError):
    """The probe child was killed by a signal (SIGSEGV, SIGBUS, SIGABRT, ...).

    :ivar signal: the signal number.
    :ivar signal_name: its name (``"SIGSEGV"``).
    """

    def __init__(self, path: str | os.PathLike[str], signal: int, signal_name: str, step: str) -> None:
        super().__init__(path, f"crashed with {signal_name} (signal {signal})", step)
        self.signal = signal
        self.signal_name = signal_name


class ProbeExitedError(ProbeError):
    """The library ended the probe child with ``exit()`` before it reported.

    :ivar exit_code: the child's exit status.
    """

    def __init__(self, path: str | os.PathLike[str], exit_code: int, step: str) -> None:
        super().__init__(path, f"the process exited with status {exit_code}", step)
        self.exit_code = exit_code


class ProbeTimeoutError(ProbeError):
    """The probe child did not finish in time (a constructor or maker hangs).

    :ivar timeout_s: the time limit, in seconds.
    """

    def __init__(self, path: str | os.PathLike[str], timeout_s: float, step: str) -> None:
        super().__init__(path, f"no answer within {timeout_s:g} s (killed)", step)
        self.timeout_s = timeout_s


class ProbeProtocolError(ProbeError):
    """The probe child's report broke the protocol (version, size cap, framing).

    :ivar reason: what was wrong.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, step: str) -> None:
        super().__init__(path, f"bad report: {reason}", step)
        self.reason = reason


class BlockedPluginError(PluginError):
    """The file failed an isolated probe before and has not changed since.

    :ivar reason: the recorded failure.
    :ivar sha256: the content hash the failure was recorded for.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, sha256: str) -> None:
        msg = (
            f"{os.fspath(path)}: blocked: an isolated probe of this exact file (sha256 {sha256[:12]}...) "
            f"failed: {reason}; it is retried once the file changes"
        )
        super().__init__(msg, path=path)
        self.reason = reason
        self.sha256 = sha256
