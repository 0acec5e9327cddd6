"""Structs in trait declarations: declared once in Python, laid out as C lays them out.

>>> @plugin_struct
... class Point:
...     x: F64
...     y: F64

A field is a scalar marker, another struct, or ``FixedArray[T, n]`` (``T x[n]``).
The layout is C's natural one on this platform (what ctypes computes, and what
the generated header's ``_Static_assert``s check against the real compiler);
every field's name, type and offset, and the size, enter the struct's type
name and so the method fingerprints: a changed layout is a changed ABI.

A parameter ``Point`` passes the struct by value; ``Ref[Point]`` passes
``const Point *`` (in), ``MutRef[Point]`` passes ``Point *`` (in/out: the
fields the plugin wrote are copied back into the Python object); a ``Point``
result comes back as a new object.  The Python object is an instance of the
decorated class (a dataclass), or anything with the fields as attributes.
"""

from __future__ import annotations

import ctypes
import re
import typing
from typing import Any, TypeVar

from ._record import Record, setfield
from ._types import CType, TypeKind, _Generic, ctype_by_name, ctype_for_annotation, register_structs, set_struct_parser

__all__ = ["FixedArray", "MutRef", "Ref", "StructField", "StructSpec", "plugin_struct", "struct_of"]

T = TypeVar("T")


class StructField(Record):
    """One field: its name, its type (a scalar ``CType`` or a ``StructSpec``), its count (1, or n for ``T x[n]``)."""

    __slots__ = ("count", "name", "type")
    name: str
    type: CType | StructSpec
    count: int

    def __init__(self, name: str, type: CType | StructSpec, count: int = 1) -> None:
        setfield(self, "name", name)
        setfield(self, "type", type)
        setfield(self, "count", count)

    def c_declaration(self) -> str:
        base = self.type.name if isinstance(self.type, StructSpec) else self.type.c_params[0].removesuffix(" {name}")
        return f"{base} {self.name}" + (f"[{self.count}]" if self.count > 1 else "")

    def ctypes_type(self) -> Any:
        base = self.type.mirror if isinstance(self.type, StructSpec) else self.type.ctypes_types[0]
        return base * self.count if self.count > 1 else base

    def type_text(self) -> str:
        base = self.type.type_name if isinstance(self.type, StructSpec) else self.type.name
        return f"{base}[{self.count}]" if self.count > 1 else base


class StructSpec(Record, uncompared=("python_class",)):
    """A declared struct: name, fields in order, and the C layout they get here."""

    __slots__ = ("fields", "name", "python_class")
    name: str
    fields: tuple[StructField, ...]
    python_class: type | None

    def __init__(self, name: str, fields: tuple[StructField, ...], python_class: type | None = None) -> None:
        setfield(self, "name", name)
        setfield(self, "fields", fields)
        setfield(self, "python_class", python_class)

    @property
    def mirror(self) -> type[ctypes.Structure]:
        """The ctypes mirror (its offsets and size are the C compiler's)."""
        return _mirror(self)

    @property
    def size(self) -> int:
        return ctypes.sizeof(self.mirror)

    def offset(self, field: str) -> int:
        return int(getattr(self.mirror, field).offset)

    @property
    def type_name(self) -> str:
        """The struct as a type name: every field, its type and offset, and the size (what fingerprints hash)."""
        fields = ",".join(f"{f.name}:{f.type_text()}@{self.offset(f.name)}" for f in self.fields)
        return f"{self.name}{{{fields}}}#{self.size}"

    def c_definition(self) -> list[str]:
        """``typedef struct`` plus a ``_Static_assert`` per field offset and for the size."""
        out = [
            f"typedef struct {self.name} {{",
            *(f"    {f.c_declaration()};" for f in self.fields),
            f"}} {self.name};",
        ]
        for f in self.fields:
            out.append(
                f"PLUGIN_STATIC_ASSERT(offsetof({self.name}, {f.name}) == {self.offset(f.name)}, "
                f'"{self.name}.{f.name}: the host expects offset {self.offset(f.name)}");'
            )
        size = f"sizeof({self.name}) == {self.size}"
        out.append(f'PLUGIN_STATIC_ASSERT({size}, "{self.name}: the host expects {self.size} bytes");')
        return out

    def cdef(self) -> str:
        """The struct for cffi (``typedef struct {...} Name;``)."""
        return f"typedef struct {self.name} {{ {' '.join(f.c_declaration() + ';' for f in self.fields)} }} {self.name};"

    def nested(self) -> list[StructSpec]:
        """This struct's struct fields, deepest first, then itself (the order C needs them in)."""
        out: list[StructSpec] = []
        for f in self.fields:
            if isinstance(f.type, StructSpec):
                out += [s for s in f.type.nested() if s not in out]
        return [*out, self]


_MIRRORS: dict[StructSpec, type[ctypes.Structure]] = {}


def _mirror(spec: StructSpec) -> type[ctypes.Structure]:
    mirror = _MIRRORS.get(spec)
    if mirror is None:
        fields = [(f.name, f.ctypes_type()) for f in spec.fields]
        mirror = _MIRRORS[spec] = type(spec.name, (ctypes.Structure,), {"_fields_": fields})
    return mirror


