"""The per-trait ABI descriptor and the compatibility rule.

A plugin built with the macros exports ``plugin_abi_descriptor_<T>_v1``: a
``PluginAbiDescriptor`` head (sizes, versions, the trait fingerprint) followed
by one 64-bit fingerprint per vtable method, taken from the trait header it was
compiled against.  The method fingerprints are the last ``8 * method_count``
bytes of ``struct_size``, so fields appended to the head later stay readable.

Compatibility rule (``host`` = the declaration the host was built with,
``plugin`` = the descriptor; ``N``/``M`` their method counts):

- ``abi_version`` must be equal (it is also the ``_vN`` symbol suffix);
- ``registration_size`` may grow (fields are appended), never shrink;
- ``vtable_size`` must be ``sizeof(size_t) + M`` pointers (a consistent plugin);
- the first ``min(N, M)`` method fingerprints must be equal: a changed,
  removed, renamed or reordered method is breaking;
- equal trait versions need equal method lists; a higher version may only
  append methods (``M >= N``), a lower one may only lack the host's later
  methods (``M <= N``);
- then a newer plugin (``M > N``) is fully usable by the older host, which
  ignores the appended methods, and an older plugin (``M < N``) is usable for
  its ``M`` methods: calling one of the host's later methods raises
  :class:`MethodNotProvidedError`.

This module only reads and compares; it never loads anything.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Literal

from ._abi import ABI_VERSION, PluginAbiDescriptor, PluginRegistration
from ._record import Record, setfield
from ._traits import TraitSpec

__all__ = [
    "DESCRIPTOR_HEAD_SIZE",
    "MAX_DESCRIPTOR_METHODS",
    "AbiDescriptor",
    "AbiDifference",
    "DescriptorCheck",
    "check_descriptor",
    "descriptor_size",
    "registration_size_for",
]

#: ``sizeof(PluginAbiDescriptor)`` (the same on every platform: no pointers).
DESCRIPTOR_HEAD_SIZE = 32
#: More vtable methods than this in a descriptor is treated as corruption.
MAX_DESCRIPTOR_METHODS = 4096

_FIELDS = ("struct_size", "abi_version", "trait_version", "registration_size", "vtable_size", "method_count")
Byteorder = Literal["little", "big"]
#: This process's byte order, the one of descriptors read from memory.
NATIVE_BYTEORDER: Byteorder = "little" if sys.byteorder == "little" else "big"


def registration_size_for(pointer_size: int) -> int:
    """``sizeof(PluginRegistration)`` for a platform with ``pointer_size``-byte pointers.

    The host's own size comes from ctypes (checked against the C compiler by
    the test suite); this computes it for a library of another word size.
    """
    offset = 0
    for size in (4, 4, pointer_size, 4, 4, pointer_size, pointer_size, pointer_size, pointer_size):
        offset = (offset + size - 1) // size * size + size
    return (offset + pointer_size - 1) // pointer_size * pointer_size


def _fmt(fingerprint: int) -> str:
    return f"0x{fingerprint:016x}"


class AbiDescriptor(Record):
    """A decoded ``plugin_abi_descriptor_<T>_v1`` (or the one a host expects).

    :ivar method_fingerprints: one per vtable method, in vtable order.
    """

    __slots__ = (
        "abi_version",
        "fingerprint",
        "method_count",
        "method_fingerprints",
        "registration_size",
        "struct_size",
        "trait_version",
        "vtable_size",
    )
    struct_size: int
    abi_version: int
    trait_version: int
    registration_size: int
    vtable_size: int
    method_count: int
    fingerprint: int
    method_fingerprints: tuple[int, ...]

    def __init__(
        self,
        struct_size: int,
        abi_version: int,
        trait_version: int,
        registration_size: int,
        vtable_size: int,
        method_count: int,
        fingerprint: int,
        method_fingerprints: tuple[int, ...],
    ) -> None:
        setfield(self, "struct_size", struct_size)
        setfield(self, "abi_version", abi_version)
        setfield(self, "trait_version", trait_version)
        setfield(self, "registration_size", registration_size)
        setfield(self, "vtable_size", vtable_size)
        setfield(self, "method_count", method_count)
        setfield(self, "fingerprint", fingerprint)
        setfield(self, "method_fingerprints", method_fingerprints)

    @classmethod
    def for_trait(cls, spec: TraitSpec, pointer_size: int | None = None) -> AbiDescriptor:
        """The descriptor a plugin built against ``spec`` has.

        :param pointer_size: the library's pointer size; default: this process's.
        """
        if pointer_size is None or pointer_size == ctypes.sizeof(ctypes.c_void_p):
            pointer_size = ctypes.sizeof(ctypes.c_void_p)
            registration_size = ctypes.sizeof(PluginRegistration)
        else:
            registration_size = registration_size_for(pointer_size)
        n = len(spec.methods)
        return cls(
            struct_size=DESCRIPTOR_HEAD_SIZE + 8 * n,
            abi_version=ABI_VERSION,
            trait_version=spec.version,
            registration_size=registration_size,
            vtable_size=pointer_size * (1 + n),
            method_count=n,
            fingerprint=spec.fingerprint,
            method_fingerprints=spec.method_fingerprints,
        )

    @classmethod
    def from_bytes(cls, data: bytes, byteorder: Byteorder = "little") -> AbiDescriptor:
        """Decode a descriptor read from a file (``data`` may run past its end).

        :raises ValueError: if ``data`` is too short or the sizes are inconsistent.
        """
        if len(data) < DESCRIPTOR_HEAD_SIZE:
            raise ValueError(f"descriptor truncated: {len(data)} of {DESCRIPTOR_HEAD_SIZE} bytes")
        head = [int.from_bytes(data[i : i + 4], byteorder) for i in range(0, 24, 4)]
        struct_size, method_count = head[0], head[5]
        _check_sizes(struct_size, method_count)
        if len(data) < struct_size:
            raise ValueError(f"descriptor truncated: {len(data)} of {struct_size} bytes")
        start = struct_size - 8 * method_count
        fingerprints = tuple(
            int.from_bytes(data[start + 8 * i : start + 8 * i + 8], byteorder) for i in range(method_count)
        )
        return cls._make(head, int.from_bytes(data[24:32], byteorder), fingerprints)

    @classmethod
    def from_address(cls, address: int) -> AbiDescriptor:
        """Read a descriptor from a loaded library's memory (data only, no call).

        **Safety**: ``address`` must be the address of an exported
        ``plugin_abi_descriptor_<T>_v1`` of a library that stays loaded during
        the call; the sizes are checked before reading past the head.

        :raises ValueError: if the sizes are inconsistent.
        """
        head = PluginAbiDescriptor.from_address(address)
        _check_sizes(head.struct_size, head.method_count)
        start = address + head.struct_size - 8 * head.method_count
        fingerprints = tuple((ctypes.c_uint64 * head.method_count).from_address(start))
        return cls._make([int(getattr(head, f)) for f in _FIELDS], int(head.fingerprint), fingerprints)

    def to_bytes(self, byteorder: Byteorder = NATIVE_BYTEORDER) -> bytes:
        """The C layout of the descriptor (head, then the method fingerprints)."""
        head = b"".join(int(getattr(self, f)).to_bytes(4, byteorder) for f in _FIELDS)
        tail = b"".join(fp.to_bytes(8, byteorder) for fp in self.method_fingerprints)
        return head + self.fingerprint.to_bytes(8, byteorder) + tail

    def to_json(self) -> dict[str, object]:
        """JSON form (fingerprints as ``0x``-prefixed 16-digit hex strings)."""
        out: dict[str, object] = {f: getattr(self, f) for f in _FIELDS}
        out["fingerprint"] = _fmt(self.fingerprint)
        out["method_fingerprints"] = [_fmt(fp) for fp in self.method_fingerprints]
        return out

    @classmethod
    def from_json(cls, data: object) -> AbiDescriptor:
        """Inverse of :meth:`to_json`, held to what :meth:`from_bytes` accepts.

        A dump is as untrusted as a library: every field must be a JSON
        integer that fits its C field, and the counts must agree, so a
        comparison never indexes past the fingerprints it was given.

        :raises ValueError: naming the first malformed field.
        """
        if not isinstance(data, dict):
            raise ValueError(f"malformed descriptor: not an object ({type(data).__name__})")
        values = [_json_uint(data, f, 32) for f in _FIELDS]
        fingerprint = _json_fingerprint(data.get("fingerprint"), "fingerprint")
        listed = data.get("method_fingerprints")
        if not isinstance(listed, list):
            raise ValueError("malformed descriptor: method_fingerprints must be a list")
        struct_size, method_count = values[0], values[5]
        if len(listed) != method_count:
            msg = f"malformed descriptor: method_count {method_count} but {len(listed)} method fingerprint(s)"
            raise ValueError(msg)
        _check_sizes(struct_size, method_count)
        methods = tuple(_json_fingerprint(fp, f"method_fingerprints[{i}]") for i, fp in enumerate(listed))
        return cls._make(values, fingerprint, methods)

    @classmethod
    def _make(cls, head: list[int], fingerprint: int, method_fingerprints: tuple[int, ...]) -> AbiDescriptor:
        return cls(
            **dict(zip(_FIELDS, head, strict=True)), fingerprint=fingerprint, method_fingerprints=method_fingerprints
        )


def _json_value(value: object) -> str:
    """A short description of a decoded JSON value (never a recursive ``repr``: it may nest deeply)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    return "an object" if isinstance(value, dict) else "a list"


