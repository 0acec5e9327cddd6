"""The isolated probe: try a library in a short-lived child process first.

Python cannot catch a SIGSEGV, an ``exit()`` or a hang inside a plugin's
constructors or makers, nor in the host's own reads of the plugin's data.
The probe loads the library in a child process (a fresh interpreter started
with ``subprocess``, i.e. fork+exec: never a bare ``fork`` of a host whose
watcher threads are running) and runs there the host's own pipeline
(:func:`plugin_host.registry.exercise`: descriptor, aggregate or makers,
every registration read, release, unmaker counter) for every trait the host
knows that the file names; it reports back over a pipe (a version handshake,
length-prefixed JSON frames, a size cap; see :mod:`._probe_child`).

- A signal, an ``exit()`` or a hang past the timeout raises
  :class:`~plugin_host.errors.ProbeCrashedError` (``.signal``),
  :class:`~plugin_host.errors.ProbeExitedError` (``.exit_code``) or
  :class:`~plugin_host.errors.ProbeTimeoutError` (``.timeout_s``), naming the step
  (``dlopen`` = constructors, or the symbol) it happened in; the file goes on a
  blocklist keyed by (path, size, mtime, SHA-256): until it changes, loading it
  raises :class:`~plugin_host.errors.BlockedPluginError` without a new probe.
- A clean probe is cached on the same key, so a restart does not probe an
  unchanged file again.  The key also names this host (its version, the
  probe protocol, which checks run, the traits probed): an upgraded host, or
  one that knows other traits, probes again.
- A failure the host reports safely by itself (the loader refuses the file, a
  maker returns NULL, a malformed array) is neither blocked nor cached: the
  in-process load that follows raises the usual typed error.

The blocklist and the cache are one JSON file,
``$XDG_CACHE_HOME/plugin-host/probe-cache.json`` unless told otherwise.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import json
import os
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plugin_interface
from plugin_interface import TraitSpec, declared_traits

from .._version import __version__
from ..formats import MAX_LIBRARY_BYTES
from ..loading import _accel
from ..loading._copies import read_for_copy, remove_private_copy, write_private_copy
from ..loading._policy import DirectoryVerdicts, LoadPolicy, sha256_of
from ..loading._precheck import Image, precheck_image
from ._errors import (
    BlockedPluginError,
    ProbeCrashedError,
    ProbeError,
    ProbeExitedError,
    ProbeProtocolError,
    ProbeTimeoutError,
)
from ._probe_child import PROTOCOL

__all__ = [
    "DEFAULT_PROBE_TIMEOUT_S",
    "MAX_REPORT_BYTES",
    "PROTOCOL",
    "ProbeCache",
    "ProbeKey",
    "ProbeResult",
    "ProbeServer",
    "ProbeStatus",
    "default_cache_dir",
    "fork_server_supported",
    "host_identity",
    "probe_traits",
    "probe_library",
    "run_probe",
]

#: A child that takes longer than this (in seconds) is killed.
DEFAULT_PROBE_TIMEOUT_S = 10.0
#: A child's report may not exceed this many bytes.
MAX_REPORT_BYTES = 256 * 1024
#: How long the probe server may take to start, in seconds.
SERVER_START_S = 30.0
#: How long past a probe's timeout the host waits for the server's own verdict, in seconds.
SERVER_GRACE_S = 5.0
#: How long the server may take to exit once told to, in seconds (then it is killed).
SERVER_STOP_S = 2.0
#: Cache entries kept (oldest dropped first).
MAX_CACHE_ENTRIES = 4096
_CHILD_MODULE = "plugin_host.admission._probe_child"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/plugin-host`` (default ``~/.cache/plugin-host``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "plugin-host"


class ProbeStatus(enum.StrEnum):
    """What the probe cache records for one version of a file."""

    #: Every step ran; the file loads without a new probe.
    CLEAN = "clean"
    #: The probe crashed, exited or hung; loading raises BlockedPluginError until the file changes.
    BLOCKED = "blocked"


def _host_version() -> str:
    return __version__


def host_identity(traits: Sequence[TraitSpec]) -> str:
    """What a probe verdict depends on besides the file: this host's version, the probe
    protocol, which checks run (C or Python) and the traits probed (their declarations)."""
    declarations = json.dumps(sorted((t.to_json() for t in traits), key=lambda d: str(d["name"])), sort_keys=True)
    digest = hashlib.sha256(declarations.encode()).hexdigest()[:16]
    checks = "C" if _accel.enabled() else "Python"
    return f"plugin-host {_host_version()}/probe {PROTOCOL}/checks {checks}/traits {digest}"


def probe_traits(symbols: Iterable[str], requested: Iterable[TraitSpec] = ()) -> list[TraitSpec]:
    """The traits a probe runs: those requested and every declared one that ``symbols`` name.

    :param symbols: the file's ``plugin_*`` names (from the pre-check).
    """
    names = list(symbols)
    chosen: dict[str, TraitSpec] = {}
    for spec in [*requested, *declared_traits().values()]:
        if spec.name in chosen:
            continue
        prefixes = (f"plugin_register_all_{spec.name}_v", f"plugin_register_{spec.name}_")
        if any(n.startswith(prefixes) for n in names):
            chosen[spec.name] = spec
    return list(chosen.values())


@dataclass(frozen=True)
class ProbeKey:
    """What identifies one probe verdict: the file's path, size, mtime and content
    hash, and the host that probed it (:func:`host_identity`)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    host: str = ""

    @classmethod
    def of(cls, path: str | os.PathLike[str], st: os.stat_result, sha256: str, host: str = "") -> ProbeKey:
        """The key of the bytes with hash ``sha256`` read from ``path`` (``st`` from their ``fstat``)."""
        return cls(os.path.abspath(path), st.st_size, st.st_mtime_ns, sha256, host)

    def __str__(self) -> str:
        return f"{self.sha256}:{self.size}:{self.mtime_ns}:{self.path}:{self.host}"


