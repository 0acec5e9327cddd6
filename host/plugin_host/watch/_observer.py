"""The observer thread: watch a directory, debounce its events, send plain paths.

Like watchdog's emitters apart from its dispatcher: this thread only collects
paths and decides nothing.  It never touches a manager or a plugin object;
the owner thread (:mod:`._processor`) does the loading.

**The watched directory itself** is known by its identity (``st_dev``,
``st_ino``), read before the observer is scheduled on it.  The thread checks
it when an event concerns the directory and every :data:`ROOT_CHECK_S`:
inotify reports no event at all when the directory is renamed, and goes deaf
when it is deleted (watchdog then stops the emitter, which also counts as a
replacement: the new directory may get the old one's inode number).  A change
goes through one debounce window like a file's; what is at the path when the
window ends decides:

- the same directory: nothing;
- another directory (``rm -rf dir && mkdir dir``, ``mv dir dir.old && mkdir
  dir``, a relinked symlink): the observer is moved to it, and one
  notification lists the directory as removed (what was loaded from the old
  one is unloaded, even if it was renamed away) and the plugin files now there
  as changed (they load);
- nothing (or a non-directory): the directory is listed as removed, then the
  thread ends with :class:`FileNotFoundError` ("the watched directory was
  removed").
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import stat
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
from watchdog.observers.api import BaseObserver, EventEmitter, ObservedWatch

from ..formats import is_plugin_file, plugin_files
from ._options import WatchNotification, WatchOptions

__all__ = ["MAX_DELAY_WINDOWS", "ROOT_CHECK_S", "STOP_POLL_S", "start_watch_background"]

#: A file that never stays quiet is acted upon this many debounce windows after its first event.
MAX_DELAY_WINDOWS = 10
#: How often the watcher thread looks at its stop flag while idle, in seconds.
STOP_POLL_S = 0.05
#: How often the watcher thread checks that the watched directory is still the one watched, in seconds.
ROOT_CHECK_S = 0.1

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


def _identity(path: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the directory at ``path``, or ``None`` if there is none.

    :raises OSError: the path cannot be examined (e.g. permission denied).
    """
    try:
        st = os.stat(path)  # follows a symlink: relinking it to another directory is a replacement
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _existing_plugin_files(root: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return [p for p in plugin_files(root) if p.is_file()]
    found: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        found += [Path(dirpath) / f for f in files if is_plugin_file(f) and os.path.isfile(os.path.join(dirpath, f))]
    return sorted(found)


class _Armed:
    """The observer and its one watch, on the directory now at ``root``.

    **Thread-safety**: :meth:`arm` runs on the thread that starts the watch,
    then only on the watcher thread.
    """

    def __init__(self, root: Path, recursive: bool, sink: queue.SimpleQueue[_RawEvent]) -> None:
        self.root = root
        self.recursive = recursive
        self.observer: BaseObserver = Observer()
        self.identity: tuple[int, int] | None = None
        self._handler = _RawEventHandler(sink)
        self._watch: ObservedWatch | None = None
        self._emitter: EventEmitter | None = None

    def arm(self) -> None:
        """Watch the directory now at :attr:`root` (moving the watch there if another one was watched).

        The identity is read *before* the watch is scheduled: if the directory
        is replaced in between, the identity is the older one and the next
        check moves the watch again; read after, the watch could stay on a
        directory that no longer has this name.

        :raises FileNotFoundError: no directory is there.
        :raises OSError: the platform refuses the watch.
        """
        identity = _identity(self.root)
        if identity is None:
            raise FileNotFoundError(errno.ENOENT, f"{self.root}: the watched directory was removed", str(self.root))
        if self._watch is not None:
            # Stops the old emitter: after a rename it still follows the old
            # directory, and would report its files under the old name.
            self.observer.unschedule(self._watch)
            self._watch = None
        self._watch = self.observer.schedule(
            self._handler, str(self.root), recursive=self.recursive, event_filter=_EVENT_FILTER
        )
        self._emitter = next((e for e in self.observer.emitters if e.watch == self._watch), None)
        self.identity = identity

    def is_replaced(self) -> bool:
        """Whether the watch no longer listens to the directory at :attr:`root`.

        Either another directory (or none) is there, or the emitter stopped by
        itself: watchdog's inotify emitter does when the directory is deleted,
        and ``rm -rf dir && mkdir dir`` may give the new directory the very
        inode number of the old one.
        """
        if _identity(self.root) != self.identity:
            return True
        return self._emitter is None or self._emitter.stopped_event.is_set()

    def close(self) -> None:
        self.observer.stop()
        if self.observer.is_alive():
            with contextlib.suppress(RuntimeError):
                self.observer.join()


def _settle(pending: dict[str, _Pending], now: float, armed: _Armed) -> tuple[WatchNotification | None, OSError | None]:
    """Turn the paths whose window ended into one notification, by what they are now.

    :returns: the notification (``None`` if nothing changed), and why the
        watch must end: the watched directory is gone, or the one now at its
        path cannot be watched (the notification then lists it as removed).
    """
    due = [path for path, p in pending.items() if p.deadline <= now]
    if not due:
        return None, None
    root = str(armed.root)
    changed: list[Path] = []
    removed: list[Path] = []
    root_due = False
    for path in due:
        is_dir = pending.pop(path).is_dir
        if path == root:
            root_due = True
        elif not os.path.exists(path):  # follows symlinks: a dangling one counts as removed
            removed.append(Path(path))
        elif not is_dir and os.path.isfile(path):
            changed.append(Path(path))
    failure: OSError | None = None
    try:
        if root_due and armed.is_replaced():
            # Whatever was loaded from the old directory vanished from this
            # path, including what a rename took away without a file event.
            removed.append(armed.root)
            armed.arm()
            changed += _existing_plugin_files(armed.root, armed.recursive)  # listed once watched: none is missed
    except OSError as e:
        failure = e
    if not changed and not removed:
        return None, failure
    return WatchNotification(tuple(dict.fromkeys(changed)), tuple(removed)), failure


def _watch_loop(
    raw: queue.SimpleQueue[_RawEvent],
    out: queue.Queue[WatchNotification],
    stop: threading.Event,
    armed: _Armed,
    debounce_ms: int,
) -> None:
    """Debounce raw events into notifications until ``stop`` is set (watcher thread)."""
    debounce_s = debounce_ms / 1000
    max_delay_s = debounce_s * MAX_DELAY_WINDOWS
    root = str(armed.root)
    pending: dict[str, _Pending] = {}
    error: BaseException | None = None
    next_check = time.monotonic() + ROOT_CHECK_S
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
            now = time.monotonic()
            if now >= next_check:
                # A rename of the directory gives no event, and a deleted one
                # none after the last: look at what the path holds now.
                next_check = now + ROOT_CHECK_S
                if root not in pending and armed.is_replaced():
                    pending[root] = _Pending(now, now + debounce_s, True)
            note, failure = _settle(pending, now, armed)
            if note is not None:
                out.put(note)
            if failure is not None:
                raise failure
    except Exception as e:  # never die silently: the owner thread reports it
        error = e
    finally:
        armed.close()
        out.put(WatchNotification(stopped=True, error=error))


def start_watch_background(
    directory: str | os.PathLike[str], opts: WatchOptions | None = None
) -> tuple[queue.Queue[WatchNotification], threading.Event, threading.Thread]:
    """Start watching ``directory`` on a background thread.

    The observer is running when this returns, so no change made afterwards
    is missed.  Only plugin files (the platform's suffix, not hidden) are
    reported: a ``.txt``, a ``.so.tmp`` or a hidden temporary file is ignored
    until it is renamed to a plugin name.  If the directory is replaced by
    another at the same path, the watch moves to it (see the module's
    description).

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
    armed = _Armed(root, opts.recursive, raw)
    try:
        armed.arm()
        armed.observer.start()
        if opts.load_existing:
            # Listed once the observer runs: a file created meanwhile is listed,
            # reported by the observer, or both (the owner skips an unchanged file).
            existing = _existing_plugin_files(root, opts.recursive)
            if existing:
                notifications.put(WatchNotification(changed=tuple(existing)))
    except BaseException:  # the observer's threads must not outlive a failed start
        armed.close()
        raise
    thread = threading.Thread(
        target=_watch_loop,
        args=(raw, notifications, stop, armed, opts.debounce_ms),
        name=f"plugin-host watch {root}",
        daemon=True,
    )
    thread.start()
    return notifications, stop, thread
