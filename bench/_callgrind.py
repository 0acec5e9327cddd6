"""Instructions per operation with callgrind, for the benches' ``--instructions``.

Each bench runs one side alone in a child (``SCRIPT --child WORK CASE SIDE N``)
under ``valgrind --tool=callgrind`` at two lengths, and the difference of the
two totals over the difference of the lengths is what one operation costs
(start-up, imports and set-up cancel out).  Callgrind's counts repeat exactly
where timings on a shared machine do not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def instructions_per_op(script: str, work: Path, case: str, side: str, short: int, long: int) -> float:
    """Instructions per operation of ``case``/``side``: callgrind totals of ``short`` and ``long`` operations,
    differenced."""
    totals = []
    for n in (short, long):
        out = work / f"callgrind.{os.getpid()}.out"
        command = [sys.executable, script, "--child", str(work), case, side, str(n)]
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            capture_output=True,
            text=True,
            check=True,
        )
        out.unlink(missing_ok=True)
        match = re.search(r"refs:\s+([\d,]+)", proc.stderr)
        assert match, proc.stderr
        totals.append(int(match.group(1).replace(",", "")))
    return (totals[1] - totals[0]) / (long - short)