def _json_uint(data: dict[object, object], name: str, bits: int) -> int:
    """``data[name]``, a JSON integer in ``[0, 2**bits)`` (``bool`` is not one)."""
    value = data.get(name)
    if type(value) is not int or not 0 <= value < 1 << bits:
        msg = f"malformed descriptor: {name} must be an integer from 0 to {(1 << bits) - 1}, got {_json_value(value)}"
        raise ValueError(msg)
    return value


def _json_fingerprint(value: object, name: str) -> int:
    """A fingerprint as :func:`_fmt` writes it: ``0x`` and at most 16 hex digits."""
    digits = value[2:] if isinstance(value, str) and value[:2] in ("0x", "0X") else ""
    if not 0 < len(digits) <= 16 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(
            f"malformed descriptor: {name} must be a 0x-prefixed 64-bit hex string, got {_json_value(value)}"
        )
    return int(digits, 16)


def descriptor_size(head: bytes, byteorder: Byteorder = "little") -> int:
    """The whole descriptor's size from its first :data:`DESCRIPTOR_HEAD_SIZE` bytes, checked.

    Call it before reading the rest, so a corrupted ``struct_size`` never
    drives a large read.

    :raises ValueError: if ``head`` is short or the sizes are implausible.
    """
    if len(head) < DESCRIPTOR_HEAD_SIZE:
        raise ValueError(f"descriptor truncated: {len(head)} of {DESCRIPTOR_HEAD_SIZE} bytes")
    struct_size = int.from_bytes(head[0:4], byteorder)
    _check_sizes(struct_size, int.from_bytes(head[20:24], byteorder))
    return struct_size


