"""Paths and loader messages that are not UTF-8: real files, real loads.

A POSIX file name is bytes; Python spells the undecodable ones with lone
surrogates (``os.fsdecode(b"caf\\xe9")``).  The loader's messages carry those
bytes too (the path, or a damaged ``DT_NEEDED`` name), and CPython's
``_ctypes.dlopen``/``dlsym`` decode them as strict UTF-8.  Nothing here may
end in a ``UnicodeDecodeError`` or ``UnicodeEncodeError``: a good plugin
loads wherever it lives, a damaged one gives a typed error naming it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import TEST_PLUGINS, CompilePlugin
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from plugin_host import (
    Loaded,
    LoadFailed,
    ManagerNotification,
    PluginManager,
    Unloaded,
    WatchOptions,
    process_watch_notifications_blocking,
    start_watch_background,
)
from plugin_host.admission import probe_library
from plugin_interface import LibraryLoadError, PluginError, SymbolNotFoundError

TIMEOUT_S = 10.0  # generous: the machine is shared; a pass never waits this long
LATIN1_NAME = os.fsdecode(b"caf\xe9")  # "café" in Latin-1: not valid UTF-8
HANDWRITTEN = (TEST_PLUGINS / "handwritten" / "handwritten.c").read_text()


def greet(manager: PluginManager, path: Path) -> list[str]:
    return [p.greet("x") for h in manager.get_handles(path) for p in h.proxies()]  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def polite(compile_plugin: CompilePlugin) -> Path:
    """A good plugin the host and the probe look up missing symbols in: no
    descriptor, no ``plugin_unregister_all`` (each entry is released by its unmaker)."""
    return compile_plugin("polite", HANDWRITTEN, defines=("NO_UNREGISTER_ALL",))


@pytest.fixture
def latin1_dir(tmp_path: Path, example_plugins: dict[str, Path], polite: Path) -> Path:
    """A folder with a Latin-1 name holding good plugins of every shape."""
    d = tmp_path / LATIN1_NAME
    d.mkdir()
    shutil.copyfile(example_plugins["greeters"], d / "libgreeters.so")  # an aggregate
    shutil.copyfile(example_plugins["host_owned"], d / "libhost_owned.so")  # makers only
    shutil.copyfile(example_plugins["multi_trait"], d / "libmulti.so")  # two traits
    shutil.copyfile(polite, d / "libpolite.so")
    return d


@pytest.fixture
def latin1_file(tmp_path: Path, polite: Path) -> Path:
    """A good plugin whose own file name is Latin-1 (its private copies keep the name)."""
    d = tmp_path / "plain"
    d.mkdir()
    return Path(shutil.copyfile(polite, d / f"lib{LATIN1_NAME}.so"))


def damage_needed(library: Path, out: Path) -> Path:
    """A copy of ``library`` whose first ``DT_NEEDED`` name starts with b"\\xff\\xfe"."""
    data = bytearray(library.read_bytes())
    with open(library, "rb") as f:
        elf = ELFFile(f)
        dynamic = next(s for s in elf.iter_sections() if isinstance(s, DynamicSection))
        dynstr = elf.get_section(dynamic["sh_link"])
        needed = next(t for t in dynamic.iter_tags() if t.entry.d_tag == "DT_NEEDED")
        offset = dynstr["sh_offset"] + needed.entry.d_val
    assert data[offset : offset + len(needed.needed)] == needed.needed.encode()
    data[offset : offset + 2] = b"\xff\xfe"
    out.write_bytes(data)
    return out


@pytest.fixture
def damaged_dir(tmp_path: Path, example_plugins: dict[str, Path]) -> Path:
    """A folder with a good plugin and one whose DT_NEEDED string is damaged."""
    d = tmp_path / "damaged"
    d.mkdir()
    shutil.copyfile(example_plugins["greeters"], d / "libgood.so")
    damage_needed(example_plugins["multi_trait"], d / "libbad.so")
    return d


# ---- a good plugin under a Latin-1 name ---------------------------------------------


@pytest.mark.parametrize("copy_on_load", [False, True])
def test_directory_load_in_a_latin1_folder(latin1_dir: Path, copy_on_load: bool) -> None:
    with PluginManager(copy_on_load=copy_on_load) as manager:
        handles = manager.load_plugins(latin1_dir, "Greeter")
        assert {h.path.name: h.type_names for h in handles} == {
            "libgreeters.so": ["English", "Spanish", "French"],
            "libhost_owned.so": ["German", "Italian"],
            "libmulti.so": ["Counting"],
            "libpolite.so": ["Polite"],
        }
        assert greet(manager, latin1_dir / "libpolite.so") == ["Good day, x!"]
        errors: list[PluginError] = []
        [transformer] = manager.load_plugins(latin1_dir, "Transformer", errors=errors)
        assert transformer.type_names == ["Rot13", "Upper"]
        # The others do not implement it: typed errors naming each file.
        assert sorted(Path(e.path or "").name for e in errors) == ["libgreeters.so", "libhost_owned.so", "libpolite.so"]
        assert all(isinstance(e, SymbolNotFoundError) and LATIN1_NAME in str(e) for e in errors)
        assert manager.unload_by_path(latin1_dir / "libpolite.so") == {"Greeter": 1}


def test_single_file_and_reload_with_a_latin1_name(latin1_dir: Path, latin1_file: Path) -> None:
    with PluginManager() as manager:
        for path in (latin1_dir / "libpolite.so", latin1_file):
            [handle] = manager.load_plugins(path, "Greeter")
            assert handle.path == path and greet(manager, path) == ["Good day, x!"]
            again = manager.reload(path, "Greeter")  # a new version, from a private copy
            assert again.replaced and again.counters == {"Greeter": 1}
            assert not handle.is_loaded and greet(manager, path) == ["Good day, x!"]


def test_probe_admits_a_good_file_under_latin1_names(latin1_dir: Path, latin1_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for _ in range(2):  # the second time from the cache: it must say clean, not blocked
        with PluginManager(probe=True, probe_cache_dir=cache) as manager:
            assert len(manager.load_plugins(latin1_dir, "Greeter")) == 4
            manager.load_plugins(latin1_file, "Greeter")
            assert greet(manager, latin1_file) == ["Good day, x!"]
    entries = json.loads((cache / "probe-cache.json").read_text())["entries"]
    assert len(entries) == 5 and {e["status"] for e in entries.values()} == {"clean"}
    result = probe_library(latin1_file, use_cache=False)
    assert result.clean and result.made == 1 and result.path == str(latin1_file)


# ---- a damaged DT_NEEDED string -------------------------------------------------------


def test_damaged_needed_name_is_a_typed_error_naming_the_file(damaged_dir: Path) -> None:
    bad = damaged_dir / "libbad.so"
    with PluginManager() as manager:
        with pytest.raises(LibraryLoadError, match=r"the dynamic loader refused it: .*\\xff\\xfe") as exc:
            manager.load_plugins(bad, "Greeter")
        assert exc.value.path == str(bad)
        assert str(bad) in str(exc.value)
        errors: list[PluginError] = []
        [good] = manager.load_plugins(damaged_dir, "Greeter", errors=errors)
        assert good.path == damaged_dir / "libgood.so"
        [error] = errors
        assert isinstance(error, LibraryLoadError) and error.path == str(bad)


def test_probe_leaves_a_damaged_needed_name_to_the_loader(damaged_dir: Path, tmp_path: Path) -> None:
    """The child's dlopen fails like the host's would: not a crash, nothing blocked."""
    bad = damaged_dir / "libbad.so"
    cache = tmp_path / "cache"
    with PluginManager(probe=True, probe_cache_dir=cache) as manager:
        for _ in range(2):  # the second time too: a loader refusal is not blocked
            with pytest.raises(LibraryLoadError, match=r"\\xff\\xfe") as exc:
                manager.load_plugins(bad, "Greeter")
            assert exc.value.path == str(bad)
        errors: list[PluginError] = []
        [good] = manager.load_plugins(damaged_dir, "Greeter", errors=errors)
        assert good.path.name == "libgood.so"
        assert [type(e) for e in errors] == [LibraryLoadError]
    result = probe_library(bad, use_cache=False)
    assert not result.clean and any("\\xff\\xfe" in p for p in result.problems)


# ---- the watcher ----------------------------------------------------------------------------


def test_watcher_in_a_latin1_folder_with_a_damaged_plugin(
    latin1_dir: Path, example_plugins: dict[str, Path], tmp_path: Path
) -> None:
    manager = PluginManager()
    notes: queue.Queue[ManagerNotification | BaseException] = queue.Queue()
    opts = WatchOptions(debounce_ms=20)
    notifications, stop, watcher = start_watch_background(latin1_dir, opts)

    def own() -> None:
        try:
            process_watch_notifications_blocking(manager, latin1_dir, notifications, "Greeter", opts, notes.put)
        except BaseException as e:  # surfaced below
            notes.put(e)

    def next_note() -> ManagerNotification:
        note = notes.get(timeout=TIMEOUT_S)
        if isinstance(note, BaseException):
            raise note
        return note

    owner = threading.Thread(target=own, name="test manager owner")
    owner.start()
    try:
        existing = [next_note() for _ in range(4)]
        assert {type(n) for n in existing} == {Loaded}
        assert sorted(n.path.name for n in existing) == sorted(p.name for p in latin1_dir.iterdir())
        staging = tmp_path / "staging"
        staging.mkdir()
        bad = damage_needed(example_plugins["multi_trait"], staging / "libbad.so")
        os.replace(bad, latin1_dir / "libbad.so")
        failed = next_note()
        assert isinstance(failed, LoadFailed) and isinstance(failed.error, LibraryLoadError)
        assert failed.path == latin1_dir / "libbad.so" and "\\xff\\xfe" in failed.reason
        new = Path(shutil.copyfile(example_plugins["greeters"], staging / "libnew.so"))
        os.replace(new, latin1_dir / "libnew.so")
        loaded = next_note()
        assert isinstance(loaded, Loaded) and loaded.path == latin1_dir / "libnew.so"
        (latin1_dir / "libnew.so").unlink()
        assert next_note() == Unloaded(latin1_dir / "libnew.so", 3, "Greeter")
    finally:
        stop.set()
        watcher.join(TIMEOUT_S)
        owner.join(TIMEOUT_S)
        manager.unload_all()
    assert not watcher.is_alive() and not owner.is_alive()


# ---- the command line ---------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """``plugin-host ARGS`` with a strict UTF-8 stdout (as under an en_US.UTF-8 locale)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run(
        [sys.executable, "-m", "plugin_host", *args], capture_output=True, env=env, timeout=60, check=False
    )


