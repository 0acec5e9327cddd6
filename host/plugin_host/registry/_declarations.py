"""Which traits a loaded library implements, and their declarations: Python's, or the library's own.

A library built with the macros embeds its traits' declarations
(``plugin_trait_declaration_<T>_v1``, see :mod:`plugin_interface._declaration`),
so the host can load and call a trait it has no Python declaration for.
When it has one, the two must agree method by method (where both have the
method: a plugin built against another version of the trait may have more
or fewer), and a disagreement names the method.
"""

from __future__ import annotations

import functools

import cffi
from plugin_interface import (
    ABI_VERSION,
    MAX_DECLARATION_BYTES,
    AbiMismatchError,
    SymbolRole,
    TraitLike,
    TraitSpec,
    UnknownTraitError,
    declared_traits,
    decode_declaration,
    parse_symbol,
    resolve_trait,
    trait_declaration_symbol,
)

from ..loading import Library

__all__ = [
    "check_declarations",
    "embedded_trait",
    "implemented_traits",
    "read_declaration",
    "requested_trait",
    "trait_for",
]

_ffi = cffi.FFI()
_CHAR_P = _ffi.typeof("char *")
_REGISTER_PREFIX = "plugin_register_"


# Decoding is a pure function of the bytes (a TraitSpec is immutable), and every build of a plugin
# carries the same bytes: a watcher reloading new builds, or a directory of plugins of one trait,
# decodes each distinct declaration once (abi._check keeps its own cache, for files).
@functools.lru_cache(maxsize=256)
def _decode(data: bytes) -> TraitSpec:
    return decode_declaration(data)


def implemented_traits(library: Library) -> list[str]:
    """The traits the library has an aggregate or a maker of (at this host's ABI version), sorted."""
    names = set()
    # Both roles' names start so (plugin_register_all_<T>_v1, plugin_register_<T>_<Type>_v1): only those are read.
    for symbol in library.exported_names(_REGISTER_PREFIX):
        parsed = parse_symbol(symbol)
        if (
            parsed is not None
            and parsed.abi == ABI_VERSION
            and parsed.role in (SymbolRole.REGISTER_ALL, SymbolRole.MAKER)
        ):
            names.add(parsed.trait)
    return sorted(names)


def read_declaration(library: Library, trait: str) -> TraitSpec | None:
    """The declaration the library embeds for ``trait``, or ``None`` when it embeds none.

    **Safety**: reads at most :data:`~plugin_interface.MAX_DECLARATION_BYTES` of the
    library's data, up to the first NUL (the probe runs this too, for untrusted files).

    :raises AbiMismatchError: the embedded bytes are no declaration of ``trait``.
    """
    symbol = trait_declaration_symbol(trait)
    address = library.find_symbol(symbol)
    if address is None:
        return None
    data: bytes = _ffi.string(_ffi.cast(_CHAR_P, address), MAX_DECLARATION_BYTES)
    try:
        spec = _decode(data)
    except ValueError as e:
        raise AbiMismatchError(library.path, symbol, "declaration", "a readable declaration", str(e)) from e
    if spec.name != trait:
        raise AbiMismatchError(library.path, symbol, "declaration name", trait, spec.name)
    return spec


def check_declarations(library: Library, host: TraitSpec, plugin: TraitSpec) -> None:
    """Refuse a library whose embedded declaration disagrees with the host's, naming each method.

    Only the methods both have are compared (in vtable order): the descriptor's
    compatibility rule decides about appended ones.

    :raises AbiMismatchError: with ``field`` ``"method N"`` of the first difference; every one in the message.
    """
    differences = []
    for i, (mine, theirs) in enumerate(zip(host.methods, plugin.methods, strict=False)):
        if mine.signature != theirs.signature:
            differences.append((i, mine, theirs))
    if not differences:
        return
    i, mine, theirs = differences[0]
    notes = [f"also method {j} `{m.name}`: host {m.signature}, plugin {t.signature}" for j, m, t in differences[1:]]
    raise AbiMismatchError(
        library.path,
        trait_declaration_symbol(host.name),
        f"method {i} `{mine.name}`",
        mine.signature,
        theirs.signature,
        trait=host.name,
        note="; ".join(notes),
    )


def trait_for(library: Library, name: str) -> TraitSpec:
    """The declaration to load trait ``name`` of the library with.

    The host's Python declaration (checked against the embedded one when the
    library has both), else the embedded one.

    :raises UnknownTraitError: neither exists.
    :raises AbiMismatchError: they disagree, or the embedded one is unreadable.
    """
    host = declared_traits().get(name)
    embedded = read_declaration(library, name)
    if host is not None and embedded is not None:
        check_declarations(library, host, embedded)
    spec = host or embedded
    if spec is None:
        known = sorted(declared_traits())
        raise UnknownTraitError(f"{name} (in {library.path}, which embeds no declaration of it)", known)
    return spec


def requested_trait(trait: TraitLike) -> TraitSpec | str:
    """The host's declaration of ``trait``; a name (``"Name"``, ``"Name@2"``) it declares no such
    version of stays a name, for :func:`embedded_trait` to resolve in each library.

    :raises UnknownTraitError: ``trait`` is not a name and not a declaration.
    """
    try:
        return resolve_trait(trait)
    except UnknownTraitError:
        if isinstance(trait, str):
            return trait
        raise


def embedded_trait(library: Library, trait: str) -> TraitSpec:
    """The library's own declaration of ``trait`` (``"Name"`` or ``"Name@N"``), for a trait this
    host declares no such version of (what :func:`requested_trait` left a name).

    :raises UnknownTraitError: the library implements no trait of that name, embeds no
        declaration of it, or declares another version (the message says what it knows).
    :raises AbiMismatchError: the embedded declaration is unreadable.
    """
    name, _, wanted = trait.partition("@")
    implemented = implemented_traits(library)
    if name not in implemented:
        raise UnknownTraitError(trait, sorted({*declared_traits(), *implemented}), library.path)
    spec = read_declaration(library, name)
    if spec is None:
        raise UnknownTraitError(f"{trait} (it embeds no declaration of it)", list(declared_traits()), library.path)
    if wanted and str(spec.version) != wanted.removeprefix("v"):
        raise UnknownTraitError(trait, [f"{spec.name}@{spec.version}"], library.path)
    return spec
