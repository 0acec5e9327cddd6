"""``plugin-host abi check | dump | diff | contract``: gate a plugin's exported ABI in CI, without loading it.

``abi check --probe`` then runs each library's code, but in a child process
(:func:`~plugin_host.admission.probe_library`).

Exit status (bits, as libabigail's ``abidiff``): 0 nothing to report, 1 a tool
or input error (a file that is not a library, a bad dump, contract or waiver
file), 2 a usage error, 4 a compatible ABI change, 8 an incompatible one;
``--fail-on incompatible`` leaves 4 out.  Errors go to stderr, the report to
stdout or ``-o FILE``, in ``--format text|json|sarif|junit|markdown|github``
(:mod:`._formats`); the JSON schema is in the README ("Gate ABI in CI").

Only what ``abi`` needs is imported here: the probe (and with it the whole
loading stack) is imported when ``--probe`` asks for it, so a check of 500
libraries does not pay for it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from plugin_interface import (
    ArchitectureMismatchError,
    PluginError,
    TraitSpec,
    UnknownTraitError,
    declared_trait_versions,
    declared_traits,
)
from plugin_interface import resolve_trait as _resolve_trait

from .. import abi as abi_layer  # baselines, contracts, waivers: imported by abi_layer on first use
from ..abi import (
    CHECK_SCHEMA,
    COMPATIBLE_DIFFERENCE,
    DIFF_SCHEMA,
    AbiChange,
    ChangeKind,
    LibraryAbi,
    Problem,
    ProblemKind,
    Severity,
    TraitCheck,
    check_library,
    check_to_json,
    diff_abi,
    scan_library,
)
from ..formats import ALL_LIBRARY_SUFFIXES, BinaryFormat, native_format, plugin_file_paths
from ._formats import FORMATS, github_annotations, render, render_markdown
from ._output import ABI_HELP, missing_path, table
from ._report import (
    EXIT_CHANGE,
    EXIT_ERROR,
    EXIT_INCOMPATIBLE,
    EXIT_OK,
    EXIT_USAGE,
    FAIL_ON,
    Case,
    Finding,
    Report,
    apply_waivers,
)

if TYPE_CHECKING:
    import datetime

    from ..abi import AbiBaseline, Waiver

__all__ = ["add_abi_parser"]

#: The longest ``--probe-timeout`` (in seconds): a day; more is a typo, and too much for ``select``.
MAX_PROBE_TIMEOUT_S = 86400.0
#: ``--probe-timeout``'s default, ``admission.DEFAULT_PROBE_TIMEOUT_S`` (asserted equal in tests/test_abi_gate.py:
#: importing the admission layer here would cost every ``abi`` command the whole loading stack).
DEFAULT_PROBE_TIMEOUT_S = 10.0
#: Problem kinds whose verdict depends on the host's declarations (checked once per contract); the others are
#: facts of the file alone.
_CONTRACT_KINDS = frozenset(
    {
        ProblemKind.UNKNOWN_TRAIT,
        ProblemKind.MISSING_DESCRIPTOR,
        ProblemKind.DESCRIPTOR_UNREADABLE,
        ProblemKind.DESCRIPTOR_MISMATCH,
        ProblemKind.METHOD_MISMATCH,
    }
)
_CHECK_RULES = (*(k.value for k in ProblemKind), COMPATIBLE_DIFFERENCE)
_DIFF_RULES = (*(k.value for k in ChangeKind), ProblemKind.NOT_A_LIBRARY.value)


class _InputError(Exception):
    """A tool or input error before any report: exit 1, the message on stderr."""


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _input_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _library_files(paths: list[str]) -> list[str] | str:
    """Files to check (a directory contributes its libraries); a message for a missing path.

    Anything else that exists is checked: a FIFO or device is reported by the
    scan (which never blocks on one) as not a library.
    """
    files: list[str] = []
    for raw in paths:
        problem = missing_path(raw)
        if problem is not None:
            return problem
        if not os.path.isdir(raw):
            files.append(raw)
            continue
        try:
            files += plugin_file_paths(raw, ALL_LIBRARY_SUFFIXES)
        except OSError as e:
            return f"{raw}: cannot list the directory: {e.strerror or e}"
    return files


def _describe_descriptor(abi: LibraryAbi, trait: str) -> str:
    t = abi.traits[trait]
    if t.descriptor_error:
        return "unreadable"
    if t.descriptor is None:
        return "-"
    d = t.descriptor
    return f"v{d.trait_version}, {d.method_count} method{'s' if d.method_count != 1 else ''}"


def _today() -> datetime.date:
    """The day waivers are judged on (UTC, so every CI machine agrees)."""
    import datetime  # only --waivers needs dates

    return datetime.datetime.now(datetime.UTC).date()


def _load_waivers(args: argparse.Namespace) -> list[Waiver]:
    waivers: list[Waiver] = []
    for path in args.waivers or ():
        try:
            waivers += abi_layer.load_waivers(path)
        except ValueError as e:
            raise _InputError(str(e)) from e
    return waivers


# ---- check ------------------------------------------------------------------------------------------------------


class _Context:
    """One set of host declarations a library is checked against: this host's, or a contract's."""

    def __init__(self, name: str | None, traits: dict[str, TraitSpec], host: str) -> None:
        self.name, self.traits, self.host = name, traits, host


def _problem_finding(p: Problem, library: str, contract: str | None) -> Finding:
    if p.kind is ProblemKind.NOT_A_LIBRARY:
        level, effect = "error", EXIT_ERROR
    elif p.severity is Severity.ERROR:
        level, effect = "error", EXIT_INCOMPATIBLE
    else:
        level, effect = "warning", EXIT_OK
    return Finding(p.kind.value, level, effect, p.message, library, p.trait, None, p.method, p.symbol, contract)


def _verdict(check: TraitCheck, findings: list[Finding], self_described: bool) -> str:
    if any(f.effect & EXIT_INCOMPATIBLE for f in findings):
        return "incompatible"
    if self_described:
        return "self-described"
    return "compatible" if check.compatibility == "compatible" else check.compatibility


def _declared_here(trait: str | None) -> bool:
    """Whether ``--trait`` names a trait this host declares; if not, a library checked must export it
    (a trait only the plugins declare, by its name, as everywhere else: ``registry.requested_trait``)."""
    if trait is None:
        return True
    try:
        _resolve_trait(trait)
    except UnknownTraitError:
        return False
    return True


def _split_trait(trait: str | None) -> tuple[str | None, str | None]:
    """``--trait``'s name, and its version (``"2"`` of ``Name@2`` or ``Name@v2``; ``None`` without one)."""
    if trait is None:
        return None, None
    name, at, wanted = trait.partition("@")
    return name, wanted.removeprefix("v") if at else None


