"""The ABI layer: what a library file exports under the symbol scheme, checked and compared.

Works on files alone (:mod:`plugin_host.formats`): nothing is loaded.
"""

from __future__ import annotations

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

__all__ = [
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
