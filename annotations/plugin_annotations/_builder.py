"""Build plugin libraries from C sources through setuptools' compiler abstraction.

The compiler honours ``CC``, ``CFLAGS`` and ``LDSHARED`` like any setuptools
build.  Plugins are built in parallel, incrementally (a no-op rebuild compiles
nothing), and published atomically with :func:`os.replace`, so a host that has
the previous build loaded keeps running (overwriting a mapped library in place
crashes the process that mapped it).

A plugin is described by a ``plugin.toml`` next to its sources::

    name = "greeters"                 # library name: libgreeters.so
    sources = ["english.c", "aggregates.c"]
    defines = ["GREETING=1"]          # optional, NAME or NAME=VALUE
    include_dirs = ["include"]        # optional, relative to the plugin dir
    cflags = ["-O2"]                  # optional, appended to the compile line
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from plugin_interface import PluginError, get_include as interface_include, library_filename

__all__ = [
    "BuildError",
    "BuildResult",
    "CompilerNotFoundError",
    "PluginSpec",
    "PluginSpecError",
    "build_plugins",
    "discover_plugins",
    "get_include",
    "get_include_dirs",
    "load_plugin_spec",
]

#: Flags every plugin is compiled with (on top of the compiler's defaults).
DEFAULT_CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-fPIC", "-fvisibility=hidden")
SPEC_FILE = "plugin.toml"
_SPEC_KEYS = {"name", "sources", "defines", "include_dirs", "cflags"}
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
    """No C compiler: said in one sentence, not a traceback."""

    def __init__(self, compiler: str) -> None:
        msg = (
            f"no C compiler found: {compiler!r} is not on PATH; install gcc or clang "
            "(e.g. `apt-get install gcc`) or set CC to your compiler"
        )
        PluginError.__init__(self, msg)
        self.plugin = ""
        self.output = ""


class PluginSpecError(PluginError):
    """A ``plugin.toml`` is malformed."""


@dataclass(frozen=True)
class PluginSpec:
    """What to build for one plugin.

    :ivar name: the library name (``greeters`` -> ``libgreeters.so``).
    :ivar directory: the plugin's source directory.
    :ivar sources: C sources, absolute.
    """

    name: str
    directory: Path
    sources: tuple[Path, ...]
    defines: tuple[str, ...] = ()
    include_dirs: tuple[Path, ...] = ()
    cflags: tuple[str, ...] = ()

    @property
    def library_filename(self) -> str:
        """The platform's file name of the built library."""
        return library_filename(self.name)


@dataclass
class BuildResult:
    """What :func:`build_plugins` did.

    :ivar outputs: every plugin's library path, by plugin name.
    :ivar built: the plugins that were (re)built; empty on a no-op rebuild.
    :ivar compiled: the sources that were compiled.
    """

    outputs: dict[str, Path] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    compiled: list[Path] = field(default_factory=list)


def _str_list(data: dict[str, object], key: str, path: Path) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PluginSpecError(f"{path}: {key} must be a list of strings", path=path)
    return tuple(value)


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
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise PluginSpecError(f"{path}: name must be letters, digits and _", path=path)
    sources = _str_list(data, "sources", path)
    if not sources:
        raise PluginSpecError(f"{path}: sources is empty", path=path)
    missing = [s for s in sources if not (directory / s).is_file()]
    if missing:
        raise PluginSpecError(f"{path}: source(s) not found: {', '.join(missing)}", path=path)
    return PluginSpec(
        name=name,
        directory=directory,
        sources=tuple(directory / s for s in sources),
        defines=_str_list(data, "defines", path),
        include_dirs=tuple(directory / d for d in _str_list(data, "include_dirs", path)),
        cflags=_str_list(data, "cflags", path),
    )


def discover_plugins(root: str | os.PathLike[str]) -> list[PluginSpec]:
    """Every plugin under ``root`` (one ``plugin.toml`` per subdirectory), by name."""
    specs = [load_plugin_spec(p.parent) for p in sorted(Path(root).glob(f"*/{SPEC_FILE}"))]
    return sorted(specs, key=lambda s: s.name)


