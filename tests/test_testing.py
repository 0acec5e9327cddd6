"""The pytest plugin (plugin_host.testing), proven with pytest's own ``pytester``: each test writes
a separate test project that uses only the installed plugin (the ``pytest11`` entry point; no
conftest), runs pytest on it in this process, and reads its outcome and output.  A clean plugin
passes; a NULL dereference, abort() or exit() under ``isolated`` (or ``--plugin-isolate``) fails
naming the signal with the C stack, and the next test runs; an unmaker that does not count, a
registration left unreleased, a library the loader keeps (with the reason), a descriptor or a
thread left fail at teardown; a heap overflow under ``--plugin-sanitize=address`` fails with the
ASan report; the fuzz helper shrinks a planted crash to its minimal input; C++ and Rust sources
and v1/v2 of one trait build through ``plugin_builder``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Imported here, once: pytester's in-process runs drop the modules they import, and the next run would
# import (and assertion-rewrite: the plugins' packages are marked for it) them again.
import hypothesis  # noqa: F401
import plugin_host.testing._fuzz
import plugin_host.testing._isolation  # noqa: F401
import pytest
from conftest import IN_CI, require_language
from plugin_host.testing import CheckedPluginManager, ProcessSnapshot
from plugin_host.testing._sanitizers import SanitizerError, runtimes
from plugin_interface import PluginTrait

#: Captured before pytester points HOME at its own directory (rustup finds its toolchains from it).
REAL_HOME = os.environ.get("HOME", "")

GREETER_C = r"""
/* greeter.c: a clean Greeter. */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *hello(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Hello, %s!", name);
}

PLUGIN_IMPL(Greeter, English, .greet = hello)
PLUGIN_AGGREGATES(Greeter)
"""

CRASHY_C = r"""
/* crashy.c: greet("abort") aborts, greet("exit") calls exit(3), any other name dereferences NULL. */
#include <stdlib.h>
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *crashy_greet(void *self, const char *name) {
    (void)self;
    if (strcmp(name, "abort") == 0) {
        abort();
    }
    if (strcmp(name, "exit") == 0) {
        exit(3);
    }
    volatile char *nowhere = NULL;
    return (char *)(size_t)*nowhere; /* the NULL dereference */
}

PLUGIN_IMPL(Greeter, Crashy, .greet = crashy_greet)
PLUGIN_AGGREGATES(Greeter)
"""

FORGETFUL_C = r"""
/* forgetful.c: a hand-written Greeter whose unmaker frees but forgets to count. */
#include <stdlib.h>
#include "plugin_interface.h"
#include "plugin_trait_greeter.h"

static char *hello(void *self, const char *name) {
    (void)self;
    (void)name;
    return NULL;
}
static void release(void *p) { free(p); }
static const GreeterVTable vtable = {.size = sizeof(GreeterVTable), .greet = hello};
static size_t unmakers;

PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_Forgetful_v1(void);
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_Forgetful_v1(void) {
    PluginRegistration *r = calloc(1, sizeof *r);
    if (r) {
        r->struct_size = sizeof *r;
        r->abi_version = PLUGIN_ABI_VERSION;
        r->trait_name = "Greeter";
        r->trait_version = PLUGIN_TRAIT_VERSION_Greeter;
        r->type_name = "Forgetful";
        r->vtable = &vtable;
        r->vtable_size = sizeof vtable;
        r->free_memory = release;
    }
    return r;
}

PLUGIN_EXPORT void plugin_unregister_Greeter_Forgetful_v1(PluginRegistration *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_Forgetful_v1(PluginRegistration *r) {
    free(r); /* and no ++unmakers */
}

PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void);
PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void) { return unmakers; }
"""

THREADED_C = r"""
/* threaded.c: greet() starts a thread that outlives the call and the library.  The thread runs
 * libc's pause() itself, no code of the library's: it survives the unload (a thread inside the
 * library's code would crash when it goes), and the isolated test's process ends with it. */
#include <pthread.h>
#include <unistd.h>
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *greet(void *self, const char *name) {
    (void)self;
    pthread_t thread;
    if (pthread_create(&thread, NULL, (void *(*)(void *))(void (*)(void))pause, NULL) == 0) {
        pthread_detach(thread);
    }
    return plugin_string_format("Hello, %s!", name);
}

