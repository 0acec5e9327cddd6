"""The C type vocabulary of trait declarations.

A trait method is declared in Python with these markers as annotations; each
marker knows its C spelling (for the generated header), its ctypes and cffi
spellings (for the host), and who owns what crosses the boundary.

======================  ==================================  =====================
marker                  C                                   Python side
======================  ==================================  =====================
``CStr`` (param)        ``const char *``                    ``str`` (UTF-8)
``Buffer`` (param)      ``const uint8_t *x, size_t x_len``  bytes-like, no copy
``MutBuffer`` (param)   ``uint8_t *x, size_t x_len``        writable buffer, no copy
``OwnedStr`` (return)   ``char *`` released by the caller   ``str``
                        with ``registration->free_memory``
``I8`` ... ``U64``      ``int8_t`` ... ``uint64_t``         ``int`` (range-checked)
``F32``, ``F64``        ``float``, ``double``               ``float``
``Bool``                ``_Bool``                           ``bool``
``Array[T]`` (param)    ``const T *x, size_t x_len``        C-contiguous buffer of T items, no copy
``MutArray[T]`` (param) ``T *x, size_t x_len``              writable buffer of T items, no copy
``Out[T]`` (param)      ``T *x`` (the plugin writes it)     returned after the result
                        (``T`` a scalar or a struct)
``OwnedBytes`` (return) ``PluginBytes {data, len}``,        ``bytes``
                        ``data`` released by the caller
``Status`` (return)     ``int32_t``, plus a last parameter  ``None``; non-zero raises
                        ``char **error`` the plugin may     ``PluginMethodError(code, message)``
                        set (released by the caller)
``None`` (return)       ``void``                            ``None``
======================  ==================================  =====================

``T`` is a scalar marker (``I8`` ... ``F64``, ``Size``, ``Bool``).  "Released
by the caller" means the host calls the registration's ``free_memory`` on it,
once, right after copying it.
"""

from __future__ import annotations

import ctypes
import enum
import re
import struct
from typing import Any, NewType

from ._record import Record, setfield

__all__ = [
    "Array",
    "Bool",
    "Callback",
    "Drop",
    "Handle",
    "Buffer",
    "CStr",
    "CType",
    "F32",
    "F64",
    "I8",
    "I16",
    "I32",
    "I64",
    "MutArray",
    "MutBuffer",
    "Out",
    "OwnedBytes",
    "OwnedStr",
    "Size",
    "Status",
    "TypeKind",
    "U8",
    "U16",
    "U32",
    "U64",
    "ctype_by_name",
    "ctype_for_annotation",
]

CStr = NewType("CStr", str)
OwnedStr = NewType("OwnedStr", str)
Buffer = NewType("Buffer", bytes)
MutBuffer = NewType("MutBuffer", bytearray)
I8 = NewType("I8", int)
I16 = NewType("I16", int)
I32 = NewType("I32", int)
I64 = NewType("I64", int)
U8 = NewType("U8", int)
U16 = NewType("U16", int)
U32 = NewType("U32", int)
U64 = NewType("U64", int)
Size = NewType("Size", int)
F32 = NewType("F32", float)
F64 = NewType("F64", float)
Bool = NewType("Bool", bool)
OwnedBytes = NewType("OwnedBytes", bytes)


class Status:
    """Return marker: the method reports success (0) or an error code and message (see the table above)."""


class TypeKind(enum.StrEnum):
    """How the host converts a value of one marker (what :attr:`CType.kind` says)."""

    SCALAR = "scalar"
    CSTR = "cstr"
    BUFFER = "buffer"
    MUTBUFFER = "mutbuffer"
    OWNEDSTR = "ownedstr"
    VOID = "void"
    ARRAY = "array"
    MUTARRAY = "mutarray"
    OUT = "out"
    OWNEDBYTES = "ownedbytes"
    STATUS = "status"
    CALLBACK = "callback"
    HANDLE = "handle"
    DROP = "drop"
    STRUCT = "struct"
    STRUCT_REF = "struct_ref"
    STRUCT_MUTREF = "struct_mutref"