def _at_version(traits: dict[str, TraitSpec], name: str | None, version: str | None) -> dict[str, TraitSpec]:
    """``traits`` for ``--trait name@version``: a declaration of another version of ``name`` is left out, so
    each library's own declaration of it is used (as wherever a host declares no such version)."""
    if version is None or name not in traits or str(traits[name].version) == version:
        return traits
    return {n: spec for n, spec in traits.items() if n != name}


def _host_traits(trait: str | None, declared_here: bool) -> dict[str, TraitSpec]:
    """The host's declarations a check uses: the latest version of each, or the one ``--trait Name@N`` names."""
    traits = declared_traits()
    name, version = _split_trait(trait)
    if version is None or name is None:
        return traits
    if declared_here:
        return {**traits, name: _resolve_trait(trait or name)}  # version N, maybe older than the latest
    return _at_version(traits, name, version)


def _selected(abi: LibraryAbi, trait: str | None, contexts: list[_Context]) -> str | None:
    """What ``check_library`` selects of ``abi`` for ``--trait``: ``Name@N`` is the trait ``Name`` unless no
    context declares version N and the library's own declaration is of another version (then nothing: no_plugin)."""
    name, version = _split_trait(trait)
    if version is None or name is None or any(name in ctx.traits for ctx in contexts):
        return name
    own = abi.traits.get(name)
    if own is None or own.declaration is None or str(own.declaration.version) == version:
        return name
    return trait


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """The cyclic garbage collector off meanwhile (as it was after).

    A check keeps what it reads of every library until the report is written, and frees nothing the
    collector could: each collection would only walk a heap that grows with the files (1.3% of the
    instructions of a check of 500 files; ``gc.collect()`` still works).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def cmd_abi_check(args: argparse.Namespace) -> int:
    with _collection_paused():
        return _check(args)


def _check(args: argparse.Namespace) -> int:
    declared_here = _declared_here(args.trait)
    only, version = _split_trait(args.trait)
    exported: set[str] = set()  # the traits the libraries export, for a --trait the host does not declare
    embedded: set[str] = set()  # ``Name@N`` of the declarations they embed, for a --trait Name@N
    files = _library_files(args.paths)
    if isinstance(files, str):
        return _usage_error(files)
    if not files:
        return _usage_error(f"no library files ({', '.join(ALL_LIBRARY_SUFFIXES)}) in {', '.join(args.paths)}")
    try:
        contracts = [abi_layer.load_contract(c) for c in args.contract or ()]
        waivers = _load_waivers(args)
    except ValueError as e:
        return _input_error(str(e))
    except _InputError as e:
        return _input_error(str(e))
    names = [c.name for c in contracts]
    if len(set(names)) != len(names):
        return _input_error(f"two contracts are named {next(n for n in names if names.count(n) > 1)!r}")
    contexts = [_Context(c.name, _at_version(c.traits, only, version), f"contract {c.name}") for c in contracts] or [
        _Context(None, _host_traits(args.trait, declared_here), "the host")
    ]
    findings: list[Finding] = []
    cases: list[Case] = []
    rows: list[list[str]] = []
    entries: list[Callable[[], dict[str, object]]] = []
    # Only some formats use the per-case records and the table: a check of hundreds of files skips the rest.
    want_cases = args.format in ("junit", "markdown") or bool(args.summary)
    want_rows = args.format == "text"
    want_json = args.format == "json"  # the other formats are made of the findings (and cases)
    want_verdicts = want_cases or bool(contracts)  # a host check's row shows the compatibility alone
    for path in files:
        library = str(path)
        abi: LibraryAbi | None
        try:
            abi = scan_library(path)
        except PluginError as e:
            abi = None
            problem = Problem(Severity.ERROR, ProblemKind.NOT_A_LIBRARY, _without_path(e))
            finding = _problem_finding(problem, library, None)
            findings.append(finding)
            cases.append(Case(library, None, None, "error", [finding]))
            rows.append([os.path.basename(path), "?", "-", "-", "-", "-", *(["not a library"] * len(contexts))])
            probe = _probe(path, None, args.probe_timeout)[0] if args.probe else None
            if want_json:
                entries.append(_entry_json(None, library, [problem], [], probe, bool(contracts)))
            if args.probe:
                rows[-1].append("-")
            continue
        if not declared_here:
            exported.update(abi.traits)
            embedded.update(f"{t.name}@{t.declaration.version}" for t in abi.traits.values() if t.declaration)
        selected = None if args.trait is None else _selected(abi, args.trait, contexts)
        results = [check_library(abi, ctx.traits, selected, ctx.host) for ctx in contexts]
        free = [p for p in results[0][0] if p.kind not in _CONTRACT_KINDS]
        probe = None
        if args.probe:
            probe, found = _probe(path, abi, args.probe_timeout)
            free += found
        lib_findings = [_problem_finding(p, library, None) for p in free]
        per_context: list[tuple[_Context, list[Problem], dict[str, TraitCheck]]] = []
        cells: dict[str, list[str]] = {}
        for ctx, (problems, checks) in zip(contexts, results, strict=True):
            own = [p for p in problems if p.kind in _CONTRACT_KINDS]
            per_context.append((ctx, own, checks))
            own_findings = [_problem_finding(p, library, ctx.name) for p in own]
            for trait, check in checks.items():
                # Self-described (no declaration of the host's): the plugin's own two halves, not a change.
                if check.compatibility == "compatible" and trait in ctx.traits:
                    message = f"trait {trait}: " + "; ".join(check.differences)
                    own_findings.append(
                        Finding(
                            COMPATIBLE_DIFFERENCE,
                            "note",
                            EXIT_CHANGE,
                            message,
                            library,
                            trait,
                            None,
                            None,
                            None,
                            ctx.name,
                        )
                    )
            lib_findings += own_findings
            for trait, check in checks.items() if want_verdicts else ():
                mine = (
                    [f for f in lib_findings if f.trait == trait and f.contract in (None, ctx.name)]
                    if lib_findings
                    else []
                )
                self_described = (
                    ctx.name is not None and trait not in ctx.traits and abi.traits[trait].declaration is not None
                )
                verdict = _verdict(check, mine, self_described) if mine or self_described else check.compatibility
                if want_cases:
                    cases.append(Case(library, trait, ctx.name, verdict, mine))
                cells.setdefault(trait, []).append(verdict)
        if want_cases:
            cases.append(Case(library, None, None, "checked", [f for f in lib_findings if f.trait is None]))
            if not results[0][1]:  # nothing to check per trait (no plugin for --trait): the library case says why
                cases[-1].findings = [f for f in lib_findings if f.trait is None or f.trait not in abi.traits]
        findings += lib_findings
        if want_rows:
            rows += _check_rows(path, abi, results[0][1], cells, bool(contracts), probe)
        if want_json:
            entries.append(_entry_json(abi, library, free, per_context, probe, bool(contracts)))
    if not declared_here and not _known_somewhere(args.trait, contexts, exported, embedded):  # a typo, most likely
        if version is None:
            known = {*declared_traits(), *exported}
        else:
            declared = [*declared_trait_versions(), *(s for ctx in contexts for s in ctx.traits.values())]
            known = {*(f"{s.name}@{s.version}" for s in declared), *embedded}
        return _usage_error(str(UnknownTraitError(args.trait, sorted(known))))
    unused = apply_waivers(findings, waivers, _today()) if waivers else []
    errors = sum(1 for f in findings if f.level == "error" and f.active_effect)
    warnings = sum(1 for f in findings if f.level == "warning" and not f.waiver)
    waived = sum(1 for f in findings if f.waiver)
    summary = (
        f"{len(files)} librar{'y' if len(files) == 1 else 'ies'} checked"
        + (f" against {len(contracts)} contract(s)" if contracts else "")
        + f": {errors} error(s), {warnings} warning(s)"
        + (f", {waived} waived" if waived else "")
    )

    def body() -> dict[str, object]:
        ok = not any(f.active_effect & (EXIT_ERROR | EXIT_INCOMPATIBLE) for f in findings)
        out: dict[str, object] = {"schema": CHECK_SCHEMA, "ok": ok}
        if contracts:
            out["contracts"] = names
        out["libraries"] = [make() for make in entries]
        return out

    report = Report(
        "check",
        "plugin-host abi check",
        findings,
        cases,
        body,
        _CHECK_RULES,
        names,
        summary,
        unused_waivers=unused,
    )
    header = ["library", "format", "trait", "types", "array", "descriptor", *(names or ["host check"])]
    report.text = _check_text(rows, [*header, "probe"] if args.probe else header, findings, summary, report, args)
    return _emit(report, args)


def _known_somewhere(trait: str, contexts: list[_Context], exported: set[str], embedded: set[str]) -> bool:
    """Whether ``--trait`` (one the host does not declare) is a contract's or a library's checked."""
    name, version = _split_trait(trait)
    if version is None:
        return name in exported or any(name in ctx.traits for ctx in contexts)
    return f"{name}@{version}" in embedded or any(name in ctx.traits for ctx in contexts)


def _check_text(
    rows: list[list[str]],
    header: list[str],
    findings: list[Finding],
    summary: str,
    report: Report,
    args: argparse.Namespace,
) -> str:
    out = [table(rows, header)] if rows else []
    for f in findings:
        where = f" @ {f.contract}" if f.contract else ""
        out.append(f"{f.level}: {f.library}: [{f.kind}{where}] {f.shown}")
    out.append(f"\n{summary}; exit status {report.status(args.fail_on)}")
    return "\n".join(out) + "\n"


def _entry_json(
    abi: LibraryAbi | None,
    library: str,
    free: list[Problem],
    per_context: list[tuple[_Context, list[Problem], dict[str, TraitCheck]]],
    probe: dict[str, object] | None,
    matrix: bool,
) -> Callable[[], dict[str, object]]:
    """Makes one library's entry of the JSON output (only if the JSON is written)."""

    def make() -> dict[str, object]:
        if not matrix:
            # This host: the entry of plugin-host-abi-check/1, with the host's verdicts in its traits.
            own, checks = (per_context[0][1], per_context[0][2]) if per_context else ([], {})
            entry = check_to_json(abi, library, _in_order(free, own), checks)
        else:
            entry = check_to_json(abi, library, free, {})
            if abi is not None:
                entry["traits"] = {name: t.to_json() for name, t in sorted(abi.traits.items())}
            entry["contracts"] = {
                ctx.name: {
                    "ok": not any(p.severity is Severity.ERROR for p in (*free, *own)),
                    "traits": {
                        name: {"compatibility": c.compatibility, "differences": c.differences}
                        for name, c in sorted(checks.items())
                    },
                    "problems": [p.to_json() for p in own],
                }
                for ctx, own, checks in per_context
            }
        if probe is not None:
            entry["probe"] = probe
        return entry

    return make


