"""Hot reload: watch a directory of plugins and reload them on the owner thread.

Two loops on two threads (the *manager-owned* pattern):

- :func:`start_watch_background` runs a watchdog observer (inotify on Linux,
  FSEvents on macOS, ReadDirectoryChangesW on Windows -- no polling loop) and
  one debounce thread.  It sends plain-path :class:`WatchNotification` values
  through a queue and never touches a manager or any plugin object.
- :func:`process_watch_notifications_blocking` runs on the thread that owns the
  :class:`~plugin_host.PluginManager`, performs every load and unload, and
  reports :data:`ManagerNotification` values (:class:`Event`,
  :class:`Unloaded`, :class:`Error`) to a callback.

:func:`watch_and_load_blocking` runs both for the calling thread.

Reload semantics:

- **Copy-on-load**: every version is loaded from a private copy with a unique
  name (:meth:`PluginManager.reload`), so the dynamic loader cannot hand back
  the old mapping and the original may be rebuilt while loaded.  A copy taken
  from a half-written ELF file is refused before ``dlopen`` sees it.
- **Never lose a working plugin**: the new version replaces the old one only
  after it loaded completely; otherwise the old version keeps serving, an
  :class:`Error` is reported, and the next write is picked up.
- **No unload under a running call**: releasing the old version waits for the
  calls already inside it.  Proxies of the old version then raise
  :class:`~plugin_interface.PluginUnloadedError`; fetch the new ones from the
  :class:`Event` or from :meth:`PluginManager.get_handles`.
- **Ordering and net effect**: events are coalesced per file until the file has
  been quiet for ``debounce_ms`` (at most :data:`MAX_DELAY_WINDOWS` windows
  after its first event); the action then follows what the file *is* at that
  moment -- present means load, absent means unload -- so an add, change and
  remove within one window is one removal of something never loaded (nothing
  is reported).  For one path, notifications arrive in the order the actions
  happened.

**Platform-specific behaviour**: which raw events a save produces differs per
platform (on Linux a compiler linking in place gives deleted, created,
modified, closed); only their timing matters here.  Renames out of a watched
directory are reported by watchdog's inotify backend after it waited 0.5 s for
a matching rename into it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

from plugin_interface import PluginError, TraitLike, resolve_trait
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

from ._manager import PluginHandle, is_plugin_file, plugin_files
from ._proxy import TraitProxy

if TYPE_CHECKING:
    from ._manager import PluginManager

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "MAX_DELAY_WINDOWS",
    "Error",
    "Event",
    "ManagerNotification",
    "Unloaded",
    "WatchNotification",
    "WatchOptions",
    "process_watch_notifications_blocking",
    "start_watch_background",
    "watch_and_load_blocking",
]

#: Quiet time after a file's last event before acting on it.
DEFAULT_DEBOUNCE_MS = 100
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


@dataclass(frozen=True)
class Event:
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
class Error:
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
ManagerNotification: TypeAlias = Event | Unloaded | Error
#: A callback; returning ``False`` ends processing.
NotificationCallback: TypeAlias = Callable[[ManagerNotification], "bool | None"]


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


# ---- the owner thread --------------------------------------------------------


def _signature(path: Path) -> tuple[int, ...]:
    """What identifies a file's content cheaply: a new inode, size or time means new content."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Processor:
    """Performs the actions of notifications on the owner thread."""

    def __init__(
        self,
        manager: PluginManager,
        trait: TraitLike | None,
        opts: WatchOptions,
        callback: NotificationCallback,
    ) -> None:
        self._manager = manager
        self._trait = None if trait is None else resolve_trait(trait)
        self._opts = opts
        self._callback = callback
        self._seen: dict[Path, tuple[int, ...]] = {}  # the version last acted upon

    def _emit(self, note: ManagerNotification) -> bool:
        return self._callback(note) is not False

    def changed(self, paths: Iterable[Path]) -> bool:
        """Load each path's new version; ``False`` once the callback asks to stop."""
        for path in paths:
            try:
                signature = _signature(path)
            except OSError:
                continue  # gone again: its removal is on its way
            if self._seen.get(path) == signature:
                continue  # e.g. loaded by the initial scan, then reported by the watcher
            self._seen[path] = signature
            if not self._opts.auto_load:
                if not self._emit(Event(path)):
                    return False
                continue
            try:
                result = self._manager.reload(path, self._trait, unload_old=self._opts.auto_unload)
            except (PluginError, OSError) as e:
                if not self._emit(Error(path, e)):
                    return False
                continue
            handles = tuple(result.handles)
            proxies = tuple(p for h in handles for p in h.proxies()) if self._opts.emit_proxies else ()
            if not self._emit(Event(path, handles, proxies, result.replaced)):
                return False
            for trait_name, counter in result.counters.items():
                if not self._emit(Unloaded(path, counter, trait_name)):
                    return False
        return True

    def removed(self, paths: Iterable[Path]) -> bool:
        """Unload what was loaded from each path (or under it, for a directory)."""
        for gone in paths:
            for seen in [p for p in self._seen if p == gone or gone in p.parents]:
                del self._seen[seen]
            if not self._opts.auto_unload:
                continue
            loaded = sorted({h.path for h in self._manager.handles if h.path == gone or gone in h.path.parents})
            for path in loaded:
                try:
                    counters = self._manager.unload_by_path(path)
                except KeyError:
                    continue
                except PluginError as e:
                    if not self._emit(Error(path, e)):
                        return False
                    continue
                for trait_name, counter in counters.items():
                    if not self._emit(Unloaded(path, counter, trait_name)):
                        return False
        return True


