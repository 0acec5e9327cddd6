"""Hot reload: an observer thread that collects paths, an owner thread that loads.

:mod:`._observer` runs watchdog and debounces (it decides nothing);
:mod:`._processor` runs on the thread that owns the manager and performs
every load and unload.  The top of the host, below only the CLI.
"""

from __future__ import annotations

from ._notifications import Error, Event, Loaded, LoadFailed, ManagerNotification, NotificationCallback, Unloaded
from ._observer import MAX_DELAY_WINDOWS, ROOT_CHECK_S, start_watch_background
from ._options import DEFAULT_DEBOUNCE_MS, WatchNotification, WatchOptions
from ._processor import process_watch_notifications_blocking, watch_and_load_blocking

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "MAX_DELAY_WINDOWS",
    "ROOT_CHECK_S",
    "Error",
    "Event",
    "LoadFailed",
    "Loaded",
    "ManagerNotification",
    "NotificationCallback",
    "Unloaded",
    "WatchNotification",
    "WatchOptions",
    "process_watch_notifications_blocking",
    "start_watch_background",
    "watch_and_load_blocking",
]
