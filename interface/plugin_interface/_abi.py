"""ctypes mirrors of ``plugin_interface.h`` and the symbol naming scheme."""

from __future__ import annotations

import ctypes
import enum
import functools
import re
import sys

from ._record import Record, setfield
from ._traits import TraitSpec

__all__ = [
    "SymbolRole",
    "ABI_VERSION",
    "PluginAbiDescriptor",
    "PluginBytes",
    "PluginRegistration",
    "PluginRegistrationArray",
    "PluginRegistrationFactory",
    "SymbolName",
    "abi_descriptor_symbol",
    "library_filename",
    "maker_symbol",
    "parse_symbol",
    "split_symbol",
    "register_all_symbol",
    "shared_library_suffix",
    "trait_declaration_symbol",
    "unmaker_counter_symbol",
    "unmaker_symbol",
    "unregister_all_symbol",
    "vtable_struct",
]

#: ``PLUGIN_ABI_VERSION`` of ``plugin_interface.h``: the ``_vN`` suffix of symbols.
ABI_VERSION = 1

MAKER_FN = ctypes.CFUNCTYPE(ctypes.c_void_p)
UNMAKER_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class PluginRegistration(ctypes.Structure):
    """Mirror of ``PluginRegistration``."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("abi_version", ctypes.c_uint32),
        ("trait_name", ctypes.c_char_p),
        ("trait_version", ctypes.c_uint32),
        ("vtable_size", ctypes.c_uint32),
        ("type_name", ctypes.c_char_p),
        ("instance", ctypes.c_void_p),
        ("vtable", ctypes.c_void_p),
        ("free_memory", ctypes.c_void_p),
    ]


class PluginBytes(ctypes.Structure):
    """Mirror of ``PluginBytes`` (what an ``OwnedBytes`` method returns)."""

    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class PluginRegistrationFactory(ctypes.Structure):
    """Mirror of ``PluginRegistrationFactory``."""

    _fields_ = [("maker", ctypes.c_void_p), ("unmaker", ctypes.c_void_p)]


class PluginRegistrationArray(ctypes.Structure):
    """Mirror of ``PluginRegistrationArray``."""

    _fields_ = [
        ("registrations", ctypes.POINTER(ctypes.c_void_p)),
        ("len", ctypes.c_size_t),
        ("factories", ctypes.POINTER(PluginRegistrationFactory)),
    ]


class PluginAbiDescriptor(ctypes.Structure):
    """Mirror of ``PluginAbiDescriptor``: the head of ``plugin_abi_descriptor_<T>_v1``.

    ``method_count`` ``uint64_t`` method fingerprints follow it in memory.
    """

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("abi_version", ctypes.c_uint32),
        ("trait_version", ctypes.c_uint32),
        ("registration_size", ctypes.c_uint32),
        ("vtable_size", ctypes.c_uint32),
        ("method_count", ctypes.c_uint32),
        ("fingerprint", ctypes.c_uint64),
    ]


@functools.cache
def vtable_struct(spec: TraitSpec) -> type[ctypes.Structure]:
    """The ctypes mirror of ``<Trait>VTable``: ``size`` then one pointer per method."""
    fields: list[tuple[str, type]] = [("size", ctypes.c_size_t)]
    fields += [(m.name, ctypes.c_void_p) for m in spec.methods]
    return type(spec.vtable_name, (ctypes.Structure,), {"_fields_": fields})


def _name(trait: TraitSpec | str) -> str:
    return trait if isinstance(trait, str) else trait.name


def maker_symbol(trait: TraitSpec | str, type_name: str, abi: int = ABI_VERSION) -> str:
    """``plugin_register_<Trait>_<Type>_v<abi>``."""
    return f"plugin_register_{_name(trait)}_{type_name}_v{abi}"


def unmaker_symbol(trait: TraitSpec | str, type_name: str, abi: int = ABI_VERSION) -> str:
    """``plugin_unregister_<Trait>_<Type>_v<abi>``."""
    return f"plugin_unregister_{_name(trait)}_{type_name}_v{abi}"


def register_all_symbol(trait: TraitSpec | str, abi: int = ABI_VERSION) -> str:
    """``plugin_register_all_<Trait>_v<abi>``."""
    return f"plugin_register_all_{_name(trait)}_v{abi}"


def unregister_all_symbol(trait: TraitSpec | str, abi: int = ABI_VERSION) -> str:
    """``plugin_unregister_all_<Trait>_v<abi>``."""
    return f"plugin_unregister_all_{_name(trait)}_v{abi}"


def unmaker_counter_symbol(trait: TraitSpec | str, abi: int = ABI_VERSION) -> str:
    """``plugin_unmaker_counter_<Trait>_v<abi>``."""
    return f"plugin_unmaker_counter_{_name(trait)}_v{abi}"


def trait_declaration_symbol(trait: TraitSpec | str, abi: int = ABI_VERSION) -> str:
    """``plugin_trait_declaration_<Trait>_v<abi>`` (exported data: the embedded declaration)."""
    return f"plugin_trait_declaration_{_name(trait)}_v{abi}"


def abi_descriptor_symbol(trait: TraitSpec | str, abi: int = ABI_VERSION) -> str:
    """``plugin_abi_descriptor_<Trait>_v<abi>`` (exported data, not a function)."""
    return f"plugin_abi_descriptor_{_name(trait)}_v{abi}"


class SymbolRole(enum.StrEnum):
    """What an exported symbol of the scheme is for (the value is its spelling in JSON dumps)."""

    MAKER = "maker"
    UNMAKER = "unmaker"
    REGISTER_ALL = "register_all"
    UNREGISTER_ALL = "unregister_all"
    UNMAKER_COUNTER = "unmaker_counter"
    ABI_DESCRIPTOR = "abi_descriptor"
    TRAIT_DECLARATION = "trait_declaration"


class SymbolName(Record):
    """A parsed plugin symbol.

    :ivar role: what the symbol is for.
    :ivar trait: the trait name.
    :ivar type_name: the implementation type (makers and unmakers only).
    :ivar abi: the ``_vN`` version.
    """

    __slots__ = ("abi", "role", "trait", "type_name")
    role: SymbolRole
    trait: str
    type_name: str | None
    abi: int

    def __init__(self, role: SymbolRole, trait: str, type_name: str | None, abi: int) -> None:
        setfield(self, "role", role)
        setfield(self, "trait", trait)
        setfield(self, "type_name", type_name)
        setfield(self, "abi", abi)


#: The grammar of the scheme (the reference :func:`parse_symbol` is tested against).
_AGGREGATE_RE = re.compile(
    r"^plugin_(register_all|unregister_all|unmaker_counter|abi_descriptor|trait_declaration)_([A-Za-z][A-Za-z0-9]*)_v([0-9]{1,9})\Z"
)
_IMPL_RE = re.compile(r"^plugin_(register|unregister)_([A-Za-z][A-Za-z0-9]*)_([A-Za-z0-9_]+?)_v([0-9]{1,9})\Z")


_ROLES = {role.value: role for role in SymbolRole}
#: The per-trait roles by their two words (tried before ``register``/``unregister``, which begin two of them).
_AGGREGATE_WORDS = {
    tuple(role.split("_")): _ROLES[role]
    for role in ("register_all", "unregister_all", "unmaker_counter", "abi_descriptor", "trait_declaration")
}
#: The roles of one implementation type by their word.
_IMPL_WORDS = {"register": SymbolRole.MAKER, "unregister": SymbolRole.UNMAKER}


@functools.lru_cache(maxsize=8192)
def split_symbol(symbol: str) -> tuple[SymbolRole, str, str | None, int] | None:
    """:func:`parse_symbol`'s answer as a tuple ``(role, trait, type_name, abi)``; ``None`` if it is not one.

    What ``abi check`` uses for every name of hundreds of libraries (no object made per name).  Trait
    names are letters and digits (no underscore), so the first ``_`` after the trait name separates it
    from the type name.  The grammar is :data:`_AGGREGATE_RE`'s, then :data:`_IMPL_RE`'s
    (``tests/test_symbols.py`` holds this parser to both); it is written out with string methods, and
    cached: libraries built against one header share most of their names.
    """
    head, sep, version = symbol.rpartition("_v")  # both grammars end in _v<digits>: the last "_v"
    if not (sep and head.startswith("plugin_") and 0 < len(version) <= 9 and version.isascii() and version.isdigit()):
        return None
    abi = int(version)
    word, _, rest = head[7:].partition("_")
    second, _, trait = rest.partition("_")
    role = _AGGREGATE_WORDS.get((word, second))
    if role is not None and trait.isascii() and trait.isalnum() and trait[0].isalpha():
        return role, trait, None, abi
    role = _IMPL_WORDS.get(word)
    if role is None:
        return None
    trait, sep, type_name = rest.partition("_")
    if not (sep and type_name and trait.isascii() and trait.isalnum() and trait[0].isalpha()):
        return None
    if not type_name.isascii() or not type_name.replace("_", "a").isalnum():
        return None
    return role, trait, type_name, abi


@functools.lru_cache(maxsize=8192)
def parse_symbol(symbol: str) -> SymbolName | None:
    """Parse one exported symbol of this project's scheme; ``None`` if it is not one.

    :func:`split_symbol`'s parse (cached too: a :class:`SymbolName` is immutable).
    """
    parts = split_symbol(symbol)
    return None if parts is None else SymbolName(*parts)


def shared_library_suffix(platform: str | None = None) -> str:
    """``.so``, ``.dll`` or ``.dylib`` for ``platform`` (default: this one)."""
    platform = platform or sys.platform
    if platform.startswith(("win", "cygwin", "msys")):
        return ".dll"
    if platform == "darwin":
        return ".dylib"
    return ".so"


def library_filename(name: str, platform: str | None = None) -> str:
    """The platform's file name for library ``name``.

    ``libname.so`` on Linux and other ELF systems, ``name.dll`` on Windows,
    ``libname.dylib`` on macOS.
    """
    suffix = shared_library_suffix(platform)
    return f"{name}{suffix}" if suffix == ".dll" else f"lib{name}{suffix}"
