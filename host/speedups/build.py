"""cffi build script of ``plugin_host._speedups`` (API mode, compiled at install time).

``setup.py`` hands it to cffi (``cffi_modules``); the extension is optional:
without a C compiler the install still succeeds and the host runs the same
checks in pure Python (``plugin_host._speedups_loader`` says which is in use).
"""

from __future__ import annotations

import os
from pathlib import Path

import cffi

# Paths relative to the project root, where setup.py runs (setuptools wants relative sources).
ROOT = Path(__file__).resolve().parents[2]
HERE = "host/speedups"
INTERFACE_INCLUDE = "interface/plugin_interface/include"

# The declarations cffi exposes to Python; the compiler checks them against
# speedups.h when it builds the generated module.
CDEF = """
typedef struct PluginRegistration PluginRegistration;
typedef struct PluginRegistrationArray PluginRegistrationArray;
#define PH_PASS ...
#define PH_FAIL ...
#define PH_UNSUPPORTED ...
#define PH_DESCRIPTOR ...
#define PH_RECORD_WORDS ...
#define PH_HEADER_WORDS ...
int ph_precheck_elf(int fd, const unsigned char *data, uint64_t size, size_t head_len, int host_class,
                    int host_order, int host_machine);
int ph_precheck_path(const char *path, size_t head_len, int host_class, int host_order, int host_machine,
                     int64_t uid);
void ph_precheck_paths(const char *paths, size_t n, size_t head_len, int host_class, int host_order,
                       int host_machine, int64_t uid, unsigned char *verdicts);
int ph_register_all(uintptr_t descriptor, const char *expected, size_t expected_len, uintptr_t aggregate,
                    size_t max_len, const char *trait_name, uint32_t version, uint32_t vtable_size, size_t usable,
                    uintptr_t *out, size_t out_words, char *names, size_t names_len);
"""


def make_builder(root: str = "") -> cffi.FFI:
    """The builder, with paths under ``root`` (relative to the project root when empty)."""
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "plugin_host._speedups",
        '#include "speedups.h"',
        sources=[os.path.join(root, HERE, "speedups.c")],
        include_dirs=[os.path.join(root, HERE), os.path.join(root, INTERFACE_INCLUDE)],
        optional=True,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":  # a development build: python host/speedups/build.py (pip install -e . does the same)
    built = make_builder(str(ROOT)).compile(tmpdir=str(ROOT / "build" / "speedups"), verbose=True)
    print(f"built {built}; copy it into host/plugin_host/ to use it in place")
