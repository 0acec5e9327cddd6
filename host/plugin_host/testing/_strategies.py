"""Hypothesis strategies derived from a trait declaration.

Every value is what a proxy method takes, of the declared type, with the
cases native code gets wrong drawn often:

- integers: the type's whole range, and its boundaries (min, min + 1, -1, 0,
  1, max - 1, max) half of the time;
- floats: the width's whole range with NaN, infinities and subnormals;
- ``CStr``: any text a C string can carry (no NUL, no lone surrogate), with
  non-ASCII, combining marks, right-to-left overrides, ``printf`` directives
  and a long string among the edge cases;
- ``Buffer``/``MutBuffer``: bytes of any length, empty included;
- ``Array[T]``/``MutArray[T]``: sequences of T of any length, empty included,
  as ``array.array`` (``Bool``: a ctypes array);
- structs (by value, ``Ref``, ``MutRef``): the declared class, field by field
  (``FixedArray`` fields of exactly their length, nested structs recursively);
- ``Callback[[...], R]``: a callable that returns a drawn ``R``.

``Out[T]`` parameters are not arguments (the proxy returns them), and methods
that take a ``Handle`` or a ``Drop`` are left out: their objects come from the
plugin, not from Hypothesis.
"""

from __future__ import annotations

import array
import ctypes
import functools
from typing import Any

from hypothesis import strategies as st
from plugin_interface import CType, MethodSpec, StructSpec, TraitLike, TypeKind, resolve_trait
from plugin_interface._types import ctype_for_annotation

__all__ = ["CSTR_EDGE_CASES", "Returns", "strategies_for", "strategy_for", "unsupported_reason"]

#: Strings that have broken C code before: empty, non-ASCII in each UTF-8 length, combining and
#: bidirectional marks, the largest code point, format directives, a long one.
CSTR_EDGE_CASES = (
    "",
    " ",
    "é",
    "日本語",
    "😀",
    "a\u0301",
    "\u202eevil",
    "\U0010ffff",
    "%s%s%s%n",
    "\\",
    "\n\t\r",
    "x" * 4097,
)
_RANGES = {
    "I8": (-(2**7), 2**7 - 1),
    "I16": (-(2**15), 2**15 - 1),
    "I32": (-(2**31), 2**31 - 1),
    "I64": (-(2**63), 2**63 - 1),
    "U8": (0, 2**8 - 1),
    "U16": (0, 2**16 - 1),
    "U32": (0, 2**32 - 1),
    "U64": (0, 2**64 - 1),
    "Size": (0, 2 ** (8 * ctypes.sizeof(ctypes.c_size_t)) - 1),
}


class Returns:
    """A callback for a ``Callback[[...], R]`` parameter: returns ``value`` whatever it is given.

    :ivar calls: the arguments of every call, in order.
    """

    def __init__(self, value: object) -> None:
        self.value = value
        self.calls: list[tuple[object, ...]] = []

    def __call__(self, *args: object) -> object:
        self.calls.append(args)
        return self.value

    def __repr__(self) -> str:
        return f"Returns({self.value!r})"


def _integers(name: str) -> st.SearchStrategy[int]:
    low, high = _RANGES[name]
    edges = sorted({low, low + 1, -1 if low < 0 else low, 0, 1, high - 1, high}, key=abs)
    # The plain range first: shrinking moves towards the first branch, so towards 0.
    return st.one_of(st.integers(low, high), st.sampled_from(edges))


def _scalar(ctype: CType) -> st.SearchStrategy[Any]:
    if ctype.name in _RANGES:
        return _integers(ctype.name)
    if ctype.name == "F32":
        return st.floats(width=32)
    if ctype.name == "F64":
        return st.floats()
    if ctype.name == "Bool":
        return st.booleans()
    raise ValueError(f"no strategy for scalar {ctype.name}")


@functools.cache
def _typecode(item: CType) -> str | None:
    """The ``array.array`` type code whose items are ``item`` (``None`` for Bool: there is none)."""
    for code in "bBhHiIqQlLfd":  # q before l: 8 bytes everywhere (l is 4 on Windows)
        if code in item.buffer_formats and array.array(code).itemsize == ctypes.sizeof(item.ctypes_types[0]):
            return code
    return None


