"""The load policy's rule says the same on every load path, in Python and in C.

The rule (``plugin_host.loading._policy``) has one Python definition and one C
copy, the directory load's fast path (``ph_precheck_path`` in
host/speedups/speedups.c).  :func:`disagreements` loads one file layout
through every path -- a single file, a directory, copy-on-load, the probe,
:func:`~plugin_host.admission.probe_library`, the opt-out -- with the C checks
on and off, and lists every verdict that differs from the expected one.  The
mutation tests weaken either copy of the rule and show that it finds them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from plugin_host import LoadPolicy, PluginManager, PluginTrait
from plugin_host.admission import Prober, ProbeResult, probe_library
from plugin_host.errors import InsecurePluginError
from plugin_host.loading import _accel, _policy
from plugin_host.loading._precheck import fast_precheck
from plugin_interface import PluginError

REPO = Path(__file__).resolve().parents[1]
FOREIGN_UID = 4242

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="POSIX permissions, ELF host")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
needs_speedups = pytest.mark.skipif(not _accel.available(), reason="the C checks were not built")


# ---- layouts: where the plugin lies, and the verdict the policy must give ---------------------------------


@dataclass(frozen=True)
class Layout:
    """A plugin file the user names (``file``, in ``directory``) and whether the policy must refuse it."""

    name: str
    file: Path
    directory: Path
    insecure: bool


def _private_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True)
    path.chmod(mode)
    return path


def _plugin(source: Path, target: Path, mode: int = 0o755) -> Path:
    shutil.copy(source, target)
    target.chmod(mode)
    return target


def make_layout(name: str, plugin: Path, base: Path) -> Layout:
    """Build layout ``name`` under ``base`` (a fresh directory only this user can write)."""
    base = _private_dir(base / name)
    here = _private_dir(base / "plugins")
    file = here / "libgreeters.so"
    if name == "safe":
        _plugin(plugin, file)
    elif name == "group_writable_file":
        _plugin(plugin, file, 0o775)
    elif name == "foreign_file":
        os.chown(_plugin(plugin, file), FOREIGN_UID, -1)
    elif name == "world_writable_dir":
        _plugin(plugin, file)
        here.chmod(0o777)
    elif name == "sticky_world_writable_dir":  # like /tmp: others add files, they cannot replace ours
        _plugin(plugin, file)
        here.chmod(0o1777)
    elif name == "symlink_into_world_writable_dir":  # a directory of symlinks, each into a shared directory
        shared = _private_dir(base / "shared", 0o777)
        file.symlink_to(_plugin(plugin, shared / "libreal.so"))
    elif name == "symlink_from_world_writable_dir":  # a shared directory's link to our own safe file
        real = _plugin(plugin, _private_dir(base / "mine") / "libreal.so")
        here.chmod(0o777)
        file.symlink_to(real)
    elif name == "group_writable_ancestor":
        here.rmdir()
        here = _private_dir(_private_dir(base / "team", 0o775) / "plugins")
        file = _plugin(plugin, here / "libgreeters.so")
    elif name == "symlinked_directory_into_world_writable_dir":
        shared = _private_dir(base / "shared", 0o777)
        _plugin(plugin, shared / "libgreeters.so")
        here.rmdir()
        here.symlink_to(shared)
    elif name == "symlinked_ancestor_into_world_writable_dir":  # the link is higher up, not the directory itself
        shared = _private_dir(base / "shared", 0o777)
        _plugin(plugin, _private_dir(shared / "plugins") / "libgreeters.so")
        here.rmdir()
        (base / "link").symlink_to(shared)
        here = base / "link" / "plugins"
        file = here / "libgreeters.so"
    else:  # pragma: no cover - a typo in a test
        raise ValueError(name)
    insecure = name not in ("safe", "sticky_world_writable_dir", "symlink_from_world_writable_dir")
    return Layout(name, file, here, insecure)


LAYOUTS = [
    "safe",
    "group_writable_file",
    pytest.param("foreign_file", marks=as_root),
    "world_writable_dir",
    "sticky_world_writable_dir",
    "symlink_into_world_writable_dir",
    "symlink_from_world_writable_dir",
    "group_writable_ancestor",
    "symlinked_directory_into_world_writable_dir",
    "symlinked_ancestor_into_world_writable_dir",
]


# ---- the load paths ---------------------------------------------------------------------------------


@contextmanager
def probes_asked() -> Iterator[list[str]]:
    """The paths the managers' probers are asked about meanwhile (the probe itself still runs)."""
    asked: list[str] = []
    real = Prober.probe

    def probe(self: Prober, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> ProbeResult:
        asked.append(os.fspath(path))
        return real(self, path, *args, **kwargs)

    Prober.probe = probe  # type: ignore[method-assign]
    try:
        yield asked
    finally:
        Prober.probe = real  # type: ignore[method-assign]


def _single(opt_out: bool = False, **manager: object) -> Callable[[Layout, Path], str]:
    def load(layout: Layout, cache: Path) -> str:
        with probes_asked() as asked, PluginManager(**manager, probe_cache_dir=cache) as m:  # type: ignore[arg-type]
            [handle] = m.load_plugins(layout.file, PluginTrait.Greeter)
            return _loaded(handle.proxy("English").greet("x"), layout, asked if opt_out else None)

    return load


def _directory(opt_out: bool = False, **manager: object) -> Callable[[Layout, Path], str]:
    def load(layout: Layout, cache: Path) -> str:
        errors: list[PluginError] = []
        with probes_asked() as asked, PluginManager(**manager, probe_cache_dir=cache) as m:  # type: ignore[arg-type]
            handles = m.load_plugins(layout.directory, PluginTrait.Greeter, errors=errors)
            if errors:
                [error] = errors
                raise error
            [handle] = handles
            assert handle.path == layout.file
            return _loaded(handle.proxy("English").greet("x"), layout, asked if opt_out else None)

    return load


def _probe_library(layout: Layout, cache: Path) -> str:
    result = probe_library(layout.file, cache_dir=cache)
    return "secure" if result.clean else f"probe not clean: {result.problems}"


def _loaded(answer: str, layout: Layout, opt_out_probes: list[str] | None) -> str:
    """A load's verdict: the opt-out probes an insecure file first (untrusted), a secure one not."""
    assert answer == "Hello, x!"
    if opt_out_probes is None:
        return "secure"  # the strict policy refuses an insecure file
    return "insecure" if str(layout.file) in opt_out_probes else "secure"


OPT_OUT = LoadPolicy(allow_insecure_permissions=True)
#: Each path: how it loads a layout, and the verdict it gives: "secure", or
#: "insecure" (under the strict policy an InsecurePluginError naming the file,
#: under the opt-out a probe before the load; every path shares one probe
#: cache, so a file is probed in a child once).
PATHS: dict[str, Callable[[Layout, Path], str]] = {
    "single file": _single(),
    "directory": _directory(),
    "copy_on_load": _single(copy_on_load=True),
    "copy_on_load directory": _directory(copy_on_load=True),
    "probe=True": _single(probe=True),
    "probe=True directory": _directory(probe=True),
    "probe_library": _probe_library,
    "opt-out single file": _single(True, policy=OPT_OUT),
    "opt-out directory": _directory(True, policy=OPT_OUT),
}


@contextmanager
def c_checks(on: bool) -> Iterator[None]:
    previous = _accel.set_enabled(on)
    try:
        yield
    finally:
        _accel.set_enabled(previous)


def verdict(path: str, layout: Layout, cache: Path) -> str:
    """What ``path`` made of ``layout``: "secure", "insecure", or what else happened."""
    try:
        seen = PATHS[path](layout, cache)
    except InsecurePluginError as e:
        return "insecure" if e.path == str(layout.file) else f"refused, naming {e.path}"
    except PluginError as e:
        return f"{type(e).__name__}: {e}"
    return seen


def disagreements(layouts: list[Layout], cache: Path, c_modes: tuple[bool, ...] = (True, False)) -> list[str]:
    """Every (layout, path, C on/off) whose verdict differs from the layout's expected one."""
    wrong = []
    for layout in layouts:
        expected = "insecure" if layout.insecure else "secure"
        for on in c_modes:
            with c_checks(on):
                for path in PATHS:
                    seen = verdict(path, layout, cache)
                    if seen != expected:
                        wrong.append(f"{layout.name}, {path}, C checks {'on' if on else 'off'}: {seen}")
    return wrong


def assert_agreement(layouts: list[Layout], cache: Path, c_modes: tuple[bool, ...] = (True, False)) -> None:
    """The agreement check: every path gives every layout its expected verdict."""
    wrong = disagreements(layouts, cache, c_modes)
    assert not wrong, "the load paths disagree:\n" + "\n".join(wrong)


@pytest.fixture
def greeters(example_plugins: dict[str, Path]) -> Path:
    return example_plugins["greeters"]


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_path_gives_the_same_verdict(name: str, greeters: Path, tmp_path: Path) -> None:
    assert_agreement([make_layout(name, greeters, tmp_path)], tmp_path / "cache")


# ---- the file rule, C against Python ------------------------------------------------------------------


FILE_CASES = [
    (uid, mode)
    for uid in (0, FOREIGN_UID)
    for mode in (0o600, 0o644, 0o755, 0o664, 0o646, 0o666, 0o777, 0o620, 0o602, 0o4755, 0o2755, 0o1755, 0o1777)
]


def c_file_rule_disagreements(plugin: Path, base: Path) -> list[str]:
    """Owners and modes on which the C pre-check's file rule and the Python rule differ."""
    me = os.geteuid()
    wrong = []
    for uid, mode in FILE_CASES if me == 0 else [(me, m) for _, m in FILE_CASES]:
        file = base / f"lib{uid}-{mode:o}.so"
        shutil.copy(plugin, file)
        os.chown(file, uid, -1)
        file.chmod(mode)  # after chown, which clears set-id bits
        python_secure = not _policy.permission_problems(file, os.stat(file), str(base), _policy.DirectoryVerdicts())
        with c_checks(True):
            [c_secure] = fast_precheck([file], me)
        if c_secure != python_secure:
            wrong.append(f"uid {uid}, mode {mode:#o}: C {c_secure}, Python {python_secure}")
    return wrong


@needs_speedups
def test_c_and_python_file_rules_agree(greeters: Path, tmp_path: Path) -> None:
    assert c_file_rule_disagreements(greeters, tmp_path) == []


# ---- mutation tests: a weakened copy of the rule is caught ---------------------------------------------


def _c_compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def build_speedups(tmp: Path, mutate: Callable[[str], str], module: str, source: str = "speedups.c") -> ModuleType:
    """Compile host/speedups with ``mutate`` applied to ``source``, as ``module``; the imported module."""
    speedups = _private_dir(tmp / "host" / "speedups")
    for file in (REPO / "host" / "speedups").iterdir():
        if file.suffix in (".c", ".h") or file.name == "build.py":
            shutil.copy(file, speedups / file.name)
    mutated = speedups / source
    mutated.write_text(mutate(mutated.read_text()))
    shutil.copytree(
        REPO / "interface" / "plugin_interface" / "include", tmp / "interface" / "plugin_interface" / "include"
    )
    spec = importlib.util.spec_from_file_location("speedups_build", speedups / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    built = Path(build.make_builder(str(tmp), module=module).compile(tmpdir=str(tmp / "build")))
    assert built.is_file(), f"the mutated C checks did not build: {built}"
    spec = importlib.util.spec_from_file_location(module, built)
    assert spec is not None and spec.loader is not None
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)
    return extension


def only_world_writable(source: str) -> str:
    """The review's mutation: the C rule for the file (ph_precheck_path's, and a second load's
    look at a file it knows) refuses only a world-writable file."""
    start = source.index("static int file_rule_passes(")
    end = source.index("\n}\n", start)
    body = source[start:end]
    assert body.count("S_IWGRP | S_IWOTH") == 1, "the file rule in file_rule_passes changed shape"
    return source[:start] + body.replace("S_IWGRP | S_IWOTH", "S_IWOTH") + source[end:]


@pytest.fixture
def weak_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C checks of :func:`only_world_writable` in place of the built ones."""
    if _c_compiler() is None:
        pytest.skip("no C compiler to build the mutated C checks")
    mutant = build_speedups(tmp_path / "mutant", only_world_writable, "_speedups_mutant")
    _accel.check_constants(mutant.lib)
    monkeypatch.setattr(_accel, "_lib", mutant.lib)
    monkeypatch.setattr(_accel, "_ffi", mutant.ffi)


def test_a_weaker_c_rule_is_caught(weak_c: None, greeters: Path, tmp_path: Path) -> None:
    layout = make_layout("group_writable_file", greeters, tmp_path / "layouts")
    wrong = disagreements([layout], tmp_path / "cache", c_modes=(True,))
    # The review's finding: a directory load takes in place what a single-file load refuses.
    assert "group_writable_file, directory, C checks on: secure" in wrong
    assert "group_writable_file, opt-out directory, C checks on: secure" in wrong
    assert not any("single file" in w for w in wrong)
    with pytest.raises(AssertionError, match="the load paths disagree"):
        assert_agreement([layout], tmp_path / "cache", c_modes=(True,))
    files = _private_dir(tmp_path / "files")
    assert any("mode 0o664: C True, Python False" in w for w in c_file_rule_disagreements(greeters, files))


def test_a_weaker_python_rule_is_caught(greeters: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_policy, "_GROUP_OR_OTHERS_WRITE", stat.S_IWOTH)
    layout = make_layout("group_writable_file", greeters, tmp_path / "layouts")
    wrong = disagreements([layout], tmp_path / "cache")
    assert "group_writable_file, single file, C checks off: secure" in wrong
    assert "group_writable_file, probe_library, C checks on: secure" in wrong
    with pytest.raises(AssertionError, match="the load paths disagree"):
        assert_agreement([layout], tmp_path / "cache")
    if _accel.available():
        files = _private_dir(tmp_path / "files")
        assert any("mode 0o664: C False, Python True" in w for w in c_file_rule_disagreements(greeters, files))


# ---- a second load of the same files ---------------------------------------------------------------------


@pytest.mark.parametrize("c_on", [True, False], ids=["C checks on", "C checks off"])
@pytest.mark.parametrize("change", ["chmod g+w", "replaced by a group-writable file"])
def test_a_file_made_insecure_after_its_first_load_is_refused_on_the_next(
    greeters: Path, tmp_path: Path, c_on: bool, change: str
) -> None:
    """A second load skips only the pre-check of an unchanged file: the rule for the file (and its
    directories) is applied again, so a file opened up since is refused."""
    if c_on and not _accel.available():
        pytest.skip("the C checks were not built")
    here = _private_dir(tmp_path / "plugins")
    file = _plugin(greeters, here / "libgreeters.so")
    with c_checks(c_on), PluginManager() as manager:
        [handle] = manager.load_plugins(here, PluginTrait.Greeter)
        manager.unload_all()
        if change == "chmod g+w":
            file.chmod(0o775)
        else:
            replacement = _plugin(greeters, here / "libreplacement.tmp", 0o775)
            os.replace(replacement, file)
        errors: list[PluginError] = []
        assert manager.load_plugins(here, PluginTrait.Greeter, errors=errors) == []
    [error] = errors
    assert isinstance(error, InsecurePluginError) and error.path == str(file)
    assert "writable by group" in str(error)
    assert handle.path == file
