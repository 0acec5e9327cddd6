"""Hot reload (plugin_host.watch and PluginManager.reload): real files, real
compiled plugins, the real watchdog observer.

Every wait is a queue get with a timeout; "nothing happened" is shown either by
ordering (a later file's notification arrives first) or by an empty queue
after several debounce windows.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CompilePlugin, LanguageGreeter, mapped_paths
from plugin_host import (
    Error,
    Event,
    LibraryStillMappedWarning,
    ManagerNotification,
    PluginManager,
    PluginTrait,
    Unloaded,
    WatchNotification,
    WatchOptions,
    process_watch_notifications_blocking,
    start_watch_background,
    watch_and_load_blocking,
)
from plugin_interface import (
    LibraryLoadError,
    MakerReturnedNullError,
    NoPluginSymbolsError,
    NotASharedLibraryError,
    PluginError,
    PluginUnloadedError,
)

TIMEOUT_S = 10.0  # generous: the machine is shared; a pass never waits this long
FAST = WatchOptions(debounce_ms=20, emit_proxies=True)

VERSIONED_GREETER = """\
    /* versioned.c -- demonstrates a plugin rebuilt with different behaviour:
     * the greeting says which build it is (-DVERSION=N). */
    #include "plugin_annotations.h"
    #include "plugin_trait_greeter.h"

    #ifndef VERSION
    #define VERSION 0
    #endif

    static char *versioned_greet(void *self, const char *name) {
        (void)self;
        return plugin_string_format("v%d %s", VERSION, name);
    }

    PLUGIN_IMPL(Greeter, Versioned, .greet = versioned_greet)
    PLUGIN_AGGREGATES(Greeter)
"""

NOT_A_GREETER = """\
    /* nothing.c -- demonstrates a shared library that is no plugin at all. */
    int plugin_test_nothing(void);
    int plugin_test_nothing(void) { return 0; }
