"""The registry layer: registration arrays, their checks and ownership, proxies.

Above :mod:`plugin_host.loading` (it reads plugin memory of an opened
:class:`~plugin_host.loading.Library`), below admission and the manager.
"""

from __future__ import annotations

from ._declarations import (
    check_declarations,
    embedded_trait,
    implemented_traits,
    read_declaration,
    requested_trait,
    trait_for,
)
from ._pipeline import (
    Exercised,
    MakerCache,
    exercise,
    open_and_register,
    prepare,
    register_greeter,
    register_trait,
    register_traits,
    register_transformer,
    release_sets,
    unload_greeter,
    unload_trait,
    unload_transformer,
)
from ._proxy import PluginObject, TraitProxy, make_proxy, proxy_class
from ._registrations import Registration, RegistrationSet, find_maker_types, verify_descriptor

__all__ = [
    "Exercised",
    "MakerCache",
    "PluginObject",
    "Registration",
    "RegistrationSet",
    "TraitProxy",
    "check_declarations",
    "embedded_trait",
    "exercise",
    "find_maker_types",
    "implemented_traits",
    "make_proxy",
    "open_and_register",
    "prepare",
    "proxy_class",
    "read_declaration",
    "register_greeter",
    "register_trait",
    "register_traits",
    "register_transformer",
    "release_sets",
    "requested_trait",
    "trait_for",
    "unload_greeter",
    "unload_trait",
    "unload_transformer",
    "verify_descriptor",
]