def _in_order(free: list[Problem], own: list[Problem]) -> list[Problem]:
    """The problems of one host check in the order check_library found them (probe findings last)."""
    return [
        *[p for p in free if not p.kind.value.startswith("probe_")],
        *own,
        *[p for p in free if p.kind.value.startswith("probe_")],
    ]


def _without_path(e: PluginError) -> str:
    """``e``'s message without its leading ``path: `` (problems are printed after the path)."""
    return str(e).removeprefix(f"{e.path}: ") if e.path else str(e)


def _probe(path: str, abi: LibraryAbi | None, timeout_s: float) -> tuple[dict[str, object], list[Problem]]:
    """``--probe``: run the library's constructors, makers and unmakers once in a child process.

    Uncached (:func:`~plugin_host.admission.probe_library` with
    ``use_cache=False``): a check answers for the file as it is now, and a
    timeout can be retried with a longer ``--probe-timeout``.

    :returns: the ``probe`` object of the JSON entry, and the problems found.
    """
    if abi is None or not abi.traits:
        return {"status": "not_run", "made": 0}, []  # not a library, or no plugin: already an error
    if abi.format != native_format():
        msg = f"a {BinaryFormat(abi.format).display_name} library cannot be loaded by this host: not probed"
        return {"status": "skipped", "made": 0}, [Problem(Severity.WARNING, ProblemKind.PROBE_SKIPPED, msg)]
    # Imported here: the admission layer brings the whole loading stack, which only --probe uses.
    from ..admission import ProbeCrashedError, ProbeExitedError, ProbeTimeoutError, probe_library

    failures = (
        (ProbeCrashedError, ProblemKind.PROBE_CRASHED, "crashed"),
        (ProbeExitedError, ProblemKind.PROBE_EXITED, "exited"),
        (ProbeTimeoutError, ProblemKind.PROBE_TIMEOUT, "timeout"),
    )

    try:
        result = probe_library(path, timeout_s=timeout_s, use_cache=False)
    except ArchitectureMismatchError as e:
        return {"status": "skipped", "made": 0}, [
            Problem(Severity.WARNING, ProblemKind.PROBE_SKIPPED, f"{_without_path(e)}: not probed")
        ]
    except PluginError as e:
        kind, status = next(
            ((k, s) for cls, k, s in failures if isinstance(e, cls)), (ProblemKind.PROBE_FAILED, "failed")
        )
        return {"status": status, "made": 0}, [Problem(Severity.ERROR, kind, _without_path(e), symbol=e.symbol)]
    if not result.clean:
        reason = "; ".join(result.problems) or "the probe reported a failure"
        return {"status": "failed", "made": result.made}, [Problem(Severity.ERROR, ProblemKind.PROBE_FAILED, reason)]
    return {"status": "clean", "made": result.made}, []