"""


@pytest.fixture(scope="session")
def versions(compile_plugin: CompilePlugin) -> dict[int, Path]:
    """The versioned greeter built three times: version -> library."""
    return {v: compile_plugin("versioned", VERSIONED_GREETER, defines=(f"VERSION={v}",)) for v in (1, 2, 3)}


@pytest.fixture(scope="session")
def broken(
    compile_plugin: CompilePlugin, test_plugins: dict[str, Path], versions: dict[int, Path], build_root: Path
) -> dict[str, tuple[Path, type[PluginError]]]:
    """Replacements that must fail to load: kind -> (file, the error expected)."""
    junk = build_root / "broken"
    junk.mkdir(exist_ok=True)
    text = junk / "text.so"
    text.write_text("this is not a library\n")
    truncated = junk / "truncated.so"
    data = versions[2].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # a compiler caught mid-write
    return {
        "text": (text, NotASharedLibraryError),
        "truncated": (truncated, NotASharedLibraryError),
        "missing_symbol": (compile_plugin("nothing", NOT_A_GREETER), NoPluginSymbolsError),
        "maker_returns_null": (test_plugins["null_maker"], MakerReturnedNullError),
        "undefined_symbol": (test_plugins["undefined_symbol"], LibraryLoadError),
    }


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    d = tmp_path / "watched"
    d.mkdir()
    return d


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    d = tmp_path / "staging"
    d.mkdir()
    return d


def publish(library: Path, dest: Path, staging: Path) -> Path:
    """Publish ``library`` at ``dest`` the way compilers do: write elsewhere, rename."""
    tmp = staging / f"{dest.name}.{time.monotonic_ns()}"
    shutil.copyfile(library, tmp)
    os.replace(tmp, dest)
    return dest


class Watching:
    """A manager owned by a helper thread that processes a live watcher's
    notifications; the test thread reads them from :attr:`notes`."""

    def __init__(
        self, manager: PluginManager, directory: Path, opts: WatchOptions, trait: str | None = "Greeter"
    ) -> None:
        self.manager = manager
        self.notes: queue.Queue[ManagerNotification | BaseException] = queue.Queue()
        self.queue, self.stop, self.thread = start_watch_background(directory, opts)
        self.owner = threading.Thread(target=self._own, args=(directory, trait, opts), name="test manager owner")
        self.owner.start()

    def _own(self, directory: Path, trait: str | None, opts: WatchOptions) -> None:
        try:
            process_watch_notifications_blocking(self.manager, directory, self.queue, trait, opts, self.notes.put)
        except BaseException as e:  # surfaced by next()
            self.notes.put(e)

    def next(self, timeout: float = TIMEOUT_S) -> ManagerNotification:
        note = self.notes.get(timeout=timeout)
        if isinstance(note, BaseException):
            raise note
        return note

    def expect(self, kind: type[ManagerNotification], path: Path | None = None) -> ManagerNotification:
        note = self.next()
        assert isinstance(note, kind), note
        if path is not None:
            assert note.path == path, note
        return note

    def event(self, path: Path | None = None) -> Event:
        note = self.expect(Event, path)
        assert isinstance(note, Event)
        return note

    def assert_quiet(self, windows_s: float) -> None:
        with pytest.raises(queue.Empty):
            note = self.notes.get(timeout=windows_s)
            pytest.fail(f"unexpected notification {note}")

    def close(self) -> dict[Path, dict[str, int | None]]:
        """Stop both loops, then unload everything; the final counters."""
        self.stop.set()
        self.thread.join(TIMEOUT_S)
        self.owner.join(TIMEOUT_S)
        assert not self.thread.is_alive() and not self.owner.is_alive()
        return self.manager.unload_all()


@pytest.fixture
def watch(watched: Path) -> Iterator[Watching]:
    """A running watch of ``watched`` for Greeter, 20 ms debounce, with proxies."""
    w = Watching(PluginManager(), watched, FAST)
    yield w
    w.close()


def greet(note: Event) -> str:
    [proxy] = note.proxies
    result: str = proxy.greet("x")  # type: ignore[attr-defined]
    return result


# ---- new, changed, removed ---------------------------------------------------


def test_new_file_is_loaded(watch: Watching, watched: Path, staging: Path, versions: dict[int, Path]) -> None:
    path = publish(versions[1], watched / "libgreet.so", staging)
    event = watch.event(path)
    assert not event.replaced
    assert greet(event) == "v1 x"
    [handle] = event.handles
    assert handle.type_names == ["Versioned"]
    assert watch.manager.get_handles(path) == [handle]
    # Copy-on-load: the library mapped is a private copy, never the watched file.
    assert handle.library.load_path != path
    assert str(handle.library.load_path) in mapped_paths()
    assert str(path) not in mapped_paths()


def test_rebuilt_file_serves_new_output(
    watch: Watching, watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    path = publish(versions[1], watched / "libgreet.so", staging)
    first = watch.event(path)
    old_proxy = first.proxies[0]
    old_copy = first.handles[0].library.load_path
    publish(versions[2], path, staging)
    second = watch.event(path)
    assert second.replaced
    assert greet(second) == "v2 x"
    unloaded = watch.expect(Unloaded, path)
    assert unloaded == Unloaded(path, 1, "Greeter")
    # The documented behaviour of a proxy from before the reload: a clear error.
    with pytest.raises(PluginUnloadedError, match="the library has been unloaded") as exc:
        old_proxy.greet("x")  # type: ignore[attr-defined]
    assert exc.value.path == str(path)
    assert exc.value.symbol == "Greeter.Versioned.greet"
    assert not old_copy.exists()
    assert str(old_copy) not in mapped_paths()
    assert watch.manager.get_handles(path) == list(second.handles)


def test_overwriting_a_loaded_file_in_place_is_safe(
    watch: Watching, watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    """``cp`` over a mapped library crashes a process; the watcher maps private copies."""
    path = publish(versions[1], watched / "libgreet.so", staging)
    first = watch.event(path)
    inode = path.stat().st_ino
    with open(path, "r+b") as f:  # same inode, truncated and rewritten like cp does
        f.truncate(0)
        assert greet(first) == "v1 x"  # the loaded copy is untouched by the truncation
        f.write(versions[2].read_bytes())
    assert path.stat().st_ino == inode
    note = watch.next()
    if isinstance(note, Error):  # the debounce window ended while the file was empty
        assert isinstance(note.error, NotASharedLibraryError)
        note = watch.next()
    assert isinstance(note, Event) and greet(note) == "v2 x"
    assert watch.expect(Unloaded, path) == Unloaded(path, 1, "Greeter")


def test_removed_file_is_unloaded_with_its_counter(
    watch: Watching, watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    path = publish(versions[1], watched / "libgreet.so", staging)
    event = watch.event(path)
    copy = event.handles[0].library.load_path
    path.unlink()
    assert watch.expect(Unloaded, path) == Unloaded(path, 1, "Greeter")
    assert not watch.manager.is_loaded(path)
    assert not copy.exists()
    assert str(copy) not in mapped_paths()
    with pytest.raises(PluginUnloadedError):
        greet(event)


@pytest.mark.parametrize("kind", ["text", "truncated", "missing_symbol", "maker_returns_null", "undefined_symbol"])
def test_broken_replacement_keeps_the_old_version(
    watch: Watching,
    watched: Path,
    staging: Path,
    versions: dict[int, Path],
    broken: dict[str, tuple[Path, type[PluginError]]],
    kind: str,
) -> None:
    path = publish(versions[1], watched / "libgreet.so", staging)
    good = watch.event(path)
    bad, error_type = broken[kind]
    publish(bad, path, staging)
    error = watch.expect(Error, path)
    assert isinstance(error, Error)
    assert isinstance(error.error, error_type)
    assert str(path) in error.reason
    assert greet(good) == "v1 x"  # the old version still answers
    assert watch.manager.get_handles(path) == list(good.handles)
    # The next good write is picked up.
    publish(versions[2], path, staging)
    fixed = watch.event(path)
    assert fixed.replaced and greet(fixed) == "v2 x"
    assert watch.expect(Unloaded, path) == Unloaded(path, 1, "Greeter")


def test_half_written_file_is_an_error_then_the_rest_of_the_write_loads(
    watch: Watching, watched: Path, versions: dict[int, Path]
) -> None:
    path = watched / "libgreet.so"
    data = versions[3].read_bytes()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])
        f.flush()
        error = watch.expect(Error, path)  # the writer paused longer than the debounce window
        assert isinstance(error, Error) and isinstance(error.error, NotASharedLibraryError)
        assert "truncated" in error.reason
        f.write(data[len(data) // 3 :])
    assert greet(watch.event(path)) == "v3 x"


# ---- debouncing, ordering, net effect ----------------------------------------------


def test_rapid_rewrites_give_one_load_per_debounce_window(
    watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    opts = WatchOptions(debounce_ms=200, emit_proxies=True)
    w = Watching(PluginManager(), watched, opts)
    try:
        path = watched / "libgreet.so"
        for i in range(12):  # a few milliseconds in all, well inside one window
            publish(versions[1 + i % 2], path, staging)
        publish(versions[3], path, staging)
        event = w.event(path)
        assert greet(event) == "v3 x" and not event.replaced
        w.assert_quiet(3 * opts.debounce_ms / 1000)
    finally:
        w.close()


def test_in_place_writes_in_several_steps_give_one_load(watched: Path, versions: dict[int, Path]) -> None:
    opts = WatchOptions(debounce_ms=200, emit_proxies=True)
    w = Watching(PluginManager(), watched, opts)
    try:
        path = watched / "libgreet.so"
        data = versions[2].read_bytes()
        with open(path, "wb") as f:  # no rename: the writer works on the file itself
            for start in range(0, len(data), 1024):
                f.write(data[start : start + 1024])
                f.flush()
        assert greet(w.event(path)) == "v2 x"
        w.assert_quiet(3 * opts.debounce_ms / 1000)
    finally:
        w.close()


def test_add_change_remove_within_one_window_is_its_net_effect(
    watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=300, emit_proxies=True))
    try:
        fleeting = watched / "libfleeting.so"
        publish(versions[1], fleeting, staging)
        publish(versions[2], fleeting, staging)
        fleeting.unlink()
        later = publish(versions[3], watched / "liblater.so", staging)
        # The fleeting file's window closed first: had it produced anything,
        # it would come before this.
        assert greet(w.event(later)) == "v3 x"
        assert not w.manager.is_loaded(fleeting)
    finally:
        w.close()


def test_notifications_for_one_path_arrive_in_action_order(
    watch: Watching,
    watched: Path,
    staging: Path,
    versions: dict[int, Path],
    broken: dict[str, tuple[Path, type[PluginError]]],
) -> None:
    path = watched / "libgreet.so"
    seen: list[tuple[str, str]] = []
    for library in (versions[1], versions[2], broken["text"][0], versions[3]):
        publish(library, path, staging)
        note = watch.next()
        seen.append((type(note).__name__, greet(note) if isinstance(note, Event) else ""))
        if isinstance(note, Event) and note.replaced:
            seen.append((type(watch.expect(Unloaded, path)).__name__, ""))
    path.unlink()
    seen.append((type(watch.expect(Unloaded, path)).__name__, ""))
    assert seen == [
        ("Loaded", "v1 x"),
        ("Loaded", "v2 x"),
        ("Unloaded", ""),
        ("LoadFailed", ""),
        ("Loaded", "v3 x"),
        ("Unloaded", ""),
        ("Unloaded", ""),
    ]


# ---- what is and is not a plugin ------------------------------------------------


def test_files_that_are_not_plugins_are_ignored_until_renamed_in(
    watch: Watching, watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    (watched / "notes.txt").write_text("not a plugin")
    shutil.copyfile(versions[1], watched / "libgreet.so.tmp")  # a compiler's temporary
    shutil.copyfile(versions[1], watched / ".libhidden.so")
    marker = publish(versions[2], watched / "libmarker.so", staging)
    assert greet(watch.event(marker)) == "v2 x"  # nothing came before it
    os.replace(watched / "libgreet.so.tmp", watched / "libgreet.so")  # the rename publishes it
    assert greet(watch.event(watched / "libgreet.so")) == "v1 x"
    assert sorted(h.path.name for h in watch.manager.handles) == ["libgreet.so", "libmarker.so"]


def test_building_straight_into_the_watched_directory(
    watch: Watching, watched: Path, compile_plugin: CompilePlugin
) -> None:
    """The builder links to a hidden temporary name and renames it into place."""
    built = compile_plugin("versioned", VERSIONED_GREETER, defines=("VERSION=7",), out_dir=watched)
    assert built.parent == watched
    assert greet(watch.event(built)) == "v7 x"


def test_symlinks_load_their_target_and_follow_relinking(
    watch: Watching, watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    link = watched / "libgreet.so"
    link.symlink_to(versions[1])
    first = watch.event(link)
    assert greet(first) == "v1 x"
    tmp = watched / ".relink"
    tmp.symlink_to(versions[2])
    os.replace(tmp, link)  # ln -sfn: atomic relink
    assert greet(watch.event(link)) == "v2 x"
    assert watch.expect(Unloaded, link) == Unloaded(link, 1, "Greeter")
    dangling = watched / "libdangling.so"
    dangling.symlink_to(staging / "missing.so")
    link.unlink()
    # The dangling link counts as absent: only the removal is reported.
    assert watch.expect(Unloaded, link) == Unloaded(link, 1, "Greeter")
    marker = publish(versions[3], watched / "libmarker.so", staging)
    watch.event(marker)


def test_subdirectories_need_recursive(watched: Path, staging: Path, versions: dict[int, Path]) -> None:
    sub = watched / "sub"
    sub.mkdir()
    flat = Watching(PluginManager(), watched, FAST)
    try:
        publish(versions[1], sub / "libnested.so", staging)
        marker = publish(versions[2], watched / "libmarker.so", staging)
        flat.event(marker)  # the nested file produced nothing before it
        assert not flat.manager.is_loaded(sub / "libnested.so")
    finally:
        flat.close()
    deep = Watching(PluginManager(), watched, WatchOptions(debounce_ms=20, emit_proxies=True, recursive=True))
    try:
        # The initial scan finds both, in path order; then a new nested file.
        assert deep.event().path == watched / "libmarker.so"
        assert deep.event().path == sub / "libnested.so"
        newer = publish(versions[3], sub / "libnewer.so", staging)
        assert greet(deep.event(newer)) == "v3 x"
        # A directory moved out of the tree takes its plugins with it.
        os.rename(sub, staging / "moved-out")
        gone = {deep.expect(Unloaded).path, deep.expect(Unloaded).path}
        assert gone == {sub / "libnested.so", sub / "libnewer.so"}
    finally:
        deep.close()


# ---- options -------------------------------------------------------------------------


def test_without_auto_load_only_paths_are_reported(watched: Path, staging: Path, versions: dict[int, Path]) -> None:
    existing = publish(versions[1], watched / "libexisting.so", staging)
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=20, auto_load=False))
    try:
        assert w.event(existing) == Event(existing)
        new = publish(versions[2], watched / "libnew.so", staging)
        note = w.event(new)
        assert note.handles == () and note.proxies == ()
        assert w.manager.handles == []
    finally:
        w.close()


def test_without_auto_unload_old_versions_keep_serving(watched: Path, staging: Path, versions: dict[int, Path]) -> None:
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=20, auto_unload=False, emit_proxies=True))
    try:
        path = publish(versions[1], watched / "libgreet.so", staging)
        first = w.event(path)
        publish(versions[2], path, staging)
        second = w.event(path)
        assert second.replaced and greet(second) == "v2 x"
        assert greet(first) == "v1 x"  # retired, still loaded
        path.unlink()
        marker = publish(versions[3], watched / "libmarker.so", staging)
        w.event(marker)  # no Unloaded came before it
        assert greet(first) == "v1 x" and greet(second) == "v2 x"
        assert len(w.manager.handles) == 3
    finally:
        w.close()
    with pytest.raises(PluginUnloadedError):
        greet(first)


def test_without_emit_proxies_events_carry_handles(watched: Path, staging: Path, versions: dict[int, Path]) -> None:
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=20))
    try:
        path = publish(versions[1], watched / "libgreet.so", staging)
        event = w.event(path)
        assert event.proxies == ()
        [handle] = event.handles
        assert handle.proxy("Versioned").greet("x") == "v1 x"  # type: ignore[attr-defined]
    finally:
        w.close()


def test_existing_files_are_loaded_first_unless_told_not_to(
    watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    existing = publish(versions[1], watched / "libexisting.so", staging)
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=20, load_existing=False))
    try:
        marker = publish(versions[2], watched / "libmarker.so", staging)
        w.event(marker)
        assert not w.manager.is_loaded(existing)
    finally:
        w.close()


def test_every_trait_a_file_implements_without_a_trait(
    watched: Path, staging: Path, example_plugins: dict[str, Path]
) -> None:
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=20), trait=None)
    try:
        path = publish(example_plugins["multi_trait"], watched / "libmulti.so", staging)
        event = w.event(path)
        assert {h.trait.name for h in event.handles} == {"Greeter", "Transformer"}
        path.unlink()
        assert {w.expect(Unloaded, path).trait, w.expect(Unloaded, path).trait} == {"Greeter", "Transformer"}
    finally:
        w.close()


def test_negative_debounce_is_refused() -> None:
    with pytest.raises(ValueError, match="debounce_ms must be >= 0, got -1"):
        WatchOptions(debounce_ms=-1)


# ---- stopping -------------------------------------------------------------------------


def test_stop_ends_both_loops_within_a_second(watched: Path) -> None:
    w = Watching(PluginManager(), watched, WatchOptions())
    start = time.monotonic()
    w.stop.set()
    w.thread.join(1.0)
    w.owner.join(1.0)
    assert not w.thread.is_alive() and not w.owner.is_alive()
    assert time.monotonic() - start < 1.0
    w.close()


def test_the_watchers_last_notification_says_it_stopped(watched: Path) -> None:
    notifications, stop, thread = start_watch_background(watched)
    stop.set()
    thread.join(TIMEOUT_S)
    assert notifications.get(timeout=TIMEOUT_S) == WatchNotification(stopped=True)


def test_a_missing_directory_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cannot watch a missing directory") as exc:
        start_watch_background(tmp_path / "missing")
    assert exc.value.filename == str(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        start_watch_background(tmp_path / "file")


def test_removing_the_watched_directory_unloads_and_reports(
    watch: Watching, watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    path = publish(versions[1], watched / "libgreet.so", staging)
    watch.event(path)
    shutil.rmtree(watched)
    assert watch.expect(Unloaded, path) == Unloaded(path, 1, "Greeter")
    error = watch.expect(Error, watched)
    assert isinstance(error, Error) and isinstance(error.error, FileNotFoundError)
    assert "the watched directory was removed" in error.reason
    watch.owner.join(TIMEOUT_S)
    assert not watch.owner.is_alive()


def replace_directory(directory: Path, how: str, elsewhere: Path) -> None:
    """Take ``directory`` away: ``rm -rf`` it or ``mv`` it to ``elsewhere``."""
    if how == "rmtree":
        shutil.rmtree(directory)
    else:
        os.rename(directory, elsewhere)


#: Long enough that ``rm -rf dir && mkdir dir`` always completes inside one window.
REPLACE_WINDOW = WatchOptions(debounce_ms=500, emit_proxies=True)


@pytest.mark.parametrize("how", ["rmtree", "rename"])
def test_a_directory_replaced_within_the_window_is_watched_again(
    watched: Path, staging: Path, tmp_path: Path, versions: dict[int, Path], how: str
) -> None:
    """``rm -rf dir && mkdir dir`` or ``mv dir dir.old && mkdir dir``: the old
    plugins go, the new directory's files load, and later files there too."""
    w = Watching(PluginManager(), watched, REPLACE_WINDOW)
    try:
        old = publish(versions[1], watched / "libold.so", staging)
        old_event = w.event(old)
        moved = tmp_path / "watched.old"
        replace_directory(watched, how, moved)
        watched.mkdir()
        new = publish(versions[2], watched / "libnew.so", staging)
        assert w.expect(Unloaded, old) == Unloaded(old, 1, "Greeter")
        assert greet(w.event(new)) == "v2 x"  # listed when the watch moved to the new directory
        with pytest.raises(PluginUnloadedError):
            greet(old_event)
        later = publish(versions[3], watched / "liblater.so", staging)
        assert greet(w.event(later)) == "v3 x"  # the new directory's own events
        if how == "rename":  # the old directory is no longer watched under the old name
            publish(versions[1], moved / "libstale.so", staging)
            (moved / "libold.so").unlink()
            marker = publish(versions[1], watched / "libmarker.so", staging)
            w.event(marker)  # nothing came before it
        assert sorted(h.path.name for h in w.manager.handles) == sorted(
            ["libnew.so", "liblater.so"] + (["libmarker.so"] if how == "rename" else [])
        )
        path = watched / "libnew.so"
        path.unlink()
        assert w.expect(Unloaded, path) == Unloaded(path, 1, "Greeter")
    finally:
        w.close()