def test_cli_list_prints_a_latin1_folder(latin1_dir: Path, latin1_file: Path) -> None:
    for target in (latin1_dir, latin1_file):
        proc = run_cli("list", str(target))
        assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout.decode()  # valid UTF-8: the undecodable byte is escaped
        assert "caf\\udce9" in out
        assert "Polite" in out


def test_cli_list_reports_a_damaged_plugin_and_lists_the_rest(damaged_dir: Path) -> None:
    proc = run_cli("list", str(damaged_dir))
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    assert proc.returncode == 1
    assert "libgood.so" in proc.stdout.decode()
    [error] = proc.stderr.decode().splitlines()
    assert error.startswith(f"error: {damaged_dir / 'libbad.so'}: the dynamic loader refused it")
    assert "\\xff\\xfe" in error


def test_cli_watch_prints_a_latin1_folder(latin1_dir: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugin_host", "watch", str(latin1_dir), "--trait", "Greeter", "--debounce-ms", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.decode().rstrip("\n"))  # valid UTF-8: the undecodable byte is escaped

    reader = threading.Thread(target=read)
    reader.start()
    try:
        escaped = str(latin1_dir).replace(LATIN1_NAME, "caf\\udce9")
        assert lines.get(timeout=TIMEOUT_S).startswith(f"watching  {escaped}")
        loaded = sorted(lines.get(timeout=TIMEOUT_S) for _ in range(4))
        assert loaded[-1] == f"loaded    {escaped}/libpolite.so: Greeter [Polite]"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(TIMEOUT_S)
        assert proc.stderr is not None and proc.stdout is not None
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
