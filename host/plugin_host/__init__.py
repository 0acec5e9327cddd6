"""plugin_host: load native plugins with ctypes, call them, unload them.

>>> from plugin_host import PluginManager, PluginTrait
>>> manager = PluginManager()
>>> [handle] = manager.load_plugins("build/plugins/libgreeters.so", PluginTrait.Greeter)
>>> [p.greet("world") for p in handle.proxies()]            # doctest: +SKIP
['Hello, world!', 'Bonjour, world!', '¡Hola, world!']
>>> manager.unload_by_path(handle.path)                        # doctest: +SKIP
{'Greeter': 3}

The names below are the public API; each layer's own names live in its
subpackage (:mod:`plugin_host.loading`, :mod:`~plugin_host.registry`,
:mod:`~plugin_host.admission`, :mod:`~plugin_host.watch`,
:mod:`~plugin_host.abi`, :mod:`~plugin_host.formats`; see ARCHITECTURE.md).
They are imported on first use, so ``import plugin_host`` stays cheap (the
watcher's watchdog, for one, is imported only by a program that watches).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugin_interface import PluginError, PluginTrait, get_unmaker_counter, get_unmaker_counter_for

    from ._manager import (
        PluginHandle,
        PluginManager,
        ProbeMode,
        UnloadResult,
        UnloadResults,
        load_plugins,
        unload_by_path,
    )
    from .loading import DynamicModule, LibraryStillMappedWarning, LoadPolicy
    from .registry import (
        register_greeter,
        register_trait,
        register_transformer,
        unload_greeter,
        unload_trait,
        unload_transformer,
    )
    from .watch import (
        Loaded,
        LoadFailed,
        ManagerNotification,
        Unloaded,
        WatchNotification,
        WatchOptions,
        process_watch_notifications_blocking,
        start_watch_background,
        watch_and_load_blocking,
    )

__all__ = [
    "DynamicModule",
    "LibraryStillMappedWarning",
    "LoadFailed",
    "LoadPolicy",
    "Loaded",
    "ManagerNotification",
    "PluginError",
    "PluginHandle",
    "PluginManager",
    "PluginTrait",
    "ProbeMode",
    "UnloadResult",
    "UnloadResults",
    "Unloaded",
    "WatchNotification",
    "WatchOptions",
    "get_unmaker_counter",
    "get_unmaker_counter_for",
    "load_plugins",
    "process_watch_notifications_blocking",
    "register_greeter",
    "register_trait",
    "register_transformer",
    "start_watch_background",
    "unload_by_path",
    "unload_greeter",
    "unload_trait",
    "unload_transformer",
    "watch_and_load_blocking",
]

_HOMES = {
    "PluginError": "plugin_interface",
    "PluginTrait": "plugin_interface",
    "get_unmaker_counter": "plugin_interface",
    "get_unmaker_counter_for": "plugin_interface",
    "PluginHandle": "plugin_host._manager",
    "PluginManager": "plugin_host._manager",
    "ProbeMode": "plugin_host._manager",
    "UnloadResult": "plugin_host._manager",
    "UnloadResults": "plugin_host._manager",
    "load_plugins": "plugin_host._manager",
    "unload_by_path": "plugin_host._manager",
    "DynamicModule": "plugin_host.loading",
    "LoadPolicy": "plugin_host.loading",
    "LibraryStillMappedWarning": "plugin_host.loading",
    "register_trait": "plugin_host.registry",
    "unload_trait": "plugin_host.registry",
    "register_greeter": "plugin_host.registry",
    "unload_greeter": "plugin_host.registry",
    "register_transformer": "plugin_host.registry",
    "unload_transformer": "plugin_host.registry",
    # The original names of Loaded and LoadFailed (not in __all__, still importable).
    "Event": "plugin_host.watch",
    "Error": "plugin_host.watch",
    "Loaded": "plugin_host.watch",
    "LoadFailed": "plugin_host.watch",
    "ManagerNotification": "plugin_host.watch",
    "Unloaded": "plugin_host.watch",
    "WatchNotification": "plugin_host.watch",
    "WatchOptions": "plugin_host.watch",
    "process_watch_notifications_blocking": "plugin_host.watch",
    "start_watch_background": "plugin_host.watch",
    "watch_and_load_blocking": "plugin_host.watch",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'plugin_host' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
