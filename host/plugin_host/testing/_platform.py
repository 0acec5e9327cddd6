"""Which way of isolating works here (kept apart: the pytest plugin asks at start-up)."""

from __future__ import annotations

import os
import sys

__all__ = ["can_fork"]


def can_fork() -> bool:
    """Whether forking is the way to isolate here: POSIX, but not macOS (whose system
    libraries are not fork-safe; :mod:`multiprocessing` spawns there too)."""
    return hasattr(os, "fork") and sys.platform != "darwin"
