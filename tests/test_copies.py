"""Private copies (plugin_host.loading._copies): reads bounded by need, names
within NAME_MAX, cleanup that never raises, stale directories of dead hosts.

Huge files are sparse (``truncate``: they cost no disk).  Every load of one
runs in a child interpreter whose address space is capped (``RLIMIT_AS``) a
few hundred MiB above what it uses: a read sized by the file fails there with
MemoryError instead of costing this shared machine gigabytes, and the peak
RSS (``VmHWM``, reset before each case) shows what each load cost.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_host import PluginManager, PluginTrait, WatchOptions
from plugin_host.admission import probe_library
from plugin_host.formats import MAX_LIBRARY_BYTES, ElfClass, ElfData, ElfType, check_elf_complete, host_elf_identity
from plugin_host.loading import _copies
from plugin_host.loading._copies import (
    COPY_DIR_PREFIX,
    copy_name,
    read_for_copy,
    remove_private_copy,
    write_private_copy,
)
from plugin_interface import NotASharedLibraryError, PluginError
from test_watch import Watching

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux: /proc, RLIMIT_AS, ELF")

GIB = 1 << 30
HUGE_BYTES = 8 * GIB
NAME_MAX = 255
LONG_NAME = "lib" + "x" * 249 + ".so"  # 255 bytes: the longest name a Linux file system takes


@pytest.fixture(scope="module")
def good(example_plugins: dict[str, Path]) -> Path:
    return example_plugins["greeters"]


def run_child(code: str, *args: str, env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a child interpreter with ``env``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _order() -> str:
    return "<" if host_elf_identity().byte_order == ElfData.ELFDATA2LSB else ">"


def elf_header(phentsize: int, phnum: int, program_headers: bytes = b"") -> bytes:
    """An ELF64 header of this host's byte order and machine: a shared library whose
    program headers (``program_headers``, the rest zeros) start right after it (offset 64)
    and whose section headers are absent."""
    host = host_elf_identity()
    order = _order()
    ident = b"\x7fELF" + bytes([ElfClass.ELFCLASS64, host.byte_order, 1]) + bytes(9)
    return (
        struct.pack(
            order + "16sHHIQQQIHHHHHH",
            ident,
            ElfType.ET_DYN,
            host.machine or 0,
            1,  # e_version
            0,  # e_entry
            64,  # e_phoff
            0,  # e_shoff
            0,  # e_flags
            64,  # e_ehsize
            phentsize,
            phnum,
            64,  # e_shentsize
            0,  # e_shnum
            0,  # e_shstrndx
        )
        + program_headers
    )


def dynamic_segment(offset: int, size: int) -> bytes:
    """An ELF64 PT_DYNAMIC program header."""
    return struct.pack(_order() + "IIQQQQQQ", 2, 6, offset, offset, offset, size, size, 8)


#: The huge files: zeros; a real plugin padded with zeros (passes every check of its head);
#: a 4 GiB program header table (65535 entries of 65535 bytes); a 256 MiB one (4096 entries: a
#: read of it fits under the child's cap, so the peak RSS shows it); one PT_DYNAMIC of almost 8 GiB.
KINDS = ("junk", "huge", "bomb", "tablebomb", "dynbomb")


# ---- huge sparse files: bounded reads, typed errors ------------------------

_SPARSE_CHILD = r"""
import json, os, resource, shutil, sys
from pathlib import Path
from plugin_host import PluginManager, WatchOptions
from plugin_host.admission import probe_library
from plugin_host.loading import _copies
from plugin_host.watch import process_watch_notifications_blocking, start_watch_background
from plugin_interface import NotASharedLibraryError, PluginError

args = json.loads(sys.argv[1])
good, work = Path(args["good"]), Path(args["work"])
HUGE, HEADS = args["huge_bytes"], {kind: bytes.fromhex(head) for kind, head in args["heads"].items()}


def make(kind, path):
    # Sparse: truncate() makes the size without writing (or storing) the bytes.
    with open(path, "wb") as f:
        if kind == "huge":
            f.write(good.read_bytes())
        else:
            f.write(HEADS.get(kind, b""))
        f.truncate(HUGE)
    return path


