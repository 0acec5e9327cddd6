"""Typed proxies: conversions, ownership at the call boundary, argument
checking before the call, and concurrent calls racing an unload.

Every test runs on both call paths (the ``call_path`` fixture): the compiled call engine and pure Python.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import cffi
import pytest
from conftest import CompilePlugin, is_compiled, run_isolated
from plugin_host import PluginManager, PluginTrait
from plugin_host.registry import TraitProxy, proxy_class
from plugin_interface import ArgumentBufferError, PluginCallError, PluginUnloadedError

#: A hang detector, not a timing: a pass takes a fraction of a second.
HANG_TIMEOUT_S = 30.0

pytestmark = pytest.mark.usefixtures("call_path")

#: The Greeter with its method marked long-running: the GIL is released around the calls, so a call
#: that waits for another Python thread (the spinner's) can be waited for.  Not ABI: it loads Greeter plugins.
LONG_RUNNING_GREETER = PluginTrait.Greeter.spec.replace(long_running=True)

SPINNER_C = """
    /* spinner.c -- demonstrates a call held inside the plugin: greet spins
     * until release() is called (from outside any gate). */
    #include <stdatomic.h>

    #include "plugin_annotations.h"
    #include "plugin_trait_greeter.h"

    static atomic_int entered;
    static atomic_int released;

    static char *spin(void *self, const char *name) {
        (void)self;
        atomic_store(&entered, 1);
        while (!atomic_load(&released)) {
        }
        return plugin_string_format("Hello, %s!", name);
    }

    PLUGIN_EXPORT int has_entered(void) { return atomic_load(&entered); }
    PLUGIN_EXPORT void release(void) { atomic_store(&released, 1); }

    PLUGIN_IMPL(Greeter, Spinner, .greet = spin)
    PLUGIN_AGGREGATES(Greeter)
"""

RAISER_C = """
    /* raiser.c -- demonstrates a signal delivered during a plugin call:
     * Raiser.greet raises SIGUSR1 on the calling thread before answering. */
    #include <signal.h>

    #include "plugin_annotations.h"
    #include "plugin_trait_greeter.h"

    static char *raising(void *self, const char *name) {
        (void)self;
        raise(SIGUSR1);
        return plugin_string_format("Raised, %s!", name);
    }

    static char *plain(void *self, const char *name) {
        (void)self;
        return plugin_string_format("Plain, %s!", name);
    }

    PLUGIN_IMPL(Greeter, Raiser, .greet = raising)
    PLUGIN_IMPL(Greeter, Plain, .greet = plain)
    PLUGIN_AGGREGATES(Greeter)
"""


@pytest.fixture
def manager(call_path: str) -> PluginManager:
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
    with pytest.raises(ArgumentBufferError, match="data: the buffer is read-only, MutBuffer is written to") as e:
        upper.transform(b"immutable")
    assert isinstance(e.value, BufferError)  # what cffi raised before: `except BufferError` still works
    assert e.value.symbol == "Transformer.Upper.transform" and e.value.path == upper.path
    assert isinstance(e.value.__cause__, BufferError) and "not writable" in str(e.value.__cause__)


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
    manager: PluginManager, example_plugins: dict[str, Path], call_path: str
) -> None:
    [handle] = manager.load_plugins(example_plugins["multi_trait"], PluginTrait.Greeter)
    p = handle.proxy("Counting")
    assert is_compiled(p.greet) is (call_path == "engine")  # type: ignore[attr-defined]
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


def _join_all(threads: list[threading.Thread], timeout_s: float = HANG_TIMEOUT_S) -> list[threading.Thread]:
    """Join each thread within the hang bound; the ones still alive."""
    for t in threads:
        t.join(timeout_s)
    return [t for t in threads if t.is_alive()]


def test_refused_calls_do_not_hold_up_a_release(manager: PluginManager, compile_plugin: CompilePlugin) -> None:
    """A call refused after the release began is not waited for, however long it takes to back out.

    Before, a refused call sat in the same in-flight list as the calls inside
    the plugin, so a caller preempted in its refusal (here: held there) kept
    the release waiting; with 8 threads retrying, it never saw the list empty.
    """
    lib = compile_plugin("spinner", SPINNER_C)
    [handle] = manager.load_plugins(lib, LONG_RUNNING_GREETER)
    spinner = handle.proxy("Spinner")
    ffi = cffi.FFI()
    # Raw pointers, outside the gate: the only way to reach C while the release waits.
    has_entered = ffi.cast("int(*)(void)", handle.library.symbol("has_entered"))
    release = ffi.cast("void(*)(void)", handle.library.symbol("release"))
    refusing, proceed = threading.Event(), threading.Event()

    class SlowToRefuse(proxy_class(PluginTrait.Greeter.spec)):  # type: ignore[misc]
        """A real proxy of the same registration that lingers in its refusal."""

        __slots__ = ()

        def _unloaded(self, method: str) -> PluginUnloadedError:
            refusing.set()
            proceed.wait(4 * HANG_TIMEOUT_S)  # longer than the join below: set by the test
            return super()._unloaded(method)  # type: ignore[no-any-return]

    regset = handle.registration_set
    slow = SlowToRefuse(regset, regset.registrations[0])
    results: list[object] = []

    def call(proxy: TraitProxy) -> None:
        try:
            results.append(proxy.greet("a"))  # type: ignore[attr-defined]
        except PluginUnloadedError as e:
            results.append(e)

    inside = threading.Thread(target=call, args=(spinner,))
    inside.start()
    closer = threading.Thread(target=manager.unload_by_path, args=(lib,))
    late = threading.Thread(target=call, args=(slow,))
    while not has_entered():
        pass
    closer.start()
    try:
        while spinner.is_alive:  # the release has begun: it refuses new calls first
            pass
        late.start()
        assert refusing.wait(HANG_TIMEOUT_S)
    finally:
        release()  # the call inside returns (once only: the library is unmapped after it)
    try:
        assert not _join_all([closer, inside]), "the release waited for a refused call"
    finally:
        proceed.set()
        _join_all([closer, inside, late])
    assert results[0] == "Hello, a!"
    assert isinstance(results[1], PluginUnloadedError)
    assert not manager.is_loaded(lib)


@pytest.mark.parametrize("release", ["unload_by_path", "reload"])
def test_a_release_ends_while_eight_threads_keep_calling(
    release: str, manager: PluginManager, example_plugins: dict[str, Path], tmp_path: Path
) -> None:
    """8 threads retry the old proxies without pause (refused calls included) while
    the owner releases: the release waits only for the calls inside the plugin."""
    lib = tmp_path / "libgreeters.so"
    shutil.copy(example_plugins["greeters"], lib)
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    proxies = handle.proxies()
    stop = threading.Event()
    outcomes: dict[str, int] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def hammer() -> None:
        local = {"ok": 0, "unloaded": 0}
        try:
            while not stop.is_set():
                for p in proxies:
                    try:
                        p.greet("w")  # type: ignore[attr-defined]
                        local["ok"] += 1
                    except PluginUnloadedError:
                        local["unloaded"] += 1
        except BaseException as e:  # reported below, never silent
            failures.append(e)
        with lock:
            for k, v in local.items():
                outcomes[k] = outcomes.get(k, 0) + v

    workers = [threading.Thread(target=hammer) for _ in range(8)]
    for t in workers:
        t.start()
    actions: dict[str, Callable[[], object]] = {
        "unload_by_path": lambda: manager.unload_by_path(lib),
        "reload": lambda: manager.reload(lib, PluginTrait.Greeter),
    }
    owner = threading.Thread(target=actions[release])
    try:
        while not outcomes and not any(p.is_alive for p in proxies):
            pass
        owner.start()
        assert not _join_all([owner]), f"{release} did not return while 8 threads kept calling"
    finally:
        stop.set()
        _join_all([owner, *workers])
    assert not failures, failures
    assert not any(p.is_alive for p in proxies)
    assert outcomes["unloaded"] > 0  # the workers did hammer the closed gate
    assert manager.is_loaded(lib) is (release == "reload")


_SIGNAL_CHILD = """
import signal
from plugin_host import PluginManager, PluginTrait
from plugin_host.loading import _engine
from plugin_interface import PluginUnloadedError, ReleaseInsideCallError