class _Fixed:
    def __class_getitem__(cls, item: tuple[object, int]) -> _Generic:
        marker, count = item
        if not isinstance(count, int) or count < 1:
            raise TypeError(f"FixedArray[T, n] needs a count >= 1, got {count!r}")
        return _Generic(TypeKind.SCALAR, ("fixed", marker, count))


class FixedArray(_Fixed):
    """``FixedArray[F32, 4]`` (struct field): ``float x[4]``; a sequence of 4 floats in Python."""


class Ref:
    """``Ref[Point]`` (parameter): ``const Point *x``: the struct, passed by pointer, read only."""

    def __class_getitem__(cls, item: object) -> _Generic:
        return _Generic(TypeKind.STRUCT_REF, item)


class MutRef:
    """``MutRef[Point]`` (parameter): ``Point *x``: in/out; the plugin's writes are copied back."""

    def __class_getitem__(cls, item: object) -> _Generic:
        return _Generic(TypeKind.STRUCT_MUTREF, item)


def struct_of(marker: object) -> StructSpec | None:
    """The :class:`StructSpec` of a class decorated with :func:`plugin_struct`, or ``None``."""
    spec = getattr(marker, "__plugin_struct__", None)
    return spec if isinstance(spec, StructSpec) else None


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def plugin_struct(cls: type[T]) -> type[T]:
    """Declare a struct from a class whose annotations are the fields, in order (a class decorator).

    The class becomes a dataclass (so ``Point(1.0, 2.0)`` builds one) with ``__plugin_struct__``.

    :raises TypeError: a field that is not a scalar, a struct or ``FixedArray[T, n]``.
    """
    if not _NAME.match(cls.__name__):
        raise TypeError(f"struct name {cls.__name__!r} must be letters and digits (it goes into C)")
    hints = typing.get_type_hints(cls)
    fields: list[StructField] = []
    for name, annotation in hints.items():
        if (
            isinstance(annotation, _Generic)
            and isinstance(annotation.item, tuple)
            and annotation.item[:1] == ("fixed",)
        ):
            _, marker, count = annotation.item
            item = struct_of(marker) or ctype_for_annotation(marker)
            if item is None or (isinstance(item, CType) and item.kind is not TypeKind.SCALAR):
                raise TypeError(f"{cls.__name__}.{name}: FixedArray of {marker!r}, which is not a scalar or struct")
            fields.append(StructField(name, item, count))
            continue
        nested = struct_of(annotation)
        scalar = ctype_for_annotation(annotation)
        if nested is not None:
            fields.append(StructField(name, nested))
        elif scalar is not None and scalar.kind is TypeKind.SCALAR:
            fields.append(StructField(name, scalar))
        else:
            raise TypeError(
                f"{cls.__name__}.{name}: {annotation!r} is not a scalar marker, a struct or FixedArray[T, n]"
            )
    if not fields:
        raise TypeError(f"struct {cls.__name__} has no fields")
    import dataclasses  # the user's struct becomes a dataclass; the package's own classes import no dataclasses

    data_class = dataclasses.dataclass(cls)
    spec = StructSpec(cls.__name__, tuple(fields), data_class)
    data_class.__plugin_struct__ = spec  # type: ignore[attr-defined]
    register_structs(spec)
    return data_class


def parse_struct(text: str) -> StructSpec:
    """A struct from its type name, its offsets and size checked against this platform's layout.

    :raises KeyError: not a struct type name, or one laid out differently here.
    """

    def parse(i: int) -> tuple[Any, int]:
        m = re.compile(r"([A-Za-z][A-Za-z0-9]*)\{").match(text, i)
        if m is None:
            raise KeyError(text)
        name, i = m.group(1), m.end()
        fields, offsets = [], []
        while text[i] != "}":
            f = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):").match(text, i)
            if f is None:
                raise KeyError(text)
            i = f.end()
            if re.compile(r"[A-Za-z][A-Za-z0-9]*\{").match(text, i):
                ftype, i = parse(i)
            else:
                t = re.compile(r"[A-Za-z0-9]+").match(text, i)
                if t is None:
                    raise KeyError(text)
                ftype, i = ctype_by_name(t.group(0)), t.end()
            count = 1
            c = re.compile(r"\[(\d{1,6})\]").match(text, i)
            if c:
                count, i = int(c.group(1)), c.end()
            o = re.compile(r"@(\d{1,9})").match(text, i)
            if o is None:
                raise KeyError(text)
            offsets.append(int(o.group(1)))
            i = o.end()
            fields.append(StructField(f.group(1), ftype, count))
            if text[i] == ",":
                i += 1
        sz = re.compile(r"\}#(\d{1,9})").match(text, i)
        if sz is None:
            raise KeyError(text)
        spec = StructSpec(name, tuple(fields))
        if spec.type_name != text[m.start() : sz.end()]:
            raise KeyError(f"{text}: laid out differently on this platform ({spec.type_name})")
        return spec, sz.end()

    try:
        spec, end = parse(0)
    except IndexError as e:
        raise KeyError(text) from e
    if end != len(text) or not isinstance(spec, StructSpec):
        raise KeyError(text)
    return spec


set_struct_parser(parse_struct)
