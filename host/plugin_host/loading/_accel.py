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
import struct
import sys
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

from . import _os

#: Room in the per-thread output buffers: words of registration records, and
#: bytes of type names.  A plugin with more registrations is checked in Python.
_OUT_WORDS = 4096
_NAMES_BYTES = 16384
#: Registrations per file a directory load's one call has room for besides those (more: checked in Python).
_ROOM_PER_FILE = 8

#: How much of a file the pre-check reads up front, in bytes (``PH_HEAD_BYTES`` in speedups.h).
HEAD_BYTES = 8192
#: The largest dynamic string table the pre-check accepts, in bytes (``PH_MAX_DYNSTR_BYTES``).
MAX_DYNSTR_BYTES = 16 << 20
#: The largest dynamic section (``PT_DYNAMIC``) the pre-check accepts, in bytes (``PH_MAX_DYNAMIC_BYTES``):
#: 65536 ELF64 entries, where real libraries have a few dozen.
MAX_DYNAMIC_BYTES = 1 << 20
#: Bytes of one file identity (``PH_IDENTITY_WORDS`` 64-bit words in speedups.h; :func:`identity_of` packs the same).
IDENTITY_BYTES = 9 * 8
_IDENTITY = struct.Struct("=QQQqqqqQQ")
_NO_IDENTITY = bytes(IDENTITY_BYTES)

# The verdicts and layouts of speedups.h the load and unload paths read per file, as Python
# constants (an attribute of the cffi module is a look-up per use); check_constants ties them.
#: ``PH_PASS``: every check passed.
PASS = 0
#: ``PH_DESCRIPTOR``: no descriptor, or another one; nothing was called.
DESCRIPTOR = 3
_NOT_OPENED = 4  # PH_NOT_OPENED
#: ``PH_MAKERS_PASS``: a host-owned file's makers all ran and every registration passed.
MAKERS_PASS = 6
#: ``PH_MAKERS_PARTIAL``: a host-owned file's makers ran up to one whose registration did not pass.
MAKERS_PARTIAL = 7
_OPEN_WORDS = 5  # PH_OPEN_WORDS
_HEADER_WORDS = 3  # PH_HEADER_WORDS
_RECORD_WORDS = 5  # PH_RECORD_WORDS
_RELEASE_WORDS = 4  # PH_RELEASE_WORDS
#: ``PH_CLOSE_UNMAPPED``: the verdict of a close after which the library is gone.
CLOSE_UNMAPPED = 0
_CLOSE_STILL_MAPPED = 1
_CLOSE_UNKNOWN = 2
_CLOSE_FAILED = 3
_CLOSE_NOT_ASKED = 5
#: Bytes of a ``uintptr_t`` (a pointer's, asserted at import).
_WORD = struct.calcsize("P")

__all__ = [
    "HEAD_BYTES",
    "IDENTITY_BYTES",
    "MAKERS_PARTIAL",
    "MAKERS_PASS",
    "MAX_DYNAMIC_BYTES",
    "MAX_DYNSTR_BYTES",
    "Hosted",
    "Opened",
    "available",
    "close_library",
    "close_verdict",
    "decode_records",
    "elf_makers",
    "elf_precheck_passes",
    "enabled",
    "encode_paths",
    "identity_of",
    "open_register_paths",
    "precheck_paths",
    "register_all",
    "release_close",
    "release_close_all",
    "set_enabled",
]

_lib: Any
_ffi: Any
try:
    from ._speedups import ffi as _ffi
    from ._speedups import lib as _lib
except ImportError:  # not built: pure Python
    _ffi = _lib = None


