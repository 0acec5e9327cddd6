"""Registration arrays and their two ownership paths.

- **Plugin-owned** (``factories != NULL``): returned by
  ``plugin_register_all_<T>_v1``; released by ``plugin_unregister_all_<T>_v1``
  when exported, otherwise by ``factories[i].unmaker(registrations[i])``.
- **Host-owned** (``factories == NULL``): the host called each
  ``plugin_register_<T>_<Ty>_v1`` it found in the symbol table and keeps the
  pointers in its own array; each is released by
  ``plugin_unregister_<T>_<Ty>_v1``, then the host drops its array.

Every registration is released exactly once: a second release raises
:class:`AlreadyReleasedError` instead of calling into the plugin again.

Before any maker or aggregate runs, :func:`verify_descriptor` reads the
plugin's ``plugin_abi_descriptor_<T>_v1`` (data, no call) and refuses a
plugin built against an incompatible trait header; the rule is in
:mod:`plugin_interface._descriptor`.  A plugin without a descriptor (written
by hand) is still loaded, with the strict rule: equal trait versions.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import cffi
from plugin_interface import (
    ABI_VERSION,
    AbiDescriptor,
    AbiMismatchError,
    AlreadyReleasedError,
    DescriptorCheck,
    InconsistentArrayError,
    MakerReturnedNullError,
    PluginRegistration,
    PluginRegistrationArray,
    SymbolRole,
    TraitSpec,
    abi_descriptor_symbol,
    check_descriptor,
    maker_symbol,
    parse_symbol,
    register_all_symbol,
    unmaker_counter_symbol,
    unmaker_symbol,
    unregister_all_symbol,
)
from plugin_interface._abi import MAKER_FN, UNMAKER_FN
from plugin_interface._descriptor import DESCRIPTOR_HEAD_SIZE

from ..loading import _accel
from ..loading._library import CallGate, Library

__all__ = ["Registration", "RegistrationSet", "find_maker_types", "verify_descriptor"]

#: More registrations than this in one array is treated as corruption.
MAX_REGISTRATIONS = 1 << 16
_ARRAY_FN = ctypes.CFUNCTYPE(ctypes.c_void_p)
_REGISTRATION_SIZE = ctypes.sizeof(PluginRegistration)
_POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)
#: The C layouts read on every load, with native alignment (the ctypes mirrors'
#: sizes are asserted equal below, and tests/test_layout.py checks them against C).
_REGISTRATION = struct.Struct("@IIPIIPPPP")
_ARRAY = struct.Struct("@PNP")
if _REGISTRATION.size != _REGISTRATION_SIZE or _ARRAY.size != ctypes.sizeof(PluginRegistrationArray):
    raise ImportError("struct layouts disagree with the ctypes mirrors of plugin_interface.h")

# Raw reads of plugin memory on the load path.  ctypes.string_at goes through a
# foreign-function call per read; a c_char array's .raw and cffi's string() are
# three to four times cheaper, which matters at ~10 reads per registration.
_ffi = cffi.FFI()
_CHAR_P = _ffi.typeof("char *")


@functools.cache
def _char_array(length: int) -> type[ctypes.Array[ctypes.c_char]]:
    return ctypes.c_char * length


def _read_bytes(address: int, length: int) -> bytes:
    """``length`` bytes of plugin memory at ``address`` (the caller checked both)."""
    if length <= 0:
        return b""
    data: bytes = _char_array(length).from_address(address).raw
    return data


def _read_cstring(address: int) -> bytes:
    """The NUL-terminated string at ``address`` (not NULL)."""
    data: bytes = _ffi.string(_ffi.cast(_CHAR_P, address))
    return data


_RELEASE_ARRAY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class Registration(NamedTuple):
    """One validated registration, read once at load time (immutable; a
    NamedTuple because it is built for every registration of every load).

    :ivar type_name: the implementation type (``"English"``).
    :ivar address: the ``PluginRegistration *``.
    :ivar instance: the instance pointer passed to every method.
    :ivar methods: method name -> function address, in vtable order.
    :ivar free_memory: address of the plugin's release function.
    """

    type_name: str
    address: int
    instance: int
    methods: dict[str, int]
    free_memory: int
    trait_version: int
    vtable_size: int


def _new_registration(fields: tuple[str, int, int, dict[str, int], int, int, int]) -> Registration:
    """``Registration(*fields)`` without the generated ``__new__``'s Python frame (the load path makes many)."""
    return tuple.__new__(Registration, fields)