def _describe_probe(probe: dict[str, object] | None) -> str:
    if probe is None:
        return "-"
    status = str(probe["status"])
    if status == "clean":
        return f"clean ({probe['made']} made)"
    return "-" if status == "not_run" else status


def _probe_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_PROBE_TIMEOUT_S:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_PROBE_TIMEOUT_S:g}, got {text}")
    return value


def _check_rows(
    path: str,
    abi: LibraryAbi,
    checks: dict[str, TraitCheck],
    cells: dict[str, list[str]],
    matrix: bool,
    probe: dict[str, object] | None,
) -> list[list[str]]:
    rows = []
    library, platform = os.path.basename(path), f"{abi.format} {abi.machine}"
    for name, check in checks.items():
        t = abi.traits[name]
        types = t.types
        array = "plugin" if t.has("register_all") else ("host" if types else "-")
        verdicts = cells[name] if matrix else [check.compatibility]
        row = [library, platform, name, ", ".join(types) or "-", array, _describe_descriptor(abi, name), *verdicts]
        rows.append([*row, _describe_probe(probe)] if probe is not None else row)
    return rows


# ---- output -----------------------------------------------------------------------------------------------------


#: Create or truncate, never block: a FIFO without a reader fails at once (ENXIO) instead of hanging.
_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
#: ``--summary``: appended to (a CI step summary collects several).
_APPEND_FLAGS = (_WRITE_FLAGS & ~os.O_TRUNC) | os.O_APPEND


