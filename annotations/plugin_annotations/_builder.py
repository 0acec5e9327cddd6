"""Build plugin libraries from C, C++ or Rust sources.

C goes through setuptools' compiler abstraction and honours ``CC``,
``CFLAGS`` and ``LDSHARED`` like any setuptools build; C++ through the same
abstraction with the C++ compiler (``CXX``, ``CXXFLAGS``, ``LDFLAGS``; default
the one Python was built with, else ``g++``); Rust with ``rustc --crate-type
cdylib`` (``RUSTC``, ``RUSTFLAGS``), or ``cargo build --offline --release``
when the plugin directory has a ``Cargo.toml`` (which may declare no
dependencies: no crate registry is assumed reachable).  Plugins are built
in parallel, incrementally (a no-op rebuild compiles nothing), and published
atomically with :func:`os.replace`, so a host that has the previous build
loaded keeps running (overwriting a mapped library in place crashes the
process that mapped it).

A plugin is described by a ``plugin.toml`` next to its sources::

    name = "greeters"                 # library name: libgreeters.so
    sources = ["english.c", "aggregates.c"]
    defines = ["GREETING=1"]          # optional, NAME or NAME=VALUE
    include_dirs = ["include"]        # optional, relative to the plugin dir (private)
    cflags = ["-O2"]                  # optional, appended to the compile line
    language = "cpp"                  # optional: "c", "cpp" or "rust"; default from
                                      # the sources' suffixes (.rs: rust, .cpp/.cc/.cxx: cpp)
    restrict_exports = true           # optional: export only plugin_* (and `exports`);
                                      # default true for C++, false for C
    exports = ["mylib_*"]             # optional: more names (globs) to export when restricted
    optional = true                   # optional: where the language's compiler is missing,
                                      # skip the plugin (BuildResult.skipped says why)

Exports and unloading: a C++ library exports, besides its own symbols, the
inline and template symbols of the standard library it instantiates; g++
marks some of them ``STB_GNU_UNIQUE`` (static locals of inline functions,
template static members), and glibc never unloads a library that has one:
``dlclose`` leaves it mapped, with its static state.  So C++ plugins are
compiled with ``-fvisibility=hidden -fvisibility-inlines-hidden`` and linked
with a version script that exports ``plugin_*`` only (on macOS
``-exported_symbol _plugin_*``); the host verifies every unload and says why a
library stayed mapped (``plugin_host.LibraryStillMappedWarning``).  Rust
``cdylib`` output already exports only ``#[no_mangle]``/``export_name``
items (rustc writes its own version script).  A Rust plugin is one crate:
``sources[0]`` is the crate root, the other sources its modules (tracked for
rebuilds); ``defines`` become ``--cfg`` options, and ``-Werror`` among the
extra flags becomes ``-D warnings``.

Plugins that use each other form a build graph; these keys (all optional)
describe it::

    public_include = ["include"]      # the interface: on the include path of this
                                      # plugin and of every plugin that depends on it
    private_include = ["private"]     # the implementation: this plugin's include path only
    link_deps = ["core"]              # link to libcore (built first) and use its interface
    interface_deps = ["bar"]          # use bar's interface only: no link, no build order
    no_link = true                    # nobody links to this plugin; dependants load it
                                      # explicitly at run time (DynamicModule, dlopen)

The rules:

- A plugin compiles with its own directory, its public and private (and
  ``include_dirs``) directories, the public include directories of its
  dependencies (link and interface, transitively), and the plugin headers.
- A private include directory is never on a dependant's include path: a
  dependant that includes a private header fails to compile.  (A path that
  climbs out of an include directory with ``../`` is not policed.)
- Interface dependencies are headers only, so they may form cycles: that is
  how two plugins use each other (``foo`` and ``bar`` in ``native_plugins/``).
  Link dependencies may not: a cycle raises :class:`DependencyCycleError`
  spelling it out (``bar -> foo -> bar``).
- Plugins build in a topological order of their link dependencies; plugins
  whose link dependencies are built compile in parallel.  A plugin whose
  dependency failed is not built, and is reported as such.
- A link dependency is linked with ``-L<build dir> -l<name>`` and an rpath of
  ``$ORIGIN`` (``@loader_path`` on macOS): the libraries are found side by
  side in the build directory.  A host loading private copies
  (``copy_on_load``) must therefore not load a plugin that has link
  dependencies.
- Every dependency must be among the plugins built together, and a
  ``no_link`` plugin may only be an interface dependency
  (:class:`DependencyError` otherwise).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import tomllib
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from plugin_interface import PluginError, library_filename
from plugin_interface import get_include as interface_include

__all__ = [
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
    "get_include",
    "get_include_dirs",
    "language_of",
    "load_plugin_spec",
]

#: Flags every plugin is compiled with (on top of the compiler's defaults).
DEFAULT_CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-fPIC", "-fvisibility=hidden")
#: Flags every C++ plugin is compiled with (a later ``-std=`` in ``cflags`` wins).
DEFAULT_CXXFLAGS = (
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-fPIC",
    "-fvisibility=hidden",
    "-fvisibility-inlines-hidden",
)
#: Options every Rust plugin is compiled with (``rustc`` without Cargo).
DEFAULT_RUSTFLAGS = ("--edition", "2021", "-C", "opt-level=2")
#: The languages a plugin.toml may name.
LANGUAGES = ("c", "cpp", "rust")
_CXX_SUFFIXES = (".cpp", ".cc", ".cxx", ".C", ".c++")
SPEC_FILE = "plugin.toml"
_SPEC_KEYS = {
    "optional",
    "language",
    "restrict_exports",
    "exports",
    "name",
    "sources",
    "defines",
    "include_dirs",
    "cflags",
    "public_include",
    "private_include",
    "link_deps",
    "interface_deps",
    "no_link",
}
_distutils_lock = threading.Lock()


def get_include() -> str:
    """The directory holding ``plugin_annotations.h`` (the macros).

    ``plugin_annotations.h`` includes ``plugin_interface.h``; use
    :func:`get_include_dirs` (or ``python -m plugin_annotations --cflags``) for
    every directory a plugin's compile line needs.
    """
    return str(Path(__file__).parent / "include")


def get_include_dirs() -> list[str]:
    """Every include directory a plugin needs: the macros, the ABI and the trait headers."""
    return [get_include(), interface_include()]


class BuildError(PluginError):
    """A plugin failed to compile or link.

    :ivar plugin: the plugin's name.
    :ivar output: what the compiler printed.
    """

    def __init__(self, plugin: str, message: str, output: str = "") -> None:
        super().__init__(f"plugin {plugin}: {message}" + (f"\n{output}" if output else ""))
        self.plugin = plugin
        self.output = output


class CompilerNotFoundError(BuildError):
    """No compiler for a plugin's language: said in one sentence, not a traceback.

    :ivar compiler: the command that is missing.
    :ivar language: ``"c"``, ``"cpp"`` or ``"rust"``.
    """

    _ADVICE: ClassVar[dict[str, tuple[str, str]]] = {
        "c": ("C", "install gcc or clang (e.g. `apt-get install gcc`) or set CC to your compiler"),
        "cpp": ("C++", "install g++ or clang++ (e.g. `apt-get install g++`) or set CXX to your compiler"),
        "rust": ("Rust", "install Rust (rustup, or `apt-get install rustc`) or set RUSTC to your compiler"),
        "cargo": ("Rust", "install cargo (rustup, or `apt-get install cargo`), or build without a Cargo.toml"),
    }

    def __init__(self, compiler: str, language: str = "c") -> None:
        name, advice = self._ADVICE.get(language, self._ADVICE["c"])
        msg = f"no {name} compiler found: {compiler!r} is not on PATH; {advice}"
        PluginError.__init__(self, msg)
        self.plugin = ""
        self.output = ""
        self.compiler = compiler
        self.language = "rust" if language == "cargo" else language


class PluginSpecError(PluginError):
    """A ``plugin.toml`` is malformed."""


class DependencyError(BuildError):
    """A plugin's dependency cannot be satisfied (unknown, or ``no_link`` as a link dependency).

    :ivar plugin: the dependant.
    :ivar dependency: the dependency concerned.
    """

    def __init__(self, plugin: str, dependency: str, message: str) -> None:
        super().__init__(plugin, message)
        self.dependency = dependency


class DependencyCycleError(DependencyError):
    """Link dependencies that form a cycle.

    :ivar cycle: the plugins around the cycle, the first repeated at the end
        (``["bar", "foo", "bar"]``).
    """

    def __init__(self, cycle: list[str]) -> None:
        msg = (
            f"link dependency cycle: {' -> '.join(cycle)} (link_deps must form no cycle; "
            "plugins that use each other list each other under interface_deps and load each other explicitly)"
        )
        super().__init__(cycle[0], cycle[1], msg)
        self.cycle = cycle


@dataclass(frozen=True)
class PluginSpec:
    """What to build for one plugin.

    :ivar name: the library name (``greeters`` -> ``libgreeters.so``).
    :ivar directory: the plugin's source directory.
    :ivar sources: C sources, absolute.
    :ivar include_dirs: extra include directories of this plugin only.
    :ivar public_include: include directories dependants inherit (its interface).
    :ivar private_include: include directories dependants never see.
    :ivar link_deps: plugins this one links to (built before it).
    :ivar interface_deps: plugins whose interface this one uses, without linking.
    :ivar no_link: dependants never link to this plugin; they load it explicitly.
    :ivar language: ``"c"``, ``"cpp"`` or ``"rust"``.
    :ivar restrict_exports: export only ``plugin_*`` and :attr:`exports`
        (``None``: the language's default, true for C++ only).
    :ivar exports: more exported names (glob patterns) when restricted.
    :ivar optional: skip it (see :attr:`BuildResult.skipped`) where its language has no compiler.
    """

    name: str
    directory: Path
    sources: tuple[Path, ...]
    defines: tuple[str, ...] = ()
    include_dirs: tuple[Path, ...] = ()
    cflags: tuple[str, ...] = ()
    public_include: tuple[Path, ...] = ()
    private_include: tuple[Path, ...] = ()
    link_deps: tuple[str, ...] = ()
    interface_deps: tuple[str, ...] = ()
    no_link: bool = False
    language: str = ""
    restrict_exports: bool | None = None
    exports: tuple[str, ...] = ()
    optional: bool = False

    @property
    def library_filename(self) -> str:
        """The platform's file name of the built library."""
        return library_filename(self.name)

    @property
    def source_language(self) -> str:
        """:attr:`language`, or the one the sources' suffixes say (``.rs``: rust, C++ suffixes: cpp, else c)."""
        if self.language:
            return self.language
        return language_of(self.sources)

    @property
    def exports_restricted(self) -> bool:
        """Whether the link exports only ``plugin_*`` (and :attr:`exports`)."""
        if self.restrict_exports is not None:
            return self.restrict_exports
        return self.source_language == "cpp"


def language_of(sources: Iterable[Path]) -> str:
    """The language a list of sources is in: ``rust`` if any is ``.rs``, ``cpp`` if any is C++, else ``c``."""
    suffixes = {src.suffix for src in sources}
    if ".rs" in suffixes:
        return "rust"
    if suffixes & set(_CXX_SUFFIXES):
        return "cpp"
    return "c"


@dataclass
class BuildResult:
    """What :func:`build_plugins` did.

    :ivar outputs: every plugin's library path, by plugin name.
    :ivar built: the plugins that were (re)built; empty on a no-op rebuild.
    :ivar compiled: the sources that were compiled.
    :ivar skipped: ``optional`` plugins not built, with the reason (no compiler for
        their language, or a link dependency skipped).
    """

    outputs: dict[str, Path] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    compiled: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _str_list(data: dict[str, object], key: str, path: Path) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PluginSpecError(f"{path}: {key} must be a list of strings", path=path)
    return tuple(value)


def _is_plugin_name(name: object) -> bool:
    return isinstance(name, str) and name.replace("_", "").isalnum()


def _dir_list(directory: Path, data: dict[str, object], key: str, path: Path) -> tuple[Path, ...]:
    dirs = tuple(directory / d for d in _str_list(data, key, path))
    missing = [str(d.relative_to(directory)) for d in dirs if not d.is_dir()]
    if missing:
        raise PluginSpecError(f"{path}: {key} director(ies) not found: {', '.join(missing)}", path=path)
    return dirs


def _name_list(data: dict[str, object], key: str, path: Path) -> tuple[str, ...]:
    names = _str_list(data, key, path)
    bad = [n for n in names if not _is_plugin_name(n)]
    if bad:
        raise PluginSpecError(f"{path}: {key}: not plugin names: {', '.join(map(repr, bad))}", path=path)
    return names


def load_plugin_spec(directory: str | os.PathLike[str]) -> PluginSpec:
    """Read ``directory/plugin.toml``.

    :raises PluginSpecError: naming the file and the key that is wrong.
    """
    directory = Path(directory).resolve()
    path = directory / SPEC_FILE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PluginSpecError(f"{path}: cannot read plugin description: {e}", path=path) from e
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise PluginSpecError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}", path=path)
    name = data.get("name", directory.name)
    if not _is_plugin_name(name):
        raise PluginSpecError(f"{path}: name must be letters, digits and _", path=path)
    sources = _str_list(data, "sources", path)
    if not sources:
        raise PluginSpecError(f"{path}: sources is empty", path=path)
    missing = [s for s in sources if not (directory / s).is_file()]
    if missing:
        raise PluginSpecError(f"{path}: source(s) not found: {', '.join(missing)}", path=path)
    no_link = data.get("no_link", False)
    if not isinstance(no_link, bool):
        raise PluginSpecError(f"{path}: no_link must be true or false", path=path)
    language = data.get("language", "")
    if language not in ("", *LANGUAGES):
        msg = f"{path}: language must be one of {', '.join(map(repr, LANGUAGES))}, not {language!r}"
        raise PluginSpecError(msg, path=path)
    restrict = data.get("restrict_exports")
    if restrict is not None and not isinstance(restrict, bool):
        raise PluginSpecError(f"{path}: restrict_exports must be true or false", path=path)
    optional = data.get("optional", False)
    if not isinstance(optional, bool):
        raise PluginSpecError(f"{path}: optional must be true or false", path=path)
    return PluginSpec(
        name=name,
        directory=directory,
        sources=tuple(directory / s for s in sources),
        defines=_str_list(data, "defines", path),
        include_dirs=tuple(directory / d for d in _str_list(data, "include_dirs", path)),
        cflags=_str_list(data, "cflags", path),
        public_include=_dir_list(directory, data, "public_include", path),
        private_include=_dir_list(directory, data, "private_include", path),
        link_deps=_name_list(data, "link_deps", path),
        interface_deps=_name_list(data, "interface_deps", path),
        no_link=no_link,
        language=str(language),
        restrict_exports=restrict,
        exports=_str_list(data, "exports", path),
        optional=optional,
    )


