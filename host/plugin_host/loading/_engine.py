"""The compiled call engine (optional): whether it is in use, and its types.

``plugin_host.loading._callengine`` is compiled from
``host/speedups/callengine.c`` at install time (a CPython extension on the
limited API).  Given a *plan* -- one entry per parameter and one for the
result, built by :mod:`._plans` from a trait method's declaration or from a C
signature -- it makes one callable per method that converts the arguments,
enters the call gate, calls the plugin and copies and releases the result, in
C.  What it does not convert itself it hands to the pure-Python path,
unchanged, so that path raises every argument error.

This module stays light (``plugin-host --version`` imports it); the plans,
which need the declarations, are in :mod:`._plans`.

The engine is skipped when it could not be built (no C compiler at install
time, or a calling convention it does not know: the build warns), and when
the environment sets ``PLUGIN_HOST_PURE_PYTHON=1``; a build whose plan format
differs from this module's is refused with a warning.  :func:`enabled` says
which is in use; ``plugin-host --version`` prints it.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ABI", "Function", "Method", "available", "enabled", "new_gate", "set_enabled"]

#: The plan format this module writes (``PLAN_VERSION`` in callengine.c).
PLAN_VERSION = 1

_ext: Any
try:
    from . import _callengine

    _ext = _callengine
except ImportError:  # not built: pure Python
    _ext = None

if _ext is not None and getattr(_ext, "PLAN_VERSION", None) != PLAN_VERSION:
    import warnings

    warnings.warn(
        f"plugin_host.loading._callengine: plan format {getattr(_ext, 'PLAN_VERSION', None)}, this host writes "
        f"{PLAN_VERSION} (a build from another version); calls use the pure-Python path",
        RuntimeWarning,
        stacklevel=1,
    )
    _ext = None

_on = _ext is not None and os.environ.get("PLUGIN_HOST_PURE_PYTHON", "") in ("", "0")

#: The calling convention the engine was built for (``"sysv-x86_64"``, ``"aapcs64"``), or ``""``.
ABI: str = _ext.ABI if _ext is not None else ""
#: The engine's types (``None`` without it): a compiled proxy method (called through ``bind()``'s
#: builtin), and a compiled ``DynamicModule`` function (called directly; its other attributes are
#: its fallback's).
Method: Any = _ext.Method if _ext is not None else None
Function: Any = _ext.Function if _ext is not None else None


def available() -> bool:
    """Whether the engine was built and imports."""
    return _ext is not None


def enabled() -> bool:
    """Whether proxies and module functions made from now on use the engine."""
    return _on


def set_enabled(on: bool) -> bool:
    """Use the engine (when built) or not for what is made from now on; returns the previous setting.

    Proxies and functions made before keep the path they were made with (for tests and benchmarks).
    """
    global _on
    previous = _on
    _on = on and _ext is not None
    return previous


def new_gate() -> Any:
    """The atomic side of a :class:`~plugin_host.loading.CallGate` (``None`` without the engine)."""
    return _ext.Gate() if _ext is not None else None
