"""The isolated probe: protocol, cache, blocklist, timeouts (issue 6).

The crashing constructors themselves are in the catalog (test_untrusted.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import CompilePlugin, mapped_paths
from plugin_host import PluginManager, PluginTrait
from plugin_host.admission import ProbeCache, ProbeStatus, probe_library
from plugin_host.admission._probe import PROTOCOL, ProbeKey, run_probe
from plugin_host.errors import BlockedPluginError, MakerReturnedNullError, ProbeCrashedError, ProbeProtocolError
from untrusted_sources import DESCRIPTOR_SOURCE, GREETER, HOSTILE_DATA

pytestmark = pytest.mark.usefixtures("probe_mode")


def test_clean_probe_is_cached(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    lib = example_plugins["greeters"]
    first = probe_library(lib, cache_dir=tmp_path)
    assert first.clean and not first.cached and first.made == 3 and first.duration_s > 0
    second = probe_library(lib, cache_dir=tmp_path)
    assert second.clean and second.cached and second.duration_s == 0
    entries = json.loads((tmp_path / "probe-cache.json").read_text())["entries"]
    [(key, entry)] = entries.items()
    assert entry["status"] == "clean" and f":{lib}:plugin-host " in key  # the file, then the host that probed it


def test_host_owned_makers_run_in_the_child(example_plugins: dict[str, Path]) -> None:
    result = probe_library(example_plugins["host_owned"], use_cache=False)
    assert result.clean and result.made == 2


def test_maker_null_is_left_to_the_host(test_plugins: dict[str, Path], tmp_path: Path) -> None:
    lib = test_plugins["null_maker"]
    result = probe_library(lib, cache_dir=tmp_path)
    assert not result.clean and any("returned NULL" in p for p in result.problems)
    assert not (tmp_path / "probe-cache.json").exists()  # neither cached nor blocked
    with PluginManager(probe=True, probe_cache_dir=tmp_path) as manager, pytest.raises(MakerReturnedNullError):
        manager.load_plugins(lib, PluginTrait.Greeter)


def test_blocked_until_the_file_changes(compile_plugin: CompilePlugin, tmp_path: Path) -> None:
    bad = compile_plugin("ctor", GREETER, defines=("CTOR_SEGFAULT",))
    good = compile_plugin("ctor", GREETER)
    target = tmp_path / "plugins" / "libctor.so"
    target.parent.mkdir()
    shutil.copy(bad, target)
    cache = tmp_path / "cache"
    with PluginManager(probe=True, probe_cache_dir=cache) as manager:
        with pytest.raises(ProbeCrashedError) as exc:
            manager.load_plugins(target, PluginTrait.Greeter)
        assert exc.value.signal == 11 and exc.value.signal_name == "SIGSEGV"
        with pytest.raises(BlockedPluginError, match="SIGSEGV") as blocked:
            manager.load_plugins(target, PluginTrait.Greeter)
        assert blocked.value.path == str(target)
        shutil.copy(good, target)  # changed: probed again, loads
        [handle] = manager.load_plugins(target, PluginTrait.Greeter)
        assert handle.proxy("Sayer").greet("x") == "Hello, x!"


def test_restart_does_not_reprobe(
    example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = example_plugins["multi_trait"]
    with PluginManager(probe=True, probe_cache_dir=tmp_path) as manager:
        manager.load_plugins(lib, PluginTrait.Greeter)
    import plugin_host.admission._probe as probe_module

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("probed again")

    monkeypatch.setattr(probe_module, "run_probe", no_child)
    with PluginManager(probe=True, probe_cache_dir=tmp_path) as manager:  # a "restart"
        [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
        assert handle.is_loaded


def test_protocol_version_mismatch(example_plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import plugin_host.admission._probe as probe_module

    monkeypatch.setattr(probe_module, "PROTOCOL", PROTOCOL + 1)
    with pytest.raises(ProbeProtocolError, match="handshake") as exc:
        run_probe(example_plugins["greeters"], [])
    assert exc.value.path == str(example_plugins["greeters"])


def test_report_size_cap(example_plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import plugin_host.admission._probe as probe_module

    monkeypatch.setattr(probe_module, "MAX_REPORT_BYTES", 16)
    with pytest.raises(ProbeProtocolError, match="more than 16 bytes"):
        run_probe(example_plugins["greeters"], [PluginTrait.Greeter.spec])


def test_cache_keys_and_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "probe-cache.json").write_text("{not json")
    cache = ProbeCache(tmp_path)
    st = os.stat(tmp_path)
    key = ProbeKey.of(tmp_path / "libx.so", st, "ab" * 32)
    assert cache.get(key) is None
    cache.put(key, ProbeStatus.BLOCKED, "ProbeTimeoutError: ...")
    assert ProbeCache(tmp_path).get(key) == {
        "status": "blocked",
        "reason": "ProbeTimeoutError: ...",
        "time": pytest.approx(cache.get(key)["time"]),
    }  # type: ignore[index]
    changed = ProbeKey(key.path, key.size + 1, key.mtime_ns, key.sha256)
    assert ProbeCache(tmp_path).get(changed) is None


# ---- the probe runs the host's own pipeline ------------------------------------------

#: Registration data only the host's own reads trip over: the makers and unmakers
#: are fine, so a probe that ran only them called these "clean".
HOSTILE = ["GARBAGE_TRAIT_NAME", "GARBAGE_TYPE_NAME", "GARBAGE_VTABLE", "COUNTER_AS_DATA", "ABS_DESCRIPTOR"]


def _hostile(compile_plugin: CompilePlugin, define: str | None, c_path: bool) -> Path:
    sources = {"hostile.c": HOSTILE_DATA}
    if c_path and define != "ABS_DESCRIPTOR":
        sources["descriptor.c"] = DESCRIPTOR_SOURCE
    return compile_plugin("hostile", sources, defines=(define,) if define else ())


@pytest.mark.parametrize("c_path", [False, True], ids=["python-path", "c-path"])
@pytest.mark.parametrize("define", HOSTILE)
def test_the_probe_catches_what_only_the_hosts_reads_reveal(
    compile_plugin: CompilePlugin, tmp_path: Path, define: str, c_path: bool
) -> None:
    lib = _hostile(compile_plugin, define, c_path)
    with PluginManager(probe=True, probe_cache_dir=tmp_path) as manager:
        with pytest.raises(ProbeCrashedError) as exc:
            manager.load_plugins(lib, PluginTrait.Greeter)
        assert exc.value.path == str(lib)
        assert exc.value.signal_name in ("SIGSEGV", "SIGBUS")
        assert not manager.is_loaded(lib)
        with pytest.raises(BlockedPluginError):  # and on every restart, until the file changes
            manager.load_plugins(lib, PluginTrait.Greeter)
    assert str(lib) not in mapped_paths()


@pytest.mark.parametrize("c_path", [False, True], ids=["python-path", "c-path"])
def test_the_good_variant_of_the_hostile_plugin_is_clean(
    compile_plugin: CompilePlugin, tmp_path: Path, c_path: bool
) -> None:
    lib = _hostile(compile_plugin, None, c_path)
    result = probe_library(lib, cache_dir=tmp_path)
    assert result.clean and result.made == 1
    with PluginManager(probe=True, probe_cache_dir=tmp_path) as manager:
        [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
        assert handle.proxy("Data").greet("x") == "Data, x!"
        assert manager.unload_by_path(lib) == {"Greeter": 1}


def test_an_upgraded_host_probes_again(
    example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugin_host.admission._probe as probe_module

    lib = example_plugins["greeters"]
    assert not probe_library(lib, cache_dir=tmp_path).cached
    assert probe_library(lib, cache_dir=tmp_path).cached
    monkeypatch.setattr(probe_module, "_host_version", lambda: "99.0")
    again = probe_library(lib, cache_dir=tmp_path)
    assert again.clean and not again.cached  # the verdict of another host version is not reused
    entries = json.loads((tmp_path / "probe-cache.json").read_text())["entries"]
    assert len(entries) == 2 and any("plugin-host 99.0/" in key for key in entries)


def test_the_probe_runs_only_traits_the_host_knows_and_the_file_names(example_plugins: dict[str, Path]) -> None:
    lib = example_plugins["multi_trait"]
    result = probe_library(lib, use_cache=False)
    with PluginManager(probe=False) as manager:
        made = sum(len(h.type_names) for t in PluginTrait for h in manager.load_plugins(lib, t))
    assert result.clean and made == 3 and result.made == made  # its Greeters and its Transformer


def test_a_discovery_load_reads_what_the_probe_read_first(compile_plugin: CompilePlugin, tmp_path: Path) -> None:
    """load_plugins(path) with no trait reads every embedded declaration: the probe does too, first."""
    lib = compile_plugin("hostile", {"hostile.c": HOSTILE_DATA}, defines=("ABS_DECLARATION",))
    with PluginManager(probe=True, probe_cache_dir=tmp_path) as manager:
        with pytest.raises(ProbeCrashedError) as exc:
            manager.load_plugins(lib)
        assert exc.value.step == "plugin_trait_declaration_Greeter_v1"


def test_a_helper_process_started_by_a_constructor_is_not_a_hang(compile_plugin: CompilePlugin, tmp_path: Path) -> None:
    lib = compile_plugin("forking", GREETER, defines=("CTOR_FORK",))
    result = probe_library(lib, cache_dir=tmp_path, timeout_s=20)
    assert result.clean and result.duration_s < 20  # not a ProbeTimeoutError after the whole timeout


def test_a_cache_another_user_could_write_is_not_trusted(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    lib = example_plugins["greeters"]
    cache = tmp_path / "cache"
    assert not probe_library(lib, cache_dir=cache).cached
    assert probe_library(lib, cache_dir=cache).cached
    os.chmod(cache / "probe-cache.json", 0o666)  # anyone could have forged a "clean" verdict
    assert not probe_library(lib, cache_dir=cache).cached  # so it is probed again
    os.chmod(cache / "probe-cache.json", 0o600)
    os.chmod(cache, 0o777)
    assert not probe_library(lib, cache_dir=cache).cached