def discover_plugins(root: str | os.PathLike[str]) -> list[PluginSpec]:
    """Every plugin under ``root`` (one ``plugin.toml`` per subdirectory), by name."""
    specs = [load_plugin_spec(p.parent) for p in sorted(Path(root).glob(f"*/{SPEC_FILE}"))]
    return sorted(specs, key=lambda s: s.name)


def _new_compiler(language: str = "c") -> Any:
    # setuptools replaces the deprecated stdlib distutils; importing it first
    # makes `distutils` resolve to its maintained copy (and avoids the stdlib
    # module's DeprecationWarning).  Keep this order.
    importlib.import_module("setuptools")
    from distutils import ccompiler
    from distutils import sysconfig as dsysconfig

    with _distutils_lock:  # customize_compiler reads global sysconfig state
        cc: Any = ccompiler.new_compiler()
        dsysconfig.customize_compiler(cc)
    if language == "cpp":
        # Every setuptools version compiles .cpp with compiler_so (older) or
        # compiler_so_cxx (newer): set both to the C++ compiler, and link with it.
        cxx = _cxx_command()
        compile_cmd = [*cxx, *shlex.split(os.environ.get("CXXFLAGS", "")), "-fPIC"]
        link_cmd = [*cxx, "-shared", *shlex.split(os.environ.get("LDFLAGS", ""))]
        wanted = {
            "compiler_so": compile_cmd,
            "compiler_so_cxx": compile_cmd,
            "linker_so": link_cmd,
            "linker_so_cxx": link_cmd,
        }
        cc.set_executables(**{k: v for k, v in wanted.items() if k in cc.executables})
    cc.spawn = _spawn_capturing
    if hasattr(cc, "call"):
        cc.call = _spawn_capturing
    return cc


