"""The optional C versions of the per-file checks, and whether they are in use.

``plugin_host.loading._speedups`` is compiled from ``host/speedups/speedups.c``
at install time (cffi API mode; its declarations are read from
``speedups.h``).  It only answers "everything passes"; on any
other answer the host runs the pure-Python check, which raises the typed error
with its message, so the C code never decides what a user reads.

It is skipped when it could not be built (no C compiler at install time), and
when the environment sets ``PLUGIN_HOST_PURE_PYTHON=1``.  :func:`enabled` says
which is in use; ``plugin-host --version`` prints it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from . import _os

#: Room in the per-thread output buffers: words of registration records, and
#: bytes of type names.  A plugin with more registrations is checked in Python.
_OUT_WORDS = 4096
_NAMES_BYTES = 16384

#: How much of a file the pre-check reads up front, in bytes (``PH_HEAD_BYTES`` in speedups.h).
HEAD_BYTES = 8192
#: The largest dynamic string table the pre-check accepts, in bytes (``PH_MAX_DYNSTR_BYTES``).
MAX_DYNSTR_BYTES = 16 << 20
#: The largest dynamic section (``PT_DYNAMIC``) the pre-check accepts, in bytes (``PH_MAX_DYNAMIC_BYTES``):
#: 65536 ELF64 entries, where real libraries have a few dozen.
MAX_DYNAMIC_BYTES = 1 << 20

__all__ = [
    "HEAD_BYTES",
    "MAX_DYNAMIC_BYTES",
    "MAX_DYNSTR_BYTES",
    "available",
    "close_library",
    "elf_precheck_passes",
    "enabled",
    "precheck_paths",
    "register_all",
    "set_enabled",
]

_lib: Any
_ffi: Any
try:
    from ._speedups import ffi as _ffi
    from ._speedups import lib as _lib
except ImportError:  # not built: pure Python
    _ffi = _lib = None


def check_constants(lib: Any) -> None:
    """Refuse a C extension whose limits differ from the ones above (one rule, two copies tied here).

    :raises ImportError: naming the constant that differs.
    """
    limits = (
        ("PH_HEAD_BYTES", HEAD_BYTES),
        ("PH_MAX_DYNSTR_BYTES", MAX_DYNSTR_BYTES),
        ("PH_MAX_DYNAMIC_BYTES", MAX_DYNAMIC_BYTES),
    )
    for name, value in limits:
        if getattr(lib, name) != value:
            msg = f"plugin_host.loading._speedups: {name} is {getattr(lib, name)}, the Python checks use {value}"
            raise ImportError(msg)


if _lib is not None:
    try:
        check_constants(_lib)
    except ImportError as _stale:  # a C extension from another build: the Python checks decide alone
        import warnings

        warnings.warn(f"{_stale}; using the pure-Python checks", RuntimeWarning, stacklevel=1)
        _ffi = _lib = None

_on = _lib is not None and os.environ.get("PLUGIN_HOST_PURE_PYTHON", "") in ("", "0")


def available() -> bool:
    """Whether the C extension was built and imports."""
    return _lib is not None


def enabled() -> bool:
    """Whether the host uses the C checks now."""
    return _on


def set_enabled(on: bool) -> bool:
    """Use the C checks (when built) or not; returns the previous setting (for tests and benchmarks)."""
    global _on
    previous = _on
    _on = on and _lib is not None
    return previous


def elf_precheck_passes(
    fd: int | None, data: bytes | None, size: int, head_len: int, elf_class: int, byte_order: int, machine: int
) -> bool:
    """``ph_precheck_elf``: whether the ELF pre-check passes everything (see speedups.c).

    Reads ``data`` (the whole image), or the open file ``fd`` of ``size`` bytes.
    """
    buffer = _ffi.NULL if data is None else _ffi.from_buffer(data)
    fd = -1 if fd is None else fd
    verdict: int = _lib.ph_precheck_elf(fd, buffer, size, head_len, elf_class, byte_order, machine)
    passed: int = _lib.PH_PASS
    return verdict == passed


#: One registration as ph_register_all reports it: address, instance,
#: free_memory, trait_version, vtable_size, then the method addresses.
Record = list[int]

_tls = threading.local()


def _buffers() -> tuple[Any, Any]:
    """This thread's output buffers (cffi releases the GIL during a call), of the sizes set above."""
    buffers: tuple[Any, Any] | None = getattr(_tls, "buffers", None)
    if buffers is None or len(buffers[0]) != _OUT_WORDS or len(buffers[1]) != _NAMES_BYTES:
        buffers = _tls.buffers = (_ffi.new("uintptr_t[]", _OUT_WORDS), _ffi.new("char[]", _NAMES_BYTES))
    return buffers


