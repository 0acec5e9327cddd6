"""``plugin-host abi check | dump | diff``: verify a plugin's exported ABI without loading it.

``abi check --probe`` then runs each library's code, but in a child process
(:func:`~plugin_host.admission.probe_library`).

Exit status: 0 clean (warnings allowed), 1 a problem or a breaking change was
found (or a file is not a library), 2 usage error (missing file, unknown
trait, invalid dump).  ``--json`` output is stable; its schema is in the
README ("ABI verification").
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from plugin_interface import ArchitectureMismatchError, PluginError, UnknownTraitError, declared_traits, resolve_trait

from ..abi import (
    CHECK_SCHEMA,
    DIFF_SCHEMA,
    LibraryAbi,
    Problem,
    ProblemKind,
    Severity,
    TraitCheck,
    check_library,
    check_to_json,
    diff_abi,
    load_abi,
    scan_library,
)
from ..admission import (
    DEFAULT_PROBE_TIMEOUT_S,
    ProbeCrashedError,
    ProbeError,
    ProbeExitedError,
    ProbeTimeoutError,
    probe_library,
)
from ..formats import ALL_LIBRARY_SUFFIXES, BinaryFormat, native_format, plugin_files
from ._output import missing_path, table

__all__ = ["add_abi_parser"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
#: The longest ``--probe-timeout`` (in seconds): a day; more is a typo, and too much for ``select``.
MAX_PROBE_TIMEOUT_S = 86400.0


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _library_files(paths: list[str]) -> list[Path] | str:
    """Files to check (a directory contributes its libraries); a message for a missing path.

    Anything else that exists is checked: a FIFO or device is reported by the
    scan (which never blocks on one) as not a library.
    """
    files: list[Path] = []
    for raw in paths:
        problem = missing_path(raw)
        if problem is not None:
            return problem
        if not os.path.isdir(raw):
            files.append(Path(raw))
            continue
        try:
            files += plugin_files(raw, ALL_LIBRARY_SUFFIXES)
        except OSError as e:
            return f"{raw}: cannot list the directory: {e.strerror or e}"
    return files


def _regular_file(raw: str) -> str | None:
    """The usage error for an input that is not a regular file (``abi diff``'s dumps and libraries)."""
    problem = missing_path(raw)
    if problem is not None:
        return problem
    mode = os.stat(raw).st_mode
    if stat.S_ISDIR(mode):
        return f"{raw}: is a directory, not a library or an ABI dump"
    if not stat.S_ISREG(mode):
        return f"{raw}: not a regular file (a device, FIFO or socket)"
    return None


def _describe_descriptor(abi: LibraryAbi, trait: str) -> str:
    t = abi.traits[trait]
    if t.descriptor_error:
        return "unreadable"
    if t.descriptor is None:
        return "-"
    d = t.descriptor
    return f"v{d.trait_version}, {d.method_count} method{'s' if d.method_count != 1 else ''}"


def cmd_abi_check(args: argparse.Namespace) -> int:
    if args.trait is not None:
        try:
            resolve_trait(args.trait)
        except UnknownTraitError as e:
            return _usage_error(str(e))
    files = _library_files(args.paths)
    if isinstance(files, str):
        return _usage_error(files)
    if not files:
        return _usage_error(f"no library files ({', '.join(ALL_LIBRARY_SUFFIXES)}) in {', '.join(args.paths)}")
    traits = declared_traits()
    entries: list[dict[str, object]] = []
    rows: list[list[str]] = []
    messages: list[tuple[str, str]] = []
    for path in files:
        abi: LibraryAbi | None
        try:
            abi = scan_library(path)
            problems, checks = check_library(abi, traits, args.trait)
        except PluginError as e:
            abi, checks = None, {}
            problems = [Problem(Severity.ERROR, ProblemKind.NOT_A_LIBRARY, _without_path(e))]
        file_rows = _check_rows(path, abi, checks)
        probe: dict[str, object] | None = None
        if args.probe:
            probe, found = _probe(path, abi, args.probe_timeout)
            problems += found
            file_rows = [[*row, _describe_probe(probe)] for row in file_rows]
        entry = check_to_json(abi, str(path), problems, checks)
        if probe is not None:
            entry["probe"] = probe
        entries.append(entry)
        messages += [(p.severity, f"{path}: [{p.kind}] {p.message}") for p in problems]
        rows += file_rows
    errors = sum(1 for severity, _ in messages if severity is Severity.ERROR)
    if args.json:
        json.dump({"schema": CHECK_SCHEMA, "ok": errors == 0, "libraries": entries}, sys.stdout, indent=2)
        print()
    else:
        if rows:
            header = ["library", "format", "trait", "types", "array", "descriptor", "host check"]
            print(table(rows, [*header, "probe"] if args.probe else header))
        for severity, message in messages:
            print(f"{severity}: {message}")
        warnings = len(messages) - errors
        print(
            f"\n{len(files)} librar{'y' if len(files) == 1 else 'ies'} checked: "
            f"{errors} error(s), {warnings} warning(s)"
        )
    return EXIT_PROBLEM if errors else EXIT_OK


#: ``--probe``: the problem kind and probe status of each fatal failure (any other is ``probe_failed``).
_PROBE_FAILURES: tuple[tuple[type[ProbeError], ProblemKind, str], ...] = (
    (ProbeCrashedError, ProblemKind.PROBE_CRASHED, "crashed"),
    (ProbeExitedError, ProblemKind.PROBE_EXITED, "exited"),
    (ProbeTimeoutError, ProblemKind.PROBE_TIMEOUT, "timeout"),
)


def _without_path(e: PluginError) -> str:
    """``e``'s message without its leading ``path: `` (problems are printed after the path)."""
    return str(e).removeprefix(f"{e.path}: ") if e.path else str(e)


def _probe(path: Path, abi: LibraryAbi | None, timeout_s: float) -> tuple[dict[str, object], list[Problem]]:
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
    try:
        result = probe_library(path, timeout_s=timeout_s, use_cache=False)
    except ArchitectureMismatchError as e:
        return {"status": "skipped", "made": 0}, [
            Problem(Severity.WARNING, ProblemKind.PROBE_SKIPPED, f"{_without_path(e)}: not probed")
        ]
    except PluginError as e:
        kind, status = next(
            ((k, s) for cls, k, s in _PROBE_FAILURES if isinstance(e, cls)), (ProblemKind.PROBE_FAILED, "failed")
        )
        return {"status": status, "made": 0}, [Problem(Severity.ERROR, kind, _without_path(e), symbol=e.symbol)]
    if not result.clean:
        reason = "; ".join(result.problems) or "the probe reported a failure"
        return {"status": "failed", "made": result.made}, [Problem(Severity.ERROR, ProblemKind.PROBE_FAILED, reason)]
    return {"status": "clean", "made": result.made}, []


def _describe_probe(probe: dict[str, object]) -> str:
    status = str(probe["status"])
    if status == "clean":
        return f"clean ({probe['made']} made)"
    return "-" if status == "not_run" else status


def _probe_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_PROBE_TIMEOUT_S:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_PROBE_TIMEOUT_S:g}, got {text}")
    return value


