"""Trait declarations: each trait is declared once, in Python.

A trait is a :class:`typing.Protocol` whose methods are annotated with the C
type markers of :mod:`plugin_interface._types`, decorated with
:func:`declare_trait`.  The C header (``plugin_annotations`` generates it), the
ctypes vtable mirror and the host's typed proxy are all derived from that one
declaration, in the order the methods are written (the vtable order).

A later version of a trait may only *append* methods; see the README's
compatibility rule.

**Long-running methods.**  A compiled proxy call (the host's call engine)
keeps the GIL while the plugin runs, since releasing and taking it back costs
more than a short call: other Python threads wait meanwhile.  A method that
blocks or runs long says so -- ``@long_running`` on the method, or
``declare_trait(long_running=True)`` for all of a trait's -- and the host
releases the GIL around its calls.  The hint is not ABI: it enters neither
the signature nor the fingerprint, and two declarations that differ only in it
are equal.  (The pure-Python path always releases the GIL: cffi does.)
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from ._errors import UnknownTraitError
from ._record import Record, setfield
from ._types import CStr, CType, MutBuffer, OwnedStr, Size, TypeKind, ctype_by_name, ctype_for_annotation

__all__ = [
    "Greeter",
    "long_running",
    "MethodChange",
    "MethodSpec",
    "ParamSpec",
    "PluginTrait",
    "TraitSpec",
    "Transformer",
    "declare_trait",
    "RESERVED_METHOD_NAMES",
    "declared_trait_versions",
    "declared_traits",
    "method_changes",
    "resolve_trait",
]

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


try:  # SHA-256 alone: ``hashlib`` loads OpenSSL's bindings and every other algorithm's module
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found]  # CPython 3.11
except ImportError:  # 3.12+ merged it into _sha2
    try:
        from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]  # 3.12+
    except ImportError:  # a Python without its own hashes (OpenSSL's only)
        from hashlib import sha256 as _sha256


def _fingerprint(text: str) -> int:
    return int.from_bytes(_sha256(text.encode()).digest()[:8], "little")


class ParamSpec(Record):
    """One declared parameter (after ``self``)."""

    __slots__ = ("ctype", "name")
    name: str
    ctype: CType

    def __init__(self, name: str, ctype: CType) -> None:
        setfield(self, "name", name)
        setfield(self, "ctype", ctype)


class MethodSpec(Record, uncompared=("doc", "long_running")):  # no __slots__: the fingerprint is a cached_property
    """One vtable entry."""

    name: str
    params: tuple[ParamSpec, ...]
    returns: CType
    doc: str  # documentation, not ABI
    #: The host releases the GIL around calls of this method (see "Long-running methods"); not ABI.
    long_running: bool

    def __init__(
        self, name: str, params: tuple[ParamSpec, ...], returns: CType, doc: str = "", long_running: bool = False
    ) -> None:
        setfield(self, "name", name)
        setfield(self, "params", params)
        setfield(self, "returns", returns)
        setfield(self, "doc", doc)
        setfield(self, "long_running", long_running)

    @property
    def c_params(self) -> list[str]:
        """The C parameter declarations, ``void *self`` first (and ``char **error`` last for a ``Status``)."""
        out = ["void *self"]
        for p in self.params:
            out.extend(decl.format(name=p.name) for decl in p.ctype.c_params)
        if self.returns.kind is TypeKind.STATUS:
            out.append("char **error")
        return out

    @property
    def cffi_type(self) -> str:
        """The cffi spelling of the function pointer type."""
        args = ["void *"]
        for p in self.params:
            args.extend(p.ctype.cffi)
        if self.returns.kind is TypeKind.STATUS:
            args.append("char **")
        return f"{self.returns.cffi[0]}(*)({', '.join(args)})"

    @property
    def signature(self) -> str:
        """Canonical text of the signature; what the fingerprint hashes."""
        params = ", ".join(f"{p.ctype.name} {p.name}" for p in self.params)
        return f"{self.name}({params}) -> {self.returns.name}"

    @functools.cached_property
    def fingerprint(self) -> int:
        """64-bit fingerprint of :attr:`signature` alone (one vtable slot).

        A plugin's descriptor lists these in vtable order, so a host can check
        the methods it knows even when the plugin's trait version appends more.
        """
        return _fingerprint(self.signature)


class TraitSpec(Record, uncompared=("doc", "source", "long_running")):  # no __slots__: cached_property
    """A declared trait: name, version and vtable methods in order.

    :ivar name: the trait name used in symbols (``plugin_register_<name>_...``).
    :ivar version: the trait version stored in every registration.
    :ivar methods: the vtable entries, in declaration order.
    """

    name: str
    version: int
    methods: tuple[MethodSpec, ...]
    doc: str  # documentation, not ABI
    #: Where it was declared, ``"package.module:Class"`` (empty when built from data).
    source: str
    #: Every method is long-running (see "Long-running methods"); not ABI.
    long_running: bool

    def __init__(
        self,
        name: str,
        version: int,
        methods: tuple[MethodSpec, ...],
        doc: str = "",
        source: str = "",
        long_running: bool = False,
    ) -> None:
        setfield(self, "name", name)
        setfield(self, "version", version)
        setfield(self, "methods", methods)
        setfield(self, "doc", doc)
        setfield(self, "source", source)
        setfield(self, "long_running", long_running)

    def __hash__(self) -> int:
        # Specs are dict keys and cache keys on hot paths: hash the identity
        # (name, version) rather than the whole method tuple; equal specs agree.
        return hash((self.name, self.version))

    @functools.cached_property
    def fingerprint(self) -> int:
        """64-bit fingerprint of the method signatures (the vtable layout)."""
        return _fingerprint(";".join(m.signature for m in self.methods))

    @functools.cached_property
    def method_fingerprints(self) -> tuple[int, ...]:
        """:attr:`MethodSpec.fingerprint` of each method, in vtable order."""
        return tuple(m.fingerprint for m in self.methods)

    @property
    def vtable_name(self) -> str:
        """The C struct name of the vtable (``GreeterVTable``)."""
        return f"{self.name}VTable"

    @property
    def header_name(self) -> str:
        """File name of the generated C header (``plugin_trait_greeter.h``)."""
        return f"plugin_trait_{self.name.lower()}.h"

    def method(self, name: str) -> MethodSpec:
        """The method called ``name``; :raises KeyError: if there is none."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"trait {self.name} has no method {name!r}")

    def is_long_running(self, method: MethodSpec) -> bool:
        """Whether calls of ``method`` release the GIL (the method's hint or the trait's)."""
        return self.long_running or method.long_running

    def to_json(self) -> dict[str, object]:
        """The declaration as plain data (what the probe child and dumps carry); see :meth:`from_json`.

        A long-running hint appears (``"long_running": true``) only where one is given, so the
        declarations of traits without one are what they always were.
        """
        methods: list[dict[str, object]] = []
        for m in self.methods:
            entry: dict[str, object] = {
                "name": m.name,
                "params": [[p.name, p.ctype.name] for p in m.params],
                "returns": m.returns.name,
            }
            if m.long_running:
                entry["long_running"] = True
            methods.append(entry)
        data: dict[str, object] = {"name": self.name, "version": self.version, "methods": methods}
        if self.long_running:
            data["long_running"] = True
        return data

    @classmethod
    def from_json(cls, data: object) -> TraitSpec:
        """Rebuild a declaration from :meth:`to_json` output (not registered: see :func:`declared_traits`).

        :raises ValueError: if ``data`` is not such a declaration.
        """
        try:
            if not isinstance(data, dict):
                raise TypeError("not an object")
            name, version, methods = data["name"], data["version"], data["methods"]
            if not isinstance(name, str) or not _IDENTIFIER.match(name):
                raise TypeError(f"bad trait name {name!r}")
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise TypeError(f"bad trait version {version!r}")
            specs = []
            for m in methods:
                params = tuple(ParamSpec(str(pname), ctype_by_name(str(ctype))) for pname, ctype in m["params"])
                hint = _hint(m, f"method {m['name']!r}")
                specs.append(MethodSpec(str(m["name"]), params, ctype_by_name(str(m["returns"])), "", hint))
            check_names(name, specs)  # the same rules as a Python declaration: the names become code
            _check_handles(name, tuple(specs))
            return cls(name, version, tuple(specs), long_running=_hint(data, "the trait"))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a trait declaration: {e}") from e