PLUGIN_IMPL(Greeter, Threaded, .greet = greet)
PLUGIN_AGGREGATES(Greeter)
"""

UNIQUE_CPP = r"""
// unique.cpp: a class template's static member of default visibility, which g++ exports as
// STB_GNU_UNIQUE: glibc then never unloads the library.  (Named after this project, so no library
// loaded earlier in the process defines it first: the first definer is the one kept.)
#include <string>
#include "plugin_annotations.hpp"
#include "plugin_trait_greeter.h"

template <typename T> struct __attribute__((visibility("default"))) Tally {
    static int calls;
};
template <typename T> int Tally<T>::calls = 0;
struct __attribute__((visibility("default"))) PytesterProjectGreetings {};

class Counting {
public:
    std::string greet(const char *name) {
        return std::to_string(++Tally<PytesterProjectGreetings>::calls) + " " + name;
    }
};

PLUGIN_CLASS(Greeter, Counting, Counting)
PLUGIN_AGGREGATES(Greeter)
"""

OVERFLOW_C = r"""
/* overflow.c: copies the name into 4 bytes. */
#include <stdlib.h>
#include <string.h>
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *overflow_greet(void *self, const char *name) {
    (void)self;
    char *copy = malloc(4);
    strcpy(copy, name); /* the heap overflow */
    return copy;
}

PLUGIN_IMPL(Greeter, Overflow, .greet = overflow_greet)
PLUGIN_AGGREGATES(Greeter)
"""

PLANTED_C = r"""
/* planted.c: total() crashes on an input shape: two values or more and a negative factor. */
#include <stddef.h>
#include "plugin_annotations.h"
#include "plugin_trait_summer.h"

static int32_t total(void *self, const int32_t *values, size_t values_len, int32_t factor) {
    (void)self;
    int64_t sum = 0;
    for (size_t i = 0; i < values_len; i++) {
        sum += values[i];
    }
    if (values_len >= 2 && factor < 0) {
        volatile int32_t *nowhere = NULL;
        return *nowhere; /* the planted crash */
    }
    return (int32_t)(sum % 1000) * (factor % 1000);
}

static int32_t negate(void *self, int32_t value) {
    (void)self;
    return value == INT32_MIN ? value : -value;
}

PLUGIN_IMPL(Summer, Planted, .total = total, .negate = negate)
PLUGIN_AGGREGATES(Summer)
"""

SUMMER_TRAIT = """
from typing import Protocol

from plugin_interface import I32, Array, declare_trait


@declare_trait(version=1)
class Summer(Protocol):
    def total(self, values: Array[I32], factor: I32) -> I32: ...

    def negate(self, value: I32) -> I32: ...
"""


@pytest.fixture(scope="session")
def shared_builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build directory for every project of this module: each plugin compiles once."""
    return tmp_path_factory.mktemp("pytester_builds")


