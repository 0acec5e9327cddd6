"""Proxies whose methods run in the compiled call engine (:mod:`plugin_host.loading._engine`).

For a trait's proxy class (the pure-Python one of :mod:`._proxy`),
:func:`compiled_proxy_class` makes a subclass in which every method the
engine can do is an instance attribute holding a builtin function: a call is
one C function, with no Python frame.  Each compiled method is given the
pure-Python method of a *fallback* proxy of the same registration, which it
hands whatever it does not convert itself (another argument type, a value
out of range, keywords, a closed gate), so the errors are the Python path's
own; and the fallback builds the errors after a call (a NULL result, a
failing ``Status``) with the same helpers.  Methods the engine cannot do
(callbacks, handles) stay the class's Python methods.

The proxy asks for one compiled callable per method and keeps the Python
method otherwise: nothing else in the proxy changes.
"""

from __future__ import annotations

import functools
from typing import Any

from plugin_interface import TraitSpec, TypeKind

from ..loading import _engine, _plans

__all__ = ["compiled_proxy_class"]


def compiled_proxy_class(base: type, trait: TraitSpec) -> type | None:
    """A subclass of ``base`` with compiled methods, or ``None`` (engine off or not built, or nothing to compile).

    :param base: the trait's pure-Python proxy class.
    :param trait: the declaration the registrations were loaded with (its long-running hints count).
    """
    if not _engine.enabled():
        return None
    hints = tuple(trait.is_long_running(m) for m in trait.methods)
    return _compiled_class(base, hints)


def _text_signature(method: Any) -> str:
    names = [p.name for p in method.params if p.ctype.kind is not TypeKind.OUT]
    return f"{method.name}({', '.join(names)})\n--\n\n{method.doc}"


@functools.cache
def _compiled_class(base: type, hints: tuple[bool, ...]) -> type | None:
    trait: TraitSpec = base.trait  # type: ignore[attr-defined]
    plans: dict[str, tuple[Any, ...]] = {}
    for method, long_running in zip(trait.methods, hints, strict=True):
        plan = _plans.trait_method_plan(method, long_running)
        if plan is not None:
            plans[method.name] = plan
    if not plans:
        return None
    docs = {m.name: _text_signature(m) for m in trait.methods if m.name in plans}
    python_class: Any = base

    def __init__(self: Any, regset: Any, reg: Any) -> None:
        python_class.__init__(self, regset, reg)
        fallback = python_class(regset, reg)  # the pure-Python proxy the compiled methods hand the rest to
        gate = regset.gate.engine_gate
        for name, plan in plans.items():
            python_method = getattr(fallback, name)
            try:
                method = _engine.Method(
                    plan,
                    reg.methods.get(name) or 0,  # 0: a method an older plugin lacks; the fallback raises
                    gate,
                    python_method,
                    name,
                    reg.instance or 0,
                    reg.free_memory or 0,
                    fallback,
                    docs[name],
                )
            except ValueError:  # a plan this build of the engine refuses: the Python method serves
                object.__setattr__(self, name, python_method)
                continue
            object.__setattr__(self, name, method.bind())

    attrs: dict[str, Any] = {
        "__slots__": {name: docs[name] for name in plans},
        "__init__": __init__,
        "__doc__": base.__doc__,
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
    }
    return type(base.__name__, (base,), attrs)
