"""The ``plugin-host`` command line (also ``python -m plugin_host``).

Exit status: 0 on success, 1 when a plugin failed (load, call, build), 2 on a
usage error; ``abi`` documents its own bits (see :mod:`._abi`).  A closed output
pipe ends any command quietly with status 1, as CPython does on EPIPE.

The commands that load plugins (:mod:`._commands`) are imported when one of
them runs: ``abi`` works on files alone, and a CI job that checks hundreds of
libraries should not pay for importing the manager, the watcher and watchdog.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import PathFinder
from typing import Any, cast

from ._output import ABI_HELP, EXIT_BROKEN_PIPE, EXIT_PLUGIN_ERROR, EXIT_USAGE, discard_output, tolerant_stdout

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
    # Imported here: which checks run is a fact of the loading layer, which only --version needs.
    from .._version import __version__ as number
    from ..loading import _accel, _engine

    if _accel.enabled():
        checks = "C (plugin_host.loading._speedups)"
    elif _accel.available():
        checks = "pure Python (C turned off by PLUGIN_HOST_PURE_PYTHON)"
    else:
        checks = "pure Python (plugin_host.loading._speedups was not built)"
    if _engine.enabled():
        calls = f"compiled (plugin_host.loading._callengine, {_engine.ABI})"
    elif _engine.available():
        calls = "pure Python (C turned off by PLUGIN_HOST_PURE_PYTHON)"
    else:
        calls = "pure Python (plugin_host.loading._callengine was not built)"
    return f"plugin-host {number}; load checks: {checks}; calls: {calls}"


class _VersionAction(argparse.Action):
    """``--version``, its text made only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser._print_message(_version() + "\n", sys.stdout)
        parser.exit()


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, with the terminal's width asked without :mod:`shutil`.

    argparse makes a formatter for every argument added (to check its
    ``nargs``), and each one asks :func:`shutil.get_terminal_size`, the first
    importing :mod:`shutil` (and its compression modules): a tenth of
    ``abi check``'s parser, for a width only ``--help`` uses.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _help_width() if width is None else width)


def _help_width() -> int:
    """:func:`shutil.get_terminal_size`'s columns (``$COLUMNS``, else standard output's terminal, else 80), less 2,
    as argparse takes them."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose help is made by :class:`_Formatter` (its sub-parsers' too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


class _DebounceDefault(int):
    """``watch --debounce-ms``'s default: the watcher's, read only when the watcher is used or help is shown."""

    def __str__(self) -> str:
        from ..watch import DEFAULT_DEBOUNCE_MS  # the watch layer imports watchdog: only for watch

        return str(DEFAULT_DEBOUNCE_MS)


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    """The command ``name`` of :mod:`._commands`, imported when it runs (they load plugins; abi does not)."""

    def run(args: argparse.Namespace) -> int:
        from . import _commands

        if isinstance(getattr(args, "debounce_ms", None), _DebounceDefault):
            from ..watch import DEFAULT_DEBOUNCE_MS

            args.debounce_ms = DEFAULT_DEBOUNCE_MS
        command: Callable[[argparse.Namespace], int] = getattr(_commands, name)
        return command(args)

    return run


def __getattr__(name: str) -> object:
    if name == "describe_notification":
        from ._commands import describe_notification

        return describe_notification
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _abi_stub(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``abi`` in the command list, for a command line that cannot be an ``abi`` command or ask for help."""
    stub = sub.add_parser("abi", help=ABI_HELP, add_help=False)
    stub.add_argument("rest", nargs=argparse.REMAINDER)


