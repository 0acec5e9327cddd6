"""PluginManager and PluginHandle: loading, both ownership paths, counters,
double release, use after unload, real unmapping, and every load error with a
real malformed file."""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

import pytest
from conftest import TEST_PLUGINS, CompilePlugin, LanguageGreeter, mapped_paths
from hypothesis import given, settings
from hypothesis import strategies as st
from plugin_host import (
    LibraryStillMappedWarning,
    PluginManager,
    PluginTrait,
    UnloadResult,
    get_unmaker_counter,
    get_unmaker_counter_for,
    register_trait,
    unload_trait,
)
from plugin_host.loading import Library
from plugin_interface import (
    AbiMismatchError,
    AlreadyReleasedError,
    ErrorReason,
    InconsistentArrayError,
    LibraryLoadError,
    MakerReturnedNullError,
    NoPluginSymbolsError,
    NotASharedLibraryError,
    PluginCallError,
    PluginError,
    PluginLoadErrors,
    PluginUnloadedError,
    SymbolNotFoundError,
    UnknownTraitError,
)

HANDWRITTEN = (TEST_PLUGINS / "handwritten" / "handwritten.c").read_text()
NULL_MAKER = (TEST_PLUGINS / "null_maker" / "null_maker.c").read_text()


@pytest.fixture
def manager() -> PluginManager:
    with PluginManager() as m:
        yield m  # type: ignore[misc]


def handwritten(compile_plugin: CompilePlugin, *defines: str) -> Path:
    return compile_plugin("handwritten", HANDWRITTEN, defines=defines)


# ---- the plugin-owned path (aggregate) -------------------------------------


