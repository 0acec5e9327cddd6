"""Typed proxies: Python objects whose methods call a registration's vtable.

A proxy class is generated once per trait from its declaration: one Python
method per vtable entry, with the trait's parameter names, converting
arguments as the type markers say.  Calls go through cffi function pointers
(cheaper than ctypes' per-call argument conversion) and through the
registration set's :class:`~plugin_host.loading.CallGate` (whose
:meth:`~plugin_host.loading.CallGate.guarded_source` writes the enter and
leave code), so a release waits for the calls inside the plugin and later
calls raise :class:`PluginUnloadedError`.

Ownership at the call boundary:

- ``CStr`` arguments are encoded to UTF-8 bytes that live for the call only.
- ``Buffer``/``MutBuffer`` arguments are passed without copying (the C side
  sees the caller's memory, and must not keep the pointer).
- ``Array[T]``/``MutArray[T]`` arguments are any C-contiguous buffer of ``T``
  items (numpy arrays, ``array.array``, ``memoryview``), passed without copying
  after their item format and size are checked (:class:`CallArgumentError`
  otherwise); ``MutArray`` must be writable.
- ``Out[T]`` parameters are not passed: the proxy allocates them for the call
  (zeroed) and returns them after the result (alone when the method returns
  nothing); an ``Out[Point]`` comes back as a new ``Point``.
- An ``OwnedStr`` or ``OwnedBytes`` result is copied into a Python ``str`` or
  ``bytes`` and released at once with the registration's ``free_memory`` (the
  plugin's own allocator).  A NULL string raises :class:`PluginCallError`.
- A ``Callback[[A...], R]`` argument is a Python callable the plugin may call
  during the call (through one compiled trampoline per signature and a
  context that is valid for the call only: a late call gets the zero of R).
  An exception it raises does not unwind through C: it is kept, the plugin
  sees R's zero, and it is raised again once the plugin returns; so is a
  result R's C type refuses, as a :class:`CallArgumentError`.
- A ``Handle["Session"]`` result is wrapped in a :class:`PluginObject`; the
  trait's ``Drop["Session"]`` method destroys it exactly once: from
  ``close()`` (or ``with``), from its finalizer, or -- first -- when the
  registrations are released, so an object never outlives the code it
  points into (used after that, it raises :class:`PluginUnloadedError`).
- A ``Status`` result: zero is success; anything else raises
  :class:`PluginMethodError` with the message the plugin left in its last
  ``char **error`` parameter (released with ``free_memory`` either way).

Every bad argument is a :class:`CallArgumentError` naming the file, the
method and the parameter, chained from what refused the value: an
:class:`~plugin_interface.ArgumentOverflowError` (also an ``OverflowError``)
for a value out of range, an :class:`~plugin_interface.ArgumentBufferError`
(also a ``BufferError``) for a buffer read-only where it is written or not
C-contiguous.  The values the call's line converts (strings, buffers, and the
scalars cffi converts in the call) are converted once, inside a ``try`` that
costs nothing until it catches; :func:`_call_refused` then finds the one
refused (:func:`plugin_host.loading._arguments.refusal`).

Two paths make the calls, with the same results and errors: the compiled
call engine (:mod:`._compiled`, for every method whose types it can do, when
it is built) and the generated Python methods here, which are also what the
engine hands whatever it does not convert itself.  The Python methods call
``_cffi_backend`` directly with their C types resolved once, and bind the
helpers they use in closures.
"""

from __future__ import annotations

import array
import ctypes
import functools
import operator
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

import _cffi_backend
import cffi
from plugin_interface import (
    RESERVED_METHOD_NAMES,
    ArgumentBufferError,
    CallArgumentError,
    CType,
    MethodNotProvidedError,
    MethodSpec,
    PluginCallError,
    PluginMethodError,
    PluginUnloadedError,
    StructSpec,
    TraitSpec,
    TypeKind,
)

from ..loading import CallGate
from ..loading._arguments import CONVERSION_ERRORS, refusal, short_repr
from ._compiled import compiled_proxy_class
from ._registrations import Registration, RegistrationSet

__all__ = ["PluginObject", "TraitProxy", "make_proxy", "proxy_class"]

_ffi = cffi.FFI()
_ffi.cdef("typedef struct { uint8_t *data; size_t len; } PluginBytes;")  # plugin_interface.h (layout-tested)
_FREE_TYPE = _ffi.typeof("void(*)(void *)")
_VOID_P = _ffi.typeof("void *")
_BYTES_ARRAY = _ffi.typeof("uint8_t[]")
_ERROR_P = _ffi.typeof("char **")


@functools.cache
def _method_types(trait: TraitSpec) -> tuple[Any, ...]:
    """The cffi function-pointer types of a trait's methods, parsed once."""
    ffi = _ffi_for(trait)
    return tuple(ffi.typeof(m.cffi_type) for m in trait.methods)


@functools.cache
def _ffi_for(trait: TraitSpec) -> Any:
    """The FFI that knows the trait's structs (its own: two traits may use two layouts of one name)."""
    structs: list[Any] = []
    for m in trait.methods:
        for ctype in (m.returns, *(p.ctype for p in m.params)):
            if ctype.struct is not None:
                structs += [s for s in ctype.struct.nested() if s not in structs]
    if not structs:
        return _ffi
    ffi = cffi.FFI()
    ffi.cdef("typedef struct { uint8_t *data; size_t len; } PluginBytes;")
    ffi.cdef("\n".join(s.cdef() for s in structs))
    return ffi