def _hint(data: dict[str, object], what: str) -> bool:
    """The optional ``"long_running"`` of a declaration's object (absent: ``False``)."""
    hint = data.get("long_running", False)
    if not isinstance(hint, bool):
        raise TypeError(f"{what}: long_running is {hint!r}, not true or false")
    return hint


#: Every declared trait, by (name, version): several versions of one trait may
#: live in one process (a test loads a v1 plugin into a v2 host and back).
_REGISTRY: dict[tuple[str, int], TraitSpec] = {}


class MethodChange(Record):
    """One difference between two declarations of a trait, by vtable slot.

    :ivar kind: ``"added"``, ``"removed"`` or ``"changed"``.
    :ivar index: the vtable slot (0 is the first method).
    :ivar old: the method in the first declaration (``None`` when added).
    :ivar new: the method in the second (``None`` when removed).
    :ivar detail: what changed, in words (``"parameter 1 `text` changed from CStr to I32"``).
    """

    __slots__ = ("detail", "index", "kind", "new", "old")
    kind: str
    index: int
    old: MethodSpec | None
    new: MethodSpec | None
    detail: str

    def __init__(self, kind: str, index: int, old: MethodSpec | None, new: MethodSpec | None, detail: str) -> None:
        setfield(self, "kind", kind)
        setfield(self, "index", index)
        setfield(self, "old", old)
        setfield(self, "new", new)
        setfield(self, "detail", detail)

    @property
    def name(self) -> str:
        """The method's name (the old one, when it was renamed)."""
        method = self.old or self.new
        assert method is not None
        return method.name


