"""The loading layer: which files may be opened, and opening them.

The load policy (:mod:`._policy`), the pre-check of a file's headers before
``dlopen`` (:mod:`._precheck`, with optional C versions in :mod:`._accel`),
private copies, the :class:`Library` with its call gate (:mod:`._library`),
explicit modules (:mod:`._module`) and the platform's ``dlopen`` (:mod:`._os`).
Above :mod:`plugin_host.formats`; knows nothing of registrations.  The names
below are imported on first use, so a module of the layer (``_accel``, say)
can be imported without the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._copies import make_private_copy, read_for_copy, remove_stale_copy_dirs, write_private_copy
    from ._library import CallGate, Library
    from ._module import DynamicModule, ModuleFunction, find_module, parse_signature
    from ._policy import DirectoryVerdicts, InsecurePluginError, LoadPolicy, permission_problems, sha256_of
    from ._precheck import (
        HEAD_BYTES,
        Image,
        Precheck,
        fast_precheck,
        open_checked,
        open_image,
        precheck,
        precheck_image,
    )
    from ._unload import LibraryStillMappedWarning, StillMapped, check_unloaded, unload_reasons

__all__ = [
    "HEAD_BYTES",
    "CallGate",
    "DirectoryVerdicts",
    "DynamicModule",
    "Image",
    "InsecurePluginError",
    "Library",
    "LibraryStillMappedWarning",
    "LoadPolicy",
    "ModuleFunction",
    "Precheck",
    "StillMapped",
    "check_unloaded",
    "fast_precheck",
    "make_private_copy",
    "find_module",
    "open_checked",
    "open_image",
    "parse_signature",
    "permission_problems",
    "precheck",
    "precheck_image",
    "read_for_copy",
    "remove_stale_copy_dirs",
    "sha256_of",
    "unload_reasons",
    "write_private_copy",
]

_HOMES = {
    "CallGate": "._library",
    "DirectoryVerdicts": "._policy",
    "DynamicModule": "._module",
    "HEAD_BYTES": "._precheck",
    "Image": "._precheck",
    "InsecurePluginError": "._policy",
    "Library": "._library",
    "LibraryStillMappedWarning": "._unload",
    "LoadPolicy": "._policy",
    "ModuleFunction": "._module",
    "Precheck": "._precheck",
    "StillMapped": "._unload",
    "check_unloaded": "._unload",
    "fast_precheck": "._precheck",
    "find_module": "._module",
    "make_private_copy": "._copies",
    "open_checked": "._precheck",
    "open_image": "._precheck",
    "parse_signature": "._module",
    "permission_problems": "._policy",
    "precheck": "._precheck",
    "precheck_image": "._precheck",
    "read_for_copy": "._copies",
    "remove_stale_copy_dirs": "._copies",
    "sha256_of": "._policy",
    "unload_reasons": "._unload",
    "write_private_copy": "._copies",
}


def __getattr__(name: str) -> Any:
    """Import the layer's names on first use: ``plugin-host --version`` asks :mod:`._accel` only."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
