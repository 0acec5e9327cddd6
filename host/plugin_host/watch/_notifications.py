"""What the owner thread reports to the caller.

:class:`Loaded`, :class:`Unloaded` and
:class:`LoadFailed` are what the owner thread reports to the caller
(:data:`ManagerNotification`).  ``Event`` and ``Error`` are the original
names of ``Loaded`` and ``LoadFailed``, kept as aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from .._manager import PluginHandle
from ..registry import TraitProxy

__all__ = [
    "Error",
    "Event",
    "LoadFailed",
    "Loaded",
    "ManagerNotification",
    "NotificationCallback",
    "Unloaded",
]


@dataclass(frozen=True)
class Loaded:
    """A plugin file was loaded (or, without ``auto_load``, discovered).

    :ivar path: the plugin file.
    :ivar handles: the new version's handles, one per trait (empty without
        ``auto_load``).
    :ivar proxies: their typed proxies, with ``emit_proxies``.
    :ivar replaced: a previous version was loaded; with ``auto_unload`` its
        :class:`Unloaded` notifications follow.
    """

    path: Path
    handles: tuple[PluginHandle, ...] = ()
    proxies: tuple[TraitProxy, ...] = ()
    replaced: bool = False


@dataclass(frozen=True)
class Unloaded:
    """A version of a plugin file was unloaded.

    :ivar path: the plugin file.
    :ivar counter: the trait's unmaker counter read after the release, just
        before the library was closed (``None`` if the plugin does not export it).
    :ivar trait: the trait whose registrations were released.
    """

    path: Path
    counter: int | None
    trait: str = ""


@dataclass(frozen=True)
class LoadFailed:
    """A plugin file failed to load (the previous version, if any, still serves),
    or the watcher itself failed (``path`` is then the watched directory).

    :ivar path: the file (or directory) concerned.
    :ivar error: the typed error, e.g. :class:`~plugin_interface.SymbolNotFoundError`.
    """

    path: Path
    error: BaseException = field(compare=False)

    @property
    def reason(self) -> str:
        """The error's message (it names the file and the symbol)."""
        return str(self.error)


#: What :func:`process_watch_notifications_blocking` hands to its callback.
ManagerNotification: TypeAlias = Loaded | Unloaded | LoadFailed
#: The original names of :class:`Loaded` and :class:`LoadFailed`.
Event = Loaded
Error = LoadFailed
#: A callback; returning ``False`` ends processing.
NotificationCallback: TypeAlias = Callable[[ManagerNotification], "bool | None"]
