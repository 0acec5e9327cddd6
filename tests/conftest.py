"""Shared fixtures: real plugins compiled once per session, crash isolation,
and a thread-leak check (watchdog's tests/conftest.py does the same).

The helpers are the installed ones (``plugin_host.testing``, what the pytest
plugin's fixtures use): ``compile_plugin`` builds through its
:class:`~plugin_host.testing.PluginBuilder`, and ``run_isolated``,
``mapped_paths`` and the thread check are its functions."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from plugin_annotations import build_plugins, language_of, load_plugin_spec
from plugin_host.loading import _engine
from plugin_host.testing import PluginBuilder, ProcessSnapshot, leaked_threads, mapped_paths, run_isolated
from plugin_host.testing._builder import SUFFIXES

__all__ = ["mapped_paths", "run_isolated"]  # re-exported for the test modules
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "native_plugins"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
WERROR = ["-Werror"]
#: CI must run every language's tests: there a missing compiler fails instead of skipping.
IN_CI = bool(os.environ.get("CI"))
#: ``PLUGIN_HOST_TEST_INSTALL=no-compiler``: this install was made without a C compiler on purpose (CI's second
#: run of the suite): the optional extensions must be absent, and their own tests skip instead of failing.
NO_COMPILER_INSTALL = os.environ.get("PLUGIN_HOST_TEST_INSTALL") == "no-compiler"
#: Whether the install promised the C extensions (CI's usual install): their absence is then a failure.
EXTENSIONS_PROMISED = IN_CI and not NO_COMPILER_INSTALL
#: The languages the core tests run over: native_plugins/<language>_greeter are twins.
LANGUAGES = ("c", "cpp", "rust")


def require_tool(command: str, what: str) -> str:
    """The path of ``command``; skips the test when it is missing (fails under CI, which must run it)."""
    found = shutil.which(command)
    if found is None:
        message = f"{command!r} is not installed: the {what} tests need it"
        if IN_CI:
            pytest.fail(f"{message}, and CI (CI={os.environ['CI']!r}) must run them")
        pytest.skip(f"{message} (CI runs them)")
    return found


def require_language(language: str) -> None:
    """Skip (outside CI) a test whose plugins are in ``language`` when its compiler is missing."""
    if language == "cpp":
        require_tool(shlex.split(os.environ.get("CXX", "g++"))[0], "C++")
    elif language == "rust":
        require_tool(shlex.split(os.environ.get("RUSTC", "rustc"))[0], "Rust")


@pytest.fixture(scope="session")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide scratch directory for compiled plugins."""
    return tmp_path_factory.mktemp("plugins")


@pytest.fixture(scope="session")
def example_plugins(build_root: Path) -> dict[str, Path]:
    """The bundled examples (native_plugins/), built once with -Werror: name -> library."""
    return build_plugins(EXAMPLES, build_root / "examples", extra_cflags=WERROR).outputs


@pytest.fixture(scope="session")
def test_plugins(build_root: Path) -> dict[str, Path]:
    """The deliberately broken plugins of tests/plugins/: name -> library."""
    return build_plugins(TEST_PLUGINS, build_root / "test_plugins", extra_cflags=WERROR).outputs


#: The two paths a call can take: the compiled call engine, and pure Python (the engine's fallback).
CALL_PATHS = ("engine", "python")


@pytest.fixture(params=CALL_PATHS)
def call_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each call path in turn, for the proxies and module functions made during the test.

    ``"engine"`` skips where the engine was not built (no C compiler at install time); CI must build it.
    """
    path: str = request.param
    if path == "engine" and not _engine.available():
        message = "plugin_host.loading._callengine was not built (no C compiler at install time)"
        if EXTENSIONS_PROMISED:
            pytest.fail(f"{message}, and CI must test it")
        pytest.skip(message)
    previous = _engine.set_enabled(path == "engine")
    try:
        yield path
    finally:
        _engine.set_enabled(previous)


def is_compiled(function: object) -> bool:
    """Whether a proxy method or module function runs in the call engine (else it is Python's)."""
    if isinstance(function, types.BuiltinFunctionType):
        return _engine.Method is not None and isinstance(function.__self__, _engine.Method)
    return _engine.Function is not None and isinstance(function, _engine.Function)


CompilePlugin = Callable[..., Path]
LanguageGreeter = Callable[..., Path]


@pytest.fixture(params=LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    """Each of C, C++ and Rust in turn (skipped outside CI where its compiler is missing)."""
    value: str = request.param
    require_language(value)
    return value


@pytest.fixture(scope="session")
def language_greeter(build_root: Path) -> LanguageGreeter:
    """``language_greeter(language, host_owned=False)``: native_plugins/<language>_greeter built
    once (with ``NO_AGGREGATE`` for the host-owned path): English, French and Counting, alike in
    every language."""
    built: dict[tuple[str, bool], Path] = {}

    def build(language: str, host_owned: bool = False) -> Path:
        require_language(language)
        if (language, host_owned) not in built:
            spec = load_plugin_spec(EXAMPLES / f"{language}_greeter")
            if host_owned:
                spec = dataclasses.replace(spec, name=f"{spec.name}_host_owned", defines=("NO_AGGREGATE",))
            built[language, host_owned] = build_plugins([spec], build_root / "languages", extra_cflags=WERROR).outputs[
                spec.name
            ]
        return built[language, host_owned]

    return build


@pytest.fixture(scope="session")
def compile_plugin(build_root: Path) -> CompilePlugin:
    """Compile C source text into a plugin library; returns its path.

    ``compile_plugin(name, source, defines=(), out_dir=None, include_dirs=(), language="c",
    restrict_exports=None, cflags=())``: ``source`` is one file's text in ``language`` (or a dict
    of file name -> text; ``.h``/``.hpp`` files are written next to the sources, where they shadow
    installed headers, and not compiled; a Rust crate's root comes first).  The language follows
    the sources' suffixes unless given.  Each call builds into its own directory, so tests can
    make many versions of "the same" plugin.
    """
    builder = PluginBuilder(build_root / "src", flags=WERROR)
    counter = iter(range(1_000_000))

    def compile(
        name: str,
        source: str | dict[str, str],
        defines: tuple[str, ...] = (),
        out_dir: Path | None = None,
        include_dirs: tuple[Path, ...] = (),
        language: str = "",
        restrict_exports: bool | None = None,
        cflags: tuple[str, ...] = (),
    ) -> Path:
        files = source if isinstance(source, dict) else {f"{name}{SUFFIXES[language or 'c']}": source}
        require_language(language or language_of(map(Path, files)))
        out = out_dir or (build_root / "out" / f"{name}-{next(counter)}")
        return builder.build(
            files,
            name=name,
            language=language or None,
            flags=cflags,
            defines=defines,
            include_dirs=include_dirs,
            restrict_exports=restrict_exports,
            out_dir=out,
        )

    return compile


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves threads running (watcher threads must stop)."""
    before = ProcessSnapshot(native=set(), fds={})  # Python threads only: tests start native ones on purpose
    yield
    leaked = leaked_threads(before, native=False)
    assert not leaked, f"threads leaked: {leaked}"


@pytest.fixture(params=["server", "fresh"])
def probe_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with probes forked from the warm probe server, and again with a fresh interpreter each."""
    from plugin_host.admission._probe import fork_server_supported

    if request.param == "server" and not fork_server_supported():
        pytest.skip("no probe server on this platform")
    monkeypatch.setenv("PLUGIN_HOST_PROBE_SERVER", "1" if request.param == "server" else "0")
    return str(request.param)
