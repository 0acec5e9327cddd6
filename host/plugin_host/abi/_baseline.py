"""Directory baselines: the ABI of every plugin of a folder, dumped once, diffed per library.

``abi dump DIR -o baseline.json`` writes an :class:`AbiBaseline`;
``abi diff baseline.json DIR`` compares it with the folder as it is now, per
library (matched by file name) and trait, and names the libraries added and
removed.  A baseline is meant to live in git: it is stable (keys and lists
sorted, library names relative to the folder, no timestamps, no absolute
paths), so the diff of two baselines in a review is the ABI change.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from plugin_interface import ABI_VERSION, NotASharedLibraryError

from ..formats import ALL_LIBRARY_SUFFIXES, plugin_file_names
from ._check import DUMP_SCHEMA, AbiChange, ChangeKind, LibraryAbi, diff_abi, load_abi_or_json, scan_library

__all__ = ["BASELINE_SCHEMA", "AbiBaseline", "LibraryDiff", "diff_libraries", "load_abi_source", "scan_directory"]

BASELINE_SCHEMA = "plugin-host-abi-baseline/1"


@dataclass
class AbiBaseline:
    """The ABI of each library of one folder, by file name.

    :ivar libraries: file name -> its ABI (whose ``path`` is the file name).
    :ivar unreadable: file name -> why it is no library (a scan only; never written to a dump).
    """

    libraries: dict[str, LibraryAbi] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The baseline dump (``schema`` ``plugin-host-abi-baseline/1``), sorted, without timestamps."""
        return {
            "schema": BASELINE_SCHEMA,
            "abi_version": ABI_VERSION,
            "libraries": {name: abi.to_json() for name, abi in sorted(self.libraries.items())},
        }

    @classmethod
    def from_json(cls, data: object, source: str = "<baseline>") -> AbiBaseline:
        """Rebuild from :meth:`to_json` output, every library checked as a single dump is.

        :raises ValueError: naming ``source``, the library and what is wrong.
        """
        if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
            raise ValueError(f"{source}: not a plugin-host ABI baseline (schema {BASELINE_SCHEMA!r} expected)")
        libraries = data.get("libraries")
        if not isinstance(libraries, dict):
            raise ValueError(f"{source}: malformed ABI baseline: libraries must be an object")
        out = cls()
        for name, dump in libraries.items():
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise ValueError(f"{source}: malformed ABI baseline: {name!r} is not a file name")
            out.libraries[name] = LibraryAbi.from_json(dump, f"{source}: library {name}")
        return out


def scan_directory(directory: str | os.PathLike[str], suffixes: Iterable[str] = ALL_LIBRARY_SUFFIXES) -> AbiBaseline:
    """Scan every candidate plugin of ``directory`` (not recursive; see :func:`~plugin_host.formats.plugin_files`).

    A file that is not a readable library is recorded in
    :attr:`AbiBaseline.unreadable`, not raised: the others are still scanned.

    :raises OSError: the directory cannot be listed.
    """
    baseline = AbiBaseline()
    for name in plugin_file_names(directory, suffixes):
        try:
            abi = scan_library(os.path.join(directory, name))
        except NotASharedLibraryError as e:
            baseline.unreadable[name] = e.detail
            continue
        abi.path = name  # relative: a baseline must not depend on where the folder was
        baseline.libraries[name] = abi
    return baseline


@dataclass
class LibraryDiff:
    """What changed in one library between two folders (or baselines).

    :ivar status: ``"added"``, ``"removed"``, ``"changed"`` or ``"unchanged"``.
    """

    library: str
    status: str
    changes: list[AbiChange]

    def to_json(self) -> dict[str, object]:
        """JSON form (the ``libraries`` entries of ``abi diff --format json``)."""
        return {
            "library": self.library,
            "status": self.status,
            "breaking": any(c.breaking for c in self.changes),
            "changes": [c.to_json() for c in self.changes],
        }


def diff_libraries(old: Mapping[str, LibraryAbi], new: Mapping[str, LibraryAbi]) -> list[LibraryDiff]:
    """Per library (by name, sorted), what changed from ``old`` to ``new``.

    A library only ``old`` has was removed (breaking: hosts that loaded it
    lose its implementations); one only ``new`` has was added (compatible).
    """
    out: list[LibraryDiff] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before is not None and after is not None:
            changes = diff_abi(before, after)
            out.append(LibraryDiff(name, "changed" if changes else "unchanged", changes))
        elif after is not None:
            traits = ", ".join(sorted(after.traits)) or "no trait"
            change = AbiChange(ChangeKind.LIBRARY_ADDED, False, f"library {name} added ({traits})", new=name)
            out.append(LibraryDiff(name, "added", [change]))
        elif before is not None:
            traits = ", ".join(sorted(before.traits)) or "no trait"
            message = f"library {name} removed (it had {traits}): hosts that loaded it lose its implementations"
            out.append(LibraryDiff(name, "removed", [AbiChange(ChangeKind.LIBRARY_REMOVED, True, message, old=name)]))
    return out


def load_abi_source(path: str | os.PathLike[str]) -> LibraryAbi | AbiBaseline:
    """What ``abi diff`` compares: a folder (scanned), a library (scanned), or a dump of either.

    :raises NotASharedLibraryError: for a file that is none of these, or that cannot be read.
    :raises ValueError: for a JSON file that is no valid dump or baseline, naming it and the flaw.
    :raises OSError: a folder that cannot be listed.
    """
    if os.path.isdir(path):
        return scan_directory(path)
    abi, data = load_abi_or_json(path)
    if abi is not None:
        return abi
    name = os.fspath(path)
    if isinstance(data, dict) and data.get("schema") == BASELINE_SCHEMA:
        return AbiBaseline.from_json(data, name)
    if isinstance(data, dict) and data.get("schema") not in (DUMP_SCHEMA, None):
        msg = f"{name}: not a plugin-host ABI dump or baseline (schema {DUMP_SCHEMA!r} or {BASELINE_SCHEMA!r} expected)"
        raise ValueError(msg)
    return LibraryAbi.from_json(data, name)
