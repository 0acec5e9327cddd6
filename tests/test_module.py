"""DynamicModule: name resolution, C signatures, explicit lifetime (real compiled libraries).

Every test runs on both call paths (the ``call_path`` fixture): the compiled call engine and pure Python.
"""

from __future__ import annotations

import ctypes.util
import shutil
import sys
import threading
from pathlib import Path

import cffi
import pytest
from conftest import CompilePlugin, is_compiled, mapped_paths
from plugin_host import DynamicModule
from plugin_host.loading import ModuleFunction, find_module, parse_signature
from plugin_interface import (
    ArgumentOverflowError,
    CallArgumentError,
    ModuleNotFoundInPathsError,
    NotASharedLibraryError,
    PluginUnloadedError,
    SignatureError,
    SymbolNotFoundError,
    library_filename,
)

#: A hang detector, not a timing: a pass takes a fraction of a second.
HANG_TIMEOUT_S = 30.0

pytestmark = pytest.mark.usefixtures("call_path")

# An ordinary C library (no plugin ABI): a counter kept in a static variable,
# a spin function to hold a call in flight while another thread closes, and
# a function that raises a signal on the calling thread.
COUNTER_C = """
    /* counter.c -- static state for DynamicModule lifetime tests. */
    #include <signal.h>
    #include <stdatomic.h>
    #include <stddef.h>
    #include <string.h>

    #include "plugin_interface.h"

    #ifndef WHICH
    #define WHICH 0
    #endif

    static int counter;
    static atomic_int entered;
    static atomic_int released;

    PLUGIN_EXPORT void c_ffi_function(void) { counter++; }
    PLUGIN_EXPORT int counter_get(void) { return counter; }
    PLUGIN_EXPORT int add(int a, int b) { counter++; return a + b; }
    PLUGIN_EXPORT double scale(double x, unsigned char by) { counter++; return x * by; }
    PLUGIN_EXPORT size_t text_length(const char *text) { counter++; return strlen(text); }
    PLUGIN_EXPORT int which(void) { return WHICH; }
    PLUGIN_EXPORT int raise_signal(int sig) { raise(sig); return 7; }

    PLUGIN_EXPORT int spin_until_released(void) {
        atomic_store(&entered, 1);
        while (!atomic_load(&released)) {
        }
        return 42;
    }
    PLUGIN_EXPORT int has_entered(void) { return atomic_load(&entered); }
    PLUGIN_EXPORT void release(void) { atomic_store(&released, 1); }
"""


@pytest.fixture(scope="module")
def counter_dir(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding libcounter.so (WHICH=1)."""
    out = tmp_path_factory.mktemp("counter-first")
    compile_plugin("counter", COUNTER_C, defines=("WHICH=1",), out_dir=out)
    return out


@pytest.fixture(scope="module")
def counter_dir_second(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another directory holding a libcounter.so that says WHICH=2."""
    out = tmp_path_factory.mktemp("counter-second")
    compile_plugin("counter", COUNTER_C, defines=("WHICH=2",), out_dir=out)
    return out


# ---- name resolution ---------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "expected"),
    [("linux", "libmy_plugin.so"), ("win32", "my_plugin.dll"), ("darwin", "libmy_plugin.dylib")],
)
def test_naming_rule_of_each_platform(platform: str, expected: str) -> None:
    assert library_filename("my_plugin", platform) == expected