def register_all(
    descriptor: int | None,
    expected: bytes,
    aggregate: int,
    max_len: int,
    trait_name: bytes,
    version: int,
    vtable_size: int,
    usable: int,
) -> tuple[int, list[tuple[Record, bytes]] | None] | None:
    """``ph_register_all`` (see speedups.h).

    :returns: ``None`` when the descriptor is missing or differs from
        ``expected`` (the aggregate was not called); else the array the
        aggregate returned and, when every check passed, each registration's
        record and type name (``None`` when a check failed).
    """
    out, names = _buffers()
    verdict = _lib.ph_register_all(
        descriptor or 0,
        expected,
        len(expected),
        aggregate,
        max_len,
        trait_name,
        version,
        vtable_size,
        usable,
        out,
        len(out),
        names,
        len(names),
    )
    if verdict == _lib.PH_DESCRIPTOR:
        return None
    if verdict != _lib.PH_PASS:
        return out[0], None
    width = _lib.PH_RECORD_WORDS + usable
    header = _lib.PH_HEADER_WORDS
    length = out[1]
    words = _ffi.unpack(out, header + length * width)
    type_names = _ffi.unpack(names, out[2]).split(b"\0")
    return out[0], [(words[header + i * width : header + (i + 1) * width], type_names[i]) for i in range(length)]


def precheck_paths(
    paths: list[str], head_len: int, elf_class: int, byte_order: int, machine: int, uid: int
) -> list[bool]:
    """``ph_precheck_paths``: per path, whether the file passes the ELF
    pre-check and the policy's rule for the file (see speedups.h)."""
    encoded = b"".join(os.fsencode(p) + b"\0" for p in paths)
    verdicts = _ffi.new("unsigned char[]", max(len(paths), 1))
    _lib.ph_precheck_paths(encoded, len(paths), head_len, elf_class, byte_order, machine, uid, verdicts)
    passed = _lib.PH_PASS
    return [v == passed for v in _ffi.unpack(verdicts, len(paths))]


def close_library(handle: int) -> bool | None:
    """dlclose ``handle``; whether the loader unmapped the library, ``None`` when not found out here.

    With the C extension, ``ph_close_library`` (unload.c) looks for the
    library's load address among the loaded objects after the close: no file
    access, where the pure-Python question (``RTLD_NOLOAD``) costs more than
    the close.  Without it (or where the platform has no ``dl_iterate_phdr``)
    the library is closed through :mod:`._os` and the caller asks the loader.

    :raises OSError: dlclose failed.
    """
    if _on:
        verdict: int = _lib.ph_close_library(handle)
        if verdict == _lib.PH_CLOSE_UNMAPPED:
            return True
        if verdict == _lib.PH_CLOSE_STILL_MAPPED:
            return False
        if verdict == _lib.PH_CLOSE_UNKNOWN:
            return None
        if verdict == _lib.PH_CLOSE_FAILED:
            msg = f"dlclose failed for the library handle {handle:#x}"
            raise OSError(msg)
    _os.close_library(handle)
    return None