def _fields(proxy: TraitProxy, method: str, name: str, value: object, spec: Any) -> dict[str, Any]:
    """``value`` (an object with the struct's fields as attributes, or a dict) as cffi initialiser data."""
    declared = getattr(type(value), "__plugin_struct__", None)
    if declared is not None and declared != spec:
        raise proxy._bad_argument(method, f"{name}: a {declared.name} where a {spec.name} is expected")
    out: dict[str, Any] = {}
    for f in spec.fields:
        try:
            item = value[f.name] if isinstance(value, dict) else getattr(value, f.name)
        except (KeyError, AttributeError) as e:
            raise proxy._bad_argument(method, f"{name}: {spec.name} needs field {f.name!r}") from e
        nested = f.type if hasattr(f.type, "fields") else None
        if f.count > 1:
            try:
                items = list(item)
            except TypeError as e:
                detail = f"{name}.{f.name}: a sequence of {f.count} items expected, got {type(item).__name__}"
                raise proxy._refused(method, detail, e) from e
            if len(items) != f.count:
                raise proxy._bad_argument(method, f"{name}.{f.name}: {f.count} items expected, got {len(items)}")
            out[f.name] = [_fields(proxy, method, f"{name}.{f.name}", i, nested) for i in items] if nested else items
        else:
            out[f.name] = _fields(proxy, method, f"{name}.{f.name}", item, nested) if nested else item
    return out


def _to_struct(proxy: TraitProxy, method: str, name: str, value: object, ctype: CType, ffi: Any) -> Any:
    """``value`` as a new C struct (a cffi pointer to it) for one call.

    :raises CallArgumentError: a field missing, or a field value its C type cannot take (the
        error names the field: ``frame.origin.x``); an :class:`ArgumentOverflowError` for one out
        of range.
    """
    spec = ctype.struct
    data = _fields(proxy, method, name, value, spec)  # raises its own typed errors
    try:
        return ffi.new(f"{spec.name} *", data)
    except CONVERSION_ERRORS as e:
        found = _field_refusal(data, spec, name)
        if found is None:  # not a field's value: say what cffi said
            raise proxy._refused(method, f"{name}: {e}", e) from e
        where, field_type, item, refused = found
        raise proxy._refused(method, _cannot_take(where, field_type, item, refused), refused) from e


def _field_refusal(data: dict[str, Any], spec: Any, name: str) -> tuple[str, CType, object, Exception] | None:
    """The first scalar field of ``data`` (what :func:`_fields` made) its C type refuses:
    ``(where, type, value, refusal)``, with ``where`` spelled ``frame.weights[1]``; ``None`` if none is."""
    for f in spec.fields:
        value = data[f.name]
        items = list(enumerate(value)) if f.count > 1 else [(None, value)]
        for index, item in items:
            where = f"{name}.{f.name}" if index is None else f"{name}.{f.name}[{index}]"
            if hasattr(f.type, "fields"):
                found = _field_refusal(item, f.type, where)
                if found is not None:
                    return found
                continue
            refused = refusal(f.type.cffi[0], item)
            if refused is not None:
                return where, f.type, item, refused
    return None


def _cannot_take(name: str, ctype: CType, value: object, refused: BaseException) -> str:
    """The detail of a scalar value its C type refused: ``x: U8 (uint8_t) cannot take 300: ...``."""
    return f"{name}: {ctype.name} ({ctype.cffi[0]}) cannot take {short_repr(value)}: {refused}"


def _call_refused(proxy: TraitProxy, method: str, values: tuple[Any, ...], error: BaseException) -> None:
    """After a call refused its arguments with ``error``: raise the typed error naming the one refused.

    Only ``CStr``, ``Buffer``, ``MutBuffer`` and scalar arguments are converted in the call's line
    (the others were converted, or refused, before it): the strings encoded and the buffers taken
    first, in order, as the call's arguments are evaluated, then cffi converts the scalars in
    order; the same order is followed here.  Returns when none of them is refused (``error`` was
    not about an argument: the caller raises it as it is).

    :param values: the call's arguments, in the method's order (without the ``Out`` parameters).
    :raises CallArgumentError: naming the parameter (an :class:`ArgumentOverflowError` for a value
        out of range), chained from ``error``.
    """
    params = [p for p in proxy.trait.method(method).params if p.ctype.kind is not TypeKind.OUT]
    named = list(zip(params, values, strict=True))
    for p, value in named:
        if p.ctype.kind in (TypeKind.BUFFER, TypeKind.MUTBUFFER):
            try:
                _cffi_backend.from_buffer(_BYTES_ARRAY, value, p.ctype.kind is TypeKind.MUTBUFFER)
            except CONVERSION_ERRORS as e:
                raise _buffer_refused(proxy, method, p.name, value, p.ctype, e) from error
            continue
        if p.ctype.kind is not TypeKind.CSTR:
            continue
        if not isinstance(value, str):
            raise proxy._refused(method, f"{p.name}: CStr takes a str, not {type(value).__name__}", error) from error
        try:
            value.encode()
        except UnicodeEncodeError as e:  # a lone surrogate
            raise proxy._refused(method, f"{p.name}: CStr {short_repr(value)} has no UTF-8 form: {e}", e) from error
    for p, value in named:
        if p.ctype.kind is TypeKind.SCALAR:
            refused = refusal(p.ctype.cffi[0], value)
            if refused is not None:
                raise proxy._refused(method, _cannot_take(p.name, p.ctype, value, refused), refused) from error