def process_watch_notifications_blocking(
    manager: PluginManager,
    directory: str | os.PathLike[str],
    notifications: queue.Queue[WatchNotification],
    trait: TraitLike | None,
    opts: WatchOptions | None,
    callback: NotificationCallback,
) -> None:
    """Perform every load and unload the watcher reports, on the calling thread.

    Call it on the thread that owns ``manager``.  Each changed file (the
    first notification lists the files already there, with ``load_existing``)
    is loaded as a new version with :meth:`PluginManager.reload` (private
    copy; the old version is released only after the new one loaded), each
    removed one is unloaded with :meth:`PluginManager.unload_by_path`.

    Notifications: :class:`Event` per file loaded (then :class:`Unloaded` per
    trait of the version it replaced), :class:`Unloaded` per trait of a
    removed file, :class:`Error` per file that failed to load -- and one
    :class:`Error` for the directory if the watcher thread failed.

    :param trait: the trait to load; ``None`` for every declared trait a file
        implements.
    :param callback: called with each notification, on this thread; return
        ``False`` to stop (the watcher keeps running: set its ``stop``).  An
        exception it raises propagates to the caller.
    :raises UnknownTraitError: for an unknown trait name.
    """
    opts = opts or WatchOptions()
    processor = _Processor(manager, trait, opts, callback)
    root = Path(directory).absolute()
    while True:
        note = notifications.get()
        if note.stopped:
            if note.error is not None:
                callback(Error(root, note.error))
            return
        if not processor.removed(note.removed) or not processor.changed(note.changed):
            return


@contextlib.contextmanager
def _sigint_sets(stop: threading.Event) -> Iterator[None]:
    """On the main thread, make the first Ctrl-C set ``stop`` instead of raising.

    Loading and unloading then never stop halfway; a second Ctrl-C raises
    :class:`KeyboardInterrupt` as usual (e.g. while a callback hangs).
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def watch_and_load_blocking(
    manager: PluginManager,
    directory: str | os.PathLike[str],
    trait: TraitLike | None,
    opts: WatchOptions | None,
    callback: NotificationCallback,
) -> None:
    """Watch ``directory`` and load, reload and unload its plugins on this thread.

    :func:`start_watch_background` plus
    :func:`process_watch_notifications_blocking`.  Returns when ``callback``
    returns ``False`` or on Ctrl-C (KeyboardInterrupt), after stopping the
    watcher; the plugins loaded stay in ``manager``.

    :raises FileNotFoundError: if the directory does not exist.
    """
    notifications, stop, thread = start_watch_background(directory, opts)
    try:
        with _sigint_sets(stop):
            process_watch_notifications_blocking(manager, directory, notifications, trait, opts, callback)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        thread.join()
