"""Calls through proxies while the same file is hot-reloaded: hundreds of reloads
under eight calling threads (slow), and the README's hot-reload worker pattern.

Every wait is bounded by a generous hang timeout; nothing here asserts a time.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CompilePlugin, mapped_paths
from plugin_host import (
    Loaded,
    LoadFailed,
    ManagerNotification,
    PluginManager,
    PluginTrait,
    WatchOptions,
    process_watch_notifications_blocking,
    start_watch_background,
)
from plugin_host.loading._copies import _private_copy_dir
from plugin_host.registry import TraitProxy
from plugin_interface import MakerReturnedNullError, NotASharedLibraryError, PluginError, PluginUnloadedError

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux /proc")

#: A hang detector, not a timing: a pass never waits this long.
HANG_TIMEOUT_S = 120.0
THREADS = 8
RELOADS = 200
GOOD_VERSIONS = (1, 2, 3, 4)

STRESSED_GREETER = """\
    /* stressed.c -- demonstrates a plugin rebuilt over and over: the greeting
     * says which build it is (-DVERSION=N); -DBROKEN makes the maker fail
     * (its instance cannot be created, so the aggregate returns NULL). */
    #include "plugin_annotations.h"
    #include "plugin_trait_greeter.h"

    #ifndef VERSION
    #define VERSION 0
    #endif

    static char *stressed_greet(void *self, const char *name) {
        (void)self;
        return plugin_string_format("v%d %s", VERSION, name);
    }

    #ifdef BROKEN
    static void *stressed_new(void) { return NULL; }
    #else
    static void *stressed_new(void) { return plugin_stateless_new(); }
    #endif

    PLUGIN_IMPL_WITH_STATE(Greeter, Stressed, stressed_new, plugin_stateless_free, .greet = stressed_greet)
    PLUGIN_AGGREGATES(Greeter)
