"""The isolated probe's child: run the host's own pipeline on one library, once, and report.

Run by :mod:`plugin_host.admission._probe` in an isolated interpreter
(``python -I -c``, with this host's directories put first on ``sys.path``).  It opens the library with
the host's :class:`~plugin_host.loading.Library` and runs
:func:`plugin_host.registry.exercise` -- the very functions the host runs
in-process afterwards (descriptor read, aggregate or makers, every
registration read, the release, the unmaker counter) -- so a library that
would crash the host crashes this process first.

The request comes on stdin as JSON ``{"protocol": 3, "path": ..., "traits":
[<TraitSpec.to_json()>...], "accel": bool}``; every report frame is a 4-byte
big-endian length and a JSON object written to ``REPORT_FD``:

1. ``{"hello": "plugin-host-probe", "protocol": 3}`` (the version handshake);
2. ``{"step": ...}`` before each risky step (``"dlopen"``, a symbol name,
   ``"dlclose"``), so the parent can say where a crash happened;
3. ``{"result": {...}}`` once every trait was registered and released;
4. ``{"done": true}`` after ``dlclose`` (destructors ran).

A signal, an ``exit()`` or a hang in the library ends this process, never the host.
"""

from __future__ import annotations

import json
import os
import struct
import sys

from plugin_interface import LibraryLoadError, NotASharedLibraryError, TraitSpec

from ..loading import Library, _accel
from ..registry import exercise

PROTOCOL = 3
MAX_REQUEST_BYTES = 1 << 20


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


def main() -> int:
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)  # a helper process the plugin starts must not hold the report pipe open
    _send(fd, {"hello": "plugin-host-probe", "protocol": PROTOCOL})
    request = json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES))
    if request.get("protocol") != PROTOCOL:
        message = f"child speaks protocol {PROTOCOL}, asked {request.get('protocol')!r}"
        _send(fd, {"result": {"ok": False, "kind": "protocol", "message": message}})
        return 0
    _accel.set_enabled(bool(request.get("accel", True)))
    traits = [TraitSpec.from_json(t) for t in request.get("traits", [])]
    try:
        failure = _run(fd, request["path"], traits)
    except Exception as e:  # a Python error of the host's own code: neither a crash to block nor a clean probe
        failure = {"ok": False, "kind": "host_error", "message": f"{type(e).__name__}: {e}"}
    if failure:
        _send(fd, {"result": failure})
    _send(fd, {"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