def find_maker_types(library: Library, trait: TraitSpec) -> list[str]:
    """Implementation types of ``trait`` whose makers the library exports."""
    return maker_types(library.exported_symbols(), trait)


def maker_types(names: Sequence[str], trait: TraitSpec) -> list[str]:
    """The implementation types of ``trait`` whose makers are among ``names``, in their order
    (the rule ``ph_elf_makers`` in host/speedups/exports.c follows)."""
    types = []
    for name in names:
        parsed = parse_symbol(name)
        if (
            parsed is not None
            and parsed.role is SymbolRole.MAKER
            and parsed.trait == trait.name
            and parsed.abi == ABI_VERSION
            and parsed.type_name is not None
        ):
            types.append(parsed.type_name)
    return types


@functools.cache
def _host_descriptor(trait: TraitSpec) -> tuple[bytes, DescriptorCheck]:
    """This host's descriptor of ``trait`` in C layout, and the verdict for an identical one."""
    expected = AbiDescriptor.for_trait(trait)
    return expected.to_bytes(), check_descriptor(expected, expected, trait)


def verify_descriptor(library: Library, trait: TraitSpec) -> DescriptorCheck | None:
    """Check the plugin's ABI descriptor of ``trait`` against the host's declaration.

    Reads data only: no plugin function is called.

    **Safety**: a descriptor's sizes are checked for plausibility before the
    fingerprints after its head are read; the library must stay loaded.

    :returns: the verdict, or ``None`` when the library exports no descriptor.
    :raises AbiMismatchError: naming the file, the trait and every breaking
        difference (the first one in ``field``/``expected``/``found``).
    """
    symbol = abi_descriptor_symbol(trait)
    address = library.find_symbol(symbol)
    if address is None:
        return None
    expected_bytes, identical = _host_descriptor(trait)
    # Fast path, the common case: byte for byte what this host would build.
    # The head (whose size every descriptor has) says how much more to read.
    head = _read_bytes(address, DESCRIPTOR_HEAD_SIZE)
    if head == expected_bytes[:DESCRIPTOR_HEAD_SIZE] and (_read_bytes(address, len(expected_bytes)) == expected_bytes):
        return identical
    try:
        found = AbiDescriptor.from_address(address)
    except ValueError as e:
        raise AbiMismatchError(
            library.path, symbol, "descriptor", "a consistent descriptor", str(e), trait=trait.name
        ) from e
    check = check_descriptor(_host_descriptor(trait)[1].expected, found, trait)
    breaking = check.breaking
    if breaking:
        first = breaking[0]
        notes = [first.note] if first.note else []
        notes += [f"also {d}" for d in breaking[1:]]
        raise AbiMismatchError(
            library.path, symbol, first.field, first.expected, first.found, trait=trait.name, note="; ".join(notes)
        )
    return check