#: The kinds of the arguments converted in a proxy method's call line (the others before it).
_CHECKED_IN_THE_CALL = (TypeKind.CSTR, TypeKind.BUFFER, TypeKind.MUTBUFFER, TypeKind.SCALAR)


def _buffer_refused(
    proxy: TraitProxy, method: str, name: str, value: object, ctype: CType, error: BaseException
) -> CallArgumentError:
    """The typed error of a ``Buffer``/``MutBuffer`` argument cffi refused with ``error`` (raise it ``from error``)."""
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except CONVERSION_ERRORS:
        detail = f"{name}: {ctype.name} takes a bytes-like object, not {type(value).__name__}"
        return proxy._refused(method, detail, error)
    with view:
        if ctype.kind is TypeKind.MUTBUFFER and view.readonly:
            return proxy._bad_buffer(method, f"{name}: the buffer is read-only, {ctype.name} is written to")
        if not view.c_contiguous:
            return proxy._bad_buffer(method, f"{name}: the buffer is not C-contiguous ({ctype.name})")
    return proxy._refused(method, f"{name}: {ctype.name} cannot take a {type(value).__name__}: {error}", error)


#: The most argument types one struct parameter remembers how to read (a bound, not a tuning knob).
_MAX_STRUCT_READERS = 32


def _struct_converter(ctype: CType, ffi: Any, method: str, name: str) -> Callable[[TraitProxy, object], Any]:
    """:func:`_to_struct` for parameter ``name`` of ``method``, with what it needs looked up once (at proxy build time).

    What it returns is what the call passes: a struct by value, or a pointer for ``Ref``/``MutRef``.
    A struct of scalar fields is read in one step, its fields as a tuple (``attrgetter``, or
    ``itemgetter`` for a dict).  By value, a tuple whose items have their exact Python type and fit
    their C type (one generated expression checks that) is passed as it is: cffi builds the struct
    in the call's own argument space, without an allocation.  Anything else, and any value that
    does not convert, goes through :func:`_to_struct`, which says what is wrong; a struct with
    nested structs or fixed arrays always does.
    """
    spec = ctype.struct
    by_value = ctype.kind is TypeKind.STRUCT

    def convert_slowly(proxy: TraitProxy, value: object) -> Any:
        pointer = _to_struct(proxy, method, name, value, ctype, ffi)
        return pointer[0] if by_value else pointer  # [0] of a new struct pointer owns the memory

    if any(f.count != 1 or isinstance(f.type, StructSpec) for f in spec.fields):
        return convert_slowly
    names = [f.name for f in spec.fields]
    by_attribute: Callable[[object], tuple[Any, ...]]
    by_key: Callable[[Any], tuple[Any, ...]]
    if len(names) == 1:  # attrgetter of one name gives the value, not a 1-tuple
        one_attribute, one_key = operator.attrgetter(names[0]), operator.itemgetter(names[0])
        by_attribute, by_key = (lambda v: (one_attribute(v),)), (lambda v: (one_key(v),))
    else:
        by_attribute, by_key = operator.attrgetter(*names), operator.itemgetter(*names)
    readers: dict[type, Callable[[Any], tuple[Any, ...]] | None] = {dict: by_key}
    pointer_type = ffi.typeof(f"{spec.name} *")
    new = ffi.new
    fits = _fits(spec)

    def convert(proxy: TraitProxy, value: object) -> Any:
        kind = type(value)
        try:
            read = readers[kind]
        except KeyError:
            declared = getattr(kind, "__plugin_struct__", None)
            read = by_attribute if declared is None or declared == spec else None  # another struct: refused
            if len(readers) < _MAX_STRUCT_READERS:
                readers[kind] = read
        if read is not None:
            try:
                values = read(value)
                if by_value and fits(values):
                    return values
                return new(pointer_type, values)[0] if by_value else new(pointer_type, values)
            except (AttributeError, KeyError, TypeError, OverflowError, ValueError):
                pass  # the slow path names the field and the problem
        return convert_slowly(proxy, value)

    return convert


def _fits(spec: StructSpec) -> Callable[[tuple[Any, ...]], bool]:
    """A function telling whether a tuple of ``spec``'s scalar fields converts as it is: each item
    a ``float`` for a float field, a ``bool`` for ``Bool``, an ``int`` in range for an integer
    (anything else may still convert, through ``ffi.new``, which checks it)."""
    tests = []
    for i, f in enumerate(spec.fields):
        assert isinstance(f.type, CType)
        if f.type.python_type is float:
            tests.append(f"type(v[{i}]) is float")
        elif f.type.python_type is bool:
            tests.append(f"type(v[{i}]) is bool")
        else:
            bits = 8 * ctypes.sizeof(f.type.ctypes_types[0])
            signed = f.type.name.startswith("I")
            low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            tests.append(f"type(v[{i}]) is int and {low} <= v[{i}] <= {high}")
    namespace: dict[str, Any] = {}
    exec(f"def fits(v):\n    return {' and '.join(tests)}\n", namespace)  # one expression, no loop
    fits: Callable[[tuple[Any, ...]], bool] = namespace["fits"]
    return fits