"""


@pytest.fixture(scope="module")
def builds(compile_plugin: CompilePlugin) -> dict[str, bytes]:
    """The bytes of each version: ``"1"``..``"4"`` good, ``"null_maker"`` and ``"truncated"`` broken."""
    made = {
        str(v): compile_plugin("stressed", STRESSED_GREETER, defines=(f"VERSION={v}",)).read_bytes()
        for v in GOOD_VERSIONS
    }
    made["null_maker"] = compile_plugin("stressed", STRESSED_GREETER, defines=("VERSION=9", "BROKEN")).read_bytes()
    made["truncated"] = made["2"][: len(made["2"]) // 2]  # a compiler caught mid-write
    return made


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _private_mappings() -> set[str]:
    private = str(_private_copy_dir())
    return {m for m in mapped_paths() if m.startswith(private)}


def _join_all(threads: list[threading.Thread]) -> list[threading.Thread]:
    """Join each thread within the hang bound; the ones still alive."""
    for t in threads:
        t.join(HANG_TIMEOUT_S)
    return [t for t in threads if t.is_alive()]


@pytest.mark.slow
def test_reloads_under_eight_calling_threads_finish_and_leak_nothing(builds: dict[str, bytes], tmp_path: Path) -> None:
    """One thread reloads the same file 200 times (every fifth version broken) while
    8 threads call: every call is answered by a good version or refused, everything
    finishes, and nothing is left behind (mappings, descriptors, copies, threads)."""
    target = tmp_path / "plugins" / "libstressed.so"
    target.parent.mkdir()
    good_answers = {f"v{v} w" for v in GOOD_VERSIONS}
    copies_before, mappings_before, fds_before = set(os.listdir(_private_copy_dir())), _private_mappings(), _fd_count()
    threads_before = set(threading.enumerate())

    manager = PluginManager()
    target.write_bytes(builds["1"])
    # Every version from a private copy, the first too; `current` is what a watcher's Loaded hands out.
    current = [manager.reload(target, PluginTrait.Greeter).handles[0].proxy("Stressed")]
    stop = threading.Event()
    answers: dict[str, int] = {}
    refused = [0]
    failures: list[BaseException] = []
    reload_errors: list[type[PluginError]] = []
    lock = threading.Lock()

    def caller(from_event: bool) -> None:
        """Half the threads retry the proxy they were handed until a new one comes (the
        README's Loaded pattern), half fetch a new one from the manager when refused."""
        seen: dict[str, int] = {}
        refusals = 0
        try:
            while not stop.is_set():
                proxy = current[0] if from_event else manager.get_handles(target)[0].proxy("Stressed")
                for _ in range(50):
                    try:
                        answer = proxy.greet("w")  # type: ignore[attr-defined]
                    except PluginUnloadedError:
                        refusals += 1
                        break
                    seen[answer] = seen.get(answer, 0) + 1
        except BaseException as e:  # reported below, never silent
            failures.append(e)
        with lock:
            refused[0] += refusals
            for k, v in seen.items():
                answers[k] = answers.get(k, 0) + v

    def reloader() -> None:
        try:
            for i in range(1, RELOADS + 1):
                if i % 5:
                    data = builds[str(GOOD_VERSIONS[i % len(GOOD_VERSIONS)])]
                else:
                    data = builds["truncated" if i % 10 else "null_maker"]
                target.write_bytes(data)  # rewritten in place: only private copies are mapped
                try:
                    reloaded = manager.reload(target, PluginTrait.Greeter)
                except PluginError as e:
                    reload_errors.append(type(e))
                    continue
                current[0] = reloaded.handles[0].proxy("Stressed")
        except BaseException as e:  # reported below, never silent
            failures.append(e)

    callers = [threading.Thread(target=caller, args=(i % 2 == 0,), name=f"caller {i}") for i in range(THREADS)]
    reloading = threading.Thread(target=reloader, name="reloader")
    try:
        for t in callers:
            t.start()
        reloading.start()
        assert not _join_all([reloading]), "the reloads did not finish under 8 calling threads"
    finally:
        stop.set()
        still_running = _join_all([reloading, *callers])
        manager.close()
    assert not still_running, still_running
    assert not failures, failures
    assert sorted(reload_errors, key=str) == sorted(
        [MakerReturnedNullError] * (RELOADS // 10) + [NotASharedLibraryError] * (RELOADS // 10), key=str
    )
    assert set(answers) <= good_answers, answers
    assert sum(answers.values()) > 0
    # Nothing left behind: no private copy mapped or on disk, no descriptor, no thread.
    assert _private_mappings() - mappings_before == set()
    assert set(os.listdir(_private_copy_dir())) - copies_before == set()
    assert _fd_count() == fds_before
    assert [t for t in threading.enumerate() if t not in threads_before] == []
    print(f"\n{RELOADS} reloads under {THREADS} threads: answers {answers}, {refused[0]} calls refused")


# ---- the README's hot-reload pattern ------------------------------------------

FAST = WatchOptions(debounce_ms=20, emit_proxies=True)


def _publish(data: bytes, dest: Path) -> None:
    """Publish ``data`` at ``dest`` the way compilers do: write elsewhere, rename."""
    tmp = dest.parent.parent / f"{dest.name}.{time.monotonic_ns()}"
    tmp.write_bytes(data)
    os.replace(tmp, dest)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "watched"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_workers_taking_proxies_from_the_watchers_loaded_never_deadlock(
    builds: dict[str, bytes], watched: Path
) -> None:
    """The README's pattern: workers call the proxies the watcher's ``Loaded`` handed
    them last, and retry a refused call until the next ``Loaded`` brings new ones.

    Before, the owner's release of the old version waited for those retries too,
    which never stop before the next ``Loaded``: the workers waited for it,
    the owner for the workers.
    """
    manager = PluginManager()
    current: list[TraitProxy | None] = [None]
    greetings: queue.Queue[str] = queue.Queue()

    def on_change(note: ManagerNotification) -> bool:  # on the owner thread
        if isinstance(note, Loaded) and note.proxies:
            current[0] = note.proxies[0]  # what the workers use from now on
            greetings.put(note.proxies[0].greet("x"))  # type: ignore[attr-defined]
        elif isinstance(note, LoadFailed):
            greetings.put(f"error {note.error}")
        return True

    notifications, stop, watcher = start_watch_background(watched, FAST)
    owner = threading.Thread(
        target=process_watch_notifications_blocking,
        args=(manager, watched, notifications, "Greeter", FAST, on_change),
        name="manager owner",
    )
    done = threading.Event()
    saw_v2 = [threading.Event() for _ in range(THREADS)]
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            while not done.is_set():
                proxy = current[0]
                assert proxy is not None
                try:
                    if proxy.greet("w") == "v2 w":  # type: ignore[attr-defined]
                        saw_v2[i].set()
                except PluginUnloadedError:
                    pass  # replaced: the next Loaded brings the new proxies
        except BaseException as e:  # reported below, never silent
            failures.append(e)

    workers = [threading.Thread(target=worker, args=(i,), name=f"worker {i}") for i in range(THREADS)]
    owner.start()
    try:
        target = watched / "libstressed.so"
        _publish(builds["1"], target)
        assert greetings.get(timeout=HANG_TIMEOUT_S) == "v1 x"
        for t in workers:
            t.start()
        _publish(builds["2"], target)
        try:
            greeting = greetings.get(timeout=HANG_TIMEOUT_S)
        except queue.Empty:
            pytest.fail("the reload never finished while the workers retried the old proxies")
        assert greeting == "v2 x"
        assert all(e.wait(HANG_TIMEOUT_S) for e in saw_v2), "a worker never got the new proxies"
    finally:
        done.set()
        stop.set()
        still_running = _join_all([*workers, watcher, owner])
        manager.close()
    assert not still_running, still_running
    assert not failures, failures