def check_constants(lib: Any, ffi: Any = None) -> None:
    """Refuse a C extension whose limits differ from the ones above (one rule, two copies tied here).

    :raises ImportError: naming the constant that differs.
    """
    limits = (
        ("PH_HEAD_BYTES", HEAD_BYTES),
        ("PH_MAX_DYNSTR_BYTES", MAX_DYNSTR_BYTES),
        ("PH_MAX_DYNAMIC_BYTES", MAX_DYNAMIC_BYTES),
        ("PH_IDENTITY_WORDS", IDENTITY_BYTES // 8),
        ("PH_PASS", PASS),
        ("PH_DESCRIPTOR", DESCRIPTOR),
        ("PH_NOT_OPENED", _NOT_OPENED),
        ("PH_MAKERS_PASS", MAKERS_PASS),
        ("PH_MAKERS_PARTIAL", MAKERS_PARTIAL),
        ("PH_OPEN_WORDS", _OPEN_WORDS),
        ("PH_HEADER_WORDS", _HEADER_WORDS),
        ("PH_RECORD_WORDS", _RECORD_WORDS),
        ("PH_RELEASE_WORDS", _RELEASE_WORDS),
        ("PH_CLOSE_UNMAPPED", CLOSE_UNMAPPED),
        ("PH_CLOSE_STILL_MAPPED", _CLOSE_STILL_MAPPED),
        ("PH_CLOSE_UNKNOWN", _CLOSE_UNKNOWN),
        ("PH_CLOSE_FAILED", _CLOSE_FAILED),
        ("PH_CLOSE_NOT_ASKED", _CLOSE_NOT_ASKED),
    )
    for name, value in limits:
        if getattr(lib, name) != value:
            msg = f"plugin_host.loading._speedups: {name} is {getattr(lib, name)}, the Python checks use {value}"
            raise ImportError(msg)
    if ffi is not None and ffi.sizeof("uintptr_t") != _WORD:
        raise ImportError("plugin_host.loading._speedups: a uintptr_t is not a pointer's size")


if _lib is not None:
    try:
        check_constants(_lib, _ffi)
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


def elf_makers(path: str | None, data: bytes | None, trait_name: bytes) -> tuple[list[str], bytes] | None:
    """``ph_elf_makers`` (exports.c): the maker types of ``trait_name`` the library exports,
    read from its ``.dynsym`` (the file at ``path``, or the image ``data``).

    :returns: the types in the order of their symbol names and the identity of the file
        read (zeros for ``data``), or ``None`` when C does not say "passes" (the Python reader decides).
    """
    types = _ffi.new("char[]", _NAMES_BYTES)
    found = _ffi.new("size_t[2]")
    identity = _ffi.new("unsigned char[]", IDENTITY_BYTES)
    if data is None:
        verdict = _lib.ph_elf_makers(
            os.fsencode(path or ""), _ffi.NULL, 0, trait_name, types, len(types), found, identity
        )
    else:
        buffer = _ffi.from_buffer(data)
        verdict = _lib.ph_elf_makers(_ffi.NULL, buffer, len(data), trait_name, types, len(types), found, identity)
    if verdict != PASS:
        return None
    names = _ffi.unpack(types, found[1]).split(b"\0")[: found[0]]
    return [name.decode() for name in names], bytes(_ffi.buffer(identity))


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


def identity_of(st: os.stat_result) -> bytes:
    """A file's identity as ``ph_precheck_paths`` records it: device, inode, size, mtime and ctime
    (seconds, nanoseconds), mode and owner, in native 64-bit words.

    A rewrite of a file keeps none of it but by design: even one of the same size whose
    mtime is put back changes the ctime, which no caller can set.
    """
    mtime_s, mtime_ns = divmod(st.st_mtime_ns, 1_000_000_000)
    ctime_s, ctime_ns = divmod(st.st_ctime_ns, 1_000_000_000)
    return _IDENTITY.pack(st.st_dev, st.st_ino, st.st_size, mtime_s, mtime_ns, ctime_s, ctime_ns, st.st_mode, st.st_uid)


def precheck_paths(
    paths: list[str],
    head_len: int,
    elf_class: int,
    byte_order: int,
    machine: int,
    uid: int,
    known: dict[str, bytes] | None = None,
) -> list[bool]:
    """``ph_precheck_paths``: per path, whether the file passes the ELF
    pre-check and the policy's rule for the file (see speedups.h).

    :param known: path -> the identity (:func:`identity_of`) the file had when
        it last passed; a file that still has it passes without being read
        again.  Updated with the identity of every file that passes.
    """
    n = len(paths)
    encoded = encode_paths(paths)
    verdicts = _ffi.new("unsigned char[]", max(n, 1))
    if known is None:
        _lib.ph_precheck_paths(
            encoded, n, head_len, elf_class, byte_order, machine, uid, _ffi.NULL, _ffi.NULL, verdicts
        )
        passed = _lib.PH_PASS
        return [v == passed for v in _ffi.unpack(verdicts, n)]
    before = b"".join([known.get(p, _NO_IDENTITY) for p in paths])
    identities = _ffi.new("unsigned char[]", max(n, 1) * IDENTITY_BYTES)
    _lib.ph_precheck_paths(encoded, n, head_len, elf_class, byte_order, machine, uid, before, identities, verdicts)
    after = _ffi.buffer(identities)[:]
    passed = _lib.PH_PASS
    out = [v == passed for v in _ffi.unpack(verdicts, n)]
    for i, (path, ok) in enumerate(zip(paths, out, strict=True)):
        if ok and path:
            known[path] = after[i * IDENTITY_BYTES : (i + 1) * IDENTITY_BYTES]
    return out


class Opened(NamedTuple):
    """What :func:`open_register_paths` did with one file.

    :ivar verdict: ``PH_*`` of speedups.h: ``PH_NOT_OPENED`` (nothing open),
        ``PH_NO_AGGREGATE``, ``PH_DESCRIPTOR``, ``PH_FAIL``, ``PH_UNSUPPORTED``
        or ``PH_PASS``; with any but the first, :attr:`handle` is open.
    :ivar handle: the ``dlopen`` handle (0 when not opened).
    :ivar aggregate: the aggregate's address (0: not exported).
    :ivar release: ``plugin_unregister_all_<T>_v1``'s address (0: not exported).
    :ivar counter: the unmaker counter's address (0: not exported).
    :ivar array: the array the aggregate returned (0 when it did not run, or returned NULL).
    :ivar length: the array's length (when the aggregate ran).
    :ivar records: on ``PH_PASS`` (and :data:`MAKERS_PASS`), where the registrations are, undecoded
        (:func:`decode_records` reads them): the words of every file of the
        call, this file's first record in them (a byte offset), the type names
        of every file, this file's first name in them, their length, and the words
        per record; else ``None``.
    :ivar hosted: a host-owned file's makers (:data:`MAKERS_PASS`, :data:`MAKERS_PARTIAL`), else ``None``.
    """

    verdict: int
    handle: int
    aggregate: int
    release: int
    counter: int
    array: int
    length: int
    records: tuple[bytes, int, bytes, int, int, int] | None
    hosted: Hosted | None = None


class Hosted(NamedTuple):
    """What :func:`open_register_paths` did with a host-owned file's makers.

    :ivar types: the makers' type names, in the order they ran (each NUL-terminated, as
        ``ph_elf_makers`` gives them: what an entry of ``known`` repeats).
    :ivar made: what each maker that ran returned (the last may be NULL or failed a check).
    :ivar unmakers: each maker's unmaker, in the same order (one per type).
    :ivar identity: the identity of the file the makers were read from (zeros: they were known).
    """

    types: bytes
    made: tuple[int, ...]
    unmakers: tuple[int, ...]
    identity: bytes

    @property
    def type_names(self) -> list[str]:
        """:attr:`types` as strings."""
        return [t.decode() for t in self.types.split(b"\0")[:-1]]


def encode_paths(paths: Sequence[str]) -> bytes:
    """The paths as the C functions take them: each in the file system's encoding (as
    :func:`os.fsencode`), NUL-terminated, one after another.

    :raises ValueError: a path has a NUL character (the C side would read another file).
    """
    if not paths:
        return b""
    joined = "\0".join(paths)
    if joined.count("\0") != len(paths) - 1:  # one scan for them all
        raise ValueError("a path has a NUL character")
    return (joined + "\0").encode(_FS_ENCODING, _FS_ERRORS)


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def open_register_paths(
    paths: Sequence[str],
    symbols: bytes,
    expected: bytes,
    max_len: int,
    trait_name: bytes,
    version: int,
    vtable_size: int,
    usable: int,
    known: bytes | None = None,
) -> list[Opened]:
    """``ph_open_register_paths`` (load.c): per path, ``dlopen`` (``RTLD_NOW | RTLD_LOCAL``),
    the symbols and :func:`register_all`, in one call for them all; with ``known``, a file
    without the aggregate gets the host-owned load (its makers read from ``.dynsym``,
    looked up with their unmakers, made and checked in turn).

    :param symbols: the aggregate, descriptor, release and counter names, each NUL-terminated.
    :param known: per path one after another, the maker types an earlier read of the same
        file found (:attr:`Hosted.types`), then a NUL (just the NUL: "read them");
        ``None``: no host-owned loads here.
    :returns: per path, what was done (``PH_NOT_OPENED`` for a path left unopened).
    """
    n = len(paths)
    header = _OPEN_WORDS + _HEADER_WORDS
    width = _RECORD_WORDS + usable
    # Room for every file's header and a few registrations each; a file with more than fits
    # is checked in Python (PH_UNSUPPORTED).  Not zeroed: only what C wrote is read.
    new_uncleared = _ffi.new_allocator(should_clear_after_alloc=False)
    # (A host-owned file has two words more per registration: what its maker made, and its unmaker.)
    out = new_uncleared("uintptr_t[]", n * (header + _ROOM_PER_FILE * (width + 2)) + _OUT_WORDS)
    names = new_uncleared("char[]", n * _ROOM_PER_FILE * 16 + _NAMES_BYTES)
    starts = new_uncleared("size_t[]", n + 2)
    if known is None:
        known_entries, identities = _ffi.NULL, _ffi.NULL
    else:
        known_entries = known
        identities = new_uncleared("unsigned char[]", max(n, 1) * IDENTITY_BYTES)
    done: int = _lib.ph_open_register_paths(
        encode_paths(paths),
        n,
        _os.OPEN_MODE,
        symbols,
        expected,
        len(expected),
        max_len,
        trait_name,
        version,
        vtable_size,
        usable,
        out,
        len(out),
        names,
        len(names),
        starts,
        known_entries,
        identities,
    )
    offsets = _ffi.unpack(starts, done + 2)
    # One copy of what C wrote, shared by the files' records (decoded when first asked for).
    words = _ffi.buffer(out, offsets[done] * _WORD)[:]
    all_names = _ffi.buffer(names, offsets[done + 1])[:]
    head = struct.Struct(f"@{header}P").unpack_from
    new = tuple.__new__
    made: list[Opened] = []
    append = made.append
    names_at = 0
    for i, start in enumerate(offsets[:done]):
        verdict, handle, aggregate, release, counter, array, length, names_used = head(words, start * _WORD)
        records = None
        if verdict == PASS:
            records = (words, (start + header) * _WORD, all_names, names_at, names_used, width)
            names_at += names_used
        elif verdict == MAKERS_PASS or verdict == MAKERS_PARTIAL:
            hosted = _hosted(words, start + header, all_names, names_at, array, length, identities, i)
            if verdict == MAKERS_PASS:
                at = (start + header + 2 * len(hosted.unmakers)) * _WORD
                records = (words, at, all_names, names_at + array, names_used - array, width)
            names_at += names_used
            append(new(Opened, (verdict, handle, 0, 0, counter, 0, length, records, hosted)))
            continue
        append(new(Opened, (verdict, handle, aggregate, release, counter, array, length, records, None)))
    if done < n:
        made += [new(Opened, (_NOT_OPENED, 0, 0, 0, 0, 0, 0, None, None))] * (n - done)
    return made


def _hosted(
    words: bytes, at: int, names: bytes, names_at: int, types_len: int, ran: int, identities: Any, i: int
) -> Hosted:
    """A host-owned file's :class:`Hosted`, from its words after the header (``at``, in words)."""
    types = names[names_at : names_at + types_len]
    count = types.count(b"\0")
    made = struct.unpack_from(f"@{ran}P", words, at * _WORD)
    unmakers = struct.unpack_from(f"@{count}P", words, (at + count) * _WORD)
    identity = bytes(_ffi.buffer(identities + i * IDENTITY_BYTES, IDENTITY_BYTES))
    return tuple.__new__(Hosted, (types, made, unmakers, identity))


def decode_records(opened: Opened) -> list[tuple[Record, bytes]]:
    """Each registration's record and type name, as :func:`register_all` gives them."""
    if opened.records is None:
        return []
    words, offset, names, names_at, names_used, width = opened.records
    length = opened.length
    values = struct.unpack_from(f"@{length * width}P", words, offset)
    type_names = names[names_at : names_at + names_used].split(b"\0")
    return [(list(values[i * width : (i + 1) * width]), type_names[i]) for i in range(length)]


def release_close(release: int, array: int, counter: int, handle: int) -> tuple[int | None, bool | None]:
    """``ph_release_close`` (unload.c): ``release(array)``, then ``counter()`` (when not 0),
    then, when ``handle`` is not 0, close the library as :func:`close_library` does.

    :returns: the counter (``None`` when ``counter`` is 0) and, for a close, whether the
        loader unmapped the library (``None``: not found out, or no close asked for).
    :raises OSError: dlclose failed (after the release).
    """
    count = getattr(_tls, "count", None) or _new_count()
    verdict: int = _lib.ph_release_close(release, array, counter, handle, count)
    value: int | None = count[0] if counter else None
    if verdict == _CLOSE_NOT_ASKED:
        return value, None
    return value, close_verdict(verdict, handle)


def release_close_all(calls: list[int]) -> list[int]:
    """``ph_release_close_all`` (unload.c): :func:`release_close` on many sets in one call.

    :param calls: ``release, array, counter, handle`` per set, one after another.
    :returns: per set, the counter (0 when ``counter`` is 0) and the ``PH_CLOSE_*``
        verdict, one after another (:func:`close_verdict` reads it).
    """
    n = len(calls) // _RELEASE_WORDS
    out = _ffi.new_allocator(should_clear_after_alloc=False)("uintptr_t[]", max(2 * n, 1))
    _lib.ph_release_close_all(calls, n, out)
    unpacked: list[int] = _ffi.unpack(out, 2 * n)
    return unpacked


def _new_count() -> Any:
    count = _tls.count = _ffi.new("size_t *")
    return count


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
        return close_verdict(_lib.ph_close_library(handle), handle)
    _os.close_library(handle)
    return None


def close_verdict(verdict: int, handle: int) -> bool | None:
    """What a ``PH_CLOSE_*`` verdict says; closes ``handle`` through :mod:`._os` on ``PH_CLOSE_UNSUPPORTED``."""
    if verdict == CLOSE_UNMAPPED:
        return True
    if verdict == _CLOSE_STILL_MAPPED:
        return False
    if verdict == _CLOSE_UNKNOWN:
        return None
    if verdict == _CLOSE_FAILED:
        msg = f"dlclose failed for the library handle {handle:#x}"
        raise OSError(msg)
    _os.close_library(handle)  # PH_CLOSE_UNSUPPORTED: nothing was done
    return None
