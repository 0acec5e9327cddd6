"""The version of plugin-host: this is its one source (``pyproject.toml`` reads it, ``dynamic = ["version"]``).

Read from here rather than through :mod:`importlib.metadata`, whose import
alone costs ``plugin-host --version`` more than the rest of its start-up.
"""

__version__ = "0.1.0"