class _BoolArray:
    """Builds ``Bool`` arrays: ctypes arrays of ``c_bool`` with a readable ``repr``."""

    @staticmethod
    @functools.cache
    def type_of(length: int) -> Any:
        base = ctypes.c_bool * length
        return type(f"BoolArray{length}", (base,), {"__repr__": lambda self: f"bool_array({list(self)!r})"})

    @classmethod
    def make(cls, values: list[bool]) -> Any:
        return cls.type_of(len(values))(*values)


def _array(ctype: CType) -> st.SearchStrategy[Any]:
    item = ctype.item
    assert item is not None
    code = _typecode(item)
    items = st.lists(_scalar(item))
    if code is None:
        return items.map(_BoolArray.make)
    return items.map(functools.partial(array.array, code))


def _struct(spec: StructSpec) -> st.SearchStrategy[Any]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in spec.fields:
        one = _struct(f.type) if isinstance(f.type, StructSpec) else _scalar(f.type)
        fields[f.name] = st.lists(one, min_size=f.count, max_size=f.count) if f.count > 1 else one
    if spec.python_class is not None:
        return st.builds(spec.python_class, **fields)
    return st.fixed_dictionaries(fields)


def unsupported_reason(ctype: CType) -> str | None:
    """Why ``ctype`` gets no strategy (``None``: it gets one)."""
    if ctype.kind in (TypeKind.HANDLE, TypeKind.DROP):
        return f"{ctype.name}: the object comes from the plugin"
    if ctype.kind is TypeKind.OUT:
        return f"{ctype.name}: not an argument (the proxy returns it)"
    return None


def strategy_for(marker: CType | object) -> st.SearchStrategy[Any]:
    """The strategy of one parameter type: a :class:`~plugin_interface.CType` or a marker (``CStr``, ``Array[I32]``).

    :raises ValueError: for a type that gets none (``Handle``, ``Drop``, ``Out``; see :func:`unsupported_reason`).
    """
    ctype = marker if isinstance(marker, CType) else ctype_for_annotation(marker)
    if ctype is None:
        raise ValueError(f"{marker!r} is not a type marker")
    reason = unsupported_reason(ctype)
    if reason is not None:
        raise ValueError(f"no strategy for {reason}")
    kind = ctype.kind
    if kind is TypeKind.SCALAR:
        return _scalar(ctype)
    if kind is TypeKind.CSTR:
        text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
        return st.one_of(text, st.sampled_from(CSTR_EDGE_CASES))
    if kind is TypeKind.BUFFER:
        return st.binary()
    if kind is TypeKind.MUTBUFFER:
        return st.binary().map(bytearray)
    if kind in (TypeKind.ARRAY, TypeKind.MUTARRAY):
        return _array(ctype)
    if kind in (TypeKind.STRUCT, TypeKind.STRUCT_REF, TypeKind.STRUCT_MUTREF):
        return _struct(ctype.struct)
    if kind is TypeKind.CALLBACK:
        result = ctype.signature[-1]
        value = st.just(None) if result.kind is TypeKind.VOID else _scalar(result)
        return value.map(Returns)
    raise ValueError(f"no strategy for {ctype.name}")


def method_strategy(method: MethodSpec) -> st.SearchStrategy[dict[str, Any]] | None:
    """The keyword arguments of one method (``None`` when a parameter has no strategy)."""
    params = [p for p in method.params if p.ctype.kind is not TypeKind.OUT]
    if any(unsupported_reason(p.ctype) for p in params):
        return None
    return st.fixed_dictionaries({p.name: strategy_for(p.ctype) for p in params})


def strategies_for(trait: TraitLike) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """Per method of ``trait``, a strategy of its keyword arguments (``proxy.method(**kwargs)``).

    Methods that take a ``Handle`` or ``Drop`` are left out (see the module's docstring).

    >>> from hypothesis import given
    >>> @given(strategies_for("Greeter")["greet"])
    ... def test_greet(kwargs): ...
    """
    spec = resolve_trait(trait)
    out: dict[str, st.SearchStrategy[dict[str, Any]]] = {}
    for method in spec.methods:
        strategy = method_strategy(method)
        if strategy is not None:
            out[method.name] = strategy
    return out
