"""Which directory entries count as plugin files: the one definition.

The manager's directory loads, the watcher, ``plugin-host list`` and
``plugin-host abi check`` all ask here.  An entry is a candidate by its name
alone (the platform's library suffix, not hidden), so a directory or FIFO
named like a plugin is listed too and loading it says what it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from plugin_interface import shared_library_suffix

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ALL_LIBRARY_SUFFIXES", "is_plugin_file", "plugin_file_names", "plugin_file_paths", "plugin_files"]

#: Library suffixes of every platform: CI checks cross-built .dll/.dylib files on Linux too.
ALL_LIBRARY_SUFFIXES = (".so", ".dll", ".dylib")


def is_plugin_file(path: str | os.PathLike[str], suffixes: Iterable[str] | None = None) -> bool:
    """Whether a directory entry is a candidate plugin: a library suffix, not hidden.

    :param suffixes: the suffixes that count (default: this platform's only).
    """
    wanted = (shared_library_suffix(),) if suffixes is None else tuple(suffixes)
    return _is_candidate(os.path.basename(path), wanted)


def _is_candidate(name: str, suffixes: tuple[str, ...]) -> bool:
    """:func:`is_plugin_file`'s rule on an entry's name."""
    return name.endswith(suffixes) and not name.startswith(".")


def plugin_files(directory: str | os.PathLike[str], suffixes: Iterable[str] | None = None) -> list[Path]:
    """The candidate plugins of one directory (not recursive), sorted by name.

    :raises OSError: the directory cannot be listed.
    """
    from pathlib import Path  # only for Paths: abi check lists its names without pathlib's import

    base = Path(directory)
    return [base / name for name in plugin_file_names(directory, suffixes)]


def plugin_file_names(directory: str | os.PathLike[str], suffixes: Iterable[str] | None = None) -> list[str]:
    """The names of :func:`plugin_files` (``abi check`` of hundreds of files needs no :class:`~pathlib.Path`).

    :raises OSError: the directory cannot be listed.
    """
    wanted = (shared_library_suffix(),) if suffixes is None else tuple(suffixes)  # once, not per entry
    with os.scandir(directory) as it:
        # Sorting the names, not Paths: Path comparison costs microseconds each.
        return sorted([e.name for e in it if _is_candidate(e.name, wanted)])


def plugin_file_paths(directory: str, suffixes: Iterable[str] | None = None) -> list[str]:
    """:func:`plugin_files` as strings, without a :class:`~pathlib.Path` per file (the manager's
    directory load, where making one costs more than checking the file).

    :param directory: the directory; each result is ``os.path.join(directory, name)``, so one
        given absolute and normalised gives files in the same form.
    :raises OSError: the directory cannot be listed.
    """
    prefix = os.path.join(directory, "")
    return [prefix + name for name in plugin_file_names(directory, suffixes)]