def _read_registration(
    library: Library, trait: TraitSpec, address: int, symbol: str, check: DescriptorCheck | None = None
) -> Registration:
    """Validate one ``PluginRegistration`` against the host's declaration.

    Read with :mod:`struct` from raw bytes (one copy each of the registration
    and the vtable prefix), which is several times cheaper per registration
    than ctypes field access: this runs for every registration of every load.

    :param check: the verdict of :func:`verify_descriptor`; with it, another
        trait version is accepted per the compatibility rule and only the
        methods both sides know are read; without it, versions must be equal.
    """
    path = library.path
    (
        struct_size,
        abi_version,
        trait_name_ptr,
        trait_version,
        reg_vtable_size,
        type_name_ptr,
        instance,
        vtable,
        free_memory,
    ) = _REGISTRATION.unpack(_read_bytes(address, _REGISTRATION.size))
    if struct_size < _REGISTRATION_SIZE:
        raise AbiMismatchError(path, symbol, "struct_size", f">= {_REGISTRATION_SIZE}", struct_size)
    if abi_version != ABI_VERSION:
        raise AbiMismatchError(path, symbol, "abi_version", ABI_VERSION, abi_version)
    trait_name = _read_cstring(trait_name_ptr) if trait_name_ptr else b""
    if trait_name != _plan(trait).name:
        raise AbiMismatchError(path, symbol, "trait_name", trait.name, trait_name.decode(errors="replace"))
    if check is None:
        usable = len(trait.methods)
        if trait_version != trait.version:
            raise AbiMismatchError(
                path,
                symbol,
                "trait_version",
                trait.version,
                trait_version,
                note="no ABI descriptor to prove another version compatible",
            )
    else:
        usable = check.usable_methods
        if trait_version != check.found.trait_version:
            raise AbiMismatchError(
                path,
                symbol,
                "trait_version",
                check.found.trait_version,
                trait_version,
                note=f"the registration disagrees with {abi_descriptor_symbol(trait)}",
            )
        if reg_vtable_size != check.found.vtable_size:
            raise AbiMismatchError(
                path,
                symbol,
                "vtable_size",
                check.found.vtable_size,
                reg_vtable_size,
                note=f"the registration disagrees with {abi_descriptor_symbol(trait)}",
            )
    needed = _POINTER_SIZE * (1 + usable)  # size_t size, then one pointer per method
    if reg_vtable_size < needed or not vtable:
        raise AbiMismatchError(path, symbol, "vtable_size", f">= {needed}", reg_vtable_size)
    vtable_size, *pointers = struct.unpack(f"@N{usable}P", _read_bytes(vtable, needed))
    if vtable_size != reg_vtable_size:
        raise AbiMismatchError(path, symbol, "vtable.size", reg_vtable_size, vtable_size)
    methods: dict[str, int] = {}
    # zip stops at `usable`: a newer host's later methods are absent from an older plugin.
    for m, fn in zip(trait.methods, pointers, strict=False):
        if not fn:
            raise AbiMismatchError(path, symbol, f"vtable.{m.name}", "a function", "NULL")
        methods[m.name] = fn
    if not free_memory:
        raise AbiMismatchError(path, symbol, "free_memory", "a function", "NULL")
    if not type_name_ptr:
        raise AbiMismatchError(path, symbol, "type_name", "a name", "NULL")
    return Registration(
        type_name=_read_cstring(type_name_ptr).decode(errors="replace"),
        address=address,
        instance=instance or 0,
        methods=methods,
        free_memory=free_memory,
        trait_version=trait_version,
        vtable_size=reg_vtable_size,
    )


class _Plan(NamedTuple):
    """What the C load path of one trait needs, computed once per trait."""

    descriptor: str
    expected: bytes  # this host's descriptor, byte for byte
    identical: DescriptorCheck  # the verdict for a plugin whose descriptor is identical
    name: bytes
    method_names: tuple[str, ...]
    #: ph_open_register's symbols: aggregate, descriptor, release, counter, each NUL-terminated.
    symbols: bytes


@functools.cache
def _plan(trait: TraitSpec) -> _Plan:
    expected, identical = _host_descriptor(trait)
    names = (register_all_symbol(trait), abi_descriptor_symbol(trait), unregister_all_symbol(trait))
    return _Plan(
        abi_descriptor_symbol(trait),
        expected,
        identical,
        trait.name.encode(),
        tuple(m.name for m in trait.methods),
        b"".join(name.encode() + b"\0" for name in (*names, unmaker_counter_symbol(trait))),
    )


