"""The loading layer: which files may be opened, and opening them.

The load policy (:mod:`._policy`), the pre-check of a file's headers before
``dlopen`` (:mod:`._precheck`, with optional C versions in :mod:`._accel`),
private copies, the :class:`Library` with its call gate (:mod:`._library`),
explicit modules (:mod:`._module`) and the platform's ``dlopen`` (:mod:`._os`).
Above :mod:`plugin_host.formats`; knows nothing of registrations.
"""

from __future__ import annotations

from ._copies import make_private_copy, read_for_copy, remove_stale_copy_dirs, write_private_copy
from ._library import CallGate, Library
from ._module import DynamicModule, ModuleFunction, find_module, parse_signature
from ._policy import DirectoryVerdicts, InsecurePluginError, LoadPolicy, permission_problems, sha256_of
from ._precheck import HEAD_BYTES, Image, Precheck, fast_precheck, open_checked, open_image, precheck, precheck_image
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
