"""The load policy: which files the host agrees to load at all.

Like the most careful native-plugin hosts (sudo refuses a plugin that is
group- or world-writable or owned by another user; OpenSSH's StrictModes
checks every directory above a key file too), a plugin is refused when
someone other than the host's user (or root) could have changed it.  The
rule, defined once (:func:`permission_problems`):

- the file actually opened (``fstat`` of the descriptor the host reads) must
  be owned by this user or root and writable by neither group nor others;
- so must its real directory (symlinks resolved) and every directory above it
  up to ``/``, except that a sticky directory (``/tmp``) may be writable by
  others: they can add files there, not replace ours.

A plugin reached through a symlink is judged by its real path, so a link
cannot make a file in a shared directory pass for one in a private
directory; and it is loaded from a private copy of the bytes judged, since
the loader would follow the link again.  A load caches the directories'
verdicts (:class:`DirectoryVerdicts`): a directory load of 200 files stats
each directory above them once.

The directory load's C pre-check (``ph_precheck_path`` in
``host/speedups/speedups.c``) repeats the rule for the file (a regular file,
not a symlink); ``tests/test_policy_agreement.py`` holds every load path, in
C and in Python, to the same verdicts.

Opt out per manager with ``PluginManager(policy=LoadPolicy(allow_insecure_permissions=True))``;
such files count as *untrusted*: they are always loaded from a private copy,
and probed in a child process first unless the manager says ``probe=False``.

An optional allowlist of SHA-256 hashes admits only known files (hashed from
the private copy that is then loaded, so check and load see the same bytes).

**Platform-specific behaviour**: the permission checks are POSIX; on Windows
only the allowlist applies.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plugin_interface import ErrorReason, PluginError

__all__ = ["DirectoryVerdicts", "InsecurePluginError", "LoadPolicy", "permission_problems", "sha256_of"]

#: The write bits nobody but the owner may hold (read when judging, so a test can weaken the rule).
_GROUP_OR_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OPT_OUT = "PluginManager(policy=LoadPolicy(allow_insecure_permissions=True))"
_OPT_OUT_HASH = "add its SHA-256 to LoadPolicy(sha256_allowlist=...)"


class InsecurePluginError(PluginError):
    """The load policy refused a file before reading it as a library.

    :ivar detail: why (``"writable by group and others (mode 0o666)"``, ...).
    :ivar opt_out: how to load it anyway, per manager.
    """

    REASON = ErrorReason.INSECURE

    def __init__(self, path: str | os.PathLike[str], detail: str, opt_out: str) -> None:
        msg = f"{os.fspath(path)}: refused by the load policy: {detail}; to load it anyway: {opt_out}"
        super().__init__(msg, path=path)
        self.detail = detail
        self.opt_out = opt_out


def sha256_of(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _judge(st: os.stat_result, uid: int) -> list[str]:
    """Why someone other than ``uid`` or root could change this file or directory (nothing: no one).

    A sticky directory may be writable by others: they can add entries but
    not rename or remove ours, and what they add is theirs (refused as such).
    """
    found = []
    if st.st_uid != uid and st.st_uid != 0:
        found.append(f"is owned by {_owner(st.st_uid)}, not by this user or root")
    mode = st.st_mode
    if mode & _GROUP_OR_OTHERS_WRITE and not (mode & stat.S_ISVTX and stat.S_ISDIR(mode)):
        found.append(f"is writable by {_who(mode)} (mode {stat.S_IMODE(mode):#o})")
    return found


class DirectoryVerdicts:
    """The policy's view of directories during one load: real paths and verdicts, each looked up once.

    Not kept between loads: a directory changed since is judged again.
    """

    __slots__ = ("_chains", "_real", "_stats", "uid")

    def __init__(self) -> None:
        self.uid = -1 if sys.platform == "win32" else os.geteuid()
        self._real: dict[str, str] = {}
        #: real directory -> its lstat, taken while resolving it (no second stat to judge it).
        self._stats: dict[str, os.stat_result] = {}
        #: real directory -> (directory, what is wrong with it) for it and every directory above it.
        self._chains: dict[str, list[tuple[str, str]]] = {}

    def real_directory(self, directory: str) -> str:
        """``directory`` (absolute) with every symlink resolved."""
        real = self._real.get(directory)
        if real is None:
            real = self._real[directory] = self._walk(directory) or os.path.realpath(directory)
        return real

    def _walk(self, directory: str) -> str | None:
        """``directory`` when it and every directory above it are no symlinks, else ``None``.

        The common case, one ``lstat`` per directory (which :meth:`chain` then
        judges) instead of ``os.path.realpath``'s, on a plain absolute POSIX path.
        """
        if (
            sys.platform == "win32"
            or not directory.startswith("/")
            or "/./" in directory
            or "/../" in directory
            or "//" in directory
            or directory.endswith(("/.", "/.."))
            or (directory.endswith("/") and directory != "/")
        ):
            return None
        seen: dict[str, os.stat_result] = {}
        path = directory
        while path not in self._stats:
            try:
                st = os.lstat(path)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                return None
            seen[path] = st
            parent = path.rpartition("/")[0] or "/"
            if parent == path:
                break
            path = parent
        self._stats.update(seen)  # only now: every directory above them is known to be real
        return directory

    def real_path(self, path: str | os.PathLike[str]) -> str:
        """The file ``path`` names, with every symlink resolved: what the host opens and judges.

        **Platform-specific behaviour**: on Windows, where no permission is
        judged, the absolute path as given.
        """
        text = os.fspath(path)
        if sys.platform == "win32":
            return os.path.abspath(text)
        if not text.startswith("/"):
            text = os.path.abspath(text)
        directory, _, name = text.rpartition("/")
        real = os.path.join(self.real_directory(directory or "/"), name)
        # One lstat; only a link (rare) pays for a full resolution.
        return os.path.realpath(real) if os.path.islink(real) else real

    def in_place_candidates(self, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Per absolute POSIX path: itself when it is its directory's real path and the
        directories pass the rule, else ``""``.

        For the directory load's C pre-check, which judges the file itself
        and refuses a symlink (whose real directory may be another).
        """
        out = []
        last = None
        ok = False
        for path in paths:
            text = os.fspath(path)
            directory = text.rpartition("/")[0] or "/"  # os.path.split costs 4x as much
            if directory != last:
                last = directory
                ok = self.real_directory(directory) == directory and not permission_problems(
                    path, None, directory, self
                )
            out.append(text if ok else "")
        return out

    def chain(self, directory: str) -> list[tuple[str, str]]:
        """What is wrong with the real directory ``directory`` and each directory above it."""
        chain = self._chains.get(directory)
        if chain is not None:
            return chain
        parent = os.path.dirname(directory)
        chain = self.chain(parent) if parent != directory else []
        try:
            st = self._stats.get(directory) or os.stat(directory)
            problems = _judge(st, self.uid)
        except OSError as e:
            problems = [f"cannot be examined ({e.strerror or e})"]
        if problems:
            chain = [(directory, problem) for problem in problems] + chain
        self._chains[directory] = chain
        return chain


