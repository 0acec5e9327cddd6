"""``abi check``'s unload findings: what in a file will keep it mapped after an unload.

The same causes the host names when a library stays mapped after
``unload_by_path`` (:mod:`plugin_host.loading._unload`), read from the file
alone (:func:`~plugin_host.formats.read_unload_blockers`) before anyone loads it.
"""

from __future__ import annotations

import os

from plugin_interface import NotASharedLibraryError

from ..formats import UnloadBlockers, read_unload_blockers

__all__ = ["UNLOAD_KINDS", "unload_findings"]

#: The problem kinds this check reports (both warnings).
UNLOAD_KINDS = ("unload_blocked", "unload_may_be_blocked")


def unload_findings(path: str | os.PathLike[str], blockers: UnloadBlockers | None = None) -> list[tuple[str, str, str]]:
    """``(severity, kind, message)`` for each reason ``path`` cannot (or may not) be unloaded.

    ``unload_blocked``: ``STB_GNU_UNIQUE`` symbols or ``DF_1_NODELETE``, which
    always keep it mapped; ``unload_may_be_blocked``: it may register
    thread-local destructors (a weak import, as every Rust ``cdylib`` has, is
    not reported: it matters only if the code uses such a ``thread_local!``).
    Nothing for a file that is not an ELF file or cannot be read (a JSON dump,
    a library for another format: other checks say so).

    :param blockers: what the export reader already found (then the file is not read again).
    """
    if blockers is None:
        if not os.path.isfile(path):
            return []
        try:
            blockers = read_unload_blockers(path)
        except NotASharedLibraryError:
            return []
    if blockers is None or not (blockers.unique_count or blockers.nodelete or blockers.thread_local_destructors):
        return []  # nothing certain, nothing possible: the common answer, without building either list
    out = [("warning", "unload_blocked", f"cannot unload: {reason}") for reason in blockers.certain]
    out += [("warning", "unload_may_be_blocked", f"may not unload: {reason}") for reason in blockers.possible()]
    return out