def method_changes(old: TraitSpec, new: TraitSpec) -> list[MethodChange]:
    """How ``new`` differs from ``old``, method by method in vtable order (empty when the signatures agree)."""
    changes: list[MethodChange] = []
    for i, (a, b) in enumerate(zip(old.methods, new.methods, strict=False)):
        if a.signature == b.signature:
            continue
        details = []
        if a.name != b.name:
            details.append(f"renamed from `{a.name}` to `{b.name}`")
        for j, (pa, pb) in enumerate(zip(a.params, b.params, strict=False), start=1):
            if pa.ctype.name != pb.ctype.name:
                details.append(f"parameter {j} `{pa.name}` changed from {pa.ctype.name} to {pb.ctype.name}")
            elif pa.name != pb.name:
                details.append(f"parameter {j} renamed from `{pa.name}` to `{pb.name}`")
        for j, pb in enumerate(b.params[len(a.params) :], start=len(a.params) + 1):
            details.append(f"parameter {j} `{pb.name}` ({pb.ctype.name}) added")
        for j, pa in enumerate(a.params[len(b.params) :], start=len(b.params) + 1):
            details.append(f"parameter {j} `{pa.name}` ({pa.ctype.name}) removed")
        if a.returns.name != b.returns.name:
            details.append(f"returns {b.returns.name} instead of {a.returns.name}")
        changes.append(MethodChange("changed", i, a, b, "; ".join(details)))
    for i, a in enumerate(old.methods[len(new.methods) :], start=len(new.methods)):
        changes.append(MethodChange("removed", i, a, None, f"method `{a.name}` removed ({a.signature})"))
    for i, b in enumerate(new.methods[len(old.methods) :], start=len(old.methods)):
        changes.append(MethodChange("added", i, None, b, f"method `{b.name}` added ({b.signature})"))
    return changes