@pytest.fixture
def project(pytester: pytest.Pytester, shared_builds: Path) -> pytest.Pytester:
    """A test project with the plugins' sources (and nothing else: no conftest).

    Its test files are ``project_*.py`` (collected by ``python_files``): modules are imported by
    their basename, and a ``test_cpp`` would be this suite's own.
    """
    pytester.makeini("[pytest]\npython_files = project_*.py\n")
    for name, text in {
        "greeter.c": GREETER_C,
        "crashy.c": CRASHY_C,
        "forgetful.c": FORGETFUL_C,
        "threaded.c": THREADED_C,
        "unique.cpp": UNIQUE_CPP,
        "overflow.c": OVERFLOW_C,
        "planted.c": PLANTED_C,
    }.items():
        (pytester.path / name).write_text(textwrap.dedent(text))
    pytester.shared_builds = shared_builds  # type: ignore[attr-defined]
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest on the project, in this process, sharing the build directory."""
    builds = project.shared_builds  # type: ignore[attr-defined]
    return project.runpytest("-p", "no:cacheprovider", f"--plugin-build-dir={builds}", *args)


def test_the_plugin_is_installed_and_cheap_to_import() -> None:
    code = (
        "import sys, pytest\n"
        "import plugin_host.testing.pytest_plugin\n"
        "heavy = [m for m in ('plugin_host._manager', 'plugin_annotations', 'cffi', 'hypothesis',"
        " 'plugin_host.testing._isolation', 'plugin_host.testing._process') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from importlib.metadata import entry_points

    [plugin] = [e for e in entry_points(group="pytest11") if e.name == "plugin_host"]
    assert plugin.value == "plugin_host.testing.pytest_plugin"


def test_a_clean_plugin_passes(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_clean="""
        from pathlib import Path

        from plugin_interface import PluginTrait


        def test_greets(plugin_builder, plugin_manager):
            library = plugin_builder(Path(__file__).with_name("greeter.c"))
            [handle] = plugin_manager.load_plugins(library, PluginTrait.Greeter)
            assert handle.proxy("English").greet("world") == "Hello, world!"


        def test_the_same_source_builds_once(plugin_builder):
            text = Path(__file__).with_name("greeter.c").read_text()
            first = plugin_builder(text)
            built = first.stat().st_mtime_ns
            assert plugin_builder(text) == first and first.stat().st_mtime_ns == built
            assert plugin_builder(text + "\\n") != first
        """
    )
    result = run(project)
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(("@pytest.mark.isolated", ()), id="marker-fork"),
        pytest.param(("", ("--plugin-isolate",)), id="option-fork"),
        # spawn is macOS's and Windows' way; on Linux the sanitizer test runs it too
        pytest.param(
            ("@pytest.mark.isolated", ("--plugin-start-method=spawn",)), id="marker-spawn", marks=pytest.mark.slow
        ),
    ],
)
def test_a_null_dereference_under_isolated_fails_naming_the_signal_and_the_next_test_runs(
    project: pytest.Pytester, how: tuple[str, tuple[str, ...]]
) -> None:
    marker, options = how
    project.makepyfile(
        project_crash=f"""
        from pathlib import Path

        import pytest
        from plugin_interface import PluginTrait


        {marker}
        def test_null(plugin_builder, plugin_manager):
            [handle] = plugin_manager.load_plugins(plugin_builder(Path(__file__).with_name("crashy.c")), "Greeter")
            handle.proxy("Crashy").greet("world")


        def test_next():
            assert True
        """
    )
    result = run(project, "-v", *options)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_null FAILED*",
            "*test_next PASSED*",
            "isolated test crashed during the test: SIGSEGV (signal 11: Segmentation fault)",
            "C stack (most recent call first):",
            "  <signal handler called>",
            "  crashy_greet at *crashy.c:17  (libcrashy.so+0x*)",
            "Fatal Python error: Segmentation fault",
            '  File "*project_crash.py", line 10 in test_null',
        ]
    )


def test_abort_exit_and_a_hang_under_isolated_fail_and_the_session_goes_on(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_kinds="""
        import time
        from pathlib import Path

        import pytest


        @pytest.fixture
        def crashy(plugin_builder, plugin_manager):
            [handle] = plugin_manager.load_plugins(plugin_builder(Path(__file__).with_name("crashy.c")), "Greeter")
            return handle.proxy("Crashy")


        @pytest.mark.isolated
        def test_abort(crashy):
            crashy.greet("abort")


        @pytest.mark.isolated
        def test_exit(crashy):
            print("before exit")
            crashy.greet("exit")


        @pytest.mark.isolated(timeout=1)
        def test_hang():
            time.sleep(60)


        @pytest.mark.isolated
        def test_passes():
            pass
        """
    )
    result = run(project, "-v")
    result.assert_outcomes(failed=3, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_passes PASSED*",
            "isolated test crashed during the test: SIGABRT (signal 6: Aborted)",
            "  abort *",
            "  crashy_greet at *crashy.c:11  (libcrashy.so+0x*)",
            "isolated test ended the process during the test: exit status 3 (exit() or _exit() called*",
            "*Captured stdout (isolated child)*",
            "before exit",
            "isolated test timed out after 1 s during the test and was stopped",
            '  File "*project_kinds.py", line 26 in test_hang',
        ]
    )


def test_a_crash_in_setup_is_an_error_at_setup(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_setup="""
        import ctypes

        import pytest


        @pytest.fixture
        def broken():
            ctypes.string_at(0)


        @pytest.mark.isolated
        def test_uses_it(broken):
            pass
        """
    )
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_uses_it*", "isolated test crashed during setup: SIGSEGV*"])


def test_fixtures_the_parent_set_up_are_torn_down_once_by_the_parent(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_scopes="""
        import os
        from pathlib import Path

        import pytest

        LOG = Path(__file__).with_name("log.txt")
        PARENT = os.getpid()


        @pytest.fixture(scope="module")
        def shared():
            yield
            with LOG.open("a") as log:
                log.write(f"teardown {os.getpid() == PARENT}\\n")


        def test_first(shared):
            pass


        @pytest.mark.isolated
        def test_crashes(shared):
            os.abort()


        @pytest.mark.isolated  # the module's last test: the parent tears the module down after it
        def test_isolated(shared):
            assert os.getpid() != PARENT
            assert not LOG.exists()
        """,
        project_zz_after="""
        from pathlib import Path


        def test_the_module_fixture_was_torn_down_once_in_the_parent():
            assert Path(__file__).with_name("log.txt").read_text() == "teardown True\\n"
        """,
    )
    result = run(project)
    result.assert_outcomes(passed=3, failed=1)


def test_an_unmaker_that_forgets_to_count_fails_at_teardown_with_the_reason(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_forgetful="""
        from pathlib import Path


        def test_loads(plugin_builder, plugin_manager):
            [handle] = plugin_manager.load_plugins(plugin_builder(Path(__file__).with_name("forgetful.c")), "Greeter")
            assert handle.type_names == ["Forgetful"]
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_loads*",
            "plugin_manager: the test left plugins behind:",
            "  - */libforgetful.so: Greeter: 1 registration(s) made (Forgetful), but the unmaker counter "
            "plugin_unmaker_counter_Greeter_v1 says 0 released: an unmaker did not run, or does not count what it "
            "releases",
        ]
    )


