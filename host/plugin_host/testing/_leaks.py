"""What a test's plugins left behind: the checks behind the ``plugin_manager`` fixture.

:class:`CheckedPluginManager` is a :class:`~plugin_host.PluginManager` that
remembers every handle it made.  :meth:`CheckedPluginManager.close_and_check`
closes it and lists, as sentences, whatever was not cleaned up:

- a registration set not released (a release refused, or one made with
  ``register_trait`` on a library the manager opened and never passed to
  ``unload_trait``);
- an unmaker counter that does not equal the registrations made (an unmaker
  that did not run, or does not count);
- a library the loader kept mapped after its last close, with the reason the
  host read from the file (``STB_GNU_UNIQUE``, ``DF_1_NODELETE``, thread-local
  destructors, another handle);
- a private copy left on disk; a file descriptor opened during the test on a
  regular file (a plugin, a log the plugin opened) and still open;
- a thread started during the test still running (Python's and, on Linux,
  native ones a plugin started).

**Platform-specific behaviour**: descriptors and native threads are read from
``/proc/self`` (Linux); elsewhere those two checks find nothing.
"""

from __future__ import annotations

import os
import stat
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plugin_interface import PluginError, PluginLoadErrors, TraitLike, unmaker_counter_symbol

from .._manager import PluginHandle, PluginManager, Reloaded
from ..loading import Library, LibraryStillMappedWarning
from ._process import native_thread_ids, open_files

__all__ = ["DEFAULT_THREAD_GRACE_S", "CheckedPluginManager", "ProcessSnapshot", "leaked_threads"]

#: How long threads started during a test are given to finish after it, in seconds.
DEFAULT_THREAD_GRACE_S = 5.0


@dataclass
class ProcessSnapshot:
    """What the process held before a test: threads (Python and native) and open descriptors."""

    threads: set[threading.Thread] = field(default_factory=lambda: set(threading.enumerate()))
    native: set[int] = field(default_factory=native_thread_ids)
    fds: dict[int, str] = field(default_factory=open_files)


def leaked_threads(
    before: ProcessSnapshot, grace_s: float = DEFAULT_THREAD_GRACE_S, *, native: bool = True
) -> list[str]:
    """Threads started since ``before`` and still alive after up to ``grace_s`` seconds, described.

    Python threads by their ``repr``; native threads (a plugin's ``pthread_create``) by
    thread id and name, unless ``native`` is false.  A native thread of a Python thread
    counts as that thread.
    """
    deadline = time.monotonic() + grace_s
    while True:
        python = [t for t in threading.enumerate() if t not in before.threads and t.is_alive()]
        known = {t.native_id for t in threading.enumerate()}
        others = sorted(native_thread_ids() - before.native - known) if native else []
        if (not python and not others) or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    found = [f"thread left running: {t!r}" for t in python]
    for tid in others:
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:
            continue  # it ended meanwhile
        found.append(f"native thread left running: thread id {tid} ({comm!r}), started by native code (the plugin?)")
    return found


