"""How a directory is watched, and what the observer thread sends the owner thread."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_DEBOUNCE_MS", "WatchNotification", "WatchOptions"]

#: Quiet time after a file's last event before acting on it.
DEFAULT_DEBOUNCE_MS = 100


@dataclass(frozen=True)
class WatchOptions:
    """How a directory is watched.

    :ivar debounce_ms: coalesce a file's events until it has been quiet this
        long (a compiler writing in several steps, an editor's save-rename),
        then act once.  Default :data:`DEFAULT_DEBOUNCE_MS`.
    :ivar recursive: watch subdirectories too.  Default ``False``.
    :ivar auto_load: load new and changed files; when ``False`` the callback
        gets an :class:`Event` with the discovered path and no handles.
        Default ``True``.
    :ivar auto_unload: unload a plugin when its file is removed, and the old
        version when it is replaced; when ``False`` a replaced version stays
        loaded (retired, its proxies keep working) and a removed file stays
        loaded.  Default ``True``.
    :ivar emit_proxies: also fill :attr:`Event.proxies` with the typed proxies
        of the new handles.  Default ``False``.
    :ivar load_existing: report the plugin files already in the directory
        as changed when the watch starts (so they are loaded first).  Default
        ``True``.
    """

    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    recursive: bool = False
    auto_load: bool = True
    auto_unload: bool = True
    emit_proxies: bool = False
    load_existing: bool = True

    def __post_init__(self) -> None:
        if self.debounce_ms < 0:
            msg = f"debounce_ms must be >= 0, got {self.debounce_ms}"
            raise ValueError(msg)


@dataclass(frozen=True)
class WatchNotification:
    """What the watcher thread saw settle: plain paths, nothing loaded.

    :ivar changed: plugin files that exist after their events settled (or
        that were there when the watch started).
    :ivar removed: plugin files (or directories) that no longer exist.
    :ivar stopped: the watcher ended; this is its last notification.
    :ivar error: why it ended, when it did not end through its stop flag.
    """

    changed: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()
    stopped: bool = False
    error: BaseException | None = None