def _needs_abi_parser(argv: Sequence[str] | None) -> bool:
    """Whether the command line may be an ``abi`` command or ask for help (else ``cli/_abi.py``, which
    imports the abi layer, is not imported: ``plugin-host --version``, ``list`` and the rest start faster)."""
    if argv is None:
        return True
    return not argv or any(a in ("abi", "-h", "--help") or a.startswith("-h") for a in argv)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``plugin-host`` parser (for ``argv``: the ``abi`` sub-commands are installed only if it may need them)."""
    parser = _Parser(
        prog="plugin-host",
        description="Load native C plugins, call them through typed proxies, unload them.",
    )
    parser.add_argument("--version", action=_VersionAction, help="show the version and which load checks run")
    parser.add_argument(
        "--traits",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the traits it declares (repeatable; packages can also register "
        f"modules under the {TRAITS_ENTRY_POINTS!r} entry-point group)",
    )
    # The sub-parsers are _Parsers, used as the ArgumentParsers they are.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", parser.add_subparsers(dest="command", metavar="COMMAND")
    )
    demo = sub.add_parser("demo", help="build the bundled example plugins, load, call and unload them")
    demo.add_argument("--build-dir", help="where to build the examples (default: ~/.cache/plugin-host/examples)")
    demo.set_defaults(func=_lazy("cmd_demo"))
    lst = sub.add_parser("list", help="list the implementations a plugin file or directory exports")
    lst.add_argument("path")
    lst.add_argument("--trait", help="only this trait (default: every known trait)")
    lst.set_defaults(func=_lazy("cmd_list"))
    call = sub.add_parser("call", help="call one method of one implementation")
    call.add_argument("path")
    call.add_argument("trait")
    call.add_argument("type")
    call.add_argument("method")
    call.add_argument("args", nargs="*")
    call.set_defaults(func=_lazy("cmd_call"))
    watch = sub.add_parser("watch", help="load a directory's plugins and reload them as they change, until Ctrl-C")
    watch.add_argument("dir")
    watch.add_argument("--trait", help="only this trait (default: every known trait a file implements)")
    watch.add_argument(
        "--debounce-ms",
        type=_non_negative_int,
        default=_DebounceDefault(0),
        help="quiet time before acting on a file (default: %(default)s)",
    )
    watch.add_argument("--recursive", action="store_true", help="watch subdirectories too")
    watch.set_defaults(func=_lazy("cmd_watch"))
    if _needs_abi_parser(argv):
        from ._abi import add_abi_parser

        add_abi_parser(sub)
    else:
        _abi_stub(sub)
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
    if not _may_declare_entry_points(TRAITS_ENTRY_POINTS):
        return None
    from importlib.metadata import entry_points

    for point in entry_points(group=TRAITS_ENTRY_POINTS):
        try:
            point.load()
        except Exception as e:
            return f"entry point {point.name} = {point.value} ({TRAITS_ENTRY_POINTS}): {type(e).__name__}: {e}"
    return None


def _may_declare_entry_points(group: str) -> bool:
    """Whether an installed distribution may declare entry points of ``group``.

    Importing :mod:`importlib.metadata` costs a process about as much as
    reading 200 libraries' exports, and most environments register nothing
    under :data:`TRAITS_ENTRY_POINTS`.  This looks where the standard path
    finder does (``*.dist-info``/``*.egg-info`` in each :data:`sys.path`
    directory) for an ``entry_points.txt`` naming the group, and answers
    ``True`` (let :mod:`importlib.metadata` decide) whenever it cannot be sure:
    a zip on the path, another finder that lists distributions.
    """
    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        return True
    needle = f"[{group}]".encode()
    for entry in sys.path:
        directory = entry or "."
        try:
            scan = os.scandir(directory)
        except OSError:
            if os.path.exists(directory):  # a zip file, or a directory we cannot list
                return True
            continue
        with scan:
            for item in scan:
                if not item.name.endswith((".dist-info", ".egg-info", "EGG-INFO")):
                    continue
                try:
                    with open(os.path.join(item.path, "entry_points.txt"), "rb") as f:
                        if needle in f.read():
                            return True
                except OSError:  # no entry points, or an .egg-info file
                    continue
    return False


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
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)  # --version and --help end here: neither needs plugin_interface
    except KeyboardInterrupt:
        return 130
    from plugin_interface import PluginError

    try:
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        problem = import_trait_modules([*args.traits, *getattr(args, "contract_traits", [])])
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
