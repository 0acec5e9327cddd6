"""C++ plugins, first class: the headers compile warning-free as C++17 and C++20 under g++ and
clang++, the C macros work from C++ units (alone and mixed with C units), PLUGIN_CLASS
registers a class, no exception crosses the C ABI, and a plugin that uses the standard library
-- built by the builder with its export restriction -- really unloads, with fresh static state
on reload; the same plugin built without the restriction is reported as unloadable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Protocol

import cffi
import pytest
from conftest import CompilePlugin, mapped_paths, require_tool, run_isolated
from plugin_annotations import get_include_dirs, write_trait_headers
from plugin_host import LibraryStillMappedWarning, PluginManager
from plugin_host.abi import check_library, scan_library
from plugin_interface import (
    I32,
    Bool,
    CStr,
    MakerReturnedNullError,
    OwnedBytes,
    OwnedStr,
    Status,
    declare_trait,
)

CXX_FLAGS = ["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fPIC", "-fvisibility=hidden"]


@declare_trait(version=1)
class Checker(Protocol):
    """Every result kind a C++ class can return (the header matrix and the exception tests use it)."""

    def check(self, text: CStr) -> Status:
        """0, or a code and a message (thrown in C++)."""
        ...

    def count(self, text: CStr) -> I32:
        """A scalar."""
        ...

    def name(self) -> OwnedStr:
        """A string."""
        ...

    def raw(self, text: CStr) -> OwnedBytes:
        """Bytes."""
        ...

    def flag(self) -> Bool:
        """The Bool marker (``_Bool`` in the header) from C++."""
        ...


@pytest.fixture(scope="module")
def checker_include(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("checker_include")
    write_trait_headers(out, [Checker])
    return out


CHECKER_CPP = r"""
#include <string>
#include <vector>
#include "plugin_annotations.hpp"
#include "plugin_trait_checker.h"
#include "plugin_trait_greeter.h"

class Strict {
public:
    void check(const char *text) {
        std::string t(text);
        if (t == "bad") throw plugin::Error(7, "bad input: " + t);
        if (t == "odd") throw std::logic_error("an odd logic_error");
        if (t == "int") throw 42;
    }
    int32_t count(const char *text) {
        if (std::string(text) == "boom") throw std::runtime_error("count failed");
        return static_cast<int32_t>(std::string(text).size());
    }
    std::string name() { return "strict"; }
    std::vector<uint8_t> raw(const char *text) {
        std::string t(text);
        if (t == "boom") throw std::runtime_error("raw failed");
        return std::vector<uint8_t>(t.begin(), t.end());
    }
    bool flag() { return true; }
};

class Loud {
public:
    std::string greet(const char *name) {
        if (std::string(name) == "boom") throw std::runtime_error("greet failed");
        return "HELLO, " + std::string(name) + "!";
    }
};

#ifdef THROWING_CONSTRUCTOR
class Fragile {
public:
    Fragile() { throw std::runtime_error("no instance today"); }
    std::string greet(const char *) { return ""; }
};
PLUGIN_CLASS(Greeter, Fragile, Fragile)
#endif

PLUGIN_CLASS(Checker, Strict, Strict)
PLUGIN_CLASS(Greeter, Loud, Loud)
PLUGIN_AGGREGATES(Checker)
PLUGIN_AGGREGATES(Greeter)
"""


# ---- the headers compile as C++ ---------------------------------------------------

MACROS_CPP = r"""
#include "plugin_annotations.hpp"
#include "plugin_trait_checker.h"
#include "plugin_trait_greeter.h"
#include "plugin_trait_transformer.h"