def _check_sizes(struct_size: int, method_count: int) -> None:
    if method_count > MAX_DESCRIPTOR_METHODS:
        raise ValueError(f"descriptor method_count {method_count} exceeds {MAX_DESCRIPTOR_METHODS}")
    if struct_size < DESCRIPTOR_HEAD_SIZE + 8 * method_count:
        raise ValueError(f"descriptor struct_size {struct_size} is too small for {method_count} method fingerprint(s)")
    if struct_size > DESCRIPTOR_HEAD_SIZE + 8 * MAX_DESCRIPTOR_METHODS + 4096:
        raise ValueError(f"descriptor struct_size {struct_size} is implausibly large")


class AbiDifference(Record):
    """One way a plugin's descriptor differs from the host's expectation.

    :ivar field: what differs (``"abi_version"``, ``"method greet"``, ...).
    :ivar breaking: whether the host must refuse the plugin because of it.
    """

    __slots__ = ("breaking", "expected", "field", "found", "note")
    field: str
    expected: object
    found: object
    breaking: bool
    note: str

    def __init__(self, field: str, expected: object, found: object, breaking: bool, note: str = "") -> None:
        setfield(self, "field", field)
        setfield(self, "expected", expected)
        setfield(self, "found", found)
        setfield(self, "breaking", breaking)
        setfield(self, "note", note)

    def __str__(self) -> str:
        return self.describe()

    def describe(self, expected: str = "host expects", found: str = "plugin has") -> str:
        """The difference in words, each side named as given (``"old build has"``, ``"new build has"``
        when two builds are compared rather than a host and a plugin)."""
        kind = "breaking" if self.breaking else "compatible"
        note = f" ({self.note})" if self.note else ""
        return f"{self.field}: {expected} {self.expected!r}, {found} {self.found!r}: {kind}{note}"