def _write_file(path: str, text: str, flags: int = _WRITE_FLAGS) -> str | None:
    """Write ``text`` (UTF-8) to ``path``; the message naming it if that fails."""
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        reason = "a FIFO that nobody reads" if e.errno == errno.ENXIO else (e.strerror or str(e))
        return f"{path}: cannot write the output: {reason}"
    try:
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)  # opened without blocking; a pipe's reader may be slow
        with open(fd, "w", encoding="utf-8", errors="surrogateescape", closefd=False) as f:
            f.write(text)
    except OSError as e:
        return f"{path}: cannot write the output: {e.strerror or e}"
    finally:
        os.close(fd)
    return None


def _emit(report: Report, args: argparse.Namespace) -> int:
    """Write the report as asked; the exit status (2 if an output cannot be written)."""
    text = render(report, args.format, args.fail_on)
    if args.output:
        problem = _write_file(args.output, text)
        if problem is not None:
            return _usage_error(problem)
    else:
        sys.stdout.write(text)
    if args.summary:
        problem = _write_file(args.summary, render_markdown(report, args.fail_on), _APPEND_FLAGS)
        if problem is not None:
            return _usage_error(problem)
    # Under GitHub Actions, annotations too, wherever they cannot spoil a machine-readable stdout.
    if (
        args.format != "github"
        and os.environ.get("GITHUB_ACTIONS") == "true"
        and (args.output or args.format == "text")
    ):
        sys.stdout.write(github_annotations(report, args.fail_on))
    for waiver in report.unused_waivers:
        print(f"warning: {waiver.where}: matched no finding (kind {waiver.kind})", file=sys.stderr)
    return report.status(args.fail_on)