def _from_struct(data: Any, spec: Any) -> Any:
    """A C struct (cffi) as a new Python object of the struct's class (a namespace for one only the plugin declares)."""
    values: dict[str, Any] = {}
    for f in spec.fields:
        raw = getattr(data, f.name)
        nested = f.type if hasattr(f.type, "fields") else None
        if f.count > 1:
            values[f.name] = [_from_struct(x, nested) for x in raw] if nested else list(raw)
        else:
            values[f.name] = _from_struct(raw, nested) if nested else raw
    cls = spec.python_class
    return cls(**values) if cls is not None else types.SimpleNamespace(**values)


def _copy_back(target: object, data: Any, spec: Any) -> None:
    """After a ``MutRef`` call: the plugin's writes into ``target`` (attributes, or a dict's items)."""
    fresh = _from_struct(data, spec)
    for f in spec.fields:
        value = getattr(fresh, f.name)
        if isinstance(target, dict):
            target[f.name] = value
        else:
            setattr(target, f.name, value)


class TraitProxy:
    """Base of every generated proxy class.

    :ivar type_name: the implementation type (``"English"``).
    :ivar trait: the trait's declaration.
    """

    __slots__ = ("__weakref__", "_free", "_gate", "_instance", "_set", "type_name")
    trait: TraitSpec

    def __init__(self, regset: RegistrationSet, reg: Registration) -> None:
        self._set = regset
        self._gate = regset.gate
        self._instance = _ffi.cast(_VOID_P, reg.instance)
        self._free = _ffi.cast(_FREE_TYPE, reg.free_memory)
        self.type_name = reg.type_name
        for m, ctype in zip(self.trait.methods, _method_types(self.trait), strict=True):
            address = reg.methods.get(m.name)
            # An older plugin (an earlier trait version) lacks the host's later methods.
            fn = _ffi.cast(ctype, address) if address is not None else self._not_provided(m.name, len(reg.methods))
            object.__setattr__(self, f"_fn_{m.name}", fn)

    def _not_provided(self, method: str, provided: int) -> Any:
        error = MethodNotProvidedError(
            self.path, f"{self.trait.name}.{self.type_name}.{method}", method, provided, len(self.trait.methods)
        )

        def call(*args: object) -> None:
            raise error

        return call

    def has_method(self, name: str) -> bool:
        """Whether the plugin provides method ``name`` (an older plugin may lack the latest ones)."""
        return isinstance(getattr(self, f"_fn_{name}", None), _ffi.CData)

    @property
    def path(self) -> str:
        """The library file the implementation comes from."""
        return str(self._set.library.path)

    @property
    def is_alive(self) -> bool:
        """Whether calls are still accepted (the registrations are not released)."""
        return self._gate.is_open

    def _unloaded(self, method: str) -> PluginUnloadedError:
        return PluginUnloadedError(self.path, f"{self.trait.name}.{self.type_name}.{method}")

    def _method_failed(self, method: str, code: int, error: Any) -> PluginMethodError:
        """The error of a ``Status`` method that returned ``code``; releases the plugin's message."""
        message = ""
        if error[0] != _ffi.NULL:
            try:
                message = _ffi.string(error[0]).decode("utf-8", "replace")
            finally:
                self._free(error[0])
        return self._method_error(method, code, message)

    def _method_error(self, method: str, code: int, message: str) -> PluginMethodError:
        """The error of a ``Status`` method that returned ``code`` with ``message`` (the engine builds it too)."""
        return PluginMethodError(self.path, f"{self.trait.name}.{self.type_name}.{method}", code, message)

    def _bad_argument(self, method: str, detail: str) -> CallArgumentError:
        m = self.trait.method(method)
        return CallArgumentError(self.path, f"{self.trait.name}.{self.type_name}.{method}", m.signature, detail)

    def _refused(self, method: str, detail: str, original: BaseException) -> CallArgumentError:
        """The error of an argument a conversion refused with ``original`` (raise it ``from`` the original):
        an :class:`ArgumentOverflowError` for an ``OverflowError``, and so on (:meth:`CallArgumentError.refused`)."""
        m = self.trait.method(method)
        symbol = f"{self.trait.name}.{self.type_name}.{method}"
        return CallArgumentError.refused(self.path, symbol, m.signature, detail, original)

    def _bad_buffer(self, method: str, detail: str) -> ArgumentBufferError:
        m = self.trait.method(method)
        return ArgumentBufferError(self.path, f"{self.trait.name}.{self.type_name}.{method}", m.signature, detail)

    def _null_result(self, method: str) -> PluginCallError:
        msg = f"{self.path}: {self.trait.name}.{self.type_name}.{method} returned NULL"
        return PluginCallError(msg, path=self.path, symbol=method)

    def __repr__(self) -> str:
        state = "" if self._gate.is_open else " (unloaded)"
        return f"<{self.trait.name} proxy {self.type_name} from {self.path}{state}>"


_OWN_NAMES = {name for name in dir(TraitProxy) if not name.startswith("_")}
if not _OWN_NAMES <= RESERVED_METHOD_NAMES:  # a trait method of that name would be shadowed
    raise ImportError(f"TraitProxy has public names {_OWN_NAMES - RESERVED_METHOD_NAMES} not in RESERVED_METHOD_NAMES")


def _c_item(ctype: CType) -> str:
    """The C type of an array's or out-parameter's item (``"float"``)."""
    assert ctype.item is not None
    return ctype.item.c_params[0].removesuffix(" {name}")


