"""Typed proxies: conversions, ownership at the call boundary, argument
checking before the call, and concurrent calls racing an unload."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import CompilePlugin
from plugin_host import PluginManager, PluginTrait
from plugin_host.registry import TraitProxy, proxy_class
from plugin_interface import PluginCallError, PluginUnloadedError


@pytest.fixture
def manager() -> PluginManager:
    with PluginManager() as m:
        yield m  # type: ignore[misc]


def transformers(manager: PluginManager, example_plugins: dict[str, Path]) -> dict[str, TraitProxy]:
    [handle] = manager.load_plugins(example_plugins["multi_trait"], PluginTrait.Transformer)
    return {p.type_name: p for p in handle.proxies()}


def test_proxy_class_is_generated_from_the_declaration() -> None:
    cls = proxy_class(PluginTrait.Greeter.spec)
    assert cls.__name__ == "GreeterProxy"
    assert cls.greet.__doc__ and "greeting" in cls.greet.__doc__
    assert proxy_class(PluginTrait.Greeter.spec) is cls


def test_buffer_is_transformed_in_place_without_copy(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    upper = transformers(manager, example_plugins)["Upper"]
    data = bytearray(b"abc-XYZ")
    view = memoryview(data)[2:5]
    assert upper.transform(view) == 1  # only 'c' is lower case in "c-X"
    assert data == bytearray(b"abC-XYZ")
    big = bytearray(b"x" * (1 << 20))
    assert upper.transform(big) == 1 << 20
    assert big[:3] == b"XXX"


def test_read_only_buffer_is_refused_before_the_call(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    upper = transformers(manager, example_plugins)["Upper"]
    with pytest.raises(BufferError, match="writable"):
        upper.transform(b"immutable")


def test_wrong_argument_count_and_type_raise_before_the_call(
    manager: PluginManager, example_plugins: dict[str, Path]
) -> None:
    [handle] = manager.load_plugins(example_plugins["multi_trait"], PluginTrait.Greeter)
    counting = handle.proxy("Counting")
    with pytest.raises(TypeError):
        counting.greet()  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        counting.greet("a", "b")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        counting.greet(42)  # type: ignore[attr-defined]
    # None of the refused calls reached the plugin: its call counter is at 1.
    assert counting.greet("world") == "Hello #1, world!"  # type: ignore[attr-defined]


def test_stateful_instance_keeps_state_per_registration(
    manager: PluginManager, example_plugins: dict[str, Path]
) -> None:
    [handle] = manager.load_plugins(example_plugins["multi_trait"], PluginTrait.Greeter)
    p = handle.proxy("Counting")
    assert [p.greet("a") for _ in range(3)] == ["Hello #1, a!", "Hello #2, a!", "Hello #3, a!"]  # type: ignore[attr-defined]


def test_unicode_round_trip(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
    assert handle.proxy("French").greet("Zoë 🌍") == "Bonjour, Zoë 🌍!"  # type: ignore[attr-defined]


def test_null_string_result_is_a_typed_error(manager: PluginManager, compile_plugin: CompilePlugin) -> None:
    lib = compile_plugin(
        "nullresult",
        """
        #include "plugin_annotations.h"
        #include "plugin_trait_greeter.h"
        static char *g(void *self, const char *n) { (void)self; (void)n; return NULL; }
        PLUGIN_IMPL(Greeter, Silent, .greet = g)
        PLUGIN_AGGREGATES(Greeter)
        """,
    )
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    with pytest.raises(PluginCallError, match="Greeter.Silent.greet returned NULL") as exc:
        handle.proxy("Silent").greet("x")  # type: ignore[attr-defined]
    assert exc.value.path == str(lib)


def test_unknown_type_name_lists_the_known_ones(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
    with pytest.raises(KeyError, match="English"):
        handle.proxy("Klingon")


def test_calls_racing_an_unload_never_crash(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    """8 threads call while the library is unloaded: each call either answers or
    raises PluginUnloadedError, and the unload waits for calls in flight."""
    [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
    proxies = handle.proxies()
    start = threading.Barrier(9)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        local = []
        for i in range(5000):
            p = proxies[i % len(proxies)]
            try:
                assert "world" in p.greet("world")  # type: ignore[attr-defined]
                local.append("ok")
            except PluginUnloadedError:
                local.append("unloaded")
                break
        with lock:
            outcomes.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    start.wait()
    counters = manager.unload_by_path(handle.path)
    for t in threads:
        t.join()
    assert counters == {"Greeter": 3}
    assert set(outcomes) <= {"ok", "unloaded"}
    assert outcomes.count("unloaded") <= 8