static char *hello(void *self, const char *name) { (void)self; return plugin_string_format("Hi, %s", name); }
static size_t same(void *self, uint8_t *data, size_t len) { (void)self; (void)data; return len; }
#if __cplusplus >= 202002L
PLUGIN_IMPL(Greeter, Designated, .greet = hello)
#else
PLUGIN_IMPL(Greeter, Designated, hello)
#endif
PLUGIN_IMPL(Greeter, Positional, hello)
PLUGIN_IMPL(Transformer, Same, same)
class Plain {
public:
    void check(const char *) {}
    int32_t count(const char *) { return 1; }
    const char *name() { return "plain"; }
    PluginBytes raw(const char *) { return PluginBytes{nullptr, 0}; }
    bool flag() { return false; }
};
PLUGIN_CLASS(Checker, Plain, Plain)
PLUGIN_AGGREGATES(Greeter)
PLUGIN_AGGREGATES(Checker)
PLUGIN_UNMAKER_COUNTER(Transformer)
"""


@pytest.mark.parametrize("collect", ["sections", "constructors"])
@pytest.mark.parametrize("std", ["c++17", "c++20"])
@pytest.mark.parametrize("compiler", ["g++", "clang++"])
def test_headers_and_macros_compile_warning_free_as_cpp(
    compiler: str, std: str, collect: str, checker_include: Path, tmp_path: Path
) -> None:
    cxx = require_tool(compiler, f"C++ ({compiler})")
    src = tmp_path / "macros.cpp"
    src.write_text(MACROS_CPP)
    includes = [f"-I{d}" for d in (checker_include, *get_include_dirs())]
    defines = ["-DPLUGIN_COLLECT_WITH_CONSTRUCTORS"] if collect == "constructors" else []
    cmd = [cxx, f"-std={std}", *CXX_FLAGS, *defines, *includes, "-c", str(src), "-o", str(tmp_path / "macros.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_cpp_header_refuses_c(tmp_path: Path) -> None:
    src = tmp_path / "wrong.c"
    src.write_text('#include "plugin_annotations.hpp"\n')
    cc = require_tool("gcc", "C")
    proc = subprocess.run(
        [cc, *[f"-I{d}" for d in get_include_dirs()], "-c", str(src), "-o", str(tmp_path / "w.o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "plugin_annotations.hpp is C++" in proc.stderr


# ---- the C macros from C++ units, through the builder -------------------------------

CPP_IMPL = r"""
#include <string>
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"
static char *greet(void *self, const char *name) {
    (void)self;
    std::string out = std::string("C++ says hi, ") + name;
    return plugin_string_format("%s", out.c_str());
}
PLUGIN_IMPL(Greeter, CppImpl, greet)
"""

C_IMPL_AND_AGGREGATE = r"""
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"
static char *greet(void *self, const char *name) { (void)self; return plugin_string_format("C says hi, %s", name); }
PLUGIN_IMPL(Greeter, CImpl, .greet = greet)
PLUGIN_AGGREGATES(Greeter)
"""


@pytest.mark.parametrize("collect", [(), ("PLUGIN_COLLECT_WITH_CONSTRUCTORS",)], ids=["sections", "constructors"])
def test_c_and_cpp_units_of_one_library_share_the_aggregate_and_counter(
    compile_plugin: CompilePlugin, collect: tuple[str, ...]
) -> None:
    lib = compile_plugin("mixed", {"impl.cpp": CPP_IMPL, "aggregate.c": C_IMPL_AND_AGGREGATE}, defines=collect)
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, "Greeter")
        assert handle.is_plugin_owned
        greetings = sorted(p.greet("ada") for p in handle.proxies())  # type: ignore[attr-defined]
        assert greetings == ["C says hi, ada", "C++ says hi, ada"]
        result = manager.unload_by_path(lib)
    assert result == {"Greeter": 2} and result.unmapped
    assert str(lib) not in mapped_paths()


def test_cpp_impls_without_an_aggregate_are_found_by_the_host(compile_plugin: CompilePlugin) -> None:
    counter_only = CPP_IMPL + "PLUGIN_UNMAKER_COUNTER(Greeter)\n"
    lib = compile_plugin("cpp_host_owned", {"impl.cpp": counter_only})
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, "Greeter")
        assert not handle.is_plugin_owned
        assert handle.proxy("CppImpl").greet("x") == "C++ says hi, x"  # type: ignore[attr-defined]
        assert manager.unload_by_path(lib) == {"Greeter": 1}


# ---- PLUGIN_CLASS and exceptions ------------------------------------------------------


@pytest.fixture(scope="module")
def checker_lib(compile_plugin: CompilePlugin, checker_include: Path) -> Path:
    return compile_plugin("checker", {"checker.cpp": CHECKER_CPP}, include_dirs=(checker_include,))


def _checker_functions(handle: object) -> tuple[cffi.FFI, dict[str, object], object]:
    """The Strict registration's methods as cffi functions (Status has no proxy conversion yet)."""
    ffi = cffi.FFI()
    ffi.cdef("typedef struct { uint8_t *data; size_t len; } PluginBytes;")
    reg = handle.registration_set.registrations[0]  # type: ignore[attr-defined]
    spec = Checker.__plugin_trait__  # type: ignore[attr-defined]
    fns = {m.name: ffi.cast(m.cffi_type, reg.methods[m.name]) for m in spec.methods}
    free = ffi.cast("void(*)(void *)", reg.free_memory)
    return ffi, {"instance": ffi.cast("void *", reg.instance), "free": free, **fns}, reg


