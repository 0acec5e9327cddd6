"""The formats ``abi check`` and ``abi diff`` write a :class:`~._report.Report` in.

``text`` (for people; the command writes it), ``json`` (stable, documented in
the README), ``sarif`` (SARIF 2.1.0: one rule per finding kind, with help
text; code scanning uploads it), ``junit`` (JUnit XML: one test case per
library x trait x contract), ``markdown`` (a CI job's step summary) and
``github`` (workflow commands: ``::error file=...::...``).  Nothing here
depends on the time or the machine: the same findings give the same bytes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from ..abi import kind_help
from ._report import EXIT_CHANGE, EXIT_ERROR, EXIT_INCOMPATIBLE, FAIL_ON, Case, Finding, Report, effect_name

__all__ = ["FORMATS", "SARIF_SCHEMA_URI", "SARIF_VERSION", "github_annotations", "render"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
#: A stable identity of a finding across runs (code scanning matches alerts by it).
_FINGERPRINT_KEY = "pluginHostFinding/v1"


def _tool_version() -> str:
    from .._version import __version__

    return __version__


def render_json(report: Report, fail_on: str | None) -> str:
    body = report.json_body()
    body["exit_status"] = report.status(fail_on)
    body["findings"] = [f.to_json() for f in report.findings]
    return json.dumps(body, indent=2) + "\n"


# ---- SARIF 2.1.0 ------------------------------------------------------------------------------------------------


def _camel(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_"))


def _level(finding: Finding) -> str:
    return finding.level if finding.level in ("error", "warning", "note") else "none"


def _default_level(kind: str, findings: list[Finding]) -> str:
    levels = {f.level for f in findings if f.kind == kind}
    for level in ("error", "warning", "note"):
        if level in levels:
            return level
    return "warning"


def artifact_uri(library: str) -> str:
    """A library's path as a SARIF ``uri``: relative paths as relative references, others as ``file:`` URIs."""
    import urllib.parse  # only SARIF needs URIs (its import brings ipaddress and more)

    if os.path.isabs(library):
        return "file://" + urllib.parse.quote(library.replace(os.sep, "/"), safe="/")
    return urllib.parse.quote(library.replace(os.sep, "/"), safe="/")


def _fingerprint(finding: Finding) -> str:
    import hashlib  # only SARIF fingerprints findings (its import loads OpenSSL's bindings)

    parts = (finding.kind, finding.library, finding.trait, finding.type_name, finding.method, finding.symbol)
    text = "\0".join(p or "" for p in (*parts, finding.contract))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def render_sarif(report: Report, fail_on: str | None) -> str:
    kinds = list(dict.fromkeys([*report.rule_kinds, *(f.kind for f in report.findings)]))
    index = {kind: i for i, kind in enumerate(kinds)}
    rules = []
    for kind in kinds:
        short, text = kind_help(kind)
        rules.append(
            {
                "id": kind,
                "name": _camel(kind),
                "shortDescription": {"text": short},
                "fullDescription": {"text": text},
                "help": {"text": text, "markdown": f"**{short}** {text}"},
                "defaultConfiguration": {"level": _default_level(kind, report.findings)},
                "properties": {"tags": ["abi", f"plugin-host-{report.command}"]},
            }
        )
    results = []
    for f in report.findings:
        location: dict[str, object] = {
            "physicalLocation": {"artifactLocation": {"uri": artifact_uri(f.library)}, "region": {"startLine": 1}}
        }
        qualified = ".".join(p for p in (f.trait, f.type_name if not f.method else None, f.method) if p)
        if qualified:
            location["logicalLocations"] = [
                {"name": f.method or f.type_name or f.trait, "fullyQualifiedName": qualified, "kind": "member"}
            ]
        result: dict[str, object] = {
            "ruleId": f.kind,
            "ruleIndex": index[f.kind],
            "level": _level(f),
            "message": {"text": f.shown},
            "locations": [location],
            "partialFingerprints": {_FINGERPRINT_KEY: _fingerprint(f)},
            "properties": {
                "effect": effect_name(f.effect),
                **{k: v for k, v in (("trait", f.trait), ("contract", f.contract), ("symbol", f.symbol)) if v},
            },
        }
        if f.waiver is not None:
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{f.waiver.reason} (until {f.waiver.expires.isoformat()}; {f.waiver.where})",
                }
            ]
        results.append(result)
    status = report.status(fail_on)
    sarif = {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {"driver": {"name": "plugin-host", "version": _tool_version(), "rules": rules}},
                "invocations": [{"executionSuccessful": not status & EXIT_ERROR, "exitCode": status}],
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2) + "\n"


# ---- JUnit XML ---------------------------------------------------------------------------------------------------


def _case_outcome(case: Case, mask: int) -> tuple[list[Finding], list[Finding]]:
    """The findings that make ``case`` an error (tool/input) and a failure (a change that counts)."""
    errors = [f for f in case.findings if f.active_effect & EXIT_ERROR]
    failures = [f for f in case.findings if f.active_effect & mask & (EXIT_CHANGE | EXIT_INCOMPATIBLE)]
    return errors, failures


