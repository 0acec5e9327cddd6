"""Hot reload: watch a directory of plugins and reload them on the owner thread.

Two loops on two threads (the *manager-owned* pattern):

- :func:`start_watch_background` runs a watchdog observer (inotify on Linux,
  FSEvents on macOS, ReadDirectoryChangesW on Windows -- no polling loop) and
  one debounce thread.  It sends plain-path :class:`WatchNotification` values
  through a queue and never touches a manager or any plugin object.
- :func:`process_watch_notifications_blocking` runs on the thread that owns the
  :class:`~plugin_host.PluginManager`, performs every load and unload, and
  reports :data:`ManagerNotification` values (:class:`Loaded`,
  :class:`Unloaded`, :class:`LoadFailed`) to a callback.

:func:`watch_and_load_blocking` runs both for the calling thread.

Reload semantics:

- **Copy-on-load**: every version is loaded from a private copy with a unique
  name (:meth:`PluginManager.reload`), so the dynamic loader cannot hand back
  the old mapping and the original may be rebuilt while loaded.  A copy taken
  from a half-written ELF file is refused before ``dlopen`` sees it.
- **Never lose a working plugin**: the new version replaces the old one only
  after it loaded completely; otherwise the old version keeps serving, an
  :class:`LoadFailed` is reported, and the next write is picked up.
- **No unload under a running call**: releasing the old version waits for the
  calls already inside it.  Proxies of the old version then raise
  :class:`~plugin_interface.PluginUnloadedError`; fetch the new ones from the
  :class:`Loaded` or from :meth:`PluginManager.get_handles`.
- **Ordering and net effect**: events are coalesced per file until the file has
  been quiet for ``debounce_ms`` (at most :data:`MAX_DELAY_WINDOWS` windows
  after its first event); the action then follows what the file *is* at that
  moment -- present means load, absent means unload -- so an add, change and
  remove within one window is one removal of something never loaded (nothing
  is reported).  For one path, notifications arrive in the order the actions
  happened.
- **The watched directory replaced** (``rm -rf dir && mkdir dir``, ``mv dir
  dir.old && mkdir dir``): the watcher knows the directory by its identity
  (``st_dev``, ``st_ino``, checked on its events and every
  :data:`~._observer.ROOT_CHECK_S`), and a change gets one debounce window.  If
  another directory is at the path when it ends, every plugin loaded from the
  old one is unloaded (:class:`Unloaded`, also for files a rename took away),
  the watch moves to the new directory and its plugin files load.  If none is
  there, the plugins are unloaded, one :class:`LoadFailed` for the directory
  (:class:`FileNotFoundError`) follows and the watch ends.

**Platform-specific behaviour**: which raw events a save produces differs per
platform (on Linux a compiler linking in place gives deleted, created,
modified, closed); only their timing matters here.  Renames out of a watched
directory are reported by watchdog's inotify backend after it waited 0.5 s for
a matching rename into it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType

from plugin_interface import PluginError, TraitLike, TraitSpec

from .._manager import PluginManager
from ..registry import requested_trait
from ._notifications import (
    Loaded,
    LoadFailed,
    ManagerNotification,
    NotificationCallback,
    Unloaded,
)
from ._observer import start_watch_background
from ._options import WatchNotification, WatchOptions

__all__ = ["process_watch_notifications_blocking", "watch_and_load_blocking"]


# ---- the owner thread --------------------------------------------------------


def _signature(path: Path) -> tuple[int, ...]:
    """What identifies a file's content cheaply: a new inode, size or time means new content."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _under(by_directory: dict[Path, set[Path]], directory: Path) -> list[Path]:
    """The keys of ``by_directory`` that are ``directory`` or below it."""
    return [d for d in by_directory if d == directory or directory in d.parents]


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
        # A name the host does not declare stays a name: each file's own declaration of it.
        self._trait: TraitSpec | str | None = None if trait is None else requested_trait(trait)
        self._opts = opts
        self._callback = callback
        self._seen: dict[Path, tuple[int, ...]] = {}  # the version last acted upon
        # The same paths by directory: a directory that goes costs a scan of
        # the directories, a file that goes one lookup.
        self._seen_in: dict[Path, set[Path]] = {}

    def _emit(self, note: ManagerNotification) -> bool:
        return self._callback(note) is not False

    def _remember(self, path: Path, signature: tuple[int, ...]) -> None:
        self._seen[path] = signature
        self._seen_in.setdefault(path.parent, set()).add(path)

    def _forget(self, path: Path) -> bool:
        """Forget one file; whether it was known."""
        if self._seen.pop(path, None) is None:
            return False
        siblings = self._seen_in[path.parent]
        siblings.discard(path)
        if not siblings:
            del self._seen_in[path.parent]
        return True

    def _forget_tree(self, directory: Path) -> set[Path]:
        """Forget every file under ``directory``; the files forgotten."""
        files: set[Path] = set()
        for parent in _under(self._seen_in, directory):
            files |= self._seen_in.pop(parent)
        for path in files:
            del self._seen[path]
        return files

    def changed(self, paths: Iterable[Path]) -> bool:
        """Load each path's new version; ``False`` once the callback asks to stop."""
        for path in paths:
            try:
                signature = _signature(path)
            except OSError:
                continue  # gone again: its removal is on its way
            if self._seen.get(path) == signature:
                continue  # e.g. loaded by the initial scan, then reported by the watcher
            self._remember(path, signature)
            if not self._opts.auto_load:
                if not self._emit(Loaded(path)):
                    return False
                continue
            try:
                result = self._manager.reload(path, self._trait, unload_old=self._opts.auto_unload)
            except (PluginError, OSError) as e:
                if not self._emit(LoadFailed(path, e)):
                    return False
                continue
            handles = tuple(result.handles)
            proxies = tuple(p for h in handles for p in h.proxies()) if self._opts.emit_proxies else ()
            if not self._emit(Loaded(path, handles, proxies, result.replaced)):
                return False
            for trait_name, counter in result.counters.items():
                if not self._emit(Unloaded(path, counter, trait_name)):
                    return False
        return True

    def removed(self, paths: Iterable[Path]) -> bool:
        """Unload what was loaded from each path (or under it, for a directory).

        A file acted upon or loaded costs one lookup; any other path may be a
        directory, and costs a scan of the directories files were seen in
        (plus, once per call, an index of what the manager holds, for files
        loaded without the watcher).
        """
        held_in: dict[Path, set[Path]] | None = None
        unloading: list[Path] = []
        for gone in paths:
            if self._forget(gone) or self._manager.is_loaded(gone):
                loaded = [gone]
            else:
                under = self._forget_tree(gone)
                if self._opts.auto_unload:
                    if held_in is None:
                        held_in = {}
                        for handle in self._manager.handles:
                            held_in.setdefault(handle.path.parent, set()).add(handle.path)
                    for parent in _under(held_in, gone):
                        under |= held_in[parent]
                loaded = sorted(under)
            if self._opts.auto_unload:
                unloading += loaded
        if not unloading:
            return True
        # One unload for the notification's files: those with nothing to wait for are released and
        # closed together in one call into C, as unload_all does.  So they are all unloaded before
        # their notifications go out: a callback that stops part-way leaves the rest unloaded, unreported.
        unloading = list(dict.fromkeys(unloading))  # a file and its directory may both be reported
        failures: list[PluginError] = []
        results = self._manager.unload_paths(unloading, errors=failures)
        for path in unloading:
            if path in results:
                for trait_name, counter in results[path].items():
                    if not self._emit(Unloaded(path, counter, trait_name)):
                        return False
        for e in failures:
            if not self._emit(LoadFailed(Path(e.path) if e.path is not None else unloading[0], e)):
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
    removed one is unloaded with :meth:`PluginManager.unload_paths` (the removals of one notification together).

    Notifications: :class:`Loaded` per file loaded (then :class:`Unloaded` per
    trait of the version it replaced), :class:`Unloaded` per trait of a
    removed file, :class:`LoadFailed` per file that failed to load -- and one
    :class:`LoadFailed` for the directory if the watcher thread failed.

    :param trait: the trait to load; ``None`` for every declared trait a file
        implements.  A name this host declares no such version of is each
        file's own declaration of it (a file without one is a :class:`LoadFailed`).
    :param callback: called with each notification, on this thread; return
        ``False`` to stop (the watcher keeps running: set its ``stop``).  The
        files of one removal notification are unloaded together, so a stop
        part-way through their :class:`Unloaded` notifications leaves the rest
        unloaded, unreported.  An exception it raises propagates to the caller.
    :raises UnknownTraitError: ``trait`` is neither a name nor a declaration.
    """
    opts = opts or WatchOptions()
    processor = _Processor(manager, trait, opts, callback)
    root = Path(directory).absolute()
    while True:
        note = notifications.get()
        if note.stopped:
            if note.error is not None:
                callback(LoadFailed(root, note.error))
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
