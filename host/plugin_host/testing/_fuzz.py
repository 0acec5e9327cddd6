"""Fuzz every method of a proxy, each call in a forked child, so a crash is a minimal failing example.

Hypothesis draws the arguments (:func:`~plugin_host.testing.strategies_for`)
and runs each call in a child process (:func:`~plugin_host.testing.call_forked`):
a segfault, an ``abort()``, an ``exit()``, a sanitizer report or a hang ends
the child, not the test, and comes back as :class:`PluginCrash`, an
``AssertionError``.  Hypothesis then shrinks the arguments the same way,
each attempt in a child of its own, and reports the smallest that still
crashes (``Falsifying example: greet(name='')``) with the crash's stacks.

A method's error reply is not a failure: a ``Status`` method's error code
(:class:`~plugin_interface.PluginMethodError`) is allowed unless told
otherwise; any other exception is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as Settings
from plugin_interface import MethodSpec, PluginMethodError, TypeKind

from ..registry import PluginObject, TraitProxy
from ._platform import can_fork
from ._process import PluginCrash, call_forked
from ._strategies import method_strategy

__all__ = ["fuzz_proxy"]


def fuzz_proxy(
    proxy: TraitProxy,
    *,
    methods: Iterable[str] | None = None,
    max_examples: int = 100,
    isolated: bool = True,
    timeout_s: float = 30.0,
    allowed: tuple[type[BaseException], ...] = (PluginMethodError,),
    check: Callable[[str, dict[str, Any], Any], None] | None = None,
    settings: Settings | None = None,
) -> None:
    """Call every method of ``proxy`` (or ``methods``) with drawn arguments until one fails.

    :param max_examples: examples per method.
    :param isolated: each call in a forked child (POSIX, not macOS); ``False`` calls in this
        process (a crash then ends it: use it inside an ``isolated`` test, which reports the crash
        but cannot shrink it).
    :param timeout_s: a call running longer counts as a hang (a failure), in seconds.
    :param allowed: exceptions a method may raise (default: a ``Status`` method's error reply).
    :param check: ``check(method, kwargs, result)``, run on each result (in the child when
        isolated): raise ``AssertionError`` for a wrong one.
    :param settings: Hypothesis settings to start from (``deadline`` is always off: a fork
        costs milliseconds).
    :raises PluginCrash: a call crashed, exited, hung or tripped a sanitizer; the message names the
        call and holds the stacks, the note Hypothesis adds names the minimal arguments.
    :raises ExceptionGroup: several methods failed (one exception each).
    :raises OSError: ``isolated`` where forking is not safe (macOS, Windows): fuzz with
        ``isolated=False`` inside an ``isolated`` test there.
    """
    __tracebackhide__ = True
    if isolated and not can_fork():
        msg = (
            "fuzz_proxy(isolated=True) forks each call, which is not safe here; pass isolated=False in an isolated test"
        )
        raise OSError(msg)
    trait = proxy.trait
    names = list(methods) if methods is not None else [m.name for m in trait.methods]
    failures: list[Exception] = []
    base = settings or Settings()
    chosen = Settings(
        base,
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[*base.suppress_health_check, HealthCheck.too_slow],
        # "explain" would point at the isolation's lines that only failing calls run: noise here.
        phases=[phase for phase in base.phases if phase is not Phase.explain],
    )
    for name in names:
        method = trait.method(name)
        strategy = method_strategy(method)
        if strategy is None:
            continue  # takes a Handle or a Drop: its objects come from the plugin
        runner = _runner(proxy, method, isolated, timeout_s, allowed, check)
        takes_arguments = any(p.ctype.kind is not TypeKind.OUT for p in method.params)
        try:
            if takes_arguments:
                chosen(given(strategy)(runner))()
            else:
                runner({})  # nothing to draw: one call
        except Exception as e:
            failures.append(e)
    # A crash's own frames here say nothing its message does not: show the caller's line only.
    failures = [f.with_traceback(None) if isinstance(f, PluginCrash) else f for f in failures]
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise ExceptionGroup(f"fuzzing {proxy!r}: {len(failures)} methods failed", failures)


def _runner(
    proxy: TraitProxy,
    method: MethodSpec,
    isolated: bool,
    timeout_s: float,
    allowed: tuple[type[BaseException], ...],
    check: Callable[[str, dict[str, Any], Any], None] | None,
) -> Callable[[dict[str, Any]], None]:
    """The function Hypothesis calls with each drawn ``kwargs``; named after the method, so
    its report of the failing case reads ``greet(kwargs={'name': ''})``."""

    def call(kwargs: dict[str, Any]) -> str:
        what = f"{proxy.trait.name}.{proxy.type_name}.{method.name}({_arguments(kwargs)})"
        try:
            result = getattr(proxy, method.name)(**kwargs)
        except allowed:
            return "allowed"
        except Exception as e:
            e.add_note(f"while calling {what}")
            raise
        for value in result if isinstance(result, tuple) else (result,):
            if isinstance(value, PluginObject):
                value.close()
        if check is not None:
            check(method.name, kwargs, result)
        return "ok"

    def run(kwargs: dict[str, Any]) -> None:
        if not isolated:
            call(kwargs)
            return
        what = f"{proxy.trait.name}.{proxy.type_name}.{method.name}({_arguments(kwargs)})"
        call_forked(lambda: call(kwargs), what=what, timeout_s=timeout_s)

    run.__name__ = run.__qualname__ = method.name
    # Hypothesis keys its example database by the test function's source, the same for every
    # method here; this attribute (what its own find() uses) tells the methods apart, so one
    # method's failing example is never replayed into another's.
    key = f"{proxy.trait.name}@{proxy.trait.version}.{proxy.type_name}.{method.name}:{Path(proxy.path).name}"
    run._hypothesis_internal_add_digest = key.encode()  # type: ignore[attr-defined]
    return run


def _arguments(kwargs: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return text if len(text) <= 500 else text[:500] + "..."