def test_a_registration_left_unreleased_fails_at_teardown(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_unreleased="""
        from pathlib import Path

        import pytest
        from plugin_host import register_trait


        @pytest.mark.isolated  # the library stays loaded: keep it out of this process
        def test_registers_twice(plugin_builder, plugin_manager):
            [handle] = plugin_manager.load_plugins(plugin_builder(Path(__file__).with_name("greeter.c")), "Greeter")
            register_trait(handle.library, "Greeter")  # and never unload_trait()
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*libgreeter.so: 1 registration set(s) made outside the manager (register_trait) were never released "
            "(unload_trait), so the library stays loaded",
            "*libgreeter.so: still open after the manager closed",
        ]
    )


def test_a_library_the_loader_keeps_fails_at_teardown_with_the_hosts_reason(project: pytest.Pytester) -> None:
    require_language("cpp")
    project.makepyfile(
        project_unique="""
        from pathlib import Path

        import pytest


        @pytest.mark.isolated  # it stays mapped for good: keep it out of this process
        def test_cpp_without_the_export_restriction(plugin_builder, plugin_manager):
            library = plugin_builder(Path(__file__).with_name("unique.cpp"), restrict_exports=False)
            [handle] = plugin_manager.load_plugins(library, "Greeter")
            assert handle.proxy("Counting").greet("x") == "1 x"
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*libunique.so: still mapped after unload: cannot unload: STB_GNU_UNIQUE symbol "
            "_ZN5TallyI24PytesterProjectGreetingsE5callsE (and 1 more): glibc never unloads a library that exports one*"
        ]
    )


def test_a_descriptor_and_threads_left_behind_fail_at_teardown(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_left="""
        import os
        import threading
        import time
        from pathlib import Path

        import pytest


        def test_descriptor(plugin_builder, plugin_manager):
            library = plugin_builder(Path(__file__).with_name("greeter.c"))
            plugin_manager.load_plugins(library, "Greeter")
            os.open(library, os.O_RDONLY)


        def test_python_thread(plugin_manager):
            threading.Thread(target=time.sleep, args=(0.5,), name="forgotten", daemon=True).start()


        @pytest.mark.isolated  # the thread would run into the unloaded library's code
        def test_native_thread(plugin_builder, plugin_manager):
            [handle] = plugin_manager.load_plugins(plugin_builder(Path(__file__).with_name("threaded.c")), "Greeter")
            handle.proxy("Threaded").greet("x")
        """
    )
    result = run(project, "-o", "plugin_thread_grace_s=0")
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines_random(
        [
            "  - file descriptor * left open on */libgreeter.so",
            "  - thread left running: <Thread(forgotten, started daemon *)>",
            "  - native thread left running: thread id * ('python'), started by native code (the plugin?)",
        ]
    )