def _cxx_command() -> list[str]:
    """The C++ compiler: ``CXX``, else the one Python was built with, else ``g++``."""
    return shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "g++")


def _rustc_command() -> list[str]:
    return shlex.split(os.environ.get("RUSTC") or "rustc")


def _cargo_command() -> list[str]:
    return shlex.split(os.environ.get("CARGO") or "cargo")


def _spawn_capturing(cmd: list[str], **_: object) -> None:
    """Run the compiler with its output captured into the exception.

    Older setuptools route commands through ``spawn`` (expects
    DistutilsExecError), newer ones through ``call`` (expects OSError or
    CalledProcessError); the raised error is both, so either wraps it in a
    CompileError/LinkError whose text is the compiler's own output.
    """
    import subprocess
    from distutils.errors import DistutilsExecError

    class CompilerFailed(DistutilsExecError, OSError):
        pass

    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise CompilerFailed(f"{cmd[0]}: {e.strerror or e}") from e
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise CompilerFailed(f"{' '.join(cmd)}\n{output}")


def _check_compiler(cc: object, language: str = "c") -> None:
    exe = getattr(cc, "compiler_so", None) or getattr(cc, "compiler", None) or ["cc"]
    if not shutil.which(exe[0]):
        raise CompilerNotFoundError(exe[0], language)