def _array(proxy: TraitProxy, method: str, name: str, value: object, ctype: CType) -> tuple[Any, int]:
    """``value`` as a C array of ``ctype``'s items, without copying: ``(pointer, item count)``.

    :raises CallArgumentError: not a buffer, not C-contiguous, items of another
        format or size, or read-only for a ``MutArray``.
    """
    item = ctype.item
    assert item is not None
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except CONVERSION_ERRORS as e:
        detail = f"{name}: expected a buffer of {item.name} items ({ctype.name}), got {type(value).__name__}"
        raise proxy._refused(method, detail, e) from e
    with view:
        fmt = view.format.lstrip("@=" + ("<" if _LITTLE else ">"))
        if fmt not in item.buffer_formats or view.itemsize != _ffi.sizeof(_c_item(ctype)):
            detail = f"{name}: items of format {view.format!r} ({view.itemsize} bytes), {ctype.name} needs {item.name}"
            raise proxy._bad_argument(method, detail)
        if not view.c_contiguous:
            raise proxy._bad_buffer(method, f"{name}: the buffer is not C-contiguous ({ctype.name})")
        mutable = ctype.kind is TypeKind.MUTARRAY
        if mutable and view.readonly:
            raise proxy._bad_buffer(method, f"{name}: the buffer is read-only, {ctype.name} is written to")
        count = view.nbytes // view.itemsize
    return _ffi.from_buffer(f"{_c_item(ctype)}[]", value, require_writable=mutable), count


_LITTLE = sys.byteorder == "little"


def _array_converter(ctype: CType, method: str, name: str) -> Callable[[TraitProxy, object], tuple[Any, int]]:
    """:func:`_array` for parameter ``name`` of ``method``, with its item type, size and formats looked up once.

    An ``array.array`` of the right type code is passed at once (it is always C-contiguous and
    writable); any other buffer whose format, item size, contiguity and writability pass is
    passed after one ``memoryview``; anything else goes through :func:`_array`, which says what
    is wrong.
    """
    item = ctype.item
    assert item is not None
    c_item = _c_item(ctype)
    size = _ffi.sizeof(c_item)
    array_type = _ffi.typeof(f"{c_item}[]")
    mutable = ctype.kind is TypeKind.MUTARRAY
    native = "<" if _LITTLE else ">"
    formats = frozenset(prefix + f for f in item.buffer_formats for prefix in ("", "@", "=", native))
    codes = frozenset(c for c in array.typecodes if c in item.buffer_formats and array.array(c).itemsize == size)
    from_buffer, array_class = _cffi_backend.from_buffer, array.array

    def convert(proxy: TraitProxy, value: object) -> tuple[Any, int]:
        if type(value) is array_class and value.typecode in codes:
            return from_buffer(array_type, value, mutable), len(value)
        try:
            view = memoryview(value)  # type: ignore[arg-type]
        except CONVERSION_ERRORS:
            return _array(proxy, method, name, value, ctype)  # raises: not a buffer
        if view.format in formats and view.itemsize == size and view.c_contiguous and not (mutable and view.readonly):
            count = view.nbytes // size
            view.release()
            return from_buffer(array_type, value, mutable), count
        view.release()
        return _array(proxy, method, name, value, ctype)  # raises, naming what is wrong

    return convert


class PluginObject:
    """An object that lives in the plugin (a ``Handle[...]`` result), destroyed exactly once.

    ``close()`` (or leaving a ``with`` block), the garbage collector, or the
    release of the registrations it came from -- whichever comes first --
    calls the trait's ``Drop[...]`` method on it; after that, passing it to a
    method raises (:class:`PluginUnloadedError` once the plugin is unloaded).

    :ivar kind: the handle's kind (``"Session"``).
    """

    __slots__ = ("__weakref__", "_finalizer", "_proxy", "_ptr", "kind")

    def __init__(self, proxy: TraitProxy, kind: str, pointer: Any) -> None:
        self._proxy = proxy
        self.kind = kind
        self._ptr = pointer
        drop = getattr(proxy, f"_drop_{kind}")  # a bound, guarded call of the Drop method: no reference to self
        self._finalizer = weakref.finalize(self, _drop_unless_released, proxy._gate, drop, pointer)
        regset = proxy._set
        if regset.objects is None:
            regset.objects = weakref.WeakSet()
        regset.objects.add(self)

    @property
    def is_alive(self) -> bool:
        """Whether the object still exists in the plugin."""
        return self._finalizer.alive and self._proxy._gate.is_open

    def close(self) -> None:
        """Destroy the object in the plugin now (a second call does nothing)."""
        self._finalizer()

    def _take(self, proxy: TraitProxy, method: str, name: str, kind: str, *, dropping: bool) -> Any:
        """The pointer to pass for parameter ``name``; with ``dropping`` the object is the call's to destroy."""
        if self.kind != kind:
            raise proxy._bad_argument(method, f"{name}: a {self.kind} object where a {kind} is expected")
        made_by = self._proxy
        same = made_by._set is proxy._set and made_by.type_name == proxy.type_name
        if made_by is not proxy and not (same and made_by._instance == proxy._instance):
            # another library, trait or implementation: it would read this object as one of its own
            raise proxy._bad_argument(method, f"{name}: the {kind} object belongs to another implementation")
        if not self._proxy._gate.is_open:
            raise proxy._unloaded(method)
        if not self._finalizer.alive:
            raise proxy._bad_argument(method, f"{name}: the {kind} object was destroyed already")
        if dropping:
            self._finalizer.detach()  # the plugin destroys it in this call: never again
        return self._ptr

    def __enter__(self) -> PluginObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{self.kind} object of {self._proxy!r}{'' if self.is_alive else ' (destroyed)'}>"