def test_a_private_copy_left_on_disk_is_reported(monkeypatch: pytest.MonkeyPatch, compile_plugin) -> None:  # type: ignore[no-untyped-def]
    from plugin_host.loading import _library

    library = compile_plugin("copied", GREETER_C)
    monkeypatch.setattr(_library, "remove_private_copy", lambda path: None)  # the bug this check would catch
    before = ProcessSnapshot()
    manager = CheckedPluginManager(copy_on_load=True)
    [handle] = manager.load_plugins(library, PluginTrait.Greeter)
    copy = handle.library.load_path
    problems = manager.close_and_check(before=before, thread_grace_s=0)
    assert problems == [f"{library}: its private copy {copy} was left on disk"]
    copy.unlink()


def _require_asan() -> None:
    try:
        runtimes(("address",))
    except SanitizerError as e:
        if IN_CI:
            pytest.fail(f"{e} (and CI must run the sanitizer tests)")
        pytest.skip(str(e))


def test_a_heap_overflow_under_plugin_sanitize_address_fails_with_the_asan_report(project: pytest.Pytester) -> None:
    _require_asan()
    project.makepyfile(
        project_overflow="""
        from pathlib import Path


        def test_overflows(plugin_builder, plugin_manager):
            [handle] = plugin_manager.load_plugins(plugin_builder(Path(__file__).with_name("overflow.c")), "Greeter")
            handle.proxy("Overflow").greet("world")


        def test_next():
            pass
        """
    )
    result = run(project, "--plugin-sanitize=address")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "plugin-host: plugins built with -fsanitize=address, runtime preloaded",
            "isolated test failed during the test: AddressSanitizer: heap-buffer-overflow",
            "==*==ERROR: AddressSanitizer: heap-buffer-overflow on address *",
            "WRITE of size 6 at * thread T0",
            "    #1 0x* in overflow_greet *overflow.c:11",
            "SUMMARY: AddressSanitizer: heap-buffer-overflow *",
        ]
    )


def test_an_unknown_sanitizer_is_a_usage_error(project: pytest.Pytester) -> None:
    result = run(project, "--plugin-sanitize=thread")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--plugin-sanitize: unknown sanitizer(s) thread; choose from address, undefined"])


def test_the_fuzz_helper_finds_a_planted_crash_and_reports_it_minimised(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_fuzz=SUMMER_TRAIT
        + """
from pathlib import Path

from hypothesis import settings
from plugin_host.testing import fuzz_proxy


def test_fuzz(plugin_builder, plugin_manager):
    library = plugin_builder(Path(__file__).with_name("planted.c"), traits=[Summer])
    [handle] = plugin_manager.load_plugins(library, Summer)
    fuzz_proxy(handle.proxy("Planted"), max_examples=30, settings=settings(derandomize=True, database=None))
"""
    )
    result = run(project)
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    # The smallest crashing input: two values (each 0) and the factor closest to 0 that is negative.
    call = "Summer.Planted.total(values=array('i', [0, 0]), factor=-1)"
    assert f"PluginCrash: {call} crashed the child process: SIGSEGV (signal 11: Segmentation fault)" in output
    assert "kwargs={'values': array('i', [0, 0]), 'factor': -1}," in output  # Hypothesis' own report
    result.stdout.fnmatch_lines(["E  *total at *planted.c:15  (libplanted.so+0x*)"])
    assert "negate" not in result.stdout.str()  # the other method is fine at every boundary


