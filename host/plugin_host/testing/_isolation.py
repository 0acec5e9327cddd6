"""Running one pytest item in a child process, and turning its death into a test failure.

The parent logs what the child reported, phase by phase; when the child dies
(a signal, an ``exit()``, a sanitizer's report, a timeout) the phase it was in
fails with the signal named, the C and Python stacks, any sanitizer report and
what the child wrote to its stderr; the session goes on.

Two ways to start the child:

- **fork** (POSIX but macOS): the child is a copy of the session; it runs the
  item's setup, call and teardown (``runtestprotocol``) and tears down only
  what it set up itself, so a module or session fixture the parent set up is
  torn down once, by the parent, as if the item had run there.
- **spawn** (macOS, Windows, and sanitizer runs, whose runtime must be loaded
  before the interpreter starts): a fresh ``python -m pytest NODEID`` with the
  session's rootdir, ini file, ``-p`` plugins and the plugin options.

The child streams its reports as they are made (one JSON line each), so a
crash in the call still shows the setup's report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from . import _process
from ._child import CHILD, ChildState, IsolationSettings

__all__ = ["SpawnedChild", "run_in_child"]


class _Survivors:
    """Stands in for the "next item" of a forked child's teardown: what the parent had set up
    before the child started, which the child must leave for the parent to tear down."""

    def __init__(self, nodes: Sequence[pytest.Item | pytest.Collector]) -> None:
        self._nodes = list(nodes)

    def listchain(self) -> list[pytest.Item | pytest.Collector]:
        return self._nodes


def _setup_stack(item: pytest.Item) -> dict[Any, Any] | None:
    state = getattr(item.session, "_setupstate", None)
    stack = getattr(state, "stack", None)
    return stack if isinstance(stack, dict) else None


def run_in_child(
    item: pytest.Item, nextitem: pytest.Item | None, settings: IsolationSettings, options: Sequence[str] = ()
) -> None:
    """Run ``item``'s whole protocol in a child and log its reports (the ``pytest_runtest_protocol``
    of an isolated item).

    :param options: more command-line options for a spawned child.
    """
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    marker = item.get_closest_marker("isolated")
    timeout_s = settings.timeout_s
    if marker is not None and marker.kwargs.get("timeout") is not None:
        timeout_s = float(marker.kwargs["timeout"])
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="plugin-host-isolated-") as scratch:
        directory = Path(scratch)
        if settings.start_method == "fork" and not settings.sanitizers:
            code, pid = _fork(item, directory, timeout_s)
            env = dict(os.environ)
            leftover = _leftover_capture(item.config)
        else:
            code, pid, env = _spawn(item, directory, timeout_s, settings, options)
            leftover = []
        records = _read_records(directory / "progress")
        reports = [
            item.config.hook.pytest_report_from_serializable(config=item.config, data=r["report"])
            for r in records
            if "report" in r
        ]
        phases = [r["phase"] for r in records if "phase" in r]
        done = any(r.get("done") for r in records)
        stderr = _read(directory / "stderr")
        stdout = _read(directory / "stdout")
        sanitizer = _process.sanitizer_logs([pid], environ=env)
        if settings.sanitizers:  # UBSan next to ASan ignores its log_path: its report is on stderr
            found, stderr = _sanitizer_report(stderr)
            sanitizer += [found] if found else []
            # Each crash of a forked call (a fuzzed one) announces itself here; its report is in its log.
            stderr = "\n".join(line for line in stderr.splitlines() if not line.endswith("Sanitizer:DEADLYSIGNAL"))
        crash_text = _process.format_crash(_read(directory / "crash"))
    duration = time.time() - start
    sections = [*leftover, *([("Captured stderr (isolated child)", stderr)] if stderr.strip() else [])]
    failed = _failure(code, done, phases, sanitizer, crash_text, timeout_s, stdout + stderr)
    if failed is not None:
        phase, message = failed
        reports = [r for r in reports if r.when != phase and _order(r.when) < _order(phase)]
        reports.append(_report(item, phase, message, sections, duration))
        if phase != "teardown":
            reports.append(_report(item, "teardown", None, [], 0.0))
    elif not reports:
        message = f"the isolated child process ran no test for {item.nodeid}" + (f":\n{stderr}" if stderr else "")
        reports = [_report(item, "setup", message, sections, duration), _report(item, "teardown", None, [], 0.0)]
    elif sections:
        last = next((r for r in reports if r.when == "call"), reports[-1])
        last.sections = [*last.sections, *sections]
    teardown = [r for r in reports if r.when == "teardown"]
    for report in reports:
        if report.when != "teardown":
            ihook.pytest_runtest_logreport(report=report)
    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
    parent = _teardown_in_parent(item, nextitem)
    if parent is not None and (not teardown or teardown[-1].passed):
        teardown = [parent]
    elif parent is not None:
        teardown.append(parent)
    for report in teardown:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


_SANITIZER_START = re.compile(r"runtime error: |==\d+==ERROR: \w*Sanitizer")


def _sanitizer_report(stderr: str) -> tuple[str, str]:
    """``(the sanitizer report in stderr, the rest of it)``: from the first report line to its ``SUMMARY:``."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if _SANITIZER_START.search(line)), None)
    if start is None:
        return "", stderr
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("SUMMARY: ")), len(lines) - 1)
    report = _process.format_sanitizer_report("\n".join(lines[start : end + 1]))
    return report, "\n".join([*lines[:start], *lines[end + 1 :]])