def _drop_unless_released(gate: CallGate, drop: Any, pointer: Any) -> None:
    """The finalizer: destroy the object, unless the release of its set did already."""
    if gate.is_open:
        drop(pointer)


def _handle(proxy: TraitProxy, method: str, name: str, value: object, kind: str, dropping: bool) -> Any:
    if not isinstance(value, PluginObject):
        raise proxy._bad_argument(method, f"{name}: expected a {kind} object, got {type(value).__name__}")
    return value._take(proxy, method, name, kind, dropping=dropping)


class _CallbackState:
    """One callback argument of one call: the callable, what it raised, and whose argument it is."""

    __slots__ = ("error", "fn", "handle", "key", "method", "name", "proxy")

    def __init__(self, fn: Any, proxy: TraitProxy, method: str, name: str) -> None:
        self.fn = fn
        self.error: BaseException | None = None
        self.handle = _ffi.new_handle(self)
        self.key = int(_ffi.cast("uintptr_t", self.handle))
        self.proxy, self.method, self.name = proxy, method, name

    def bad_result(self, value: object, result: CType, refused: BaseException) -> CallArgumentError:
        """The typed error of a result the callback returned and ``result``'s C type refuses."""
        detail = (
            f"{self.name}: the callback returned {short_repr(value)}, which {result.name} ({result.c_return}) "
            f"cannot take: {refused}"
        )
        error = self.proxy._refused(self.method, detail, refused)
        # Raised later, from _finish_callbacks: chained as `raise ... from` would, without the
        # traceback, which holds the trampoline's frame and so the call's (no cycle through them).
        error.__cause__ = refused.with_traceback(None)
        return error


#: The callbacks of the calls in flight, by context address: a plugin that calls one after its call returned
#: finds nothing (and gets the zero of the result) instead of a freed Python object.
_LIVE: dict[int, _CallbackState] = {}


@functools.cache
def _trampoline(ctype: CType) -> Any:
    """The compiled C function every callback of this signature goes through."""
    *args, result = ctype.signature
    strings = [i for i, a in enumerate(args) if a.kind is TypeKind.CSTR]
    returns_value = result.kind is not TypeKind.VOID
    c_result = result.c_return or "void"

    def call(context: Any, *values: Any) -> Any:
        state = _LIVE.get(int(_ffi.cast("uintptr_t", context)))
        if state is None or state.error is not None:
            return 0 if returns_value else None  # a late call, or after a failure: nothing more runs
        converted = list(values)
        for i in strings:
            converted[i] = None if values[i] == _ffi.NULL else _ffi.string(values[i]).decode("utf-8", "replace")
        try:
            value = state.fn(*converted)
            if returns_value:
                try:
                    return _ffi.new(f"{c_result} *", value)[0]  # range and type checked here, not truncated by C
                except CONVERSION_ERRORS as e:  # the result does not fit R: the typed error, raised later
                    state.error = state.bad_result(value, result, e)
                    return 0
        except BaseException as e:  # must not unwind through C: raised again after the plugin returns
            state.error = e
            return 0 if returns_value else None
        return None

    return _ffi.callback(ctype.cffi[0], call, **({"error": 0} if returns_value else {}))


def _callback(proxy: TraitProxy, method: str, name: str, fn: object, ctype: CType) -> tuple[Any, Any, _CallbackState]:
    """``fn`` as a C callback for one call: ``(function, context, state)``; :func:`_finish_callbacks` ends it."""
    if not callable(fn):
        raise proxy._bad_argument(method, f"{name}: expected a callable ({ctype.name}), got {type(fn).__name__}")
    state = _CallbackState(fn, proxy, method, name)
    _LIVE[state.key] = state
    return _trampoline(ctype), state.handle, state


def _finish_callbacks(*states: _CallbackState | None) -> None:
    """End the callbacks of a call (``None``: one not made, the call refused first); raise what the first raised."""
    for state in states:
        if state is not None:
            _LIVE.pop(state.key, None)
    for state in states:
        if state is not None and state.error is not None:
            error, state.error = state.error, None
            raise error