_engine.set_enabled({engine})
lib = {lib!r}
manager = PluginManager()
[handle] = manager.load_plugins({source!r}, PluginTrait.Greeter)
raiser, plain = handle.proxy("Raiser"), handle.proxy("Plain")
assert (type(raiser.greet).__name__ == "builtin_function_or_method") is {engine}

def on_signal(signum, frame):
    {action}  # the usual shutdown (or reload) from a handler

signal.signal(signal.SIGUSR1, on_signal)
try:
    raiser.greet("x")
except* ReleaseInsideCallError as group:  # close() (unload_all) groups what each file raised
    [e] = group.exceptions
    print("refused:", type(e).__name__, e.symbol, e.path == lib, "|", e)
print("still serving:", plain.greet("y"), handle.is_loaded)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
print("current:", manager.get_handles(lib)[0].proxy("Plain").greet("z"))
print("closed:", manager.unload_by_path(lib), raiser.is_alive, manager.handles)
"""


@pytest.mark.parametrize("where", ["file", "directory"])  # a directory load's sets are made in one call into C
@pytest.mark.parametrize("action", ["manager.close()", "manager.reload(lib, PluginTrait.Greeter)"])
def test_a_release_from_a_signal_handler_inside_a_call_is_refused(
    action: str, where: str, compile_plugin: CompilePlugin, tmp_path: Path, call_path: str
) -> None:
    """SIGUSR1 arrives while the main thread is inside the plugin; its handler releases.

    Waiting would wait for the very call the handler interrupts: before, the
    process hung for good.  Now the handler's release raises a typed error that
    propagates out of the call, nothing is lost, and a release after the call works.
    """
    lib = compile_plugin("raiser", RAISER_C)
    if where == "directory":
        (tmp_path / "plugins").mkdir()
        lib = Path(shutil.copy(lib, tmp_path / "plugins" / lib.name))
    source = lib if where == "file" else lib.parent
    code = _SIGNAL_CHILD.format(lib=str(lib), source=str(source), action=action, engine=call_path == "engine")
    proc = run_isolated(code, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("refused: ReleaseInsideCallError plugin_register_all_Greeter_v1 True |"), lines
    assert "cannot release from inside a call through it" in lines[0] and "greet()" in lines[0]
    # After a refused close the version is untouched; after a refused reload the new
    # version serves and the old one, retired, still answers until unloaded.
    assert lines[1] == "still serving: Plain, y! True"
    assert lines[2] == "current: Plain, z!"
    # Every version is released at last: the final counter says both unmakers ran.
    assert lines[3] == "closed: {'Greeter': 2} False []"
