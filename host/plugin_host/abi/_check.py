"""What a library exports under this project's symbol scheme, and what is wrong with it.

Works on the file alone (:func:`~plugin_host.formats.read_exports`): no
library is loaded and no plugin code runs, so it is safe on untrusted files and
works for any target (a Windows ``.dll`` or macOS ``.dylib`` on a Linux CI).

- :func:`scan_library` -> :class:`LibraryAbi`: traits, implementation types,
  ``_vN`` versions, aggregates, counters, the ABI descriptor of each trait, and
  symbols that look like the scheme but do not parse.
- :func:`check_library`: the problems of one library, judged against the
  host's trait declarations (missing unmaker, aggregate without counter or
  release, unknown version, descriptor mismatch, ...).
- :func:`diff_abi`: added, removed and changed registrations between two
  builds, each classified ``compatible`` or ``breaking``.

The JSON forms (``to_json``) are the stable, documented output of
``plugin-host abi``; see the README's "ABI verification".
"""

from __future__ import annotations

import enum
import functools
import json
import os
import stat
from typing import Protocol

from plugin_interface import (
    ABI_VERSION,
    MAX_DECLARATION_BYTES,
    AbiDescriptor,
    MethodChange,
    NotASharedLibraryError,
    SymbolName,
    SymbolRole,
    TraitSpec,
    abi_descriptor_symbol,
    check_descriptor,
    declared_traits,
    decode_declaration,
    method_changes,
    parse_symbol,
    split_symbol,
    trait_declaration_symbol,
    unmaker_counter_symbol,
    unmaker_symbol,
    unregister_all_symbol,
)
from plugin_interface._descriptor import DESCRIPTOR_HEAD_SIZE, Byteorder, descriptor_size
from plugin_interface._record import FACTORY, Record, setfield

from ..formats import (
    READ_FLAGS,
    BinaryFormat,
    ExportTable,
    SchemeExports,
    UnloadBlockers,
    open_exports,
    open_scheme_exports,
    pread,
    read_capped,
)
from ._unload import unload_findings

__all__ = [
    "ChangeKind",
    "ProblemKind",
    "Severity",
    "DUMP_SCHEMA",
    "CHECK_SCHEMA",
    "MAX_DUMP_BYTES",
    "DIFF_SCHEMA",
    "AbiChange",
    "LibraryAbi",
    "Problem",
    "TraitAbi",
    "check_library",
    "diff_abi",
    "load_abi",
    "scan_library",
]

DUMP_SCHEMA = "plugin-host-abi/1"
CHECK_SCHEMA = "plugin-host-abi-check/2"
DIFF_SCHEMA = "plugin-host-abi-diff/2"


class Severity(enum.StrEnum):
    """How much a :class:`Problem` matters."""

    #: Fails the check (exit bit 8, or 1 for a file that is not a library).
    ERROR = "error"
    #: Reported, does not fail the check.
    WARNING = "warning"


class ProblemKind(enum.StrEnum):
    """What :func:`check_library` (and ``abi check --probe``) found; the values are the JSON ``kind``s."""

    NOT_A_LIBRARY = "not_a_library"
    NO_PLUGIN = "no_plugin"
    MALFORMED_SYMBOL = "malformed_symbol"
    UNKNOWN_TRAIT = "unknown_trait"
    UNKNOWN_VERSION = "unknown_version"
    MISSING_UNMAKER = "missing_unmaker"
    UNMAKER_WITHOUT_MAKER = "unmaker_without_maker"
    AGGREGATE_WITHOUT_COUNTER = "aggregate_without_counter"
    AGGREGATE_WITHOUT_RELEASE = "aggregate_without_release"
    RELEASE_WITHOUT_AGGREGATE = "release_without_aggregate"
    MISSING_DESCRIPTOR = "missing_descriptor"
    DESCRIPTOR_UNREADABLE = "descriptor_unreadable"
    DESCRIPTOR_MISMATCH = "descriptor_mismatch"
    DECLARATION_UNREADABLE = "declaration_unreadable"
    DECLARATION_MISMATCH = "declaration_mismatch"
    METHOD_MISMATCH = "method_mismatch"
    PROBE_CRASHED = "probe_crashed"
    PROBE_EXITED = "probe_exited"
    PROBE_TIMEOUT = "probe_timeout"
    PROBE_FAILED = "probe_failed"
    PROBE_SKIPPED = "probe_skipped"
    UNLOAD_BLOCKED = "unload_blocked"
    UNLOAD_MAY_BE_BLOCKED = "unload_may_be_blocked"


class ChangeKind(enum.StrEnum):
    """What :func:`diff_abi` found changed; the values are the JSON ``kind``s."""

    PLATFORM_CHANGED = "platform_changed"
    TRAIT_ADDED = "trait_added"
    TRAIT_REMOVED = "trait_removed"
    REGISTRATION_ADDED = "registration_added"
    REGISTRATION_REMOVED = "registration_removed"
    VERSION_ADDED = "version_added"
    VERSION_BUMP = "version_bump"
    SYMBOL_ADDED = "symbol_added"
    SYMBOL_REMOVED = "symbol_removed"
    DESCRIPTOR_ADDED = "descriptor_added"
    DESCRIPTOR_REMOVED = "descriptor_removed"
    DESCRIPTOR_CHANGED = "descriptor_changed"
    METHOD_ADDED = "method_added"
    METHOD_REMOVED = "method_removed"
    METHOD_CHANGED = "method_changed"
    LIBRARY_ADDED = "library_added"
    LIBRARY_REMOVED = "library_removed"