#: Attribute names every proxy has of its own; a trait method may not take one
#: (``plugin_host``'s TraitProxy asserts at import that it adds no other).
RESERVED_METHOD_NAMES = frozenset({"type_name", "trait", "path", "is_alive", "has_method"})
#: Names a method (or parameter) cannot have in C: the vtable's own ``size`` field, and C's keywords.
C_RESERVED_NAMES = frozenset(
    {"size"}
    | set(
        "auto break case char const continue default do double else enum extern float for goto if inline int long "
        "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile "
        "while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local "
        "bool true false".split()
    )
)

P = TypeVar("P")


def check_names(trait: str, methods: Sequence[MethodSpec]) -> None:
    """Refuse method and parameter names a proxy or C cannot have (the rules of :func:`declare_trait`).

    :raises ValueError: naming the trait, the method and the name.
    """
    seen: set[str] = set()
    for m in methods:
        if not _C_IDENTIFIER.match(m.name) or m.name.startswith("_") or m.name in seen:
            raise ValueError(f"{trait}.{m.name!r}: not a usable method name (a C identifier, unique, no leading _)")
        if m.name in C_RESERVED_NAMES or m.name in RESERVED_METHOD_NAMES:
            raise ValueError(
                f"{trait}.{m.name}: the name is reserved (the vtable's size, C keywords, proxy attributes)"
            )
        seen.add(m.name)
        names = [p.name for p in m.params]
        for p in names:
            if not _C_IDENTIFIER.match(p) or p.startswith("_") or p == "self" or p in C_RESERVED_NAMES - {"size"}:
                raise ValueError(f"{trait}.{m.name}: parameter {p!r} is not usable (a C identifier, not self, no _)")
        if len(set(names)) != len(names):
            raise ValueError(f"{trait}.{m.name}: two parameters share a name")


#: Attributes a method may have and still be read off its code object (what :func:`long_running` sets).
_PLAIN_ATTRIBUTES = frozenset({"__plugin_long_running__"})
_STAR_FLAGS = 0x04 | 0x08  # CO_VARARGS, CO_VARKEYWORDS


def _parameter_names(func: types.FunctionType) -> list[str]:
    """``list(inspect.signature(func).parameters)``, without importing ``inspect`` for a plain function.

    Plain: no attribute ``inspect`` reads (``__wrapped__``, ``__signature__``, ...: none but the long-running
    hint), and only positional-or-keyword parameters; then the names are the code's first ``co_argcount``
    variables.  Any other function is left to ``inspect`` (``tests/test_traits.py`` holds the two to agree).
    """
    code = func.__code__
    if _PLAIN_ATTRIBUTES.issuperset(func.__dict__) and not (
        code.co_posonlyargcount or code.co_kwonlyargcount or code.co_flags & _STAR_FLAGS
    ):
        return list(code.co_varnames[: code.co_argcount])
    import inspect  # only for what the code object does not say alone (costs more than this module's import)

    return list(inspect.signature(func).parameters)


def _doc(obj: object) -> str:
    """``inspect.getdoc(obj) or ""``, without importing ``inspect`` for a docstring of one line.

    For one line (no ``\n``), ``inspect.cleandoc`` expands tabs and strips the line's leading whitespace
    (3.11, 3.12: any; 3.13+: spaces), and a blank result is dropped: past the spaces, a line that does not start
    with other whitespace is the same on every version.  Anything else (no docstring: ``inspect`` looks for an
    inherited one; several lines) is left to ``inspect``.
    """
    doc = obj.__doc__
    if isinstance(doc, str) and "\n" not in doc:
        line = doc.expandtabs().lstrip(" ")
        if not line[:1].isspace():
            return line
    import inspect  # only for what one line does not settle (costs more than this module's import)

    return inspect.getdoc(obj) or ""


