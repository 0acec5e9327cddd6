"""Every error the host raises, in one place: ``from plugin_host.errors import ...``.

The contract's errors come from :mod:`plugin_interface`; the host's own live
beside the layer that raises them (the load policy's in
:mod:`plugin_host.loading`, the probe's in :mod:`plugin_host.admission`) and
are re-exported here.  Every one is a :class:`PluginError` with a
:class:`ErrorReason` in ``.reason``.
"""

from __future__ import annotations

from plugin_interface import (
    AbiMismatchError,
    AlreadyLoadedError,
    AlreadyReleasedError,
    ArchitectureMismatchError,
    ArgumentBufferError,
    ArgumentOverflowError,
    CallArgumentError,
    ErrorReason,
    InconsistentArrayError,
    LibraryLoadError,
    MakerReturnedNullError,
    MethodNotProvidedError,
    ModuleNotFoundInPathsError,
    NoPluginSymbolsError,
    NotASharedLibraryError,
    PluginCallError,
    PluginError,
    PluginLoadErrors,
    PluginMethodError,
    PluginUnloadedError,
    ReleaseInsideCallError,
    SignatureError,
    SymbolNotFoundError,
    TraitNotImplementedError,
    UnknownTraitError,
)

from .admission import (
    BlockedPluginError,
    ProbeCrashedError,
    ProbeError,
    ProbeExitedError,
    ProbeProtocolError,
    ProbeTimeoutError,
)
from .loading import InsecurePluginError

__all__ = [
    "AbiMismatchError",
    "AlreadyLoadedError",
    "AlreadyReleasedError",
    "ArchitectureMismatchError",
    "ArgumentBufferError",
    "ArgumentOverflowError",
    "BlockedPluginError",
    "CallArgumentError",
    "ErrorReason",
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
    "PluginMethodError",
    "PluginUnloadedError",
    "ProbeCrashedError",
    "ProbeError",
    "ProbeExitedError",
    "ProbeProtocolError",
    "ProbeTimeoutError",
    "ReleaseInsideCallError",
    "SignatureError",
    "SymbolNotFoundError",
    "TraitNotImplementedError",
    "UnknownTraitError",
]