def permission_problems(
    path: str | os.PathLike[str], st: os.stat_result | None, directory: str, dirs: DirectoryVerdicts
) -> list[str]:
    """The load policy's rule: why someone other than this user or root could have changed the file.

    Every load path asks this (the directory load's C pre-check asks it about
    the directories and judges the file itself by the same rule, in C).

    :param path: the file as the user named it (for the wording).
    :param st: ``fstat`` of the file opened; ``None`` when the C pre-check judges it.
    :param directory: the real directory of the file opened (:meth:`DirectoryVerdicts.real_path`).
    :returns: the reasons, empty when only this user or root could have changed it.
    """
    if sys.platform == "win32":
        return []
    found = [] if st is None else [f"the file {problem}" for problem in _judge(st, dirs.uid)]
    chain = dirs.chain(directory)
    if chain:
        given = os.path.dirname(os.path.abspath(path))
        own = "its directory" if given == directory else f"its real directory {directory}"
        found += [f"{own if d == directory else f'the directory {d} above it'} {p}" for d, p in chain]
    return found


@dataclass(frozen=True)
class LoadPolicy:
    """What a :class:`~plugin_host.PluginManager` refuses before reading a file as a library.

    :param allow_insecure_permissions: load files (and files in directories)
        that another user could have written.  They are treated as untrusted:
        always copied privately before loading, and probed in a child process
        unless the manager was given ``probe=False``.
    :param sha256_allowlist: when given, only files whose SHA-256 (lowercase
        hex) is listed are loaded.
    """

    allow_insecure_permissions: bool = False
    sha256_allowlist: frozenset[str] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.sha256_allowlist is not None:
            hashes: Iterable[str] = self.sha256_allowlist
            object.__setattr__(self, "sha256_allowlist", frozenset(h.lower() for h in hashes))

    @property
    def needs_contents(self) -> bool:
        """Whether the policy must see the file's bytes (then they are copied privately)."""
        return self.sha256_allowlist is not None

    def check_permissions(
        self, path: str | os.PathLike[str], st: os.stat_result, directory: str, dirs: DirectoryVerdicts
    ) -> bool:
        """Apply the permission rule (:func:`permission_problems`); whether the file is trusted.

        :param st: ``fstat`` of the file opened.
        :param directory: its real directory (:meth:`DirectoryVerdicts.real_path`).
        :returns: ``True`` for a file only this user or root can change;
            ``False`` for an insecure file the policy lets through (untrusted).
        :raises InsecurePluginError: for an insecure file, saying why and how to opt out.
        """
        found = permission_problems(path, st, directory, dirs)
        if not found:
            return True
        if self.allow_insecure_permissions:
            return False
        raise InsecurePluginError(path, "; ".join(found), _OPT_OUT)

    def check_contents(self, path: str | os.PathLike[str], sha256: str) -> None:
        """Apply the allowlist to the bytes about to be loaded.

        :raises InsecurePluginError: the hash is not listed.
        """
        if self.sha256_allowlist is not None and sha256 not in self.sha256_allowlist:
            raise InsecurePluginError(path, f"its SHA-256 {sha256} is not in the allowlist", _OPT_OUT_HASH)


def _who(mode: int) -> str:
    who = [name for bit, name in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others")) if mode & bit]
    return " and ".join(who)