# ---- dump -------------------------------------------------------------------------------------------------------


def cmd_abi_dump(args: argparse.Namespace) -> int:
    problem = missing_path(args.library)
    if problem is not None:
        return _usage_error(problem)
    if os.path.isdir(args.library):
        try:
            baseline = abi_layer.scan_directory(args.library)
        except OSError as e:
            return _input_error(f"{args.library}: cannot list the directory: {e.strerror or e}")
        if baseline.unreadable:
            for name, why in sorted(baseline.unreadable.items()):
                print(f"error: {os.path.join(args.library, name)}: {why}", file=sys.stderr)
            return _input_error(
                f"{args.library}: no baseline written: {len(baseline.unreadable)} file(s) are not libraries"
            )
        if not baseline.libraries:
            return _usage_error(f"no library files ({', '.join(ALL_LIBRARY_SUFFIXES)}) in {args.library}")
        data: dict[str, object] = baseline.to_json()
    else:
        data = scan_library(args.library).to_json()  # PluginError -> exit 1 through main()
    text = json.dumps(data, indent=2) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return EXIT_OK
    problem = _write_file(args.output, text)
    return EXIT_OK if problem is None else _usage_error(problem)


# ---- contract ---------------------------------------------------------------------------------------------------


def cmd_abi_contract(args: argparse.Namespace) -> int:
    name = args.name or (os.path.basename(args.output).split(".")[0] if args.output else "host")
    try:
        contract = abi_layer.host_contract(name)
    except ValueError as e:
        return _usage_error(f"{e} (give one with --name)")
    text = json.dumps(contract.to_json(), indent=2) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return EXIT_OK
    problem = _write_file(args.output, text)
    return EXIT_OK if problem is None else _usage_error(problem)


# ---- diff -------------------------------------------------------------------------------------------------------


def _change_finding(c: AbiChange, library: str) -> Finding:
    symbol = None
    if c.kind in (ChangeKind.SYMBOL_ADDED, ChangeKind.SYMBOL_REMOVED):
        symbol = str(c.new if c.new is not None else c.old)
    effect, level = (EXIT_INCOMPATIBLE, "error") if c.breaking else (EXIT_CHANGE, "note")
    return Finding(c.kind.value, level, effect, c.message, library, c.trait, c.type_name, c.method, symbol)


def _as_set(source: LibraryAbi | AbiBaseline) -> AbiBaseline:
    if isinstance(source, abi_layer.AbiBaseline):
        return source
    return abi_layer.AbiBaseline({os.path.basename(source.path) or source.path: source})