def test_a_class_registers_and_its_results_reach_the_host(checker_lib: Path) -> None:
    with PluginManager() as manager:
        [greeter] = manager.load_plugins(checker_lib, "Greeter")
        assert greeter.proxy("Loud").greet("ada") == "HELLO, ada!"  # type: ignore[attr-defined]
        [checker] = manager.load_plugins(checker_lib, Checker)
        ffi, fns, _ = _checker_functions(checker)
        this = fns["instance"]
        assert fns["count"](this, b"four") == 4  # type: ignore[operator]
        name = fns["name"](this)  # type: ignore[operator]
        assert ffi.string(name) == b"strict"
        fns["free"](name)  # type: ignore[operator]
        raw = fns["raw"](this, b"abc")  # type: ignore[operator]
        assert ffi.buffer(raw.data, raw.len)[:] == b"abc"
        fns["free"](raw.data)  # type: ignore[operator]
        assert fns["flag"](this) is True  # type: ignore[operator]
        error = ffi.new("char **")
        assert fns["check"](this, b"fine", error) == 0 and error[0] == ffi.NULL  # type: ignore[operator]
        result = manager.unload_by_path(checker_lib)
    assert result == {"Greeter": 1, "Checker": 1} and result.unmapped


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [("bad", 7, b"bad input: bad"), ("odd", -1, b"an odd logic_error"), ("int", -1, b"unknown C++ exception")],
)
def test_an_exception_in_a_status_method_is_its_error_code_and_message(
    checker_lib: Path, text: str, code: int, message: bytes
) -> None:
    with PluginManager() as manager:
        [checker] = manager.load_plugins(checker_lib, Checker)
        ffi, fns, _ = _checker_functions(checker)
        error = ffi.new("char **")
        assert fns["check"](fns["instance"], text.encode(), error) == code  # type: ignore[operator]
        assert ffi.string(error[0]).startswith(message)
        fns["free"](error[0])  # type: ignore[operator]


def test_an_exception_elsewhere_is_a_null_or_zero_result_and_the_host_goes_on(checker_lib: Path) -> None:
    # In a child: an exception escaping into C would terminate the process.
    code = f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_cpp import Checker, _checker_functions
        from plugin_host import PluginManager
        from plugin_interface import PluginCallError
        with PluginManager() as manager:
            [greeter] = manager.load_plugins({str(checker_lib)!r}, "Greeter")
            loud = greeter.proxy("Loud")
            try:
                loud.greet("boom")
            except PluginCallError as e:
                print("greet", type(e).__name__, e.path == {str(checker_lib)!r}, "returned NULL" in str(e))
            print("after", loud.greet("after"))
            [checker] = manager.load_plugins({str(checker_lib)!r}, Checker)
            ffi, fns, _ = _checker_functions(checker)
            print("count", fns["count"](fns["instance"], b"boom"))
            raw = fns["raw"](fns["instance"], b"boom")
            print("raw", raw.data == ffi.NULL, raw.len)
            try:
                checker.proxy("Strict").raw("boom")
            except PluginCallError as e:
                print("raw through the proxy", type(e).__name__)
            print("unmapped", manager.unload_by_path({str(checker_lib)!r}).unmapped)
    """
    proc = run_isolated(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "greet PluginCallError True True",
        "after HELLO, after!",
        "count 0",
        "raw True 1",  # a failure, not an empty result
        "raw through the proxy PluginCallError",
        "unmapped True",
    ]


def test_a_throwing_constructor_is_a_maker_returning_null(compile_plugin: CompilePlugin, checker_include: Path) -> None:
    lib = compile_plugin(
        "fragile", {"fragile.cpp": CHECKER_CPP}, defines=("THROWING_CONSTRUCTOR",), include_dirs=(checker_include,)
    )
    with PluginManager() as manager:
        with pytest.raises(MakerReturnedNullError, match="plugin_register_all_Greeter_v1 returned NULL") as exc:
            manager.load_plugins(lib, "Greeter")
        assert exc.value.path == str(lib)
        [checker] = manager.load_plugins(lib, Checker)  # the other trait is fine
        assert checker.type_names == ["Strict"]


# ---- a standard-library plugin: unloaded for real, or told why not ---------------------

STL_CPP = r"""
#include <map>
#include <string>
#include <vector>
#include "plugin_annotations.hpp"
#include "plugin_trait_greeter.h"

template <class T>
static std::string joined(const std::vector<T> &items) {
    std::string out;
    for (const auto &item : items) out += (out.empty() ? "" : ",") + item;
    return out;
}

static std::vector<std::string> everyone;  // static state: must be fresh after a reload
static std::map<std::string, int> times;

