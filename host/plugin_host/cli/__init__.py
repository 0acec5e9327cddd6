"""The ``plugin-host`` command line (also ``python -m plugin_host``).

Exit status: 0 on success, 1 when a plugin failed (load, call, build), 2 on a
usage error; ``abi`` documents its own (see :mod:`._abi`).  A closed output
pipe ends any command quietly with status 1, as CPython does on EPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

from plugin_interface import PluginError

from ..loading import _accel
from ..watch import DEFAULT_DEBOUNCE_MS
from ._abi import add_abi_parser
from ._commands import cmd_call, cmd_demo, cmd_list, cmd_watch, describe_notification
from ._output import EXIT_BROKEN_PIPE, EXIT_PLUGIN_ERROR, EXIT_USAGE, discard_output, tolerant_stdout

__all__ = [
    "SUBCOMMANDS",
    "TRAITS_ENTRY_POINTS",
    "build_parser",
    "describe_notification",
    "import_trait_modules",
    "main",
]

#: Extra sub-command installers: each adds its parser.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _version() -> str:
    try:
        number = version("plugin-host")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        number = "unknown"
    if _accel.enabled():
        checks = "C (plugin_host.loading._speedups)"
    elif _accel.available():
        checks = "pure Python (C turned off by PLUGIN_HOST_PURE_PYTHON)"
    else:
        checks = "pure Python (plugin_host.loading._speedups was not built)"
    return f"plugin-host {number}; load checks: {checks}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plugin-host",
        description="Load native C plugins, call them through typed proxies, unload them.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--traits",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the traits it declares (repeatable; packages can also register "
        f"modules under the {TRAITS_ENTRY_POINTS!r} entry-point group)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="build the bundled example plugins, load, call and unload them")
    demo.add_argument("--build-dir", help="where to build the examples (default: ~/.cache/plugin-host/examples)")
    demo.set_defaults(func=cmd_demo)
    lst = sub.add_parser("list", help="list the implementations a plugin file or directory exports")
    lst.add_argument("path")
    lst.add_argument("--trait", help="only this trait (default: every known trait)")
    lst.set_defaults(func=cmd_list)
    call = sub.add_parser("call", help="call one method of one implementation")
    call.add_argument("path")
    call.add_argument("trait")
    call.add_argument("type")
    call.add_argument("method")
    call.add_argument("args", nargs="*")
    call.set_defaults(func=cmd_call)
    watch = sub.add_parser("watch", help="load a directory's plugins and reload them as they change, until Ctrl-C")
    watch.add_argument("dir")
    watch.add_argument("--trait", help="only this trait (default: every known trait a file implements)")
    watch.add_argument(
        "--debounce-ms",
        type=_non_negative_int,
        default=DEFAULT_DEBOUNCE_MS,
        help=f"quiet time before acting on a file (default: {DEFAULT_DEBOUNCE_MS})",
    )
    watch.add_argument("--recursive", action="store_true", help="watch subdirectories too")
    watch.set_defaults(func=cmd_watch)
    add_abi_parser(sub)
    for install in SUBCOMMANDS:
        install(sub)
    return parser


#: The entry-point group a package names its trait-declaring modules in, for every ``plugin-host`` run.
TRAITS_ENTRY_POINTS = "plugin_host.traits"


def import_trait_modules(modules: Sequence[str]) -> str | None:
    """Import the modules given with ``--traits`` and those registered under
    :data:`TRAITS_ENTRY_POINTS`, so the traits they declare are known.

    :returns: what went wrong (naming the module), or ``None``.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # the user's module: any error is theirs to see, in one line
            return f"--traits {name}: cannot import it: {type(e).__name__}: {e}"
    for point in entry_points(group=TRAITS_ENTRY_POINTS):
        try:
            point.load()
        except Exception as e:
            return f"entry point {point.name} = {point.value} ({TRAITS_ENTRY_POINTS}): {type(e).__name__}: {e}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status.

    No input ends in a traceback: a plugin's or a file's problem is one
    ``error:`` line naming the file (status 1), a usage error status 2; a
    reader that stops early (``| head``) ends the command quietly
    (:data:`._output.EXIT_BROKEN_PIPE`).
    """
    try:
        with tolerant_stdout():
            return _run(argv)
    except BrokenPipeError:
        discard_output()
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        problem = import_trait_modules(args.traits)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        status: int = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe is noticed here, not at exit
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    except KeyError as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    except BrokenPipeError:
        raise
    except OSError as e:
        # A file problem no command foresaw; the message names the file.
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    except KeyboardInterrupt:
        return 130
    return status
