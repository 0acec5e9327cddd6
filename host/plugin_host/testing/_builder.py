"""Plugins for tests: from a source string, a file or a plugin directory, built once per content.

The build itself is :func:`plugin_annotations.build_plugins` (C, C++, Rust);
this module writes the sources, the headers (C, C++) or the ``plugin_abi``
module (Rust) of the traits the test declares, and keys every build by a hash
of everything that goes into it, so a test session compiles each distinct
plugin once however many tests ask for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sysconfig
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from plugin_annotations import (
    PluginSpec,
    build_plugins,
    get_include_dirs,
    language_of,
    load_plugin_spec,
    write_rust_module,
    write_trait_headers,
)
from plugin_annotations import __file__ as _annotations_file
from plugin_interface import PluginError, TraitLike, TraitSpec, resolve_trait

from ._sanitizers import compile_flags

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["SUFFIXES", "PluginBuilder", "Source"]

#: A plugin's source: its text (``str``), a file or a plugin directory (a path), or several files (name -> text).
Source = str | os.PathLike[str] | Mapping[str, str]
#: The file suffix of a single-source plugin, by language.
SUFFIXES = {"c": ".c", "cpp": ".cpp", "rust": ".rs"}
_RUST_MODULE = "plugin_abi"
_ENV_KEYS = ("CC", "CFLAGS", "CXX", "CXXFLAGS", "LDSHARED", "LDFLAGS", "RUSTC", "RUSTFLAGS", "CARGO")


class PluginBuilder:
    """Builds plugin libraries into ``root``, each distinct one once.

    :param root: where sources and libraries go (a directory per content hash).
    :param sanitizers: build C and C++ with these (``("address", "undefined")``).
    :param flags: extra compile flags for every plugin (``["-Werror"]``).

    **Thread-safety**: builds of one content are serialised by a lock file
    (POSIX), so sessions sharing ``root`` (pytest-xdist) build each once.
    """

    def __init__(self, root: str | os.PathLike[str], *, sanitizers: Sequence[str] = (), flags: Sequence[str] = ()):
        self.root = Path(root)
        self.sanitizers = tuple(sanitizers)
        self.flags = tuple(flags)

    def build(
        self,
        source: Source,
        *,
        name: str | None = None,
        language: str | None = None,
        traits: Iterable[TraitLike] = (),
        flags: Sequence[str] = (),
        defines: Sequence[str] = (),
        include_dirs: Sequence[str | os.PathLike[str]] = (),
        restrict_exports: bool | None = None,
        out_dir: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Build one plugin; the path of its library.

        :param source: the source text (``str``, dedented), a source file, a plugin directory
            (with ``plugin.toml``), or a mapping of file names to texts (``.h``/``.hpp``
            files are written beside the sources and not compiled; a Rust crate's root first).
        :param name: the library name (``libNAME.so``); default: the file's or directory's
            name, or ``plugin_<hash>`` for text.
        :param language: ``"c"`` (default for text), ``"cpp"`` or ``"rust"``; files and
            directories say their own.
        :param traits: traits declared in Python whose header (C, C++) or ``plugin_abi.rs``
            module (Rust, written beside the crate root) the plugin includes.  The built-in
            traits' headers are always on the include path.
        :param flags: compile flags (``rustc`` options for Rust); ``-Werror`` works for all three.
        :param defines: ``NAME`` or ``NAME=VALUE`` (``--cfg`` for Rust).
        :param include_dirs: more include directories (C, C++).
        :param restrict_exports: export only ``plugin_*`` (default: C++ only).
        :param out_dir: build there, uncached (the same path can be rebuilt in place, e.g. for reloads).
        :raises CompilerNotFoundError: no compiler for the language.
        :raises BuildError: the compiler failed; the message holds its output.
        """
        specs = [resolve_trait(t) for t in traits]
        files, directory, base_name, near = _sources(source, name, language)
        if language is not None:
            lang = language
        elif directory is not None:
            lang = load_plugin_spec(directory).source_language
        else:
            lang = language_of(map(Path, files))
        if lang not in SUFFIXES:
            raise PluginError(f"plugin_builder: language must be one of {', '.join(SUFFIXES)}, not {lang!r}")
        plugin_name = name or base_name
        every = [*self.flags, *flags]
        if lang == "rust":  # rustc options go on its command line; -Werror becomes -D warnings
            extra = ["-Werror"] if "-Werror" in every else []
            own = tuple(f for f in every if f != "-Werror")
        else:
            extra, own = [*every, *compile_flags(self.sanitizers)], ()
        includes = [*near, *(Path(d).resolve() for d in include_dirs)]
        key = _digest(
            {
                "files": {k: _hash_text(v) for k, v in files.items()},
                "directory": _hash_tree(directory) if directory is not None else None,
                "name": plugin_name,
                "language": lang,
                "traits": [json.dumps(s.to_json(), sort_keys=True) for s in specs],
                "flags": [extra, own],
                "defines": list(defines),
                "include_dirs": [str(d) for d in includes],
                "restrict_exports": restrict_exports,
                "env": [os.environ.get(k) for k in _ENV_KEYS],
                "toolchain": [_annotations_file, sysconfig.get_config_var("CC"), _headers_stamp()],
            }
        )[:20]
        work = self.root / key
        with _locked(self.root, key):
            if out_dir is None:
                built = _cached_output(work)
                if built is not None:
                    return built
            src_dir = work / "src"
            src_dir.mkdir(parents=True, exist_ok=True)
            spec = _spec(files, directory, src_dir, plugin_name, lang, specs, includes)
            spec = dataclasses.replace(
                spec,
                defines=(*spec.defines, *defines),
                cflags=(*spec.cflags, *own),
                restrict_exports=spec.restrict_exports if restrict_exports is None else restrict_exports,
            )
            result = build_plugins([spec], out_dir if out_dir is not None else work, extra_cflags=extra)
            library = result.outputs[spec.name]
            if out_dir is None:
                (work / "library").write_text(library.name)
            return library

    __call__ = build


