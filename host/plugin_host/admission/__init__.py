"""The admission layer: policy -> pre-check -> hash -> probe, then open.

:class:`Admission` decides whether a file may be opened and opens what it
admitted; the probe (:mod:`._probe`) runs the registry pipeline in a child
process first, so it sits above :mod:`plugin_host.registry`.
"""

from __future__ import annotations

from ._admission import Admission, AdmittedImage, ProbeMode
from ._errors import (
    BlockedPluginError,
    ProbeCrashedError,
    ProbeError,
    ProbeExitedError,
    ProbeProtocolError,
    ProbeTimeoutError,
)
from ._probe import (
    DEFAULT_PROBE_TIMEOUT_S,
    ProbeCache,
    ProbeKey,
    Prober,
    ProbeResult,
    ProbeStatus,
    default_cache_dir,
    probe_library,
)

__all__ = [
    "DEFAULT_PROBE_TIMEOUT_S",
    "AdmittedImage",
    "Admission",
    "BlockedPluginError",
    "ProbeCrashedError",
    "ProbeError",
    "ProbeExitedError",
    "ProbeProtocolError",
    "ProbeTimeoutError",
    "ProbeMode",
    "ProbeCache",
    "ProbeKey",
    "ProbeResult",
    "ProbeStatus",
    "Prober",
    "default_cache_dir",
    "probe_library",
]