def test_finds_the_platform_file_name_in_search_paths(counter_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with DynamicModule("counter", search_paths=[empty, counter_dir]) as mod:
        assert mod.path == str(counter_dir / library_filename("counter"))
        assert Path(mod.path).name == library_filename("counter")
        assert mod.invoke("which", "int(void)") == 1


def test_search_paths_are_tried_in_order(counter_dir: Path, counter_dir_second: Path) -> None:
    with DynamicModule("counter", [counter_dir_second, counter_dir]) as mod:
        assert mod.invoke("which", "int(void)") == 2
    with DynamicModule("counter", [counter_dir, counter_dir_second]) as mod:
        assert mod.invoke("which", "int(void)") == 1


def test_full_file_name_and_explicit_path(counter_dir: Path) -> None:
    file_name = library_filename("counter")
    with DynamicModule(file_name, [counter_dir], system=False) as mod:
        assert mod.invoke("which", "int(void)") == 1
    with DynamicModule(counter_dir / file_name) as mod:
        assert mod.path == str(counter_dir / file_name)


def test_not_found_lists_every_place_tried(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with pytest.raises(ModuleNotFoundInPathsError, match="no_such_module_i5: no shared library found") as exc:
        DynamicModule("no_such_module_i5", [a, b])
    expected = [str(a / library_filename("no_such_module_i5")), str(b / library_filename("no_such_module_i5"))]
    assert exc.value.name == "no_such_module_i5"
    assert exc.value.searched[:2] == expected
    assert "find_library" in exc.value.searched[2]
    for place in expected:
        assert place in str(exc.value)
    assert "current directory is never searched" in str(exc.value)


def test_missing_explicit_path(tmp_path: Path) -> None:
    with pytest.raises(ModuleNotFoundInPathsError) as exc:
        DynamicModule(tmp_path / "libnothing.so")
    assert exc.value.searched == [str(tmp_path / "libnothing.so")]


def test_current_directory_is_never_searched(
    counter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    shutil.copy(counter_dir / library_filename("counter"), here / library_filename("cwd_only_i5"))
    monkeypatch.chdir(here)
    with pytest.raises(ModuleNotFoundInPathsError) as exc:
        DynamicModule("cwd_only_i5", system=False)
    assert exc.value.searched == []
    with pytest.raises(ModuleNotFoundInPathsError):
        DynamicModule("cwd_only_i5")  # nor by the system loader
    # An explicit relative search path is fine: the caller named it.
    with DynamicModule("cwd_only_i5", ["."], system=False) as mod:
        assert mod.path == str(here / library_filename("cwd_only_i5"))


def test_search_paths_must_be_a_list(counter_dir: Path) -> None:
    with pytest.raises(TypeError, match="list of directories"):
        DynamicModule("counter", str(counter_dir))  # type: ignore[arg-type]


def test_a_text_file_is_not_a_library(tmp_path: Path) -> None:
    (tmp_path / library_filename("text")).write_text("INPUT(-lc)\n")  # like glibc's libc.so linker script
    with pytest.raises(NotASharedLibraryError, match="unrecognised file format") as exc:
        DynamicModule("text", [tmp_path])
    assert exc.value.path == str(tmp_path / library_filename("text"))


@pytest.mark.skipif(ctypes.util.find_library("m") is None, reason="no libm known to the system loader")
def test_system_library_by_name() -> None:
    with DynamicModule("m") as libm:
        if sys.platform.startswith("linux"):
            assert libm.path.startswith("libm.so")  # a soname the loader resolves
        assert libm.invoke("cos", "double(double)", 0.0) == 1.0
        assert libm.function("pow", "double pow(double x, double y)")(2, 10) == 1024.0


def test_find_module_returns_what_the_loader_opens(counter_dir: Path) -> None:
    assert find_module("counter", [counter_dir]) == str(counter_dir / library_filename("counter"))


# ---- signatures --------------------------------------------------------------


def test_signature_parsing_and_cache() -> None:
    sig = parse_signature("int(int, int)")
    assert sig.nargs == 2
    assert sig.spelling == "int(*)(int, int)"
    assert parse_signature("int(int, int)") is sig
    assert parse_signature("int add(int a, int b)").spelling == "int(*)(int, int)"
    assert parse_signature("void(void)").nargs == 0
    assert parse_signature("size_t(const char *)").char_params == {0}


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("", "empty signature"),
        ("int(int", "cannot parse"),
        ("nosuchtype(int)", "cannot parse"),
        ("int", "is not a function type"),
        ("char *", "is not a function type"),
        ("int(int, ...)", "variadic"),
        ("struct opaque(int)", "struct opaque"),
        ("int(void, int)", "void"),
        ("int(int); int evil(void)", "one function type only"),
        ("double _Complex(double _Complex)", "double _Complex cannot be passed to or returned from a call in cffi"),
        ("int(int, float _Complex)", "float _Complex cannot be passed"),
        (42, "a signature is a string"),
    ],
)
def test_signature_errors(signature: str, reason: str) -> None:
    with pytest.raises(SignatureError, match="bad C signature") as exc:
        parse_signature(signature)
    assert exc.value.signature == signature
    assert reason in exc.value.detail


def test_signature_error_names_the_symbol(counter_dir: Path) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        with pytest.raises(SignatureError, match=r"^add: bad C signature 'int\(int, int': cannot parse") as exc:
            mod.invoke("add", "int(int, int", 2, 3)
        assert exc.value.symbol == "add"
        assert exc.value.signature == "int(int, int"


def test_complex_types_are_refused_for_what_they_are_not_as_variadic() -> None:
    with pytest.raises(SignatureError, match="ABI mode") as exc:
        parse_signature("double _Complex cexp(double _Complex z)")
    assert "variadic" not in str(exc.value)
    assert parse_signature("void(double _Complex *)").nargs == 1  # a pointer to one is fine


@pytest.mark.parametrize("symbol", ["add\0evil", "add\0", "\0"])
def test_a_symbol_name_with_a_nul_is_not_found(counter_dir: Path, symbol: str) -> None:
    # The loader would look up the name up to the NUL ("add"): another symbol.
    with DynamicModule("counter", [counter_dir]) as mod:
        assert not mod.has_symbol(symbol)
        for look_up in (mod.address, mod.function, lambda s: mod.invoke(s, "int(int, int)", 1, 2)):
            with pytest.raises(SymbolNotFoundError, match="has no NUL character") as exc:
                look_up(symbol)
            assert exc.value.symbol == symbol
            assert exc.value.path == mod.path


def test_a_symbol_name_with_a_lone_surrogate_is_not_found(counter_dir: Path) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        assert not mod.has_symbol("add\udc80")
        with pytest.raises(SymbolNotFoundError, match="is not exported") as exc:
            mod.function("add\udc80", "int(int, int)")
        assert exc.value.symbol == "add\udc80"


def test_a_str_argument_with_a_lone_surrogate_is_a_call_argument_error(counter_dir: Path) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        length = mod.function("text_length", "size_t(const char *)")
        with pytest.raises(CallArgumentError, match=r"text_length \(size_t\(const char \*\)\): argument 1") as exc:
            length("ab\udc80")
        assert "surrogates not allowed" in str(exc.value)
        assert exc.value.symbol == "text_length"
        assert exc.value.path == mod.path
        assert mod.invoke("counter_get", "int(void)") == 0  # the C function never ran
        assert length("ok") == 2


def test_missing_symbol(counter_dir: Path) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        assert not mod.has_symbol("nope")
        with pytest.raises(SymbolNotFoundError, match=r"libcounter\.\w+: symbol nope is not exported") as exc:
            mod.function("nope", "int(void)")
        assert exc.value.symbol == "nope"
        assert exc.value.path == mod.path


def test_invoke_and_function(counter_dir: Path, call_path: str) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        assert mod.invoke("c_ffi_function") is None
        assert mod.invoke("add", "int(int, int)", 2, 3) == 5
        add = mod.function("add", "int(int, int)")
        assert is_compiled(add) is (call_path == "engine")
        assert isinstance(add, ModuleFunction)
        assert add is mod.function("add", "int(int, int)")
        assert [add(i, i) for i in range(3)] == [0, 2, 4]
        assert mod.invoke("scale", "double(double, unsigned char)", 1.5, 4) == 6.0
        assert mod.invoke("text_length", "size_t(const char *)", "héllo") == 6  # str -> UTF-8
        assert mod.invoke("text_length", "size_t(const char *)", b"abc") == 3
        assert mod.invoke("counter_get", "int(void)") == 8  # every call above ran once


@pytest.mark.parametrize(
    ("symbol", "signature", "args", "reason"),
    [
        ("add", "int(int, int)", (1,), "takes 2 argument(s), got 1"),
        ("add", "int(int, int)", (1, 2, 3), "takes 2 argument(s), got 3"),
        ("add", "int(int, int)", ("1", 2), "an integer is required"),
        ("add", "int(int, int)", (2**40, 2), "does not fit"),
        ("scale", "double(double, unsigned char)", (1.0, 256), "does not fit"),
        ("text_length", "size_t(const char *)", (12,), "initializer for ctype 'char *'"),
    ],
)
def test_wrong_arguments_raise_before_the_call(
    counter_dir: Path, symbol: str, signature: str, args: tuple[object, ...], reason: str
) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        with pytest.raises(CallArgumentError, match=f"{symbol} \\(") as exc:
            mod.invoke(symbol, signature, *args)
        assert exc.value.symbol == symbol
        assert exc.value.signature == signature
        assert reason in exc.value.detail
        assert isinstance(exc.value, TypeError)
        assert mod.invoke("counter_get", "int(void)") == 0  # the C function never ran


@pytest.mark.parametrize(
    ("symbol", "signature", "args", "error", "builtin", "detail"),
    [
        ("add", "int(int, int)", ("1", 2), CallArgumentError, TypeError, "argument 1: int cannot take '1': an integer"),
        ("add", "int(int, int)", (1, 2**40), ArgumentOverflowError, OverflowError, "argument 2: int cannot take 10995"),
        ("add", "int(int, int)", (1, None), CallArgumentError, TypeError, "argument 2: int cannot take None"),
        ("scale", "double(double, unsigned char)", (1.0, 256), ArgumentOverflowError, OverflowError,
         "argument 2: unsigned char cannot take 256: integer 256 does not fit"),
        ("scale", "double(double, unsigned char)", (1.0, -1), ArgumentOverflowError, OverflowError,
         "argument 2: unsigned char cannot take -1"),
        ("scale", "double(double, unsigned char)", (2**1024, 1), ArgumentOverflowError, OverflowError,
         "argument 1: double cannot take 1797"),
        ("scale", "double(double, unsigned char)", ("x", 1), CallArgumentError, TypeError,
         "argument 1: double cannot take 'x': must be real number"),
        ("text_length", "size_t(const char *)", (12,), CallArgumentError, TypeError, "argument 1: char * cannot take"),
        ("text_length", "size_t(const char *)", (bytearray(b"x"),), CallArgumentError, TypeError,
         "argument 1: char * cannot take bytearray(b'x')"),
    ],
)  # fmt: skip
def test_every_bad_argument_is_a_typed_error_naming_the_argument(
    counter_dir: Path,
    symbol: str,
    signature: str,
    args: tuple[object, ...],
    error: type[CallArgumentError],
    builtin: type[Exception],
    detail: str,
) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        function = mod.function(symbol, signature)
        with pytest.raises(error) as exc:
            function(*args)
        assert type(exc.value) is error and isinstance(exc.value, builtin)  # `except OverflowError` still works
        assert exc.value.reason is error.REASON
        assert exc.value.path == mod.path and exc.value.symbol == symbol and exc.value.signature == signature
        assert exc.value.detail.startswith(detail), exc.value.detail
        assert str(exc.value) == f"{mod.path}: {symbol} ({signature}): {exc.value.detail}"
        cause = exc.value.__cause__
        assert isinstance(cause, builtin) and not isinstance(cause, CallArgumentError)  # chained from cffi's
        assert mod.invoke("counter_get", "int(void)") == 0  # the C function never ran


# ---- lifetime ----------------------------------------------------------------


def test_static_state_is_fresh_after_close_and_reopen(counter_dir: Path) -> None:
    mod = DynamicModule("counter", [counter_dir])
    for _ in range(3):
        mod.invoke("c_ffi_function")
    assert mod.invoke("counter_get", "int(void)") == 3
    mod.close()
    assert not mod.is_open
    if sys.platform.startswith("linux"):
        assert mod.path not in mapped_paths()  # really unmapped
    mod.open()
    assert mod.invoke("counter_get", "int(void)") == 0
    mod.invoke("c_ffi_function")
    assert mod.invoke("counter_get", "int(void)") == 1
    mod.close()
    mod.close()  # idempotent


def test_context_manager_and_calls_after_close(counter_dir: Path) -> None:
    with DynamicModule("counter", [counter_dir]) as mod:
        add = mod.function("add", "int(int, int)")
        assert add(1, 1) == 2
        assert add.is_alive
    assert not mod.is_open
    assert not add.is_alive
    assert "(closed)" in repr(add)
    with pytest.raises(PluginUnloadedError, match="add: the library has been unloaded") as exc:
        add(1, 1)
    assert exc.value.symbol == "add"
    assert exc.value.path == mod.path
    with pytest.raises(PluginUnloadedError, match="add: the library has been unloaded"):
        mod.invoke("add", "int(int, int)", 1, 1)
    with pytest.raises(PluginUnloadedError):
        mod.has_symbol("add")
    with pytest.raises(PluginUnloadedError):
        mod.address("add")
    # Reopening does not revive old callables: the library may be mapped elsewhere.
    with mod:
        with pytest.raises(PluginUnloadedError):
            add(1, 1)
        assert mod.function("add", "int(int, int)")(2, 2) == 4


def test_close_waits_for_a_call_in_flight(counter_dir: Path) -> None:
    mod = DynamicModule("counter", [counter_dir])
    # long_running: the GIL is released around the call (a compiled call keeps it otherwise, and this
    # thread could not run until the spin ends).
    spin = mod.function("spin_until_released", "int(void)", long_running=True)
    has_entered = mod.function("has_entered", "int(void)")
    # Raw pointer, outside the gate: the only way to reach C while close() waits.
    release = cffi.FFI().cast("void(*)(void)", mod.address("release"))
    results: list[int] = []
    caller = threading.Thread(target=lambda: results.append(spin()))
    caller.start()
    while not has_entered():
        pass
    closer = threading.Thread(target=mod.close)
    closer.start()
    while mod._gate.is_open:  # close() has begun: it refuses new calls first
        pass
    with pytest.raises(PluginUnloadedError):
        has_entered()
    assert mod.is_open  # still mapped: the spinning call is in flight
    release()
    caller.join(timeout=10)
    closer.join(timeout=10)
    assert results == [42]
    assert not mod.is_open


def test_a_truncated_library_is_refused_not_a_crash(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    from conftest import run_isolated

    truncated = tmp_path / "libtrunc.so"
    truncated.write_bytes(example_plugins["greeters"].read_bytes()[:3000])
    proc = run_isolated(
        f"""
        from plugin_host import DynamicModule
        from plugin_interface import NotASharedLibraryError
        try:
            DynamicModule({str(truncated)!r})
        except NotASharedLibraryError as e:
            print("refused:", e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "truncated" in proc.stdout and str(truncated) in proc.stdout


def test_close_ends_while_eight_threads_keep_calling(counter_dir: Path) -> None:
    """8 threads call without pause, refused calls included, while the module closes:
    the close waits only for the calls inside the library."""
    mod = DynamicModule("counter", [counter_dir])
    add = mod.function("add", "int(int, int)")
    stop = threading.Event()
    refused = [0] * 8
    failures: list[BaseException] = []

    def hammer(i: int) -> None:
        count = 0
        try:
            while not stop.is_set():
                for _ in range(100):  # little time outside the calls, as in a busy worker
                    try:
                        add(1, 2)
                    except PluginUnloadedError:
                        count += 1
        except BaseException as e:  # reported below, never silent
            failures.append(e)
        refused[i] = count

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in workers:
        t.start()
    closer = threading.Thread(target=mod.close)
    try:
        while mod.invoke("counter_get", "int(void)") < 100:  # the workers are calling
            pass
        closer.start()
        closer.join(HANG_TIMEOUT_S)
        assert not closer.is_alive(), "close() did not return while 8 threads kept calling"
    finally:
        stop.set()
        for t in [closer, *workers]:
            t.join(HANG_TIMEOUT_S)
    assert not failures, failures
    assert not mod.is_open and not add.is_alive
    assert sum(refused) > 0


def test_close_from_a_signal_handler_inside_a_call_is_refused(counter_dir: Path, call_path: str) -> None:
    """SIGUSR1 arrives while the main thread is inside a C function; its handler closes
    the module.  Before, close() waited for that very call: the process hung for good."""
    from conftest import run_isolated

    proc = run_isolated(
        f"""
        import signal
        from plugin_host import DynamicModule
        from plugin_host.loading import _engine
        from plugin_interface import ReleaseInsideCallError

        _engine.set_enabled({call_path == "engine"})
        mod = DynamicModule("counter", [{str(counter_dir)!r}])
        raise_signal = mod.function("raise_signal", "int(int)")
        assert (type(raise_signal).__name__ == "Function") is {call_path == "engine"}
        signal.signal(signal.SIGUSR1, lambda signum, frame: mod.close())
        try:
            raise_signal(signal.SIGUSR1)
        except ReleaseInsideCallError as e:
            print("refused:", e.path == mod.path, "|", e)
        print("still open:", mod.is_open, mod.invoke("add", "int(int, int)", 2, 3))
        mod.close()  # outside the call: fine
        print("closed:", mod.is_open, raise_signal.is_alive)
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("refused: True |"), lines
    assert "cannot release from inside a call through it" in lines[0] and "raise_signal" in lines[0]
    assert lines[1:] == ["still open: True 5", "closed: False False"]