def cmd_abi_diff(args: argparse.Namespace) -> int:
    sources: list[LibraryAbi | AbiBaseline] = []
    for raw in (args.old, args.new):
        problem = missing_path(raw)
        if problem is not None:
            return _usage_error(problem)
    try:
        waivers = _load_waivers(args)
        for raw in (args.old, args.new):
            sources.append(abi_layer.load_abi_source(raw))
    except (ValueError, _InputError) as e:
        return _input_error(str(e))
    except PluginError as e:
        return _input_error(str(e))
    except OSError as e:
        return _input_error(f"{e.filename}: cannot list the directory: {e.strerror or e}")
    old, new = sources
    findings: list[Finding] = []
    cases: list[Case] = []
    if isinstance(old, LibraryAbi) and isinstance(new, LibraryAbi):
        changes = diff_abi(old, new)
        diffs = [abi_layer.LibraryDiff(args.new, "changed" if changes else "unchanged", changes)]
        shown = {args.new: args.new}
        traits = {args.new: sorted(set(old.traits) | set(new.traits))}
        unreadable: list[tuple[str, str]] = []
    else:
        old_set, new_set = _as_set(old), _as_set(new)
        diffs = abi_layer.diff_libraries(old_set.libraries, new_set.libraries)
        base = args.new if os.path.isdir(args.new) else None
        shown = {d.library: os.path.join(base, d.library) if base else d.library for d in diffs}
        traits = {
            d.library: sorted(
                set(old_set.libraries[d.library].traits if d.library in old_set.libraries else ())
                | set(new_set.libraries[d.library].traits if d.library in new_set.libraries else ())
            )
            for d in diffs
        }
        unreadable = [
            (os.path.join(raw, name) if os.path.isdir(raw) else name, why)
            for raw, side in ((args.old, old_set), (args.new, new_set))
            for name, why in sorted(side.unreadable.items())
        ]
    for library, why in unreadable:
        finding = Finding(ProblemKind.NOT_A_LIBRARY.value, "error", EXIT_ERROR, why, library)
        findings.append(finding)
        cases.append(Case(library, None, None, "error", [finding]))
    for d in diffs:
        library = shown[d.library]
        mine = [_change_finding(c, library) for c in d.changes]
        findings += mine
        cases.append(Case(library, None, None, d.status, [f for f in mine if f.trait is None]))
        for trait in traits[d.library]:
            of_trait = [f for f in mine if f.trait == trait]
            verdict = d.status if d.status in ("added", "removed") else ("changed" if of_trait else "unchanged")
            cases.append(Case(library, trait, None, verdict, of_trait))
    unused = apply_waivers(findings, waivers, _today()) if waivers else []
    breaking = [f for f in findings if f.effect == EXIT_INCOMPATIBLE and not f.waiver]
    sets = not (isinstance(old, LibraryAbi) and isinstance(new, LibraryAbi))

    def body() -> dict[str, object]:
        out: dict[str, Any] = {
            "schema": DIFF_SCHEMA,
            "old": args.old,
            "new": args.new,
            "breaking": bool(breaking),
            "changes": [{**c.to_json(), "library": shown[d.library]} for d in diffs for c in d.changes],
            "libraries": [{**d.to_json(), "library": shown[d.library]} for d in diffs],
        }
        return out

    changed = sum(len(d.changes) for d in diffs)
    verdict = f"{len(breaking)} breaking change(s)" if breaking else "no breaking change"
    waived = sum(1 for f in findings if f.waiver)
    summary = f"{args.old} -> {args.new}: {changed} change(s), {verdict}" + (f", {waived} waived" if waived else "")
    if sets:
        added = sum(d.status == "added" for d in diffs)
        removed = sum(d.status == "removed" for d in diffs)
        summary += f"; {len(diffs)} librar{'y' if len(diffs) == 1 else 'ies'}, {added} added, {removed} removed"
    report = Report(
        "diff", "plugin-host abi diff", findings, cases, body, _DIFF_RULES, [], summary, unused_waivers=unused
    )
    report.text = _diff_text(report, sets, args)
    return _emit(report, args)