def _method_source(m: MethodSpec) -> str:
    """Python source of one proxy method (generated for speed, like namedtuple)."""
    names = [p.name for p in m.params if p.ctype.kind is not TypeKind.OUT]
    pre: list[str] = []
    args = ["self._instance"]
    outs: list[str] = []
    callbacks: list[str] = []
    post: list[str] = []  # statements after the call, before the result is returned
    for i, p in enumerate(m.params):
        kind = p.ctype.kind
        if kind is TypeKind.CSTR:
            args.append(f"_encode({p.name})")
        elif kind in (TypeKind.BUFFER, TypeKind.MUTBUFFER):  # converted in the call's line: see `checked`
            writable = kind is TypeKind.MUTBUFFER
            args += [f"(_b_{p.name} := _from_buffer(_BYTES, {p.name}, {writable}))", f"len(_b_{p.name})"]
        elif kind in (TypeKind.ARRAY, TypeKind.MUTARRAY):
            pre.append(f"    _b_{p.name}, _n_{p.name} = _C{i}(self, {p.name})")
            args += [f"_b_{p.name}", f"_n_{p.name}"]
        elif kind is TypeKind.CALLBACK:
            names_ = f"_cb_{p.name}, _ctx_{p.name}, _st_{p.name}"
            pre.append(f"    {names_} = _callback(self, {m.name!r}, {p.name!r}, {p.name}, _P{i})")
            args += [f"_cb_{p.name}", f"_ctx_{p.name}"]
            callbacks.append(f"_st_{p.name}")
        elif kind in (TypeKind.HANDLE, TypeKind.DROP):
            handle_kind = p.ctype.name.partition("[")[2].rstrip("]")
            dropping = kind is TypeKind.DROP
            pre.append(
                f"    _h_{p.name} = _handle(self, {m.name!r}, {p.name!r}, {p.name}, {handle_kind!r}, {dropping})"
            )
            args.append(f"_h_{p.name}")
        elif kind in (TypeKind.STRUCT, TypeKind.STRUCT_REF, TypeKind.STRUCT_MUTREF):
            pre.append(f"    _s_{p.name} = _C{i}(self, {p.name})")
            args.append(f"_s_{p.name}")  # by value: a struct or a tuple of its fields; else a pointer
            if kind is TypeKind.STRUCT_MUTREF:
                post.append(f"_copy_back({p.name}, _s_{p.name}[0], _P{i}.struct)")
        elif kind is TypeKind.OUT and p.ctype.struct is not None:  # Out[Point]: a new object after the call
            pre.append(f"    _o_{p.name} = _sffi.new({p.ctype.struct.name + ' *'!r})")
            args.append(f"_o_{p.name}")
            outs.append(f"_from_struct(_o_{p.name}[0], _P{i}.struct)")
        elif kind is TypeKind.OUT:
            pre.append(f"    _o_{p.name} = _new(_OUT{i})")
            args.append(f"_o_{p.name}")
            outs.append(f"_o_{p.name}[0]")
        else:  # a scalar: cffi converts it in the call
            args.append(p.name)
    # CStr, Buffer and MutBuffer arguments are converted in the call's line, scalars by cffi in the
    # call: if the line refuses one, _call_refused names it.
    checked = any(p.ctype.kind in _CHECKED_IN_THE_CALL for p in m.params)
    returns = m.returns.kind
    if returns is TypeKind.STATUS:
        pre.append("    _error = _new(_ERROR_P)")
        args.append("_error")
    call = f"self._fn_{m.name}({', '.join(args)})"
    if returns in (TypeKind.VOID, TypeKind.STATUS):
        value = outs[0] if len(outs) == 1 else f"({', '.join(outs)},)" if outs else "None"
    else:
        value = f"({', '.join(['_r', *outs])})" if outs else "_r"
    if returns is TypeKind.OWNEDSTR:
        body = [
            f"_p = {call}",
            "if not _p:",  # a NULL pointer is false: cheaper than comparing with NULL
            f"    raise self._null_result({m.name!r})",
            "try:",
            "    _r = _string(_p).decode('utf-8', 'replace')",
            "finally:",
            "    self._free(_p)",
            f"return {value}",
        ]
    elif returns is TypeKind.HANDLE:
        handle_kind = m.returns.name.partition("[")[2].rstrip("]")
        body = [
            f"_r = {call}",
            "if not _r:",
            f"    raise self._null_result({m.name!r})",
            f"_r = _PluginObject(self, {handle_kind!r}, _r)",
            f"return {value}",
        ]
    elif returns is TypeKind.OWNEDBYTES:
        body = [
            f"_ob = {call}",
            "if not _ob.data:",
            "    if _ob.len:",
            f"        raise self._null_result({m.name!r})",
            "    _r = b''",
            "else:",
            "    try:",
            "        _r = _buffer(_ob.data, _ob.len)[:]",
            "    finally:",
            "        self._free(_ob.data)",
            f"return {value}",
        ]
    elif returns is TypeKind.STATUS:
        body = [
            f"_code = {call}",
            "if _code:",
            f"    raise self._method_failed({m.name!r}, _code, _error)",
            "if _error[0]:",
            "    self._free(_error[0])",
            f"return {value}",
        ]
    elif returns is TypeKind.STRUCT:
        body = [f"_r = _from_struct({call}, _R)", f"return {value}"]
    elif returns is TypeKind.VOID:
        body = [call, *([f"return {value}"] if outs else [])]
    elif outs or post:
        body = [f"_r = {call}", f"return {value}"]
    else:
        body = [f"return {call}"]
    if post:  # the copies back run after the call, before the value is returned
        if body[-1].startswith("return "):
            body = [*body[:-1], *post, body[-1]]
        else:
            body = [*body, *post]
    if checked:
        # A try around the call's line, the rest in its `else`: on success the bytecode is the
        # same as without it (a `try:` on the line of its statement adds no NOP, and an `else`
        # needs no jump over the handler); the handler's helpers are globals, not closure cells
        # each call would copy.
        [line] = [i for i, text in enumerate(body) if call in text]
        rest = body[line + 1 :]
        body[line:] = [
            f"try: {body[line]}",
            "except _CONVERSION_ERRORS as _e:",
            f"    _call_refused(self, {m.name!r}, ({''.join(n + ', ' for n in names)}), _e)",
            "    raise",  # not an argument's error
            *(["else:", *(f"    {text}" for text in rest)] if rest else []),
        ]
    guarded = CallGate.guarded_source("self._gate", f"self._unloaded({m.name!r})", body)
    body_lines = [*pre, *guarded]
    if callbacks:
        # After the plugin returned, end the callbacks and raise what they raised; and end those
        # already made when a later argument is refused before the call (they are registered in _LIVE).
        body_lines = [
            *(f"    {state} = None" for state in callbacks),
            "    try:",
            *(f"    {line}" for line in body_lines),
            "    finally:",
            f"        _finish_callbacks({', '.join(callbacks)})",
        ]
    views = [f"_b_{p.name}" for p in m.params if p.ctype.kind in _VIEW_KINDS]
    if views:
        # A failed call's traceback keeps this frame, and with it the views of the caller's buffers
        # (cffi's from_buffer objects).  Kept in a reference cycle (`except Exception as e: err = e`),
        # the collector would clear a memoryview that a view still exports and crash (a cffi and
        # CPython matter: the same happens without the host); so a failure drops the views first.
        # On success this costs one NOP (the `try:` line); nothing else runs until it raises.
        body_lines = [
            "    try:",
            *(f"    {line}" for line in body_lines),
            "    except BaseException:",
            f"        {' = '.join(views)} = None",
            "        raise",
        ]
    return "\n".join(
        [
            f"def {m.name}(self, {', '.join(names)}):" if names else f"def {m.name}(self):",
            f"    {m.doc!r}",
            *body_lines,
        ]
    )


