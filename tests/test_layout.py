"""Every ctypes mirror has its C struct's exact size and field offsets on this
platform, as the real C compiler lays them out (cffi API mode compiles the
headers; ``...;`` in a cdef makes cffi take the layout from the compiler)."""

from __future__ import annotations

import ctypes
import importlib.util
from types import ModuleType
from typing import Any

import cffi
import pytest
from plugin_annotations import get_include_dirs
from plugin_interface import (
    ABI_VERSION,
    AbiDescriptor,
    PluginAbiDescriptor,
    PluginBytes,
    PluginRegistration,
    PluginRegistrationArray,
    PluginRegistrationFactory,
    PluginTrait,
    vtable_struct,
)
from plugin_interface._descriptor import DESCRIPTOR_HEAD_SIZE, registration_size_for

TRAITS = [t.spec for t in PluginTrait]
MIRRORS: dict[str, type[ctypes.Structure]] = {
    "PluginRegistration": PluginRegistration,
    "PluginRegistrationFactory": PluginRegistrationFactory,
    "PluginRegistrationArray": PluginRegistrationArray,
    "PluginAbiDescriptor": PluginAbiDescriptor,
    "PluginBytes": PluginBytes,
    **{t.vtable_name: vtable_struct(t) for t in TRAITS},
}


def _cdef() -> str:
    out = [
        "#define PLUGIN_ABI_VERSION ...",
        """typedef struct { uint32_t struct_size; uint32_t abi_version; const char *trait_name;
            uint32_t trait_version; uint32_t vtable_size; const char *type_name; void *instance;
            const void *vtable; void (*free_memory)(void *); ...; } PluginRegistration;""",
        "typedef struct { void *(*maker)(void); void (*unmaker)(void *); ...; } PluginRegistrationFactory;",
        """typedef struct { void **registrations; size_t len; const PluginRegistrationFactory *factories;
            ...; } PluginRegistrationArray;""",
        """typedef struct { uint32_t struct_size; uint32_t abi_version; uint32_t trait_version;
            uint32_t registration_size; uint32_t vtable_size; uint32_t method_count; uint64_t fingerprint;
            ...; } PluginAbiDescriptor;""",
        "typedef struct { uint8_t *data; size_t len; ...; } PluginBytes;",
    ]
    for t in TRAITS:
        methods = " ".join(f"{m.cffi_type.replace('(*)', f'(*{m.name})', 1)};" for m in t.methods)
        out += [
            f"typedef struct {{ size_t size; {methods} ...; }} {t.vtable_name};",
            f"typedef struct {{ PluginAbiDescriptor header; uint64_t method_fingerprints[{len(t.methods)}]; ...; }}"
            f" {t.name}AbiDescriptor;",
            f"#define PLUGIN_TRAIT_VERSION_{t.name} ...",
            f"#define PLUGIN_TRAIT_METHOD_COUNT_{t.name} ...",
            f"#define PLUGIN_TRAIT_FINGERPRINT_{t.name} ...",
        ]
    return "\n".join(out)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The headers compiled by the real C compiler into a cffi extension."""
    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    includes = '#include "plugin_interface.h"\n' + "".join(f'#include "{t.header_name}"\n' for t in TRAITS)
    ffi.set_source("_plugin_layout", includes, include_dirs=get_include_dirs(), extra_compile_args=["-std=c11"])
    out = tmp_path_factory.mktemp("layout")
    built = ffi.compile(tmpdir=str(out))
    spec = importlib.util.spec_from_file_location("_plugin_layout", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", list(MIRRORS))
def test_mirror_matches_the_c_struct(compiled: Any, name: str) -> None:
    ffi, mirror = compiled.ffi, MIRRORS[name]
    assert ctypes.sizeof(mirror) == ffi.sizeof(name), f"sizeof({name})"
    assert ctypes.alignment(mirror) == ffi.alignof(name), f"alignof({name})"
    c_fields = [f for f, _ in ffi.typeof(name).fields]
    assert [f for f, *_ in mirror._fields_] == c_fields, f"{name}: field names and order"
    for field in c_fields:
        assert getattr(mirror, field).offset == ffi.offsetof(name, field), f"offsetof({name}, {field})"


@pytest.mark.parametrize("trait", TRAITS, ids=lambda t: t.name)
def test_descriptor_sizes_and_macros(compiled: Any, trait: Any) -> None:
    ffi, lib = compiled.ffi, compiled.lib
    expected = AbiDescriptor.for_trait(trait)
    assert ffi.sizeof(f"{trait.name}AbiDescriptor") == expected.struct_size
    assert ffi.offsetof(f"{trait.name}AbiDescriptor", "method_fingerprints") == DESCRIPTOR_HEAD_SIZE
    assert ffi.sizeof(trait.vtable_name) == expected.vtable_size
    assert getattr(lib, f"PLUGIN_TRAIT_VERSION_{trait.name}") == trait.version
    assert getattr(lib, f"PLUGIN_TRAIT_METHOD_COUNT_{trait.name}") == len(trait.methods)
    assert getattr(lib, f"PLUGIN_TRAIT_FINGERPRINT_{trait.name}") == trait.fingerprint


def test_abi_constants(compiled: Any) -> None:
    ffi, lib = compiled.ffi, compiled.lib
    assert lib.PLUGIN_ABI_VERSION == ABI_VERSION
    assert ffi.sizeof("PluginAbiDescriptor") == DESCRIPTOR_HEAD_SIZE
    # The size computed for libraries of another word size agrees with the compiler on this one.
    assert registration_size_for(ffi.sizeof("void *")) == ffi.sizeof("PluginRegistration")


def test_registration_size_for_32_bit_targets() -> None:
    # i386 / armv7: 9 fields of 4 bytes, no padding.
    assert registration_size_for(4) == 36
