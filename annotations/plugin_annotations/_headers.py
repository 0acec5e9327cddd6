"""Generate a trait's C header from its single Python declaration."""

from __future__ import annotations

import importlib
import os
import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

from plugin_interface import (
    PluginTrait,
    StructSpec,
    TraitSpec,
    TypeKind,
    encode_declaration,
    get_include,
    resolve_trait,
)
from plugin_interface._traits import TraitLike

__all__ = ["generate_trait_header", "regenerate_command", "rust_traits_of", "traits_of", "write_trait_headers"]


def _comment(text: str, indent: str = "") -> list[str]:
    if not text:
        return []
    lines = textwrap.wrap(" ".join(text.split()), 74 - len(indent))
    if len(lines) == 1:
        return [f"{indent}/* {lines[0]} */"]
    return [f"{indent}/* {lines[0]}"] + [f"{indent} * {line}" for line in lines[1:]] + [f"{indent} */"]


def _structs_of(spec: TraitSpec) -> list[StructSpec]:
    """The structs the trait's methods use, each once, nested ones before those that hold them."""
    out: list[StructSpec] = []
    for m in spec.methods:
        for ctype in (m.returns, *(p.ctype for p in m.params)):
            if ctype.struct is not None:
                out += [s for s in ctype.struct.nested() if s not in out]
    return out


def _c_string(data: bytes) -> str:
    """``data`` as a C string literal (printable ASCII kept, the rest escaped)."""
    out = []
    for byte in data:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def regenerate_command(spec: TraitSpec, directory: str | os.PathLike[str] | None = None) -> str:
    """The command that writes ``spec``'s header again (what the header's first comment says)."""
    if not spec.source or spec.source.startswith("plugin_interface."):
        return "python -m plugin_annotations headers"  # the built-in traits, into plugin_interface's include dir
    target = os.fspath(directory) if directory is not None else "DIR"
    return f"python -m plugin_annotations headers {spec.source} -o {target}"


