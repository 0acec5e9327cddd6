"""Whether a closed library really left the process, and if not, why.

``dlclose`` returns success whether or not the loader unmapped the library:
glibc keeps a library that has ``STB_GNU_UNIQUE`` symbols, ``DF_1_NODELETE``,
pending ``thread_local`` destructors, or another open handle (a second
``dlopen`` of the same file, a library linked to it).  Such a library keeps
its code mapped and its static state: a "reload" then sees the old counters.
After closing, :class:`~plugin_host.loading.Library` looks for the library's
load address among the loaded objects (the C extension, unload.c) or asks the
loader (``RTLD_NOLOAD``) and, if the library is still there, reads the reasons
from the file (:func:`~plugin_host.formats.read_unload_blockers`).

**Platform-specific behaviour**: the reasons are read from ELF files only;
on other formats a library that stayed loaded is reported with the generic
"another handle is still open, or the loader keeps it" reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plugin_interface import NotASharedLibraryError

from ..formats import read_unload_blockers
from . import _os

__all__ = ["LibraryStillMappedWarning", "StillMapped", "check_unloaded"]

ANOTHER_HANDLE = (
    "another handle is still open: something else in this process opened the same file (another "
    "PluginManager or Library, a ctypes.CDLL, a DynamicModule) or a loaded library links to it"
)


class LibraryStillMappedWarning(RuntimeWarning):
    """An unloaded library is still mapped: its code and static state survived the unload.

    :ivar path: the plugin file.
    :ivar reasons: why, as sentences (``"STB_GNU_UNIQUE symbol ..."``).
    """

    def __init__(self, path: Path, reasons: tuple[str, ...]) -> None:
        super().__init__(f"{path}: cannot unload: {'; '.join(reasons)}")
        self.path = path
        self.reasons = reasons


@dataclass(frozen=True)
class StillMapped:
    """What :func:`check_unloaded` found for a library the loader kept.

    :ivar path: the plugin file (as the user named it).
    :ivar load_path: the file that was opened (a private copy, or ``path``).
    :ivar reasons: why, most certain first; never empty.
    """

    path: Path
    load_path: Path
    reasons: tuple[str, ...]

    @property
    def warning(self) -> LibraryStillMappedWarning:
        """The warning that says so."""
        return LibraryStillMappedWarning(self.path, self.reasons)

    def __str__(self) -> str:
        return str(self.warning)


def check_unloaded(path: Path, load_path: Path, unmapped: bool | None = None) -> StillMapped | None:
    """After the last close of ``load_path``: ``None`` if the loader let it go, else why not.

    Call it before a private copy is removed, so the reasons are read from the
    very bytes that were loaded.

    :param unmapped: what the close found out (:func:`._accel.close_library`):
        ``True`` is taken as it is; otherwise the loader is asked by name and
        file identity (``RTLD_NOLOAD``), which also confirms a ``False``.
    """
    if unmapped or not _os.is_library_loaded(str(load_path)):
        return None
    return StillMapped(path, load_path, tuple(unload_reasons(load_path if load_path.exists() else path)))


def unload_reasons(file: Path) -> list[str]:
    """Why the loader may keep ``file`` mapped: what the file says, else another open handle."""
    try:
        blockers = read_unload_blockers(file)
    except NotASharedLibraryError:
        blockers = None
    if blockers is None:
        return [ANOTHER_HANDLE]
    return blockers.certain or [*blockers.possible(weak=True), ANOTHER_HANDLE]