def _check_toolchain(spec: PluginSpec) -> None:
    """Raise :class:`CompilerNotFoundError` when ``spec``'s language has no compiler here."""
    language = spec.source_language
    if language == "rust":
        cargo = _cargo_manifest(spec) is not None
        exe = (_cargo_command() if cargo else _rustc_command())[0]
        if not shutil.which(exe):
            raise CompilerNotFoundError(exe, "cargo" if cargo else "rust")
    else:
        _check_compiler(_new_compiler(language), language)


def _macros(defines: Iterable[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for d in defines:
        name, sep, value = d.partition("=")
        out.append((name, value if sep else None))
    return out


def _headers_mtime(dirs: Iterable[Path]) -> float:
    newest = 0.0
    for d in dirs:
        for pattern in ("*.h", "*.hpp") if d.is_dir() else ():
            for h in d.rglob(pattern):
                newest = max(newest, h.stat().st_mtime)
    return newest


def _export_patterns(spec: PluginSpec) -> list[str]:
    return ["plugin_*", *spec.exports]


def _version_script(spec: PluginSpec) -> str:
    """A GNU ld version script that exports ``plugin_*`` (and ``spec.exports``) and hides the rest.

    Hiding is what makes a C++ library unloadable: the ``STB_GNU_UNIQUE``
    symbols g++ gives libstdc++'s inline statics become local, and glibc only
    refuses to unload a library with *exported* unique symbols.
    """
    globs = "".join(f"    {pattern};\n" for pattern in _export_patterns(spec))
    return f"{{\n  global:\n{globs}  local:\n    *;\n}};\n"


def _link_flags(spec: PluginSpec, obj_dir: Path | None = None) -> list[str]:
    flags: list[str] = []
    if sys.platform.startswith("linux"):
        flags.append("-Wl,-z,start-stop-visibility=hidden")
    if spec.exports_restricted and obj_dir is not None:
        if sys.platform == "darwin":
            flags += [f"-Wl,-exported_symbol,_{pattern}" for pattern in _export_patterns(spec)]
        elif sys.platform != "win32":
            flags.append(f"-Wl,--version-script={obj_dir / 'exports.map'}")
    if sys.platform == "darwin":
        # The default install name is the -o path, a temporary file here.
        flags.append(f"-Wl,-install_name,@rpath/{spec.library_filename}")
    if spec.link_deps:
        # Link dependencies sit next to the dependant in the build directory.
        flags.append("-Wl,-rpath,@loader_path" if sys.platform == "darwin" else "-Wl,-rpath,$ORIGIN")
    return flags


def _inherited_include(spec: PluginSpec, by_name: dict[str, PluginSpec]) -> list[Path]:
    """The public include dirs of ``spec``'s dependencies, transitively (never private ones)."""
    out: list[Path] = []
    seen = {spec.name}
    queue = deque([*spec.link_deps, *spec.interface_deps])
    while queue:
        name = queue.popleft()
        if name in seen:
            continue
        seen.add(name)
        dep = by_name[name]
        out += [d for d in dep.public_include if d not in out]
        queue.extend([*dep.link_deps, *dep.interface_deps])
    return out


def build_order(specs: Iterable[PluginSpec]) -> list[PluginSpec]:
    """``specs`` in a topological order of their link dependencies (dependencies first).

    Ties are broken by name, so the order is deterministic.  Interface
    dependencies impose no order and may form cycles.

    :raises DependencyError: two plugins share a name, a dependency is not
        among ``specs``, or a link dependency is ``no_link``.
    :raises DependencyCycleError: link dependencies form a cycle, spelled out
        from its alphabetically first plugin (``bar -> foo -> bar``).
    """
    by_name: dict[str, PluginSpec] = {}
    for spec in specs:
        other = by_name.get(spec.name)
        if other is not None:
            msg = f"two plugins are named {spec.name}: {other.directory} and {spec.directory}"
            raise DependencyError(spec.name, spec.name, msg)
        by_name[spec.name] = spec
    for spec in sorted(by_name.values(), key=lambda s: s.name):
        for key, deps in (("link_deps", spec.link_deps), ("interface_deps", spec.interface_deps)):
            for dep in deps:
                if dep not in by_name:
                    msg = (
                        f"{key} names {dep!r}, which is not among the plugins being built "
                        f"({', '.join(sorted(by_name))})"
                    )
                    raise DependencyError(spec.name, dep, msg)
        for dep in spec.link_deps:
            if by_name[dep].no_link:
                msg = (
                    f"link_deps names {dep!r}, which is no_link: list it under interface_deps "
                    "and load it explicitly at run time"
                )
                raise DependencyError(spec.name, dep, msg)
    order: list[PluginSpec] = []
    done: set[str] = set()
    path: list[str] = []  # the chain being visited, for spelling out a cycle

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            cycle = path[path.index(name) :]
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]
            raise DependencyCycleError([*cycle, cycle[0]])
        path.append(name)
        for dep in sorted(by_name[name].link_deps):
            visit(dep)
        path.pop()
        done.add(name)
        order.append(by_name[name])

    for name in sorted(by_name):
        visit(name)
    return order


def _build_one(
    spec: PluginSpec,
    build_dir: Path,
    extra_cflags: Sequence[str],
    extra_defines: Sequence[str],
    force: bool,
    result: BuildResult,
    lock: threading.Lock,
    inherited_include: Sequence[Path] = (),
) -> None:
    language = spec.source_language
    if language == "rust":
        _build_rust(spec, build_dir, extra_cflags, extra_defines, force, result, lock)
        return
    cc = _new_compiler(language)
    _check_compiler(cc, language)
    include_dirs = [
        spec.directory,
        *spec.public_include,
        *spec.private_include,
        *spec.include_dirs,
        *inherited_include,
        *map(Path, get_include_dirs()),
    ]
    link_libs = [build_dir / library_filename(d) for d in spec.link_deps]
    obj_dir = build_dir / "obj" / spec.name
    link_flags = _link_flags(spec, obj_dir)
    defaults = DEFAULT_CXXFLAGS if language == "cpp" else DEFAULT_CFLAGS
    cflags = [*defaults, *spec.cflags, *extra_cflags]
    defines = [*spec.defines, *extra_defines]
    output = build_dir / spec.library_filename
    # A stamp of the command line: a change of flags rebuilds everything.
    stamp_text = json.dumps(
        {
            "cc": getattr(cc, "compiler_so", None),
            "cflags": cflags,
            "defines": defines,
            "env": [os.environ.get(k) for k in ("CC", "CFLAGS", "LDSHARED", "LDFLAGS", "CXX", "CXXFLAGS")],
            "language": language,
            "exports": _version_script(spec) if spec.exports_restricted else None,
            "includes": [str(i) for i in include_dirs],
            "link": [*spec.link_deps, *link_flags],
        },
        sort_keys=True,
    )
    stamp = obj_dir / ".stamp"
    stale_flags = force or not stamp.exists() or stamp.read_text() != stamp_text
    headers = _headers_mtime(include_dirs)
    objects: list[str] = []
    compiled: list[Path] = []
    for src in spec.sources:
        digest = hashlib.sha1(str(src).encode()).hexdigest()[:8]
        obj = obj_dir / f"{src.stem}-{digest}.o"
        objects.append(str(obj))
        if not stale_flags and obj.exists() and obj.stat().st_mtime >= max(src.stat().st_mtime, headers):
            continue
        obj_dir.mkdir(parents=True, exist_ok=True)
        try:
            # compile() mirrors the source path under output_dir; compile to a
            # scratch dir and move, so object names stay short and stable.
            with tempfile.TemporaryDirectory(dir=obj_dir) as scratch:
                [made] = cc.compile(
                    [str(src)],
                    output_dir=scratch,
                    macros=_macros(defines),
                    include_dirs=[str(i) for i in include_dirs],
                    extra_postargs=cflags,
                )
                os.replace(made, obj)
        except Exception as e:  # distutils' CompileError carries the compiler output
            raise BuildError(spec.name, f"compiling {src} failed", str(e)) from e
        compiled.append(src)
    # A rebuilt link dependency relinks its dependants, as make would: a
    # symbol it no longer exports fails at link time, not at load time.
    if (
        compiled
        or stale_flags
        or not output.exists()
        or output.stat().st_mtime < max(p.stat().st_mtime for p in [*map(Path, objects), *link_libs])
    ):
        tmp = output.with_name(f".{output.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        if spec.exports_restricted:
            obj_dir.mkdir(parents=True, exist_ok=True)
            (obj_dir / "exports.map").write_text(_version_script(spec))
        try:
            cc.link_shared_object(
                objects,
                str(tmp),
                libraries=list(spec.link_deps),
                library_dirs=[str(build_dir)] if spec.link_deps else None,
                extra_postargs=link_flags,
                target_lang="c++" if language == "cpp" else None,
            )
            os.replace(tmp, output)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            raise BuildError(spec.name, f"linking {output.name} failed", str(e)) from e
        stamp.write_text(stamp_text)
        with lock:
            result.built.append(spec.name)
    with lock:
        result.compiled.extend(compiled)
        result.outputs[spec.name] = output


def _cargo_manifest(spec: PluginSpec) -> Path | None:
    manifest = spec.directory / "Cargo.toml"
    return manifest if manifest.is_file() else None


def _cargo_library(spec: PluginSpec, manifest: Path) -> str:
    """The library name Cargo gives the crate; refuses a manifest with dependencies.

    :raises BuildError: the manifest is unreadable or declares dependencies
        (``cargo build --offline`` could not fetch them: no crate registry is assumed).
    """
    try:
        data = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BuildError(spec.name, f"cannot read {manifest}: {e}") from e
    sections = {key: data.get(key) for key in ("dependencies", "build-dependencies", "dev-dependencies")}
    for target, table in (data.get("target") or {}).items():
        if isinstance(table, dict):
            for key in ("dependencies", "build-dependencies", "dev-dependencies"):
                sections[f"target.{target}.{key}"] = table.get(key)
    used = [f"[{key}] {', '.join(sorted(value))}" for key, value in sections.items() if value]
    if used:
        msg = (
            f"{manifest} declares dependencies ({'; '.join(used)}); plugins build with no crates "
            "(cargo runs --offline), so write the code in the crate or generate it "
            "(python -m plugin_annotations rust)"
        )
        raise BuildError(spec.name, msg)
    lib = data.get("lib") or {}
    package = data.get("package") or {}
    name = lib.get("name") or package.get("name") or spec.name
    return str(name).replace("-", "_")


def _rust_flags(extra_cflags: Sequence[str], defines: Sequence[str]) -> list[str]:
    flags = shlex.split(os.environ.get("RUSTFLAGS", ""))
    if "-Werror" in extra_cflags:
        flags += ["-D", "warnings"]
    for d in defines:
        name, sep, value = d.partition("=")
        flags += ["--cfg", f"{name}={json.dumps(value)}" if sep else name]
    return flags


def _build_rust(
    spec: PluginSpec,
    build_dir: Path,
    extra_cflags: Sequence[str],
    extra_defines: Sequence[str],
    force: bool,
    result: BuildResult,
    lock: threading.Lock,
) -> None:
    """Build one Rust plugin: ``rustc --crate-type cdylib`` on ``sources[0]``, or Cargo with a Cargo.toml."""
    _check_toolchain(spec)
    manifest = _cargo_manifest(spec)
    obj_dir = build_dir / "obj" / spec.name
    output = build_dir / spec.library_filename
    flags = _rust_flags(extra_cflags, [*spec.defines, *extra_defines])
    if manifest is None:
        tool = _rustc_command()
        command = [*tool, "--crate-type", "cdylib", "--crate-name", spec.name, *DEFAULT_RUSTFLAGS, *spec.cflags]
        command += [*flags, str(spec.sources[0])]
        env = dict(os.environ)
    else:
        tool = _cargo_command()
        library = _cargo_library(spec, manifest)
        target_dir = obj_dir / "target"
        command = [*tool, "build", "--offline", "--release", "--lib", "--manifest-path", str(manifest)]
        command += ["--target-dir", str(target_dir)]
        env = {**os.environ, "RUSTFLAGS": " ".join(flags)} if flags else dict(os.environ)
    stamp_text = json.dumps({"command": command, "env": [os.environ.get(k) for k in ("RUSTC", "CARGO")]})
    stamp = obj_dir / ".stamp"
    inputs = [*spec.sources, *([manifest] if manifest else [])]
    if (
        not force
        and stamp.exists()
        and stamp.read_text() == stamp_text
        and output.exists()
        and output.stat().st_mtime >= max(p.stat().st_mtime for p in inputs)
    ):
        with lock:
            result.outputs[spec.name] = output
        return
    obj_dir.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    if manifest is None:
        command += ["-o", str(tmp)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=spec.directory)
    except OSError as e:
        raise BuildError(spec.name, f"running {command[0]} failed: {e.strerror or e}") from e
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        what = f"compiling {spec.sources[0]}" if manifest is None else f"cargo build of {manifest}"
        raise BuildError(spec.name, f"{what} failed", (proc.stdout + proc.stderr).strip())
    if manifest is not None:
        built = target_dir / "release" / library_filename(library)
        if not built.is_file():
            msg = f'cargo built no {built.name} (is crate-type = ["cdylib"] set under [lib]?)'
            raise BuildError(spec.name, msg, (proc.stdout + proc.stderr).strip())
        shutil.copy2(built, tmp)
    os.replace(tmp, output)
    stamp.write_text(stamp_text)
    with lock:
        result.built.append(spec.name)
        result.compiled.extend(spec.sources)
        result.outputs[spec.name] = output


def build_plugins(
    plugins: str | os.PathLike[str] | Iterable[PluginSpec],
    build_dir: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    force: bool = False,
    extra_cflags: Sequence[str] = (),
    defines: Sequence[str] = (),
) -> BuildResult:
    """Build plugins into ``build_dir`` with the platform's library naming.

    :param plugins: a directory of plugin directories, or specs.
    :param build_dir: where libraries (and ``obj/``) go; created if needed.
    :param jobs: parallel builds; default: the number of CPUs.
    :param force: rebuild even what is up to date.
    :param extra_cflags: appended to every C and C++ compile line (``["-Werror"]``;
        for Rust, ``-Werror`` becomes ``-D warnings`` and the rest is ignored).
    :param defines: extra ``NAME[=VALUE]`` macros for every plugin.
    :raises CompilerNotFoundError: when a plugin's language has no compiler
        (C, C++ or Rust), in one sentence, before anything is built.
    :raises DependencyError: a dependency is unknown or a link dependency is
        ``no_link`` (:class:`DependencyCycleError` for a link cycle); nothing
        is built then.
    :raises BuildError: naming the plugin, with the compiler's output.  The
        plugins that do not depend on a failed one are built all the same.
    """
    specs = discover_plugins(plugins) if isinstance(plugins, (str, os.PathLike)) else list(plugins)
    out_dir = Path(build_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = BuildResult()
    lock = threading.Lock()
    if not specs:
        return result
    waiting = build_order(specs)
    by_name = {s.name: s for s in waiting}
    missing: dict[tuple[str, bool], CompilerNotFoundError | None] = {}
    for spec in waiting:  # one sentence for a missing compiler, before anything builds
        key = (spec.source_language, _cargo_manifest(spec) is not None)
        if key not in missing:
            try:
                _check_toolchain(spec)
                missing[key] = None
            except CompilerNotFoundError as e:
                missing[key] = e
        no_compiler = missing[key]
        skipped_dep = next((d for d in spec.link_deps if d in result.skipped), None)
        if no_compiler is not None and not spec.optional:
            raise no_compiler
        if no_compiler is not None or skipped_dep is not None:
            if not spec.optional:
                raise BuildError(spec.name, f"not built: its link dependency {skipped_dep} was skipped")
            result.skipped[spec.name] = (
                str(no_compiler) if no_compiler is not None else f"its link dependency {skipped_dep} was skipped"
            )
    waiting = [spec for spec in waiting if spec.name not in result.skipped]
    errors: list[BaseException] = []
    failed: set[str] = set()
    running: dict[Future[None], str] = {}
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        while waiting or running:
            # Start every plugin whose link dependencies are built; waiting is
            # in topological order, so one pass also skips chains of failures.
            blocked: list[PluginSpec] = []
            for spec in waiting:
                bad = [d for d in spec.link_deps if d in failed]
                if bad:
                    failed.add(spec.name)
                    errors.append(BuildError(spec.name, f"not built: its link dependency {bad[0]} failed"))
                elif all(d in result.outputs for d in spec.link_deps):
                    future = pool.submit(
                        _build_one,
                        spec,
                        out_dir,
                        extra_cflags,
                        defines,
                        force,
                        result,
                        lock,
                        _inherited_include(spec, by_name),
                    )
                    running[future] = spec.name
                else:
                    blocked.append(spec)
            waiting = blocked
            if not running:
                break  # unreachable with a valid order; never spin
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    failed.add(name)
                    errors.append(error)
    if errors:
        errors.sort(key=lambda e: getattr(e, "plugin", ""))
        first = errors[0]
        if len(errors) == 1:
            raise first
        raise BuildError(
            ", ".join(getattr(e, "plugin", "?") for e in errors),
            f"{len(errors)} plugins failed",
            "\n\n".join(str(e) for e in errors),
        ) from first
    result.built.sort()
    return result
