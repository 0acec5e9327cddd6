"""Admission of one plugin file: load policy -> pre-check -> hash -> probe, then open.

Every library a :class:`~plugin_host.PluginManager` opens goes through
:meth:`Admission.admit`, in this order, which yields an :class:`AdmittedImage`
(the file to open); :class:`~plugin_host.loading.Library` then only opens it:

1. **Policy** (:class:`~plugin_host.LoadPolicy`): ownership and write
   permissions of the file, read with ``fstat`` on the file descriptor the
   pre-check reads through, and of its real directory and every directory
   above it.
2. **Pre-check** (:mod:`._precheck`): headers, architecture, truncation,
   plugin symbols; no ``dlopen`` yet.
3. **Probe** (:mod:`._probe`), when enabled: a child process loads the same
   bytes first.
4. **Open**: ``dlopen`` of those bytes (:meth:`Admission.open_library`).

Check and load see the same bytes whenever that matters: a file loaded from a
private copy (``copy_on_load``, every :meth:`~plugin_host.PluginManager.reload`,
every probed or hash-allowlisted file, every untrusted file) is read once, and
the policy, the pre-check, the hash and the probe all look at the bytes that
are then written to the copy and loaded.  A file loaded in place is checked
through an open descriptor and loaded by path right after; only this user or
root (the policy guarantees it) could swap it in between.  A file named
through a symlink is judged by its real path and loaded from a private copy
(the loader would follow the link again).

A directory load first asks :meth:`Admission.admitted_in_place` about all its
files at once: the policy's rule for the directories, then the C pre-check
(when built) with the rule for the file, in one call before the first
``dlopen``.  A file it admits is opened straight away; any other takes the
steps above, which decide and say why.  The window between check and load is
then the directory load's length rather than a file's, with the same
guarantee: only this user or root could have swapped the file.

A file that passed the pre-check in place is not pre-checked again while it
stays the same file with the same contents as far as ``stat`` tells: device,
inode, size, mtime, ctime, mode and owner (a second load of an unchanged
directory).  The policy still judges it and its directories every time; any
write, rename over it, ``chmod`` or ``chown`` changes the ctime at least, and
it is read again.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from plugin_interface import TraitSpec

from ..formats import MAX_LIBRARY_BYTES
from ..loading._accel import identity_of
from ..loading._copies import make_private_copy
from ..loading._library import Library
from ..loading._policy import DirectoryVerdicts, LoadPolicy, sha256_of
from ..loading._precheck import Image, fast_precheck, fast_precheck_runs, open_checked, precheck, precheck_image
from ._probe import DEFAULT_PROBE_TIMEOUT_S, ProbeKey, Prober, host_identity, probe_traits

__all__ = ["AdmittedImage", "Admission", "ProbeMode"]


class AdmittedImage(NamedTuple):
    """What :meth:`Admission.admit` let through: the file to open, and why it may be.

    :ivar path: the file the caller asked for.
    :ivar load_path: the file to ``dlopen``: ``path`` itself, or a private copy of
        the very bytes that were checked (then it must be opened, or removed).
    :ivar trusted: only this user or root could have written it (else the policy
        let an insecure file through: it was copied, and probed unless probing is off).
    """

    path: Path
    load_path: Path
    trusted: bool

    @property
    def is_private_copy(self) -> bool:
        """Whether :attr:`load_path` is a private copy."""
        return self.load_path is not self.path


class ProbeMode(enum.Enum):
    """Which files :class:`Admission` probes in a child process before loading them."""

    #: Every file.
    ALWAYS = "always"
    #: No file.
    NEVER = "never"
    #: Only untrusted files: those the policy lets through although another user could have written them.
    UNTRUSTED = "untrusted"

    @classmethod
    def of(cls, value: ProbeMode | str | bool | None) -> ProbeMode:
        """The mode for ``value``: a mode, its value (``"never"``), or ``True``, ``False`` and
        ``None``, the older spellings of :attr:`ALWAYS`, :attr:`NEVER` and :attr:`UNTRUSTED`.

        :raises ValueError: for a string that names no mode.
        """
        if isinstance(value, ProbeMode):
            return value
        if isinstance(value, str):
            return cls(value)
        if value is None:
            return cls.UNTRUSTED
        return cls.ALWAYS if value else cls.NEVER


class Admission:
    """A manager's admission settings.

    :param policy: the load policy.
    :param probe: which files are probed in a child process before they are
        loaded (:class:`ProbeMode`; default only untrusted ones).
    :param probe_timeout_s: the probe's time limit, in seconds.
    :param probe_cache_dir: where the blocklist and clean-probe cache live
        (default ``$XDG_CACHE_HOME/plugin-host``).
    :param max_library_bytes: the largest file loaded from a private copy, in
        bytes (a file loaded in place is mapped, not read).
    """

    def __init__(
        self,
        policy: LoadPolicy | None = None,
        probe: ProbeMode | str | bool | None = ProbeMode.UNTRUSTED,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        probe_cache_dir: str | os.PathLike[str] | None = None,
        max_library_bytes: int = MAX_LIBRARY_BYTES,
    ) -> None:
        if max_library_bytes <= 0:
            raise ValueError(f"max_library_bytes must be positive, got {max_library_bytes}")
        self.max_library_bytes = max_library_bytes
        self.policy = policy if policy is not None else LoadPolicy()
        self.probe = ProbeMode.of(probe)
        self.prober = Prober(probe_timeout_s, probe_cache_dir)
        #: path -> its identity (:func:`~plugin_host.loading._accel.identity_of`) when it last passed
        #: the pre-check in place: a file loaded again unchanged is not pre-checked again.
        self._known: dict[str, bytes] = {}

    @property
    def identities(self) -> Mapping[str, bytes]:
        """Path -> the identity of the file when it last passed the pre-check in place (read-only use)."""
        return self._known

    def _probes(self, trusted: bool) -> bool:
        return self.probe is ProbeMode.ALWAYS or (self.probe is ProbeMode.UNTRUSTED and not trusted)

    def admitted_in_place(
        self, paths: Sequence[str | os.PathLike[str]], dirs: DirectoryVerdicts, *, copy_on_load: bool
    ) -> list[bool]:
        """Per path, whether the file is admitted to load in place without further checks.

        The directory load's fast path: the C pre-check (:func:`._precheck.fast_precheck`)
        of every file in one call, for files this user or root owns and only
        they can write, not symlinks, in real directories the same holds for
        (:func:`~plugin_host.loading._policy.permission_problems`).  A
        ``False`` file goes through :meth:`open_library`, which decides and says why.

        :param dirs: the load's directory verdicts, given to :meth:`admit` too.
        """
        if copy_on_load or not self._in_place() or not fast_precheck_runs():
            return [False] * len(paths)
        return fast_precheck(dirs.in_place_candidates(paths), dirs.uid, known=self._known)

    def _in_place(self) -> bool:
        """Whether a trusted file may be loaded in place (no hash, no probe asked for)."""
        return not self.policy.needs_contents and self.probe is not ProbeMode.ALWAYS

    def admit(
        self,
        path: Path,
        *,
        copy_on_load: bool,
        dirs: DirectoryVerdicts | None = None,
        admitted: bool = False,
        traits: Sequence[TraitSpec] = (),
    ) -> AdmittedImage:
        """Decide whether ``path`` may be opened, and which file to open.

        :param dirs: the load's directory verdicts (a directory load shares them between its files).
        :param admitted: :meth:`admitted_in_place` said ``True`` for the file: it is admitted in place.
        :param traits: the traits the caller will register (the probe runs them, and every declared
            trait the file names).
        :returns: the file to open: ``path`` itself, or a private copy of the bytes checked
            (the caller owns the copy: hand it to :class:`~plugin_host.loading.Library`).
        :raises InsecurePluginError: refused by the policy.
        :raises NotASharedLibraryError: not a loadable shared library, truncated,
            or built for another machine (:class:`ArchitectureMismatchError`).
        :raises NoPluginSymbolsError: no plugin symbol at all.
        :raises ProbeError: the probe child crashed, exited or hung.
        :raises BlockedPluginError: the same bytes failed a probe before.
        """
        if admitted:
            return AdmittedImage(path, path, trusted=True)
        # A directory load shares its verdicts between its files: each directory
        # is resolved and judged once, with the directories above it.
        dirs = dirs if dirs is not None else DirectoryVerdicts()
        real = dirs.real_path(path)  # what is opened and judged
        directory = os.path.dirname(real)
        # In place only without a symlink on the way: the loader resolves the path again.
        if not copy_on_load and self._in_place() and real == os.fspath(path):
            fd, st = open_checked(path)
            try:
                if self.policy.check_permissions(path, st, directory, dirs):
                    # Passed before and unchanged since: the pre-check would read the same bytes.
                    identity = identity_of(st)
                    if self._known.get(real) != identity:
                        precheck(path, st, fd=fd)
                        self._known[real] = identity
                    return AdmittedImage(path, path, trusted=True)
                # Untrusted: checked once, on the private copy's bytes below.
            finally:
                os.close(fd)
        # Untrusted, probed, hashed or asked for: a private copy of bytes read once.
        verdict: list[bool] = []

        def inspect(copy: Path, data: bytes, st: os.stat_result) -> None:
            verdict.append(self._inspect(path, directory, dirs, copy, data, st, traits))

        copy = make_private_copy(path, inspect, self.max_library_bytes, real)
        return AdmittedImage(path, copy, trusted=verdict[0])

    def open_library(
        self,
        path: Path,
        *,
        copy_on_load: bool,
        dirs: DirectoryVerdicts | None = None,
        admitted: bool = False,
        traits: Sequence[TraitSpec] = (),
    ) -> Library:
        """:meth:`admit` ``path``, then open what was admitted.

        :raises PluginError: as :meth:`admit`; :class:`LibraryLoadError` when the
            dynamic loader refuses the admitted file.
        """
        image = self.admit(path, copy_on_load=copy_on_load, dirs=dirs, admitted=admitted, traits=traits)
        return Library(image.path, load_path=image.load_path)

    def _inspect(
        self,
        path: Path,
        directory: str,
        dirs: DirectoryVerdicts,
        copy: Path,
        data: bytes,
        st: os.stat_result,
        traits: Sequence[TraitSpec],
    ) -> bool:
        """Policy, pre-check, hash and probe of the bytes about to be loaded; whether they are trusted."""
        trusted = self.policy.check_permissions(path, st, directory, dirs)
        probing = self._probes(trusted)
        symbols: list[str] = []
        if probing:  # the probe needs the plugin symbols the Python pre-check finds
            symbols = precheck_image(Image(path, st, data=data)).plugin_symbols()
        else:
            precheck(path, st, data=data)
            if not self.policy.needs_contents:
                return trusted
        sha256 = sha256_of(data)
        self.policy.check_contents(path, sha256)
        if probing:
            chosen = probe_traits(symbols, traits)
            self.prober.probe(path, copy, ProbeKey.of(path, st, sha256, host_identity(chosen)), chosen)
        return trusted