class CType(Record):
    """How one marker crosses the boundary.

    :ivar name: the marker's name (``"CStr"``), stable: it enters fingerprints.
    :ivar c_params: C declarations of the parameter(s) it expands to, with
        ``{name}`` standing for the parameter name.
    :ivar c_return: C return type, or ``None`` if it cannot be returned.
    :ivar cffi: cffi spellings of the expanded parameter(s) (or the return).
    :ivar ctypes_types: ctypes equivalents, parallel to ``cffi``.
    :ivar kind: how the host converts values.
    """

    __slots__ = (
        "c_params",
        "c_return",
        "cffi",
        "ctypes_types",
        "item",
        "kind",
        "name",
        "python_type",
        "signature",
        "struct",
    )
    name: str
    c_params: tuple[str, ...]
    c_return: str | None
    cffi: tuple[str, ...]
    ctypes_types: tuple[Any, ...]
    kind: TypeKind
    python_type: type
    #: The element type of an array or out-parameter (``None`` for the others).
    item: CType | None
    #: A callback's parameter types and return type (empty for the others).
    signature: tuple[CType, ...]
    #: The struct (a ``StructSpec``) of a struct, ``Ref`` or ``MutRef`` type.
    struct: Any

    def __init__(
        self,
        name: str,
        c_params: tuple[str, ...],
        c_return: str | None,
        cffi: tuple[str, ...],
        ctypes_types: tuple[Any, ...],
        kind: TypeKind,
        python_type: type,
        item: CType | None = None,
        signature: tuple[CType, ...] = (),
        struct: Any = None,
    ) -> None:
        setfield(self, "name", name)
        setfield(self, "c_params", c_params)
        setfield(self, "c_return", c_return)
        setfield(self, "cffi", cffi)
        setfield(self, "ctypes_types", ctypes_types)
        setfield(self, "kind", kind)
        setfield(self, "python_type", python_type)
        setfield(self, "item", item)
        setfield(self, "signature", signature)
        setfield(self, "struct", struct)

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def buffer_formats(self) -> frozenset[str]:
        """The buffer-protocol formats (``memoryview.format`` without a byte-order
        prefix) whose items are this scalar, e.g. ``{"q", "l"}`` for ``I64`` on LP64."""
        return _FORMATS.get(self.name, frozenset())


def _scalar(name: str, c: str, ct: Any, py: type) -> CType:
    return CType(name, (c + " {name}",), c, (c,), (ct,), TypeKind.SCALAR, py)


_VOCABULARY: dict[object, CType] = {
    CStr: CType("CStr", ("const char *{name}",), None, ("const char *",), (ctypes.c_char_p,), TypeKind.CSTR, str),
    OwnedStr: CType("OwnedStr", (), "char *", ("char *",), (ctypes.c_void_p,), TypeKind.OWNEDSTR, str),
    Buffer: CType(
        "Buffer",
        ("const uint8_t *{name}", "size_t {name}_len"),
        None,
        ("const uint8_t *", "size_t"),
        (ctypes.c_void_p, ctypes.c_size_t),
        TypeKind.BUFFER,
        bytes,
    ),
    MutBuffer: CType(
        "MutBuffer",
        ("uint8_t *{name}", "size_t {name}_len"),
        None,
        ("uint8_t *", "size_t"),
        (ctypes.c_void_p, ctypes.c_size_t),
        TypeKind.MUTBUFFER,
        bytearray,
    ),
    I8: _scalar("I8", "int8_t", ctypes.c_int8, int),
    I16: _scalar("I16", "int16_t", ctypes.c_int16, int),
    I32: _scalar("I32", "int32_t", ctypes.c_int32, int),
    I64: _scalar("I64", "int64_t", ctypes.c_int64, int),
    U8: _scalar("U8", "uint8_t", ctypes.c_uint8, int),
    U16: _scalar("U16", "uint16_t", ctypes.c_uint16, int),
    U32: _scalar("U32", "uint32_t", ctypes.c_uint32, int),
    U64: _scalar("U64", "uint64_t", ctypes.c_uint64, int),
    Size: _scalar("Size", "size_t", ctypes.c_size_t, int),
    F32: _scalar("F32", "float", ctypes.c_float, float),
    F64: _scalar("F64", "double", ctypes.c_double, float),
    Bool: _scalar("Bool", "_Bool", ctypes.c_bool, bool),
    OwnedBytes: CType("OwnedBytes", (), "PluginBytes", ("PluginBytes",), (None,), TypeKind.OWNEDBYTES, bytes),
    Status: CType("Status", (), "int32_t", ("int32_t",), (ctypes.c_int32,), TypeKind.STATUS, type(None)),
    None: CType("None", (), "void", ("void",), (None,), TypeKind.VOID, type(None)),
    type(None): CType("None", (), "void", ("void",), (None,), TypeKind.VOID, type(None)),
}


