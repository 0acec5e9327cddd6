"""Child processes for code that may crash, and what a crash left behind.

- :func:`run_isolated`: Python code in a fresh interpreter (a subprocess).
- :func:`call_forked`: a callable in a forked child; its result, its exception,
  or :class:`PluginCrash` naming the signal (or exit status) with the C stack,
  the Python stack (faulthandler) and any sanitizer report.
- :func:`arm_crash_report`: what a child enables before running code that may
  crash (faulthandler to a file, and the C stack: ``crash_trace.c``).
- :func:`mapped_paths`, :func:`open_files`, :func:`native_thread_ids`: what a
  process holds (Linux ``/proc/self``), for the leak checks.

**Platform-specific behaviour**: forking is POSIX; the C stack needs glibc's
``backtrace`` (Linux) and a C compiler to build the helper once per process;
``/proc`` is Linux.  Elsewhere each piece degrades to what is there (no C stack,
no descriptor check) rather than failing.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import functools
import itertools
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from ._platform import can_fork

__all__ = [
    "PluginCrash",
    "arm_crash_report",
    "call_forked",
    "can_fork",
    "crash_tracer",
    "describe_exit",
    "format_crash",
    "format_sanitizer_report",
    "mapped_paths",
    "native_thread_ids",
    "open_files",
    "run_isolated",
    "sanitizer_logs",
    "wait_for_exit",
]

T = TypeVar("T")

#: How long a child is given to die after the signal that ends a timed-out run, in seconds.
KILL_GRACE_S = 10.0
#: Windows' exit codes for the crashes a signal reports on POSIX.
_NTSTATUS = {
    0xC0000005: "an access violation (STATUS_ACCESS_VIOLATION)",
    0xC00000FD: "a stack overflow (STATUS_STACK_OVERFLOW)",
    0xC0000409: "a fail-fast exit, e.g. abort() (STATUS_STACK_BUFFER_OVERRUN)",
    0xC000001D: "an illegal instruction (STATUS_ILLEGAL_INSTRUCTION)",
    0xC0000094: "an integer division by zero (STATUS_INTEGER_DIVIDE_BY_ZERO)",
}


def run_isolated(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` (dedented) in a child interpreter, with faulthandler on.

    For cases that may crash the interpreter; the caller reads
    ``returncode`` (negative: killed by that signal), ``stdout`` and ``stderr``.

    :raises subprocess.TimeoutExpired: after ``timeout`` seconds.
    """
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