@pytest.mark.parametrize("how", ["rmtree", "rename"])
def test_a_directory_gone_past_the_window_unloads_and_stops(
    watch: Watching, watched: Path, staging: Path, tmp_path: Path, versions: dict[int, Path], how: str
) -> None:
    """The directory is still missing when its window ends: its plugins are
    unloaded (even those renamed away with it), one Error, the watch ends."""
    first = publish(versions[1], watched / "libfirst.so", staging)
    second = publish(versions[2], watched / "libsecond.so", staging)
    assert {watch.event().path, watch.event().path} == {first, second}
    replace_directory(watched, how, tmp_path / "watched.old")
    assert {watch.expect(Unloaded).path, watch.expect(Unloaded).path} == {first, second}
    error = watch.expect(Error, watched)
    assert isinstance(error, Error) and isinstance(error.error, FileNotFoundError)
    assert "the watched directory was removed" in error.reason
    watch.owner.join(TIMEOUT_S)
    assert not watch.owner.is_alive()
    watched.mkdir()  # too late: the watch has ended
    assert watch.manager.handles == []


def test_a_directory_that_goes_takes_plugins_loaded_without_the_watcher(
    watched: Path, staging: Path, tmp_path: Path, versions: dict[int, Path]
) -> None:
    manager = PluginManager()
    [handle] = manager.load_plugins(publish(versions[1], watched / "libbefore.so", staging), "Greeter")
    w = Watching(manager, watched, WatchOptions(debounce_ms=20, load_existing=False))
    try:
        os.rename(watched, tmp_path / "watched.old")  # no file event: only the directory's identity tells
        assert w.expect(Unloaded, handle.path) == Unloaded(handle.path, 1, "Greeter")
        w.expect(Error, watched)
        assert not handle.is_loaded
    finally:
        w.close()


