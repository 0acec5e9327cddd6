"""The ABI layer: what a library file exports under the symbol scheme, checked and compared.

Works on files alone (:mod:`plugin_host.formats`): nothing is loaded.

Baselines, contracts and waivers (:mod:`._baseline`, :mod:`._contract`,
:mod:`._waivers`) are imported on first use of one of their names, so an
``abi check`` without ``--contract`` or ``--waivers`` does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._check import (
    CHECK_SCHEMA,
    DIFF_SCHEMA,
    DUMP_SCHEMA,
    AbiChange,
    ChangeKind,
    LibraryAbi,
    Problem,
    ProblemKind,
    Severity,
    TraitAbi,
    TraitCheck,
    check_library,
    check_to_json,
    diff_abi,
    load_abi,
    scan_library,
)
from ._kinds import COMPATIBLE_DIFFERENCE, KIND_HELP, kind_help

if TYPE_CHECKING:
    from ._baseline import (
        BASELINE_SCHEMA,
        AbiBaseline,
        LibraryDiff,
        diff_libraries,
        load_abi_source,
        scan_directory,
    )
    from ._contract import CONTRACT_SCHEMA, HostContract, host_contract, load_contract
    from ._waivers import Waiver, load_waivers

__all__ = [
    "BASELINE_SCHEMA",
    "COMPATIBLE_DIFFERENCE",
    "CONTRACT_SCHEMA",
    "KIND_HELP",
    "AbiBaseline",
    "HostContract",
    "LibraryDiff",
    "Waiver",
    "diff_libraries",
    "host_contract",
    "kind_help",
    "load_abi_source",
    "load_contract",
    "load_waivers",
    "scan_directory",
    "CHECK_SCHEMA",
    "DIFF_SCHEMA",
    "DUMP_SCHEMA",
    "AbiChange",
    "ChangeKind",
    "LibraryAbi",
    "Problem",
    "ProblemKind",
    "Severity",
    "TraitAbi",
    "TraitCheck",
    "check_library",
    "check_to_json",
    "diff_abi",
    "load_abi",
    "scan_library",
]

#: The names imported on first use, and the module of each.
_LAZY = {
    **dict.fromkeys(
        ("BASELINE_SCHEMA", "AbiBaseline", "LibraryDiff", "diff_libraries", "load_abi_source", "scan_directory"),
        "._baseline",
    ),
    **dict.fromkeys(("CONTRACT_SCHEMA", "HostContract", "host_contract", "load_contract"), "._contract"),
    **dict.fromkeys(("Waiver", "load_waivers"), "._waivers"),
}


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # the next look-up is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