def _spec(
    files: dict[str, str],
    directory: Path | None,
    src_dir: Path,
    name: str,
    language: str,
    traits: list[TraitSpec],
    includes: list[Path],
) -> PluginSpec:
    """The spec of one plugin, its sources and generated headers or module written under ``src_dir``."""
    if directory is not None:
        spec = load_plugin_spec(directory)
        if language == "rust" and traits:  # plugin_abi.rs goes beside the crate root: build a copy
            copy = src_dir / "crate"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(directory, copy, ignore=shutil.ignore_patterns("target", ".*"))
            spec = load_plugin_spec(copy)
            write_rust_module(spec.sources[0].parent / f"{_RUST_MODULE}.rs", traits)
        elif traits:
            write_trait_headers(src_dir / "include", traits)
            includes = [src_dir / "include", *includes]
        return dataclasses.replace(spec, name=name, include_dirs=(*spec.include_dirs, *includes))
    for file_name, text in files.items():
        target = src_dir / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    sources = [src_dir / f for f in files if not f.endswith((".h", ".hpp", ".toml"))]
    if traits and language == "rust":
        module = sources[0].parent / f"{_RUST_MODULE}.rs"
        write_rust_module(module, traits)
        sources += [module] if module not in sources else []
    elif traits:
        write_trait_headers(src_dir, traits)
    return PluginSpec(
        name=name,
        directory=src_dir,
        sources=tuple(sources),
        include_dirs=tuple(includes),
        language=language,
    )


def _sources(
    source: Source, name: str | None, language: str | None
) -> tuple[dict[str, str], Path | None, str, list[Path]]:
    """``(files, plugin directory or None, default name, include directories)`` for any :data:`Source`.

    A single file's own directory is on its include path (its headers are found where they are).
    """
    if isinstance(source, str):
        text = textwrap.dedent(source)
        base = name or f"plugin_{_hash_text(text)[:10]}"
        return {f"{base}{SUFFIXES.get(language or 'c', '.c')}": text}, None, base, []
    if isinstance(source, Mapping):
        files = {str(k): textwrap.dedent(v) for k, v in source.items()}
        if not files:
            raise PluginError("plugin_builder: no source files given")
        first = Path(next(iter(files)))
        return files, None, name or _identifier(first.stem), []
    path = Path(source).resolve()
    if path.is_dir():
        if not (path / "plugin.toml").is_file():
            raise PluginError(f"plugin_builder: {path} is a directory without plugin.toml", path=path)
        return {}, path, load_plugin_spec(path).name, []
    try:
        text = path.read_text()
    except OSError as e:
        raise PluginError(f"plugin_builder: cannot read {path}: {e.strerror or e}", path=path) from e
    return {path.name: text}, None, name or _identifier(path.stem), [path.parent]


def _headers_stamp() -> list[tuple[str, int, int]]:
    """The installed headers' names, sizes and times: a changed macro header is a new build."""
    found = []
    for directory in get_include_dirs():
        for header in sorted(Path(directory).glob("*.h*")):
            st = header.stat()
            found.append((header.name, st.st_size, st.st_mtime_ns))
    return found


def _identifier(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return cleaned if cleaned and cleaned[0].isalpha() else f"plugin_{cleaned}"


def _hash_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _hash_tree(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not any(part.startswith(".") or part == "target" for part in relative.parts):
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _cached_output(work: Path) -> Path | None:
    with contextlib.suppress(OSError):
        library = work / (work / "library").read_text()
        if library.is_file():
            return library
    return None


@contextlib.contextmanager
def _locked(root: Path, key: str) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(root / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