class RegistrationSet:
    """The registrations of one trait made from one library, and their release.

    Create with :meth:`from_aggregate` (plugin-owned) or :meth:`from_makers`
    (host-owned); release exactly once with :meth:`release`.

    **Safety**: the registrations and their instances die in :meth:`release`;
    :attr:`gate` makes the release wait for calls in flight and refuse new ones.

    **Thread-safety**: proxies may call through :attr:`gate` from any thread;
    :meth:`release` is meant to run on the thread that owns the manager.
    """

    # Class-level defaults: an instance stores only what differs (every load makes sets).
    #: Made on first use (:attr:`gate`), in the instance's dictionary; this is the "not yet".
    _gate: CallGate | None = None
    #: The registrations once decoded (:attr:`registrations`); this is the "not yet".
    _registrations: list[Registration] | None = None
    #: What the C load made, decoded into :attr:`registrations` on first use (most loads never ask).
    _records: _accel.Opened | None = None
    #: The plugin-side objects (Handle results) made through this set's proxies: destroyed before the release.
    #: Made on the first object: most sets never hand one out.
    objects: weakref.WeakSet[Any] | None = None
    _host_array: ctypes.Array[ctypes.c_void_p] | None = None
    _unmakers: Sequence[int] = ()
    #: plugin_unregister_all's and the unmaker counter's addresses, when the load looked them up
    #: (the C open-and-register); 0: look them up at release.
    _release_fn = 0
    _counter_fn = 0
    _released = False
    #: The trait's unmaker counter read right after :meth:`release` (``None`` before, or if not exported).
    final_counter: int | None = None

    def __init__(
        self,
        library: Library,
        trait: TraitSpec,
        registrations: list[Registration] | None,
        *,
        array: int | None,
        host_array: ctypes.Array[ctypes.c_void_p] | None = None,
    ) -> None:
        self.library = library
        self.trait = trait
        self._array = array
        if registrations is not None:
            self._registrations = registrations
        if host_array is not None:
            self._host_array = host_array
        library.live_sets += 1

    @property
    def registrations(self) -> list[Registration]:
        """The validated registrations, in array order."""
        regs = self._registrations
        if regs is None:
            decoded = self._decode()
            # setdefault is atomic: racing threads end with one list.
            regs = self.__dict__.setdefault("_registrations", decoded)
        return regs

    @registrations.setter
    def registrations(self, value: list[Registration]) -> None:
        self._registrations = value

    def _decode(self) -> list[Registration]:
        """:attr:`registrations` from the C load's records (checked there already)."""
        if self._records is None:
            return []
        names = _plan(self.trait).method_names
        return [
            _new_registration(  # fields in Registration's order
                (
                    type_name.decode(errors="replace"),
                    reg,
                    instance,
                    dict(zip(names, methods, strict=True)),
                    free_memory,
                    trait_version,
                    vtable_size,
                )
            )
            for (reg, instance, free_memory, trait_version, vtable_size, *methods), type_name in _accel.decode_records(
                self._records
            )
        ]

    @property
    def gate(self) -> CallGate:
        """The gate every call into these registrations goes through (made on first use).

        A set nobody asked for a gate has had no call through one, so its
        release has none to wait for (or to be inside of).  Made and released
        at once, it is the release that wins: the gate is stored before the set's
        release mark is read here, and :meth:`release` sets the mark before it
        reads the gate, so one of the two sees the other and the gate is closed.
        """
        gate = self._gate
        if gate is None:
            # setdefault is atomic (no bytecode runs inside it): one gate per set, whoever made it.
            gate = self.__dict__.setdefault("_gate", CallGate())
            if self._released:  # made while, or after, the release began: no call may pass
                gate.close(self.library.path, self.symbol)
        return gate

    @property
    def is_plugin_owned(self) -> bool:
        """Whether the plugin allocated the array (``factories != NULL``)."""
        return self._array is not None

    @property
    def is_released(self) -> bool:
        """Whether :meth:`release` has run."""
        return self._released

    @property
    def symbol(self) -> str:
        """The symbol that produced the set (aggregate, or the trait's maker pattern)."""
        if self.is_plugin_owned:
            return register_all_symbol(self.trait)
        return maker_symbol(self.trait, "*")

    # ---- creation ---------------------------------------------------------

    @classmethod
    def from_aggregate(cls, library: Library, trait: TraitSpec, function: int | None = None) -> RegistrationSet:
        """Call ``plugin_register_all_<T>_v1`` and validate the plugin-owned array.

        :param function: the aggregate's address, when the caller looked it up already.

        :raises MakerReturnedNullError: the aggregate returned NULL.
        :raises InconsistentArrayError: the array is malformed; it is *not*
            released (calling into a corrupt array could crash the host).
        :raises AbiMismatchError: the ABI descriptor does not match (checked
            before the aggregate runs: nothing is made), or a registration does
            not match the host's declaration (the whole array is released first).
        """
        symbol = register_all_symbol(trait)
        if function is None:
            function = library.symbol(symbol)
        if _accel.enabled():
            made = cls._from_aggregate_in_c(library, trait, function)
            if made is not None:
                return made
        check = verify_descriptor(library, trait)  # before the first call into the plugin
        return cls._from_array(library, trait, _ARRAY_FN(function)(), check)

    @classmethod
    def _from_aggregate_in_c(cls, library: Library, trait: TraitSpec, function: int) -> RegistrationSet | None:
        """:meth:`from_aggregate` with the checks in C (:mod:`._accel`), for a plugin whose
        descriptor is byte for byte this host's; ``None`` (nothing called) for any other."""
        plan = _plan(trait)
        host = plan.identical.found  # what the plugin's descriptor says, when it is byte for byte the host's
        result = _accel.register_all(
            library.find_symbol(plan.descriptor),
            plan.expected,
            function,
            MAX_REGISTRATIONS,
            plan.name,
            host.trait_version,
            host.vtable_size,
            len(plan.method_names),
        )
        if result is None:
            return None  # no descriptor, or another one: verify_descriptor decides
        address, records = result
        if records is None:  # a check failed: the Python checks name it
            return cls._from_array(library, trait, address, plan.identical)
        names = plan.method_names
        return cls(
            library,
            trait,
            [
                _new_registration(  # fields in Registration's order
                    (
                        type_name.decode(errors="replace"),
                        reg,
                        instance,
                        dict(zip(names, methods, strict=True)),
                        free_memory,
                        trait_version,
                        vtable_size,
                    )
                )
                for (reg, instance, free_memory, trait_version, vtable_size, *methods), type_name in records
            ],
            array=address,
        )

    @classmethod
    def _from_array(
        cls, library: Library, trait: TraitSpec, address: int | None, check: DescriptorCheck | None
    ) -> RegistrationSet:
        """Validate the array the aggregate returned (the checks in Python)."""
        symbol = register_all_symbol(trait)
        if not address:
            raise MakerReturnedNullError(library.path, symbol)
        regs_ptr, length, factories_ptr = _ARRAY.unpack(_read_bytes(address, _ARRAY.size))
        if length > MAX_REGISTRATIONS:
            raise InconsistentArrayError(library.path, symbol, f"len {length} exceeds {MAX_REGISTRATIONS}")
        if not factories_ptr:
            raise InconsistentArrayError(
                library.path, symbol, "factories is NULL: an aggregate must return a plugin-owned array"
            )
        if length and not regs_ptr:
            raise InconsistentArrayError(library.path, symbol, f"len is {length} but registrations is NULL")
        entries = struct.unpack(f"@{length}P", _read_bytes(regs_ptr, _POINTER_SIZE * length)) if length else ()
        factories = struct.unpack(f"@{2 * length}P", _read_bytes(factories_ptr, 2 * _POINTER_SIZE * length))
        seen: dict[int, int] = {}
        for i, entry in enumerate(entries):
            if not entry:
                raise InconsistentArrayError(library.path, symbol, f"registrations[{i}] is NULL")
            first = seen.setdefault(entry, i)
            if first != i:  # releasing it would run its unmaker twice: a double free
                msg = f"registrations[{i}] is registrations[{first}] again ({entry:#x})"
                raise InconsistentArrayError(library.path, symbol, msg)
            if not factories[2 * i] or not factories[2 * i + 1]:
                raise InconsistentArrayError(library.path, symbol, f"factories[{i}] has a NULL maker or unmaker")
        made = cls(library, trait, [], array=address)
        try:
            made.registrations = [_read_registration(library, trait, entry, symbol, check) for entry in entries]
        except BaseException:
            made.release()
            raise
        return made

    @classmethod
    def from_makers(cls, library: Library, trait: TraitSpec, type_names: list[str]) -> RegistrationSet:
        """Call each ``plugin_register_<T>_<Ty>_v1`` and keep a host-owned array.

        Every unmaker is looked up before any maker runs, so a missing unmaker
        never leaves a registration that cannot be released.

        :raises SymbolNotFoundError: a maker or unmaker is not exported.
        :raises AbiMismatchError: the ABI descriptor (checked before any
            maker runs) or a registration does not match the host's declaration.
        :raises MakerReturnedNullError: a maker returned NULL (the ones already
            made are released first).
        """
        check = verify_descriptor(library, trait)
        return cls._make(library, trait, type_names, check, ())

    @classmethod
    def _make(
        cls,
        library: Library,
        trait: TraitSpec,
        type_names: Sequence[str],
        check: DescriptorCheck | None,
        made_in_c: Sequence[int],
    ) -> RegistrationSet:
        """:meth:`from_makers` after the descriptor check; the first makers' registrations may have
        been made already (``made_in_c``: what they returned, in order), and are checked here as
        if they had just been made."""
        pairs = [
            (
                t,
                library.symbol(maker_symbol(trait, t)),
                library.symbol(unmaker_symbol(trait, t), "every maker needs its unmaker"),
            )
            for t in type_names
        ]
        host_array = (ctypes.c_void_p * max(len(pairs), 1))()
        made = cls(library, trait, [], array=None, host_array=host_array)
        made._unmakers = [u for _, _, u in pairs]
        try:
            for i, (type_name, maker, _) in enumerate(pairs):
                reg = made_in_c[i] if i < len(made_in_c) else MAKER_FN(maker)()
                if not reg:
                    raise MakerReturnedNullError(library.path, maker_symbol(trait, type_name))
                if reg in host_array[:i]:  # two makers, one registration: its release would free it twice
                    other = pairs[list(host_array[:i]).index(reg)][0]
                    msg = (
                        f"{maker_symbol(trait, type_name)} returned the registration {maker_symbol(trait, other)} made"
                    )
                    raise InconsistentArrayError(library.path, maker_symbol(trait, type_name), msg)
                host_array[i] = reg
                made.registrations.append(
                    _read_registration(library, trait, reg, maker_symbol(trait, type_name), check)
                )
        except BaseException:
            made.release()
            raise
        return made

    @classmethod
    def _from_opened_makers(cls, library: Library, trait: TraitSpec, opened: _accel.Opened) -> RegistrationSet:
        """The host-owned set :func:`~plugin_host.loading._accel.open_register_paths` made and checked
        (:data:`~plugin_host.loading._accel.MAKERS_PASS`): what :meth:`from_makers` would have made."""
        hosted = opened.hosted
        assert hosted is not None
        made = cls.__new__(cls)  # __init__'s work without its call (a directory load makes one set per file)
        made.library = library
        made.trait = trait
        made._array = None
        made._records = opened
        made._host_array = (ctypes.c_void_p * max(len(hosted.made), 1))(*hosted.made)
        made._unmakers = hosted.unmakers
        library.live_sets += 1
        return made

    @classmethod
    def _from_partial(cls, library: Library, trait: TraitSpec, opened: _accel.Opened) -> RegistrationSet:
        """:meth:`from_makers` where C stopped (:data:`~plugin_host.loading._accel.MAKERS_PARTIAL`):
        the registrations C made are checked again in Python, which raises the typed error (or
        makes the rest, when C had only run out of room)."""
        hosted = opened.hosted
        assert hosted is not None
        return cls._make(library, trait, hosted.type_names, _plan(trait).identical, hosted.made)

    # ---- release ----------------------------------------------------------

    def release(self, *, close: bool = False) -> None:
        """Release every registration exactly once, per the ownership rules.

        Waits for the calls inside the plugin through this set's proxies, and
        refuses new ones (they raise :class:`PluginUnloadedError`).

        :param close: then close the library if this was its last live set (a
            manager's unload: one call into C for the release, the counter and
            the close, when the load looked up the plugin's release).
        :raises AlreadyReleasedError: on a second call (nothing is freed twice).
        :raises ReleaseInsideCallError: called from inside a call through this
            set's proxies (a signal handler, a C callback); nothing is released.
        """
        if self._released:
            raise AlreadyReleasedError(self.library.path, self.symbol)
        self._released = True  # first: a release nested in the wait (a signal handler) is refused
        gate = self._gate  # after the mark: see gate
        if gate is not None or self.objects:
            try:
                for obj in list(self.objects or ()):  # while the gate is open: each is destroyed through it, once
                    obj.close()
                if gate is not None:
                    gate.close(self.library.path, self.symbol)
            except BaseException:
                self._released = False  # nothing was released: a later release may finish the job
                raise
        library = self.library
        if self._release_fn:  # plugin-owned, its release and counter looked up at load
            try:
                self.final_counter = library.call_release(
                    self._release_fn, self._array or 0, self._counter_fn, close=close and library.live_sets == 1
                )
            finally:
                library.release_handle()
            return
        try:
            if self._array is not None:
                self._release_plugin_owned(self._array)
            else:
                self._release_host_owned()
        finally:
            # Read now: releasing the last set may close a library the manager asked to close.
            self.final_counter = library.get_unmaker_counter_or_none(self.trait.name)
            library.release_handle()
        if close and library.live_sets == 0:
            library.close()

    @property
    def closes_at_once(self) -> bool:
        """Whether :meth:`release_and_close_all` takes this set, and its release has nothing to wait
        for: not released, the last live set of its open library, a plugin-owned array whose
        release the load looked up, and no gate nor object made through it (so no call can be in
        flight, nor this thread inside one)."""
        library = self.library
        return (
            self._release_fn != 0
            and not self._released
            and self._gate is None
            and not self.objects
            and library.live_sets == 1
            and library.is_open
        )

    @staticmethod
    def release_and_close_all(sets: Sequence[RegistrationSet]) -> None:
        """:meth:`release` each set with ``close``, in turn: one call into C for them all
        (:meth:`~plugin_host.loading.Library.call_release_all`).  Every set must be
        :attr:`closes_at_once`.

        **Thread-safety**: another thread may make a set's gate meanwhile (a proxy): as in
        :meth:`release`, the sets are marked released before their gates are looked at again,
        and a gate found then is closed, after the calls through it returned.

        :raises ValueError: a set is not (nothing is released).
        :raises OSError: a dlclose failed (every set was released, every library closed).
        """
        calls = []
        for regset in sets:
            if not regset.closes_at_once:
                raise ValueError(f"{regset!r} cannot be released and closed with others")
            calls.append((regset.library, regset._release_fn, regset._array or 0, regset._counter_fn))
        for regset in sets:
            regset._released = True  # first, as release() marks it: see gate
        for regset in sets:
            gate = regset._gate
            if gate is not None or regset.objects:  # made by another thread since it was looked at
                for obj in list(regset.objects or ()):
                    obj.close()
                if gate is not None:  # this thread is inside no call through it: it was not there before
                    gate.close(regset.library.path, regset.symbol)
            regset.library.live_sets = 0  # the last set: what release_handle() leaves
        counts = Library.call_release_all(calls)
        for regset, count in zip(sets, counts, strict=True):
            regset.final_counter = count

    def _release_plugin_owned(self, address: int) -> None:
        release_all = self.library.find_symbol(unregister_all_symbol(self.trait))
        if release_all is not None:
            _RELEASE_ARRAY_FN(release_all)(address)
            return
        # No plugin_unregister_all: unmake each entry through its factory.  The
        # array container itself was allocated by the plugin and cannot be
        # freed by the host's allocator; it is left to the plugin (and
        # `plugin-host abi check` flags an aggregate without its release).
        arr = PluginRegistrationArray.from_address(address)
        for i in range(arr.len):
            UNMAKER_FN(arr.factories[i].unmaker)(arr.registrations[i])

    def _release_host_owned(self) -> None:
        assert self._host_array is not None
        for i, unmaker in enumerate(self._unmakers):
            reg = self._host_array[i]
            if reg:
                UNMAKER_FN(unmaker)(reg)
                self._host_array[i] = None
        self._host_array = None

    @classmethod
    def _from_opened(cls, library: Library, trait: TraitSpec, opened: _accel.Opened) -> RegistrationSet:
        """The set :func:`~plugin_host.loading._accel.open_register_paths` made and checked (``PH_PASS``)."""
        # __init__'s work without its call (a directory load makes one set per file).
        made = cls.__new__(cls)
        made.library = library
        made.trait = trait
        made._array = opened.array
        made._records = opened
        made._release_fn = opened.release
        made._counter_fn = opened.counter
        library.live_sets += 1
        return made

    def __repr__(self) -> str:
        owner = "plugin-owned" if self.is_plugin_owned else "host-owned"
        types = ", ".join(r.type_name for r in self.registrations)
        return f"<RegistrationSet {self.trait.name} [{types}] {owner} from {self.library.path}>"
