"""The isolated probe's child: run the host's own pipeline on one library, once, and report.

It opens the library with the host's :class:`~plugin_host.loading.Library`
and runs :func:`plugin_host.registry.exercise` -- the very functions the host
runs in-process afterwards (descriptor read, aggregate or makers, every
registration read, the release, the unmaker counter) -- so a library that
would crash the host crashes this process first.  Two ways to start it, both
in an isolated interpreter (``python -I -c``, with this host's directories
first on ``sys.path``) started by :mod:`plugin_host.admission._probe`:

- :func:`serve`, the **probe server** (Linux): a warm, single-threaded
  process that imports the host once and forks one child per request.  A
  request is one ``SOCK_SEQPACKET`` packet on the control socket: the JSON
  request with, attached (``SCM_RIGHTS``), the stream socket the child
  reports on.  The server enforces the timeout (``SIGKILL`` to the child's
  process group) and, once it reaped the child, appends the last frame
  ``{"exit": {"returncode": <as subprocess>, "timed_out": bool}}``.  It
  exits when the control socket closes (the host went away), killing what
  still runs.
- :func:`main`, one fresh interpreter per library (elsewhere, or when the
  server is turned off): the request on stdin, the report on a pipe.

The request is JSON ``{"protocol": 4, "path": ..., "traits":
[<TraitSpec.to_json()>...], "accel": bool, "timeout_s": float}``; every report
frame is a 4-byte big-endian length and a JSON object:

1. ``{"hello": "plugin-host-probe", "protocol": 4, "pid": ...}`` (the version handshake);
2. ``{"step": ...}`` before each risky step (``"dlopen"``, a symbol name,
   ``"dlclose"``), so the parent can say where a crash happened;
3. ``{"result": {...}}`` once every trait was registered and released;
4. ``{"done": true}`` after ``dlclose`` (destructors ran).

A signal, an ``exit()`` or a hang in the library ends this process, never the host.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import struct
import sys
import time

from plugin_interface import LibraryLoadError, NotASharedLibraryError, TraitSpec

from ..formats import read_exports
from ..loading import Library, _accel
from ..registry import exercise, prepare

PROTOCOL = 4
MAX_REQUEST_BYTES = 1 << 20
#: Distinct trait lists the server keeps parsed and prepared (a host asks for few).
MAX_PREPARED = 64


def _send(fd: int, message: dict[str, object]) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack(">I", len(data)) + data
    while frame:
        frame = frame[os.write(fd, frame) :]


def _run(fd: int, path: str, traits: list[TraitSpec]) -> dict[str, object]:
    _send(fd, {"step": "dlopen"})
    try:
        library = Library(os.fsdecode(path))
    except (LibraryLoadError, NotASharedLibraryError) as e:
        return {"ok": False, "kind": "dlopen", "message": str(e)}
    done = exercise(library, traits, lambda step: _send(fd, {"step": step}))
    _send(
        fd,
        {
            "result": {
                "ok": not done.problems,
                "kind": "makers" if done.problems else "clean",
                "made": sum(done.made.values()),
                "traits": done.made,
                "counters": done.counters,
                "problems": done.problems,
            }
        },
    )
    _send(fd, {"step": "dlclose"})
    library.close()
    return {}


def _probe(fd: int, request: dict[str, object], traits: list[TraitSpec] | None = None) -> None:
    """Answer one request on ``fd``: the handshake, the steps, the result and ``done``.

    :param traits: the request's traits, when the server parsed them already (:func:`_prepared`).
    """
    _send(fd, {"hello": "plugin-host-probe", "protocol": PROTOCOL, "pid": os.getpid()})
    if request.get("protocol") != PROTOCOL:
        message = f"child speaks protocol {PROTOCOL}, asked {request.get('protocol')!r}"
        _send(fd, {"result": {"ok": False, "kind": "protocol", "message": message}})
        return
    _accel.set_enabled(bool(request.get("accel", True)))
    if traits is None:
        listed = request.get("traits", [])
        traits = [TraitSpec.from_json(t) for t in listed] if isinstance(listed, list) else []
    try:
        failure = _run(fd, str(request["path"]), traits)
    except Exception as e:  # a Python error of the host's own code: neither a crash to block nor a clean probe
        failure = {"ok": False, "kind": "host_error", "message": f"{type(e).__name__}: {e}"}
    if failure:
        _send(fd, {"result": failure})
    _send(fd, {"done": True})


def main() -> int:
    """One probe in this fresh interpreter: the request on stdin, the report on the pipe named in ``argv[1]``."""
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)  # a helper process the plugin starts must not hold the report pipe open
    request = json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES) or b"{}")
    _probe(fd, request if isinstance(request, dict) else {})
    return 0


# ---- the probe server ---------------------------------------------------------------------------


class _Child:
    """A forked child the server still waits for: its report socket and its deadline."""

    __slots__ = ("deadline", "report", "timed_out")

    def __init__(self, report: int, deadline: float) -> None:
        self.report = report
        self.deadline = deadline
        self.timed_out = False


def _exit_frame(report: int, status: int, timed_out: bool) -> None:
    """The server's last frame for a child: how it ended, as ``subprocess`` spells a return code."""
    returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)
    data = json.dumps({"exit": {"returncode": returncode, "timed_out": timed_out}}).encode()
    try:  # never block the server on one host thread that stopped reading
        os.set_blocking(report, False)
        os.write(report, struct.pack(">I", len(data)) + data)
    except OSError:
        pass
    os.close(report)