def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak_rss():
    # Linux: "5" resets the peak RSS (VmHWM) to the current RSS, so each scenario's peak is its own.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def described(e):
    return {"type": type(e).__name__, "typed": isinstance(e, NotASharedLibraryError), "message": str(e),
            "path": getattr(e, "path", None)}


def single(manager_args, kind):
    def run(out, d):
        file = make(kind, d / f"lib{kind}.so")
        with PluginManager(**manager_args) as m:
            out["loaded"] = len(m.load_plugins(file, "Greeter"))
    return run


def directory(manager_args):
    def run(out, d):
        for name in ("a", "b"):
            shutil.copy(good, d / f"libgood_{name}.so")
        for kind in args["kinds"]:
            make(kind, d / f"lib{kind}.so")
        errors = []
        with PluginManager(**manager_args) as m:
            out["loaded"] = len(m.load_plugins(d, "Greeter", errors=errors))
            out["errors"] += [described(e) for e in errors]
    return run


def reload(kind):
    def run(out, d):
        path = d / "libplugin.so"
        shutil.copy(good, path)
        with PluginManager() as m:
            [handle] = m.reload(path, "Greeter").handles
            os.replace(make(kind, d / "new.so"), path)  # the file is replaced by a huge one
            try:
                m.reload(path, "Greeter")
            finally:
                out["still_serves"] = handle.proxy("English").greet("x")
    return run


def probe(kind):
    def run(out, d):
        probe_library(make(kind, d / f"lib{kind}.so"), cache_dir=d / "cache")
    return run


def watch(out, d):
    # The watcher's first scan loads what is there: three huge files and a good one.
    for kind in args["kinds"]:
        make(kind, d / f"lib{kind}.so")
    shutil.copy(good, d / "libgood.so")
    queue, stop, thread = start_watch_background(d, WatchOptions(debounce_ms=20))
    notes = []

    def on_note(note):
        notes.append(note)
        return len(notes) < len(args["kinds"]) + 1

    try:
        with PluginManager() as m:
            process_watch_notifications_blocking(m, d, queue, "Greeter", WatchOptions(debounce_ms=20), on_note)
    finally:
        stop.set()
        thread.join(30)
    out["loaded"] = sum(1 for n in notes if getattr(n, "handles", None))
    out["errors"] += [described(n.error) for n in notes if getattr(n, "error", None) is not None]


# Single files first: the watcher's threads take address space (stacks, malloc arenas) the cap then lacks.
scenarios = {f"in-place-{kind}": single({}, kind) for kind in args["kinds"]}
for kind in args["kinds"]:
    scenarios[f"copy-on-load-{kind}"] = single({"copy_on_load": True}, kind)
    scenarios[f"probed-{kind}"] = single({"probe": True, "probe_cache_dir": str(work / "cache")}, kind)
    scenarios[f"reload-{kind}"] = reload(kind)
    scenarios[f"probe_library-{kind}"] = probe(kind)
scenarios.update({"directory-in-place": directory({}), "directory-copy": directory({"copy_on_load": True})})
scenarios["watch"] = watch

# Everything a load uses imported and mapped first; then the cap.
with PluginManager(copy_on_load=True) as m:
    m.load_plugins(good, "Greeter")
cap = (status_kib("VmSize") << 10) + (args["headroom_mib"] << 20)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

results = {}
for name, scenario in scenarios.items():
    d = work / name
    d.mkdir()
    out = {"errors": [], "loaded": 0}
    reset_peak_rss()
    before = status_kib("VmRSS")
    try:
        scenario(out, d)
    except PluginError as e:
        out["errors"].append(described(e))
    except BaseException as e:  # MemoryError, OSError: what must never escape a load
        out["escaped"] = f"{type(e).__name__}: {e}"
    out["rss_growth_kib"] = status_kib("VmHWM") - before
    private = _copies._private_dir
    out["copies_left"] = sorted(os.listdir(private)) if private is not None and private.is_dir() else []
    results[name] = out
    shutil.rmtree(d)
