"""The ``plugin-host`` command line (also ``python -m plugin_host``).

Exit status: 0 on success, 1 when a plugin failed (load, call, build), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from plugin_interface import (
    AbiMismatchError,
    InconsistentArrayError,
    MakerReturnedNullError,
    NoPluginSymbolsError,
    PluginError,
    PluginTrait,
    SymbolNotFoundError,
    TraitSpec,
    declared_traits,
    resolve_trait,
)

from ._manager import PluginHandle, PluginManager, plugin_files
from ._module import DynamicModule
from ._probe import default_cache_dir
from ._proxy import TraitProxy
from ._watch import DEFAULT_DEBOUNCE_MS, Event, ManagerNotification, Unloaded, WatchOptions

__all__ = ["main"]

EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_USAGE = 0, 1, 2

#: Extra sub-command installers (``watch``, ``abi``, ...): each adds its parser.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def _library_files(path: Path) -> list[Path]:
    return plugin_files(path) if path.is_dir() else [path]


def _traits(name: str | None) -> list[TraitSpec]:
    if name is not None:
        return [resolve_trait(name)]
    return list(declared_traits().values())


#: Failures that concern one trait of a file; any other refuses the whole file.
_TRAIT_SPECIFIC = (AbiMismatchError, InconsistentArrayError, MakerReturnedNullError, SymbolNotFoundError)


def _load_every_trait(
    manager: PluginManager, path: Path, traits: list[TraitSpec], problems: list[str]
) -> list[PluginHandle]:
    """Load ``path`` for each trait it implements; other traits are skipped quietly."""
    handles = []
    for spec in traits:
        try:
            handles += manager.load_plugins(path, spec)
        except SymbolNotFoundError as e:
            if isinstance(e, NoPluginSymbolsError) or (e.symbol and e.symbol.startswith("plugin_register_all_")):
                continue  # the library does not implement this trait (or any) at all
            problems.append(str(e))
        except PluginError as e:
            problems.append(str(e))
            if not isinstance(e, _TRAIT_SPECIFIC):
                break  # the file itself was refused: no other trait can load from it either
    return handles


def _exercise(proxy: TraitProxy) -> str:
    """Call a demo-worthy method of a built-in trait; describe the result."""
    if proxy.trait == PluginTrait.Greeter.spec:
        return proxy.greet("world")  # type: ignore[attr-defined, no-any-return]
    if proxy.trait == PluginTrait.Transformer.spec:
        buf = bytearray(b"Hello, world!")
        changed = proxy.transform(buf)  # type: ignore[attr-defined]
        return f"{buf.decode()} ({changed} bytes changed)"
    return "(no demo call for this trait)"


def _examples_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("plugin_host.examples")))


def _default_build_dir() -> Path:
    return default_cache_dir() / "examples"


def _module_round_trip(library_dir: Path, hops: int = 5) -> list[str]:
    """foo and bar (``native_plugins/``) play ping-pong through the host's lookup.

    Plugin mode: the host opens a module when a plugin asks for one of its
    functions, hands each module the lookup (``<name>_bind``), then unloads
    them and reopens foo to show its static state starts afresh.

    :raises PluginError: a module is missing or the round trip failed.
    """
    import cffi

    ffi = cffi.FFI()
    modules: dict[str, DynamicModule] = {}
    failures: list[str] = []

    def module(name: str) -> DynamicModule:
        mod = modules.get(name)
        if mod is None:
            mod = modules[name] = DynamicModule(name, [library_dir], system=False)
            mod.invoke(f"{name}_bind", "void(void *)", lookup)
        return mod

    def find(name: Any, symbol: Any) -> Any:
        # Called from C: an exception here could not propagate; report it.
        try:
            address = module(ffi.string(name).decode()).address(ffi.string(symbol).decode())
            return ffi.cast("void (*)(void)", address)
        except PluginError as e:
            failures.append(str(e))
            return ffi.NULL

    # FooLookupFn of foo.h: a function returning a function pointer.
    lookup = ffi.callback("void (*(const char *, const char *))(void)", find)

    try:
        foo = module("foo")
        played = foo.invoke("foo_ping", "int(int)", hops)
        if played != hops:
            raise PluginError(f"foo_ping({hops}) returned {played}: " + ("; ".join(failures) or "no failure reported"))
        bar = modules["bar"]
        lines = [
            f"foo_ping({hops}) = {played} hops: foo played {foo.invoke('foo_hops', 'int(void)')}, "
            f"bar {bar.invoke('bar_hops', 'int(void)')} (bar opened on demand when foo looked it up)"
        ]
        for mod in modules.values():
            mod.invoke(f"{mod.name}_bind", "void(void *)", ffi.NULL)
            mod.close()
        foo.open()
        hops_now = foo.invoke("foo_hops", "int(void)")
        lines.append(f"foo closed and reopened: foo_hops() = {hops_now} (fresh static state)")
        return lines
    finally:
        for mod in modules.values():
            mod.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from plugin_annotations import BuildError, build_plugins

    build_dir = Path(args.build_dir) if args.build_dir else _default_build_dir()
    try:
        result = build_plugins(_examples_dir(), build_dir)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    built = f"built {len(result.built)}" if result.built else "all up to date"
    print(f"example plugins in {build_dir} ({built})\n")
    rows: list[list[str]] = []
    problems: list[str] = []
    with PluginManager() as manager:
        for lib_path in sorted(result.outputs.values()):
            handles = _load_every_trait(manager, lib_path, _traits(None), problems)
            calls = [(h, p, _exercise(p)) for h in handles for p in h.proxies()]
            counters = manager.unload_by_path(lib_path) if handles else {}
            for h, p, res in calls:
                owner = "plugin" if h.is_plugin_owned else "host"
                counter = counters.get(h.trait.name)
                rows.append(
                    [lib_path.name, h.trait.name, p.type_name, owner, res, "-" if counter is None else str(counter)]
                )
    print(_table(rows, ["plugin file", "trait", "type", "array", "result", "unmaker counter"]))
    print("\nunmaker counter: registrations the plugin released after unload (equals the types loaded).")
    if {"foo", "bar"} <= result.outputs.keys():
        print("\nexplicit modules (DynamicModule): foo and bar use each other's interface, never link")
        try:
            for line in _module_round_trip(result.outputs["foo"].parent):
                print(f"  {line}")
        except PluginError as e:
            problems.append(str(e))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_PLUGIN_ERROR if problems else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    rows: list[list[str]] = []
    problems: list[str] = []
    with PluginManager() as manager:
        for lib_path in _library_files(Path(args.path)):
            known = len(problems)
            handles = _load_every_trait(manager, lib_path, _traits(args.trait), problems)
            refused = len(problems) > known  # this file's own problems, not an earlier file's
            if not handles and not refused and args.trait is None and Path(args.path).is_dir():
                # A build directory also holds plain libraries: link
                # dependencies and explicit modules (native_plugins/foo, bar).
                rows.append([str(lib_path), "-", "-", "-", "(no plugin: a plain library)"])
            elif not handles and not refused:
                problems.append(f"{lib_path}: exports no plugin for {args.trait or 'any known trait'}")
            for h in handles:
                owner = "plugin" if h.is_plugin_owned else "host"
                rows.append([str(lib_path), h.trait.name, f"v{h.trait.version}", owner, ", ".join(h.type_names)])
    if rows:
        print(_table(rows, ["plugin file", "trait", "version", "array", "types"]))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_PLUGIN_ERROR if problems else EXIT_OK


def _convert_args(proxy: TraitProxy, method: str, raw: list[str]) -> tuple[list[object], list[bytearray]]:
    spec = proxy.trait.method(method)
    if len(raw) != len(spec.params):
        names = ", ".join(p.name for p in spec.params) or "none"
        raise ValueError(f"{proxy.trait.name}.{method} takes {len(spec.params)} argument(s) ({names}), got {len(raw)}")
    values: list[object] = []
    buffers: list[bytearray] = []
    for p, text in zip(spec.params, raw, strict=True):
        kind = p.ctype.kind
        if kind == "cstr":
            values.append(text)
        elif kind in ("buffer", "mutbuffer"):
            buf = bytearray(text.encode())
            buffers.append(buf)
            values.append(buf)
        elif p.ctype.python_type is float:
            values.append(float(text))
        elif p.ctype.python_type is bool:
            values.append(text.lower() in ("1", "true", "yes"))
        else:
            values.append(int(text, 0))
    return values, buffers


def cmd_call(args: argparse.Namespace) -> int:
    if Path(args.path).is_dir():
        print(f"error: {args.path}: call takes one plugin file, not a directory", file=sys.stderr)
        return EXIT_USAGE
    spec = resolve_trait(args.trait)
    with PluginManager() as manager:
        [handle] = manager.load_plugins(args.path, spec)
        proxy = handle.proxy(args.type)
        try:
            values, buffers = _convert_args(proxy, args.method, args.args)
        except (ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        result = getattr(proxy, args.method)(*values)
        if result is not None:
            print(result)
        for buf in buffers:
            print(buf.decode(errors="replace"))
    return EXIT_OK


def describe_notification(note: ManagerNotification) -> str:
    """One line for a hot-reload notification (what ``plugin-host watch`` prints)."""
    if isinstance(note, Event):
        if not note.handles:
            return f"found     {note.path}"
        verb = "reloaded " if note.replaced else "loaded   "
        impls = "; ".join(f"{h.trait.name} [{', '.join(h.type_names)}]" for h in note.handles)
        return f"{verb} {note.path}: {impls}"
    if isinstance(note, Unloaded):
        counter = "-" if note.counter is None else note.counter
        return f"unloaded  {note.path}: {note.trait} unmaker counter {counter}"
    return f"error     {note.reason}"


def cmd_watch(args: argparse.Namespace) -> int:
    opts = WatchOptions(debounce_ms=args.debounce_ms, recursive=args.recursive)

    def show(note: ManagerNotification) -> None:
        print(describe_notification(note), flush=True)

    if not Path(args.dir).is_dir():
        print(f"error: {args.dir}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    with PluginManager() as manager:
        print(f"watching  {Path(args.dir).absolute()} (Ctrl-C to stop)", flush=True)
        try:
            manager.watch_and_load_blocking(args.dir, args.trait, opts, show)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        for path, counters in manager.unload_all().items():
            for trait, counter in counters.items():
                show(Unloaded(path, counter, trait))
    return EXIT_OK


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import _accel

    try:
        number = version("plugin-host")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        number = "unknown"
    if _accel.enabled():
        checks = "C (plugin_host._speedups)"
    elif _accel.available():
        checks = "pure Python (C turned off by PLUGIN_HOST_PURE_PYTHON)"
    else:
        checks = "pure Python (plugin_host._speedups was not built)"
    return f"plugin-host {number}; load checks: {checks}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plugin-host",
        description="Load native C plugins, call them through typed proxies, unload them.",
    )
    parser.add_argument("--version", action="version", version=_version())
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
    from ._abi_cli import add_abi_parser  # here, not at the top: _abi_cli uses this module's helpers

    add_abi_parser(sub)
    for install in SUBCOMMANDS:
        install(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status: int = args.func(args)
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    except KeyError as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    except KeyboardInterrupt:
        return 130
    return status
