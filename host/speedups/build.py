"""cffi build script of ``plugin_host.loading._speedups`` (API mode, compiled at install time).

``setup.py`` hands it to cffi (``cffi_modules``); the extension is optional:
without a C compiler the install still succeeds and the host runs the same
checks in pure Python (``plugin_host.loading._accel`` says which is in use).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cffi

# Paths relative to the project root, where setup.py runs (setuptools wants relative sources).
ROOT = Path(__file__).resolve().parents[2]
HERE = "host/speedups"
INTERFACE_INCLUDE = "interface/plugin_interface/include"

HEADER = Path(__file__).resolve().with_name("speedups.h")
#: The C files of the extension (all in this directory).
SOURCES = ("speedups.c", "load.c", "unload.c", "exports.c")


def cdef_from_header(text: str) -> str:
    """The declarations cffi exposes to Python, taken from speedups.h itself.

    Every ``#define PH_...`` becomes ``#define PH_... ...`` (cffi reads the
    value from the compiled module) and every ``ph_...`` prototype is copied,
    so the header is the one source of both: a prototype changed there cannot
    disagree with what Python calls.
    """
    defines = re.findall(r"^#define (PH_[A-Z0-9_]+) ", text, re.MULTILINE)
    prototypes = re.findall(r"^(?:int|void|size_t) ph_[a-z_]+\([^;]*\);", text, re.MULTILINE)
    return "\n".join([*(f"#define {name} ..." for name in defines), *prototypes]) + "\n"


CDEF = cdef_from_header(HEADER.read_text())


MODULE = "plugin_host.loading._speedups"


def make_builder(root: str = "", module: str = MODULE) -> cffi.FFI:
    """The builder, with paths under ``root`` (relative to the project root when empty).

    :param module: the extension's name (the mutation tests build changed copies under another one).
    """
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(
        module,
        '#include "speedups.h"',
        sources=[os.path.join(root, HERE, name) for name in SOURCES],
        include_dirs=[os.path.join(root, HERE), os.path.join(root, INTERFACE_INCLUDE)],
        optional=True,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":  # a development build: python host/speedups/build.py (pip install -e . does the same)
    built = make_builder(str(ROOT)).compile(tmpdir=str(ROOT / "build" / "speedups"), verbose=True)
    print(f"built {built}; copy it into host/plugin_host/loading/ to use it in place")