#: Parameters whose value is passed as a view of the caller's buffer (``_b_<name>`` in the method).
_VIEW_KINDS = frozenset({TypeKind.BUFFER, TypeKind.MUTBUFFER, TypeKind.ARRAY, TypeKind.MUTARRAY})


def _converters(m: MethodSpec, ffi: Any) -> dict[str, Any]:
    """The converters of ``m``'s array and struct parameters, made once per proxy class: ``{"_C<i>": fn}``."""
    out: dict[str, Any] = {}
    for i, p in enumerate(m.params):
        kind = p.ctype.kind
        if kind in (TypeKind.ARRAY, TypeKind.MUTARRAY):
            out[f"_C{i}"] = _array_converter(p.ctype, m.name, p.name)
        elif kind in (TypeKind.STRUCT, TypeKind.STRUCT_REF, TypeKind.STRUCT_MUTREF):
            out[f"_C{i}"] = _struct_converter(p.ctype, ffi, m.name, p.name)
    return out


@functools.cache
def proxy_class(trait: TraitSpec) -> type[TraitProxy]:
    """The proxy class of ``trait`` (generated once, then cached): the pure-Python methods."""
    namespace: dict[str, Any] = {
        "_encode": str.encode,
        "_from_buffer": _cffi_backend.from_buffer,
        "_BYTES": _BYTES_ARRAY,
        "_string": _cffi_backend.string,
        "_buffer": _cffi_backend.buffer,
        "_new": _cffi_backend.newp,
        "_ERROR_P": _ERROR_P,
        "_array": _array,
        "_to_struct": _to_struct,
        "_from_struct": _from_struct,
        "_copy_back": _copy_back,
        "_sffi": _ffi_for(trait),
        "_callback": _callback,
        "_handle": _handle,
        "_PluginObject": PluginObject,
        "_finish_callbacks": _finish_callbacks,
    }
    # What only the handler of a refused call uses: the methods' globals (read when it runs).
    refusals = {"_CONVERSION_ERRORS": CONVERSION_ERRORS, "_call_refused": _call_refused}
    attrs: dict[str, Any] = {
        "__slots__": tuple(f"_fn_{m.name}" for m in trait.methods),
        "trait": trait,
        "__doc__": trait.doc,
    }
    for m in trait.methods:
        if [p.ctype.kind for p in m.params] == [TypeKind.DROP]:  # the guarded call a finalizer makes
            kind = m.params[0].ctype.name.partition("[")[2].rstrip("]")
            source = "\n".join(
                [
                    f"def _drop_{kind}(self, pointer):",
                    *CallGate.guarded_source(
                        "self._gate", f"self._unloaded({m.name!r})", [f"self._fn_{m.name}(self._instance, pointer)"]
                    ),
                ]
            )
            attrs[f"_drop_{kind}"] = CallGate.define_guarded(
                source, f"_drop_{kind}", dict(namespace), f"<{trait.name} proxy>"
            )
        # Each parameter's CType (_P0, _P1, ...), converter (_C0, ...) and scalar out-parameter C type
        # (_OUT0, ...), bound in the method's closure with the helpers above.
        bound = {
            **namespace,
            **{f"_P{i}": p.ctype for i, p in enumerate(m.params)},
            **_converters(m, namespace["_sffi"]),
            "_R": m.returns.struct,
        }
        bound |= {
            f"_OUT{i}": _ffi.typeof(_c_item(p.ctype) + " *")
            for i, p in enumerate(m.params)
            if p.ctype.kind is TypeKind.OUT and p.ctype.struct is None
        }
        source = _method_source(m)
        used = {name: value for name, value in bound.items() if name in source}
        attrs[m.name] = CallGate.define_guarded(source, m.name, dict(refusals), f"<{trait.name} proxy>", bound=used)
    return type(f"{trait.name}Proxy", (TraitProxy,), attrs)


def make_proxy(regset: RegistrationSet, reg: Registration) -> TraitProxy:
    """A proxy for one registration of ``regset``: compiled methods where the engine can, else Python's."""
    base = proxy_class(regset.trait)
    compiled = compiled_proxy_class(base, regset.trait)
    proxy: TraitProxy = (compiled or base)(regset, reg)
    return proxy
