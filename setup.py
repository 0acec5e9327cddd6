"""Everything but the optional C extensions is declared in pyproject.toml.

All three extensions are optional: where no C compiler is available (or the
platform's calling convention is not one the call engine knows) the build
prints a warning and the install goes on, and the host does the same work in
pure Python.

- ``plugin_host.loading._speedups`` (host/speedups/speedups.c), the load
  checks, is built with cffi's API mode.
- ``plugin_host.loading._callengine`` (host/speedups/callengine.c), the
  compiled call path of proxies and ``DynamicModule`` functions, is a CPython
  extension on the limited API (abi3) of Python 3.11.
- ``plugin_host.formats._elfread`` (host/speedups/elfread.c), the ELF export
  table ``abi check`` and host-owned loads read, is one too.
"""

from setuptools import Extension, setup

setup(
    cffi_modules=["host/speedups/build.py:ffibuilder"],
    ext_modules=[
        Extension(
            "plugin_host.loading._callengine",
            sources=["host/speedups/callengine.c"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            extra_compile_args=["-std=c11"],
            py_limited_api=True,
            optional=True,
        ),
        Extension(
            "plugin_host.formats._elfread",
            sources=["host/speedups/elfread.c"],
            include_dirs=["host/speedups", "interface/plugin_interface/include"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            extra_compile_args=["-std=c11"],
            py_limited_api=True,
            optional=True,
        ),
    ],
)