class _Generic(Record):
    """``Array[F32]``, ``MutArray[I16]``, ``Out[I64]``: a marker over a scalar marker."""

    __slots__ = ("item", "kind")
    kind: TypeKind
    item: object

    def __init__(self, kind: TypeKind, item: object) -> None:
        setfield(self, "kind", kind)
        setfield(self, "item", item)


class _Subscriptable:
    """Base of the generic markers; ``Array[F32]`` makes the annotation."""

    _kind: TypeKind

    def __class_getitem__(cls, item: object) -> _Generic:
        return _Generic(cls._kind, item)


class Array(_Subscriptable):
    """``Array[T]`` (parameter): ``const T *x, size_t x_len``; any C-contiguous buffer of T items, no copy."""

    _kind = TypeKind.ARRAY


class MutArray(_Subscriptable):
    """``MutArray[T]`` (parameter): ``T *x, size_t x_len``; a writable C-contiguous buffer of T items, no copy."""

    _kind = TypeKind.MUTARRAY


class Callback:
    """``Callback[[I32, CStr], None]`` (parameter): a Python callable the plugin may call during the call.

    C: ``R (*x)(void *context, A...), void *x_context``; the plugin calls
    ``x(x_context, ...)``.  Valid for the call only; an exception the callable
    raises is kept, the plugin sees the return type's zero, and the exception
    is raised again once the plugin returns.  Arguments are scalars or ``CStr``;
    the result a scalar or ``None``.
    """

    def __class_getitem__(cls, item: object) -> _Generic:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], list | tuple)):
            raise TypeError("Callback takes [argument types], return type: Callback[[I32], None]")
        return _Generic(TypeKind.CALLBACK, (tuple(item[0]), item[1]))


class Handle:
    """``Handle[Session]`` (a class used as a name) or ``Handle["Session"]``: a plugin-side
    object, opaque to the host (``void *`` in C).

    Returned, the proxy wraps it in a :class:`~plugin_host.registry.PluginObject`;
    as a parameter, it takes one.  The trait must have a method whose only
    parameter is ``Drop["Session"]``: the one that destroys it.
    """

    def __class_getitem__(cls, name: str) -> _Generic:
        return _Generic(TypeKind.HANDLE, _handle_kind(name))


class Drop:
    """``Drop["Session"]`` (parameter): the method destroys this object (``void *`` in C); the
    proxy calls it exactly once per object, from ``close()``, the finalizer or the release of the set."""

    def __class_getitem__(cls, name: str) -> _Generic:
        return _Generic(TypeKind.DROP, _handle_kind(name))


def _handle_kind(name: object) -> str:
    """The kind of ``Handle[X]``: ``X`` a name, or a class (its name), e.g. ``class Session: ...``."""
    if isinstance(name, type):
        name = name.__name__
    if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9]*$", name):
        raise TypeError(f"a handle kind is a name of letters and digits (or a class), got {name!r}")
    return name


def _handle(kind: TypeKind, name: str) -> CType:
    marker = "Handle" if kind is TypeKind.HANDLE else "Drop"
    returns = "void *" if kind is TypeKind.HANDLE else None
    return CType(f"{marker}[{name}]", ("void *{name}",), returns, ("void *",), (ctypes.c_void_p,), kind, object)


class Out(_Subscriptable):
    """``Out[T]`` (parameter): ``T *x``; the plugin writes it, the proxy returns it after the result."""

    _kind = TypeKind.OUT


