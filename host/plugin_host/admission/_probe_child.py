"""The isolated probe's child: load one library, run its makers and unmakers once, report.

Run by :mod:`plugin_host._probe` as ``python -I -S _probe_child.py REPORT_FD``
(a fresh interpreter, standard library only: it starts in a few tens of
milliseconds and imports nothing a plugin could disturb).  The request comes on
stdin as JSON ``{"protocol": 1, "path": ..., "symbols": [...]}``; every report
frame is a 4-byte big-endian length and a JSON object written to ``REPORT_FD``:

1. ``{"hello": "plugin-host-probe", "protocol": 1}`` (the version handshake);
2. ``{"step": ...}`` before each risky step (``"dlopen"``, a symbol name,
   ``"dlclose"``), so the parent can say where a crash happened;
3. ``{"result": {...}}`` once the makers and unmakers ran;
4. ``{"done": true}`` after ``dlclose`` (destructors ran).

A signal, an ``exit()`` or a hang in the library ends this process, never the host.
"""

from __future__ import annotations

import _ctypes
import ctypes
import json
import os
import re
import struct
import sys

PROTOCOL = 1
MAX_REQUEST_BYTES = 1 << 20
MAX_REGISTRATIONS = 1 << 16
_AGGREGATE = re.compile(r"plugin_register_all_([A-Za-z0-9]+)_v(\d+)\Z")
_MAKER = re.compile(r"plugin_register_([A-Za-z0-9]+)_([A-Za-z0-9_]+)_v(\d+)\Z")
_ARRAY_FN = ctypes.CFUNCTYPE(ctypes.c_void_p)
_RELEASE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Array(ctypes.Structure):
    _fields_ = (("registrations", ctypes.c_void_p), ("len", ctypes.c_size_t), ("factories", ctypes.c_void_p))


class _Factory(ctypes.Structure):
    _fields_ = (("maker", ctypes.c_void_p), ("unmaker", ctypes.c_void_p))


def _send(fd: int, message: dict[str, object]) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack(">I", len(data)) + data
    while frame:
        frame = frame[os.write(fd, frame) :]


def _run(fd: int, path: str, symbols: list[str]) -> dict[str, object]:
    _send(fd, {"step": "dlopen"})
    try:
        handle = _ctypes.dlopen(path, os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as e:
        return {"ok": False, "kind": "dlopen", "message": str(e)}

    def find(name: str) -> int | None:
        try:
            return _ctypes.dlsym(handle, name) or None
        except OSError:
            return None

    made = released = 0
    problems: list[str] = []
    aggregated = set()
    for name in symbols:
        m = _AGGREGATE.match(name)
        address = find(name) if m else None
        if m is None or address is None:
            continue
        trait, abi = m.group(1), m.group(2)
        aggregated.add(trait)
        _send(fd, {"step": name})
        array_address = _ARRAY_FN(address)()
        if not array_address:
            problems.append(f"{name} returned NULL")
            continue
        array = _Array.from_address(array_address)
        entries = (
            (ctypes.c_void_p * array.len).from_address(array.registrations)
            if (array.registrations and 0 < array.len <= MAX_REGISTRATIONS)
            else None
        )
        if entries is None or not array.factories or not all(entries):
            problems.append(f"{name} returned an inconsistent array (left unreleased)")
            continue
        made += array.len
        release = find(f"plugin_unregister_all_{trait}_v{abi}")
        if release is not None:
            _send(fd, {"step": f"plugin_unregister_all_{trait}_v{abi}"})
            _RELEASE_FN(release)(array_address)
        else:
            factories = (_Factory * array.len).from_address(array.factories)
            for i in range(array.len):
                if not factories[i].unmaker:
                    problems.append(f"{name}: factory {i} has no unmaker")
                    continue
                _send(fd, {"step": f"{name}: factories[{i}].unmaker"})
                _RELEASE_FN(factories[i].unmaker)(entries[i])
        released += array.len
    for name in symbols:
        m = _MAKER.match(name)
        if m is None or name.startswith("plugin_register_all_") or m.group(1) in aggregated:
            continue
        maker = find(name)
        unmaker = find("plugin_unregister_" + name[len("plugin_register_") :])
        if maker is None or unmaker is None:
            continue  # the host refuses a maker without its unmaker before calling it
        _send(fd, {"step": name})
        registration = _ARRAY_FN(maker)()
        if not registration:
            problems.append(f"{name} returned NULL")
            continue
        made += 1
        _send(fd, {"step": "plugin_unregister_" + name[len("plugin_register_") :]})
        _RELEASE_FN(unmaker)(registration)
        released += 1
    _send(
        fd,
        {
            "result": {
                "ok": not problems,
                "kind": "makers" if problems else "clean",
                "made": made,
                "released": released,
                "problems": problems,
            }
        },
    )
    _send(fd, {"step": "dlclose"})
    _ctypes.dlclose(handle)
    return {}


def main() -> int:
    fd = int(sys.argv[1])
    _send(fd, {"hello": "plugin-host-probe", "protocol": PROTOCOL})
    request = json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES))
    if request.get("protocol") != PROTOCOL:
        _send(
            fd,
            {
                "result": {
                    "ok": False,
                    "kind": "protocol",
                    "message": f"child speaks protocol {PROTOCOL}, asked {request.get('protocol')!r}",
                }
            },
        )
        return 0
    failure = _run(fd, request["path"], list(request["symbols"]))
    if failure:
        _send(fd, {"result": failure})
    _send(fd, {"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