#: A JSON dump larger than this (in bytes) is refused unread; a real one is a few KiB.
MAX_DUMP_BYTES = 64 << 20

#: Exported names with these prefixes belong to the scheme; one that does not parse is malformed.
_SCHEME_PREFIXES = (
    "plugin_register_",
    "plugin_unregister_",
    "plugin_unmaker_counter_",
    "plugin_abi_descriptor_",
    "plugin_trait_declaration_",
)
_AGGREGATE_ROLES = ("register_all", "unregister_all", "unmaker_counter", "abi_descriptor", "trait_declaration")


class TraitAbi(Record, frozen=False):
    """One trait's exports in one library.

    :ivar symbols: ``(role, type or None, abi) -> symbol`` for every parsed symbol.
    :ivar descriptor: the decoded ``plugin_abi_descriptor_<T>_v1``, if exported and readable.
    :ivar descriptor_error: why an exported descriptor could not be read.
    :ivar declaration: the embedded ``plugin_trait_declaration_<T>_v1``, if exported and readable.
    :ivar declaration_error: why an exported declaration could not be read.
    """

    __slots__ = ("declaration", "declaration_error", "descriptor", "descriptor_error", "name", "symbols")
    name: str
    symbols: dict[tuple[str, str | None, int], str]
    descriptor: AbiDescriptor | None
    descriptor_error: str | None
    declaration: TraitSpec | None
    declaration_error: str | None

    def __init__(
        self,
        name: str,
        symbols: dict[tuple[str, str | None, int], str] = FACTORY,
        descriptor: AbiDescriptor | None = None,
        descriptor_error: str | None = None,
        declaration: TraitSpec | None = None,
        declaration_error: str | None = None,
    ) -> None:
        self.name = name
        self.symbols = {} if symbols is FACTORY else symbols
        self.descriptor = descriptor
        self.descriptor_error = descriptor_error
        self.declaration = declaration
        self.declaration_error = declaration_error

    def has(self, role: str, type_name: str | None = None, abi: int = ABI_VERSION) -> bool:
        """Whether the library exports that symbol."""
        return (role, type_name, abi) in self.symbols

    @property
    def abi_versions(self) -> list[int]:
        """Every ``_vN`` seen for this trait."""
        return sorted({abi for _, _, abi in self.symbols})

    @property
    def types(self) -> list[str]:
        """Implementation types with a maker at this host's ABI version."""
        return sorted([t for role, t, abi in self.symbols if role == "maker" and abi == ABI_VERSION and t])

    def registrations(self) -> dict[tuple[str, int], dict[str, bool]]:
        """``(type, abi) -> {"maker": ..., "unmaker": ...}`` for every maker or unmaker."""
        out: dict[tuple[str, int], dict[str, bool]] = {}
        for role, t, abi in self.symbols:
            if role in ("maker", "unmaker") and t:
                out.setdefault((t, abi), {"maker": False, "unmaker": False})[role] = True
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, object]:
        """The trait's part of a dump (schema in the README)."""
        return {
            "abi_versions": self.abi_versions,
            "types": self.types,
            "registrations": [{"type": t, "abi": abi, **flags} for (t, abi), flags in self.registrations().items()],
            "aggregate": {role: self.has(role) for role in ("register_all", "unregister_all", "unmaker_counter")},
            "symbols": sorted(self.symbols.values()),
            "descriptor": self.descriptor.to_json() if self.descriptor else None,
            "descriptor_error": self.descriptor_error,
            "declaration": self.declaration.to_json() if self.declaration else None,
            "declaration_error": self.declaration_error,
        }

    @classmethod
    def from_json(cls, name: str, data: object) -> TraitAbi:
        """Rebuild from :meth:`to_json` output; :raises ValueError: if malformed."""
        parsed_name = _parse_symbol(abi_descriptor_symbol(name))
        if parsed_name is None or parsed_name.trait != name:
            raise ValueError(f"trait {_shown(name)}: not a trait name (letters and digits)")
        if not isinstance(data, dict):
            raise ValueError(f"trait {name}: must be an object")
        trait = cls(name)
        for symbol in _strings(data.get("symbols"), f"trait {name}: symbols"):
            parsed = _parse_symbol(symbol)
            if parsed is None or parsed.trait != name:
                raise ValueError(f"trait {name}: {_shown(symbol)} is not one of its symbols")
            trait.symbols[(parsed.role, parsed.type_name, parsed.abi)] = symbol
        if data.get("descriptor") is not None:
            try:
                trait.descriptor = AbiDescriptor.from_json(data["descriptor"])
            except ValueError as e:
                raise ValueError(f"trait {name}: {e}") from e
        error = data.get("descriptor_error")
        if error is not None and not isinstance(error, str):
            raise ValueError(f"trait {name}: descriptor_error must be a string or null")
        trait.descriptor_error = error
        if data.get("declaration") is not None:  # dumps older than embedded declarations have none
            try:
                trait.declaration = TraitSpec.from_json(data["declaration"])
            except ValueError as e:
                raise ValueError(f"trait {name}: declaration: {e}") from e
            if trait.declaration.name != name:
                raise ValueError(f"trait {name}: its declaration is of trait {_shown(trait.declaration.name)}")
        declaration_error = data.get("declaration_error")
        if declaration_error is not None and not isinstance(declaration_error, str):
            raise ValueError(f"trait {name}: declaration_error must be a string or null")
        trait.declaration_error = declaration_error
        return trait