@dataclass(frozen=True)
class ProbeResult:
    """A probe that did not fail fatally.

    :ivar clean: every maker and unmaker ran; ``False`` when the child
        reported a failure the host handles safely (see :attr:`problems`).
    :ivar cached: answered from the cache, without a child process.
    :ivar duration_s: wall time of the probe (0 when cached).
    :ivar made: registrations made (and released) in the child.
    """

    path: str
    clean: bool
    cached: bool = False
    duration_s: float = 0.0
    made: int = 0
    problems: list[str] = field(default_factory=list)


#: A cache file larger than this (in bytes) is read only this far (then it does not parse, and counts as empty).
MAX_CACHE_BYTES = 16 << 20


def _trusted_cache(st: os.stat_result, directory: Path) -> bool:
    """Whether only this user (or root) could have written the cache file and its directory."""
    if sys.platform == "win32":
        return True
    try:
        dir_st = os.stat(directory)
    except OSError:
        return False
    me = os.geteuid()
    return all(s.st_uid in (me, 0) and not s.st_mode & (stat.S_IWGRP | stat.S_IWOTH) for s in (st, dir_st))


class ProbeCache:
    """The blocklist and clean-probe cache, persisted as JSON in ``directory``.

    **Thread-safety**: safe to share between threads; several processes may
    share the file (each write merges what is on disk, then replaces it atomically).
    """

    FILE_NAME = "probe-cache.json"

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.file = self.directory / self.FILE_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] | None = None

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            fd = os.open(self.file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
            with open(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not _trusted_cache(st, self.directory):
                    return {}  # another user could have written a "clean" verdict: it proves nothing
                data = json.loads(f.read(MAX_CACHE_BYTES + 1)[:MAX_CACHE_BYTES])
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("entries"), dict):
            return {}
        return {k: v for k, v in data["entries"].items() if isinstance(v, dict)}

    def get(self, key: ProbeKey) -> dict[str, object] | None:
        """The entry recorded for ``key`` (``{"status": a ProbeStatus value, "reason": ...}``), or ``None``."""
        with self._lock:
            if self._entries is None:
                self._entries = self._read()
            return self._entries.get(str(key))

    def put(self, key: ProbeKey, status: ProbeStatus, reason: str = "") -> None:
        """Record ``status`` for ``key`` and save (best effort: an unwritable cache only costs re-probes)."""
        with self._lock:
            entries = self._read()
            entries[str(key)] = {"status": str(status), "reason": reason, "time": time.time()}
            if len(entries) > MAX_CACHE_ENTRIES:
                oldest = sorted(entries, key=lambda k: float(entries[k].get("time", 0)))  # type: ignore[arg-type]
                for k in oldest[: len(entries) - MAX_CACHE_ENTRIES]:
                    del entries[k]
            self._entries = entries
            with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".probe-cache-")
                try:
                    with os.fdopen(fd, "w") as f:
                        json.dump({"version": 1, "entries": entries}, f)
                    os.replace(tmp, self.file)
                except BaseException:
                    os.unlink(tmp)
                    raise

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries = {}
            with contextlib.suppress(OSError):
                self.file.unlink()