class CheckedPluginManager(PluginManager):
    """A :class:`~plugin_host.PluginManager` that remembers what it loaded, to check what was left.

    Takes the manager's keyword arguments.  Use :meth:`close_and_check` instead of
    :meth:`close` (the ``plugin_manager`` fixture does, at teardown).
    """

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._made: list[PluginHandle] = []
        self._libraries_seen: list[Library] = []

    def _remember(self, handles: Iterable[PluginHandle]) -> None:
        for handle in handles:
            if handle not in self._made:
                self._made.append(handle)
            if all(handle.library is not lib for lib in self._libraries_seen):
                self._libraries_seen.append(handle.library)

    def load_plugins(
        self,
        path: str | os.PathLike[str],
        trait: TraitLike | None = None,
        *,
        errors: list[PluginError] | None = None,
    ) -> list[PluginHandle]:
        try:
            handles = super().load_plugins(path, trait, errors=errors)
        except PluginLoadErrors as e:  # the good files of a directory are loaded all the same
            self._remember(h for h in e.loaded if isinstance(h, PluginHandle))
            raise
        self._remember(handles)
        return handles

    def reload(
        self,
        path: str | os.PathLike[str],
        traits: TraitLike | Sequence[TraitLike] | None = None,
        *,
        unload_old: bool = True,
    ) -> Reloaded:
        done = super().reload(path, traits, unload_old=unload_old)
        self._remember(done.handles)
        return done

    def close_and_check(self, *, thread_grace_s: float = DEFAULT_THREAD_GRACE_S, before: ProcessSnapshot) -> list[str]:
        """Unload everything, then say what was left behind (empty: nothing).

        :param before: what the process held before the test.
        """
        problems: list[str] = []
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always", LibraryStillMappedWarning)  # reported below, with the reasons
            try:
                self.close()
            except PluginLoadErrors as e:
                problems += [f"unload failed: {error}" for error in e.exceptions]
        problems += self._registration_problems()
        problems += self._library_problems(before)
        problems += leaked_threads(before, thread_grace_s)
        return problems

    def _registration_problems(self) -> list[str]:
        problems: list[str] = []
        carried: dict[tuple[str, str], int] = {}  # releases counted by a library that stayed mapped
        for library in self._libraries_seen:
            handles = [h for h in self._made if h.library is library]
            for handle in handles:
                regset = handle.registration_set
                if not regset.is_released:
                    problems.append(
                        f"{library.path}: {handle.trait.name} registrations {handle.type_names} were never released"
                    )
            if library.live_sets > 0:
                problems.append(
                    f"{library.path}: {library.live_sets} registration set(s) made outside the manager "
                    "(register_trait) were never released (unload_trait), so the library stays loaded"
                )
            key = str(os.path.realpath(library.load_path))
            for trait in dict.fromkeys(h.trait.name for h in handles):
                sets = [h.registration_set for h in handles if h.trait.name == trait and h.registration_set.is_released]
                counters = [s.final_counter for s in sets if s.final_counter is not None]
                if not counters:
                    continue  # not exported: nothing to compare
                made = carried.get((key, trait), 0) + sum(len(s.registrations) for s in sets)
                counted = max(counters)
                if counted != made:
                    types = ", ".join(r.type_name for s in sets for r in s.registrations)
                    symbol = unmaker_counter_symbol(trait)
                    if counted < made:
                        why = "an unmaker did not run, or does not count what it releases"
                    else:
                        why = "an unmaker counts more than it releases (or twice)"
                    problems.append(
                        f"{library.path}: {trait}: {made} registration(s) made ({types}), but the unmaker "
                        f"counter {symbol} says {counted} released: {why}"
                    )
                carried[(key, trait)] = made if library.still_mapped is not None else 0
        return problems

    def _library_problems(self, before: ProcessSnapshot) -> list[str]:
        problems: list[str] = []
        for library in self._libraries_seen:
            if library.is_open:
                problems.append(f"{library.path}: still open after the manager closed")
            elif library.still_mapped is not None:
                reasons = "; ".join(library.still_mapped.reasons)
                problems.append(f"{library.path}: still mapped after unload: cannot unload: {reasons}")
            if library.load_path != library.path and library.load_path.exists():
                problems.append(f"{library.path}: its private copy {library.load_path} was left on disk")
        for fd, target in sorted(open_files().items()):
            if before.fds.get(fd) != target and _regular_file(fd, target):
                problems.append(f"file descriptor {fd} left open on {target}")
        return problems


def _regular_file(fd: int, target: str) -> bool:
    """Whether ``fd`` is open on a regular file, still ``target`` (the listing is a moment's).

    Pipes, sockets and directories are left out: the host keeps its private-copy directory
    open (locked) for the life of the process, and pytest its capture pipes.
    """
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == target and stat.S_ISREG(os.stat(f"/proc/self/fd/{fd}").st_mode)
    except OSError:
        return False
