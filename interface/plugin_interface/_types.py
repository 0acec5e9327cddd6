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
``None`` (return)       ``void``                            ``None``
======================  ==================================  =====================
"""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
from typing import Any, NewType

__all__ = [
    "Bool",
    "Buffer",
    "CStr",
    "CType",
    "F32",
    "F64",
    "I8",
    "I16",
    "I32",
    "I64",
    "MutBuffer",
    "OwnedStr",
    "Size",
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


class TypeKind(enum.StrEnum):
    """How the host converts a value of one marker (what :attr:`CType.kind` says)."""

    SCALAR = "scalar"
    CSTR = "cstr"
    BUFFER = "buffer"
    MUTBUFFER = "mutbuffer"
    OWNEDSTR = "ownedstr"
    VOID = "void"


@dataclass(frozen=True)
class CType:
    """How one marker crosses the boundary.

    :ivar name: the marker's name (``"CStr"``), stable: it enters fingerprints.
    :ivar c_params: C declarations of the parameter(s) it expands to, with
        ``{name}`` standing for the parameter name.
    :ivar c_return: C return type, or ``None`` if it cannot be returned.
    :ivar cffi: cffi spellings of the expanded parameter(s) (or the return).
    :ivar ctypes_types: ctypes equivalents, parallel to ``cffi``.
    :ivar kind: how the host converts values.
    """

    name: str
    c_params: tuple[str, ...]
    c_return: str | None
    cffi: tuple[str, ...]
    ctypes_types: tuple[Any, ...]
    kind: TypeKind
    python_type: type


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
    None: CType("None", (), "void", ("void",), (None,), TypeKind.VOID, type(None)),
    type(None): CType("None", (), "void", ("void",), (None,), TypeKind.VOID, type(None)),
}


def ctype_for_annotation(annotation: object) -> CType | None:
    """The :class:`CType` of a marker used as an annotation, or ``None``."""
    try:
        return _VOCABULARY.get(annotation)
    except TypeError:  # unhashable annotation
        return None


_BY_NAME: dict[str, CType] = {ct.name: ct for ct in _VOCABULARY.values()}


def ctype_by_name(name: str) -> CType:
    """The :class:`CType` called ``name`` (``"CStr"``), as :attr:`CType.name` spells it.

    :raises KeyError: for a name outside the vocabulary.
    """
    return _BY_NAME[name]
