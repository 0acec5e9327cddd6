"""plugin_annotations: what a plugin author writes against.

- ``plugin_annotations.h``: the ``PLUGIN_IMPL`` / ``PLUGIN_AGGREGATES`` macros
  (C and C++; ``plugin_annotations.hpp`` adds C++ classes as implementations)
  (:func:`get_include`, :func:`get_include_dirs`, or
  ``python -m plugin_annotations --cflags``);
- :func:`generate_trait_header`: a trait's C header from its Python declaration;
- :func:`generate_rust_module`: the same traits as a dependency-free Rust module;
- :func:`build_plugins`: compile plugin libraries with the platform's naming,
  in the order of their build graph (:func:`build_order`).
"""

from __future__ import annotations

from ._builder import (
    DEFAULT_CFLAGS,
    DEFAULT_CXXFLAGS,
    DEFAULT_RUSTFLAGS,
    LANGUAGES,
    BuildError,
    BuildResult,
    CompilerNotFoundError,
    DependencyCycleError,
    DependencyError,
    PluginSpec,
    PluginSpecError,
    build_order,
    build_plugins,
    discover_plugins,
    get_include,
    get_include_dirs,
    language_of,
    load_plugin_spec,
)
from ._headers import generate_trait_header, write_trait_headers
from ._rust import generate_rust_module, write_rust_module

__all__ = [
    "DEFAULT_CFLAGS",
    "DEFAULT_CXXFLAGS",
    "DEFAULT_RUSTFLAGS",
    "LANGUAGES",
    "BuildError",
    "BuildResult",
    "CompilerNotFoundError",
    "DependencyCycleError",
    "DependencyError",
    "PluginSpec",
    "PluginSpecError",
    "build_order",
    "build_plugins",
    "discover_plugins",
    "generate_rust_module",
    "generate_trait_header",
    "get_include",
    "get_include_dirs",
    "language_of",
    "load_plugin_spec",
    "write_rust_module",
    "write_trait_headers",
]
