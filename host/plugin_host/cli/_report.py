"""What ``abi check`` and ``abi diff`` found, in one shape every output format is written from.

A :class:`Finding` is one problem or change, with the exit bit it sets
(:data:`EXIT_CHANGE`, :data:`EXIT_INCOMPATIBLE`, :data:`EXIT_ERROR`) unless a
waiver accepts it.  A :class:`Case` is one library x trait (x host contract):
a JUnit test case, a cell of the compatibility matrix.  The exit status is the
OR of the bits of the findings no waiver accepts, masked by ``--fail-on``
(bits in the style of libabigail's ``abidiff``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime

    from ..abi import Waiver

__all__ = [
    "EXIT_CHANGE",
    "EXIT_ERROR",
    "EXIT_INCOMPATIBLE",
    "EXIT_OK",
    "EXIT_USAGE",
    "FAIL_ON",
    "Case",
    "Finding",
    "Report",
    "apply_waivers",
    "effect_name",
]

#: Exit bits: nothing to report; a tool or input error; a usage error; a compatible ABI change; an incompatible one.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHANGE, EXIT_INCOMPATIBLE = 0, 1, 2, 4, 8
#: ``--fail-on`` -> the bits that count (errors always do).
FAIL_ON = {
    "incompatible": EXIT_ERROR | EXIT_INCOMPATIBLE,
    "change": EXIT_ERROR | EXIT_CHANGE | EXIT_INCOMPATIBLE,
}
_EFFECT_NAMES = {EXIT_OK: "none", EXIT_ERROR: "error", EXIT_CHANGE: "change", EXIT_INCOMPATIBLE: "incompatible"}


def effect_name(effect: int) -> str:
    """``"incompatible"``, ``"change"``, ``"error"`` or ``"none"`` (the JSON ``effect``)."""
    return _EFFECT_NAMES[effect]


class Finding:
    """One problem (``abi check``) or change (``abi diff``).

    :ivar level: ``"error"``, ``"warning"`` or ``"note"`` (SARIF's levels).
    :ivar effect: the exit bit it sets, 0 for none.
    :ivar library: the library as the report names it (a path, or a baseline's file name).
    :ivar contract: the host contract it was found against (``None``: any host).
    :ivar waiver: the waiver that accepts it (then it sets no bit).
    :ivar expired: a waiver that matched it but has expired (then it counts again).
    """

    # A plain class, as Case and Report: a dataclass costs every abi process its class-making at import.
    __slots__ = (
        "contract",
        "effect",
        "expired",
        "kind",
        "level",
        "library",
        "message",
        "method",
        "symbol",
        "trait",
        "type_name",
        "waiver",
    )

    def __init__(
        self,
        kind: str,
        level: str,
        effect: int,
        message: str,
        library: str,
        trait: str | None = None,
        type_name: str | None = None,
        method: str | None = None,
        symbol: str | None = None,
        contract: str | None = None,
        waiver: Waiver | None = None,
        expired: Waiver | None = None,
    ) -> None:
        self.kind, self.level, self.effect, self.message, self.library = kind, level, effect, message, library
        self.trait, self.type_name, self.method, self.symbol, self.contract = trait, type_name, method, symbol, contract
        self.waiver, self.expired = waiver, expired

    def __repr__(self) -> str:
        return f"Finding({self.kind!r}, {self.level!r}, {self.library!r}, {self.message!r})"

    @property
    def active_effect(self) -> int:
        """:attr:`effect`, or 0 when waived."""
        return 0 if self.waiver is not None else self.effect

    @property
    def facts(self) -> dict[str, str | None]:
        """The fields a waiver matches on."""
        return {
            "library": self.library,
            "trait": self.trait,
            "type": self.type_name,
            "method": self.method,
            "symbol": self.symbol,
            "contract": self.contract,
        }

    @property
    def shown(self) -> str:
        """The message with what a waiver did to it."""
        out = self.message
        if self.waiver is not None:
            out += f" [waived until {self.waiver.expires.isoformat()}: {self.waiver.reason}]"
        elif self.expired is not None:
            out += (
                f" [waiver expired on {self.expired.expires.isoformat()} ({self.expired.where}): {self.expired.reason}]"
            )
        return out

    def to_json(self) -> dict[str, object]:
        """The ``findings`` entry of the JSON output."""
        return {
            "kind": self.kind,
            "level": self.level,
            "effect": effect_name(self.effect),
            "library": self.library,
            "trait": self.trait,
            "type": self.type_name,
            "method": self.method,
            "symbol": self.symbol,
            "contract": self.contract,
            "message": self.message,
            "waived": self.waiver.to_json() if self.waiver else None,
            "waiver_expired": self.expired.to_json() if self.expired else None,
        }


class Case:
    """One library x trait (x contract): a JUnit test case, a matrix cell.

    :ivar trait: ``None`` for the library as a whole (not a library, symbols outside any trait).
    :ivar verdict: ``identical``, ``compatible``, ``breaking``, ``unchecked``, ``self-described``,
        ``error`` (check); ``unchanged``, ``changed``, ``added``, ``removed`` (diff).
    """

    __slots__ = ("contract", "findings", "library", "trait", "verdict")

    def __init__(
        self, library: str, trait: str | None, contract: str | None, verdict: str, findings: list[Finding] | None = None
    ) -> None:
        self.library, self.trait, self.contract, self.verdict = library, trait, contract, verdict
        self.findings = [] if findings is None else findings

    def __repr__(self) -> str:
        return f"Case({self.library!r}, {self.trait!r}, {self.contract!r}, {self.verdict!r})"

    @property
    def name(self) -> str:
        """The test case's name."""
        what = self.trait or "(library)"
        return f"{what} @ {self.contract}" if self.contract else what


class Report:
    """Everything one command found, for every output format.

    :ivar command: ``"check"`` or ``"diff"``.
    :ivar json_body: makes the command's own JSON document (``schema`` and its fields),
        only for the JSON output, which adds ``exit_status`` and ``findings``.
    :ivar contracts: the host contracts checked against (empty: this host).
    :ivar rule_kinds: every kind the command can report (the SARIF rules).
    """

    __slots__ = (
        "cases",
        "command",
        "contracts",
        "findings",
        "json_body",
        "rule_kinds",
        "summary",
        "text",
        "title",
        "unused_waivers",
    )

    def __init__(
        self,
        command: str,
        title: str,
        findings: list[Finding],
        cases: list[Case],
        json_body: Callable[[], dict[str, object]],
        rule_kinds: Sequence[str],
        contracts: list[str] | None = None,
        summary: str = "",
        text: str = "",
        unused_waivers: list[Waiver] | None = None,
    ) -> None:
        self.command, self.title, self.findings, self.cases = command, title, findings, cases
        self.json_body, self.rule_kinds, self.summary, self.text = json_body, rule_kinds, summary, text
        self.contracts = [] if contracts is None else contracts
        self.unused_waivers = [] if unused_waivers is None else unused_waivers

    def status(self, fail_on: str | None) -> int:
        """The exit status: the OR of the active findings' bits that ``--fail-on`` counts."""
        mask = FAIL_ON[fail_on] if fail_on else EXIT_ERROR | EXIT_CHANGE | EXIT_INCOMPATIBLE
        status = 0
        for f in self.findings:
            status |= f.active_effect
        return status & mask


def apply_waivers(findings: Iterable[Finding], waivers: Sequence[Waiver], today: datetime.date) -> list[Waiver]:
    """Mark the findings waivers accept (or accepted until they expired); return the waivers nothing matched."""
    used: set[int] = set()
    for f in findings:
        matching = [(i, w) for i, w in enumerate(waivers) if w.matches(f.kind, f.facts)]
        used.update(i for i, _ in matching)
        live = [w for _, w in matching if not w.expired(today)]
        if live:
            f.waiver = live[0]
        elif matching:
            f.expired = max((w for _, w in matching), key=lambda w: w.expires)
    return [w for i, w in enumerate(waivers) if i not in used]