def _in_child(
    control: int,
    wakeup: tuple[int, int],
    report: int,
    others: list[int],
    request: dict[str, object],
    traits: list[TraitSpec] | None,
) -> None:
    """The forked child: drop the server's state, lead a process group of its own, probe, and leave."""
    code = 0
    try:
        # No collection in a process that lives for one probe: one would touch, and so copy,
        # every page of objects inherited from the server.
        gc.disable()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (control, *wakeup, *others):
            os.close(fd)
        os.setsid()  # the server kills the group at the timeout: helpers the plugin started go too
        _probe(report, request, traits)
    except BaseException:  # whatever happened, never return into the server's loop
        code = 70
    finally:
        os._exit(code)


def _kill_group(pid: int) -> None:
    """SIGKILL the child and its process group (before its ``setsid`` there is only the child)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _warm_up() -> None:
    """Do once, before forking, what every child would otherwise do first: the export reader's lazy imports."""
    import _ctypes  # an extension module: a small ELF file that is surely there

    try:
        read_exports(str(_ctypes.__file__))
    except Exception:  # only a warm-up: a child does the real read and reports what goes wrong
        pass


def _prepared(request: dict[str, object], memo: dict[str, list[TraitSpec]]) -> list[TraitSpec] | None:
    """The request's traits, parsed and prepared (:func:`~plugin_host.registry.prepare`) in the server once per
    distinct list, so every child inherits them ready; ``None`` when they do not parse (the child parses
    them again, and fails as it would have)."""
    listed = request.get("traits", [])
    if not isinstance(listed, list):
        return None
    key = json.dumps(listed, sort_keys=True)
    traits = memo.get(key)
    if traits is None:
        try:
            traits = [TraitSpec.from_json(t) for t in listed]
            prepare(traits)
        except Exception:  # the child reports it
            return None
        if len(memo) >= MAX_PREPARED:
            memo.clear()
        memo[key] = traits
        gc.freeze()  # what the children inherit stays out of the server's own collections
    return traits


def serve(control_fd: int) -> int:
    """The probe server's loop on the ``SOCK_SEQPACKET`` socket ``control_fd`` (see the module docs)."""
    os.set_inheritable(control_fd, False)
    _warm_up()
    gc.freeze()  # the server's own collections never touch (nor share less of) what it imported
    prepared: dict[str, list[TraitSpec]] = {}
    control = socket.socket(fileno=control_fd)
    wakeup = os.pipe()
    for fd in wakeup:
        os.set_blocking(fd, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select below (set_wakeup_fd)
    signal.set_wakeup_fd(wakeup[1], warn_on_full_buffer=False)
    children: dict[int, _Child] = {}
    control.send(json.dumps({"hello": "plugin-host-probe-server", "protocol": PROTOCOL}).encode())
    listening = True
    while listening or children:
        now = time.monotonic()
        deadlines = [c.deadline for c in children.values() if not c.timed_out]
        timeout = max(min(deadlines) - now, 0.0) if deadlines else None
        ready, _, _ = select.select([control_fd, wakeup[0]] if listening else [wakeup[0]], [], [], timeout)
        if control_fd in ready:
            try:
                message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST_BYTES, 1)
            except OSError:
                message, fds = b"", []
            if not message and not fds:  # the host closed the socket: stop what runs, then leave
                listening = False
                for pid in children:
                    _kill_group(pid)
            elif fds:
                try:
                    request = json.loads(message)
                except ValueError:
                    request = None
                if not isinstance(request, dict):
                    os.close(fds[0])
                    continue
                traits = _prepared(request, prepared)
                pid = os.fork()
                if pid == 0:
                    _in_child(control_fd, wakeup, fds[0], [c.report for c in children.values()], request, traits)
                timeout_s = request.get("timeout_s")
                deadline = time.monotonic() + (float(timeout_s) if isinstance(timeout_s, (int, float)) else 10.0)
                children[pid] = _Child(fds[0], deadline)
        if wakeup[0] in ready:
            try:
                while os.read(wakeup[0], 512):
                    pass
            except BlockingIOError:
                pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = children.pop(pid, None)
            if child is not None:
                _exit_frame(child.report, status, child.timed_out)
        now = time.monotonic()
        for pid, child in children.items():
            if not child.timed_out and now >= child.deadline:
                child.timed_out = True
                _kill_group(pid)
    return 0