class Stl {
public:
    std::string greet(const char *name) {
        everyone.emplace_back(name);
        return "#" + std::to_string(everyone.size()) + " " + joined(everyone) + " x" + std::to_string(++times[name]);
    }
};
PLUGIN_CLASS(Greeter, Stl, Stl)
PLUGIN_AGGREGATES(Greeter)
"""


@pytest.fixture(scope="module")
def stl_libs(compile_plugin: CompilePlugin) -> dict[str, Path]:
    return {
        "restricted": compile_plugin("stl", {"stl.cpp": STL_CPP}),
        "unrestricted": compile_plugin("stl_exports_all", {"stl.cpp": STL_CPP}, restrict_exports=False),
    }


def test_an_stl_plugin_unloads_for_real_and_reloads_fresh(stl_libs: dict[str, Path], tmp_path: Path) -> None:
    lib = shutil.copy(stl_libs["restricted"], tmp_path / "libstl.so")
    for _ in range(2):
        with PluginManager() as manager:
            [handle] = manager.load_plugins(lib, "Greeter")
            stl = handle.proxy("Stl")
            assert stl.greet("ada") == "#1 ada x1"  # type: ignore[attr-defined]
            assert stl.greet("bob") == "#2 ada,bob x1"  # type: ignore[attr-defined]
            assert str(lib) in mapped_paths()
            result = manager.unload_by_path(lib)
        assert result == {"Greeter": 1} and result.unmapped
        assert str(lib) not in mapped_paths()


def test_without_the_export_restriction_the_host_and_abi_check_say_why_it_stays(
    stl_libs: dict[str, Path], tmp_path: Path
) -> None:
    lib = shutil.copy(stl_libs["unrestricted"], tmp_path / "libstl_unique.so")
    problems, _ = check_library(scan_library(lib))
    [blocked] = [p for p in problems if p.kind == "unload_blocked"]
    assert blocked.message.startswith("cannot unload: STB_GNU_UNIQUE symbol _Z")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, "Greeter")
        assert handle.proxy("Stl").greet("ada") == "#1 ada x1"  # type: ignore[attr-defined]
        with pytest.warns(LibraryStillMappedWarning, match="cannot unload: STB_GNU_UNIQUE symbol _Z"):
            result = manager.unload_by_path(lib)
    assert result == {"Greeter": 1} and not result.unmapped
    assert result.reasons[0].startswith("STB_GNU_UNIQUE symbol ")
    assert result.reasons[0].split()[2] in blocked.message  # the same symbol, from the file and the host
    assert handle.unload_warning is not None
    assert str(lib) in mapped_paths()
    with pytest.warns(LibraryStillMappedWarning):
        with PluginManager() as manager:  # the state survived: what the warning is for
            [again] = manager.load_plugins(lib, "Greeter")
            assert again.proxy("Stl").greet("ada") == "#2 ada,ada x2"  # type: ignore[attr-defined]


THREAD_LOCAL_CPP = r"""
#include <string>
#include "plugin_annotations.hpp"
#include "plugin_trait_greeter.h"
class Remembers {
public:
    std::string greet(const char *name) {
        static thread_local std::string last;  // a destructor per thread: __cxa_thread_atexit_impl
        std::string out = "last was '" + last + "'";
        last = name;
        return out;
    }
};
PLUGIN_CLASS(Greeter, Remembers, Remembers)
PLUGIN_AGGREGATES(Greeter)
"""


def test_a_thread_local_destructor_of_a_living_thread_keeps_a_library_and_the_host_says_so(
    compile_plugin: CompilePlugin, tmp_path: Path
) -> None:
    built = compile_plugin("remembers", {"remembers.cpp": THREAD_LOCAL_CPP})
    problems, _ = check_library(scan_library(built))
    assert [p.kind for p in problems if p.kind.startswith("unload")] == ["unload_may_be_blocked"]
    # Loaded but the thread_local never used: no destructor registered, the library goes.
    first = shutil.copy(built, tmp_path / "libremembers1.so")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(first, "Greeter")
        assert manager.unload_by_path(first).unmapped
    # Used on this thread, which lives on: its destructor is pending, glibc keeps the library.
    second = shutil.copy(built, tmp_path / "libremembers2.so")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(second, "Greeter")
        assert handle.proxy("Remembers").greet("a") == "last was ''"  # type: ignore[attr-defined]
        with pytest.warns(LibraryStillMappedWarning, match="thread-local destructors may be pending"):
            result = manager.unload_by_path(second)
    assert not result.unmapped and str(second) in mapped_paths()
