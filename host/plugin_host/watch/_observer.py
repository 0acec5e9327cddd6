"""The observer thread: watch a directory, debounce its events, send plain paths.

Like watchdog's emitters apart from its dispatcher: this thread only collects
paths and decides nothing.  It never touches a manager or a plugin object;
the owner thread (:mod:`._processor`) does the loading.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import threading
import time
from pathlib import Path
from typing import NamedTuple

from watchdog.events import (
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MOVED,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from ..formats import is_plugin_file, plugin_files
from ._options import WatchNotification, WatchOptions

__all__ = ["MAX_DELAY_WINDOWS", "STOP_POLL_S", "start_watch_background"]

#: A file that never stays quiet is acted upon this many debounce windows after its first event.
MAX_DELAY_WINDOWS = 10
#: How often the watcher thread looks at its stop flag while idle, in seconds.
STOP_POLL_S = 0.05

# Events that can change what a path holds.  Opening and closing without
# writing are left out on purpose: copying a file for loading opens it, and
# must not look like a change.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
_EVENT_TYPES = frozenset(cls.event_type for cls in _EVENT_FILTER)


# ---- the watcher thread ------------------------------------------------------


class _RawEvent(NamedTuple):
    time: float
    path: str
    is_dir: bool


class _Pending(NamedTuple):
    first: float
    deadline: float
    is_dir: bool


class _RawEventHandler(FileSystemEventHandler):
    """Forwards the paths an event may have changed, timestamped (observer thread)."""

    def __init__(self, sink: queue.SimpleQueue[_RawEvent]) -> None:
        super().__init__()
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        now = time.monotonic()
        if event.event_type not in _EVENT_TYPES:  # what the observer's own filter should have dropped
            return
        src = os.fsdecode(event.src_path)
        if event.is_directory:
            # A directory that goes away takes its plugins with it; a new one
            # is reported file by file by the observer (recursive mode).
            if event.event_type in (EVENT_TYPE_DELETED, EVENT_TYPE_MOVED):
                self._sink.put(_RawEvent(now, src, True))
            return
        paths = [src]
        if event.event_type == EVENT_TYPE_MOVED and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        for path in paths:
            if path and is_plugin_file(path):
                self._sink.put(_RawEvent(now, path, False))


def _flush(pending: dict[str, _Pending], now: float) -> WatchNotification | None:
    """Turn the paths whose window ended into one notification, by what they are now."""
    due = [path for path, p in pending.items() if p.deadline <= now]
    if not due:
        return None
    changed: list[Path] = []
    removed: list[Path] = []
    for path in due:
        is_dir = pending.pop(path).is_dir
        if not os.path.exists(path):  # follows symlinks: a dangling one counts as removed
            removed.append(Path(path))
        elif not is_dir and os.path.isfile(path):
            changed.append(Path(path))
    if not changed and not removed:
        return None
    return WatchNotification(tuple(changed), tuple(removed))


def _watch_loop(
    root: Path,
    raw: queue.SimpleQueue[_RawEvent],
    out: queue.Queue[WatchNotification],
    stop: threading.Event,
    observer: BaseObserver,
    debounce_ms: int,
) -> None:
    """Debounce raw events into notifications until ``stop`` is set (watcher thread)."""
    debounce_s = debounce_ms / 1000
    max_delay_s = debounce_s * MAX_DELAY_WINDOWS
    pending: dict[str, _Pending] = {}
    error: BaseException | None = None
    try:
        while not stop.is_set():
            timeout = STOP_POLL_S
            if pending:
                next_deadline = min(p.deadline for p in pending.values())
                timeout = min(timeout, max(0.0, next_deadline - time.monotonic()))
            try:
                event: _RawEvent | None = raw.get(timeout=timeout)
                while event is not None:  # take every event already there before flushing
                    old = pending.get(event.path)
                    first = event.time if old is None else old.first
                    deadline = min(event.time + debounce_s, first + max_delay_s)
                    pending[event.path] = _Pending(first, deadline, event.is_dir or (old is not None and old.is_dir))
                    event = raw.get_nowait()
            except queue.Empty:
                pass
            note = _flush(pending, time.monotonic())
            if note is not None:
                out.put(note)
                if root in note.removed:
                    msg = f"{root}: the watched directory was removed"
                    raise FileNotFoundError(errno.ENOENT, msg, str(root))
    except Exception as e:  # never die silently: the owner thread reports it
        error = e
    finally:
        observer.stop()
        with contextlib.suppress(RuntimeError):
            observer.join()
        out.put(WatchNotification(stopped=True, error=error))


def _existing_plugin_files(root: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return [p for p in plugin_files(root) if p.is_file()]
    found: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        found += [Path(dirpath) / f for f in files if is_plugin_file(f) and os.path.isfile(os.path.join(dirpath, f))]
    return sorted(found)


def start_watch_background(
    directory: str | os.PathLike[str], opts: WatchOptions | None = None
) -> tuple[queue.Queue[WatchNotification], threading.Event, threading.Thread]:
    """Start watching ``directory`` on a background thread.

    The observer is running when this returns, so no change made afterwards
    is missed.  Only plugin files (the platform's suffix, not hidden) are
    reported: a ``.txt``, a ``.so.tmp`` or a hidden temporary file is ignored
    until it is renamed to a plugin name.

    **Thread-safety**: the thread only puts :class:`WatchNotification` values
    on the queue; it never touches a manager or a plugin object.

    :param directory: the directory to watch.
    :param opts: ``debounce_ms``, ``recursive`` and ``load_existing`` are
        used here; with ``load_existing`` the first notification, queued
        before this returns, lists the plugin files already there.
    :returns: ``(queue, stop, thread)``.  Set ``stop`` to end the watcher
        (pending events are dropped): its last notification has
        ``stopped=True``, then the thread ends.
    :raises FileNotFoundError: if the directory does not exist.
    :raises NotADirectoryError: if it is not a directory.
    :raises OSError: if the platform refuses the watch (e.g. inotify limits).
    """
    opts = opts or WatchOptions()
    root = Path(directory).absolute()
    if not root.exists():
        raise FileNotFoundError(errno.ENOENT, "cannot watch a missing directory", str(root))
    if not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "can only watch a directory", str(root))
    raw: queue.SimpleQueue[_RawEvent] = queue.SimpleQueue()
    notifications: queue.Queue[WatchNotification] = queue.Queue()
    stop = threading.Event()
    observer = Observer()
    try:
        observer.schedule(_RawEventHandler(raw), str(root), recursive=opts.recursive, event_filter=_EVENT_FILTER)
        observer.start()
        if opts.load_existing:
            # Listed once the observer runs: a file created meanwhile is listed,
            # reported by the observer, or both (the owner skips an unchanged file).
            existing = _existing_plugin_files(root, opts.recursive)
            if existing:
                notifications.put(WatchNotification(changed=tuple(existing)))
    except BaseException:  # the observer's threads must not outlive a failed start
        observer.stop()
        if observer.is_alive():
            observer.join()
        raise
    thread = threading.Thread(
        target=_watch_loop,
        args=(root, raw, notifications, stop, observer, opts.debounce_ms),
        name=f"plugin-host watch {root}",
        daemon=True,
    )
    thread.start()
    return notifications, stop, thread