def _order(when: str) -> int:
    return ("setup", "call", "teardown").index(when)


def _failure(
    code: int | None,
    done: bool,
    phases: list[str],
    sanitizer: list[str],
    crash_text: str,
    timeout_s: float | None,
    output: str,
) -> tuple[str, str] | None:
    """``(phase, message)`` when the child died, else ``None``."""
    phase = phases[-1] if phases else "setup"
    where = {"setup": "during setup", "call": "during the test", "teardown": "during teardown"}[phase]
    details = "\n\n".join([*sanitizer, *([crash_text] if crash_text else [])])
    if code is None:
        message = f"isolated test timed out after {timeout_s:g} s {where} and was stopped"
    elif not phases and not done and not sanitizer and not crash_text:
        tail = "\n".join(output.strip().splitlines()[-30:])
        message = f"the isolated child process could not run the test ({_process.describe_exit(code)})"
        return "setup", message + (f":\n{tail}" if tail else "")
    elif done and code >= 0 and not sanitizer:
        return None  # a spawned pytest's own exit status says only whether the test failed
    elif done:
        message = f"the isolated child process ended with {_process.describe_exit(code)} after the test"
        phase = "teardown"
    elif sanitizer:
        found = re.search(r"\b\w*Sanitizer: [\w-]+|runtime error: [^\n]*", "\n".join(sanitizer))
        message = f"isolated test failed {where}: {found.group(0) if found else 'a sanitizer report'}"
    elif code < 0:
        message = f"isolated test crashed {where}: {_process.describe_exit(code)}"
    else:
        message = (
            f"isolated test ended the process {where}: {_process.describe_exit(code)} "
            "(exit() or _exit() called, by the plugin or the test)"
        )
    return phase, message + (f"\n\n{details}" if details else "")


def _report(
    item: pytest.Item, when: str, message: str | None, sections: list[tuple[str, str]], duration: float
) -> pytest.TestReport:
    return pytest.TestReport(
        item.nodeid,
        item.location,
        dict.fromkeys(item.keywords, 1),
        "passed" if message is None else "failed",
        message,
        when,  # type: ignore[arg-type]
        sections,
        duration,
        user_properties=list(item.user_properties),
    )


def _teardown_in_parent(item: pytest.Item, nextitem: pytest.Item | None) -> pytest.TestReport | None:
    """Tear down what the parent set up that ``nextitem`` does not need; a report if that failed."""
    state = getattr(item.session, "_setupstate", None)
    if state is None:
        return None
    call = pytest.CallInfo.from_call(lambda: state.teardown_exact(nextitem), when="teardown")
    if call.excinfo is None:
        return None
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    return report


