"""The ABI layer: what a library file exports under the symbol scheme, checked and compared.

Works on files alone (:mod:`plugin_host.formats`): nothing is loaded.
"""

from __future__ import annotations

from ._baseline import BASELINE_SCHEMA, AbiBaseline, LibraryDiff, diff_libraries, load_abi_source, scan_directory
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
from ._contract import CONTRACT_SCHEMA, HostContract, host_contract, load_contract
from ._kinds import COMPATIBLE_DIFFERENCE, KIND_HELP, kind_help
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
