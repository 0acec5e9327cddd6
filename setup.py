"""Everything but the optional C extension is declared in pyproject.toml.

``plugin_host.loading._speedups`` (host/speedups) is built with cffi's API mode.  It
is optional: where no C compiler is available the build prints a warning and
the install goes on, and the host runs the same checks in pure Python.
"""

from setuptools import setup

setup(cffi_modules=["host/speedups/build.py:ffibuilder"])
