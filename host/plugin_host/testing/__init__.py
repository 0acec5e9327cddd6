"""plugin_host.testing: test native plugins from Python, with pytest and Hypothesis.

The pytest plugin (:mod:`plugin_host.testing.pytest_plugin`, registered under
the ``pytest11`` entry point) gives the fixtures ``plugin_builder`` and
``plugin_manager``, the marker ``@pytest.mark.isolated`` and the
``--plugin-isolate`` / ``--plugin-sanitize`` options.  The pieces behind them
are usable on their own:

- :class:`PluginBuilder`: build C, C++ or Rust plugins from text, a file or a
  plugin directory, once per content;
- :class:`CheckedPluginManager`: a manager that says what a test left behind;
- :func:`run_isolated`, :func:`call_forked`, :class:`PluginCrash`: run code
  that may crash in a child process;
- :func:`mapped_paths`: the files mapped into this process;
- :func:`strategies_for`, :func:`strategy_for`: Hypothesis strategies from a
  trait declaration; :func:`fuzz_proxy`: fuzz every method of a proxy, each
  call isolated (Hypothesis: ``pip install 'plugin-host[testing]'``).

Names are imported on first use, so importing the pytest plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._builder import PluginBuilder
    from ._fuzz import fuzz_proxy
    from ._leaks import CheckedPluginManager, ProcessSnapshot, leaked_threads
    from ._process import PluginCrash, call_forked, mapped_paths, run_isolated
    from ._strategies import Returns, strategies_for, strategy_for

__all__ = [
    "CheckedPluginManager",
    "PluginBuilder",
    "PluginCrash",
    "ProcessSnapshot",
    "Returns",
    "call_forked",
    "fuzz_proxy",
    "leaked_threads",
    "mapped_paths",
    "run_isolated",
    "strategies_for",
    "strategy_for",
]

_HOMES = {
    "PluginBuilder": "._builder",
    "fuzz_proxy": "._fuzz",
    "CheckedPluginManager": "._leaks",
    "ProcessSnapshot": "._leaks",
    "leaked_threads": "._leaks",
    "PluginCrash": "._process",
    "call_forked": "._process",
    "mapped_paths": "._process",
    "run_isolated": "._process",
    "Returns": "._strategies",
    "strategies_for": "._strategies",
    "strategy_for": "._strategies",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'plugin_host.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
