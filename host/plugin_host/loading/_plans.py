"""The plans the call engine runs (:mod:`._engine`), built from declarations and C signatures.

A plan is one entry per parameter and one for the result, in the format
``callengine.c`` reads (``PLAN_VERSION``).  Signatures the engine cannot call
at all get no plan (``None``) and stay on the pure-Python path: callbacks,
handles, a ``DynamicModule`` function with pointer parameters other than
``char *`` or a pointer result, signatures that do not fit in the argument
registers, structs over 16 bytes by value, and every by-value struct off
System V x86-64.
"""

from __future__ import annotations

import ctypes
import re
import sys
import types
from typing import Any

import _cffi_backend
from plugin_interface import CType, MethodSpec, TypeKind

from ._engine import ABI, _ext

__all__ = ["eightbyte_classes", "signature_plan", "trait_method_plan"]

#: A parameter plan: (kind, scalar code, item size, accepted buffer formats, struct plan, eightbyte classes).
ParamPlan = tuple[int, int, int, str, Any, str]

_SCALAR_NAMES = ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "Bool", "F32", "F64")


def _scalar_code(name: str) -> int | None:
    """The engine's code of a scalar marker (``Size`` is the unsigned integer of its width)."""
    if _ext is None:
        return None
    if name == "Size":
        name = f"U{8 * ctypes.sizeof(ctypes.c_size_t)}"
    if name not in _SCALAR_NAMES:
        return None
    code: int = getattr(_ext, f"S_{name.upper()}")
    return code


def _param(kind: int, code: int = 0, itemsize: int = 0, formats: str = "", struct: Any = None) -> ParamPlan:
    return (kind, code, itemsize, formats, struct, "")


def _struct_plan(spec: Any) -> tuple[int, Any, Any, tuple[Any, ...]] | None:
    """A struct's layout for the engine: (size, class, constructor, fields); ``None`` if it has none."""
    fields = []
    for f in spec.fields:
        nested = f.type if hasattr(f.type, "fields") else None
        inner: Any = None
        if nested is not None:
            code, stride, inner = 0, nested.size, _struct_plan(nested)
            if inner is None:
                return None
        else:
            scalar = _scalar_code(f.type.name)
            if scalar is None:
                return None
            code, stride = scalar, ctypes.sizeof(f.type.ctypes_types[0])
        fields.append((sys.intern(f.name), spec.offset(f.name), f.count, stride, code, inner))
    cls = spec.python_class
    return (spec.size, cls, cls if cls is not None else types.SimpleNamespace, tuple(fields))


def _flat_scalars(spec: Any, base: int = 0) -> list[tuple[int, str]]:
    """Every scalar of a struct, nested and array items included: (offset, marker name)."""
    out: list[tuple[int, str]] = []
    for f in spec.fields:
        nested = f.type if hasattr(f.type, "fields") else None
        stride = nested.size if nested is not None else ctypes.sizeof(f.type.ctypes_types[0])
        for k in range(f.count):
            at = base + spec.offset(f.name) + k * stride
            out += _flat_scalars(nested, at) if nested is not None else [(at, f.type.name)]
    return out