class LibraryAbi(Record, frozen=False, uncompared=("unload_blockers",), unshown=("unload_blockers",)):
    """A library's exported ABI under this project's scheme (what ``abi dump`` writes)."""

    __slots__ = ("format", "machine", "malformed", "path", "pointer_size", "traits", "unload_blockers")
    path: str
    format: str
    machine: str
    pointer_size: int
    traits: dict[str, TraitAbi]
    malformed: list[str]
    #: What keeps the library mapped after an unload, read with its exports (ELF; not in dumps).
    unload_blockers: UnloadBlockers | None

    def __init__(
        self,
        path: str,
        format: str,
        machine: str,
        pointer_size: int,
        traits: dict[str, TraitAbi] = FACTORY,
        malformed: list[str] = FACTORY,
        unload_blockers: UnloadBlockers | None = None,
    ) -> None:
        self.path = path
        self.format = format
        self.machine = machine
        self.pointer_size = pointer_size
        self.traits = {} if traits is FACTORY else traits
        self.malformed = [] if malformed is FACTORY else malformed
        self.unload_blockers = unload_blockers

    def to_json(self) -> dict[str, object]:
        """The dump object (``schema`` ``plugin-host-abi/1``)."""
        return {
            "schema": DUMP_SCHEMA,
            "library": self.path,
            "format": self.format,
            "machine": self.machine,
            "pointer_size": self.pointer_size,
            "abi_version": ABI_VERSION,
            "traits": {name: t.to_json() for name, t in sorted(self.traits.items())},
            "malformed": sorted(self.malformed),
        }

    @classmethod
    def from_json(cls, data: object, source: str = "<dump>") -> LibraryAbi:
        """Rebuild from a dump, every field checked (a dump is as untrusted as a library).

        :raises ValueError: naming ``source`` and what is wrong.
        """
        if not isinstance(data, dict) or data.get("schema") != DUMP_SCHEMA:
            raise ValueError(f"{source}: not a plugin-host ABI dump (schema {DUMP_SCHEMA!r} expected)")
        try:
            library, fmt, machine = data.get("library"), data.get("format"), data.get("machine")
            if not (isinstance(library, str) and isinstance(fmt, str) and isinstance(machine, str)):
                raise ValueError("library, format and machine must be strings")
            if fmt not in {f.value for f in BinaryFormat}:
                raise ValueError(f"format must be one of {', '.join(f.value for f in BinaryFormat)}")
            pointer_size = data.get("pointer_size")
            if type(pointer_size) is not int or pointer_size not in (4, 8):
                raise ValueError("pointer_size must be 4 or 8")
            traits = data.get("traits")
            if not isinstance(traits, dict):
                raise ValueError("traits must be an object")
            return cls(
                path=library,
                format=fmt,
                machine=machine,
                pointer_size=pointer_size,
                traits={str(n): TraitAbi.from_json(str(n), t) for n, t in traits.items()},
                malformed=_strings(data.get("malformed", []), "malformed"),
            )
        except ValueError as e:
            raise ValueError(f"{source}: malformed ABI dump: {e}") from e


def _parse_symbol(name: str) -> SymbolName | None:
    """:func:`~plugin_interface.parse_symbol`, with a ``_vN`` too long for ``int()`` (4300 digits) not parsing."""
    try:
        return parse_symbol(name)
    except ValueError:
        return None


def _strings(value: object, what: str) -> list[str]:
    """``value`` if it is a JSON list of strings; :raises ValueError: otherwise."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return value


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut short (a dump may hold megabytes in one string)."""
    return repr(text[:80]) + ("..." if len(text) > 80 else "")


def read_descriptor(table: ExportTable, trait: str, fd: int | None = None, symbol: str | None = None) -> AbiDescriptor:
    """Decode ``plugin_abi_descriptor_<trait>_v1`` from the file.

    :param fd: the file, open (see :meth:`ExportTable.read`).
    :param symbol: the name it is exported under, when it is not spelled ``_v1`` (``_v01`` is version 1 too).
    :raises ValueError: if it is truncated or inconsistent.
    :raises NotASharedLibraryError: if it is not stored in the file.
    """
    symbol = symbol or abi_descriptor_symbol(trait)
    data = table.read(symbol, _DESCRIPTOR_FIRST_READ, fd)  # a whole descriptor of up to 60 methods
    size = descriptor_size(data[:DESCRIPTOR_HEAD_SIZE], table.byteorder)  # checked before it drives a read
    if size > len(data):
        data = table.read(symbol, size, fd)
    return _decode_descriptor(data[:size], table.byteorder)


# Decoding is a pure function of the bytes, and plugins built against one header carry the same bytes:
# hundreds of libraries of a trait decode a handful of distinct descriptors and declarations.
@functools.lru_cache(maxsize=1024)
def _decode_descriptor(data: bytes, byteorder: Byteorder) -> AbiDescriptor:
    return AbiDescriptor.from_bytes(data, byteorder)


@functools.lru_cache(maxsize=1024)
def _decode_declaration(text: bytes) -> TraitSpec:
    return decode_declaration(text)


