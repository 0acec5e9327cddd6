"""plugin_host: load native C plugins with ctypes, call them, unload them.

>>> from plugin_host import PluginManager, PluginTrait
>>> manager = PluginManager()
>>> [handle] = manager.load_plugins("build/plugins/libgreeters.so", PluginTrait.Greeter)
>>> [p.greet("world") for p in handle.proxies()]            # doctest: +SKIP
['Hello, world!', 'Bonjour, world!', '¡Hola, world!']
>>> manager.unload_by_path(handle.path)                        # doctest: +SKIP
{'Greeter': 3}
"""

from __future__ import annotations

from plugin_interface import (
    PluginError,
    PluginTrait,
    get_unmaker_counter,
    get_unmaker_counter_for,
)

from ._library import Library
from ._manager import PluginHandle, PluginManager, Reloaded, is_plugin_file, register_trait, unload_trait
from ._module import DynamicModule, ModuleFunction
from ._policy import LoadPolicy
from ._probe import DEFAULT_PROBE_TIMEOUT_S, ProbeCache, ProbeResult, probe_library
from ._proxy import TraitProxy, proxy_class
from ._registrations import Registration, RegistrationSet
from ._watch import (
    DEFAULT_DEBOUNCE_MS,
    Error,
    Event,
    ManagerNotification,
    Unloaded,
    WatchNotification,
    WatchOptions,
    process_watch_notifications_blocking,
    start_watch_background,
    watch_and_load_blocking,
)

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_PROBE_TIMEOUT_S",
    "DynamicModule",
    "Error",
    "Event",
    "Library",
    "LoadPolicy",
    "ManagerNotification",
    "ModuleFunction",
    "PluginError",
    "PluginHandle",
    "PluginManager",
    "PluginTrait",
    "ProbeCache",
    "ProbeResult",
    "Registration",
    "RegistrationSet",
    "Reloaded",
    "TraitProxy",
    "Unloaded",
    "WatchNotification",
    "WatchOptions",
    "get_unmaker_counter",
    "get_unmaker_counter_for",
    "is_plugin_file",
    "probe_library",
    "process_watch_notifications_blocking",
    "proxy_class",
    "register_greeter",
    "register_trait",
    "register_transformer",
    "start_watch_background",
    "unload_greeter",
    "unload_trait",
    "unload_transformer",
    "watch_and_load_blocking",
]


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