def _check_rows(path: Path, abi: LibraryAbi | None, checks: dict[str, TraitCheck]) -> list[list[str]]:
    if abi is None:
        return [[path.name, "?", "-", "-", "-", "-", "not a library"]]
    rows = []
    for name, check in sorted(checks.items()):
        t = abi.traits[name]
        array = "plugin" if t.has("register_all") else ("host" if t.types else "-")
        rows.append(
            [
                path.name,
                f"{abi.format} {abi.machine}",
                name,
                ", ".join(t.types) or "-",
                array,
                _describe_descriptor(abi, name),
                check.compatibility,
            ]
        )
    return rows


def cmd_abi_dump(args: argparse.Namespace) -> int:
    problem = missing_path(args.library)
    if problem is not None:
        return _usage_error(problem)
    abi = scan_library(args.library)  # PluginError -> exit 1 through main()
    text = json.dumps(abi.to_json(), indent=2) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return EXIT_OK
    problem = _write_file(args.output, text)
    return EXIT_OK if problem is None else _usage_error(problem)


#: Create or truncate, never block: a FIFO without a reader fails at once (ENXIO) instead of hanging.
_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _write_file(path: str, text: str) -> str | None:
    """Write ``text`` (UTF-8) to ``path``; the message naming it if that fails."""
    try:
        fd = os.open(path, _WRITE_FLAGS, 0o666)
    except OSError as e:
        reason = "a FIFO that nobody reads" if e.errno == errno.ENXIO else (e.strerror or str(e))
        return f"{path}: cannot write the output: {reason}"
    try:
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)  # opened without blocking; a pipe's reader may be slow
        with open(fd, "w", encoding="utf-8", closefd=False) as f:
            f.write(text)
    except OSError as e:
        return f"{path}: cannot write the output: {e.strerror or e}"
    finally:
        os.close(fd)
    return None


