"""The registry layer: registration arrays, their checks and ownership, proxies.

Above :mod:`plugin_host.loading` (it reads plugin memory of an opened
:class:`~plugin_host.loading.Library`), below admission and the manager.
"""

from __future__ import annotations

from ._pipeline import (
    Exercised,
    exercise,
    register_greeter,
    register_trait,
    register_traits,
    register_transformer,
    release_sets,
    unload_greeter,
    unload_trait,
    unload_transformer,
)
from ._proxy import TraitProxy, make_proxy, proxy_class
from ._registrations import Registration, RegistrationSet, find_maker_types, verify_descriptor

__all__ = [
    "Exercised",
    "Registration",
    "RegistrationSet",
    "TraitProxy",
    "exercise",
    "find_maker_types",
    "make_proxy",
    "proxy_class",
    "register_greeter",
    "register_trait",
    "register_traits",
    "register_transformer",
    "release_sets",
    "unload_greeter",
    "unload_trait",
    "unload_transformer",
    "verify_descriptor",
]
