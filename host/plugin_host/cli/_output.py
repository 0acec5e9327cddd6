"""What every sub-command shares: exit statuses and a plain-text table."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["EXIT_OK", "EXIT_PLUGIN_ERROR", "EXIT_USAGE", "table"]

EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_USAGE = 0, 1, 2


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """``rows`` under ``header``, columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)