def generate_trait_header(trait: TraitLike, directory: str | os.PathLike[str] | None = None) -> str:
    """The C header text for ``trait``: version macros and the vtable struct.

    The output is deterministic, so a committed header can be checked for
    staleness by comparing it with a fresh generation.

    :param directory: where the header goes (named in the regeneration command it carries).
    """
    spec: TraitSpec = resolve_trait(trait)
    guard = f"PLUGIN_TRAIT_{spec.name.upper()}_H"
    out = [
        f"/* {spec.header_name} -- GENERATED from the Python declaration of trait {spec.name} v{spec.version}",
        f" * ({spec.source or 'built from data'}); do not edit: regenerate with",
        f" * `{regenerate_command(spec, directory)}`.",
        " */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        '#include "plugin_interface.h"',
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
    ]
    out += _comment(spec.doc)
    structs = _structs_of(spec)
    for struct in structs:
        out += [f"#ifndef PLUGIN_STRUCT_{struct.name}_DEFINED", f"#define PLUGIN_STRUCT_{struct.name}_DEFINED"]
        out += [*struct.c_definition(), "#endif", ""]
    out += [
        f"#define PLUGIN_TRAIT_VERSION_{spec.name} {spec.version}u",
        f"#define PLUGIN_TRAIT_FINGERPRINT_{spec.name} UINT64_C(0x{spec.fingerprint:016x})",
        "",
        f"typedef struct {spec.vtable_name} {{",
        f"    size_t size; /* sizeof({spec.vtable_name}) as built by the plugin */",
    ]
    for m in spec.methods:
        out += _comment(m.doc, "    ")
        params = ", ".join(m.c_params)
        ret = m.returns.c_return or "void"
        sep = "" if ret.endswith("*") else " "
        out.append(f"    {ret}{sep}(*{m.name})({params});")
    fingerprints = ", \\\n    ".join(f"UINT64_C(0x{fp:016x})" for fp in spec.method_fingerprints)
    out += [
        f"}} {spec.vtable_name};",
        "",
        "/* One fingerprint per vtable method, in order: what lets a host accept a",
        " * plugin built against a later version that only appended methods. */",
        f"#define PLUGIN_TRAIT_METHOD_COUNT_{spec.name} {len(spec.methods)}u",
        f"#define PLUGIN_TRAIT_METHOD_FINGERPRINTS_{spec.name} \\",
        f"    {fingerprints}",
        "",
        "/* The trait's declaration as plugin_trait_declaration_<T>_v1 embeds it (format:",
        ' * plugin_interface/_declaration.py, and the README\'s "Self-describing plugins"). */',
        f"#define PLUGIN_TRAIT_DECLARATION_{spec.name} \\",
        f"    {_c_string(encode_declaration(spec))}",
        "",
        f"/* The type of plugin_abi_descriptor_{spec.name}_v1 (see PluginAbiDescriptor). */",
        f"typedef struct {spec.name}AbiDescriptor {{",
        "    PluginAbiDescriptor header;",
        f"    uint64_t method_fingerprints[{len(spec.methods)}];",
        f"}} {spec.name}AbiDescriptor;",
        "",
        "#ifdef __cplusplus",
        "}",
        "",
        *_cplusplus_helpers(spec),
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(out)


def _cplusplus_helpers(spec: TraitSpec) -> list[str]:
    """The C++ part of a trait header: the methods without ``size``, and the vtable made from them.

    PLUGIN_IMPL in a C++ unit initialises ``<T>Methods`` (designated in C++20,
    in order in C++17) and converts it with ``plugin_vtable_<T>``, a
    ``constexpr`` function, so the vtable is still a constant.
    """
    fields = []
    for m in spec.methods:
        ret = m.returns.c_return or "void"
        sep = "" if ret.endswith("*") else " "
        fields.append(f"    {ret}{sep}(*{m.name})({', '.join(m.c_params)});")
    members = ", ".join(f"m.{m.name}" for m in spec.methods)
    entries = []
    for m in spec.methods:
        ret = m.returns.c_return or "void"
        args = [_c_name(decl) for decl in m.c_params[1:]]
        if m.returns.kind is TypeKind.STATUS:
            args = args[:-1]  # char **error: the class reports errors by throwing
        entries.append(
            f"    X(ctx, {m.name}, {_CXX_KINDS.get(m.returns.kind, 'SCALAR')}, {ret}, "
            f"({', '.join(m.c_params)}), ({', '.join(args)}))"
        )
    return [
        f"/* C++: {spec.vtable_name} without its size, for PLUGIN_IMPL (see plugin_annotations.h). */",
        f"struct {spec.name}Methods {{",
        *fields,
        "};",
        "",
        f"static inline constexpr {spec.vtable_name} plugin_vtable_{spec.name}({spec.name}Methods m) {{",
        f"    return {spec.vtable_name}{{sizeof({spec.vtable_name}), {members}}};",
        "}",
        "",
        "/* C++: every method as X(ctx, name, result kind, C return type, (C parameters), (arguments)),",
        " * in vtable order; PLUGIN_CLASS (plugin_annotations.hpp) makes its thunks from it. */",
        f"#define PLUGIN_TRAIT_METHODS_{spec.name}(X, ctx) \\",
        " \\\n".join(entries),
    ]


#: The result kinds PLUGIN_CLASS's thunks know (plugin_annotations.hpp: plugin::detail::call_<KIND>);
#: any other (a Handle's ``void *``) is passed on as a scalar, 0 (NULL) when the method throws.
_CXX_KINDS = {
    TypeKind.SCALAR: "SCALAR",
    TypeKind.OWNEDSTR: "OWNEDSTR",
    TypeKind.OWNEDBYTES: "OWNEDBYTES",
    TypeKind.STATUS: "STATUS",
    TypeKind.VOID: "VOID",
}


def _c_name(declaration: str) -> str:
    """The parameter name a C declaration ends with (``const char *name`` -> ``name``)."""
    return re.split(r"[^A-Za-z0-9_]", declaration)[-1]


def write_trait_headers(
    directory: str | os.PathLike[str] | None = None,
    traits: Iterable[TraitLike] | None = None,
    *,
    check: bool = False,
) -> list[Path]:
    """Write (or with ``check``, compare) the headers of ``traits``.

    :param directory: where to write; default: ``plugin_interface``'s include dir.
    :param traits: default: every built-in :class:`PluginTrait`.
    :param check: do not write; only report which headers differ.
    :returns: the headers that were written (or, with ``check``, are stale).
    """
    target = Path(directory) if directory is not None else Path(get_include())
    changed: list[Path] = []
    for trait in traits if traits is not None else list(PluginTrait):
        spec = resolve_trait(trait)
        path = target / spec.header_name
        text = generate_trait_header(spec, directory)
        try:
            current = path.read_text()
        except FileNotFoundError:
            current = None
        if current != text:
            changed.append(path)
            if not check:
                target.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return changed


def traits_of(target: str) -> list[TraitSpec]:
    """The traits ``MODULE`` or ``MODULE:NAME`` declares (``NAME``: the class or the trait name).

    :raises ValueError: the module cannot be imported, or declares no such trait.
    """
    module_name, _, wanted = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{module_name}: cannot import it: {e}") from e
    found: list[TraitSpec] = []
    for attr, value in vars(module).items():
        spec = getattr(value, "__plugin_trait__", None)
        if not isinstance(spec, TraitSpec) or not isinstance(value, type):
            continue
        if wanted and wanted not in (attr, spec.name):
            continue
        if spec.source != f"{module_name}:{value.__qualname__}":
            continue  # imported from elsewhere: its own module writes it
        found.append(spec)
    if not found:
        what = f"trait {wanted!r}" if wanted else "traits"
        raise ValueError(f"{module_name}: declares no {what} (classes decorated with @declare_trait)")
    return found


def rust_traits_of(target: str) -> list[TraitSpec]:
    """:func:`traits_of`, except that ``MODULE:NAME`` may also name a trait the module imports
    (one Rust module holds every trait a crate implements, built-in ones included).

    :raises ValueError: the module cannot be imported, or has no such trait.
    """
    module_name, _, wanted = target.partition(":")
    if wanted:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"{module_name}: cannot import it: {e}") from e
        for attr, value in vars(module).items():
            spec = getattr(value, "__plugin_trait__", None)
            if isinstance(spec, TraitSpec) and isinstance(value, type) and wanted in (attr, spec.name):
                return [spec]
    return traits_of(target)