def render_junit(report: Report, fail_on: str | None) -> str:
    mask = FAIL_ON[fail_on] if fail_on else EXIT_ERROR | EXIT_CHANGE | EXIT_INCOMPATIBLE
    suites: dict[str, list[Case]] = {}
    for case in report.cases:
        suites.setdefault(case.contract or "", []).append(case)
    out = []
    total = {"tests": 0, "failures": 0, "errors": 0}
    body = []
    for contract, cases in suites.items():
        name = f"plugin-host abi {report.command}" + (f" @ {contract}" if contract else "")
        counts = {"tests": len(cases), "failures": 0, "errors": 0}
        lines = []
        for case in cases:
            errors, failures = _case_outcome(case, mask)
            counts["errors"] += bool(errors)
            counts["failures"] += bool(failures) and not errors
            lines.append(f"    <testcase classname={quoteattr(case.library)} name={quoteattr(case.name)}>")
            if errors:
                first = errors[0]
                text = escape("\n".join(f"[{f.kind}] {f.shown}" for f in errors))
                lines.append(
                    f"      <error type={quoteattr(first.kind)} message={quoteattr(first.message)}>{text}</error>"
                )
            elif failures:
                first = failures[0]
                text = escape("\n".join(f"[{f.kind}] {f.shown}" for f in failures))
                lines.append(
                    f"      <failure type={quoteattr(first.kind)} message={quoteattr(first.message)}>{text}</failure>"
                )
            notes = [f for f in case.findings if f not in errors and f not in failures]
            shown = [f"verdict: {case.verdict}", *(f"{f.level}: [{f.kind}] {f.shown}" for f in notes)]
            lines.append(f"      <system-out>{escape(chr(10).join(shown))}</system-out>")
            lines.append("    </testcase>")
        for key in total:
            total[key] += counts[key]
        attrs = " ".join(f'{k}="{v}"' for k, v in counts.items())
        body.append(f"  <testsuite name={quoteattr(name)} {attrs}>")
        body += lines
        body.append("  </testsuite>")
    attrs = " ".join(f'{k}="{v}"' for k, v in total.items())
    out.append('<?xml version="1.0" encoding="UTF-8"?>')
    out.append(f"<testsuites name={quoteattr(report.title)} {attrs}>")
    out += body
    out.append("</testsuites>")
    return _xml_safe("\n".join(out) + "\n")


def escape(text: str) -> str:
    """XML character data (as ``xml.sax.saxutils.escape``, whose import pulls in urllib and http)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoteattr(text: str) -> str:
    """An XML attribute value, double-quoted."""
    return '"' + escape(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;") + '"'


#: Characters XML 1.0 cannot carry at all (a symbol name may hold any byte).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


# ---- Markdown (a step summary) ---------------------------------------------------------------------------------


def _md(text: str) -> str:
    """A table cell: pipes escaped, one line."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report, fail_on: str | None) -> str:
    status = report.status(fail_on)
    verdict = (
        "tool or input error"
        if status & EXIT_ERROR
        else "incompatible ABI change"
        if status & EXIT_INCOMPATIBLE
        else "compatible ABI change"
        if status & EXIT_CHANGE
        else "nothing to report"
    )
    lines = [f"### {report.title}: {verdict} (exit status {status})", ""]
    if report.summary:
        lines += [report.summary, ""]
    if report.contracts:
        lines.append("| library | trait | " + " | ".join(_md(c) for c in report.contracts) + " |")
        lines.append("|---|---|" + "---|" * len(report.contracts))
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for case in report.cases:
            if case.contract is not None:
                rows.setdefault((case.library, case.trait or "(library)"), {})[case.contract] = case.verdict
        for (library, trait), cells in rows.items():
            row = [_md(os.path.basename(library)), _md(trait), *(_md(cells.get(c, "-")) for c in report.contracts)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    shown = [f for f in report.findings if f.level != "note" or f.effect]
    if shown:
        lines.append("| | kind | library | trait | message |")
        lines.append("|---|---|---|---|---|")
        for f in shown:
            mark = "waived" if f.waiver else effect_name(f.effect) if f.effect else f.level
            where = f.trait or "-"
            if f.contract:
                where += f" @ {f.contract}"
            row = [mark, f"`{f.kind}`", _md(os.path.basename(f.library)), _md(where), _md(f.shown)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


# ---- GitHub workflow commands ----------------------------------------------------------------------------------


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(report: Report, fail_on: str | None) -> str:
    """One ``::error``/``::warning``/``::notice`` line per finding (waived ones as notices)."""
    mask = FAIL_ON[fail_on] if fail_on else EXIT_ERROR | EXIT_CHANGE | EXIT_INCOMPATIBLE
    lines = []
    for f in report.findings:
        if f.waiver is not None or (f.level == "note" and not f.effect & mask):
            command = "notice"
        elif f.active_effect & mask or f.level == "error":
            command = "error"
        else:
            command = "warning"
        title = f.kind + (f" ({f.trait})" if f.trait else "") + (f" @ {f.contract}" if f.contract else "")
        lines.append(f"::{command} file={_gh_property(f.library)},title={_gh_property(title)}::{_gh_data(f.shown)}")
    return "\n".join(lines) + ("\n" if lines else "")


#: ``--format`` -> writer (``text`` is the command's own).
FORMATS: dict[str, Callable[[Report, str | None], str]] = {
    "text": lambda report, fail_on: report.text,
    "json": render_json,
    "sarif": render_sarif,
    "junit": render_junit,
    "markdown": render_markdown,
    "github": github_annotations,
}


def render(report: Report, fmt: str, fail_on: str | None) -> str:
    """``report`` in format ``fmt`` (a key of :data:`FORMATS`)."""
    return FORMATS[fmt](report, fail_on)
