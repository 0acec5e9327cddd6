"""Every ``plugin-host`` sub-command as a real process, over a catalogue of hostile inputs.

For each case: no ``Traceback`` (nor an "Exception ignored" at exit) on
stderr, the process ends within :data:`TIMEOUT_S` (a FIFO must not block it),
the exit status is the documented one (0 ok, 1 a plugin or file problem,
2 usage; ``abi`` the bits 1 tool or input error, 2 usage, 4 compatible and
8 incompatible change), and a failure names the file.

Standard output is strict UTF-8 (``PYTHONIOENCODING=utf-8``, as under an
``en_US.UTF-8`` locale), so a path that is not UTF-8 must not break printing.
The whole catalogue is slow (one interpreter per case: ``pytest -m slow
tests/test_cli_hostile.py``); by default only what a process alone can show
runs (FIFOs, strict standard output, closed pipes, a watch); test_cli.py and
test_abi_check.py cover the rest in-process.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Generous: every case ends in well under a second unless it hangs.
TIMEOUT_S = 60.0
#: What EPIPE ends a command with (CPython's own status, see the signal module's "Note on SIGPIPE").
EXIT_BROKEN_PIPE = 1
#: Exceeds NAME_MAX (255) and PATH_MAX (4096): every system call on it fails with ENAMETOOLONG.
TOO_LONG = "x" * 5000


@dataclass(frozen=True)
class Case:
    """One command line: ``{name}`` in ``argv`` is a path of the catalogue.

    :ivar status: the documented exit status.
    :ivar names: the catalogue entry the output must name when ``status`` is not 0.
    """

    argv: tuple[str, ...]
    status: int
    names: str | None = None


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "XDG_CACHE_HOME": str(tmp / "cache")}


def _cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "plugin_host", *argv]


def _run(argv: list[str], env: dict[str, str], stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            _cmd(*argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, timeout=TIMEOUT_S, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"plugin-host {' '.join(map(ascii, argv))[:300]} still running after {TIMEOUT_S} s")


def _assert_no_traceback(err: bytes) -> None:
    assert b"Traceback" not in err and b"Exception ignored" not in err, err.decode(errors="replace")[-3000:]


def _named(path: str, out: bytes, err: bytes) -> bool:
    """Whether ``path`` appears in the output: as its bytes, escaped on stderr, or in JSON."""
    forms = {os.fsencode(path), path.encode("utf-8", "backslashreplace"), json.dumps(path)[1:-1].encode()}
    return any(form in out or form in err for form in forms)


# ---- the catalogue --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(
    tmp_path_factory: pytest.TempPathFactory, example_plugins: dict[str, Path], test_plugins: dict[str, Path]
) -> dict[str, str]:
    """Name -> path of every hostile input, made here (nothing committed); also ``good``, ``multi`` and ``dir``."""
    d = tmp_path_factory.mktemp("hostile")
    lib = example_plugins["greeters"]
    greeters = lib.read_bytes()
    dump = json.loads(subprocess.run(_cmd("abi", "dump", str(lib)), capture_output=True, check=True).stdout)
    desc = dump["traits"]["Greeter"]["descriptor"]

    def write(name: str, data: bytes | str) -> str:
        path = d / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    def mutated_dump(name: str, **descriptor: object) -> str:
        return write(
            name,
            json.dumps(
                {**dump, "traits": {"Greeter": {**dump["traits"]["Greeter"], "descriptor": {**desc, **descriptor}}}}
            ),
        )

    non_utf8 = os.fsdecode(bytes(d) + b"/lib\xff.so")
    shutil.copy(lib, non_utf8)
    non_utf8_refused = os.fsdecode(bytes(d) + b"/libu\xfe.so")  # the loader refuses it, quoting its name
    shutil.copy(test_plugins["undefined_symbol"], non_utf8_refused)
    os.mkfifo(d / "fifo.so")
    (d / "dir.so").mkdir()
    paths = {
        "good": str(lib),
        "multi": str(example_plugins["multi_trait"]),
        "dir": str(d),
        "missing": str(d / "missing.so"),
        "directory": str(d / "dir.so"),
        "fifo": str(d / "fifo.so"),
        "dev_null": os.devnull,
        "proc_mem": "/proc/self/mem",  # a "regular" file whose every read fails (EIO)
        "empty": write("empty.so", b""),
        "text": write("text.so", "not a library\n"),
        "truncated": write("truncated.so", greeters[:1000]),
        "non_utf8_name": non_utf8,
        "non_utf8_refused": non_utf8_refused,
        "non_utf8_missing": os.fsdecode(bytes(d) + b"/\xfe/missing.so"),
        "name_too_long": str(d / TOO_LONG),
        # ABI dumps (abi diff); the ones that parse differ only in what is named.
        "corrupt_dump": write("corrupt.abi.json", "{ not json"),
        "partial_dump": write("partial.abi.json", json.dumps(dump)[:200]),
        "deep_dump": write("deep.abi.json", '{"schema": "plugin-host-abi/1", "traits": ' + "[" * 200_000),
        "negative_count_dump": mutated_dump("negative.abi.json", method_count=-1),
        "fewer_fingerprints_dump": mutated_dump("fewer.abi.json", method_fingerprints=[]),
        "more_fingerprints_dump": mutated_dump("more.abi.json", method_count=0, struct_size=32),
        # Lone surrogates (a low one, then a high one: not a pair), which no encoding can print.
        "surrogate_dump": write("surrogate.abi.json", json.dumps({**dump, "machine": "\udcff\ud800"})),
        "huge_dump": write("huge.abi.json", b"{"),
        # Outputs.
        "missing_folder": str(d / "no" / "such" / "folder" / "out.json"),
        "dev_full": "/dev/full",
    }
    os.truncate(paths["huge_dump"], 1 << 30)  # sparse: costs no disk, refused unread
    return paths


#: The file inputs, and per command (:data:`_COMMANDS`) the status it documents for each (``None``: not run).
_COMMANDS = ("list", "call", "watch", "check", "probe", "dump", "diff")
_STATUSES: dict[str, tuple[int | None, ...]] = {
    "missing": (1, 1, 2, 2, 2, 2, 2),
    # An empty directory lists nothing, watching it would not end, dumping it is a usage error (no library);
    # diffed against a library, one library was added.
    "directory": (0, 2, None, 2, 2, 2, 4),
    "fifo": (1, 1, 2, 1, 1, 1, 1),
    "dev_null": (1, 1, 2, 1, 1, 1, 1),
    "proc_mem": (1, 1, 2, 1, 1, 1, 1),
    "empty": (1, 1, 2, 1, 1, 1, 1),
    "text": (1, 1, 2, 1, 1, 1, 1),
    "truncated": (1, 1, 2, 1, 1, 1, 1),
    "non_utf8_name": (0, 0, 2, 0, 0, 0, 0),
    # Loads nowhere (its probe fails: 8); its exports are fine; Broken removed (8), greeters' types added (4).
    "non_utf8_refused": (1, 1, 2, 0, 8, 0, 12),
    "non_utf8_missing": (1, 1, 2, 2, 2, 2, 2),
    "name_too_long": (1, 1, 2, 2, 2, 2, 2),
    "corrupt_dump": (1, 1, 2, 1, 1, 1, 1),
    "deep_dump": (1, 1, 2, 1, 1, 1, 1),
    "negative_count_dump": (1, 1, 2, 1, 1, 1, 1),
}
_ARGV = {
    "list": ("list", "{x}"),
    "call": ("call", "{x}", "Greeter", "English", "greet", "hi"),
    "watch": ("watch", "{x}"),
    "check": ("abi", "check", "{x}"),
    "probe": ("abi", "check", "--probe", "{x}"),
    "dump": ("abi", "dump", "{x}"),
    "diff": ("abi", "diff", "{x}", "{good}"),
}
#: Run by default: what only a real process shows (a FIFO blocking, strict standard output); the rest,
#: and the in-process versions in test_cli.py and test_abi_check.py, cover the other bugs.
QUICK = {("fifo", c) for c in ("list", "check", "dump", "diff")} | {("non_utf8_name", "check")}


def _file_cases() -> Iterator[object]:
    for name, statuses in _STATUSES.items():
        for command, status in zip(_COMMANDS, statuses, strict=True):
            if status is None:
                continue
            marks = () if (name, command) in QUICK else (pytest.mark.slow,)
            argv = tuple(a.replace("{x}", "{" + name + "}") for a in _ARGV[command])
            yield pytest.param(Case(argv, status, name), id=f"{command}-{name}", marks=marks)


def _param(case_id: str, argv: tuple[str, ...], status: int, names: str | None, quick: bool = False) -> object:
    return pytest.param(Case(argv, status, names), id=case_id, marks=() if quick else (pytest.mark.slow,))


OTHER_CASES = [
    # abi diff of dumps, either side (a bad dump is an input error); a dump that parses but names odd things
    # prints them.
    *(
        _param(f"diff-{name}-{side}", argv, 1, name)
        for name in ("corrupt_dump", "partial_dump", "fewer_fingerprints_dump", "more_fingerprints_dump", "huge_dump")
        for side, argv in (
            ("old", ("abi", "diff", f"{{{name}}}", "{good}")),
            ("new", ("abi", "diff", "{good}", f"{{{name}}}")),
        )
    ),
    _param("diff-surrogate_dump", ("abi", "diff", "{surrogate_dump}", "{good}"), 8, "surrogate_dump", quick=True),
    _param("diff-surrogate_dump-json", ("abi", "diff", "--json", "{surrogate_dump}", "{good}"), 8, "surrogate_dump"),
    _param("diff-both-fifo", ("abi", "diff", "{fifo}", "{fifo}"), 1, "fifo"),
    _param("check-json-fifo", ("abi", "check", "--json", "{fifo}"), 1, "fifo"),
    _param("check-directory-of-hostile-files", ("abi", "check", "{dir}"), 1, "fifo"),
    _param("probe-directory-of-hostile-files", ("abi", "check", "--probe", "{dir}"), 9, "non_utf8_refused"),
    _param("list-directory-of-hostile-files", ("list", "{dir}"), 1, "non_utf8_refused", quick=True),
    _param("list-trait-fifo", ("list", "{fifo}", "--trait", "Greeter"), 1, "fifo"),
    # Outputs.
    _param("dump-o-missing-folder", ("abi", "dump", "{good}", "-o", "{missing_folder}"), 2, "missing_folder"),
    _param("dump-o-directory", ("abi", "dump", "{good}", "-o", "{dir}"), 2, "dir"),
    _param("dump-o-fifo-without-reader", ("abi", "dump", "{good}", "-o", "{fifo}"), 2, "fifo", quick=True),
    _param("dump-o-dev-full", ("abi", "dump", "{good}", "-o", "{dev_full}"), 2, "dev_full"),
    _param("dump-o-name-too-long", ("abi", "dump", "{good}", "-o", "{name_too_long}"), 2, "name_too_long"),
    _param("dump-o-non-utf8-missing", ("abi", "dump", "{good}", "-o", "{non_utf8_missing}"), 2, "non_utf8_missing"),
    _param("dump-o-dev-null", ("abi", "dump", "{good}", "-o", "{dev_null}"), 0, None),
    # demo's build directory.
    _param("demo-build-dir-dev-null", ("demo", "--build-dir", "{dev_null}"), 2, "dev_null"),
    _param("demo-build-dir-fifo", ("demo", "--build-dir", "{fifo}"), 2, "fifo"),
    _param("demo-build-dir-text", ("demo", "--build-dir", "{text}"), 2, "text"),
    _param("demo-build-dir-under-a-file", ("demo", "--build-dir", "{text}/sub"), 1, "text"),
    _param("demo-build-dir-name-too-long", ("demo", "--build-dir", "{name_too_long}"), 1, "name_too_long"),
    # Arguments.
    _param("call-non-utf8-cstr", ("call", "{good}", "Greeter", "English", "greet", "\udcff"), 2, "good"),
    _param("call-non-utf8-buffer", ("call", "{multi}", "Transformer", "Rot13", "transform", "a\udcffb"), 0, None),
    _param("call-unknown-method", ("call", "{good}", "Greeter", "English", "shout", "x"), 2, "good"),
    _param("call-unknown-type", ("call", "{good}", "Greeter", "Klingon", "greet", "x"), 1, "good"),
    _param("list-unknown-trait", ("list", "{good}", "--trait", "Nope"), 1, None),
    _param("check-unknown-trait", ("abi", "check", "{good}", "--trait", "Nope"), 2, None),
    _param("probe-timeout-nan", ("abi", "check", "--probe", "--probe-timeout", "nan", "{good}"), 2, None),
    _param("watch-debounce-text", ("watch", "{dir}", "--debounce-ms", "soon"), 2, None),
]


@pytest.mark.parametrize("case", [*_file_cases(), *OTHER_CASES])
def test_hostile_input(case: Case, hostile: dict[str, str], tmp_path: Path) -> None:
    argv = [arg.format_map(hostile) for arg in case.argv]
    proc = _run(argv, _env(tmp_path))
    _assert_no_traceback(proc.stderr)
    detail = f"{proc.stdout[-2000:]!r}\n{proc.stderr[-2000:]!r}"
    assert proc.returncode == case.status, detail
    if case.names is not None and case.status != 0:
        assert _named(hostile[case.names], proc.stdout, proc.stderr), detail
    if case.status == 2:
        assert proc.stderr.strip(), "a usage error says why"


BROKEN_PIPE_CASES = {
    "list": ("list", "{good}"),
    "call": ("call", "{good}", "Greeter", "English", "greet", "hi"),
    "check": ("abi", "check", "{good}"),
    "check-json": ("abi", "check", "--json", "{good}"),
    "probe": ("abi", "check", "--probe", "{good}"),
    "dump": ("abi", "dump", "{good}"),
    "diff": ("abi", "diff", "{good}", "{multi}"),
    "watch": ("watch", "{tmp}"),
    # argparse's own output: it ignores a failed write and exits 0, quietly too.
    "help": ("--help",),
    "abi-help": ("abi", "check", "--help"),
    "version": ("--version",),
}
_ARGPARSE_OUTPUT = ("help", "abi-help", "version")


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        pytest.param(
            argv,
            0 if name in _ARGPARSE_OUTPUT else EXIT_BROKEN_PIPE,
            id=name,
            marks=() if name in ("dump", "watch") else (pytest.mark.slow,),
        )
        for name, argv in BROKEN_PIPE_CASES.items()
    ],
)
def test_a_closed_output_pipe_ends_quietly(
    argv: tuple[str, ...], status: int, hostile: dict[str, str], tmp_path: Path
) -> None:
    """``plugin-host ... | head -0``: the reader is gone before the first write, so every write fails (EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = _run([arg.format_map({**hostile, "tmp": str(tmp_path)}) for arg in argv], _env(tmp_path), stdout=write)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (status, b"")


def test_watch_a_directory_of_hostile_files(hostile: dict[str, str], tmp_path: Path) -> None:
    """Each hostile file is one line of the watch (loaded or error); Ctrl-C then ends it as usual."""
    err_path = tmp_path / "stderr"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            _cmd("watch", hostile["dir"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=_env(tmp_path),
        )
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(b"")  # end of output

    reader = threading.Thread(target=read)
    reader.start()
    try:
        # The watcher passes over the FIFO and the directory named like a plugin (not regular files).
        files = ("empty", "text", "truncated", "non_utf8_name", "non_utf8_refused")
        # As a strict UTF-8 stdout prints them: names that are not UTF-8 escaped (\udcff).
        names = {os.path.basename(hostile[n]).encode("utf-8", "backslashreplace") for n in files}
        seen = b""
        while not all(name in seen for name in names):
            try:
                line = lines.get(timeout=TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"after {TIMEOUT_S} s the watch reported only: {seen!r}")
            assert line, f"the watch ended early: {seen!r} {err_path.read_bytes()!r}"
            seen += line
        assert b"loaded    " + hostile["non_utf8_name"].encode("utf-8", "backslashreplace") in seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=TIMEOUT_S)
        assert proc.stdout is not None
        proc.stdout.close()
    _assert_no_traceback(err_path.read_bytes())