def _method_spec(trait: str, name: str, func: types.FunctionType) -> MethodSpec:
    hints = typing.get_type_hints(func)
    params: list[ParamSpec] = []
    for i, pname in enumerate(_parameter_names(func)):
        if i == 0:
            if pname != "self":
                raise TypeError(f"{trait}.{name}: first parameter must be self")
            continue
        if not _C_IDENTIFIER.match(pname) or pname.startswith("_") or pname in C_RESERVED_NAMES - {"size"}:
            raise TypeError(f"{trait}.{name}: parameter {pname!r} is not a C identifier without a leading _")
        ctype = ctype_for_annotation(hints.get(pname))
        if ctype is None or not ctype.c_params:
            raise TypeError(
                f"{trait}.{name}: parameter {pname!r} has annotation {hints.get(pname)!r}, "
                "which is not a parameter marker (CStr, Buffer, MutBuffer, I32, Array[F32], Out[I64], ...)"
            )
        params.append(ParamSpec(pname, ctype))
    returns = ctype_for_annotation(hints.get("return", None))
    if returns is None or returns.c_return is None:
        raise TypeError(
            f"{trait}.{name}: return annotation {hints.get('return')!r} is not a return "
            "marker (OwnedStr, OwnedBytes, Status, I32, ..., None)"
        )
    hint = getattr(func, "__plugin_long_running__", False) is True
    return MethodSpec(name, tuple(params), returns, _doc(func), hint)


F = TypeVar("F", bound=Callable[..., object])


def long_running(func: F) -> F:
    """Mark a trait method long-running: the host releases the GIL around its calls.

    For a method that blocks (waits on I/O, a lock, another thread) or runs for
    long; see "Long-running methods" above.  Use under ``@declare_trait``::

        @long_running
        def compress(self, data: Buffer) -> OwnedBytes: ...
    """
    func.__plugin_long_running__ = True  # type: ignore[attr-defined]
    return func


def _check_handles(trait: str, methods: tuple[MethodSpec, ...]) -> None:
    """Every handle kind a trait hands out has exactly one method that destroys it (its only parameter a Drop)."""
    types = [c for m in methods for c in (m.returns, *(p.ctype for p in m.params))]
    kinds = {c.name.removeprefix("Handle[").rstrip("]") for c in types if c.kind is TypeKind.HANDLE}
    for kind in sorted(kinds):
        drops = [m.name for m in methods if [p.ctype.name for p in m.params] == [f"Drop[{kind}]"]]
        if len(drops) != 1:
            found = f"found {', '.join(drops)}" if drops else "found none"
            msg = (
                f"trait {trait}: Handle[{kind}] needs exactly one method whose only parameter is Drop[{kind}] ({found})"
            )
            raise TypeError(msg)


