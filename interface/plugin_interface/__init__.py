"""plugin_interface: the ABI contract between C plugins and the Python host.

The C header(s) plugin authors include (:func:`get_include`), the ctypes
mirrors of their structs, the trait declarations, the symbol naming scheme and
the error types.  No loading policy lives here: that is ``plugin_host``.
"""

from __future__ import annotations

from pathlib import Path

from ._abi import (
    ABI_VERSION,
    PluginAbiDescriptor,
    PluginRegistration,
    PluginRegistrationArray,
    PluginRegistrationFactory,
    SymbolName,
    SymbolRole,
    abi_descriptor_symbol,
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
from ._descriptor import AbiDescriptor, AbiDifference, DescriptorCheck, check_descriptor
from ._errors import (
    AbiMismatchError,
    AlreadyReleasedError,
    ArchitectureMismatchError,
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
    PluginUnloadedError,
    SignatureError,
    SymbolNotFoundError,
    TraitNotImplementedError,
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
from ._types import F64, I32, I64, U32, U64, Bool, Buffer, CStr, CType, MutBuffer, OwnedStr, Size, TypeKind

__all__ = [
    "ABI_VERSION",
    "AbiDescriptor",
    "AbiDifference",
    "AbiMismatchError",
    "AlreadyReleasedError",
    "ArchitectureMismatchError",
    "Bool",
    "Buffer",
    "CStr",
    "CType",
    "CallArgumentError",
    "DescriptorCheck",
    "ErrorReason",
    "F64",
    "Greeter",
    "I32",
    "I64",
    "InconsistentArrayError",
    "LibraryLoadError",
    "MakerReturnedNullError",
    "MethodNotProvidedError",
    "MethodSpec",
    "ModuleNotFoundInPathsError",
    "MutBuffer",
    "NoPluginSymbolsError",
    "NotASharedLibraryError",
    "OwnedStr",
    "ParamSpec",
    "PluginCallError",
    "PluginError",
    "PluginLoadErrors",
    "PluginAbiDescriptor",
    "PluginRegistration",
    "PluginRegistrationArray",
    "PluginRegistrationFactory",
    "PluginTrait",
    "PluginUnloadedError",
    "SignatureError",
    "Size",
    "SupportsUnmakerCounter",
    "SymbolName",
    "SymbolRole",
    "SymbolNotFoundError",
    "TraitLike",
    "TraitNotImplementedError",
    "TraitSpec",
    "Transformer",
    "TypeKind",
    "U32",
    "U64",
    "UnknownTraitError",
    "abi_descriptor_symbol",
    "check_descriptor",
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