def test_cpp_sources_build_through_plugin_builder(project: pytest.Pytester) -> None:
    require_language("cpp")
    project.makepyfile(
        project_cpp='''
        from plugin_interface import PluginTrait

        SOURCE = """
        #include <string>
        #include "plugin_annotations.hpp"
        #include "plugin_trait_greeter.h"

        class Polite {
        public:
            std::string greet(const char *name) { return std::string("Good day, ") + name + "!"; }
        };

        PLUGIN_CLASS(Greeter, Polite, Polite)
        PLUGIN_AGGREGATES(Greeter)
        """


        def test_polite(plugin_builder, plugin_manager):
            [handle] = plugin_manager.load_plugins(plugin_builder(SOURCE, language="cpp"), PluginTrait.Greeter)
            assert handle.proxy("Polite").greet("Ada") == "Good day, Ada!"
        '''
    )
    run(project).assert_outcomes(passed=1)


def test_rust_sources_build_through_plugin_builder(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    require_language("rust")
    # rustup's proxies find their toolchains under the real home, which pytester replaced.
    monkeypatch.setenv("RUSTUP_HOME", os.environ.get("RUSTUP_HOME") or f"{REAL_HOME}/.rustup")
    monkeypatch.setenv("CARGO_HOME", os.environ.get("CARGO_HOME") or f"{REAL_HOME}/.cargo")
    project.makepyfile(
        project_rust='''
        from plugin_interface import PluginTrait

        SOURCE = """
        mod plugin_abi;
        use plugin_abi::Greeter;

        #[derive(Default)]
        pub struct Ferris;

        impl Greeter for Ferris {
            fn greet(&self, name: &str) -> String {
                format!("Hi, {}!", name)
            }
        }

        plugin_impl!(Greeter, Ferris, Ferris);
        plugin_aggregates!(Greeter; Ferris);
        """


        def test_ferris(plugin_builder, plugin_manager):
            library = plugin_builder(SOURCE, language="rust", traits=[PluginTrait.Greeter], flags=["-Werror"])
            [handle] = plugin_manager.load_plugins(library, PluginTrait.Greeter)
            assert handle.proxy("Ferris").greet("Ada") == "Hi, Ada!"
        '''
    )
    run(project).assert_outcomes(passed=1)


def test_a_compiler_error_fails_the_test_with_the_compilers_output(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_broken="""
        def test_broken(plugin_builder):
            plugin_builder("int broken(void) { return }", name="broken")
        """
    )
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["plugin_builder: plugin broken: compiling *broken.c failed", "*error: expected*"])
    assert "During handling of the above exception" not in result.stdout.str()


def test_two_versions_of_one_trait_load_in_one_session(project: pytest.Pytester) -> None:
    project.makepyfile(
        project_versions='''
        from typing import Protocol

        from plugin_interface import F64, I32, CStr, declare_trait


        @declare_trait(version=1, name="ProjectScorer")
        class ScorerV1(Protocol):
            def score(self, text: CStr) -> F64: ...


        @declare_trait(version=2, name="ProjectScorer")
        class ScorerV2(Protocol):
            def score(self, text: CStr) -> F64: ...

            def best(self) -> I32: ...


        V1 = """
        #include "plugin_annotations.h"
        #include "plugin_trait_projectscorer.h"
        static double score(void *self, const char *text) { (void)self; return (double)text[0]; }
        PLUGIN_IMPL(ProjectScorer, First, .score = score)
        PLUGIN_AGGREGATES(ProjectScorer)
        """

        V2 = """
        #include "plugin_annotations.h"
        #include "plugin_trait_projectscorer.h"
        static double score(void *self, const char *text) { (void)self; return 2.0 * (double)text[0]; }
        static int32_t best(void *self) { (void)self; return 7; }
        PLUGIN_IMPL(ProjectScorer, Double, .score = score, .best = best)
        PLUGIN_AGGREGATES(ProjectScorer)
        """


        def test_v1_and_v2(plugin_builder, plugin_manager):
            [one] = plugin_manager.load_plugins(plugin_builder(V1, traits=[ScorerV1]), "ProjectScorer@1")
            [two] = plugin_manager.load_plugins(plugin_builder(V2, traits=[ScorerV2]), "ProjectScorer@2")
            assert (one.trait.version, two.trait.version) == (1, 2)
            assert one.proxy("First").score("A") == 65.0
            assert two.proxy("Double").score("A") == 130.0
            assert two.proxy("Double").best() == 7
        '''
    )
    run(project).assert_outcomes(passed=1)