def _leftover_capture(config: pytest.Config) -> list[tuple[str, str]]:
    """What a forked child wrote to the session's captured stdout/stderr and nobody read (it died)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        return []
    try:
        out, err = capman.read_global_capture()
    except Exception:
        return []
    return [(f"Captured {name} (isolated child)", text) for name, text in (("stdout", out), ("stderr", err)) if text]


def _fork(item: pytest.Item, directory: Path, timeout_s: float | None) -> tuple[int | None, int]:
    tracer = _process.crash_tracer()
    stack = _setup_stack(item)
    survivors = list(stack) if stack is not None else None
    pid = _process.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            progress = open(directory / "progress", "w")  # open until the process ends
            crash = open(directory / "crash", "w")
            _process.arm_crash_report(crash, tracer=tracer)
            item.config.stash[CHILD] = ChildState(progress)
            from _pytest.runner import runtestprotocol

            nextitem: Any = _Survivors(survivors) if survivors is not None else None
            runtestprotocol(item, log=False, nextitem=nextitem)
            item.config.stash[CHILD].write({"done": True})
        except BaseException:
            code = 70  # EX_SOFTWARE: the child's own machinery failed
            with contextlib.suppress(Exception):
                import traceback

                traceback.print_exc()
        finally:
            os._exit(code)
    try:
        status = _process.wait_for_exit(pid, timeout_s)
    except BaseException:  # an interrupted session: no child left behind
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    if status is None:
        _process.stop_child(pid)
    return status, pid


def _spawn(
    item: pytest.Item, directory: Path, timeout_s: float | None, settings: IsolationSettings, options: Sequence[str]
) -> tuple[int | None, int, dict[str, str]]:
    config = item.config
    env = dict(os.environ)
    tracer = _process.crash_tracer()
    if tracer is not None:
        env[_process.TRACER_ENV] = str(tracer)
    if settings.sanitizers:
        from ._sanitizers import runtime_env

        env = runtime_env(settings.sanitizers, directory, env)
    command = [
        sys.executable,
        "-m",
        "pytest",
        item.nodeid,
        f"--rootdir={config.rootpath}",
        *([f"--config-file={config.inipath}"] if config.inipath else []),
        f"--basetemp={directory / 'tmp'}",
        f"--plugin-child={directory}",
        "-o",
        f"cache_dir={directory / 'cache'}",
        "--capture=sys",
        "-m",
        "",
        "-k",
        "",
        "-q",
        # A sanitizer reports a fault itself: faulthandler in front of it would re-raise the signal.
        *(["-p", "no:faulthandler"] if settings.sanitizers else []),
        *(["-n", "0"] if config.pluginmanager.hasplugin("xdist") else []),
        *settings.forwarded,
        *options,
    ]
    with open(directory / "stdout", "w") as out, open(directory / "stderr", "w") as err:
        child = subprocess.Popen(
            command, cwd=config.rootpath, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        try:
            code: int | None = child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
            _stop(child)
        except BaseException:  # an interrupted session: no child left behind
            child.kill()
            child.wait()
            raise
    return code, child.pid, env


def _stop(child: subprocess.Popen[bytes]) -> None:
    """End a spawned child that ran out of time: SIGABRT first where there is one (its stacks go
    to the crash file), then kill it."""
    if hasattr(signal, "SIGKILL"):  # POSIX
        child.send_signal(signal.SIGABRT)
        try:
            child.wait(_process.KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            pass
    child.kill()
    child.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _read_records(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for line in _read(path).splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


class SpawnedChild:
    """The plugin a spawned child (``--plugin-child=DIR``) registers: its progress goes to
    ``DIR/progress``, a crash's stacks to ``DIR/crash``."""

    def __init__(self, config: pytest.Config, directory: Path) -> None:
        self.directory = directory
        progress = open(directory / "progress", "w")  # open until the process ends
        self.state = config.stash[CHILD] = ChildState(progress)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self) -> None:
        # After every pytest_configure: pytest's faulthandler plugin enables it there, and the
        # C stack's handler must come after faulthandler's to hand the signal on to it.
        crash = open(self.directory / "crash", "w")  # open until the process ends
        _process.arm_crash_report(crash, tracer=_process.crash_tracer())

    def pytest_runtest_logfinish(self) -> None:
        self.state.write({"done": True})  # a later death is not the test's