def cmd_abi_diff(args: argparse.Namespace) -> int:
    loaded: list[LibraryAbi] = []
    for raw in (args.old, args.new):
        problem = _regular_file(raw)
        if problem is not None:
            return _usage_error(problem)
        try:
            loaded.append(load_abi(raw))
        except ValueError as e:
            return _usage_error(str(e))
    old, new = loaded
    changes = diff_abi(old, new)
    breaking = [c for c in changes if c.breaking]
    if args.json:
        out: dict[str, Any] = {
            "schema": DIFF_SCHEMA,
            "old": args.old,
            "new": args.new,
            "breaking": bool(breaking),
            "changes": [c.to_json() for c in changes],
        }
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        if changes:
            rows = [[c.kind, "breaking" if c.breaking else "compatible", c.trait or "-", c.message] for c in changes]
            print(table(rows, ["change", "classification", "trait", "detail"]))
        else:
            print("no change to the exported ABI")
        verdict = f"{len(breaking)} breaking change(s)" if breaking else "no breaking change"
        print(f"\n{args.old} -> {args.new}: {len(changes)} change(s), {verdict}")
    return EXIT_PROBLEM if breaking else EXIT_OK


def add_abi_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Install ``abi`` and its sub-commands on the ``plugin-host`` parser."""
    abi = sub.add_parser(
        "abi",
        help="verify exported ABIs without loading (check, dump, diff)",
        description="Verify plugin libraries' exported ABI from the files alone (no plugin code runs). "
        "Exit status: 0 clean, 1 a problem or breaking change, 2 usage error.",
    )
    abi_sub = abi.add_subparsers(dest="abi_command", metavar="ABI_COMMAND")

    def usage(args: argparse.Namespace) -> int:
        abi.print_help(sys.stderr)
        return EXIT_USAGE

    abi.set_defaults(func=usage)
    check = abi_sub.add_parser("check", help="what each library exports per trait, and every problem")
    check.add_argument("paths", nargs="+", metavar="PATH", help="library files or directories")
    check.add_argument("--trait", help="check only this trait")
    check.add_argument("--json", action="store_true", help="machine-readable output (stable schema)")
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
    dump = abi_sub.add_parser("dump", help="write a library's exported ABI as JSON (for abi diff)")
    dump.add_argument("library")
    dump.add_argument("-o", "--output", help="write to this file instead of standard output")
    dump.set_defaults(func=cmd_abi_dump)
    diff = abi_sub.add_parser("diff", help="compare two builds (libraries or dumps); exit 1 if breaking")
    diff.add_argument("old", help="the released build: a library or an abi dump")
    diff.add_argument("new", help="the new build: a library or an abi dump")
    diff.add_argument("--json", action="store_true", help="machine-readable output (stable schema)")
    diff.set_defaults(func=cmd_abi_diff)