def _generic(kind: TypeKind, item: CType) -> CType | None:
    if item.kind is not TypeKind.SCALAR:
        return None
    c = item.c_params[0].removesuffix(" {name}")
    ct = item.ctypes_types[0]
    if kind is TypeKind.ARRAY:
        return CType(
            f"Array[{item.name}]",
            (f"const {c} *{{name}}", "size_t {name}_len"),
            None,
            (f"const {c} *", "size_t"),
            (ctypes.POINTER(ct), ctypes.c_size_t),
            kind,
            memoryview,
            item,
        )
    if kind is TypeKind.MUTARRAY:
        return CType(
            f"MutArray[{item.name}]",
            (f"{c} *{{name}}", "size_t {name}_len"),
            None,
            (f"{c} *", "size_t"),
            (ctypes.POINTER(ct), ctypes.c_size_t),
            kind,
            memoryview,
            item,
        )
    return CType(
        f"Out[{item.name}]", (f"{c} *{{name}}",), None, (f"{c} *",), (ctypes.POINTER(ct),), kind, item.python_type, item
    )


def _callback(args: tuple[CType, ...], result: CType) -> CType | None:
    if any(a.kind not in (TypeKind.SCALAR, TypeKind.CSTR) for a in args) or result.kind not in (
        TypeKind.SCALAR,
        TypeKind.VOID,
    ):
        return None
    c_args = ", ".join(["void *", *(a.cffi[0] for a in args)])
    ret = result.c_return or "void"
    name = f"Callback[[{', '.join(a.name for a in args)}], {result.name}]"
    return CType(
        name,
        (f"{ret} (*{{name}})({c_args})", "void *{name}_context"),
        None,
        (f"{ret}(*)({c_args})", "void *"),
        (ctypes.c_void_p, ctypes.c_void_p),
        TypeKind.CALLBACK,
        object,
        None,
        (*args, result),
    )


#: Structs by type name (``Point{x:F64@0,y:F64@8}#16``), for declarations read back from data.
_STRUCTS: dict[str, Any] = {}
#: Rebuilds a ``StructSpec`` from a type name (set by ``_structs``, which builds on this module).
_struct_parser: Any = None


def set_struct_parser(parser: Any) -> None:
    """Install the function that rebuilds a struct from its type name (``_structs`` does, at import)."""
    global _struct_parser
    _struct_parser = parser


def register_structs(*specs: Any) -> None:
    """Make declared structs (``StructSpec``) known by their type names (nested ones included)."""
    for spec in specs:
        for nested in spec.nested():
            _STRUCTS[nested.type_name] = nested


def _struct(kind: TypeKind, spec: Any) -> CType:
    name = spec.name
    if kind is TypeKind.STRUCT:
        return CType(spec.type_name, (f"{name} {{name}}",), name, (name,), (spec.mirror,), kind, object, struct=spec)
    if kind is TypeKind.OUT:  # Out[Point]: ``Point *x``, written by the plugin, returned as a new object
        out = f"Out[{spec.type_name}]"
        return CType(out, (f"{name} *{{name}}",), None, (f"{name} *",), (ctypes.c_void_p,), kind, object, struct=spec)
    marker, const = ("Ref", "const ") if kind is TypeKind.STRUCT_REF else ("MutRef", "")
    return CType(
        f"{marker}[{spec.type_name}]",
        (f"{const}{name} *{{name}}",),
        None,
        (f"{const}{name} *",),
        (ctypes.c_void_p,),
        kind,
        object,
        struct=spec,
    )


def ctype_for_annotation(annotation: object) -> CType | None:
    """The :class:`CType` of a marker used as an annotation, or ``None``."""
    struct = getattr(annotation, "__plugin_struct__", None)
    if struct is not None:
        return _struct(TypeKind.STRUCT, struct)
    if isinstance(annotation, _Generic) and annotation.kind in (TypeKind.STRUCT_REF, TypeKind.STRUCT_MUTREF):
        inner = getattr(annotation.item, "__plugin_struct__", None)
        return None if inner is None else _struct(annotation.kind, inner)
    if isinstance(annotation, _Generic) and annotation.kind is TypeKind.OUT:
        inner = getattr(annotation.item, "__plugin_struct__", None)
        if inner is not None:
            return _struct(TypeKind.OUT, inner)
    if isinstance(annotation, _Generic) and annotation.kind is TypeKind.CALLBACK:
        markers: tuple[tuple[object, ...], object] = annotation.item  # type: ignore[assignment]
        arg_markers, result_marker = markers
        args = [ctype_for_annotation(a) for a in arg_markers]
        result = ctype_for_annotation(result_marker)
        if result is None or any(a is None for a in args):
            return None
        return _callback(tuple(a for a in args if a is not None), result)
    if isinstance(annotation, _Generic) and annotation.kind in (TypeKind.HANDLE, TypeKind.DROP):
        return _handle(annotation.kind, str(annotation.item))
    if isinstance(annotation, _Generic):
        item = ctype_for_annotation(annotation.item)
        return None if item is None else _generic(annotation.kind, item)
    try:
        return _VOCABULARY.get(annotation)
    except TypeError:  # unhashable annotation
        return None


