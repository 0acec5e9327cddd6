"""The registration pipeline: what the host does with an opened library.

:func:`register_trait` and :func:`unload_trait` are the two halves every
load path runs -- the manager in-process, and the probe child before it
(:mod:`plugin_host.admission`), so whatever the host will do with a library
has already been done once where a crash cannot hurt.
"""

from __future__ import annotations

from plugin_interface import (
    PluginTrait,
    SymbolNotFoundError,
    TraitLike,
    TraitNotImplementedError,
    maker_symbol,
    register_all_symbol,
    resolve_trait,
)

from ..loading import Library
from ._registrations import RegistrationSet, find_maker_types

__all__ = [
    "register_greeter",
    "register_trait",
    "register_transformer",
    "unload_greeter",
    "unload_trait",
    "unload_transformer",
]


def register_trait(library: Library, trait: TraitLike) -> RegistrationSet:
    """Make every registration of ``trait`` the library offers.

    Uses ``plugin_register_all_<T>_v1`` when exported (plugin-owned array);
    otherwise finds ``plugin_register_<T>_<Ty>_v1`` makers in the symbol table
    and builds a host-owned array.

    :raises TraitNotImplementedError: the library has neither.
    """
    spec = resolve_trait(trait)
    aggregate = library.find_symbol(register_all_symbol(spec))
    if aggregate is not None:
        return RegistrationSet.from_aggregate(library, spec, aggregate)
    types = find_maker_types(library, spec)
    if not types:
        hint = f"and no {maker_symbol(spec, '<Type>')} makers either: the library does not implement {spec.name}"
        raise TraitNotImplementedError(library.path, spec.name, register_all_symbol(spec), hint)
    return RegistrationSet.from_makers(library, spec, types)


def unload_trait(library: Library, array: RegistrationSet) -> int | None:
    """Release ``array`` per its ownership rule; the trait's final unmaker counter.

    :returns: ``plugin_unmaker_counter_<T>_v1()`` after the release, or
        ``None`` when the library does not export it.
    :raises AlreadyReleasedError: if ``array`` was released already.
    """
    if array.library is not library:
        raise ValueError(f"{array!r} was not made from {library!r}")
    array.release()
    try:
        return library.get_unmaker_counter(array.trait.name)
    except SymbolNotFoundError:
        return None


def register_greeter(library: Library) -> RegistrationSet:
    """:func:`register_trait` for :attr:`PluginTrait.Greeter`."""
    return register_trait(library, PluginTrait.Greeter)


def unload_greeter(library: Library, array: RegistrationSet) -> int | None:
    """:func:`unload_trait` for a Greeter array: release it, return the counter."""
    return unload_trait(library, array)


def register_transformer(library: Library) -> RegistrationSet:
    """:func:`register_trait` for :attr:`PluginTrait.Transformer`."""
    return register_trait(library, PluginTrait.Transformer)


def unload_transformer(library: Library, array: RegistrationSet) -> int | None:
    """:func:`unload_trait` for a Transformer array: release it, return the counter."""
    return unload_trait(library, array)