def eightbyte_classes(spec: Any) -> str:
    """How System V x86-64 passes a struct by value: ``"I"``/``"S"`` per eightbyte, or ``"M"`` (memory).

    An eightbyte holding only ``float``/``double`` goes in a vector register (SSE), any other in a
    general one (INTEGER); a struct over 16 bytes goes in memory.
    """
    if spec.size > 16:
        return "M"
    scalars = _flat_scalars(spec)
    classes = ""
    for k in range((spec.size + 7) // 8):
        inside = [name for at, name in scalars if 8 * k <= at < 8 * (k + 1)]
        classes += "S" if inside and all(name in ("F32", "F64") for name in inside) else "I"
    return classes


def _by_value(ctype: CType) -> str | None:
    """The eightbyte classes of a by-value struct the engine can pass, or ``None``."""
    if ABI != "sysv-x86_64":
        return None
    return eightbyte_classes(ctype.struct)


def _fits(params: list[ParamPlan], result: tuple[int, int, Any, str], flags: int) -> bool:
    """Whether the arguments fit in the argument registers (the engine refuses the rest)."""
    assert _ext is not None
    ints = 1 if flags & _ext.F_SELF else 0
    fps = 0
    ints += 1 if result[0] == _ext.R_STRUCT and result[3] == "M" else 0
    ints += 1 if result[0] == _ext.R_STATUS else 0
    for kind, code, _, _, _, classes in params:
        if kind == _ext.P_SCALAR:
            fps, ints = (fps + 1, ints) if code in (_ext.S_F32, _ext.S_F64) else (fps, ints + 1)
        elif kind in (_ext.P_BUFFER, _ext.P_MUTBUFFER, _ext.P_ARRAY, _ext.P_MUTARRAY):
            ints += 2
        elif kind == _ext.P_STRUCT:
            fps += classes.count("S")
            ints += classes.count("I")
        else:
            ints += 1
    return bool(ints <= _ext.INT_REGS and fps <= _ext.FP_REGS and len(params) <= _ext.MAX_PARAMS)


def trait_method_plan(method: MethodSpec, long_running: bool) -> tuple[Any, ...] | None:
    """The engine's plan for one trait method, or ``None`` when it stays on the Python path.

    :param long_running: release the GIL around the plugin call (the declaration's hint).
    """
    if _ext is None:
        return None
    e = _ext
    params: list[ParamPlan] = []
    for p in method.params:
        ctype, kind = p.ctype, p.ctype.kind
        if kind is TypeKind.SCALAR:
            code = _scalar_code(ctype.name)
            if code is None:
                return None
            params.append(_param(e.P_SCALAR, code))
        elif kind is TypeKind.CSTR:
            params.append(_param(e.P_CSTR))
        elif kind in (TypeKind.BUFFER, TypeKind.MUTBUFFER):
            params.append(_param(e.P_BUFFER if kind is TypeKind.BUFFER else e.P_MUTBUFFER))
        elif kind is TypeKind.OUT and ctype.struct is not None:  # Out[Point]: a new object after the call
            plan = _struct_plan(ctype.struct)
            if plan is None:
                return None
            params.append(_param(e.P_OUTSTRUCT, struct=plan))
        elif kind in (TypeKind.ARRAY, TypeKind.MUTARRAY, TypeKind.OUT):
            assert ctype.item is not None
            code = _scalar_code(ctype.item.name)
            if code is None:
                return None
            size = ctypes.sizeof(ctype.item.ctypes_types[0])
            if kind is TypeKind.OUT:
                params.append(_param(e.P_OUT, code))
            else:
                formats = "".join(sorted(ctype.item.buffer_formats))
                params.append(_param(e.P_ARRAY if kind is TypeKind.ARRAY else e.P_MUTARRAY, code, size, formats))
        elif kind in (TypeKind.STRUCT_REF, TypeKind.STRUCT_MUTREF):
            plan = _struct_plan(ctype.struct)
            if plan is None:
                return None
            params.append(_param(e.P_REF if kind is TypeKind.STRUCT_REF else e.P_MUTREF, struct=plan))
        elif kind is TypeKind.STRUCT:
            classes = _by_value(ctype)
            plan = _struct_plan(ctype.struct)
            if classes is None or classes == "M" or plan is None:
                return None
            params.append((e.P_STRUCT, 0, 0, "", plan, classes))
        else:  # callbacks, handles: the Python path
            return None
    returns = method.returns
    result: tuple[int, int, Any, str]
    if returns.kind is TypeKind.VOID:
        result = (e.R_VOID, 0, None, "")
    elif returns.kind is TypeKind.SCALAR:
        code = _scalar_code(returns.name)
        if code is None:
            return None
        result = (e.R_SCALAR, code, None, "")
    elif returns.kind is TypeKind.OWNEDSTR:
        result = (e.R_OWNEDSTR, 0, None, "")
    elif returns.kind is TypeKind.OWNEDBYTES:
        result = (e.R_OWNEDBYTES, 0, None, "")
    elif returns.kind is TypeKind.STATUS:
        result = (e.R_STATUS, 0, None, "")
    elif returns.kind is TypeKind.STRUCT:
        classes = _by_value(returns)
        plan = _struct_plan(returns.struct)
        if classes is None or plan is None:
            return None
        result = (e.R_STRUCT, 0, plan, classes)
    else:  # a handle
        return None
    flags = e.F_SELF | (e.F_RELEASE_GIL if long_running else 0)
    if not _fits(params, result, flags):
        return None
    return (tuple(params), result, flags)


_INTEGER_NAME = re.compile(
    r"^(?:(?:signed |unsigned )?(?:char|short|int|long|long long)(?: int)?|unsigned|signed|"
    r"u?int(?:_least|_fast)?(?:8|16|32|64)_t|u?intptr_t|u?intmax_t|ptrdiff_t|s?size_t)$"
)


def _c_scalar_code(ctype: Any) -> int | None:
    """The engine's code of a cffi primitive type, or ``None`` (plain ``char``, wide chars, ``long double``...)."""
    assert _ext is not None
    name = ctype.cname
    if name in ("float", "double"):
        return _scalar_code("F32" if name == "float" else "F64")
    if name == "_Bool":
        return _scalar_code("Bool")
    if name == "char" or not _INTEGER_NAME.match(name):
        return None
    size = _cffi_backend.sizeof(ctype)
    signed = int(_cffi_backend.cast(ctype, -1)) < 0
    return _scalar_code(f"{'I' if signed else 'U'}{8 * size}")


def signature_plan(ctype: Any, long_running: bool) -> tuple[Any, ...] | None:
    """The engine's plan for a C function type (cffi's), or ``None`` when it stays on the Python path.

    Scalars (integers, ``float``, ``double``, ``_Bool``) and ``char *`` parameters (``str`` or
    ``bytes``), and a scalar or ``void`` result.
    """
    if _ext is None:
        return None
    e = _ext
    params: list[ParamPlan] = []
    for arg in ctype.args:
        if arg.kind == "primitive":
            code = _c_scalar_code(arg)
            if code is None:
                return None
            params.append(_param(e.P_SCALAR, code))
        elif arg.kind == "pointer" and arg.item.kind == "primitive" and arg.item.cname == "char":
            params.append(_param(e.P_CHARP))
        else:
            return None
    result_type = ctype.result
    if result_type.kind == "void":
        result: tuple[int, int, Any, str] = (e.R_VOID, 0, None, "")
    elif result_type.kind == "primitive":
        code = _c_scalar_code(result_type)
        if code is None:
            return None
        result = (e.R_SCALAR, code, None, "")
    else:
        return None
    flags = e.F_RELEASE_GIL if long_running else 0
    if not _fits(params, result, flags):
        return None
    return (tuple(params), result, flags)
