"""Shared fixtures: real plugins compiled once per session, crash isolation,
and a thread-leak check (watchdog's tests/conftest.py does the same)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from plugin_annotations import PluginSpec, build_plugins, load_plugin_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "native_plugins"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
WERROR = ["-Werror"]
#: CI must run every language's tests: there a missing compiler fails instead of skipping.
IN_CI = bool(os.environ.get("CI"))
#: The file suffix of a single-source plugin, by language.
SUFFIXES = {"c": ".c", "cpp": ".cpp", "rust": ".rs"}
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
        src_dir = build_root / "src" / f"{name}-{next(counter)}"
        src_dir.mkdir(parents=True)
        files = source if isinstance(source, dict) else {f"{name}{SUFFIXES[language or 'c']}": source}
        for fname, text in files.items():
            (src_dir / fname).parent.mkdir(parents=True, exist_ok=True)
            (src_dir / fname).write_text(textwrap.dedent(text))
        spec = PluginSpec(
            name=name,
            directory=src_dir,
            sources=tuple(src_dir / f for f in files if not f.endswith((".h", ".hpp", ".toml"))),
            defines=defines,
            include_dirs=tuple(include_dirs),
            language=language,
            restrict_exports=restrict_exports,
            cflags=cflags,
        )
        require_language(spec.source_language)
        out = out_dir or (src_dir / "out")
        return build_plugins([spec], out, extra_cflags=WERROR).outputs[name]

    return compile


def run_isolated(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a child interpreter (for cases that may crash it)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )


def mapped_paths() -> set[str]:
    """Files mapped into this process (Linux ``/proc/self/maps``)."""
    with open("/proc/self/maps") as f:
        return {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves threads running (watcher threads must stop)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"threads leaked: {leaked}"


@pytest.fixture(params=["server", "fresh"])
def probe_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with probes forked from the warm probe server, and again with a fresh interpreter each."""
    from plugin_host.admission._probe import fork_server_supported

    if request.param == "server" and not fork_server_supported():
        pytest.skip("no probe server on this platform")
    monkeypatch.setenv("PLUGIN_HOST_PROBE_SERVER", "1" if request.param == "server" else "0")
    return str(request.param)
