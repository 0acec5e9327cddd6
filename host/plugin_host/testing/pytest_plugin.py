"""The pytest plugin of plugin-host (entry point ``pytest11``: ``plugin_host``).

Fixtures ``plugin_builder`` (compile C, C++ or Rust plugins, once per content)
and ``plugin_manager`` (a manager whose teardown fails on anything left
behind); the marker ``@pytest.mark.isolated`` and the options
``--plugin-isolate``, ``--plugin-sanitize``, ``--plugin-start-method``,
``--plugin-timeout`` and ``--plugin-build-dir``.  See the README's "Testing
native code with pytest".

pytest imports every registered plugin at start-up, so this module imports
only the standard library and pytest; the host, the builder and Hypothesis
are imported by the fixtures that use them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._child import CHILD, IsolationSettings
from ._platform import can_fork

if TYPE_CHECKING:
    from ._builder import PluginBuilder, Source
    from ._leaks import CheckedPluginManager

#: The fixtures whose tests ``--plugin-isolate`` and ``--plugin-sanitize`` run in a child process.
PLUGIN_FIXTURES = ("plugin_builder", "plugin_manager")
#: The default time limit of an isolated test, in seconds.
DEFAULT_TIMEOUT_S = 600.0
#: How long plugin_manager's teardown waits for threads started during the test, in seconds
#: (``_leaks.DEFAULT_THREAD_GRACE_S``, not imported here: this module must stay cheap).
DEFAULT_THREAD_GRACE_S = 5.0
_SETTINGS = pytest.StashKey[IsolationSettings]()
_BUILD_ROOT = pytest.StashKey[Path]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("plugin-host", "plugin-host: testing native plugins")
    group.addoption(
        "--plugin-isolate",
        action="store_true",
        help="run every test that uses plugin_builder or plugin_manager in a child process, "
        "as @pytest.mark.isolated does: a crash fails the test, the session goes on",
    )
    group.addoption(
        "--plugin-sanitize",
        metavar="address,undefined",
        default="",
        help="build the plugins of plugin_builder with AddressSanitizer and/or UBSan and run isolated tests "
        "(and every test using the fixtures) in a fresh interpreter with the sanitizer runtime preloaded",
    )
    group.addoption(
        "--plugin-start-method",
        choices=("fork", "spawn"),
        default=None,
        help="how isolated tests start their child: fork (default where it is safe: POSIX but macOS) "
        "or spawn (a fresh interpreter; always with --plugin-sanitize)",
    )
    group.addoption(
        "--plugin-timeout",
        type=float,
        metavar="SECONDS",
        default=DEFAULT_TIMEOUT_S,
        help=f"stop an isolated test after this long, failing it with its stacks (default {DEFAULT_TIMEOUT_S:g}; "
        "0: no limit; @pytest.mark.isolated(timeout=...) per test)",
    )
    group.addoption(
        "--plugin-build-dir",
        metavar="DIR",
        default=None,
        help="where plugin_builder keeps its builds (default: a directory of the session's basetemp); "
        "one that persists makes later sessions reuse them",
    )
    group.addoption("--plugin-child", default=None, help=argparse.SUPPRESS)
    parser.addini(
        "plugin_thread_grace_s",
        "how long plugin_manager's teardown waits for threads started during the test to end, in seconds",
        default=str(DEFAULT_THREAD_GRACE_S),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "isolated(timeout=None): run the test in a child process (fork, or spawn); a segfault, abort or exit() "
        "in it fails the test with the signal and the C and Python stacks, and the session goes on",
    )
    child = config.getoption("plugin_child")
    if child:
        from ._isolation import SpawnedChild

        config.pluginmanager.register(SpawnedChild(config, Path(child)), "plugin-host-child")
    sanitizers: tuple[str, ...] = ()
    text = config.getoption("plugin_sanitize")
    if text:
        from ._sanitizers import SanitizerError, parse_sanitizers, runtimes

        try:
            sanitizers = parse_sanitizers(text)
            if not child:
                runtimes(sanitizers)  # a missing runtime is a usage error now, not a failure per test
        except SanitizerError as e:
            raise pytest.UsageError(str(e)) from None
    method = config.getoption("plugin_start_method")
    if method is None:
        method = "fork" if can_fork() else "spawn"
    timeout = config.getoption("plugin_timeout")
    config.stash[_SETTINGS] = IsolationSettings(
        start_method="spawn" if sanitizers else method,
        timeout_s=timeout if timeout and timeout > 0 else None,
        sanitizers=sanitizers,
        forwarded=_forwarded(config),
    )


def _forwarded(config: pytest.Config) -> list[str]:
    """The command-line options a spawned child needs to run a test as this session would (the
    ini file's ``addopts`` and ``PYTEST_ADDOPTS`` reach it by themselves)."""
    out: list[str] = []
    args = list(config.invocation_params.args)
    takes_value = {"-p", "-W", "--pythonwarnings", "-o", "--override-ini", "--import-mode", "--confcutdir", "--tb"}
    flags = {"--noconftest", "-l", "--showlocals", "--full-trace"}
    i = 0
    while i < len(args):
        arg = str(args[i])
        name = arg.split("=", 1)[0]
        if name in takes_value and "=" not in arg and not (arg.startswith("-p") and len(arg) > 2):
            out += [arg, str(args[i + 1])] if i + 1 < len(args) else []
            i += 2
            continue
        if name in takes_value or name in flags or (arg.startswith("-p") and len(arg) > 2 and arg != "-p"):
            out.append(arg)
        i += 1
    for option, value in (("--plugin-sanitize", config.getoption("plugin_sanitize")),):
        if value:
            out.append(f"{option}={value}")
    return out


def _isolated(item: pytest.Item) -> bool:
    if item.get_closest_marker("isolated") is not None:
        return True
    config = item.config
    wide = config.getoption("plugin_isolate") or bool(config.stash[_SETTINGS].sanitizers)
    return wide and any(name in getattr(item, "fixturenames", ()) for name in PLUGIN_FIXTURES)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if CHILD in item.config.stash or not _isolated(item):
        return None
    from ._isolation import run_in_child

    # A spawned child builds where this session does, so each plugin is built once.
    shared = [f"--plugin-build-dir={_build_root(item.config)}"]
    run_in_child(item, nextitem, item.config.stash[_SETTINGS], shared)
    return True


def _build_root(config: pytest.Config) -> Path:
    """Where this session's plugins are built (``--plugin-build-dir``, else the session's basetemp)."""
    root = config.stash.get(_BUILD_ROOT, None)
    if root is None:
        given = config.getoption("plugin_build_dir")
        if given:
            root = Path(given).resolve()
        else:
            # The tmp_path_factory fixture's own object: the tmpdir plugin sets it at configure.
            factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
            root = factory.mktemp("plugin_builds")
        config.stash[_BUILD_ROOT] = root
    return root


@contextlib.contextmanager
def _phase(config: pytest.Config, when: str) -> Iterator[None]:
    """In a child: record that ``when`` started (so a crash is blamed on it)."""
    state = config.stash.get(CHILD, None)
    if state is not None:
        state.write({"phase": when})
    yield


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _phase(item.config, "setup"):
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _phase(item.config, "call"):
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    with _phase(item.config, "teardown"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: Any = yield
    state = item.config.stash.get(CHILD, None)
    if state is not None:  # in a child: hand the report to the parent as soon as it exists
        data = item.config.hook.pytest_report_to_serializable(config=item.config, report=report)
        state.write({"report": data})
    return report  # type: ignore[no-any-return]


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash.get(_SETTINGS, None)
    if settings is None or CHILD in config.stash:
        return []
    lines = []
    if config.getoption("plugin_isolate"):
        lines.append(f"plugin-host: tests using the plugin fixtures run isolated ({settings.start_method})")
    if settings.sanitizers:
        lines.append(f"plugin-host: plugins built with -fsanitize={','.join(settings.sanitizers)}, runtime preloaded")
    return lines


# ---- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def plugin_build_dir(request: pytest.FixtureRequest) -> Path:
    """Where ``plugin_builder`` builds (``--plugin-build-dir``, else a directory of the session's basetemp)."""
    return _build_root(request.config)


class PluginBuilderFixture:
    """The ``plugin_builder`` fixture: ``plugin_builder(source, *, name=None, language=None,
    traits=(), flags=(), defines=(), include_dirs=(), restrict_exports=None) -> Path``.

    ``source`` is the source text, a file, a plugin directory (``plugin.toml``), or a mapping
    of file names to texts (see :meth:`plugin_host.testing.PluginBuilder.build`).  A compiler
    error fails the test with the compiler's output; a missing C++ or Rust compiler skips it
    (fails it when ``CI`` is set: CI must run it).
    """

    def __init__(self, builder: PluginBuilder) -> None:
        self.builder = builder

    def __call__(self, source: Source, **options: Any) -> Path:
        from plugin_annotations import BuildError, CompilerNotFoundError

        try:
            return self.builder.build(source, **options)
        except CompilerNotFoundError as e:
            missing: CompilerNotFoundError | None = e
            failed = None
        except BuildError as e:
            missing, failed = None, e
        # Outside the except blocks: the compiler's output once, not again as the "context".
        if missing is not None:
            if os.environ.get("CI"):
                pytest.fail(
                    f"plugin_builder: {missing} (and CI={os.environ['CI']!r} must run this test)", pytrace=False
                )
            pytest.skip(f"plugin_builder: {missing}")
        pytest.fail(f"plugin_builder: {failed}", pytrace=False)


@pytest.fixture(scope="session")
def plugin_builder(request: pytest.FixtureRequest, plugin_build_dir: Path) -> PluginBuilderFixture:
    """Compile a plugin from a source string, a file or a plugin directory (C, C++, Rust); returns
    the library's path.  Each distinct build happens once per session (keyed by a hash of the
    sources, the traits' declarations, the flags and the compiler settings)."""
    from ._builder import PluginBuilder

    sanitizers = request.config.stash[_SETTINGS].sanitizers
    return PluginBuilderFixture(PluginBuilder(plugin_build_dir, sanitizers=sanitizers))


@pytest.fixture
def plugin_manager(request: pytest.FixtureRequest) -> Iterator[CheckedPluginManager]:
    """A :class:`~plugin_host.PluginManager`; its teardown unloads everything and fails the test
    (``ERROR at teardown``) on what was left: a registration not released, an unmaker counter
    other than the registrations made, a library still mapped (with the reason), a private copy
    or a descriptor left, a thread still running."""
    from ._leaks import CheckedPluginManager, ProcessSnapshot

    before = ProcessSnapshot()
    manager = CheckedPluginManager()
    yield manager
    grace_s = float(request.config.getini("plugin_thread_grace_s"))
    problems = manager.close_and_check(before=before, thread_grace_s=grace_s)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        pytest.fail(f"plugin_manager: the test left plugins behind:\n{listed}", pytrace=False)