def declare_trait(
    *, version: int = 1, name: str | None = None, long_running: bool = False
) -> Callable[[type[P]], type[P]]:
    """Declare a trait from a Protocol class (use as a class decorator).

    :param version: the trait version (>= 1).
    :param name: the trait name in C symbols; defaults to the class name.
    :param long_running: every method blocks or runs long: the host releases
        the GIL around their calls (one method: :func:`long_running`).
    :returns: the decorator; the class gains ``__plugin_trait__`` (a :class:`TraitSpec`).
    :raises TypeError: if a method is not annotated with the type markers.
    :raises ValueError: if the same name and version was declared differently, or a
        method takes a name every proxy has of its own (:data:`RESERVED_METHOD_NAMES`).
    """
    if version < 1:
        raise ValueError(f"trait version must be >= 1, got {version}")

    def decorate(cls: type[P]) -> type[P]:
        tname = name or cls.__name__
        if not _IDENTIFIER.match(tname):
            raise ValueError(f"trait name {tname!r} must be letters and digits (it goes into C symbols)")
        # What inspect.isfunction is (its import costs more than this module's).
        functions = [(attr, value) for attr, value in vars(cls).items() if isinstance(value, types.FunctionType)]
        for attr, _ in functions:
            if attr in C_RESERVED_NAMES:
                msg = f"{tname}.{attr}: a method cannot be called {attr!r} in C (the vtable's size field, or a keyword)"
                raise ValueError(msg)
            if attr in RESERVED_METHOD_NAMES:
                reserved = ", ".join(sorted(RESERVED_METHOD_NAMES))
                msg = f"{tname}.{attr}: the name is taken by every proxy's own attributes ({reserved}); rename it"
                raise ValueError(msg)
        methods = tuple(_method_spec(tname, attr, value) for attr, value in functions if not attr.startswith("_"))
        if not methods:
            raise TypeError(f"trait {tname} declares no methods")
        _check_handles(tname, methods)
        source = f"{cls.__module__}:{cls.__qualname__}"
        spec = TraitSpec(tname, version, methods, _doc(cls), source, long_running=long_running)
        known = _REGISTRY.get((tname, version))
        if known is not None and known != spec:
            raise ValueError(f"trait {tname} v{version} is already declared with a different definition")
        _REGISTRY[(tname, version)] = spec
        cls.__plugin_trait__ = spec  # type: ignore[attr-defined]
        return cls

    return decorate


def declared_traits() -> dict[str, TraitSpec]:
    """Every trait declared so far, built-in ones included, by name (the latest version of each)."""
    latest: dict[str, TraitSpec] = {}
    for (name, _), spec in sorted(_REGISTRY.items()):
        latest[name] = spec
    return latest


def declared_trait_versions(name: str | None = None) -> list[TraitSpec]:
    """Every declared version of trait ``name`` (of every trait without it), oldest first."""
    return [spec for (n, _), spec in sorted(_REGISTRY.items()) if name is None or n == name]


# ---- built-in traits -------------------------------------------------------


@declare_trait(version=1)
class Greeter(Protocol):
    """Says hello to someone."""

    def greet(self, name: CStr) -> OwnedStr:
        """A greeting that contains ``name`` (``Hello, world!``)."""
        ...


@declare_trait(version=1)
class Transformer(Protocol):
    """Transforms a caller-supplied buffer in place."""

    def transform(self, data: MutBuffer) -> Size:
        """Rewrite ``data`` in place; returns how many bytes changed."""
        ...


class PluginTrait(enum.Enum):
    """The built-in traits.  User-declared traits work through the same API."""

    Greeter = Greeter.__plugin_trait__  # type: ignore[attr-defined]
    Transformer = Transformer.__plugin_trait__  # type: ignore[attr-defined]

    @property
    def spec(self) -> TraitSpec:
        """The trait's declaration."""
        value: TraitSpec = self.value
        return value


TraitLike = TraitSpec | PluginTrait | str | type


def resolve_trait(trait: TraitLike) -> TraitSpec:
    """Turn a trait given as spec, enum member, name or declared class into its spec.

    A name means the latest declared version; ``"Name@2"`` (or ``"Name@v2"``) one version.

    :raises UnknownTraitError: for a name (or version) nobody declared.
    """
    if isinstance(trait, TraitSpec):
        return trait
    if isinstance(trait, PluginTrait):
        return trait.spec
    if isinstance(trait, str):
        name, _, wanted = trait.partition("@")
        versions = declared_trait_versions(name)
        if wanted:
            versions = [s for s in versions if str(s.version) == wanted.removeprefix("v")]
        if not versions:
            raise UnknownTraitError(trait, [f"{n}@{v}" for n, v in _REGISTRY] if wanted else list(declared_traits()))
        return versions[-1]
    spec = getattr(trait, "__plugin_trait__", None)
    if isinstance(spec, TraitSpec):
        return spec
    raise UnknownTraitError(repr(trait), list(declared_traits()))
