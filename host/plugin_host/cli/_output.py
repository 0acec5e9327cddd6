"""What every sub-command shares: exit statuses, a plain-text table, a stdout that cannot fail on a path."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator, Sequence

__all__ = ["EXIT_OK", "EXIT_PLUGIN_ERROR", "EXIT_USAGE", "table", "tolerant_stdout"]

EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_USAGE = 0, 1, 2


@contextlib.contextmanager
def tolerant_stdout() -> Iterator[None]:
    """Make a strict stdout escape what it cannot encode, as stderr always does.

    A file name need not be valid in the locale's encoding: Python spells its
    undecodable bytes as surrogates (``caf\udce9``), which a strict UTF-8
    stdout (e.g. under ``en_US.UTF-8``) refuses with :class:`UnicodeEncodeError`.
    Inside the block they print backslash-escaped; a stdout already set to
    another handler (``surrogateescape`` under the C locale) is left alone.
    """
    stream = sys.stdout
    if not isinstance(stream, io.TextIOWrapper) or stream.errors != "strict":
        yield
        return
    stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        if not stream.closed:
            stream.reconfigure(errors="strict")


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """``rows`` under ``header``, columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)