def test_watch_and_load_blocking_runs_on_the_calling_thread(
    watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    path = publish(versions[1], watched / "libgreet.so", staging)
    seen: list[tuple[str, str]] = []

    def callback(note: ManagerNotification) -> bool:
        assert threading.current_thread() is threading.main_thread()
        if isinstance(note, Event):
            seen.append(("Event", greet(note)))
            if not note.replaced:
                publish(versions[2], path, staging)  # picked up by the running watcher
                return True
            return False
        seen.append((type(note).__name__, ""))
        return True

    with PluginManager() as manager:
        watch_and_load_blocking(manager, watched, PluginTrait.Greeter, FAST, callback)
        assert seen == [("Event", "v1 x"), ("Event", "v2 x")]
        [handle] = manager.get_handles(path)
        assert handle.proxy("Versioned").greet("x") == "v2 x"  # type: ignore[attr-defined]


def test_watch_and_load_blocking_returns_cleanly_on_keyboard_interrupt(
    watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    publish(versions[1], watched / "libgreet.so", staging)

    def callback(note: ManagerNotification) -> bool:
        raise KeyboardInterrupt

    with PluginManager() as manager:
        watch_and_load_blocking(manager, watched, "Greeter", FAST, callback)
        assert manager.is_loaded(watched / "libgreet.so")


def test_a_failing_callback_propagates_to_the_owner_thread(
    watched: Path, staging: Path, versions: dict[int, Path]
) -> None:
    publish(versions[1], watched / "libgreet.so", staging)

    def callback(note: ManagerNotification) -> bool:
        raise RuntimeError("callback bug")

    with PluginManager() as manager, pytest.raises(RuntimeError, match="callback bug"):
        watch_and_load_blocking(manager, watched, "Greeter", FAST, callback)


# ---- PluginManager.reload -------------------------------------------------------------


def test_reload_failure_changes_nothing(
    versions: dict[int, Path], broken: dict[str, tuple[Path, type[PluginError]]], tmp_path: Path
) -> None:
    path = tmp_path / "libgreet.so"
    shutil.copyfile(versions[1], path)
    with PluginManager() as manager:
        first = manager.reload(path, "Greeter")
        assert not first.replaced and first.counters == {}
        [handle] = first.handles
        proxy = handle.proxy("Versioned")
        shutil.copyfile(broken["maker_returns_null"][0], path)  # in place: safe, the copy is loaded
        with pytest.raises(MakerReturnedNullError) as exc:
            manager.reload(path, "Greeter")
        assert exc.value.path == str(path)
        assert proxy.greet("x") == "v1 x"  # type: ignore[attr-defined]
        assert manager.get_handles(path) == [handle]
        shutil.copyfile(versions[2], path)
        second = manager.reload(path)
        assert second.replaced and second.counters == {"Greeter": 1}
        assert second.handles[0].proxy("Versioned").greet("x") == "v2 x"  # type: ignore[attr-defined]
        assert not handle.is_loaded


def test_reload_loads_new_code_from_a_library_dlclose_never_unmaps(
    compile_plugin: CompilePlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDFLAGS", "-Wl,-z,nodelete")  # honoured by the builder's linker line
    libs = {v: compile_plugin("nodelete", VERSIONED_GREETER, defines=(f"VERSION={v}",)) for v in (4, 5)}
    monkeypatch.delenv("LDFLAGS")
    path = tmp_path / "libnodelete.so"
    shutil.copyfile(libs[4], path)
    with pytest.warns(LibraryStillMappedWarning, match="cannot unload: DF_1_NODELETE is set") as caught:
        with PluginManager() as manager:  # loads the path itself, no private copy
            [handle] = manager.load_plugins(path, "Greeter")
            assert handle.proxy("Versioned").greet("x") == "v4 x"  # type: ignore[attr-defined]
    assert [w.message.path for w in caught] == [path]  # type: ignore[union-attr]
    assert handle.unload_warning is not None and "DF_1_NODELETE" in str(handle.unload_warning)
    os.replace(shutil.copyfile(libs[5], tmp_path / "new.so"), path)
    with pytest.warns(LibraryStillMappedWarning, match="DF_1_NODELETE"):
        with PluginManager() as manager:
            [handle] = manager.load_plugins(path, "Greeter")
            # The measured glibc behaviour the private copies exist for: the old code.
            assert handle.proxy("Versioned").greet("x") == "v4 x"  # type: ignore[attr-defined]
            [new] = manager.reload(path, "Greeter").handles
            assert new.proxy("Versioned").greet("x") == "v5 x"  # type: ignore[attr-defined]


def test_reload_keeps_every_trait_the_file_was_loaded_for(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "libmulti.so"
    shutil.copyfile(example_plugins["multi_trait"], path)
    with PluginManager() as manager:
        manager.load_plugins(path, PluginTrait.Greeter)
        manager.load_plugins(path, PluginTrait.Transformer)
        result = manager.reload(path, PluginTrait.Greeter)
        assert sorted(h.trait.name for h in result.handles) == ["Greeter", "Transformer"]
        assert set(result.counters) == {"Greeter", "Transformer"}


def test_retired_versions_unload_alone_or_with_the_path(versions: dict[int, Path], tmp_path: Path) -> None:
    path = tmp_path / "libgreet.so"
    shutil.copyfile(versions[1], path)
    with PluginManager() as manager:
        [v1] = manager.reload(path, "Greeter").handles
        shutil.copyfile(versions[2], path)
        [v2] = manager.reload(path, "Greeter", unload_old=False).handles
        shutil.copyfile(versions[3], path)
        [v3] = manager.reload(path, "Greeter", unload_old=False).handles
        copies = [h.library.load_path for h in (v1, v2, v3)]
        assert len(set(copies)) == 3 and all(c.exists() for c in copies)
        assert v1.unload() == 1  # a retired version alone
        assert manager.get_handles(path) == [v3] and v2.is_loaded
        assert v2.proxy("Versioned").greet("x") == "v2 x"  # type: ignore[attr-defined]
        assert manager.unload_by_path(path) == {"Greeter": 1}
        assert not v2.is_loaded and not v3.is_loaded and manager.handles == []
        assert not any(c.exists() for c in copies)
        assert not any(str(c) in mapped_paths() for c in copies)


# ---- the command line ---------------------------------------------------------------


def test_cli_watch_prints_notifications_until_ctrl_c(
    watched: Path, staging: Path, versions: dict[int, Path], broken: dict[str, tuple[Path, type[PluginError]]]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugin_host", "watch", str(watched), "--trait", "Greeter", "--debounce-ms", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert lines.get(timeout=TIMEOUT_S).startswith(f"watching  {watched}")
        path = publish(versions[1], watched / "libgreet.so", staging)
        assert lines.get(timeout=TIMEOUT_S) == f"loaded    {path}: Greeter [Versioned]"
        publish(broken["text"][0], path, staging)
        assert lines.get(timeout=TIMEOUT_S).startswith(f"error     {path}: not a loadable shared library")
        publish(versions[2], path, staging)
        assert lines.get(timeout=TIMEOUT_S) == f"reloaded  {path}: Greeter [Versioned]"
        assert lines.get(timeout=TIMEOUT_S) == f"unloaded  {path}: Greeter unmaker counter 1"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT_S) == 0
        assert lines.get(timeout=TIMEOUT_S) == f"unloaded  {path}: Greeter unmaker counter 1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(TIMEOUT_S)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()
    assert "Traceback" not in stderr


# ---- stress ------------------------------------------------------------------------------


def test_callers_survive_fifty_replacements(watched: Path, staging: Path, versions: dict[int, Path]) -> None:
    """8 threads call proxies while the plugin is replaced 50 times: no crash, no
    error but PluginUnloadedError on a proxy of a released version, counters balanced."""
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=10, emit_proxies=True))
    path = watched / "libgreet.so"
    done = threading.Event()
    outcomes: queue.Queue[tuple[int, int, set[str], list[BaseException]]] = queue.Queue()

    def call_forever() -> None:
        calls = unloaded = 0
        results: set[str] = set()
        unexpected: list[BaseException] = []
        while not done.is_set():
            try:
                [handle] = w.manager.get_handles(path)
                proxy = handle.proxies()[0]
                for _ in range(50):
                    results.add(proxy.greet("x"))  # type: ignore[attr-defined]
                    calls += 1
            except PluginUnloadedError:
                unloaded += 1  # documented: a released version refuses calls
            except ValueError:
                pass  # between the removal and the first load: no handle yet
            except BaseException as e:
                unexpected.append(e)
                break
        outcomes.put((calls, unloaded, results, unexpected))

    publish(versions[1], path, staging)
    first = w.event(path)
    callers = [threading.Thread(target=call_forever, name=f"caller {i}") for i in range(8)]
    for t in callers:
        t.start()
    counters: list[int | None] = []
    final: dict[Path, dict[str, int | None]] = {}
    try:
        for i in range(50):
            version = 2 + i % 2
            publish(versions[version], path, staging)
            event = w.event(path)
            assert event.replaced and greet(event) == f"v{version} x"
            unloaded = w.expect(Unloaded, path)
            assert isinstance(unloaded, Unloaded)
            counters.append(unloaded.counter)
    finally:
        done.set()
        for t in callers:
            t.join(TIMEOUT_S)
        final = w.close()
    totals = [outcomes.get(timeout=TIMEOUT_S) for _ in callers]
    assert [e for *_, errors in totals for e in errors] == []
    assert sum(calls for calls, *_ in totals) > 0
    assert set().union(*(results for _, _, results, _ in totals)) <= {"v1 x", "v2 x", "v3 x"}
    # 51 versions loaded, each made one registration and unmade it exactly once.
    assert counters == [1] * 50
    assert final == {path: {"Greeter": 1}}
    assert not first.handles[0].is_loaded


# ---- hot reload in every language: C, C++ and Rust plugins alike ------------------------


def test_hot_reload_in_every_language(
    language: str, language_greeter: LanguageGreeter, watch: Watching, watched: Path, staging: Path
) -> None:
    """A rebuilt C, C++ or Rust plugin is swapped in: new code, fresh static state, the old copy unmapped."""
    path = publish(language_greeter(language), watched / f"lib{language}_greeter.so", staging)
    first = watch.event(path)
    [old] = [p for p in first.proxies if p.type_name == "Counting"]
    assert [old.greet(n) for n in "ab"] == ["call 1, a", "call 2, b"]  # type: ignore[attr-defined]
    assert first.handles[0].is_plugin_owned
    old_copy = first.handles[0].library.load_path
    publish(language_greeter(language, host_owned=True), path, staging)  # "the rebuild"
    second = watch.event(path)
    assert second.replaced and not second.handles[0].is_plugin_owned
    [new] = [p for p in second.proxies if p.type_name == "Counting"]
    assert new.greet("c") == "call 1, c"  # type: ignore[attr-defined]
    assert watch.expect(Unloaded, path) == Unloaded(path, 3, "Greeter")
    with pytest.raises(PluginUnloadedError, match="the library has been unloaded"):
        old.greet("x")  # type: ignore[attr-defined]
    assert not old_copy.exists() and str(old_copy) not in mapped_paths()
