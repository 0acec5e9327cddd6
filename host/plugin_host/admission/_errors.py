"""The errors of the isolated probe: a child process saw the library fail fatally, or did before."""

from __future__ import annotations

import os

from plugin_interface import ErrorReason, PluginError

__all__ = [
    "BlockedPluginError",
    "ProbeCrashedError",
    "ProbeError",
    "ProbeExitedError",
    "ProbeProtocolError",
    "ProbeTimeoutError",
]


class ProbeError(PluginError):
    """The isolated probe (a child process) saw the library fail fatally.

    The host process did not load the library.  The failure is recorded in
    the blocklist until the file changes.

    :ivar step: what the child was doing (``"dlopen"`` = constructors, or a symbol).
    """

    def __init__(self, path: str | os.PathLike[str], what: str, step: str) -> None:
        symbol = step if step.startswith("plugin_") else None
        msg = f"{os.fspath(path)}: isolated probe: {what} during {step}; not loaded into the host"
        super().__init__(msg, path=path, symbol=symbol)
        self.step = step


class ProbeCrashedError(ProbeError):
    """The probe child was killed by a signal (SIGSEGV, SIGBUS, SIGABRT, ...).

    :ivar signal: the signal number.
    :ivar signal_name: its name (``"SIGSEGV"``).
    """

    REASON = ErrorReason.PROBE_CRASHED

    def __init__(self, path: str | os.PathLike[str], signal: int, signal_name: str, step: str) -> None:
        super().__init__(path, f"crashed with {signal_name} (signal {signal})", step)
        self.signal = signal
        self.signal_name = signal_name


class ProbeExitedError(ProbeError):
    """The library ended the probe child with ``exit()`` before it reported.

    :ivar exit_code: the child's exit status.
    """

    REASON = ErrorReason.PROBE_EXITED

    def __init__(self, path: str | os.PathLike[str], exit_code: int, step: str) -> None:
        super().__init__(path, f"the process exited with status {exit_code}", step)
        self.exit_code = exit_code


class ProbeTimeoutError(ProbeError):
    """The probe child did not finish in time (a constructor or maker hangs).

    :ivar timeout_s: the time limit, in seconds.
    """

    REASON = ErrorReason.PROBE_TIMEOUT

    def __init__(self, path: str | os.PathLike[str], timeout_s: float, step: str) -> None:
        super().__init__(path, f"no answer within {timeout_s:g} s (killed)", step)
        self.timeout_s = timeout_s


class ProbeProtocolError(ProbeError):
    """The probe child's report broke the protocol (version, size cap, framing).

    :ivar detail: what was wrong.
    """

    REASON = ErrorReason.PROBE_PROTOCOL

    def __init__(self, path: str | os.PathLike[str], detail: str, step: str) -> None:
        super().__init__(path, f"bad report: {detail}", step)
        self.detail = detail


class BlockedPluginError(PluginError):
    """The file failed an isolated probe before and has not changed since.

    :ivar detail: the recorded failure.
    :ivar sha256: the content hash the failure was recorded for.
    """

    REASON = ErrorReason.BLOCKED

    def __init__(self, path: str | os.PathLike[str], detail: str, sha256: str) -> None:
        msg = (
            f"{os.fspath(path)}: blocked: an isolated probe of this exact file (sha256 {sha256[:12]}...) "
            f"failed: {detail}; it is retried once the file changes"
        )
        super().__init__(msg, path=path)
        self.detail = detail
        self.sha256 = sha256
