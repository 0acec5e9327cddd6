"""Waivers: ABI changes and problems a project has accepted, each with a reason and an expiry date.

A waiver file is TOML, one ``[[waiver]]`` table per accepted finding::

    [[waiver]]
    kind = "method_removed"              # required: a problem or change kind
    library = "libgreeter*.so"           # optional: a glob on the library's file name
    trait = "Greeter"                    # optional
    method = "shout"                     # optional (also: type, symbol, contract)
    reason = "shout was never released"  # required
    expires = 2027-01-31                 # required: the last day it applies

A finding every given field of a waiver matches is reported as waived and
sets no exit bit, up to and including the ``expires`` day; after it, the
finding fails again and says which waiver expired.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..formats import read_small_file

if TYPE_CHECKING:
    import datetime

__all__ = ["MAX_WAIVER_FILE_BYTES", "WAIVER_FIELDS", "Waiver", "load_waivers"]

#: A waiver file larger than this (in bytes) is refused unread.
MAX_WAIVER_FILE_BYTES = 1 << 20
#: What a waiver may match on, besides ``kind`` (``library`` is a glob, the others exact).
WAIVER_FIELDS = ("library", "trait", "type", "method", "symbol", "contract")
_KEYS = frozenset({"kind", "reason", "expires", *WAIVER_FIELDS})


@dataclass(frozen=True)
class Waiver:
    """One accepted finding.

    :ivar expires: the last day the waiver applies.
    :ivar where: ``"FILE, waiver N"``, for messages.
    """

    kind: str
    reason: str
    expires: datetime.date
    where: str
    library: str | None = None
    trait: str | None = None
    type: str | None = None
    method: str | None = None
    symbol: str | None = None
    contract: str | None = None

    def matches(self, kind: str, facts: dict[str, str | None]) -> bool:
        """Whether the waiver covers a finding of ``kind`` with ``facts`` (field -> value; ``library`` a path)."""
        if kind != self.kind:
            return False
        for name in WAIVER_FIELDS:
            wanted = getattr(self, name)
            if wanted is None:
                continue
            value = facts.get(name)
            if value is None:
                return False
            if name == "library":
                import fnmatch  # only a waiver with a library glob matches on one

                if not fnmatch.fnmatchcase(os.path.basename(value), wanted) and not fnmatch.fnmatchcase(value, wanted):
                    return False
            elif value != wanted:
                return False
        return True

    def expired(self, today: datetime.date) -> bool:
        """Whether ``today`` is past :attr:`expires`."""
        return today > self.expires

    def to_json(self) -> dict[str, object]:
        """How a report names the waiver."""
        return {"reason": self.reason, "expires": self.expires.isoformat(), "where": self.where}


def load_waivers(path: str | os.PathLike[str]) -> list[Waiver]:
    """The waivers of a TOML file (see the module's documentation).

    :raises ValueError: naming the file and the waiver: unreadable, not TOML,
        an unknown key, a missing reason or expiry date.
    """
    name = os.fspath(path)
    raw = read_small_file(name, MAX_WAIVER_FILE_BYTES, "a waiver file")
    import tomllib  # only a run with --waivers parses TOML

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{name}: not a TOML file: {e}") from e
    unknown = sorted(set(data) - {"waiver"})
    if unknown:
        raise ValueError(f"{name}: unknown top-level key {unknown[0]!r} (waivers are [[waiver]] tables)")
    entries = data.get("waiver", [])
    if not isinstance(entries, list):
        raise ValueError(f"{name}: waiver must be an array of tables ([[waiver]])")
    return [_waiver(entry, f"{name}, waiver {i}") for i, entry in enumerate(entries, start=1)]


def _waiver(entry: object, where: str) -> Waiver:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: not a table")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    for key in ("kind", "reason", *WAIVER_FIELDS):
        if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
            raise ValueError(f"{where}: {key} must be a non-empty string")
    if "kind" not in entry:
        raise ValueError(f"{where}: no kind (the problem or change kind it accepts)")
    if "reason" not in entry:
        raise ValueError(f"{where}: no reason: say why the change is accepted")
    import datetime  # only a run with --waivers needs dates

    expires = entry.get("expires")
    if isinstance(expires, str):
        try:
            expires = datetime.date.fromisoformat(expires)
        except ValueError as e:
            raise ValueError(f"{where}: expires {entry['expires'][:40]!r} is not a date (YYYY-MM-DD)") from e
    if isinstance(expires, datetime.datetime) or not isinstance(expires, datetime.date):
        raise ValueError(f"{where}: expires must be a date (expires = 2027-01-31): every waiver ends")
    return Waiver(
        kind=entry["kind"],
        reason=entry["reason"],
        expires=expires,
        where=where,
        **{k: entry.get(k) for k in WAIVER_FIELDS},
    )
