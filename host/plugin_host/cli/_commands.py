"""The ``plugin-host`` sub-commands demo, list, call and watch.

Exit status: 0 on success, 1 when a plugin failed (load, call, build), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import array
import os
import sys
from pathlib import Path
from typing import Any

from plugin_interface import (
    AbiMismatchError,
    CType,
    InconsistentArrayError,
    MakerReturnedNullError,
    NoPluginSymbolsError,
    PluginError,
    PluginTrait,
    SymbolNotFoundError,
    TraitNotImplementedError,
    TraitSpec,
    TypeKind,
    declared_traits,
)

from .._manager import PluginHandle, PluginManager, UnloadResult
from ..admission import default_cache_dir
from ..formats import plugin_files, sniff_format
from ..loading import DynamicModule
from ..registry import TraitProxy, requested_trait
from ..watch import Event, ManagerNotification, Unloaded, WatchOptions, watch_and_load_blocking
from ._output import EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_USAGE, table

__all__ = ["cmd_call", "cmd_demo", "cmd_list", "cmd_watch", "describe_notification"]


def _library_files(path: Path) -> list[Path]:
    """``path``'s candidate plugins if it is a directory, else ``path``.

    :raises PluginError: the directory cannot be listed.
    """
    if not os.path.isdir(path):  # never raises (Path.is_dir does for a name too long)
        return [path]
    try:
        return plugin_files(path)
    except OSError as e:
        raise PluginError(f"{path}: cannot list the directory: {e.strerror or e}", path=path) from e


def _traits(name: str | None) -> list[TraitSpec | str] | None:
    """The trait asked for, or ``None``: every trait a file implements (the host's or its own declaration).

    A name the host has no declaration of stays a name: the manager loads each file's own
    declaration of it (:func:`~plugin_host.registry.requested_trait`).
    """
    return None if name is None else [requested_trait(name)]


#: Failures that concern one trait of a file; any other refuses the whole file.
_TRAIT_SPECIFIC = (AbiMismatchError, InconsistentArrayError, MakerReturnedNullError, SymbolNotFoundError)


def _load_every_trait(
    manager: PluginManager, path: Path, traits: list[TraitSpec | str] | None, problems: list[str]
) -> list[PluginHandle]:
    """Load ``path`` for each of ``traits`` it implements (for every trait it implements
    and has a declaration of, with ``None``); other traits are skipped quietly."""
    if traits is None:
        try:
            return manager.load_plugins(path)
        except (NoPluginSymbolsError, TraitNotImplementedError):
            return []
        except PluginError as e:
            problems.append(str(e))
            if not isinstance(e, _TRAIT_SPECIFIC):
                return []
            traits = list(declared_traits().values())  # one trait is broken: load the others one by one
    handles = []
    for spec in traits:
        try:
            handles += manager.load_plugins(path, spec)
        except (NoPluginSymbolsError, TraitNotImplementedError):
            continue  # the library does not implement this trait (or any) at all
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
    if proxy.trait.name == "ImageFilter":  # native_plugins/image_filter: declared only in the plugin
        return _exercise_image_filter(proxy)
    return "(no demo call for this trait)"


def _exercise_image_filter(proxy: TraitProxy) -> str:
    """Invert a 4x2 grey image, sum its rows through a callback, and count it in a session."""
    image = {"width": 4, "height": 2, "stride": 4}
    pixels = bytearray([0, 64, 128, 255, 10, 20, 30, 40])
    p: Any = proxy
    p.invert(image, pixels)
    sums: list[int] = []

    def visit(row: int, total: int) -> bool:
        sums.append(total)
        return True

    p.rows(image, pixels, visit)
    with p.open("demo") as session:
        p.feed(session, image, pixels)
        report = p.report(session)
    return f"inverted {list(pixels[:4])}, row sums {sums}; {report}"


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
    if os.path.lexists(build_dir) and not os.path.isdir(build_dir):
        print(f"error: --build-dir {build_dir}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = build_plugins(_examples_dir(), build_dir)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    except OSError as e:
        print(f"error: {build_dir}: cannot build the examples there: {e.strerror or e}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    built = f"built {len(result.built)}" if result.built else "all up to date"
    print(f"example plugins in {build_dir} ({built})\n")
    for name, reason in sorted(result.skipped.items()):
        print(f"skipped {name}: {reason}")
    if result.skipped:
        print()
    rows: list[list[str]] = []
    problems: list[str] = []
    with PluginManager() as manager:
        for lib_path in sorted(result.outputs.values()):
            handles = _load_every_trait(manager, lib_path, _traits(None), problems)
            calls = [(h, p, _exercise(p)) for h in handles for p in h.proxies()]
            counters = manager.unload_by_path(lib_path) if handles else UnloadResult({})
            unloaded = "unmapped" if counters.unmapped else "STILL MAPPED"
            for h, p, res in calls:
                owner = "plugin" if h.is_plugin_owned else "host"
                counter = counters.get(h.trait.name)
                rows.append(
                    [
                        lib_path.name,
                        h.trait.name,
                        p.type_name,
                        owner,
                        res,
                        "-" if counter is None else str(counter),
                        unloaded,
                    ]
                )
    print(table(rows, ["plugin file", "trait", "type", "array", "result", "unmaker counter", "after unload"]))
    print("\nunmaker counter: registrations the plugin released after unload (equals the types loaded).")
    print("after unload: whether the loader really unmapped the library (checked after dlclose).")
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
    traits = _traits(args.trait)
    is_dir = os.path.isdir(args.path)
    with PluginManager() as manager:
        for lib_path in _library_files(Path(args.path)):
            try:
                sniff_format(lib_path)  # a FIFO, device or unreadable file: refused before the loader sees it
            except PluginError as e:
                problems.append(str(e))
                continue
            known = len(problems)
            handles = _load_every_trait(manager, lib_path, traits, problems)
            refused = len(problems) > known  # this file's own problems, not an earlier file's
            if not handles and not refused and args.trait is None and is_dir:
                # A build directory also holds plain libraries: link
                # dependencies and explicit modules (native_plugins/foo, bar).
                rows.append([str(lib_path), "-", "-", "-", "(no plugin: a plain library)", "-"])
            elif not handles and not refused:
                problems.append(f"{lib_path}: exports no plugin for {args.trait or 'any known trait'}")
            for h in handles:
                owner = "plugin" if h.is_plugin_owned else "host"
                methods = ", ".join(m.name for m in h.trait.methods)
                row = [str(lib_path), h.trait.name, f"v{h.trait.version}", owner, ", ".join(h.type_names), methods]
                rows.append(row)
    if rows:
        print(table(rows, ["plugin file", "trait", "version", "array", "types", "methods"]))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_PLUGIN_ERROR if problems else EXIT_OK


def _convert_args(proxy: TraitProxy, method: str, raw: list[str]) -> tuple[list[object], list[bytearray]]:
    spec = proxy.trait.method(method)
    params = [p for p in spec.params if p.ctype.kind is not TypeKind.OUT]  # out-parameters come back, not in
    if len(raw) != len(params):
        names = ", ".join(p.name for p in params) or "none"
        raise ValueError(f"{proxy.trait.name}.{method} takes {len(params)} argument(s) ({names}), got {len(raw)}")
    values: list[object] = []
    buffers: list[bytearray] = []
    for p, text in zip(params, raw, strict=True):
        kind = p.ctype.kind
        if kind is TypeKind.CSTR:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                # Not UTF-8 on the command line (PEP 383 surrogates): a C string argument must be UTF-8 text.
                msg = f"{proxy.trait.name}.{method}: argument {p.name} {os.fsencode(text)!r} is not UTF-8 text"
                raise ValueError(msg) from e
            values.append(text)
        elif kind in (TypeKind.BUFFER, TypeKind.MUTBUFFER):
            buf = bytearray(os.fsencode(text))  # a buffer takes the argument's bytes as they came
            buffers.append(buf)
            values.append(buf)
        elif kind in (TypeKind.ARRAY, TypeKind.MUTARRAY):
            values.append(_array_argument(p.name, p.ctype.item, text))
        elif p.ctype.python_type is float:
            values.append(float(text))
        elif p.ctype.python_type is bool:
            values.append(text.lower() in ("1", "true", "yes"))
        else:
            values.append(int(text, 0))
    return values, buffers


def _array_argument(name: str, item: CType | None, text: str) -> array.array[Any]:
    """``"1, 2.5, 3"`` as an ``array.array`` of the item type (for ``Array[T]`` arguments)."""
    assert item is not None
    code = next(c for c in "bBhHiIlLqQfd?" if c in item.buffer_formats)
    parts = [t for t in text.replace(",", " ").split() if t]
    try:
        if code == "?":
            return array.array("B", [t.lower() in ("1", "true", "yes") for t in parts])
        numbers = [float(t) if code in "fd" else int(t, 0) for t in parts]
        return array.array(code, numbers)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"argument {name}: {text!r} is not a list of {item.name} numbers ({e})") from e


def cmd_call(args: argparse.Namespace) -> int:
    if os.path.isdir(args.path):
        print(f"error: {args.path}: call takes one plugin file, not a directory", file=sys.stderr)
        return EXIT_USAGE
    sniff_format(args.path)  # a FIFO, device or unreadable file: refused before the loader sees it
    with PluginManager() as manager:
        [handle] = manager.load_plugins(args.path, args.trait)  # the host's declaration, else the file's
        proxy = handle.proxy(args.type)
        try:
            values, buffers = _convert_args(proxy, args.method, args.args)
        except (ValueError, KeyError) as e:
            print(f"error: {args.path}: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
            return EXIT_USAGE
        result = getattr(proxy, args.method)(*values)
        if isinstance(result, tuple):  # a result and out-parameters
            print(" ".join(str(r) for r in result))
        elif result is not None:
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

    if not os.path.isdir(args.dir):
        print(f"error: {args.dir}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    with PluginManager() as manager:
        print(f"watching  {Path(args.dir).absolute()} (Ctrl-C to stop)", flush=True)
        try:
            watch_and_load_blocking(manager, args.dir, args.trait, opts, show)
        except BrokenPipeError:
            raise  # our reader went away: main() ends quietly
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        for path, counters in manager.unload_all().items():
            for trait, counter in counters.items():
                show(Unloaded(path, counter, trait))
    return EXIT_OK