def open_files() -> dict[int, str]:
    """This process's open file descriptors and what they name (Linux ``/proc/self/fd``; empty elsewhere)."""
    out: dict[int, str] = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def native_thread_ids() -> set[int]:
    """Every thread of this process, Python's and native ones (Linux ``/proc/self/task``; empty elsewhere)."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def describe_exit(code: int) -> str:
    """An exit code as :func:`os.waitstatus_to_exitcode` gives it, in words.

    ``-11`` -> ``"SIGSEGV (signal 11: Segmentation fault)"``; ``3`` -> ``"exit status 3"``.
    """
    if code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        text = signal.strsignal(number) or ""
        return f"{name} (signal {number}{': ' + text if text else ''})"
    status = _NTSTATUS.get(code & 0xFFFFFFFF)
    if status is not None:
        return f"{status}, exit code {code & 0xFFFFFFFF:#x}"
    return f"exit status {code}"


# ---- the C stack -------------------------------------------------------------

_tracer_lock = threading.Lock()
_tracer: list[Path | None] = []  # built once per process: [path or None]
#: Set in a spawned child, so it loads the parent's helper instead of building one.
TRACER_ENV = "PLUGIN_HOST_CRASH_TRACER"


def crash_tracer() -> Path | None:
    """The helper library that writes the C stack of a crash (``crash_trace.c``), built once per process.

    ``None`` where it cannot be built (no C compiler, no ``execinfo.h``): crashes are
    then reported with the Python stack only.
    """
    given = os.environ.get(TRACER_ENV)
    if given:
        return Path(given) if Path(given).is_file() else None
    with _tracer_lock:
        if not _tracer:
            _tracer.append(_build_tracer())
        return _tracer[0]


def _build_tracer() -> Path | None:
    if not sys.platform.startswith("linux"):
        return None
    from plugin_annotations import BuildError, PluginSpec, build_plugins

    source = Path(__file__).with_name("crash_trace.c")
    root = Path(tempfile.mkdtemp(prefix="plugin-host-crash-trace-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    spec = PluginSpec(name="plugin_host_crash_trace", directory=source.parent, sources=(source,))
    try:
        return build_plugins([spec], root).outputs[spec.name]
    except (BuildError, OSError):
        return None


#: The sanitizer runtimes a process may have preloaded (see :mod:`._sanitizers`).
_SANITIZER_RUNTIMES = ("libasan", "libubsan", "libclang_rt.asan", "libclang_rt.ubsan")


def under_sanitizer() -> bool:
    """Whether this process runs with a sanitizer runtime preloaded (``LD_PRELOAD``)."""
    preload = os.environ.get("LD_PRELOAD", "")
    return any(name in preload for name in _SANITIZER_RUNTIMES)


def arm_crash_report(file: IO[str], *, tracer: Path | None = None) -> None:
    """In a child about to run code that may crash: the Python stack (faulthandler)
    and the C stack (:func:`crash_tracer`) of a fatal signal go to ``file``.

    ``file`` must stay open for the life of the process.  glibc's own fatal
    messages (``free(): invalid pointer``) go to stderr, not the terminal.
    Under a sanitizer neither handler is installed: the sanitizer's own handler
    reports the fault where it happened, with its stack (a handler in front of it
    would re-raise the signal, and the report would show the re-raise instead).
    """
    os.environ["LIBC_FATAL_STDERR_"] = "1"
    if under_sanitizer():
        if faulthandler.is_enabled():
            faulthandler.disable()
        return
    faulthandler.enable(file=file, all_threads=True)
    if tracer is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        _tracer_library(tracer).ph_install_crash_trace(file.fileno())


@functools.cache
def _tracer_library(path: Path) -> Any:
    """The helper, loaded once per process (a forked child finds it loaded already)."""
    import ctypes

    return ctypes.CDLL(str(path))


_FRAME = re.compile(
    r"^(?P<file>/[^()\[\]]*)\((?P<symbol>[^()+]*)\+(?P<offset>0x[0-9a-fA-F]+)\)\s*\[(?P<addr>0x[0-9a-fA-F]+)\]$"
)
_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line')


#: Where the Python stack of a crash stops being the test's: pytest's frames, or the isolation's own.
_MACHINERY = re.compile(r"[/\\](_pytest|pluggy|plugin_host[/\\](testing))[/\\]")
#: Modules whose frames are the interpreter's, not the plugin's: the C stack is cut at the first one.
_INTERPRETER = re.compile(r"^(libpython|python|_cffi_backend|libffi|_ctypes)")


def format_crash(text: str) -> str:
    """A crash file's contents for people.

    C frames: the helper's own frame dropped, the signal trampoline marked, each frame
    resolved to its function and line (``addr2line``, where the library has debug
    information), and the stack cut at the first frame of the interpreter.  Python frames:
    cut where pytest's frames begin.
    """
    if not text.strip():
        return ""
    lines = text.splitlines()
    frames = [m for m in map(_FRAME.match, lines) if m is not None and "plugin_host_crash_trace" not in m["file"]]
    resolved = _resolve(frames)
    out: list[str] = []
    in_python = False
    cut = False
    index = 0  # of the C frame, after the helper's own
    for line in lines:
        frame = _FRAME.match(line)
        if frame is not None:
            if "plugin_host_crash_trace" in frame["file"]:
                continue
            index += 1
            if cut:
                continue
            module = Path(frame["file"]).name
            if index == 1:
                out.append("  <signal handler called>")
                continue
            where = resolved.get((frame["file"], frame["offset"])) or frame["symbol"] or "??"
            out.append(f"  {where}  ({module}+{frame['offset']})")
            if _INTERPRETER.match(module):
                out.append("  ... (the interpreter's frames)")
                cut = True
            continue
        if line.startswith(("Fatal Python error", "Current thread", "Thread 0x")):
            in_python, cut = True, False
        py = _PY_FRAME.match(line)
        if in_python and py is not None:
            if cut:
                continue
            machinery = _MACHINERY.search(py["file"])
            if machinery is not None:
                out.append(f"  ... ({'the isolation' if machinery.group(2) else 'pytest'}'s frames)")
                cut = True
                continue
        elif not line.strip():
            cut = False
        out.append(line)
    return "\n".join(out).strip()


def _resolve(frames: list[re.Match[str]]) -> dict[tuple[str, str], str]:
    """``(file, offset) -> "function at file:line"`` for frames addr2line can resolve.

    ``frames`` are in backtrace order, the signal trampoline first: the frame after it is
    where the signal struck (its exact address), every later one a return address (one
    byte back is the call's own line).
    """
    addr2line = shutil.which("addr2line")
    by_file: dict[str, list[tuple[str, str]]] = {}
    for i, m in enumerate(frames):
        if not m["symbol"] or i == 1:
            address = int(m["offset"], 16) - (0 if i <= 1 else 1)
            by_file.setdefault(m["file"], []).append((m["offset"], hex(max(address, 0))))
    out: dict[tuple[str, str], str] = {}
    if addr2line is None:
        return out
    for file, wanted in by_file.items():
        if not os.path.isfile(file):
            continue
        try:
            proc = subprocess.run(
                [addr2line, "-a", "-f", "-i", "-C", "-e", file, *(a for _, a in wanted)],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        # -a starts each address's answer with the address; -i adds a (function, place) pair per
        # inlined level, innermost first.
        groups: list[list[str]] = []
        for line in proc.stdout.splitlines():
            if re.fullmatch(r"0x[0-9a-f]+", line):
                groups.append([])
            elif groups:
                groups[-1].append(line)
        for (offset, _), group in zip(wanted, groups, strict=False):
            levels = [_place(group[i], group[i + 1]) for i in range(0, len(group) - 1, 2) if group[i] != "??"]
            if levels:
                out[(file, offset)] = levels[0] + "".join(f" (inlined into {level})" for level in levels[1:])
    return out


def _place(function: str, location: str) -> str:
    location = re.sub(r" \(discriminator \d+\)$", "", location)
    known = not location.startswith(("??", ":")) and not location.endswith(":?")
    return f"{function} at {location}" if known else function


def sanitizer_logs(pids: Iterable[int] | None = None, *, environ: dict[str, str] | None = None) -> list[str]:
    """The sanitizer reports written so far (``log_path`` of ``ASAN_OPTIONS`` / ``UBSAN_OPTIONS``).

    :param pids: only these processes' logs (``<log_path>.<pid>``); ``None``: every log there.
    """
    env = os.environ if environ is None else environ
    wanted = None if pids is None else {str(p) for p in pids}
    reports: list[str] = []
    for variable in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        log_path = _option(env.get(variable, ""), "log_path")
        if not log_path:
            continue
        base = Path(log_path)
        if not base.parent.is_dir():
            continue
        for log in sorted(base.parent.glob(f"{base.name}.*")):
            if wanted is not None and log.suffix.lstrip(".") not in wanted:
                continue
            with contextlib.suppress(OSError):
                text = format_sanitizer_report(log.read_text(errors="replace"))
                if text and text not in reports:
                    reports.append(text)
    return reports


_SANITIZER_FRAME = re.compile(r"^\s+#\d+ 0x[0-9a-f]+")
_INTERPRETER_FRAME = re.compile(r"\b(ffi_call\w*|_cffi_backend|libffi|_ctypes|PyCFuncPtr_call)\b")


def format_sanitizer_report(text: str) -> str:
    """A sanitizer report, each stack cut after its first frame in the interpreter (the
    foreign-function call that entered the plugin) and the shadow-byte legend left out."""
    out: list[str] = []
    cut = legend = False
    for line in text.strip().splitlines():
        if line.startswith("Shadow byte legend"):
            legend = True
            out.append("(shadow byte legend omitted)")
            continue
        if legend:
            if line.startswith(("  ", "\t")):
                continue
            legend = False
        if _SANITIZER_FRAME.match(line):
            if cut:
                continue
            out.append(line)
            if _INTERPRETER_FRAME.search(line):
                out.append("    ... (the interpreter's frames)")
                cut = True
            continue
        cut = False
        out.append(line)
    return "\n".join(out).strip()


def _option(options: str, key: str) -> str:
    value = ""
    for item in re.split(r"[:\s]+", options):
        name, sep, found = item.partition("=")
        if sep and name == key:
            value = found  # the last one wins, as the sanitizers read them
    return value


def wait_for_exit(pid: int, timeout_s: float | None) -> int | None:
    """Wait for child ``pid``; its exit code (negative: the signal), or ``None`` at the timeout (still running)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    pidfd = -1
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
    try:
        delay = 0.001
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if pidfd >= 0:
                import select

                select.select([pidfd], [], [], left)
            else:  # no pidfd (an old kernel, not Linux): poll, backing off
                time.sleep(delay if left is None else min(delay, left))
                delay = min(delay * 2, 0.05)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def stop_child(pid: int) -> int | None:
    """End a child that ran out of time: SIGABRT first (its stacks go to the crash file), then SIGKILL."""
    for sig, grace in ((signal.SIGABRT, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        code = wait_for_exit(pid, grace)
        if code is not None:
            return code
    return None


def fork() -> int:
    """:func:`os.fork` with Python's buffers flushed first (so nothing is written twice) and
    without the DeprecationWarning Python 3.12+ gives for a process with threads: the child
    only runs the test and ``os._exit``\\ s."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


class PluginCrash(AssertionError):
    """Code run in a child process crashed it: a signal, an ``exit()``, a sanitizer report or a timeout.

    An ``AssertionError``, so pytest reports it as a test failure and hypothesis
    shrinks the input that caused it.  The stacks are formatted (``addr2line``)
    when first shown, not for every crash a shrinking run provokes.

    :ivar what: what was running (``"Greeter.English.greet(name='')"``).
    :ivar exit_code: the child's exit code (negative: killed by that signal; ``None``: timed out).
    :ivar signal: the signal's name (``"SIGSEGV"``), or ``None``.
    """

    def __init__(
        self,
        what: str,
        exit_code: int | None,
        report: str = "",
        *,
        timeout_s: float | None = None,
        stacks: str = "",
    ) -> None:
        found = re.search(r"\b\w*Sanitizer: [\w-]+|runtime error: [^\n]*", report)
        if exit_code is None:
            how = f"timed out after {timeout_s:g} s and was stopped"
        elif found is not None:
            how = f"failed in the child process: {found.group(0)}"
        else:
            how = f"crashed the child process: {describe_exit(exit_code)}"
        super().__init__(f"{what} {how}")
        self.what = what
        self.exit_code = exit_code
        self.timeout_s = timeout_s
        self._sanitizer = report
        self._stacks = stacks  # as the child wrote them
        self._report: str | None = None
        self.signal: str | None = None
        if exit_code is not None and exit_code < 0:
            with contextlib.suppress(ValueError):
                self.signal = signal.Signals(-exit_code).name

    @property
    def report(self) -> str:
        """The sanitizer reports and the stacks (C, then Python), formatted."""
        if self._report is None:
            parts = [self._sanitizer, format_crash(self._stacks)]
            self._report = "\n\n".join(part for part in parts if part)
        return self._report

    def __str__(self) -> str:
        head = str(self.args[0]) if self.args else self.what
        return head + (f"\n\n{self.report}" if self.report else "")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_crash, (self.what, self.exit_code, self.report, self.timeout_s))


def _rebuild_crash(what: str, exit_code: int | None, report: str, timeout_s: float | None) -> PluginCrash:
    return PluginCrash(what, exit_code, report, timeout_s=timeout_s)


PluginCrash.__module__ = "plugin_host.testing"  # where users import it from, as tracebacks show it


def _crash(what: str, exit_code: int | None, crash_file: Path, pid: int, timeout_s: float | None = None) -> PluginCrash:
    """The :class:`PluginCrash` of a dead child: its sanitizer reports and its stacks, read now (the files go)."""
    stacks = ""
    with contextlib.suppress(OSError):
        stacks = crash_file.read_text(errors="replace")
    report = "\n\n".join(sanitizer_logs([pid]))
    return PluginCrash(what, exit_code, report, timeout_s=timeout_s, stacks=stacks)


_calls = itertools.count()
_scratch_dirs: list[Path] = []


def _scratch() -> Path:
    """This process's directory for the result and crash files of :func:`call_forked`."""
    with _tracer_lock:
        if not _scratch_dirs or not _scratch_dirs[0].is_dir():
            made = Path(tempfile.mkdtemp(prefix="plugin-host-calls-"))
            atexit.register(shutil.rmtree, made, ignore_errors=True)
            _scratch_dirs[:] = [made]
        return _scratch_dirs[0]


@dataclass
class _Outcome:
    kind: str  # "ok", "raised"
    value: Any = None
    error_type: str = ""
    error_text: str = ""
    error_traceback: str = ""


def call_forked(function: Callable[[], T], *, what: str = "the call", timeout_s: float | None = None) -> T:
    """Run ``function()`` in a forked child and hand back what it returned or raised.

    The result must pickle (a value that does not comes back as its ``repr``).
    An exception comes back as itself when it pickles, else as an
    ``AssertionError`` carrying its type, message and traceback.

    :raises PluginCrash: the child died (a signal, an exit, a sanitizer report) or
        ran longer than ``timeout_s``; with the C and Python stacks.
    :raises OSError: forking is not available (:func:`can_fork`).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this machinery
    if not can_fork():
        raise OSError(f"cannot isolate {what}: this platform does not fork safely")
    tracer = crash_tracer()
    if tracer is not None:
        _tracer_library(tracer)  # loaded here once, not in every child
    number = f"{os.getpid()}-{next(_calls)}"
    result_path = _scratch() / f"result-{number}"
    crash_path = _scratch() / f"crash-{number}"
    try:
        pid = fork()
        if pid == 0:  # the child: never returns
            _child_call(function, result_path, crash_path, tracer)
        code = wait_for_exit(pid, timeout_s)
        if code is None:
            stop_child(pid)
            raise _crash(what, None, crash_path, pid, timeout_s)
        outcome: _Outcome | None = None
        with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
            outcome = pickle.loads(result_path.read_bytes())
        if code != 0 or outcome is None:
            raise _crash(what, code, crash_path, pid)
    finally:
        for path in (result_path, crash_path):
            path.unlink(missing_ok=True)
    if outcome.kind == "ok":
        value: T = outcome.value
        return value
    if isinstance(outcome.value, BaseException):
        error: BaseException = outcome.value
        error.add_note(f"(raised in the child process)\n{outcome.error_traceback}")
        raise error
    msg = f"{what} raised {outcome.error_type}: {outcome.error_text}\n\n{outcome.error_traceback}"
    raise AssertionError(msg)


def _child_call(function: Callable[[], Any], result_path: Path, crash_path: Path, tracer: Path | None) -> None:
    code = 0
    try:
        crash_file = open(crash_path, "w")  # open until the process ends
        arm_crash_report(crash_file, tracer=tracer)
        try:
            outcome = _Outcome("ok", function())
        except BaseException as e:
            outcome = _Outcome("raised", None, type(e).__qualname__, str(e), traceback.format_exc())
            with contextlib.suppress(Exception):
                pickle.loads(pickle.dumps(e))  # it must also come back
                outcome.value = e
        try:
            data = pickle.dumps(outcome)
        except Exception:
            outcome.value = repr(outcome.value)
            data = pickle.dumps(outcome)
        result_path.write_bytes(data)
    except BaseException:
        code = 70  # EX_SOFTWARE: the child's own machinery failed
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        os._exit(code)