def test_aggregate_loads_every_impl_across_translation_units(
    manager: PluginManager, example_plugins: dict[str, Path]
) -> None:
    [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
    assert handle.is_plugin_owned
    assert sorted(handle.type_names) == ["English", "French", "Spanish"]
    greetings = {p.type_name: p.greet("world") for p in handle.proxies()}
    assert greetings == {"English": "Hello, world!", "French": "Bonjour, world!", "Spanish": "¡Hola, world!"}
    assert handle.path == example_plugins["greeters"]


def test_plugin_owned_counter_equals_registrations_released(
    manager: PluginManager, example_plugins: dict[str, Path]
) -> None:
    [handle] = manager.load_plugins(example_plugins["greeters"], "Greeter")
    assert handle.get_unmaker_counter() == 0
    assert get_unmaker_counter(handle.library, "Greeter") == 0
    assert manager.unload_by_path(handle.path) == {"Greeter": 3}
    assert not manager.is_loaded(handle.path)


def test_plugin_owned_without_unregister_all_uses_factory_unmakers(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = handwritten(compile_plugin, "NO_UNREGISTER_ALL")
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    assert handle.is_plugin_owned
    assert manager.unload_by_path(lib) == {"Greeter": 1}


def test_constructor_collection_matches_linker_sections(manager: PluginManager, compile_plugin: CompilePlugin) -> None:
    sources = {p.name: p.read_text() for p in (Path(__file__).parents[1] / "native_plugins" / "greeters").glob("*.c")}
    lib = compile_plugin("greeters", sources, defines=("PLUGIN_COLLECT_WITH_CONSTRUCTORS",))
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    assert sorted(handle.type_names) == ["English", "French", "Spanish"]
    assert manager.unload_by_path(lib) == {"Greeter": 3}


# ---- the host-owned path (makers found in the symbol table) ----------------


def test_host_owned_array_from_symbol_table(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    [handle] = manager.load_plugins(example_plugins["host_owned"], PluginTrait.Greeter)
    assert not handle.is_plugin_owned
    assert sorted(handle.type_names) == ["German", "Italian"]
    assert sorted(p.greet("Ada") for p in handle.proxies()) == ["Ciao, Ada!", "Hallo, Ada!"]
    assert manager.unload_by_path(handle.path) == {"Greeter": 2}


def test_host_owned_missing_unmaker_is_refused_before_any_maker_runs(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = handwritten(compile_plugin, "NO_AGGREGATE", "NO_UNMAKER")
    with pytest.raises(SymbolNotFoundError, match="plugin_unregister_Greeter_Polite_v1 is not exported") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.symbol == "plugin_unregister_Greeter_Polite_v1"
    assert exc.value.path == str(lib)
    assert not manager.is_loaded(lib)


# ---- double release, use after unload, unmapping ----------------------------


def test_second_release_raises_instead_of_double_free(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    [handle] = manager.load_plugins(example_plugins["multi_trait"], PluginTrait.Transformer)
    [greeter] = manager.load_plugins(example_plugins["multi_trait"], PluginTrait.Greeter)
    regset = handle.registration_set
    assert handle.unload() == 2
    with pytest.raises(AlreadyReleasedError, match="already released") as exc:
        regset.release()
    assert exc.value.symbol == "plugin_register_all_Transformer_v1"
    with pytest.raises(AlreadyReleasedError):
        handle.unload()
    # The other trait of the same library is untouched and still counts correctly.
    assert greeter.get_unmaker_counter() == 0
    assert greeter.proxies()[0].greet("x") == "Hello #1, x!"
    assert greeter.library.get_unmaker_counter("Transformer") == 2


def test_proxy_and_handle_after_unload_raise(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
    proxy = handle.proxies()[0]
    manager.unload_by_path(handle.path)
    with pytest.raises(PluginUnloadedError, match="has been unloaded") as exc:
        proxy.greet("world")
    assert exc.value.path == str(handle.path)
    assert "greet" in (exc.value.symbol or "")
    with pytest.raises(PluginUnloadedError):
        handle.proxies()
    with pytest.raises(PluginUnloadedError):
        handle.get_unmaker_counter()
    assert not proxy.is_alive
    assert "unloaded" in repr(proxy)


def test_unload_really_unmaps_the_library(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    lib = str(example_plugins["multi_trait"])
    manager.load_plugins(lib, PluginTrait.Greeter)
    manager.load_plugins(lib, PluginTrait.Transformer)
    assert lib in mapped_paths()
    [greeter] = manager.get_handles(lib)[:1]
    greeter.unload()
    assert lib in mapped_paths(), "still mapped while the Transformer handle lives"
    manager.unload_by_path(lib)
    assert lib not in mapped_paths()


def test_copy_on_load_maps_a_private_copy_and_removes_it(example_plugins: dict[str, Path]) -> None:
    with PluginManager(copy_on_load=True) as manager:
        [handle] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
        copy = handle.library.load_path
        assert copy != handle.path and copy.exists()
        assert str(copy) in mapped_paths() and str(handle.path) not in mapped_paths()
        manager.unload_by_path(handle.path)
        assert not copy.exists()
        assert str(copy) not in mapped_paths()


def test_loading_twice_returns_the_same_handle(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    [a] = manager.load_plugins(example_plugins["greeters"], PluginTrait.Greeter)
    [b] = manager.load_plugins(example_plugins["greeters"], "Greeter")
    assert a is b
    assert manager.handles == [a]


def test_unload_by_path_of_unknown_file_raises_key_error(manager: PluginManager, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="not loaded"):
        manager.unload_by_path(tmp_path / "libnothing.so")


# ---- counters through ctypes.CDLL -------------------------------------------


def test_get_unmaker_counter_on_a_plain_cdll(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    # A CDLL is never closed: load a copy so the other tests' mapping checks hold.
    path = shutil.copy(example_plugins["greeters"], tmp_path / "libcdll_greeters.so")
    lib = ctypes.CDLL(str(path))
    assert get_unmaker_counter(lib, "Greeter") == 0
    assert get_unmaker_counter_for(lib, PluginTrait.Greeter) == 0
    with pytest.raises(SymbolNotFoundError, match="plugin_unmaker_counter_Transformer_v1") as exc:
        get_unmaker_counter_for(lib, PluginTrait.Transformer)
    assert exc.value.symbol == "plugin_unmaker_counter_Transformer_v1"
    assert exc.value.path == str(path)


def test_counter_missing_gives_none_on_unload(manager: PluginManager, compile_plugin: CompilePlugin) -> None:
    lib = compile_plugin(
        "nocounter",
        """
        #include "plugin_annotations.h"
        #include "plugin_trait_greeter.h"
        static char *g(void *self, const char *n) { (void)self; return plugin_string_format("Yo, %s", n); }
        PLUGIN_IMPL(Greeter, Yo, .greet = g)
        """,
    )
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    assert handle.proxies()[0].greet("a") == "Yo, a"
    with pytest.raises(SymbolNotFoundError, match="plugin_unmaker_counter_Greeter_v1"):
        handle.get_unmaker_counter()
    assert manager.unload_by_path(lib) == {"Greeter": None}


# ---- load errors: each with a real malformed file ----------------------------


def test_empty_file(manager: PluginManager, tmp_path: Path) -> None:
    lib = tmp_path / "libempty.so"
    lib.write_bytes(b"")
    with pytest.raises(NotASharedLibraryError, match="the file is empty") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.path == str(lib)


def test_text_file(manager: PluginManager, tmp_path: Path) -> None:
    lib = tmp_path / "libtext.so"
    lib.write_text("this is not a library\n")
    with pytest.raises(NotASharedLibraryError, match="unrecognised file format"):
        manager.load_plugins(lib, PluginTrait.Greeter)


def test_directory_named_like_a_library(manager: PluginManager, tmp_path: Path) -> None:
    (tmp_path / "inner").mkdir()
    d = tmp_path / "inner" / "libdir.so"
    d.mkdir()
    with pytest.raises(PluginLoadErrors) as exc:
        manager.load_plugins(tmp_path / "inner", PluginTrait.Greeter)
    [err] = exc.value.errors
    assert isinstance(err, NotASharedLibraryError) and "directory" in str(err)


def test_missing_file(manager: PluginManager, tmp_path: Path) -> None:
    with pytest.raises(NotASharedLibraryError, match="cannot read it"):
        manager.load_plugins(tmp_path / "libmissing.so", PluginTrait.Greeter)


def test_undefined_symbol_is_a_load_error(manager: PluginManager, test_plugins: dict[str, Path]) -> None:
    with pytest.raises(LibraryLoadError, match="plugin_test_symbol_defined_nowhere") as exc:
        manager.load_plugins(test_plugins["undefined_symbol"], PluginTrait.Greeter)
    assert exc.value.path == str(test_plugins["undefined_symbol"])
    assert "undefined symbol" in exc.value.detail
    assert exc.value.reason is ErrorReason.LOADER_REFUSED


def test_library_without_plugin_symbols(manager: PluginManager, compile_plugin: CompilePlugin) -> None:
    lib = compile_plugin("plain", "int plain_add(int a, int b) { return a + b; }\n")
    # The pre-check refuses it before dlopen (issue 6): no plugin_register_ name at all.
    with pytest.raises(NoPluginSymbolsError, match="no plugin symbols at all") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.symbol is None
    assert exc.value.reason is ErrorReason.NO_PLUGIN_SYMBOLS
    assert str(lib) in str(exc.value)
    assert not manager.is_loaded(lib)
    assert str(lib) not in mapped_paths()


def test_trait_the_library_does_not_implement(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    with pytest.raises(SymbolNotFoundError) as exc:
        manager.load_plugins(example_plugins["greeters"], PluginTrait.Transformer)
    assert exc.value.symbol == "plugin_register_all_Transformer_v1"


@pytest.mark.parametrize(
    ("define", "field", "found"),
    [
        ("BAD_ABI_VERSION", "abi_version", 2),
        ("BAD_TRAIT_NAME", "trait_name", "Transformer"),
        ("NULL_METHOD", "vtable.greet", "NULL"),
        ("SHORT_VTABLE", "vtable_size", 8),
    ],
)
def test_registration_mismatch_is_refused_and_released(
    manager: PluginManager, compile_plugin: CompilePlugin, define: str, field: str, found: object
) -> None:
    lib = handwritten(compile_plugin, define)
    with pytest.raises(AbiMismatchError, match=f"{field} mismatch") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.field == field
    assert exc.value.found == found
    assert exc.value.symbol == "plugin_register_all_Greeter_v1"
    assert str(lib) in str(exc.value)
    assert not manager.is_loaded(lib)


@pytest.mark.parametrize(
    ("define", "reason"),
    [
        ("NULL_FACTORIES", "factories is NULL"),
        ("NULL_REGISTRATIONS", "registrations is NULL"),
        ("NULL_ENTRY", r"registrations\[0\] is NULL"),
        ("HUGE_LEN", "exceeds"),
    ],
)
def test_inconsistent_array_is_refused(
    manager: PluginManager, compile_plugin: CompilePlugin, define: str, reason: str
) -> None:
    lib = handwritten(compile_plugin, define)
    with pytest.raises(InconsistentArrayError, match=reason) as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.symbol == "plugin_register_all_Greeter_v1"
    assert not manager.is_loaded(lib)


def test_aggregate_returning_null_after_partial_success(manager: PluginManager, test_plugins: dict[str, Path]) -> None:
    lib = test_plugins["null_maker"]
    with pytest.raises(MakerReturnedNullError, match="plugin_register_all_Greeter_v1 returned NULL") as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.symbol == "plugin_register_all_Greeter_v1"
    assert exc.value.path == str(lib)
    assert not manager.is_loaded(lib)
    assert str(lib) not in mapped_paths()


def test_host_owned_maker_returning_null_releases_the_others(
    manager: PluginManager, compile_plugin: CompilePlugin
) -> None:
    lib = compile_plugin("null_maker", NULL_MAKER, defines=("NO_AGGREGATE",))
    with pytest.raises(MakerReturnedNullError) as exc:
        manager.load_plugins(lib, PluginTrait.Greeter)
    assert exc.value.symbol == "plugin_register_Greeter_Failing_v1"
    assert str(lib) not in mapped_paths()
    # At the level below the manager: AFine (made first; symbols are sorted) was
    # released through its unmaker before the error propagated.
    library = Library(lib)
    try:
        with pytest.raises(MakerReturnedNullError):
            register_trait(library, PluginTrait.Greeter)
        assert library.get_unmaker_counter("Greeter") == 1
        assert library.live_sets == 0
    finally:
        library.close()


def test_directory_with_a_bad_plugin_loads_the_good_ones(
    manager: PluginManager, example_plugins: dict[str, Path], test_plugins: dict[str, Path], tmp_path: Path
) -> None:
    for lib in (example_plugins["greeters"], example_plugins["host_owned"], test_plugins["undefined_symbol"]):
        shutil.copy(lib, tmp_path / lib.name)
    (tmp_path / "libbroken.so").write_text("garbage")
    (tmp_path / "notes.txt").write_text("not a plugin, ignored")
    (tmp_path / ".libhidden.so").write_text("hidden, ignored")
    errors: list[PluginError] = []
    handles = manager.load_plugins(tmp_path, PluginTrait.Greeter, errors=errors)
    assert sorted(h.path.name for h in handles) == ["libgreeters.so", "libhost_owned.so"]
    assert sorted(Path(e.path or "").name for e in errors) == ["libbroken.so", "libundefined_symbol.so"]
    assert {type(e) for e in errors} == {NotASharedLibraryError, LibraryLoadError}
    # Without an error list the failures are raised together, the good ones stay loaded.
    # ... and closing it leaves the files mapped for the first manager, which the host notices.
    with pytest.warns(LibraryStillMappedWarning, match="cannot unload: another handle is still open") as caught:
        with PluginManager() as other:
            with pytest.raises(PluginLoadErrors, match="2 plugin file") as exc:
                other.load_plugins(tmp_path, PluginTrait.Greeter)
            assert len(exc.value.loaded) == 2
            assert len(other.handles) == 2
            assert [p.greet("z") for h in other.handles for p in h.proxies()]
    assert len(caught) == 2


def test_unknown_trait_name(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    with pytest.raises(UnknownTraitError, match="unknown trait 'Nope'"):
        manager.load_plugins(example_plugins["greeters"], "Nope")


def test_close_unloads_everything(example_plugins: dict[str, Path]) -> None:
    manager = PluginManager()
    greeter_libs = [example_plugins[n] for n in ("greeters", "host_owned", "multi_trait")]
    for lib in greeter_libs:
        manager.load_plugins(lib, PluginTrait.Greeter)
    counters = manager.unload_all()
    assert {p.name: c for p, c in counters.items()} == {
        "libgreeters.so": {"Greeter": 3},
        "libhost_owned.so": {"Greeter": 2},
        "libmulti_trait.so": {"Greeter": 1},
    }
    assert manager.handles == []
    assert not any(str(lib) in mapped_paths() for lib in greeter_libs)
    assert os.path.exists(example_plugins["greeters"])


# ---- the unload_<trait> helpers, below the manager ---------------------------


@pytest.mark.parametrize("lib_name", ["greeters", "host_owned"])
def test_register_and_unload_greeter_helpers(example_plugins: dict[str, Path], lib_name: str) -> None:
    from plugin_host import register_greeter, unload_greeter

    library = Library(example_plugins[lib_name])
    try:
        array = register_greeter(library)
        assert array.is_plugin_owned is (lib_name == "greeters")
        made = len(array.registrations)
        assert unload_greeter(library, array) == made
        with pytest.raises(AlreadyReleasedError):
            unload_greeter(library, array)
        assert library.get_unmaker_counter("Greeter") == made  # nothing was released twice
    finally:
        library.close()
    with pytest.raises(PluginUnloadedError):
        library.get_unmaker_counter("Greeter")


def test_unload_transformer_refuses_an_array_of_another_library(example_plugins: dict[str, Path]) -> None:
    from plugin_host import register_transformer, unload_transformer

    a, b = Library(example_plugins["multi_trait"]), Library(example_plugins["greeters"])
    try:
        array = register_transformer(a)
        with pytest.raises(ValueError, match="was not made from"):
            unload_transformer(b, array)
        assert unload_transformer(a, array) == 2
    finally:
        a.close()
        b.close()


def test_unload_by_path_waits_for_a_set_made_outside_the_manager(
    manager: PluginManager, example_plugins: dict[str, Path], tmp_path: Path
) -> None:
    lib = shutil.copy(example_plugins["greeters"], tmp_path / "libextra.so")
    [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
    extra = register_trait(handle.library, PluginTrait.Greeter)  # not the manager's
    assert manager.unload_by_path(lib) == {"Greeter": 3}
    assert not manager.is_loaded(lib)
    # The library stays mapped for the set still alive, and its registrations still answer.
    assert str(lib) in mapped_paths()
    reg = extra.registrations[0]
    from plugin_host.registry import proxy_class

    assert "world" in proxy_class(extra.trait)(extra, reg).greet("world")  # type: ignore[attr-defined]
    extra.release()
    assert str(lib) not in mapped_paths()


def test_a_file_that_opens_but_cannot_be_read_is_a_typed_error(manager: PluginManager) -> None:
    # /proc/self is a symlink: the file is judged by its real path and read for a private copy.
    match = "/proc/self/mem: not a loadable shared library: cannot copy it for loading: Input/output error"
    with pytest.raises(NotASharedLibraryError, match=match):
        manager.load_plugins("/proc/self/mem", PluginTrait.Greeter)
    pid_path = f"/proc/{os.getpid()}/mem"  # no symlink on the way: checked in place
    with pytest.raises(NotASharedLibraryError, match=f"{pid_path}: not a loadable shared library: cannot read it"):
        manager.load_plugins(pid_path, PluginTrait.Greeter)


def test_symbol_names_with_absurd_versions_or_a_newline_are_not_the_scheme() -> None:
    from plugin_interface import parse_symbol

    assert parse_symbol("plugin_register_all_Greeter_v1\n") is None
    assert parse_symbol("plugin_register_Greeter_English_v" + "9" * 5000) is None  # no int() of 5000 digits
    assert parse_symbol("plugin_register_Greeter_English_v12") is not None


def test_a_set_released_out_of_band_does_not_poison_the_manager(
    example_plugins: dict[str, Path], tmp_path: Path
) -> None:
    """unload_trait on a manager's set, then close(): the rest still unloads, unmakers run, nothing stays mapped."""
    import shutil

    first, second = tmp_path / "libfirst.so", tmp_path / "libsecond.so"
    shutil.copy(example_plugins["greeters"], first)
    shutil.copy(example_plugins["greeters"], second)
    manager = PluginManager()
    [a] = manager.load_plugins(first, PluginTrait.Greeter)
    [b] = manager.load_plugins(second, PluginTrait.Greeter)
    assert unload_trait(a.library, a.registration_set) == 3  # out of band: behind the manager's back
    counters = manager.unload_all()  # raised AlreadyReleasedError here, leaving the second file mapped
    assert counters == {first: {"Greeter": 3}, second: {"Greeter": 3}}
    assert not a.is_loaded and not b.is_loaded
    assert str(first) not in mapped_paths() and str(second) not in mapped_paths()
    manager.close()  # and again: nothing left, nothing raised
    with pytest.raises(AlreadyReleasedError):
        unload_trait(a.library, a.registration_set)  # a second release by the caller is still refused


# ---- the core, in every language: C, C++ and Rust plugins alike -----------------------
# native_plugins/{c,cpp,rust}_greeter are twins: English, French and Counting (a static call
# counter); built with NO_AGGREGATE they take the host-owned path.

GREETINGS = {"English": "Hello, Ada!", "French": "Bonjour, Ada!", "Counting": "call 1, Ada"}


@pytest.mark.parametrize("host_owned", [False, True], ids=["plugin-owned", "host-owned"])
def test_both_ownership_paths_and_counters_in_every_language(
    language: str, language_greeter: LanguageGreeter, tmp_path: Path, host_owned: bool
) -> None:
    lib = shutil.copy(language_greeter(language, host_owned), tmp_path / f"lib{language}_greeter.so")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
        assert handle.is_plugin_owned is not host_owned
        assert sorted(handle.type_names) == sorted(GREETINGS)
        assert {p.type_name: p.greet("Ada") for p in handle.proxies()} == GREETINGS  # type: ignore[attr-defined]
        assert handle.get_unmaker_counter() == 0
        result = manager.unload_by_path(lib)
    assert result == {"Greeter": 3} and result.unmapped


def test_double_release_and_use_after_unload_in_every_language(
    language: str, language_greeter: LanguageGreeter, tmp_path: Path
) -> None:
    lib = shutil.copy(language_greeter(language), tmp_path / f"lib{language}_greeter.so")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
        proxy = handle.proxy("English")
        regset = handle.registration_set
        assert handle.unload() == 3
        with pytest.raises(AlreadyReleasedError, match="already released") as exc:
            regset.release()
        assert exc.value.symbol == "plugin_register_all_Greeter_v1"
        with pytest.raises(AlreadyReleasedError):
            handle.unload()
        with pytest.raises(PluginUnloadedError, match="has been unloaded") as unloaded:
            proxy.greet("Ada")  # type: ignore[attr-defined]
        assert unloaded.value.path == str(lib)
        with pytest.raises(PluginUnloadedError):
            handle.get_unmaker_counter()
        assert not manager.is_loaded(lib)


def test_unmapped_after_unload_and_fresh_static_state_on_reload_in_every_language(
    language: str, language_greeter: LanguageGreeter, tmp_path: Path
) -> None:
    lib = shutil.copy(language_greeter(language), tmp_path / f"lib{language}_greeter.so")
    for _ in range(3):
        with PluginManager() as manager:
            [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
            counting = handle.proxy("Counting")
            assert [counting.greet(n) for n in "ab"] == ["call 1, a", "call 2, b"]  # type: ignore[attr-defined]
            assert str(lib) in mapped_paths()
            assert manager.unload_by_path(lib).unmapped
            assert handle.unload_warning is None
        assert str(lib) not in mapped_paths()


def test_a_failing_method_is_contained_in_every_language(
    language: str, language_greeter: LanguageGreeter, tmp_path: Path
) -> None:
    """C++ throws and Rust panics on an empty name; C answers it.  Either way the host goes on."""
    lib = shutil.copy(language_greeter(language), tmp_path / f"lib{language}_greeter.so")
    with PluginManager() as manager:
        [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
        counting = handle.proxy("Counting")
        if language == "c":
            assert counting.greet("") == "call 1, "  # type: ignore[attr-defined]
        else:
            with pytest.raises(PluginCallError, match="Greeter.Counting.greet returned NULL"):
                counting.greet("")  # type: ignore[attr-defined]
        assert counting.greet("b").endswith(", b")  # type: ignore[attr-defined]
        assert manager.unload_by_path(lib).unmapped


def test_a_set_made_outside_the_manager_reports_its_counter_after_the_deferred_close(
    example_plugins: dict[str, Path],
) -> None:
    """The manager unloads the file while a set made with register_trait lives: releasing that set closes
    the library (the deferred close), and unload_trait still returns the counter, read before it."""
    manager = PluginManager()
    [handle] = manager.load_plugins(example_plugins["multi_trait"], PluginTrait.Greeter)
    extra = register_trait(handle.library, PluginTrait.Transformer)
    manager.unload_by_path(handle.path)
    assert handle.library.is_open  # kept for the set made outside the manager
    assert unload_trait(handle.library, extra) == 2
    assert not handle.library.is_open


# ---- the manager's keys and the unload_all result ---------------------------------------

_SEGMENTS = st.sampled_from(["a", "b", "lib.so", ".", "..", "", "/"])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_SEGMENTS, max_size=6), absolute=st.booleans())
def test_a_file_is_keyed_as_its_absolute_path_prints(parts: list[str], absolute: bool) -> None:
    """The manager keys files by string, without a Path in the common case: the key is always
    ``str(Path(path).absolute())``, for a string and a Path alike."""
    from plugin_host._manager import _key

    text = ("/" if absolute else "") + "/".join(parts)
    if not text:
        return
    assert _key(text) == str(Path(text).absolute())
    assert _key(Path(text)) == str(Path(text).absolute())


def test_a_file_named_relatively_or_through_dots_is_the_same_file(
    manager: PluginManager, example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "plugins"
    d.mkdir()
    lib = Path(shutil.copy(example_plugins["greeters"], d / "libgreeters.so"))
    [handle] = manager.load_plugins(f"{d}/", PluginTrait.Greeter)  # the directory with a trailing slash
    monkeypatch.chdir(tmp_path)
    for name in (lib, str(lib), "plugins/libgreeters.so", "./plugins/libgreeters.so", f"{d}/./libgreeters.so"):
        assert manager.is_loaded(name), name
        assert manager.get_handles(name) == [handle], name
        assert manager.load_plugins(name, PluginTrait.Greeter) == [handle], name
    assert handle.path == lib and isinstance(handle.path, Path)
    assert manager.unload_by_path("plugins//libgreeters.so") == {"Greeter": 3}
    assert not manager.is_loaded(lib)


def test_unload_all_returns_a_path_keyed_mapping(manager: PluginManager, example_plugins: dict[str, Path]) -> None:
    libs = [example_plugins[n] for n in ("greeters", "host_owned")]
    for lib in libs:
        manager.load_plugins(lib, PluginTrait.Greeter)
    results = manager.unload_all()
    assert results == {libs[0]: {"Greeter": 3}, libs[1]: {"Greeter": 2}}
    assert list(results) == libs and all(isinstance(p, Path) for p in results)
    assert len(results) == 2 and libs[0] in results and str(libs[1]) in results and "x" not in results
    assert results[str(libs[0])] is results[libs[0]]  # made once, when first read
    assert isinstance(results[libs[0]], UnloadResult) and results[libs[0]].unmapped
    with pytest.raises(KeyError):
        results[libs[0].with_name("libnone.so")]
    assert repr(results).startswith("UnloadResults({")
    assert manager.unload_all() == {}


def test_unload_paths_unloads_the_loaded_ones_in_order_and_skips_the_rest(
    manager: PluginManager, example_plugins: dict[str, Path], tmp_path: Path
) -> None:
    """What the watcher does with a notification's removals: the files together, as unload_all does them."""
    d = tmp_path / "plugins"
    d.mkdir()
    for name in ("liba.so", "libb.so", "libc.so"):
        shutil.copy(example_plugins["greeters"], d / name)
    a, b, c = manager.load_plugins(d, PluginTrait.Greeter)
    host_owned = manager.load_plugins(example_plugins["host_owned"], PluginTrait.Greeter)[0]
    extra = register_trait(b.library, PluginTrait.Greeter)  # b waits for a set the manager did not make
    errors: list[PluginError] = []
    asked = [d / "libc.so", str(example_plugins["host_owned"]), d / "libnone.so", d / "liba.so", b.path, c.path]
    results = manager.unload_paths(asked, errors=errors)
    assert errors == []
    assert list(results) == [d / "libc.so", example_plugins["host_owned"], d / "liba.so", d / "libb.so"]
    assert results[d / "liba.so"] == {"Greeter": 3} and results[example_plugins["host_owned"]] == {"Greeter": 2}
    assert not any(h.is_loaded for h in (a, b, c, host_owned)) and manager.handles == []
    assert str(d / "liba.so") not in mapped_paths() and str(d / "libb.so") in mapped_paths()
    extra.release()
    assert str(d / "libb.so") not in mapped_paths()
    assert manager.unload_paths([d / "liba.so"]) == {}


def test_unload_all_waits_for_a_set_made_outside_the_manager_on_a_directory_load(
    manager: PluginManager, example_plugins: dict[str, Path], tmp_path: Path
) -> None:
    """A library of a directory load with a second set the manager did not make is not released
    with the others: unload_all releases its own set, and the library stays until the other goes."""
    d = tmp_path / "plugins"
    d.mkdir()
    for name in ("liba.so", "libb.so"):
        shutil.copy(example_plugins["greeters"], d / name)
    first, second = manager.load_plugins(d, PluginTrait.Greeter)
    extra = register_trait(first.library, PluginTrait.Greeter)  # not the manager's
    assert manager.unload_all() == {d / "liba.so": {"Greeter": 3}, d / "libb.so": {"Greeter": 3}}
    assert not first.is_loaded and not second.is_loaded
    assert str(d / "liba.so") in mapped_paths() and str(d / "libb.so") not in mapped_paths()
    extra.release()
    assert str(d / "liba.so") not in mapped_paths()
    with pytest.raises(AlreadyReleasedError):
        unload_trait(second.library, second.registration_set)  # released exactly once