def _frames(buffer: bytes) -> tuple[list[dict[str, object]], bytes]:
    """Complete frames in ``buffer`` and the incomplete rest."""
    frames = []
    while len(buffer) >= 4:
        (length,) = struct.unpack_from(">I", buffer)
        if len(buffer) < 4 + length:
            break
        frame = json.loads(buffer[4 : 4 + length])
        if not isinstance(frame, dict):
            raise ValueError("a frame is not a JSON object")
        frames.append(frame)
        buffer = buffer[4 + length :]
    return frames, buffer


class _Report:
    """What a probe child reported so far: its frames, the step it is in, and (from the server) how it ended."""

    def __init__(self, path: str, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.frames: list[dict[str, object]] = []
        self.step = "start-up"
        self.done = False  # the child reported dlclose: nothing more to read from it
        self.exit: dict[str, object] | None = None  # the probe server's last frame
        self.pid: int | None = None
        self._buffer = b""
        self._total = 0

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes read from the report channel.

        :raises ProbeProtocolError: more than :data:`MAX_REPORT_BYTES`, a
            malformed frame, or a handshake of another protocol.
        """
        self._total += len(chunk)
        if self._total > MAX_REPORT_BYTES:
            raise ProbeProtocolError(self.path, f"more than {MAX_REPORT_BYTES} bytes", self.step)
        try:
            new, self._buffer = _frames(self._buffer + chunk)
        except ValueError as e:
            raise ProbeProtocolError(self.path, f"malformed frame: {e}", self.step) from e
        for frame in new:
            if isinstance(frame.get("exit"), dict):
                self.exit = frame["exit"]  # type: ignore[assignment]
                continue
            if not self.frames:
                if frame.get("hello") != "plugin-host-probe" or frame.get("protocol") != PROTOCOL:
                    raise ProbeProtocolError(self.path, f"handshake {frame!r}, expected protocol {PROTOCOL}", self.step)
                pid = frame.get("pid")
                self.pid = pid if isinstance(pid, int) else None
            self.frames.append(frame)
            if "step" in frame:
                self.step = str(frame["step"])
            if frame.get("done"):
                self.done = True


def _child_command(entry: str, fd: int) -> list[str]:
    """The child's command line: an isolated interpreter (no PYTHONPATH, no user site) that imports this
    very host (its package directories are put first on ``sys.path``) and runs ``entry(fd)`` of the child module."""
    host = Path(__file__).resolve().parents[2]  # the directory holding plugin_host
    interface = Path(plugin_interface.__file__ or "").resolve().parents[1]
    roots = list(dict.fromkeys([str(host), str(interface)]))
    bootstrap = f"import sys; sys.path[:0] = {roots!r}; from {_CHILD_MODULE} import {entry}; sys.exit({entry}())"
    if entry == "serve":
        bootstrap = bootstrap.replace("serve())", f"serve({fd}))")
    return [sys.executable, "-I", "-c", bootstrap, str(fd)]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the child leads its own session: its children go too


def fork_server_supported() -> bool:
    """Whether this platform can run the probe server (``fork``, ``SOCK_SEQPACKET``, descriptor passing)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "send_fds")