def _diff_text(report: Report, sets: bool, args: argparse.Namespace) -> str:
    rows = []
    changes = [f for f in report.findings if f.kind != ProblemKind.NOT_A_LIBRARY]
    for f in changes:
        classification = "breaking" if f.effect == EXIT_INCOMPATIBLE else "compatible"
        if f.waiver is not None:
            classification += " (waived)"
        row = [f.kind, classification, f.trait or "-", f.shown]
        rows.append([os.path.basename(f.library), *row] if sets else row)
    out = []
    if rows:
        header = ["change", "classification", "trait", "detail"]
        out.append(table(rows, ["library", *header] if sets else header))
    else:
        out.append("no change to the exported ABI")
    for f in report.findings:
        if f.kind == ProblemKind.NOT_A_LIBRARY:
            out.append(f"error: {f.library}: [{f.kind}] {f.message}")
    out.append(f"\n{report.summary}; exit status {report.status(args.fail_on)}")
    return "\n".join(out) + "\n"


# ---- parsers ----------------------------------------------------------------------------------------------------


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=list(FORMATS),
        default="text",
        help="the report's format (default: text); sarif is SARIF 2.1.0, junit JUnit XML, github workflow annotations",
    )
    parser.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of standard output")
    parser.add_argument(
        "--summary",
        metavar="FILE",
        help='also append a Markdown summary to FILE (e.g. "$GITHUB_STEP_SUMMARY")',
    )
    parser.add_argument(
        "--fail-on",
        choices=list(FAIL_ON),
        help="which ABI changes set exit bits: incompatible (8) only, or any change (4 and 8; the default)",
    )
    parser.add_argument(
        "--waivers",
        action="append",
        metavar="FILE",
        help="a TOML file of accepted findings, each with a reason and an expiry date (repeatable)",
    )


def add_abi_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Install ``abi`` and its sub-commands on the ``plugin-host`` parser."""
    abi = sub.add_parser(
        "abi",
        help=ABI_HELP,
        description="Verify plugin libraries' exported ABI from the files alone (no plugin code runs). "
        "Exit status bits: 0 nothing to report, 1 tool or input error, 2 usage error, "
        "4 compatible ABI change, 8 incompatible ABI change.",
    )
    abi_sub = abi.add_subparsers(dest="abi_command", metavar="ABI_COMMAND")

    def usage(args: argparse.Namespace) -> int:
        abi.print_help(sys.stderr)
        return EXIT_USAGE

    abi.set_defaults(func=usage)
    check = abi_sub.add_parser("check", help="what each library exports per trait, and every problem")
    check.add_argument("paths", nargs="+", metavar="PATH", help="library files or directories")
    check.add_argument("--trait", help="check only this trait")
    check.add_argument(
        "--contract",
        action="append",
        metavar="FILE",
        help="check against this host contract (abi contract output) instead of this host; "
        "repeat for a compatibility matrix",
    )
    _add_report_options(check)
    check.add_argument(
        "--probe",
        action="store_true",
        help="then load each library in a child process, running its constructors, makers and unmakers once: "
        "a crash, exit or hang there is an error (runs the plugin's code)",
    )
    check.add_argument(
        "--probe-timeout",
        type=_probe_seconds,
        default=DEFAULT_PROBE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"with --probe: kill a child that takes longer (default: {DEFAULT_PROBE_TIMEOUT_S:g})",
    )
    check.set_defaults(func=cmd_abi_check)
    dump = abi_sub.add_parser(
        "dump", help="write a library's exported ABI as JSON, or a folder's as a baseline (for abi diff)"
    )
    dump.add_argument("library", metavar="PATH", help="a library, or a directory (every plugin in it: a baseline)")
    dump.add_argument("-o", "--output", help="write to this file instead of standard output")
    dump.set_defaults(func=cmd_abi_dump)
    diff = abi_sub.add_parser("diff", help="compare two builds (libraries, dumps, folders or baselines)")
    diff.add_argument("old", help="the released build: a library, an abi dump, a folder or a baseline")
    diff.add_argument("new", help="the new build: a library, an abi dump, a folder or a baseline")
    _add_report_options(diff)
    diff.set_defaults(func=cmd_abi_diff)
    contract = abi_sub.add_parser(
        "contract", help="write the trait declarations this host accepts (for abi check --contract)"
    )
    contract.add_argument(
        "--traits",
        dest="contract_traits",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the traits it declares (repeatable; as plugin-host --traits)",
    )
    contract.add_argument("--name", help="how reports name the contract (default: the output file's name)")
    contract.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    contract.set_defaults(func=cmd_abi_contract)