def _new_compiler() -> object:
    # setuptools replaces the deprecated stdlib distutils; importing it first
    # makes `distutils` resolve to its maintained copy.
    import setuptools  # noqa: F401
    from distutils import ccompiler, sysconfig

    with _distutils_lock:  # customize_compiler reads global sysconfig state
        cc = ccompiler.new_compiler()
        sysconfig.customize_compiler(cc)
    cc.spawn = _spawn_capturing  # type: ignore[attr-defined]
    if hasattr(cc, "call"):
        cc.call = _spawn_capturing
    return cc


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


def _check_compiler(cc: object) -> None:
    exe = getattr(cc, "compiler_so", None) or getattr(cc, "compiler", None) or ["cc"]
    if not shutil.which(exe[0]):
        raise CompilerNotFoundError(exe[0])


def _macros(defines: Iterable[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for d in defines:
        name, sep, value = d.partition("=")
        out.append((name, value if sep else None))
    return out


def _headers_mtime(dirs: Iterable[Path]) -> float:
    newest = 0.0
    for d in dirs:
        for h in d.rglob("*.h") if d.is_dir() else ():
            newest = max(newest, h.stat().st_mtime)
    return newest


def _build_one(
    spec: PluginSpec,
    build_dir: Path,
    extra_cflags: Sequence[str],
    extra_defines: Sequence[str],
    force: bool,
    result: BuildResult,
    lock: threading.Lock,
) -> None:
    cc = _new_compiler()
    _check_compiler(cc)
    include_dirs = [spec.directory, *spec.include_dirs, *map(Path, get_include_dirs())]
    cflags = [*DEFAULT_CFLAGS, *spec.cflags, *extra_cflags]
    defines = [*spec.defines, *extra_defines]
    obj_dir = build_dir / "obj" / spec.name
    output = build_dir / spec.library_filename
    # A stamp of the command line: a change of flags rebuilds everything.
    stamp_text = json.dumps(
        {"cc": getattr(cc, "compiler_so", None), "cflags": cflags, "defines": defines,
         "env": [os.environ.get(k) for k in ("CC", "CFLAGS", "LDSHARED", "LDFLAGS")],
         "includes": [str(i) for i in include_dirs]},
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
        if (
            not stale_flags
            and obj.exists()
            and obj.stat().st_mtime >= max(src.stat().st_mtime, headers)
        ):
            continue
        obj_dir.mkdir(parents=True, exist_ok=True)
        try:
            # compile() mirrors the source path under output_dir; compile to a
            # scratch dir and move, so object names stay short and stable.
            with tempfile.TemporaryDirectory(dir=obj_dir) as scratch:
                [made] = cc.compile(  # type: ignore[attr-defined]
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
    if compiled or stale_flags or not output.exists() or output.stat().st_mtime < max(
        Path(o).stat().st_mtime for o in objects
    ):
        tmp = output.with_name(f".{output.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        link_flags = ["-Wl,-z,start-stop-visibility=hidden"] if sys.platform.startswith("linux") else []
        try:
            cc.link_shared_object(objects, str(tmp), extra_postargs=link_flags)  # type: ignore[attr-defined]
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
    :param extra_cflags: appended to every compile line (``["-Werror"]``).
    :param defines: extra ``NAME[=VALUE]`` macros for every plugin.
    :raises CompilerNotFoundError: when there is no C compiler.
    :raises BuildError: naming the plugin, with the compiler's output.
    """
    specs = (
        discover_plugins(plugins) if isinstance(plugins, (str, os.PathLike)) else list(plugins)
    )
    out_dir = Path(build_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = BuildResult()
    lock = threading.Lock()
    if not specs:
        return result
    _check_compiler(_new_compiler())
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [
            pool.submit(_build_one, s, out_dir, extra_cflags, defines, force, result, lock)
            for s in specs
        ]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        first = errors[0]
        assert first is not None
        if len(errors) == 1:
            raise first
        raise BuildError(
            ", ".join(getattr(e, "plugin", "?") for e in errors),
            f"{len(errors)} plugins failed",
            "\n\n".join(str(e) for e in errors),
        ) from first
    result.built.sort()
    return result
