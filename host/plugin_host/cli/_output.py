"""What every sub-command shares: exit statuses, a path check, a plain-text table, a stdout that cannot fail."""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator, Sequence

__all__ = [
    "ABI_HELP",
    "EXIT_BROKEN_PIPE",
    "EXIT_OK",
    "EXIT_PLUGIN_ERROR",
    "EXIT_USAGE",
    "discard_output",
    "missing_path",
    "table",
    "tolerant_stdout",
]

EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_USAGE = 0, 1, 2
#: The ``abi`` line of ``plugin-host --help`` (the full parser and the stand-in share it).
ABI_HELP = "verify exported ABIs without loading (check, dump, diff, contract)"
#: The reader of our output went away (``plugin-host list d | head -1``): stop quietly with the
#: status CPython itself uses on EPIPE, as the ``signal`` module's "Note on SIGPIPE" recommends.
EXIT_BROKEN_PIPE = 1


def _escape_or_restore(error: UnicodeError) -> tuple[str | bytes, int]:
    """``surrogateescape``, falling back to ``backslashreplace`` for what it cannot write."""
    try:
        return _SURROGATEESCAPE(error)
    except UnicodeError:
        return _BACKSLASHREPLACE(error)


_SURROGATEESCAPE = codecs.lookup_error("surrogateescape")
_BACKSLASHREPLACE = codecs.lookup_error("backslashreplace")
_ESCAPE_OR_RESTORE = "plugin_host.surrogateescape_or_backslashreplace"
codecs.register_error(_ESCAPE_OR_RESTORE, _escape_or_restore)
#: What :func:`tolerant_stdout` replaces a stdout's error handler with.
_TOLERANT = {"strict": "backslashreplace", "surrogateescape": _ESCAPE_OR_RESTORE}


@contextlib.contextmanager
def tolerant_stdout() -> Iterator[None]:
    """Make stdout write what it cannot encode instead of raising, as stderr always does.

    A file name need not be valid in the locale's encoding: Python spells its
    undecodable bytes as surrogates (``caf\\udce9``), which a strict UTF-8
    stdout (e.g. under ``en_US.UTF-8``) refuses with :class:`UnicodeEncodeError`.
    Inside the block they print backslash-escaped.  A ``surrogateescape``
    stdout (the C locale) keeps writing such bytes back as they were, and
    escapes the lone surrogates it cannot write (a JSON dump can hold any).
    """
    stream = sys.stdout
    if not isinstance(stream, io.TextIOWrapper) or stream.errors not in _TOLERANT:
        yield
        return
    before = stream.errors
    stream.reconfigure(errors=_TOLERANT[before])
    try:
        yield
    finally:
        if not stream.closed:
            stream.reconfigure(errors=before)


def discard_output() -> None:
    """After a broken pipe: point standard output and error at the null device.

    The interpreter flushes both at exit; what is still buffered must not
    fail again there (the ``signal`` module documentation's recipe).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # not a real file (captured output)
                continue
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def missing_path(raw: str) -> str | None:
    """The usage error for a path that names nothing, or ``None`` if something is there.

    Unlike :meth:`pathlib.Path.exists`, a name too long or a permission
    problem is an answer (the message), not an exception.
    """
    try:
        os.stat(raw)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"{raw}: no such file or directory"
        return f"{raw}: {e.strerror or e}"
    return None


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """``rows`` under ``header``, columns padded to their widest cell."""
    cells = [header, *rows]
    widths = [max(map(len, column)) for column in zip(*cells, strict=True)]
    line = "  ".join("-" * w for w in widths)
    pad = "  ".join(f"{{:<{w}}}" for w in widths).format  # one call per row (abi check prints hundreds)
    out = [pad(*r).rstrip() for r in cells]
    out.insert(1, line)
    return "\n".join(out)
