"""The load policy: which files the host agrees to load at all.

Like the most careful native-plugin hosts (sudo refuses a plugin that is
group- or world-writable or owned by another user), a plugin is refused when
someone other than the host's user (or root) could have changed it:

- the file is writable by its group or by others, or owned by another user;
- its directory is writable by group or others (without the sticky bit), or
  owned by another user: anyone who can write there can replace the file.

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
from collections.abc import Iterable
from dataclasses import dataclass, field

from plugin_interface import ErrorReason, PluginError

__all__ = ["InsecurePluginError", "LoadPolicy", "sha256_of"]

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

    def problems(self, st: os.stat_result, dir_st: os.stat_result | None) -> list[str]:
        """Why a file with this ``fstat`` (in a directory with ``dir_st``) is insecure; empty if it is not."""
        if sys.platform == "win32":
            return []
        me = os.geteuid()
        found = []
        if st.st_uid not in (me, 0):
            found.append(f"the file is owned by {_owner(st.st_uid)}, not by this user or root")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            found.append(f"the file is writable by {_who(st.st_mode)} (mode {stat.S_IMODE(st.st_mode):#o})")
        if dir_st is not None:
            if dir_st.st_uid not in (me, 0):
                found.append(f"its directory is owned by {_owner(dir_st.st_uid)}, not by this user or root")
            # A sticky directory (/tmp) lets others add files but not replace ours;
            # a file they add is refused by the owner check above.
            if dir_st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not dir_st.st_mode & stat.S_ISVTX:
                mode = stat.S_IMODE(dir_st.st_mode)
                found.append(f"its directory is writable by {_who(dir_st.st_mode)} (mode {mode:#o})")
        return found

    def check_permissions(
        self, path: str | os.PathLike[str], st: os.stat_result, dir_st: os.stat_result | None
    ) -> bool:
        """Apply the permission rule; whether the file is trusted.

        :returns: ``True`` for a file only this user or root can change;
            ``False`` for an insecure file the policy lets through (untrusted).
        :raises InsecurePluginError: for an insecure file, saying why and how to opt out.
        """
        if sys.platform == "win32":
            return True  # no POSIX owners or modes there: only the allowlist applies
        if st.st_uid in (os.geteuid(), 0) and not st.st_mode & _GROUP_OR_OTHERS_WRITE and self.trusts_directory(dir_st):
            return True  # the common case, without building messages
        found = self.problems(st, dir_st)
        if not found:
            return True
        if self.allow_insecure_permissions:
            return False
        raise InsecurePluginError(path, "; ".join(found), _OPT_OUT)

    def trusts_directory(self, dir_st: os.stat_result | None) -> bool:
        """Whether a directory with this ``stat`` is owned by this user (or root)
        and writable by no one else.  ``False`` means "not shown": then
        :meth:`check_permissions` decides and says why."""
        if sys.platform == "win32":
            return True
        return dir_st is not None and dir_st.st_uid in (os.geteuid(), 0) and not dir_st.st_mode & _GROUP_OR_OTHERS_WRITE

    def check_contents(self, path: str | os.PathLike[str], sha256: str) -> None:
        """Apply the allowlist to the bytes about to be loaded.

        :raises InsecurePluginError: the hash is not listed.
        """
        if self.sha256_allowlist is not None and sha256 not in self.sha256_allowlist:
            raise InsecurePluginError(path, f"its SHA-256 {sha256} is not in the allowlist", _OPT_OUT_HASH)


def _who(mode: int) -> str:
    who = [name for bit, name in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others")) if mode & bit]
    return " and ".join(who)