def _stop_server(proc: subprocess.Popen[bytes], control: socket.socket) -> None:
    """Close the control socket (the server kills what still runs and exits), then reap it."""
    control.close()
    try:
        proc.wait(SERVER_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ProbeServer:
    """A warm probe server: one isolated interpreter that imported the host once and forks a child per probe.

    A probe then costs a ``fork`` and the library's own work instead of an
    interpreter start-up (see :func:`plugin_host.admission._probe_child.serve`).
    The server starts at the first probe and stops when this object is
    collected, at :meth:`close`, or at interpreter exit; it also exits by
    itself when this process dies (its control socket closes).

    **Thread-safety**: :meth:`start_probe` may be called from several threads at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], socket.socket], ProbeServer] | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                _child_command("serve", theirs.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._proc, self._control = proc, ours
        self._finalizer = weakref.finalize(self, _stop_server, proc, ours)
        ours.settimeout(SERVER_START_S)
        try:
            hello = json.loads(ours.recv(4096) or b"null")
        except (OSError, ValueError) as e:
            self._stop()
            raise OSError(f"the probe server did not start: {e}") from e
        ours.settimeout(None)
        if not isinstance(hello, dict) or hello.get("protocol") != PROTOCOL:
            self._stop()
            raise OSError(f"the probe server answered {hello!r}, expected protocol {PROTOCOL}")

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._proc = self._control = self._finalizer = None

    def start_probe(self, request: bytes, report: socket.socket) -> None:
        """Hand one request and the socket its child reports on to the server (started or restarted as needed).

        :raises OSError: the server cannot be started or reached.
        """
        with self._lock:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._stop()
                    self._start()
                assert self._control is not None
                try:
                    socket.send_fds(self._control, [request], [report.fileno()])
                    return
                except OSError:
                    self._stop()  # died since: start a new one, once
                    if attempt == 2:
                        raise

    def close(self) -> None:
        """Stop the server (what still runs in it is killed); a later probe starts a new one."""
        with self._lock:
            self._stop()

    @property
    def pid(self) -> int | None:
        """The server's process id, while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None


@functools.cache
def shared_server() -> ProbeServer:
    """The probe server of :func:`probe_library` (one per process)."""
    return ProbeServer()


def _probe_server_wanted() -> bool:
    return fork_server_supported() and os.environ.get("PLUGIN_HOST_PROBE_SERVER", "") not in ("0", "false", "no")


def _read_report(fd: int, report: _Report, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Read ``fd`` into ``report`` until the report is complete, the channel closes or ``deadline`` passes.

    Complete: (``proc``, a fresh interpreter) ``done``, or an exit frame (the server's
    socket has its own reader, :func:`_read_server_report`).

    :raises ProbeTimeoutError: ``deadline`` passed first.
    """
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while report.exit is None and not (proc is not None and report.done):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeTimeoutError(report.path, report.timeout_s, report.step)
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return  # the child (and the server) closed it
            report.feed(chunk)


def _read_server_report(sock: socket.socket, report: _Report, deadline: float) -> None:
    """Read the server's report socket into ``report`` until its exit frame, the socket closes or ``deadline`` passes.

    A blocking ``recv`` bounded by the time left: one call per chunk, no selector set up per probe.

    :raises ProbeTimeoutError: ``deadline`` passed first.
    """
    while report.exit is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProbeTimeoutError(report.path, report.timeout_s, report.step)
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return  # the server closed it (and the child is gone)
        report.feed(chunk)


def _probe_in_server(server: ProbeServer, request: dict[str, object], report: _Report, timeout_s: float) -> int:
    """One probe through the server; the child's return code (as ``subprocess`` gives it).

    :raises ProbeTimeoutError: the server killed the child at the timeout (or itself stopped answering).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            server.start_probe(json.dumps(request).encode(), theirs)
        finally:
            theirs.close()
        try:
            _read_server_report(ours, report, time.monotonic() + timeout_s + SERVER_GRACE_S)
        except ProbeTimeoutError:
            if report.pid is not None:
                _kill_group(report.pid)
            server.close()  # it missed its own deadline: wedged
            raise
    finally:
        ours.close()
    if report.exit is None:
        server.close()
        raise OSError(f"the probe server stopped during {report.step}")  # not the library's verdict: ask again
    if report.exit.get("timed_out"):
        raise ProbeTimeoutError(report.path, timeout_s, report.step)
    returncode = report.exit.get("returncode")
    return returncode if isinstance(returncode, int) else -1


def _probe_in_fresh_interpreter(request: dict[str, object], report: _Report, timeout_s: float) -> int:
    """One probe in an interpreter started for it; the child's return code.

    :raises ProbeTimeoutError: the child did not finish within ``timeout_s`` (then killed).
    """
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            _child_command("main", write_fd),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            start_new_session=True,
            close_fds=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(request).encode())
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        deadline = time.monotonic() + timeout_s
        # The report is complete at "done" (dlclose ran) or when its pipe closes: a helper process
        # the plugin started may keep other descriptors open, and is not waited for.
        _read_report(read_fd, report, deadline, proc)
        try:
            return proc.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired as e:
            raise ProbeTimeoutError(report.path, timeout_s, report.step) from e
    except ProbeError:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        os.close(read_fd)
        if proc.poll() is None:  # an unexpected error above: never leave the child behind
            proc.kill()
            proc.wait()


def run_probe(
    load_path: str | os.PathLike[str],
    traits: Sequence[TraitSpec],
    *,
    path: str | os.PathLike[str] | None = None,
    timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
    server: ProbeServer | None = None,
) -> ProbeResult:
    """Probe ``load_path`` in a child process (no cache).

    :param traits: the traits to run the pipeline for (:func:`probe_traits`).
    :param path: the name to report (default ``load_path``), e.g. the original of a private copy.
    :param server: fork the child from this warm server; without one (or when it
        cannot start) the child is a fresh interpreter.
    :raises ProbeCrashedError: the child died of a signal.
    :raises ProbeExitedError: the child exited before reporting.
    :raises ProbeTimeoutError: the child did not finish within ``timeout_s``.
    :raises ProbeProtocolError: the child's report broke the protocol.
    """
    report_path = os.fspath(path if path is not None else load_path)
    start = time.perf_counter()
    request: dict[str, object] = {
        "protocol": PROTOCOL,
        "path": os.fspath(load_path),
        "traits": [t.to_json() for t in traits],
        "accel": _accel.enabled(),
        "timeout_s": timeout_s,
    }
    report = _Report(report_path, timeout_s)
    returncode: int | None = None
    if server is not None:
        try:
            returncode = _probe_in_server(server, request, report, timeout_s)
        except OSError as e:  # the server itself cannot run: this probe starts an interpreter of its own
            warnings.warn(f"probe server unavailable ({e}); probing in a fresh interpreter", RuntimeWarning, 2)
            report = _Report(report_path, timeout_s)
    if returncode is None:
        returncode = _probe_in_fresh_interpreter(request, report, timeout_s)
    step, frames = report.step, report.frames
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else f"signal {-returncode}"
        raise ProbeCrashedError(report_path, -returncode, name, step)
    results = [f["result"] for f in frames if isinstance(f.get("result"), dict)]
    if returncode != 0 or not results or not any(f.get("done") for f in frames):
        raise ProbeExitedError(report_path, returncode, step)
    result: dict[str, object] = results[0]  # type: ignore[assignment]
    listed = result.get("problems")
    problems = [str(p) for p in listed] if isinstance(listed, list) else []
    if result.get("kind") in ("dlopen", "protocol", "host_error"):
        problems.append(str(result.get("message", "")))
    if result.get("kind") == "protocol":
        raise ProbeProtocolError(report_path, problems[-1], step)
    made = result.get("made", 0)
    return ProbeResult(
        report_path,
        bool(result.get("ok")),
        False,
        time.perf_counter() - start,
        made if isinstance(made, int) else 0,
        problems,
    )


class Prober:
    """A manager's probe settings: timeout and cache.

    **Thread-safety**: :meth:`probe` may run on several threads at once.
    """

    def __init__(
        self,
        timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        server: bool | None = None,
    ) -> None:
        """:param server: fork each child from a warm :class:`ProbeServer` (default: on Linux,
        unless the environment sets ``PLUGIN_HOST_PROBE_SERVER=0``); else a fresh interpreter per probe."""
        server = _probe_server_wanted() if server is None else server
        if timeout_s <= 0:
            raise ValueError(f"probe timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.cache = ProbeCache(cache_dir)
        self.server: ProbeServer | None = ProbeServer() if server and fork_server_supported() else None

    def probe(
        self,
        path: str | os.PathLike[str],
        load_path: str | os.PathLike[str],
        key: ProbeKey,
        traits: Sequence[TraitSpec],
    ) -> ProbeResult:
        """Probe ``load_path`` (the bytes of ``key``) unless the cache knows them.

        :raises BlockedPluginError: a recorded failure of the same bytes.
        :raises ProbeError: a new fatal failure (then recorded).
        """
        entry = self.cache.get(key)
        if entry is not None and entry.get("status") == ProbeStatus.BLOCKED:
            raise BlockedPluginError(path, str(entry.get("reason", "")), key.sha256)
        if entry is not None and entry.get("status") == ProbeStatus.CLEAN:
            return ProbeResult(os.fspath(path), True, cached=True)
        try:
            result = run_probe(load_path, traits, path=path, timeout_s=self.timeout_s, server=self.server)
        except ProbeError as e:
            self.cache.put(key, ProbeStatus.BLOCKED, f"{type(e).__name__}: {e}")
            raise
        if result.clean:
            self.cache.put(key, ProbeStatus.CLEAN)
        return result


def probe_library(
    path: str | os.PathLike[str],
    *,
    timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    traits: Iterable[TraitSpec] = (),
    max_library_bytes: int = MAX_LIBRARY_BYTES,
    policy: LoadPolicy | None = None,
) -> ProbeResult:
    """Apply the load policy to one library file, pre-check and probe it without loading it into this process.

    For tools (``plugin-host abi check --probe``): the file's bytes are read
    once, judged by the policy, pre-checked, copied privately and the copy probed.

    :param use_cache: consult and update the blocklist and cache.
    :param traits: traits to probe beside the declared ones the file names.
    :param max_library_bytes: the largest file read, in bytes.
    :param policy: the load policy (default :class:`~plugin_host.LoadPolicy`).
    :raises InsecurePluginError: the policy refused the file.
    :raises PluginError: the pre-check refused the file (typed), or the probe
        failed fatally (:class:`~plugin_host.errors.ProbeError`), or the file is
        blocked (:class:`~plugin_host.errors.BlockedPluginError`).
    """
    policy = policy if policy is not None else LoadPolicy()
    dirs = DirectoryVerdicts()
    real = dirs.real_path(path)
    data, st = read_for_copy(path, max_library_bytes, real)
    policy.check_permissions(path, st, os.path.dirname(real), dirs)
    chosen = probe_traits(precheck_image(Image(path, st, data=data)).plugin_symbols(), traits)
    if policy.needs_contents:
        policy.check_contents(path, sha256_of(data))
    copy = write_private_copy(Path(path).name, data, path)
    try:
        if not use_cache:
            server = shared_server() if _probe_server_wanted() else None
            return run_probe(copy, chosen, path=path, timeout_s=timeout_s, server=server)
        key = ProbeKey.of(path, st, sha256_of(data), host_identity(chosen))
        prober = Prober(timeout_s, cache_dir, server=False)
        prober.server = shared_server() if _probe_server_wanted() else None
        return prober.probe(path, copy, key, chosen)
    finally:
        remove_private_copy(copy)