class DescriptorCheck(Record):
    """The outcome of :func:`check_descriptor`.

    :ivar usable_methods: how many of the host's methods the plugin provides
        (the first ``usable_methods`` of the declaration).
    """

    __slots__ = ("differences", "expected", "found", "usable_methods")
    expected: AbiDescriptor
    found: AbiDescriptor
    differences: tuple[AbiDifference, ...]
    usable_methods: int

    def __init__(
        self, expected: AbiDescriptor, found: AbiDescriptor, differences: tuple[AbiDifference, ...], usable_methods: int
    ) -> None:
        setfield(self, "expected", expected)
        setfield(self, "found", found)
        setfield(self, "differences", differences)
        setfield(self, "usable_methods", usable_methods)

    @property
    def breaking(self) -> tuple[AbiDifference, ...]:
        """The differences that make the plugin unusable."""
        return tuple(d for d in self.differences if d.breaking)

    @property
    def status(self) -> str:
        """``"identical"``, ``"compatible"`` or ``"breaking"``."""
        if self.breaking:
            return "breaking"
        return "compatible" if self.differences else "identical"


def check_descriptor(expected: AbiDescriptor, found: AbiDescriptor, spec: TraitSpec | None = None) -> DescriptorCheck:
    """Apply the compatibility rule of this module to a plugin's descriptor.

    :param expected: what the host expects (:meth:`AbiDescriptor.for_trait`).
    :param found: the plugin's descriptor.
    :param spec: the host's declaration, to name methods in the differences.
    """
    diffs: list[AbiDifference] = []
    n, m = expected.method_count, found.method_count

    def name(i: int) -> str:
        return spec.methods[i].name if spec is not None and i < len(spec.methods) else f"#{i}"

    if found.abi_version != expected.abi_version:
        diffs.append(AbiDifference("abi_version", expected.abi_version, found.abi_version, True))
    if found.registration_size != expected.registration_size:
        grew = found.registration_size > expected.registration_size
        note = "appended fields the host ignores" if grew else "smaller than the host's PluginRegistration"
        diffs.append(
            AbiDifference("registration_size", expected.registration_size, found.registration_size, not grew, note)
        )
    pointer_size = expected.vtable_size // (n + 1)
    if found.vtable_size != pointer_size * (m + 1):
        diffs.append(
            AbiDifference(
                "vtable_size",
                pointer_size * (m + 1),
                found.vtable_size,
                True,
                f"{m} method(s) of {pointer_size}-byte pointers after size_t size",
            )
        )
    for i in range(min(n, m)):
        want, got = expected.method_fingerprints[i], found.method_fingerprints[i]
        if want != got:
            sig = spec.methods[i].signature if spec is not None else _fmt(want)
            diffs.append(
                AbiDifference(
                    f"method {name(i)} (slot {i}) signature", sig, _fmt(got), True, f"host fingerprint {_fmt(want)}"
                )
            )
    tv_host, tv_plugin = expected.trait_version, found.trait_version
    if tv_plugin == tv_host and m != n:
        diffs.append(
            AbiDifference(
                "method_count",
                n,
                m,
                True,
                f"same trait version {tv_host} with a different method list: the header changed without a version bump",
            )
        )
    elif tv_plugin > tv_host and m < n:
        diffs.append(AbiDifference("method_count", f">= {n}", m, True, f"trait version {tv_plugin} removed methods"))
    elif tv_plugin < tv_host and m > n:
        diffs.append(
            AbiDifference(
                "method_count",
                f"<= {n}",
                m,
                True,
                f"older trait version {tv_plugin} has more methods than version {tv_host}",
            )
        )
    elif tv_plugin != tv_host:
        if m > n:
            note = f"newer plugin appends {m - n} method(s) the host does not call"
        elif m < n:
            lacking = ", ".join(name(i) for i in range(m, n))
            note = f"older plugin lacks {lacking}; calling them raises MethodNotProvidedError"
        else:
            note = "same methods"
        diffs.append(AbiDifference("trait_version", tv_host, tv_plugin, False, note))
    same_methods = found.method_fingerprints == expected.method_fingerprints
    if m == n and same_methods and found.fingerprint != expected.fingerprint:
        diffs.append(
            AbiDifference(
                "fingerprint",
                _fmt(expected.fingerprint),
                _fmt(found.fingerprint),
                True,
                "disagrees with the method fingerprints",
            )
        )
    usable = 0 if any(d.breaking for d in diffs) else min(n, m)
    return DescriptorCheck(expected, found, tuple(diffs), usable)