print("RESULTS " + json.dumps(results))
"""

#: Address space the child may add once warmed up: far below one huge file, enough for watcher threads.
HEADROOM_MIB = 512
#: What one load of a huge file may add to the child's peak RSS.
MAX_RSS_GROWTH_KIB = 64 << 10

LIMIT_MESSAGE = f"it is {HUGE_BYTES} bytes, over the limit of {MAX_LIBRARY_BYTES} bytes for a private copy"
JUNK_MESSAGE = "unrecognised file format"
# Copy-on-load, reload, probed, probe_library and the watcher read the file; a file loaded in place is mapped.
NO_DYNAMIC = "no dynamic section"
DYNAMIC_TOO_LARGE = f"its dynamic section ({HUGE_BYTES - 4096} bytes) is larger than"
IN_PLACE = {"junk": JUNK_MESSAGE, "bomb": NO_DYNAMIC, "tablebomb": NO_DYNAMIC, "dynbomb": DYNAMIC_TOO_LARGE}
COPIED = {kind: JUNK_MESSAGE if kind == "junk" else LIMIT_MESSAGE for kind in KINDS}
EXPECTED: dict[str, tuple[int, list[tuple[str, str]]]] = {
    # scenario: (libraries loaded, [(file name, message part)] of the typed errors, by file name)
    "directory-in-place": (3, sorted((f"lib{kind}.so", m) for kind, m in IN_PLACE.items())),
    "directory-copy": (2, sorted((f"lib{kind}.so", m) for kind, m in COPIED.items())),
    "watch": (1, sorted((f"lib{kind}.so", m) for kind, m in COPIED.items())),
    "in-place-huge": (1, []),  # mapped by the loader, never read
}
for _kind in KINDS:
    if _kind in IN_PLACE:
        EXPECTED[f"in-place-{_kind}"] = (0, [(f"lib{_kind}.so", IN_PLACE[_kind])])
    for _how in ("copy-on-load", "probed", "probe_library"):
        EXPECTED[f"{_how}-{_kind}"] = (0, [(f"lib{_kind}.so", COPIED[_kind])])
    EXPECTED[f"reload-{_kind}"] = (0, [("libplugin.so", COPIED[_kind])])


@pytest.fixture(scope="module")
def sparse_results(good: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every scenario's outcome in one capped child interpreter."""
    work = tmp_path_factory.mktemp("sparse")
    args = {
        "good": str(good),
        "work": str(work),
        "huge_bytes": HUGE_BYTES,
        "kinds": KINDS,
        "heads": {
            "bomb": elf_header(65535, 65535).hex(),
            "tablebomb": elf_header(65535, 4096).hex(),
            "dynbomb": elf_header(56, 1, dynamic_segment(4096, HUGE_BYTES - 4096)).hex(),
        },
        "headroom_mib": HEADROOM_MIB,
    }
    (work / "tmp").mkdir()
    proc = run_child(_SPARSE_CHILD, json.dumps(args), env={**os.environ, "TMPDIR": str(work / "tmp")}, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, f"the child died (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    results: dict[str, dict[str, Any]] = json.loads(lines[-1][len("RESULTS ") :])
    return results


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_huge_sparse_file_is_refused_with_bounded_memory(
    sparse_results: dict[str, dict[str, Any]], scenario: str
) -> None:
    """An 8 GiB sparse file (zeros, a real plugin padded with zeros, or a 4 GiB program
    header table) gives a typed error naming it, never a MemoryError, and costs no more than
    a few MiB: single file, directory among good files, copy-on-load, probed, reload,
    probe_library, the watcher."""
    out = sparse_results[scenario]
    assert "escaped" not in out, out["escaped"]
    loaded, expected_errors = EXPECTED[scenario]
    assert out["loaded"] == loaded, out
    errors = sorted(out["errors"], key=lambda e: str(e["path"]))
    assert [(Path(e["path"]).name, e["typed"]) for e in errors] == [(name, True) for name, _ in expected_errors]
    for error, (_, message) in zip(errors, expected_errors, strict=True):
        assert message in error["message"], error
        assert error["path"] in error["message"]
    assert out["rss_growth_kib"] < MAX_RSS_GROWTH_KIB, out
    assert out["copies_left"] == [], out


def test_reload_of_a_huge_file_keeps_the_current_version(sparse_results: dict[str, dict[str, Any]]) -> None:
    for kind in KINDS:
        assert sparse_results[f"reload-{kind}"]["still_serves"] == "Hello, x!"


def test_check_elf_complete_reads_56_bytes_per_program_header() -> None:
    """A 4 GiB program header table (e_phentsize and e_phnum at their maximum) in an 8 GiB
    image: only the 56 bytes of each entry the checks use are read."""
    if host_elf_identity().elf_class != ElfClass.ELFCLASS64:
        pytest.skip("an ELF64 host")
    for phentsize in (65535, 56):
        header = elf_header(phentsize, 65535)
        requests: list[int] = []

        def read(offset: int, length: int, header: bytes = header, requests: list[int] = requests) -> bytes:
            assert length <= 56 * 65535, f"read of {length} bytes at {offset}"
            requests.append(length)
            return header[offset : offset + length] if offset < len(header) else bytes(length)

        layout = check_elf_complete(read, HUGE_BYTES, "libbomb.so")
        assert layout is not None and len(layout.program_headers) == 65535
        assert sum(requests) <= 64 + 56 * 65535, (phentsize, sum(requests))


def test_read_for_copy_checks_the_head_before_the_size(tmp_path: Path, good: Path) -> None:
    """Small files, so in-process: the order of the checks and the messages."""
    text = tmp_path / "libtext.so"
    text.write_text("not a library, and long " * 100)
    with pytest.raises(NotASharedLibraryError, match=JUNK_MESSAGE) as exc:
        read_for_copy(text, max_library_bytes=10)  # junk says so, whatever its size
    assert exc.value.path == str(text)
    size = good.stat().st_size
    with pytest.raises(NotASharedLibraryError, match=f"it is {size} bytes, over the limit of 1000 bytes") as exc:
        read_for_copy(good, max_library_bytes=1000)
    assert exc.value.path == str(good)
    data, st = read_for_copy(good, max_library_bytes=size)
    assert data == good.read_bytes() and st.st_size == size
    truncated = tmp_path / "libtruncated.so"
    truncated.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(NotASharedLibraryError, match="truncated") as exc:
        read_for_copy(truncated)
    assert exc.value.path == str(truncated)


def test_max_library_bytes_per_manager(good: Path) -> None:
    size = good.stat().st_size
    with PluginManager(copy_on_load=True, max_library_bytes=1000) as manager:
        with pytest.raises(NotASharedLibraryError, match=f"{size} bytes, over the limit of 1000 bytes") as exc:
            manager.load_plugins(good, PluginTrait.Greeter)
        assert exc.value.path == str(good)
        with pytest.raises(NotASharedLibraryError, match="over the limit of 1000 bytes"):
            manager.reload(good, "Greeter")
    with PluginManager(max_library_bytes=1000) as manager:  # in place: mapped, never read whole
        assert len(manager.load_plugins(good, PluginTrait.Greeter)) == 1
    with PluginManager(copy_on_load=True, max_library_bytes=size) as manager:
        assert len(manager.load_plugins(good, PluginTrait.Greeter)) == 1
    with pytest.raises(NotASharedLibraryError, match="over the limit of 1000 bytes"):
        probe_library(good, use_cache=False, max_library_bytes=1000)
    with pytest.raises(ValueError, match="max_library_bytes"):
        PluginManager(max_library_bytes=0)


# ---- names within NAME_MAX ---------------------------------------------------


def test_copy_name_fits_name_max_and_stays_recognisable() -> None:
    assert copy_name(7, "libgreet.so") == "7-libgreet.so"
    name = copy_name(123, LONG_NAME)
    assert len(os.fsencode(name)) == NAME_MAX
    assert name.startswith("123-libxxx") and name.endswith("x.so")
    # Multi-byte characters are cut whole: the name stays valid UTF-8.
    accented = "lib" + "é" * 124 + ".so"  # 254 bytes
    name = copy_name(4567, accented)
    assert len(os.fsencode(name)) <= NAME_MAX and name.startswith("4567-libé") and name.endswith("é.so")
    os.fsencode(name).decode("utf-8", "strict")
    # A long "suffix" is not a suffix: the name is cut at its end.
    name = copy_name(1, "lib." + "y" * 260)
    assert len(os.fsencode(name)) == NAME_MAX and name.startswith("1-lib.yyy")
    assert len(os.fsencode(copy_name(10**20, LONG_NAME, 64))) <= 64


@pytest.fixture
def long_named(good: Path, tmp_path: Path) -> Path:
    """The greeters plugin under a 255-byte name, in a directory of its own."""
    d = tmp_path / "long"
    d.mkdir()
    path = d / LONG_NAME
    path.write_bytes(good.read_bytes())
    return path


def test_long_named_plugin_with_copy_on_load_and_reload(long_named: Path, good: Path) -> None:
    with PluginManager(copy_on_load=True) as manager:
        [handle] = manager.load_plugins(long_named, PluginTrait.Greeter)
        copy = handle.library.load_path
        assert copy != long_named and len(os.fsencode(copy.name)) <= NAME_MAX and copy.name.endswith(".so")
        assert handle.proxy("English").greet("x") == "Hello, x!"
        for _ in range(2):
            [handle] = manager.reload(long_named, "Greeter").handles
            assert handle.proxy("English").greet("x") == "Hello, x!"
            assert handle.library.load_path != copy
        copy = handle.library.load_path
    assert not copy.exists()


def test_long_named_plugin_in_a_directory_load(long_named: Path, good: Path) -> None:
    (long_named.parent / "libshort.so").write_bytes(good.read_bytes())
    with PluginManager(copy_on_load=True) as manager:
        handles = manager.load_plugins(long_named.parent, PluginTrait.Greeter)
        assert sorted(h.path.name for h in handles) == sorted([LONG_NAME, "libshort.so"])


def test_long_named_plugin_through_the_watcher(long_named: Path, good: Path, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    w = Watching(PluginManager(), watched, WatchOptions(debounce_ms=20, emit_proxies=True))
    try:
        path = watched / LONG_NAME
        for replaced in (False, True):
            staged = tmp_path / "staged.so"
            staged.write_bytes(good.read_bytes())
            os.replace(staged, path)  # published the way compilers do
            event = w.event(path)
            assert event.replaced is replaced
            assert [p.greet("x") for p in event.proxies if p.type_name == "English"] == ["Hello, x!"]  # type: ignore[attr-defined]
    finally:
        w.close()


def test_a_copy_that_cannot_be_written_is_a_typed_error(
    long_named: Path, good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the name left unshortened (a file system that says it takes longer names),
    the copy fails with ENAMETOOLONG; its cleanup fails the same way: neither escapes."""
    _copies._private_copy_dir()  # made first: its NAME_MAX is not looked up again below
    monkeypatch.setattr(_copies, "_private_name_max", 4096)
    with pytest.raises(NotASharedLibraryError, match="cannot copy it for loading: File name too long") as exc:
        write_private_copy(LONG_NAME, b"data", long_named)
    assert exc.value.path == str(long_named)
    (long_named.parent / "libshort.so").write_bytes(good.read_bytes())
    errors: list[PluginError] = []
    with PluginManager(copy_on_load=True) as manager:
        [handle] = manager.load_plugins(long_named.parent, PluginTrait.Greeter, errors=errors)
        assert handle.path.name == "libshort.so"
    [error] = errors
    assert isinstance(error, NotASharedLibraryError) and error.path == str(long_named)
    remove_private_copy(long_named.parent / ("y" * 300))  # ENAMETOOLONG: ignored


# ---- stale directories of dead hosts -------------------------------------------

_HOST = """
import json, os, sys
from plugin_host import PluginManager
manager = PluginManager(copy_on_load=True)
[handle] = manager.load_plugins(sys.argv[1], "Greeter")
print(json.dumps({"dir": str(handle.library.load_path.parent), "pid": os.getpid()}), flush=True)
sys.stdin.read()  # until told to finish
manager.close()
"""


def _first_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(60), "the host did not start"
    line = proc.stdout.readline()
    assert line, f"the host died (status {proc.wait()})"
    result: dict[str, Any] = json.loads(line)
    return result


@pytest.fixture
def host_env(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A temporary directory of the tests' own, and the environment that makes hosts use it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    yield tmp, {**os.environ, "TMPDIR": str(tmp)}


def test_stale_directories_are_removed_at_start_up(
    good: Path, tmp_path: Path, host_env: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = host_env
    spawn = [sys.executable, "-c", _HOST, str(good)]
    with subprocess.Popen(spawn, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) as crashed:
        stale = Path(_first_line(crashed)["dir"])
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(60)
    assert stale.parent == tmp and stale.is_dir() and any(stale.iterdir())  # left behind with its copy
    dead = crashed.pid
    live = subprocess.Popen(spawn, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    held: int | None = None  # a directory this process keeps locked
    try:
        live_dir = Path(_first_line(live)["dir"])
        # What must survive: nothing here is provably a dead host's directory of ours.
        kept = {
            "not our naming (an older host's)": tmp / f"{COPY_DIR_PREFIX}k3j4h5g6",
            "pid alive, lock free": tmp / f"{COPY_DIR_PREFIX}{os.getpid()}-livepid",
            "pid gone, lock held": tmp / f"{COPY_DIR_PREFIX}{dead}-held",
        }
        for d in kept.values():
            d.mkdir()
            (d / "1-libcopy.so").touch()
        held = os.open(kept["pid gone, lock held"], os.O_RDONLY)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "1-libcopy.so").touch()
        kept["a symlink to a directory"] = tmp / f"{COPY_DIR_PREFIX}{dead}-symlink"
        kept["a symlink to a directory"].symlink_to(elsewhere)
        kept["a file"] = tmp / f"{COPY_DIR_PREFIX}{dead}-afile"
        kept["a file"].touch()
        if os.geteuid() == 0:
            other = kept["another user's"] = tmp / f"{COPY_DIR_PREFIX}{dead}-otheruser"
            other.mkdir()
            os.chown(other, 65534, 65534)
        # The next host to start removes the dead one's directory as it makes its own.
        fresh = run_child(
            f"""
            import json
            from plugin_host import PluginManager
            with PluginManager(copy_on_load=True) as m:
                [h] = m.load_plugins({str(good)!r}, "Greeter")
                print(json.dumps(str(h.library.load_path.parent)))
            """,
            env=env,
        )
        assert fresh.returncode == 0, fresh.stderr
        fresh_dir = Path(json.loads(fresh.stdout))
        assert not stale.exists()
        assert live_dir.is_dir() and any(live_dir.iterdir())
        for why, p in kept.items():
            assert os.path.lexists(p), why
        assert (elsewhere / "1-libcopy.so").exists()
        assert fresh_dir.parent == tmp and not fresh_dir.exists()  # removed at its own exit
    finally:
        if held is not None:
            os.close(held)
        live.communicate(timeout=60)  # end of its input: it closes and exits
    assert live.returncode == 0 and not live_dir.exists()


def test_a_forked_child_neither_shares_nor_removes_the_parents_directory(
    good: Path, host_env: tuple[Path, dict[str, str]]
) -> None:
    _, env = host_env
    proc = run_child(
        f"""
        import json, os, sys
        from plugin_host import PluginManager
        manager = PluginManager(copy_on_load=True)
        [handle] = manager.load_plugins({str(good)!r}, "Greeter")
        parent_copy = handle.library.load_path
        pid = os.fork()
        if pid == 0:
            with PluginManager(copy_on_load=True) as child:
                [h] = child.load_plugins({str(good)!r}, "Greeter")
                print(json.dumps({{"child_dir": str(h.library.load_path.parent)}}), flush=True)
            sys.exit(0)  # a normal exit: the atexit handlers inherited from the parent run too
        os.waitpid(pid, 0)
        print(json.dumps({{"parent_dir": str(parent_copy.parent), "parent_copy_left": parent_copy.exists(),
                          "greets": handle.proxy("English").greet("x")}}), flush=True)
        manager.close()
        """,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    child, parent = (json.loads(line) for line in proc.stdout.splitlines())
    assert child["child_dir"] != parent["parent_dir"]
    assert parent["parent_copy_left"] and parent["greets"] == "Hello, x!"
    assert not Path(child["child_dir"]).exists() and not Path(parent["parent_dir"]).exists()


def test_stale_check_skips_live_hosts_and_never_raises(tmp_path: Path) -> None:
    """Directories of a live process (here: this one) and foreign names are left; a
    missing or unreadable temporary directory is no error."""
    for i in range(20):
        (tmp_path / f"{COPY_DIR_PREFIX}{os.getpid()}-x{i}").mkdir()
        (tmp_path / f"other-{i}").mkdir()
    assert _copies.remove_stale_copy_dirs(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == 40
    assert _copies.remove_stale_copy_dirs(tmp_path / "missing") == []
