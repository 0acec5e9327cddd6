"""LoadPolicy: permissions, ownership, opt-out, SHA-256 allowlist (issue 6)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from plugin_host import LoadPolicy, PluginManager, PluginTrait
from plugin_host.errors import ErrorReason, InsecurePluginError
from plugin_host.loading import _accel


@pytest.fixture
def plugin(example_plugins: dict[str, Path], tmp_path: Path) -> Path:
    target = tmp_path / "libgreeters.so"
    shutil.copy(example_plugins["greeters"], target)
    return target


def test_default_policy_loads_a_private_file(plugin: Path) -> None:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(plugin, PluginTrait.Greeter)
        assert handle.library.load_path == plugin  # trusted: loaded in place


def test_world_writable_file_is_refused_with_the_opt_out(plugin: Path) -> None:
    plugin.chmod(0o666)
    with PluginManager() as manager, pytest.raises(InsecurePluginError) as exc:
        manager.load_plugins(plugin, PluginTrait.Greeter)
    assert exc.value.path == str(plugin)
    assert exc.value.detail == "the file is writable by group and others (mode 0o666)"
    assert exc.value.reason is ErrorReason.INSECURE
    assert exc.value.opt_out == "PluginManager(policy=LoadPolicy(allow_insecure_permissions=True))"
    assert not manager.is_loaded(plugin)


def test_opt_out_loads_insecure_files_from_a_private_copy(plugin: Path) -> None:
    plugin.chmod(0o666)
    with PluginManager(policy=LoadPolicy(allow_insecure_permissions=True), probe=False) as manager:
        [handle] = manager.load_plugins(plugin, PluginTrait.Greeter)
        assert handle.library.load_path != plugin  # untrusted: always a private copy
        assert handle.proxy("English").greet("x") == "Hello, x!"


def test_directory_load_refuses_only_the_insecure_file(plugin: Path, tmp_path: Path) -> None:
    other = tmp_path / "libother.so"
    shutil.copy(plugin, other)
    other.chmod(0o646)
    errors: list[Exception] = []
    with PluginManager() as manager:
        handles = manager.load_plugins(tmp_path, PluginTrait.Greeter, errors=errors)  # type: ignore[arg-type]
        assert [h.path for h in handles] == [plugin]
    [error] = errors
    assert isinstance(error, InsecurePluginError) and "writable by others" in str(error)


def test_sticky_world_writable_directory_is_accepted(plugin: Path, tmp_path: Path) -> None:
    tmp_path.chmod(0o1777)  # like /tmp: others may add files, not replace ours
    try:
        with PluginManager() as manager:
            manager.load_plugins(plugin, PluginTrait.Greeter)
    finally:
        tmp_path.chmod(0o700)


def test_allowlist(plugin: Path) -> None:
    digest = hashlib.sha256(plugin.read_bytes()).hexdigest()
    with PluginManager(policy=LoadPolicy(sha256_allowlist=frozenset({digest.upper()}))) as manager:
        [handle] = manager.load_plugins(plugin, PluginTrait.Greeter)
        assert handle.library.load_path != plugin  # hashed bytes are the loaded bytes
    with PluginManager(policy=LoadPolicy(sha256_allowlist=frozenset({"0" * 64}))) as manager:
        with pytest.raises(InsecurePluginError, match=f"its SHA-256 {digest} is not in the allowlist") as exc:
            manager.load_plugins(plugin, PluginTrait.Greeter)
        assert "sha256_allowlist" in exc.value.opt_out


def test_symlinked_plugin_is_loaded_from_a_copy_of_the_file_judged(plugin: Path, tmp_path: Path) -> None:
    """Trusted by its real path, but not loaded through the link (the loader would follow it again)."""
    links = tmp_path / "links"
    links.mkdir()
    link = links / "libgreeters.so"
    link.symlink_to(plugin)
    for target in (link, links):
        with PluginManager(probe_cache_dir=tmp_path / "cache") as manager:
            [handle] = manager.load_plugins(target, PluginTrait.Greeter)
            copy = handle.library.load_path
            assert handle.path == link and copy not in (link, plugin)
            assert handle.proxy("English").greet("x") == "Hello, x!"
        assert not copy.exists()  # the copy goes at unload, the user's files stay
        assert plugin.is_file() and link.is_symlink()
    assert not (tmp_path / "cache").exists()  # trusted: not probed


@pytest.mark.parametrize("c_checks", [True, False], ids=["C checks on", "C checks off"])
def test_directory_load_judges_each_ancestor_once(
    plugin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, c_checks: bool
) -> None:
    plugins = tmp_path / "a" / "b" / "plugins"
    plugins.mkdir(parents=True)
    for i in range(20):
        shutil.copy(plugin, plugins / f"lib{i}.so")
    ancestors = [str(plugins), *map(str, plugins.parents)]
    calls: Counter[tuple[str, str]] = Counter()
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def counted(path: Any, *args: Any, _name: str = name, _real: Any = real, **kwargs: Any) -> Any:
            if isinstance(path, (str, os.PathLike)) and os.fspath(path) in ancestors:
                calls[_name, os.fspath(path)] += 1
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, counted)
    previous = _accel.set_enabled(c_checks)
    try:
        with PluginManager() as manager:
            assert len(manager.load_plugins(plugins, PluginTrait.Greeter)) == 20
    finally:
        _accel.set_enabled(previous)
    monkeypatch.undo()
    assert calls and max(calls.values()) <= 2, calls  # not once per file