_BY_NAME: dict[str, CType] = {ct.name: ct for ct in _VOCABULARY.values()}
_GENERIC_NAME = re.compile(r"^(Array|MutArray|Out)\[([A-Za-z0-9]+)\]$")
_HANDLE_NAME = re.compile(r"^(Handle|Drop)\[([A-Za-z][A-Za-z0-9]*)\]$")
_CALLBACK_NAME = re.compile(r"^Callback\[\[([A-Za-z0-9, ]*)\], ([A-Za-z0-9]+)\]$")
_GENERIC_KINDS = {"Array": TypeKind.ARRAY, "MutArray": TypeKind.MUTARRAY, "Out": TypeKind.OUT}
_STRUCT_KINDS = {"Ref": TypeKind.STRUCT_REF, "MutRef": TypeKind.STRUCT_MUTREF, "Out": TypeKind.OUT}


def ctype_by_name(name: str) -> CType:
    """The :class:`CType` called ``name`` (``"CStr"``, ``"Array[F32]"``), as :attr:`CType.name` spells it.

    :raises KeyError: for a name outside the vocabulary.
    """
    known = _BY_NAME.get(name)
    if known is not None:
        return known
    ref = re.match(r"^(Ref|MutRef|Out)\[(.*)\]$", name)
    if ref and ref.group(2) in _STRUCTS:
        return _struct(_STRUCT_KINDS[ref.group(1)], _STRUCTS[ref.group(2)])
    if name in _STRUCTS:
        return _struct(TypeKind.STRUCT, _STRUCTS[name])
    if "{" in name:  # a struct nobody declared here: rebuilt from its layout, checked against this platform's
        inner = ref.group(2) if ref else name
        if _struct_parser is None:
            raise KeyError(name)
        register_structs(_struct_parser(inner))
        return ctype_by_name(name)
    handle = _HANDLE_NAME.match(name)
    if handle:
        return _handle(TypeKind.HANDLE if handle.group(1) == "Handle" else TypeKind.DROP, handle.group(2))
    callback = _CALLBACK_NAME.match(name)
    if callback:
        args = [ctype_by_name(a.strip()) for a in callback.group(1).split(",") if a.strip()]
        made_callback = _callback(tuple(args), ctype_by_name(callback.group(2).strip()))
        if made_callback is None:
            raise KeyError(name)
        return made_callback
    m = _GENERIC_NAME.match(name)
    made = _generic(_GENERIC_KINDS[m.group(1)], _BY_NAME[m.group(2)]) if m and m.group(2) in _BY_NAME else None
    if made is None:
        raise KeyError(name)
    return made


def _formats() -> dict[str, frozenset[str]]:
    """Per scalar marker, the struct/buffer format characters with the same kind and native size."""
    kinds = {"b": "i", "h": "i", "i": "i", "l": "i", "q": "i", "n": "i"}
    kinds |= {c.upper(): "u" for c in "bhilqn"} | {"f": "f", "d": "f", "?": "?"}
    by_shape: dict[tuple[str, int], set[str]] = {}
    for char, kind in kinds.items():
        by_shape.setdefault((kind, struct.calcsize(char)), set()).add(char)
    shapes = {
        "I8": ("i", 1), "I16": ("i", 2), "I32": ("i", 4), "I64": ("i", 8),
        "U8": ("u", 1), "U16": ("u", 2), "U32": ("u", 4), "U64": ("u", 8),
        "Size": ("u", ctypes.sizeof(ctypes.c_size_t)), "F32": ("f", 4), "F64": ("f", 8), "Bool": ("?", 1),
    }  # fmt: skip
    return {name: frozenset(by_shape.get(shape, ())) for name, shape in shapes.items()}


_FORMATS = _formats()
