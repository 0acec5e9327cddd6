"""``plugin_interface._record.Record``: every class on it behaves as the dataclass it was.

Each class is held to a dataclass made here from what its ``@dataclass`` declaration said (frozen or not, the
fields left out of comparison or of the repr, the defaults): the same ``__init__`` parameters and defaults, repr
text, equality, hash, ``__match_args__``, ``replace`` (``dataclasses.replace``), refusal to assign, pickling,
copies and weak references.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import sys
import weakref
from typing import Any

import pytest
from plugin_host.abi._check import AbiChange, LibraryAbi, Problem, TraitAbi, TraitCheck
from plugin_host.formats._table import ExportTable
from plugin_interface._abi import SymbolName
from plugin_interface._descriptor import AbiDescriptor, AbiDifference, DescriptorCheck
from plugin_interface._record import FACTORY, Record, setfield
from plugin_interface._structs import StructField, StructSpec
from plugin_interface._traits import MethodChange, MethodSpec, ParamSpec, TraitSpec
from plugin_interface._types import CType, _Generic

#: What each class's ``@dataclass`` declaration said: ``frozen``, the ``compare=False`` and ``repr=False`` fields,
#: the defaults (a type for a ``default_factory``), and whether it defined a ``__hash__`` of its own.
WERE: dict[type[Record], dict[str, Any]] = {
    ParamSpec: {},
    MethodSpec: {"uncompared": {"doc", "long_running"}, "defaults": {"doc": "", "long_running": False}},
    TraitSpec: {
        "own_hash": True,
        "uncompared": {"doc", "source", "long_running"},
        "defaults": {"doc": "", "source": "", "long_running": False},
    },
    MethodChange: {},
    CType: {"own_hash": True, "defaults": {"item": None, "signature": (), "struct": None}},
    _Generic: {},
    StructField: {"defaults": {"count": 1}},
    StructSpec: {"uncompared": {"python_class"}, "defaults": {"python_class": None}},
    SymbolName: {},
    AbiDescriptor: {},
    AbiDifference: {"defaults": {"note": ""}},
    DescriptorCheck: {},
    ExportTable: {
        "unshown": {"symbols", "regions", "unload_blockers"},
        "defaults": {"regions": (), "unload_blockers": None},
    },
    TraitAbi: {
        "frozen": False,
        "defaults": {
            "symbols": dict,
            "descriptor": None,
            "descriptor_error": None,
            "declaration": None,
            "declaration_error": None,
        },
    },
    LibraryAbi: {
        "frozen": False,
        "uncompared": {"unload_blockers"},
        "unshown": {"unload_blockers"},
        "defaults": {"traits": dict, "malformed": list, "unload_blockers": None},
    },
    Problem: {"defaults": {"trait": None, "symbol": None, "method": None}},
    TraitCheck: {"frozen": False, "defaults": {"compatibility": "unchecked", "differences": list}},
    AbiChange: {"defaults": {"trait": None, "type_name": None, "old": None, "new": None, "method": None}},
}


def reference(cls: type[Record]) -> Any:
    """The dataclass ``cls`` was, from :data:`WERE` (a ``__hash__`` the class defines is kept, as it was)."""
    was = WERE[cls]
    defaults = was.get("defaults", {})
    fields = []
    for name in cls.__match_args__:
        options: dict[str, Any] = {
            "compare": name not in was.get("uncompared", ()),
            "repr": name not in was.get("unshown", ()),
        }
        if name in defaults:
            default = defaults[name]
            options["default_factory" if isinstance(default, type) else "default"] = default
        fields.append((name, object, dataclasses.field(**options)))
    namespace = {"__hash__": cls.__hash__} if was.get("own_hash") else {}
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=was.get("frozen", True), namespace=namespace)


def values(cls: type[Record], tag: str) -> list[str]:
    return [f"{name}:{tag}" for name in cls.__match_args__]


@pytest.mark.parametrize("cls", list(WERE), ids=lambda cls: cls.__name__)
def test_each_class_behaves_as_the_dataclass_it_was(cls: type[Record]) -> None:
    ref = reference(cls)
    assert cls.__match_args__ == ref.__match_args__
    ours, theirs = inspect.signature(cls).parameters, inspect.signature(ref).parameters
    assert [(p.name, p.kind, repr(p.default)) for p in ours.values()] == [
        (p.name, p.kind, repr(p.default)) for p in theirs.values()
    ]
    record, was = cls(*values(cls, "a")), ref(*values(cls, "a"))
    assert repr(record) == repr(was)
    assert (cls.__hash__ is None) == (ref.__hash__ is None)
    if cls.__hash__ is not None:
        assert hash(record) == hash(was)
    for name in cls.__match_args__:  # each field changed alone: equal exactly when the dataclasses were
        changed, was_changed = record.replace(**{name: "other"}), dataclasses.replace(was, **{name: "other"})
        assert getattr(changed, name) == "other" and repr(changed) == repr(was_changed)
        assert (changed == record) == (was_changed == was) and (changed != record) == (was_changed != was)
        if cls.__hash__ is not None:
            assert hash(changed) == hash(was_changed)
    assert record == cls(*values(cls, "a")) and record != cls(*values(cls, "b")) and record != was
    assert record.__eq__(was) is NotImplemented
    for made in (pickle.loads(pickle.dumps(record)), copy.copy(record), copy.deepcopy(record)):
        assert type(made) is cls and made == record and repr(made) == repr(record)
    assert weakref.ref(record)() is record


@pytest.mark.parametrize("cls", list(WERE), ids=lambda cls: cls.__name__)
def test_frozen_records_refuse_assignment_and_mutable_ones_take_it(cls: type[Record]) -> None:
    record, was = cls(*values(cls, "a")), reference(cls)(*values(cls, "a"))
    name = cls.__match_args__[0]
    if WERE[cls].get("frozen", True):
        for target in (record, was):
            with pytest.raises(AttributeError, match=f"^cannot assign to field '{name}'$"):
                setattr(target, name, "x")
            with pytest.raises(AttributeError, match=f"^cannot delete field '{name}'$"):
                delattr(target, name)
            with pytest.raises(AttributeError, match="^cannot assign to field 'unknown'$"):
                target.unknown = 1
        assert getattr(record, name) == f"{name}:a"
    else:
        setattr(record, name, "x")
        assert getattr(record, name) == "x"
        with pytest.raises(AttributeError):  # __slots__: no field of that name
            record.unknown = 1


@pytest.mark.parametrize("cls", [TraitAbi, LibraryAbi, TraitCheck], ids=lambda cls: cls.__name__)
def test_defaults_made_per_instance_are_new_each_time(cls: type[Record]) -> None:
    factories = [name for name, default in WERE[cls]["defaults"].items() if isinstance(default, type)]
    required = [p for p in inspect.signature(cls).parameters.values() if p.default is inspect.Parameter.empty]
    first, second = cls(*(f"{p.name}" for p in required)), cls(*(f"{p.name}" for p in required))
    for name in factories:
        assert getattr(first, name) == WERE[cls]["defaults"][name]() and getattr(first, name) is not getattr(
            second, name
        )
    assert repr(FACTORY) == "<factory>"  # as inspect.signature shows a dataclass's default_factory


def test_the_replace_of_a_record_refuses_an_unknown_field() -> None:
    spec = ParamSpec("a", CType("I32", (), None, (), (), None, int))
    with pytest.raises(TypeError, match="unexpected keyword argument 'nosuch'"):
        spec.replace(nosuch=1)
    assert spec.replace() == spec and spec.replace() is not spec


@pytest.mark.skipif(sys.version_info < (3, 13), reason="copy.replace is new in Python 3.13")
def test_copy_replace_works_on_3_13() -> None:
    spec = ParamSpec("a", CType("I32", (), None, (), (), None, int))
    assert copy.replace(spec, name="b") == spec.replace(name="b")


class One(Record):
    __slots__ = ("value",)
    value: object

    def __init__(self, value: object) -> None:
        setfield(self, "value", value)


@dataclasses.dataclass(frozen=True)
class OneWas:
    value: object


class Node(Record, frozen=False):
    __slots__ = ("children", "name")
    name: str
    children: list[Node]

    def __init__(self, name: str, children: list[Node] = FACTORY) -> None:
        self.name = name
        self.children = [] if children is FACTORY else children


@dataclasses.dataclass
class NodeWas:
    name: str
    children: list[NodeWas] = dataclasses.field(default_factory=list)


def test_one_field_records_compare_and_hash_as_a_tuple_of_one() -> None:
    nan = float("nan")
    assert One(nan) == One(nan) and OneWas(nan) == OneWas(nan)  # one nan: the tuple's identity rule
    assert One(nan) != One(float("nan")) and OneWas(nan) != OneWas(float("nan"))  # two: nan != nan
    assert hash(One(1.5)) == hash(OneWas(1.5)) == hash((1.5,))
    assert repr(One(nan)) == "One(value=nan)"


def test_a_record_that_contains_itself_is_shown_as_the_dataclass_shows_it() -> None:
    node, was = Node("a"), NodeWas("a")
    node.children.append(node)
    was.children.append(was)
    assert repr(node) == repr(was).replace("NodeWas", "Node") == "Node(name='a', children=[...])"


def test_a_class_whose_slots_and_fields_disagree_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Stale: fields \('a', 'b'\), __slots__ \('a',\)"):

        class Stale(Record):
            __slots__ = ("a",)
            a: int
            b: int

    with pytest.raises(TypeError, match=r"not fields: \['c'\]"):

        class Misnamed(Record, uncompared=("c",)):
            __slots__ = ("a",)
            a: int


def test_a_subclass_of_a_record_keeps_its_methods_as_a_dataclass_subclass_does() -> None:
    class Named(ParamSpec):  # not a Record of its own: ParamSpec's fields, repr, eq and hash
        pass

    @dataclasses.dataclass(frozen=True)
    class ParamWas:
        name: str
        ctype: object

    class NamedWas(ParamWas):
        pass

    record, was = Named("a", "t"), NamedWas("a", "t")
    assert repr(record) == repr(was).replace("NamedWas", "Named") and "Named(name='a', ctype='t')" in repr(record)
    assert record == Named("a", "t") and record != ParamSpec("a", "t") and hash(record) == hash(was)
    record.note = was.note = "an attribute of the subclass's own"  # dataclasses' rule: fields only are frozen
    with pytest.raises(AttributeError, match="cannot assign to field 'name'"):
        record.name = "b"
    with pytest.raises(AttributeError, match="cannot assign to field 'name'"):
        was.name = "b"


def test_a_record_that_contains_itself_copies_and_pickles_into_one_that_does() -> None:
    node, was = Node("a"), NodeWas("a")
    node.children.append(node)
    was.children.append(was)
    for copied, copied_was in ((copy.deepcopy(node), copy.deepcopy(was)), (_round_trip(node), _round_trip(was))):
        assert copied.children[0] is copied and copied_was.children[0] is copied_was  # not split in two
        assert copied is not node and copied.name == "a"


class Typed(ParamSpec):
    """A record's subclass whose ``__init__`` takes other arguments than the fields (module level: pickled)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "t")  # type: ignore[arg-type]


def test_a_subclass_with_its_own_init_copies_and_pickles_as_a_dataclass_subclass_does() -> None:
    record = Typed("a")
    record.note = "its own"  # not a field: kept too
    for copied in (copy.copy(record), copy.deepcopy(record), _round_trip(record)):
        assert type(copied) is Typed and copied == record and copied.note == "its own"  # type: ignore[attr-defined]


def _round_trip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))
