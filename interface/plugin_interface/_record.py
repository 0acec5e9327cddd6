"""What ``@dataclass`` gave the project's value classes, without importing ``dataclasses``.

``dataclasses`` (with the ``inspect`` it imports) cost more than the rest of ``import plugin_interface``, and each
dataclass cost again at import (its methods are generated as source and compiled).  A :class:`Record` subclass
declares its fields as annotations, in ``__init__`` order, and writes its ``__init__`` by hand (typed, so mypy
checks every caller); the class statement gives it the rest, as the dataclass had it: ``__repr__`` (the same text),
``__eq__`` and ``__hash__`` over the compared fields, ``__match_args__``, :meth:`~Record.replace` (what
``dataclasses.replace`` did; also ``copy.replace`` on Python 3.13+), pickling and copying, and, frozen (the
default), an ``AttributeError`` on assignment.  The methods are closures over ``operator.attrgetter``\\s made once
per class in ``__init_subclass__``: nothing is compiled.

A frozen record's ``__init__`` sets its fields with :data:`setfield` (its ``__setattr__`` refuses); a mutable one
(``class X(Record, frozen=False)``) assigns them.  A parameter whose default is made per instance (a dataclass
``default_factory``) defaults to :data:`FACTORY`::

    class Entry(Record, frozen=False, uncompared=("cache",)):
        __slots__ = ("name", "tags", "cache")
        name: str
        tags: list[str]
        cache: dict[str, int] | None

        def __init__(self, name: str, tags: list[str] = FACTORY, cache: dict[str, int] | None = None) -> None:
            self.name = name
            self.tags = [] if tags is FACTORY else tags
            self.cache = cache
"""

from __future__ import annotations

import operator
import reprlib
from collections.abc import Callable
from typing import Any, Self, TypeVar, dataclass_transform

__all__ = ["FACTORY", "Record", "setfield"]

#: Sets a field of a frozen record, from its ``__init__`` (the record's own ``__setattr__`` refuses).
setfield = object.__setattr__