# The two caches below are keyed by the identity of the declarations and descriptors (kept alive in the
# values, so no identity is reused meanwhile): the decoding caches above hand every library built against
# one header the same objects, and a host's declaration and a plugin's equal one share a hash, so a cache
# keyed by value would compare them field by field at each look-up.
_EXPECTED: dict[tuple[int, int], tuple[TraitSpec, AbiDescriptor]] = {}
_VERDICTS: dict[tuple[int, int, int, str], tuple[object, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {}
#: Entries each cache keeps at most (then it starts again: a check meets a handful of distinct ones).
_IDENTITY_CACHE_SIZE = 1024


def _expected_descriptor(spec: TraitSpec, pointer_size: int) -> AbiDescriptor:
    """What a host with declaration ``spec`` expects of a library with ``pointer_size``-byte pointers."""
    key = (id(spec), pointer_size)
    hit = _EXPECTED.get(key)
    if hit is not None:
        return hit[1]
    if len(_EXPECTED) >= _IDENTITY_CACHE_SIZE:
        _EXPECTED.clear()
    expected = AbiDescriptor.for_trait(spec, pointer_size)
    _EXPECTED[key] = (spec, expected)
    return expected


#: A descriptor is read this far first; a larger one (sizes checked first) is read again.
_DESCRIPTOR_FIRST_READ = 512
#: A declaration is read this far first; a longer one (rare) is read again, up to MAX_DECLARATION_BYTES.
_DECLARATION_FIRST_READ = 1024


def scan_library(path: str | os.PathLike[str]) -> LibraryAbi:
    """Read a library's exports and sort them into the scheme.

    An ELF library is read by the C reader in one call where it was built
    (:func:`~plugin_host.formats.open_scheme_exports`: the scheme's names
    parsed, the first bytes of each descriptor and declaration read), and
    decoded here as :func:`read_descriptor` and :func:`read_declaration` decode
    them; any other file, and whatever the C leaves to Python, is read from
    its :class:`~plugin_host.formats.ExportTable`.  Both give the same
    :class:`LibraryAbi` (``tests/test_scheme_scan.py``).

    :raises NotASharedLibraryError: for a file that is not a readable library.
    """
    with open_scheme_exports(path, ABI_VERSION, _SCHEME_PREFIXES) as (found, fd):
        if isinstance(found, ExportTable):
            return _scan_table(found, fd)
    abi = _scan_scheme(found)
    if abi is None:  # a descriptor larger than the C read (which the C leaves to Python): read again
        with open_exports(path) as (table, fd):
            return _scan_table(table, fd)
    return abi


#: SymbolRole by its value (the C reader spells the roles so).
_ROLES: dict[str, SymbolRole] = {role.value: role for role in SymbolRole}


def _scan_scheme(found: SchemeExports) -> LibraryAbi | None:
    """:func:`_scan_table`'s answer from the C reader's scheme scan; ``None`` if it needs more bytes than the C read."""
    abi = LibraryAbi(
        found.path,
        found.format,
        found.machine,
        found.pointer_size,
        malformed=list(found.malformed),
        unload_blockers=found.unload_blockers,
    )
    traits = abi.traits
    byteorder = found.byteorder
    roles = _ROLES
    for role, trait_name, type_name, version, name, data in found.symbols:
        trait = traits.get(trait_name)
        if trait is None:
            trait = traits[trait_name] = TraitAbi(trait_name)
        trait.symbols[(roles[role], type_name, version)] = name
        if data is None:
            continue  # not a descriptor or declaration of this ABI version
        if role == "abi_descriptor":
            try:
                size = descriptor_size(data[:DESCRIPTOR_HEAD_SIZE], byteorder)
                if size > len(data):
                    return None
                trait.descriptor = _decode_descriptor(data[:size], byteorder)
            except (ValueError, NotASharedLibraryError) as e:
                trait.descriptor_error = e.detail if isinstance(e, NotASharedLibraryError) else str(e)
        else:
            try:
                trait.declaration = _declaration_of(data, trait_name)
            except (ValueError, NotASharedLibraryError) as e:
                trait.declaration_error = e.detail if isinstance(e, NotASharedLibraryError) else str(e)
    return abi


def _scan_table(table: ExportTable, fd: int) -> LibraryAbi:
    """:func:`scan_library` of the library whose export table was read (the Python reading)."""
    abi = LibraryAbi(table.path, table.format, table.machine, table.pointer_size)
    abi.unload_blockers = table.unload_blockers
    traits = abi.traits
    for name in table.symbols:  # every output sorts: no need to here
        if not name.startswith("plugin_"):
            continue  # every name of the scheme, well-formed or not, starts so
        parts = split_symbol(name)
        if parts is None:
            if name.startswith(_SCHEME_PREFIXES):
                abi.malformed.append(name)
            continue
        role, trait_name, type_name, version = parts
        trait = traits.get(trait_name)
        if trait is None:
            trait = traits[trait_name] = TraitAbi(trait_name)
        trait.symbols[(role, type_name, version)] = name
    for trait in traits.values():
        symbols = trait.symbols
        # Read by the name exported: a _v01 is version 1, and the name _v1 may not be exported.
        descriptor = symbols.get((SymbolRole.ABI_DESCRIPTOR, None, ABI_VERSION))
        if descriptor is not None:
            try:
                trait.descriptor = read_descriptor(table, trait.name, fd, descriptor)
            except (ValueError, NotASharedLibraryError) as e:
                trait.descriptor_error = e.detail if isinstance(e, NotASharedLibraryError) else str(e)
        declaration = symbols.get((SymbolRole.TRAIT_DECLARATION, None, ABI_VERSION))
        if declaration is not None:
            try:
                trait.declaration = read_declaration(table, trait.name, fd, declaration)
            except (ValueError, NotASharedLibraryError) as e:
                trait.declaration_error = e.detail if isinstance(e, NotASharedLibraryError) else str(e)
    return abi


def read_declaration(table: ExportTable, trait: str, fd: int | None = None, symbol: str | None = None) -> TraitSpec:
    """Decode ``plugin_trait_declaration_<trait>_v1`` from the file.

    :param fd: the file, open (see :meth:`ExportTable.read`).
    :param symbol: the name it is exported under, when it is not spelled ``_v1`` (``_v01`` is version 1 too).
    :raises ValueError: if it is no declaration of ``trait``.
    :raises NotASharedLibraryError: if it is not stored in the file.
    """
    symbol = symbol or trait_declaration_symbol(trait)
    data = table.read(symbol, _DECLARATION_FIRST_READ, fd)
    if b"\0" not in data and len(data) == _DECLARATION_FIRST_READ:
        data = table.read(symbol, MAX_DECLARATION_BYTES, fd)
    return _declaration_of(data.split(b"\0", 1)[0], trait)


def _declaration_of(text: bytes, trait: str) -> TraitSpec:
    """The declaration ``text`` (up to its NUL) decodes to; :raises ValueError: if it is no declaration of ``trait``."""
    spec = _decode_declaration(text)
    if spec.name != trait:
        raise ValueError(f"it declares trait {_shown(spec.name)}, not {trait}")
    return spec


def load_abi(path: str | os.PathLike[str]) -> LibraryAbi:
    """A library (scanned) or a JSON dump of one (``abi dump`` output), told apart by content.

    The file is opened like a library (:data:`~plugin_host.formats.READ_FLAGS`:
    a FIFO does not block) and must be a regular file; a dump is read whole
    only below :data:`MAX_DUMP_BYTES`.

    :raises NotASharedLibraryError: for a file that is neither, or that cannot be read.
    :raises ValueError: for a JSON file that is not a valid dump, naming it.
    """
    abi, data = load_abi_or_json(path)
    return abi if abi is not None else LibraryAbi.from_json(data, os.fspath(path))


def load_abi_or_json(path: str | os.PathLike[str]) -> tuple[LibraryAbi | None, object]:
    """:func:`load_abi`'s reading: ``(abi, None)`` for a library, ``(None, data)`` for a JSON file.

    The caller decides which dumps ``data`` may be (a library's, a folder's baseline).

    :raises NotASharedLibraryError: for a file that is neither, or that cannot be read.
    :raises ValueError: for a JSON file that is too large or not valid JSON, naming it.
    """
    name = os.fspath(path)
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise NotASharedLibraryError(path, f"it is {what}")
        head = pread(fd, 64, 0).lstrip()
        if not head.startswith(b"{"):
            return scan_library(path), None
        if st.st_size > MAX_DUMP_BYTES:
            raise ValueError(f"{name}: {st.st_size} bytes is too large for an ABI dump (at most {MAX_DUMP_BYTES})")
        raw = read_capped(fd, MAX_DUMP_BYTES + 1)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    finally:
        os.close(fd)
    if len(raw) > MAX_DUMP_BYTES:  # grew since the fstat
        raise ValueError(f"{name}: too large for an ABI dump (more than {MAX_DUMP_BYTES} bytes)")
    try:
        return None, json.loads(raw.decode("utf-8"))
    except RecursionError as e:
        raise ValueError(f"{name}: not valid JSON: nested too deeply") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise ValueError(f"{name}: not valid JSON: {e}") from e


# ---- check ------------------------------------------------------------------


class Problem(Record):
    """One finding of :func:`check_library`.

    :ivar severity: whether it fails the check.
    :ivar kind: what it is (stable values, listed in the README).
    """

    __slots__ = ("kind", "message", "method", "severity", "symbol", "trait")
    severity: Severity
    kind: ProblemKind
    message: str
    trait: str | None
    symbol: str | None
    #: The trait method it is about (``method_mismatch``).
    method: str | None

    def __init__(
        self,
        severity: Severity,
        kind: ProblemKind,
        message: str,
        trait: str | None = None,
        symbol: str | None = None,
        method: str | None = None,
    ) -> None:
        setfield(self, "severity", severity)
        setfield(self, "kind", kind)
        setfield(self, "message", message)
        setfield(self, "trait", trait)
        setfield(self, "symbol", symbol)
        setfield(self, "method", method)

    def to_json(self) -> dict[str, object]:
        """JSON form."""
        return {
            "severity": self.severity,
            "kind": self.kind,
            "trait": self.trait,
            "symbol": self.symbol,
            "method": self.method,
            "message": self.message,
        }


class TraitCheck(Record, frozen=False):
    """A trait's descriptor judged against the host's declaration.

    :ivar compatibility: ``"identical"``, ``"compatible"``, ``"breaking"``,
        or ``"unchecked"`` (no descriptor, or a trait this host does not know).
    """

    __slots__ = ("compatibility", "differences")
    compatibility: str
    differences: list[str]

    def __init__(self, compatibility: str = "unchecked", differences: list[str] = FACTORY) -> None:
        self.compatibility = compatibility
        self.differences = [] if differences is FACTORY else differences


def check_library(
    abi: LibraryAbi, traits: dict[str, TraitSpec] | None = None, only: str | None = None, host: str = "the host"
) -> tuple[list[Problem], dict[str, TraitCheck]]:
    """Every problem of a scanned library.

    :param traits: the host's declarations (default: every declared trait);
        a host contract's, to check against another host version.
    :param only: check this trait alone (others are ignored).
    :param host: how messages name the side ``traits`` are from (``"contract host-v2"``).
    :returns: the problems, and per trait the descriptor verdict (in trait name order).
    """
    known = declared_traits() if traits is None else traits
    problems: list[Problem] = []
    checks: dict[str, TraitCheck] = {}

    def add(
        severity: Severity,
        kind: ProblemKind,
        message: str,
        trait: str | None = None,
        symbol: str | None = None,
        method: str | None = None,
    ) -> None:
        problems.append(Problem(severity, kind, message, trait, symbol, method))

    if only is None:
        for name in abi.malformed:
            add(
                Severity.ERROR,
                ProblemKind.MALFORMED_SYMBOL,
                f"{name}: looks like a plugin symbol but does not follow plugin_<role>_<Trait>[_<Type>]_v<N>",
                symbol=name,
            )
    for severity, kind, message in unload_findings(abi.path, abi.unload_blockers):
        add(Severity(severity), ProblemKind(kind), message)
    selected = abi.traits if only is None else {n: t for n, t in abi.traits.items() if n == only}
    if not selected:
        what = f"trait {only}" if only else "any trait"
        add(Severity.ERROR, ProblemKind.NO_PLUGIN, f"exports no plugin symbol for {what}", trait=only)
    for name, trait in sorted(selected.items()):
        checks[name] = _check_trait(abi, trait, known.get(name), add, host)
    return problems, checks


class _Report(Protocol):
    def __call__(
        self,
        severity: Severity,
        kind: ProblemKind,
        message: str,
        trait: str | None = None,
        symbol: str | None = None,
        method: str | None = None,
    ) -> None: ...


def _check_trait(abi: LibraryAbi, trait: TraitAbi, spec: TraitSpec | None, report: _Report, host: str) -> TraitCheck:
    name = trait.name
    symbols = trait.symbols
    found: list[tuple[str, Severity, ProblemKind, str]] = []  # at most one per symbol, reported in symbol order
    for (role, type_name, version), symbol in symbols.items():
        if version != ABI_VERSION:
            message = f"{symbol}: ABI version {version} is unknown to this host (which speaks v{ABI_VERSION})"
            found.append((symbol, Severity.ERROR, ProblemKind.UNKNOWN_VERSION, message))
        elif role == "maker" and ("unmaker", type_name, version) not in symbols:
            message = f"{symbol}: maker without its unmaker {unmaker_symbol(name, type_name or '', version)}"
            found.append((symbol, Severity.ERROR, ProblemKind.MISSING_UNMAKER, message))
        elif role == "unmaker" and ("maker", type_name, version) not in symbols:
            message = f"{symbol}: unmaker without a maker"
            found.append((symbol, Severity.WARNING, ProblemKind.UNMAKER_WITHOUT_MAKER, message))
    for symbol, severity, kind, message in sorted(found) if len(found) > 1 else found:
        report(severity, kind, message, name, symbol)
    if trait.has("register_all"):
        aggregate = trait.symbols[("register_all", None, ABI_VERSION)]
        if not trait.has("unmaker_counter"):
            report(
                Severity.ERROR,
                ProblemKind.AGGREGATE_WITHOUT_COUNTER,
                f"{aggregate}: aggregate without {unmaker_counter_symbol(name)}",
                name,
                aggregate,
            )
        if not trait.has("unregister_all"):
            report(
                Severity.ERROR,
                ProblemKind.AGGREGATE_WITHOUT_RELEASE,
                f"{aggregate}: aggregate without {unregister_all_symbol(name)} (the array container would leak)",
                name,
                aggregate,
            )
    elif trait.has("unregister_all"):
        report(
            Severity.WARNING,
            ProblemKind.RELEASE_WITHOUT_AGGREGATE,
            f"{unregister_all_symbol(name)} without an aggregate",
            name,
        )
    descriptor_symbol = abi_descriptor_symbol(name)
    declaration_symbol = trait_declaration_symbol(name)
    if trait.declaration_error is not None:
        report(
            Severity.ERROR,
            ProblemKind.DECLARATION_UNREADABLE,
            f"{declaration_symbol}: {trait.declaration_error}",
            name,
            declaration_symbol,
        )
    embedded = trait.declaration
    if embedded is not None and trait.descriptor is not None:
        own = _expected_descriptor(embedded, abi.pointer_size)
        if (own.trait_version, own.method_fingerprints) != (
            trait.descriptor.trait_version,
            trait.descriptor.method_fingerprints,
        ):
            report(
                Severity.ERROR,
                ProblemKind.DECLARATION_MISMATCH,
                f"{declaration_symbol}: the declaration (v{embedded.version}, {len(embedded.methods)} methods) "
                f"does not match {descriptor_symbol} (v{trait.descriptor.trait_version}, "
                f"{trait.descriptor.method_count} methods): one of them was built from another header",
                name,
                declaration_symbol,
            )
    if spec is not None and embedded is not None and _methods_differ(spec, embedded):
        for change in method_changes(spec, embedded):
            if change.kind == "changed":
                report(
                    Severity.ERROR,
                    ProblemKind.METHOD_MISMATCH,
                    f"`{name}.{change.name}` (method {change.index}): {change.detail} in the plugin "
                    f"({host} declares {change.old.signature if change.old else '-'}; "
                    f"the plugin has {change.new.signature if change.new else '-'})",
                    name,
                    declaration_symbol,
                    change.name,
                )
    if spec is None and embedded is not None:
        spec = embedded  # self-described: the library's own declaration is what a host would load it with
    if spec is None:
        report(
            Severity.WARNING,
            ProblemKind.UNKNOWN_TRAIT,
            f"trait {name} is not declared in this host and the library embeds no declaration of it "
            f"({declaration_symbol}); its descriptor was not compared",
            name,
        )
        return TraitCheck()
    if trait.descriptor_error is not None:
        report(
            Severity.ERROR,
            ProblemKind.DESCRIPTOR_UNREADABLE,
            f"{descriptor_symbol}: {trait.descriptor_error}",
            name,
            descriptor_symbol,
        )
        return TraitCheck()
    if trait.descriptor is None:
        if any(v == ABI_VERSION for v in trait.abi_versions):
            report(
                Severity.WARNING,
                ProblemKind.MISSING_DESCRIPTOR,
                f"{descriptor_symbol} is not exported: the host cannot "
                "check the layout before calling a maker (C/C++: build with PLUGIN_AGGREGATES or "
                "PLUGIN_UNMAKER_COUNTER; Rust: plugin_aggregates! or plugin_unmaker_counter! of the "
                "module python -m plugin_annotations rust generates)",
                name,
                descriptor_symbol,
            )
        return TraitCheck()
    expects = "host expects" if host == "the host" else f"{host} expects"
    status, breaking, differences = _descriptor_verdict(
        _expected_descriptor(spec, abi.pointer_size), trait.descriptor, spec, expects
    )
    for message in breaking:
        report(
            Severity.ERROR, ProblemKind.DESCRIPTOR_MISMATCH, f"{descriptor_symbol}: {message}", name, descriptor_symbol
        )
    return TraitCheck(status, list(differences))


def _descriptor_verdict(
    expected: AbiDescriptor, found: AbiDescriptor, spec: TraitSpec, expects: str
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """:func:`~plugin_interface.check_descriptor`'s status, and its breaking and all differences in words.

    A pure function of immutable values, and libraries built against one header carry equal descriptors:
    hundreds of libraries of a trait are judged a handful of times.
    """
    key = (id(expected), id(found), id(spec), expects)
    hit = _VERDICTS.get(key)
    if hit is not None:
        return hit[1]
    if len(_VERDICTS) >= _IDENTITY_CACHE_SIZE:
        _VERDICTS.clear()
    result = check_descriptor(expected, found, spec)
    verdict = (
        result.status,
        tuple(d.describe(expects) for d in result.breaking),
        tuple(d.describe(expects) for d in result.differences),
    )
    _VERDICTS[key] = ((expected, found, spec), verdict)
    return verdict


def _methods_differ(host: TraitSpec, plugin: TraitSpec) -> bool:
    """Whether a method both declarations have differs (the cached fingerprints first: the common case is none)."""
    n = min(len(host.methods), len(plugin.methods))
    return host is not plugin and host.method_fingerprints[:n] != plugin.method_fingerprints[:n]


def check_to_json(
    abi: LibraryAbi | None, path: str, problems: list[Problem], checks: dict[str, TraitCheck]
) -> dict[str, object]:
    """One library's entry of ``abi check --json``."""
    entry: dict[str, object] = {
        "library": path,
        "ok": not any(p.severity is Severity.ERROR for p in problems),
        "format": abi.format if abi else None,
        "machine": abi.machine if abi else None,
        "pointer_size": abi.pointer_size if abi else None,
        "traits": {},
        "problems": [p.to_json() for p in problems],
    }
    if abi is not None:
        entry["traits"] = {
            name: {**abi.traits[name].to_json(), "compatibility": c.compatibility, "differences": c.differences}
            for name, c in sorted(checks.items())
        }
    return entry


# ---- diff -------------------------------------------------------------------


class AbiChange(Record):
    """One difference between two builds of a library.

    :ivar kind: what changed.
    :ivar breaking: whether a host that worked with the old build may fail
        with the new one.
    """

    __slots__ = ("breaking", "kind", "message", "method", "new", "old", "trait", "type_name")
    kind: ChangeKind
    breaking: bool
    message: str
    trait: str | None
    type_name: str | None
    old: object
    new: object
    #: The trait method it is about (``method_added``, ``method_removed``, ``method_changed``).
    method: str | None

    def __init__(
        self,
        kind: ChangeKind,
        breaking: bool,
        message: str,
        trait: str | None = None,
        type_name: str | None = None,
        old: object = None,
        new: object = None,
        method: str | None = None,
    ) -> None:
        setfield(self, "kind", kind)
        setfield(self, "breaking", breaking)
        setfield(self, "message", message)
        setfield(self, "trait", trait)
        setfield(self, "type_name", type_name)
        setfield(self, "old", old)
        setfield(self, "new", new)
        setfield(self, "method", method)

    def to_json(self) -> dict[str, object]:
        """JSON form."""
        return {
            "kind": self.kind,
            "classification": "breaking" if self.breaking else "compatible",
            "trait": self.trait,
            "type": self.type_name,
            "method": self.method,
            "old": self.old,
            "new": self.new,
            "message": self.message,
        }


def diff_abi(old: LibraryAbi, new: LibraryAbi, traits: dict[str, TraitSpec] | None = None) -> list[AbiChange]:
    """What changed from ``old`` to ``new``, from the point of view of hosts that used ``old``.

    :param traits: declarations used to name methods in descriptor changes.
    """
    known = declared_traits() if traits is None else traits
    changes: list[AbiChange] = []
    for attr in ("format", "machine", "pointer_size"):
        before, after = getattr(old, attr), getattr(new, attr)
        if before != after:
            changes.append(
                AbiChange(
                    ChangeKind.PLATFORM_CHANGED, True, f"{attr} changed from {before} to {after}", old=before, new=after
                )
            )
    for name in sorted(set(old.traits) | set(new.traits)):
        before, after = old.traits.get(name), new.traits.get(name)
        if before is not None and after is not None:
            changes += _diff_trait(before, after, known.get(name))
        elif after is not None:
            types = ", ".join(after.types) or "no maker"
            changes.append(
                AbiChange(ChangeKind.TRAIT_ADDED, False, f"trait {name} added ({types})", name, new=after.types)
            )
        elif before is not None:
            types = ", ".join(before.types) or "no maker"
            changes.append(
                AbiChange(ChangeKind.TRAIT_REMOVED, True, f"trait {name} removed (had {types})", name, old=before.types)
            )
    return changes


def _diff_trait(old: TraitAbi, new: TraitAbi, spec: TraitSpec | None) -> list[AbiChange]:
    name = old.name
    out: list[AbiChange] = []
    versions_old: dict[str, set[int]] = {}
    versions_new: dict[str, set[int]] = {}
    for versions, trait in ((versions_old, old), (versions_new, new)):
        for role, t, abi in trait.symbols:
            if role == "maker" and t:
                versions.setdefault(t, set()).add(abi)
    for t in sorted(set(versions_old) | set(versions_new)):
        before, after = versions_old.get(t, set()), versions_new.get(t, set())
        removed, added = sorted(before - after), sorted(after - before)
        if not before:
            out.append(
                AbiChange(
                    ChangeKind.REGISTRATION_ADDED,
                    False,
                    f"{name}.{t} added (v{', v'.join(map(str, added))})",
                    name,
                    t,
                    new=added,
                )
            )
        elif not after:
            out.append(
                AbiChange(
                    ChangeKind.REGISTRATION_REMOVED,
                    True,
                    f"{name}.{t} removed (was v{', v'.join(map(str, removed))})",
                    name,
                    t,
                    old=removed,
                )
            )
        elif removed:
            out.append(
                AbiChange(
                    ChangeKind.VERSION_BUMP,
                    True,
                    f"{name}.{t}: ABI v{', v'.join(map(str, removed))} "
                    f"replaced by v{', v'.join(map(str, sorted(after)))}: hosts of the old "
                    "version no longer find it",
                    name,
                    t,
                    old=sorted(before),
                    new=sorted(after),
                )
            )
        elif added:
            out.append(
                AbiChange(
                    ChangeKind.VERSION_ADDED,
                    False,
                    f"{name}.{t}: also exported as v{', v'.join(map(str, added))}",
                    name,
                    t,
                    old=sorted(before),
                    new=sorted(after),
                )
            )

    # The other symbols: aggregates and counters, and unmakers of a maker both builds export.
    def relevant(role: str, t: str | None, abi: int) -> bool:
        if role == "unmaker":
            return ("maker", t, abi) in old.symbols and ("maker", t, abi) in new.symbols
        return role not in ("maker", "abi_descriptor")

    for key in sorted(set(old.symbols) - set(new.symbols), key=lambda k: old.symbols[k]):
        if relevant(*key):
            out.append(
                AbiChange(
                    ChangeKind.SYMBOL_REMOVED, True, f"{old.symbols[key]} removed", name, key[1], old=old.symbols[key]
                )
            )
    for key in sorted(set(new.symbols) - set(old.symbols), key=lambda k: new.symbols[k]):
        if relevant(*key):
            out.append(
                AbiChange(
                    ChangeKind.SYMBOL_ADDED, False, f"{new.symbols[key]} added", name, key[1], new=new.symbols[key]
                )
            )
    if old.descriptor and not new.descriptor:
        out.append(
            AbiChange(
                ChangeKind.DESCRIPTOR_REMOVED,
                False,
                f"{abi_descriptor_symbol(name)} removed: hosts can no longer check the layout before calling a maker",
                name,
            )
        )
    elif new.descriptor and not old.descriptor:
        out.append(AbiChange(ChangeKind.DESCRIPTOR_ADDED, False, f"{abi_descriptor_symbol(name)} added", name))
    both_declared = old.declaration is not None and new.declaration is not None
    if old.declaration is not None and new.declaration is not None:
        for change in method_changes(old.declaration, new.declaration):
            out.append(_method_change(name, change))
    if old.descriptor and new.descriptor:
        # Methods are named from the old build's own declaration, else from the host's if it is the old build's.
        if old.declaration is not None:
            names: TraitSpec | None = old.declaration
        else:
            same = spec is not None and spec.method_fingerprints == old.descriptor.method_fingerprints
            names = spec if same else None
        result = check_descriptor(old.descriptor, new.descriptor, names)
        dropped = new.descriptor.method_count < old.descriptor.method_count
        for d in result.differences:
            if both_declared and d.field.startswith("method "):
                continue  # a method_changed above names it, with both signatures
            # Loading an older plugin is allowed, but a release that drops methods breaks their callers.
            breaking = d.breaking or (dropped and d.field == "trait_version")
            message = f"{name}: {d.describe('old build has', 'new build has')}" + (
                ": a new build must not drop methods" if breaking and not d.breaking else ""
            )
            out.append(AbiChange(ChangeKind.DESCRIPTOR_CHANGED, breaking, message, name, old=d.expected, new=d.found))
    return out


def _method_change(trait: str, change: MethodChange) -> AbiChange:
    """One method of two builds' declarations, in words that say which build has what."""
    old_sig = change.old.signature if change.old else None
    new_sig = change.new.signature if change.new else None
    if change.kind == "added":
        message = f"`{trait}.{change.name}` added in the new build (slot {change.index}): {new_sig}"
        kind, breaking = ChangeKind.METHOD_ADDED, False
    elif change.kind == "removed":
        message = (
            f"`{trait}.{change.name}` removed: the old build has {old_sig} (slot {change.index}), "
            "the new build does not; hosts that call it break"
        )
        kind, breaking = ChangeKind.METHOD_REMOVED, True
    else:
        message = (
            f"`{trait}.{change.name}` (slot {change.index}) changed: {change.detail}; "
            f"old build: {old_sig}; new build: {new_sig}"
        )
        kind, breaking = ChangeKind.METHOD_CHANGED, True
    return AbiChange(kind, breaking, message, trait, old=old_sig, new=new_sig, method=change.name)
