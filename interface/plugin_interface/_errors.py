"""The typed errors of the plugin system: one root, one class per concept.

Every error carries the facts as attributes (``path``, ``symbol``, ...) and
names the file and the symbol in its message.
"""

from __future__ import annotations

import os

__all__ = [
    "AbiMismatchError",
    "AlreadyReleasedError",
    "InconsistentArrayError",
    "LibraryLoadError",
    "MakerReturnedNullError",
    "NotASharedLibraryError",
    "PluginCallError",
    "PluginError",
    "PluginLoadErrors",
    "PluginUnloadedError",
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
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        symbol: str,
        field: str,
        expected: object,
        found: object,
    ) -> None:
        msg = (
            f"{os.fspath(path)}: {symbol}: {field} mismatch: "
            f"host expects {expected!r}, plugin has {found!r}"
        )
        super().__init__(msg, path=path, symbol=symbol)
        self.field = field
        self.expected = expected
        self.found = found


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