class _Factory:
    """The default of a parameter whose value is made per instance; shown as ``dataclasses`` shows one."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


#: The default of a parameter whose value each instance makes (``[]``, ``{}``): typed ``Any`` so it fits any type.
FACTORY: Any = _Factory()


_R = TypeVar("_R")


def _new(cls: type[_R]) -> _R:
    """An instance of ``cls`` without its ``__init__`` (a record's copy or unpickling; its state is set next)."""
    return object.__new__(cls)


def _getter(names: tuple[str, ...]) -> Callable[[object], tuple[Any, ...]]:
    """The tuple of fields ``names`` of a record (``attrgetter`` of one name gives a bare value: wrapped)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        one = operator.attrgetter(names[0])
        return lambda record: (one(record),)
    return lambda record: ()


@dataclass_transform(frozen_default=True)
class Record:
    """Base of a value class: the fields are the annotations; see the module's docstring.

    Class keywords: ``frozen`` (default ``True``: assignment raises ``AttributeError``, and the record hashes by its
    compared fields; ``False``: assignable, and unhashable, as a dataclass with ``eq=True`` is), ``uncompared``
    (fields left out of ``__eq__`` and ``__hash__``: ``field(compare=False)``) and ``unshown`` (fields left out of
    ``__repr__``: ``field(repr=False)``).  A ``__hash__`` the class defines itself is kept.  A class with
    ``__slots__`` lists its fields there (sorted, as ruff wants; the annotations give the order); weak references
    work either way.  A subclass of a record inherits all of it unchanged (no fields of its own), as the subclass
    of a dataclass does when it is not decorated itself.
    """

    __slots__ = ("__weakref__",)

    def __init_subclass__(
        cls, *, frozen: bool = True, uncompared: tuple[str, ...] = (), unshown: tuple[str, ...] = (), **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if Record not in cls.__bases__:  # a record's subclass keeps its methods, as a dataclass's (not decorated)
            return
        # The class's own (3.10+: never a base's), strings here as everywhere in the project (``annotations``).
        fields = tuple(name for name, hint in cls.__annotations__.items() if not str(hint).startswith("ClassVar"))
        slots = cls.__dict__.get("__slots__")
        unknown = (set(uncompared) | set(unshown)) - set(fields)
        if (slots is not None and set(slots) != set(fields)) or unknown:  # names listed twice, apart: one went stale
            msg = f"{cls.__qualname__}: fields {fields}, __slots__ {slots}, not fields: {sorted(unknown)}"
            raise TypeError(msg)
        values = _getter(fields)
        key = _getter(tuple(f for f in fields if f not in uncompared))
        shown = tuple(f for f in fields if f not in unshown)
        shown_values = _getter(shown)

        def __eq__(self: Record, other: object) -> bool:
            if other.__class__ is self.__class__:
                return self is other or key(self) == key(other)
            return NotImplemented

        def __hash__(self: Record) -> int:
            return hash(key(self))

        template = "{}(" + ", ".join(f"{name}={{!r}}" for name in shown) + ")"  # "{}(name={!r}, ...)"

        @reprlib.recursive_repr()
        def __repr__(self: Record) -> str:
            return template.format(self.__class__.__qualname__, *shown_values(self))

        def replace(self: Record, /, **changes: Any) -> Record:
            return self.__class__(**{**dict(zip(fields, values(self), strict=True)), **changes})

        # Rebuilt as copy and pickle rebuild a plain object: made without __init__ (a subclass's may take
        # other arguments), then its fields (and any __dict__) set; so a record that holds itself copies
        # into one that holds itself.
        def __reduce__(self: Record) -> tuple[Any, ...]:
            return _new, (self.__class__,), (values(self), getattr(self, "__dict__", None) or None)

        def __setstate__(self: Record, state: tuple[tuple[Any, ...], dict[str, Any] | None]) -> None:
            field_values, extra = state
            for name, value in zip(fields, field_values, strict=True):
                setfield(self, name, value)
            if extra:
                for name, value in extra.items():
                    setfield(self, name, value)

        def __setattr__(self: object, name: str, value: object) -> None:
            if type(self) is cls or name in fields:  # dataclasses' rule: a subclass may add attributes
                raise AttributeError(f"cannot assign to field {name!r}")
            setfield(self, name, value)

        def __delattr__(self: object, name: str) -> None:
            if type(self) is cls or name in fields:
                raise AttributeError(f"cannot delete field {name!r}")
            object.__delattr__(self, name)

        for method in (__eq__, __hash__, __repr__, replace, __reduce__, __setstate__, __setattr__, __delattr__):
            method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        cls.__eq__ = __eq__  # type: ignore[method-assign, assignment]
        if "__hash__" not in cls.__dict__:  # as dataclasses: a hash the class defines is kept
            cls.__hash__ = __hash__ if frozen else None  # type: ignore[method-assign, assignment]
        cls.__repr__ = __repr__  # type: ignore[method-assign]
        cls.replace = cls.__replace__ = replace  # type: ignore[method-assign, assignment]
        cls.__reduce__ = __reduce__  # type: ignore[method-assign, assignment]
        cls.__setstate__ = __setstate__  # type: ignore[attr-defined]
        if frozen:
            cls.__setattr__ = __setattr__  # type: ignore[method-assign]
            cls.__delattr__ = __delattr__  # type: ignore[method-assign]
        setattr(cls, "__match_args__", fields)  # noqa: B010 (not an attribute of every class)

    def replace(self, /, **changes: Any) -> Self:
        """A copy with ``changes`` (field name -> value), made by ``__init__`` (what ``dataclasses.replace`` did).

        :raises TypeError: for a name that is not a field.
        """
        raise NotImplementedError  # every subclass has its own, made by __init_subclass__

    __replace__ = replace
