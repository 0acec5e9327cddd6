"""plugin_interface: the ABI contract between C plugins and the Python host.

The C header(s) plugin authors include (:func:`get_include`), the ctypes
mirrors of their structs, the trait declarations, the symbol naming scheme and
the error types.  No loading policy lives here: that is ``plugin_host``.
"""

from __future__ import annotations

from pathlib import Path

from ._abi import (
    ABI_VERSION,
    PluginRegistration,
    PluginRegistrationArray,
    PluginRegistrationFactory,
    SymbolName,
    library_filename,
    maker_symbol,
    parse_symbol,
    register_all_symbol,
    shared_library_suffix,
    unmaker_counter_symbol,
    unmaker_symbol,
    unregister_all_symbol,
    vtable_struct,
)
from ._counters import SupportsUnmakerCounter, get_unmaker_counter, get_unmaker_counter_for
from ._errors import (
    AbiMismatchError,
    AlreadyReleasedError,
    InconsistentArrayError,
    LibraryLoadError,
    MakerReturnedNullError,
    NotASharedLibraryError,
    PluginCallError,
    PluginError,
    PluginLoadErrors,
    PluginUnloadedError,
    SymbolNotFoundError,
    UnknownTraitError,
)
from ._traits import (
    Greeter,
    MethodSpec,
    ParamSpec,
    PluginTrait,
    TraitLike,
    TraitSpec,
    Transformer,
    declare_trait,
    declared_traits,
    resolve_trait,
)
from ._types import F64, I32, I64, U32, U64, Bool, Buffer, CStr, CType, MutBuffer, OwnedStr, Size

__all__ = [
    "ABI_VERSION",
    "AbiMismatchError",
    "AlreadyReleasedError",
    "Bool",
    "Buffer",
    "CStr",
    "CType",
    "F64",
    "Greeter",
    "I32",
    "I64",
    "InconsistentArrayError",
    "LibraryLoadError",
    "MakerReturnedNullError",
    "MethodSpec",
    "MutBuffer",
    "NotASharedLibraryError",
    "OwnedStr",
    "ParamSpec",
    "PluginCallError",
    "PluginError",
    "PluginLoadErrors",
    "PluginRegistration",
    "PluginRegistrationArray",
    "PluginRegistrationFactory",
    "PluginTrait",
    "PluginUnloadedError",
    "Size",
    "SupportsUnmakerCounter",
    "SymbolName",
    "SymbolNotFoundError",
    "TraitLike",
    "TraitSpec",
    "Transformer",
    "U32",
    "U64",
    "UnknownTraitError",
    "declare_trait",
    "declared_traits",
    "get_include",
    "get_unmaker_counter",
    "get_unmaker_counter_for",
    "library_filename",
    "maker_symbol",
    "parse_symbol",
    "register_all_symbol",
    "resolve_trait",
    "shared_library_suffix",
    "unmaker_counter_symbol",
    "unmaker_symbol",
    "unregister_all_symbol",
    "vtable_struct",
]


def get_include() -> str:
    """The directory holding ``plugin_interface.h`` and the built-in trait headers."""
    return str(Path(__file__).parent / "include")
