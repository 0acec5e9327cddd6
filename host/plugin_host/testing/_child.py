"""How isolated tests run, and what a child process that runs one knows about itself (kept
tiny: the pytest plugin imports it at start-up)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Any

import pytest

__all__ = ["CHILD", "ChildState", "IsolationSettings"]


@dataclass
class IsolationSettings:
    """How isolated tests run.

    :ivar start_method: ``"fork"`` or ``"spawn"``.
    :ivar timeout_s: a child running longer is stopped (``None``: no limit).
    :ivar sanitizers: the sanitizers plugins are built with (their runtime is preloaded).
    :ivar forwarded: options passed on to a spawned child (plugin options, ``-p`` plugins, ...).
    """

    start_method: str
    timeout_s: float | None
    sanitizers: tuple[str, ...] = ()
    forwarded: list[str] = field(default_factory=list)


@dataclass
class ChildState:
    """In a child process: where its progress goes (one JSON record a line)."""

    progress: IO[str]

    def write(self, record: dict[str, Any]) -> None:
        self.progress.write(json.dumps(record, default=repr) + "\n")
        self.progress.flush()


#: Set on the config of a child process (fork or spawn): the item runs there, not again in a child.
CHILD = pytest.StashKey[ChildState]()
