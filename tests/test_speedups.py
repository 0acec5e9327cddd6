"""The optional C checks (host/speedups) against their pure-Python twins.

The C versions only say "passes"; on anything else the Python checks run and
raise the typed error.  So what must hold is: the C checks pass exactly the
images and arrays the Python checks pass.  These tests compare the two on
fuzzed ELF images, on the catalogued bad files in a directory load, and on
every malformed registration array the test plugins can make; and they check
that CI really builds and uses the C version.
"""

from __future__ import annotations

import _ctypes
import ctypes
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import EXTENSIONS_PROMISED, NO_COMPILER_INSTALL, CompilePlugin, mapped_paths, run_isolated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_host import PluginManager, PluginTrait
from plugin_host.formats import host_elf_identity
from plugin_host.loading import HEAD_BYTES, Image, _accel, _precheck, fast_precheck, precheck_image
from plugin_host.registry import RegistrationSet
from plugin_interface import PluginError, PluginUnloadedError, register_all_symbol, resolve_trait
from test_descriptor import HANDWRITTEN, HANDWRITTEN_DESCRIPTOR

REPO = Path(__file__).resolve().parents[1]
SPEEDUPS = REPO / "host" / "speedups"
INCLUDE = REPO / "interface" / "plugin_interface" / "include"

needs_speedups = pytest.mark.skipif(
    not _accel.available(), reason="plugin_host.loading._speedups was not built (no C compiler at install time)"
)
elf_only = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="the C pre-check is for ELF hosts")


@pytest.fixture
def pure_python() -> Iterator[None]:
    previous = _accel.set_enabled(False)
    try:
        yield
    finally:
        _accel.set_enabled(previous)


def test_ci_builds_and_uses_the_c_checks() -> None:
    if not EXTENSIONS_PROMISED:
        pytest.skip("only CI's usual install promises a C compiler at install time")
    assert _accel.available(), "CI installed plugin-host without its C extension"
    assert _accel.enabled()


def test_an_install_made_without_a_compiler_has_no_c_checks() -> None:
    """CI's second run of the suite installs with ``CC=false``: this checks that it really ran without C."""
    if not NO_COMPILER_INSTALL:
        pytest.skip("PLUGIN_HOST_TEST_INSTALL=no-compiler says the install was made without a C compiler")
    assert not _accel.available() and not _accel.enabled()
    version = run_isolated("import sys; from plugin_host.cli import main; sys.exit(main(['--version']))")
    assert "pure Python" in version.stdout, version.stdout


def test_pure_python_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "from plugin_host.loading import _accel; print(_accel.enabled())"
    monkeypatch.setenv("PLUGIN_HOST_PURE_PYTHON", "1")
    assert run_isolated(code).stdout.strip() == "False"
    monkeypatch.setenv("PLUGIN_HOST_PURE_PYTHON", "0")
    assert run_isolated(code).stdout.strip() == str(_accel.available())


@pytest.mark.parametrize("source", ["speedups.c", "load.c", "unload.c", "exports.c"])
@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_c_source_compiles_warning_free(cc: str, source: str, tmp_path: Path) -> None:
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    flags = ["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O2", "-fPIC", "-c"]
    cmd = [cc, *flags, "-I", str(SPEEDUPS), "-I", str(INCLUDE), str(SPEEDUPS / source)]
    proc = subprocess.run([*cmd, "-o", str(tmp_path / "speedups.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# ---- the pre-check ------------------------------------------------------------------------------


def _python_passes(path: Path, data: bytes | None) -> bool:
    """The pure-Python pre-check's verdict on the file (fd mode) or on ``data``."""
    try:
        if data is not None:
            precheck_image(Image(path, os.stat(path), data=data))
            return True
        fd = os.open(path, os.O_RDONLY)
        try:
            precheck_image(Image(path, os.fstat(fd), fd=fd))
        finally:
            os.close(fd)
        return True
    except PluginError:
        return False


def _c_verdicts(path: Path, data: bytes) -> tuple[bool, bool, bool]:
    """The C pre-check's verdicts: by path (as a directory load asks), on an open file, on bytes."""
    host = host_elf_identity()
    machine = -1 if host.machine is None else host.machine
    [by_path] = fast_precheck([path], os.geteuid())
    fd = os.open(path, os.O_RDONLY)
    head = _precheck.HEAD_BYTES  # patched by the fuzz test
    try:
        size = os.fstat(fd).st_size
        on_fd = _accel.elf_precheck_passes(fd, None, size, head, host.elf_class, host.byte_order, machine)
    finally:
        os.close(fd)
    on_data = _accel.elf_precheck_passes(None, data, len(data), HEAD_BYTES, host.elf_class, host.byte_order, machine)
    return by_path, on_fd, on_data


# Where a mutation does the most harm: the ELF header, the program headers,
# and the first pages (dynamic string table of a small library).
_OFFSETS = st.one_of(st.integers(0, 64), st.integers(64, 64 + 56 * 12), st.integers(0, 2 * HEAD_BYTES))


@needs_speedups
@elf_only
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.one_of(st.none(), st.integers(0, 40_000)),
    patches=st.lists(st.tuples(_OFFSETS, st.binary(min_size=1, max_size=8)), max_size=4),
    # A 64-byte head sends both checks through PT_DYNAMIC to the dynamic string
    # table, as for a library whose strings lie past the first pages.
    head=st.sampled_from([64, HEAD_BYTES]),
)
def test_c_precheck_agrees_with_python_on_fuzzed_images(
    example_plugins: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    cut: int | None,
    patches: list[tuple[int, bytes]],
    head: int,
) -> None:
    with mock.patch.object(_precheck, "HEAD_BYTES", head):
        _fuzz_case(example_plugins["greeters"], tmp_path_factory, cut, patches)


def _fuzz_case(
    lib: Path, tmp_path_factory: pytest.TempPathFactory, cut: int | None, patches: list[tuple[int, bytes]]
) -> None:
    data = bytearray(lib.read_bytes())
    if cut is not None:
        del data[cut:]
    for offset, value in patches:
        data[offset : offset + len(value)] = value
    path = tmp_path_factory.mktemp("fuzz") / "libfuzz.so"
    path.write_bytes(bytes(data))
    os.chmod(path, 0o644)
    expected = _python_passes(path, None)
    by_path, on_fd, on_data = _c_verdicts(path, bytes(data))
    assert by_path == expected
    assert on_fd == expected
    assert on_data == _python_passes(path, bytes(data))


def _elf64_program_headers(data: bytes) -> tuple[str, int, int, int]:
    """``(byte order, e_phoff, e_phentsize, e_phnum)`` of an ELF64 image."""
    order = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(order + "Q", data, 32)
    phentsize, phnum = struct.unpack_from(order + "HH", data, 54)
    return order, phoff, phentsize, phnum


@needs_speedups
@elf_only
def test_wide_program_header_entries_are_read_entry_by_entry(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """e_phentsize larger than an entry: the C pre-check reads the used 56 bytes of each
    (never the whole table, which can be 4 GiB) and agrees with Python, here that it passes."""
    data = bytearray(example_plugins["greeters"].read_bytes())
    if data[4] != 2:
        pytest.skip("an ELF64 host")
    order, phoff, phentsize, phnum = _elf64_program_headers(bytes(data))
    wide = 200
    data += bytes(-len(data) % 8)
    new_phoff = len(data)  # past the head: read through the descriptor, entry by entry
    for i in range(phnum):
        data += data[phoff + i * phentsize : phoff + (i + 1) * phentsize] + b"\xa5" * (wide - phentsize)
    struct.pack_into(order + "Q", data, 32, new_phoff)
    struct.pack_into(order + "H", data, 54, wide)
    path = tmp_path / "libwide.so"
    path.write_bytes(bytes(data))
    assert new_phoff > HEAD_BYTES
    assert _python_passes(path, None) and _python_passes(path, bytes(data))
    assert _c_verdicts(path, bytes(data)) == (True, True, True)


@needs_speedups
@elf_only
def test_dynamic_section_over_the_limit_is_refused_by_both(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """A PT_DYNAMIC larger than MAX_DYNAMIC_BYTES (within the file) is corruption for C and
    Python alike: it is read whole, and a sparse file could make it gigabytes."""
    data = bytearray(example_plugins["greeters"].read_bytes())
    if data[4] != 2:
        pytest.skip("an ELF64 host")
    order, phoff, phentsize, phnum = _elf64_program_headers(bytes(data))
    entries = [phoff + i * phentsize for i in range(phnum)]
    [entry] = [e for e in entries if struct.unpack_from(order + "I", data, e)[0] == 2]  # PT_DYNAMIC
    (d_offset,) = struct.unpack_from(order + "Q", data, entry + 8)
    struct.pack_into(order + "Q", data, entry + 32, _precheck.MAX_DYNAMIC_BYTES + 16)
    data += bytes(d_offset + _precheck.MAX_DYNAMIC_BYTES + 16 - len(data))  # so it is not truncated
    path = tmp_path / "libbigdynamic.so"
    path.write_bytes(bytes(data))
    limit = _precheck.MAX_DYNAMIC_BYTES
    with mock.patch.object(_precheck, "HEAD_BYTES", 64):  # past the head: both read PT_DYNAMIC
        assert _c_verdicts(path, bytes(data))[1] is False
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(PluginError, match=f"its dynamic section .* is larger than {limit} bytes") as exc:
                precheck_image(Image(path, os.fstat(fd), fd=fd))
        finally:
            os.close(fd)
    assert exc.value.path == str(path)


@needs_speedups
@elf_only
def test_c_precheck_on_the_example_and_test_plugins(
    example_plugins: dict[str, Path], test_plugins: dict[str, Path]
) -> None:
    for name in ("greeters", "host_owned", "multi_trait"):
        path = example_plugins[name]
        assert _c_verdicts(path, path.read_bytes()) == (True, True, True), path
    for path in [example_plugins["foo"], *test_plugins.values()]:  # libfoo has no plugin symbols
        expected = _python_passes(path, None)
        assert _c_verdicts(path, path.read_bytes()) == (expected,) * 3, path


_CATALOG_CHILD = """
import json, os
from plugin_host import PluginManager, PluginTrait
from plugin_host.loading import _accel, _precheck
_accel.set_enabled({enabled})
errors = []
with PluginManager() as manager:
    handles = manager.load_plugins({directory!r}, PluginTrait.Greeter, errors=errors)
    loaded = sorted(os.path.basename(h.path) for h in handles)
    greetings = sorted(h.proxies()[0].greet("x") for h in handles)
print("RESULT " + json.dumps([loaded, greetings, sorted(type(e).__name__ + ": " + str(e) for e in errors)]))
"""


@needs_speedups
@elf_only
def test_directory_load_reports_the_same_with_and_without_c(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """Bad files among good ones: the same files load, the same errors read the same."""
    good = example_plugins["greeters"].read_bytes()
    d = tmp_path / "plugins"
    d.mkdir()
    for i in range(3):
        (d / f"libgood{i}.so").write_bytes(good)
    (d / "libempty.so").write_bytes(b"")
    (d / "libtext.so").write_text("not a library\n")
    (d / "libcut.so").write_bytes(good[: len(good) // 2])
    (d / "libheader.so").write_bytes(good[:100])
    arm = bytearray(good)
    arm[18:20] = (183 if host_elf_identity().machine != 183 else 62).to_bytes(2, "little")
    (d / "libarm.so").write_bytes(bytes(arm))
    (d / "libplain.so").write_bytes(good.replace(b"plugin_register_", b"plugin_rEgister_"))
    (d / "libdir.so").mkdir()
    (d / "libopen.so").write_bytes(good)
    os.chmod(d / "libopen.so", 0o666)
    (d / "liblink.so").symlink_to(d / "libgood0.so")
    os.mkfifo(d / "libfifo.so")
    results = []
    for enabled in (True, False):
        proc = run_isolated(_CATALOG_CHILD.format(enabled=enabled, directory=str(d)))
        [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        results.append(json.loads(line[len("RESULT ") :]))
    with_c, without_c = results
    assert with_c == without_c
    loaded, greetings, errors = with_c
    assert loaded == ["libgood0.so", "libgood1.so", "libgood2.so", "liblink.so"]
    assert len(greetings) == 4
    assert len(errors) == 9, errors


# ---- the registration checks --------------------------------------------------------------------

_MALFORMED = [
    (),
    ("NULL_METHOD",),
    ("SHORT_VTABLE",),
    ("BAD_ABI_VERSION",),
    ("BAD_TRAIT_NAME",),
    ("BAD_TRAIT_VERSION",),
    ("NULL_FACTORIES",),
    ("NULL_REGISTRATIONS",),
    ("NULL_ENTRY",),
    ("HUGE_LEN",),
]


def _load(lib: Path) -> tuple[str, str, list[str]]:
    with PluginManager() as manager:
        try:
            [handle] = manager.load_plugins(lib, PluginTrait.Greeter)
        except PluginError as e:
            return type(e).__name__, str(e), []
        regs = handle.registration_set.registrations
        greetings = [p.greet("you") for p in handle.proxies()]  # type: ignore[attr-defined]
        return (
            "loaded",
            repr([(r.type_name, sorted(r.methods), r.trait_version, r.vtable_size) for r in regs]),
            greetings,
        )


@needs_speedups
@pytest.mark.parametrize("defines", _MALFORMED, ids=lambda d: d[0] if d else "good")
def test_registration_checks_agree(compile_plugin: CompilePlugin, defines: tuple[str, ...]) -> None:
    """A descriptor identical to the host's sends the load down the C path; the outcome is the Python one."""
    lib = compile_plugin("handwritten", {"handwritten.c": HANDWRITTEN, "descriptor.c": HANDWRITTEN_DESCRIPTOR}, defines)
    with_c = _load(lib)
    previous = _accel.set_enabled(False)
    try:
        without_c = _load(lib)
    finally:
        _accel.set_enabled(previous)
    assert with_c == without_c
    assert (with_c[0] == "loaded") == (defines == ())


@needs_speedups
def test_the_c_path_serves_a_well_formed_plugin(example_plugins: dict[str, Path]) -> None:
    from plugin_host.loading import Library

    spec = resolve_trait(PluginTrait.Greeter)
    library = Library(example_plugins["greeters"])
    try:
        made = RegistrationSet._from_aggregate_in_c(library, spec, library.symbol(register_all_symbol(spec)))
        assert made is not None, "the examples' descriptors should match the host's byte for byte"
        assert sorted(r.type_name for r in made.registrations) == ["English", "French", "Spanish"]
        made.release()
        assert library.get_unmaker_counter("Greeter") == 3
    finally:
        library.close()


@needs_speedups
@pytest.mark.parametrize("room", ["_OUT_WORDS", "_NAMES_BYTES"])
def test_output_too_small_for_c_falls_back_to_python(
    example_plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch, room: str
) -> None:
    """An array too big for the C output buffers is checked in Python, and loads the same."""
    expected = _load(example_plugins["greeters"])
    monkeypatch.setattr(_accel, room, 8)
    assert _load(example_plugins["greeters"]) == expected
    assert expected[0] == "loaded"


def test_version_says_which_checks_run(capsys: pytest.CaptureFixture[str]) -> None:
    from plugin_host.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("plugin-host ")
    assert ("load checks: C (plugin_host.loading._speedups)" in out) == _accel.enabled()


def _no_truncation_check(source: str) -> str:
    """A mutation of the C pre-check: a load segment past the end of the file no longer fails it."""
    check = "if (h.type == PT_LOAD && (h.offset > size || h.filesz > size - h.offset)) {"
    assert source.count(check) == 1, "the truncation check in ph_precheck_elf changed shape"
    return source.replace(check, "if (0) {")


@needs_speedups
@elf_only
def test_a_weakened_c_precheck_is_caught_by_the_agreement_check(
    example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C pre-check is tied to the Python one by these tests: one check removed from the C, and they fail."""
    from plugin_host.formats import SegmentType, check_elf_complete
    from test_policy_agreement import build_speedups

    data = bytearray(example_plugins["greeters"].read_bytes())
    layout = check_elf_complete(lambda offset, n: bytes(data[offset : offset + n]), len(data), "greeters")
    assert layout is not None
    ends = {t: [o + n for p, o, _, n in layout.program_headers if p == t] for t in SegmentType}
    # Cut inside the last load segment, past the dynamic section: only the segment check can tell.
    cut = (max(ends[SegmentType.PT_DYNAMIC]) + max(ends[SegmentType.PT_LOAD])) // 2
    assert max(ends[SegmentType.PT_DYNAMIC]) < cut < max(ends[SegmentType.PT_LOAD])
    data[40:48] = bytes(8)  # e_shoff 0 and e_shnum 0 (ELF64): no section header table past the cut
    data[60:62] = bytes(2)
    truncated = tmp_path / "libtruncated.so"
    truncated.write_bytes(data[:cut])  # a compiler caught mid-write
    os.chmod(truncated, 0o644)
    assert _c_verdicts(truncated, truncated.read_bytes()) == (False, False, False)  # the real C refuses it
    mutant = build_speedups(tmp_path / "mutant", _no_truncation_check, "_speedups_no_truncation")
    monkeypatch.setattr(_accel, "_lib", mutant.lib)
    monkeypatch.setattr(_accel, "_ffi", mutant.ffi)
    assert _python_passes(truncated, None) is False
    with pytest.raises(AssertionError):  # the fuzz test's own comparison notices
        assert _c_verdicts(truncated, truncated.read_bytes()) == (False, False, False)


# ---- the directory load's one call, the unload's, and a second load -----------------------------

_PIPELINE_CHILD = """
import json, os, warnings
from plugin_host import PluginManager, PluginTrait
from plugin_host.loading import _accel
from plugin_host.registry import unload_trait
_accel.set_enabled({enabled})
directory = {directory!r}

def name(path):
    return os.path.basename(str(path))

def mapped():
    with open("/proc/self/maps") as f:
        return sorted({{name(line.split()[-1]) for line in f if directory in line}})

report = {{}}
manager = PluginManager()
for round in ("first", "again"):
    errors = []
    handles = manager.load_plugins(directory, PluginTrait.Greeter, errors=errors)
    report[round] = [
        sorted(
            [name(h.path), [r.type_name, sorted(r.methods), r.trait_version, r.vtable_size], h.is_plugin_owned]
            for h in handles
            for r in h.registration_set.registrations
        ),
        sorted([type(e).__name__, name(e.path), e.symbol, str(e.reason), str(e)] for e in errors),
    ]
    report[round + " in one call"] = sorted(name(h.path) for h in handles if h.registration_set._records is not None)
    by_name = {{name(h.path): h for h in handles}}
    report[round + " greets"] = sorted(p.greet("x") for p in by_name["libgreeters_a.so"].proxies())  # a gate made
    out_of_band = by_name["libgreeters_b.so"]
    unload_trait(out_of_band.library, out_of_band.registration_set)  # released behind the manager's back
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = manager.unload_all()
    report[round + " unloaded"] = [[name(p), dict(r), r.unmapped, len(r.reasons)] for p, r in results.items()]
    report[round + " warnings"] = sorted(
        f"{{w.filename}}: {{type(w.message).__name__}} {{name(w.message.path)}}" for w in caught
    )
    report[round + " released"] = [h.is_loaded for h in handles] + [h.library.is_open for h in handles]
    report[round + " mapped"] = mapped()
print("RESULT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def nodelete_greeter(compile_plugin: CompilePlugin) -> Path:
    """A C Greeter linked with -z nodelete: it stays mapped after its last close."""
    from test_unload import GREETER_C

    mp = pytest.MonkeyPatch()
    mp.setenv("LDFLAGS", "-Wl,-z,nodelete")
    try:
        return compile_plugin("nodelete_greeter", GREETER_C)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def pipeline_catalog(
    compile_plugin: CompilePlugin,
    example_plugins: dict[str, Path],
    test_plugins: dict[str, Path],
    nodelete_greeter: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """One directory with a file for every step the one-call load can stop at, and good files."""
    d = tmp_path_factory.mktemp("pipeline") / "plugins"
    d.mkdir()
    for suffix in ("a", "b", "c"):
        shutil.copy(example_plugins["greeters"], d / f"libgreeters_{suffix}.so")
    shutil.copy(example_plugins["multi_trait"], d / "libmulti_trait.so")
    shutil.copy(example_plugins["host_owned"], d / "libhost_owned.so")  # no aggregate: the makers
    shutil.copy(nodelete_greeter, d / "libnodelete.so")  # stays mapped: a warning from the run
    shutil.copy(test_plugins["undefined_symbol"], d / "libundefined.so")  # dlopen fails
    shutil.copy(test_plugins["null_maker"], d / "libnull_maker.so")  # the aggregate returns NULL
    no_descriptor = compile_plugin("handwritten", HANDWRITTEN)  # checked in Python, then loads
    shutil.copy(no_descriptor, d / "libhw_no_descriptor.so")
    for defines in _MALFORMED:  # a descriptor byte for byte the host's: the C checks run
        lib = compile_plugin(
            "handwritten", {"handwritten.c": HANDWRITTEN, "descriptor.c": HANDWRITTEN_DESCRIPTOR}, defines
        )
        shutil.copy(lib, d / f"libhw_{defines[0].lower() if defines else 'good'}.so")
    # Host-owned (no aggregate): the makers read from .dynsym, made and checked in C.
    for defines in _MALFORMED_HOSTED:
        lib = compile_plugin(
            "handwritten",
            {"handwritten.c": HANDWRITTEN, "descriptor.c": HANDWRITTEN_DESCRIPTOR},
            ("NO_AGGREGATE", *defines),
        )
        shutil.copy(lib, d / f"libho_{defines[0].lower() if defines else 'good'}.so")
    lib = compile_plugin("handwritten", HANDWRITTEN, ("NO_AGGREGATE",))  # checked in Python, then loads
    shutil.copy(lib, d / "libho_no_descriptor.so")
    null_maker = (REPO / "tests" / "plugins" / "null_maker" / "null_maker.c").read_text()
    # AFine made, then NULL: AFine is released.
    shutil.copy(compile_plugin("null_maker", null_maker, ("NO_AGGREGATE",)), d / "libho_null_maker.so")
    sources = {"duplicate.c": DUPLICATE_MAKERS, "descriptor.c": HANDWRITTEN_DESCRIPTOR}
    shutil.copy(compile_plugin("duplicate", sources), d / "libho_duplicate.so")  # One's made again by Two
    return d


#: The registration malformations a host-owned handwritten plugin can make (and none).
_MALFORMED_HOSTED = [
    (),
    ("NULL_METHOD",),
    ("SHORT_VTABLE",),
    ("BAD_ABI_VERSION",),
    ("BAD_TRAIT_NAME",),
    ("BAD_TRAIT_VERSION",),
    ("NO_UNMAKER",),
]

DUPLICATE_MAKERS = r"""
/* Two makers that return one registration: releasing both would free it twice. */
#include <stdatomic.h>
#include <stddef.h>

#include "plugin_interface.h"
#include "plugin_trait_greeter.h"

static _Atomic size_t unmakers;

static char *greet(void *self, const char *name) {
    (void)self, (void)name;
    return NULL;
}

static void release(void *p) { (void)p; }

static const GreeterVTable vtable = {.size = sizeof(GreeterVTable), .greet = greet};

static PluginRegistration the_one = {
    .struct_size = sizeof(PluginRegistration),
    .abi_version = PLUGIN_ABI_VERSION,
    .trait_name = "Greeter",
    .trait_version = PLUGIN_TRAIT_VERSION_Greeter,
    .vtable_size = sizeof(GreeterVTable),
    .type_name = "One",
    .instance = NULL,
    .vtable = &vtable,
    .free_memory = release,
};

PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_One_v1(void);
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_One_v1(void) { return &the_one; }
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_Two_v1(void);
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_Two_v1(void) { return &the_one; }
PLUGIN_EXPORT void plugin_unregister_Greeter_One_v1(PluginRegistration *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_One_v1(PluginRegistration *r) {
    (void)r;
    atomic_fetch_add(&unmakers, 1);
}
PLUGIN_EXPORT void plugin_unregister_Greeter_Two_v1(PluginRegistration *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_Two_v1(PluginRegistration *r) {
    (void)r;
    atomic_fetch_add(&unmakers, 1);
}
PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void);
PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void) { return atomic_load(&unmakers); }
"""


@needs_speedups
@elf_only
def test_the_one_call_load_and_unload_agree_with_python(pipeline_catalog: Path) -> None:
    """Every outcome of a directory load, its unload and a second load of the same files is the
    pure-Python pipeline's: what loads, each registration, each typed error (file, symbol,
    reason, message), the counters, the warnings, what stays mapped; and the C load served the files
    that pass every check in one call."""
    reports = []
    for enabled in (True, False):
        proc = run_isolated(_PIPELINE_CHILD.format(enabled=enabled, directory=str(pipeline_catalog)), timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        reports.append(json.loads(line[len("RESULT ") :]))
    with_c, without_c = reports
    fast = {key: with_c.pop(key) for key in list(with_c) if key.endswith("in one call")}
    assert {key: without_c.pop(key) for key in list(without_c) if key.endswith("in one call")} == {
        "first in one call": [],
        "again in one call": [],
    }
    assert with_c == without_c
    expected_fast = ["libgreeters_a.so", "libgreeters_b.so", "libgreeters_c.so", "libho_good.so", "libhost_owned.so"]
    expected_fast += ["libhw_good.so", "libmulti_trait.so", "libnodelete.so"]
    assert fast == {"first in one call": expected_fast, "again in one call": expected_fast}
    loaded, errors = with_c["first"]
    assert {row[0] for row in loaded} == {*expected_fast, "libho_no_descriptor.so", "libhw_no_descriptor.so"}
    assert [row[2] for row in loaded if row[0] in ("libho_good.so", "libhost_owned.so")] == [False] * 3
    assert [e[:2] for e in errors] == [
        ["AbiMismatchError", "libho_bad_abi_version.so"],
        ["AbiMismatchError", "libho_bad_trait_name.so"],
        ["AbiMismatchError", "libho_bad_trait_version.so"],
        ["AbiMismatchError", "libho_null_method.so"],
        ["AbiMismatchError", "libho_short_vtable.so"],
        ["AbiMismatchError", "libhw_bad_abi_version.so"],
        ["AbiMismatchError", "libhw_bad_trait_name.so"],
        ["AbiMismatchError", "libhw_bad_trait_version.so"],
        ["AbiMismatchError", "libhw_null_method.so"],
        ["AbiMismatchError", "libhw_short_vtable.so"],
        ["InconsistentArrayError", "libho_duplicate.so"],
        ["InconsistentArrayError", "libhw_huge_len.so"],
        ["InconsistentArrayError", "libhw_null_entry.so"],
        ["InconsistentArrayError", "libhw_null_factories.so"],
        ["InconsistentArrayError", "libhw_null_registrations.so"],
        ["LibraryLoadError", "libundefined.so"],
        ["MakerReturnedNullError", "libho_null_maker.so"],
        ["MakerReturnedNullError", "libnull_maker.so"],
        ["SymbolNotFoundError", "libho_no_unmaker.so"],
    ]
    assert with_c["again"] == with_c["first"]
    unloaded = dict((row[0], row[1:]) for row in with_c["first unloaded"])
    assert unloaded["libgreeters_c.so"] == [{"Greeter": 3}, True, 0]  # released once: three unmakers ran
    assert unloaded["libgreeters_b.so"] == [{"Greeter": 3}, True, 0]  # the out-of-band release counted once
    assert unloaded["libnodelete.so"] == [{"Greeter": 1}, False, 1]  # its one unmaker ran; it stayed
    assert unloaded["libhost_owned.so"] == [{"Greeter": 2}, True, 0]  # each registration's unmaker, once
    assert unloaded["libho_good.so"] == [{"Greeter": 1}, True, 0]
    assert [row[0] for row in with_c["first unloaded"]] == sorted(unloaded)  # in load order, the files' order
    # The warning names the caller of unload_all (the child's own code), not the host's files.
    assert with_c["first warnings"] == ["<string>: LibraryStillMappedWarning libnodelete.so"]
    assert set(with_c["first released"]) == {False}
    assert with_c["first mapped"] == ["libnodelete.so"]  # everything else left, the failures included


_IDENTITY_CHILD = """
import os
from plugin_host import PluginManager, PluginTrait
from plugin_host.loading import _accel
_accel.set_enabled({enabled})
directory, victim = {directory!r}, {victim!r}
manager = PluginManager()
manager.load_plugins(directory, PluginTrait.Greeter)
manager.unload_all()
# A rewrite in place of the same size (another machine's bytes), its mtime put back: only the ctime tells.
before = os.stat(victim)
data = bytearray(open(victim, "rb").read())
data[18:20] = (183 if data[18:20] != (183).to_bytes(2, "little") else 62).to_bytes(2, "little")
with open(victim, "r+b") as f:
    f.write(data)
os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
after = os.stat(victim)
assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
errors = []
handles = manager.load_plugins(directory, PluginTrait.Greeter, errors=errors)
print("LOADED", sorted(os.path.basename(h.path) for h in handles))
for e in errors:
    print("ERROR", type(e).__name__, e.path == victim, e)
manager.unload_all()
"""


def _second_load_after_a_rewrite(example_plugins: dict[str, Path], tmp_path: Path, enabled: bool) -> list[str]:
    d = tmp_path / "plugins"
    d.mkdir()
    for name in ("libkept.so", "librewritten.so"):
        shutil.copy(example_plugins["greeters"], d / name)
    proc = run_isolated(_IDENTITY_CHILD.format(enabled=enabled, directory=str(d), victim=str(d / "librewritten.so")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("enabled", [True, False], ids=["C", "Python"])
def test_a_file_rewritten_between_loads_is_checked_again(
    example_plugins: dict[str, Path], tmp_path: Path, enabled: bool
) -> None:
    """A second load skips the pre-check only of a file with the identity it passed with: one
    rewritten in place since, the same size, its mtime put back, is read again and refused."""
    if enabled and not _accel.available():
        pytest.skip("the C checks were not built")
    lines = _second_load_after_a_rewrite(example_plugins, tmp_path, enabled)
    assert lines[0] == "LOADED ['libkept.so']"
    assert lines[1].startswith("ERROR ArchitectureMismatchError True "), lines
    assert "built for" in lines[1]


_MAKERS_CHILD = """
import os
from plugin_host import PluginManager, PluginTrait
from plugin_host.loading import _accel
_accel.set_enabled({enabled})
directory, victim = {directory!r}, {victim!r}
manager = PluginManager()

def load(what):
    errors = []
    handles = manager.load_plugins(directory, PluginTrait.Greeter, errors=errors)
    rows = sorted((os.path.basename(h.path), h.type_names) for h in handles)
    records = [h.registration_set._records for h in handles if os.path.basename(h.path) == "librewritten.so"]
    read = "read" if records and records[0] and records[0].hosted.identity != bytes(72) else "not read"
    print(what, rows, [type(e).__name__ for e in errors], read if {enabled} else "")
    print("counters", sorted((os.path.basename(str(p)), dict(r)) for p, r in manager.unload_all().items()))

load("FIRST")
load("AGAIN")
# A rewrite in place of the same size, its mtime put back: plugin_register_Greeter_Italian_v1 made
# an STT_COMMON symbol (not an export to the host's reader; dlsym still finds it).  Only the ctime tells.
before = os.stat(victim)
data = bytearray(open(victim, "rb").read())
name = data.index(b"\\0plugin_register_Greeter_Italian_v1\\0") + 1
shoff = int.from_bytes(data[40:48], "little")
for i in range(int.from_bytes(data[60:62], "little")):
    header = shoff + 64 * i
    if int.from_bytes(data[header + 4 : header + 8], "little") == 11:  # .dynsym
        offset = int.from_bytes(data[header + 24 : header + 32], "little")
        size = int.from_bytes(data[header + 32 : header + 40], "little")
        link = shoff + 64 * int.from_bytes(data[header + 40 : header + 44], "little")
        strings = int.from_bytes(data[link + 24 : link + 32], "little")
        for entry in range(offset, offset + size, 24):
            if int.from_bytes(data[entry : entry + 4], "little") == name - strings:
                data[entry + 4] = 0x15  # STB_GLOBAL, STT_COMMON
with open(victim, "r+b") as f:
    f.write(data)
os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
after = os.stat(victim)
assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
load("REWRITTEN")
"""


def _host_owned_loads(example_plugins: dict[str, Path], tmp_path: Path, enabled: bool) -> list[str]:
    d = tmp_path / "plugins"
    d.mkdir(parents=True)
    for name in ("libkept.so", "librewritten.so"):
        shutil.copy(example_plugins["host_owned"], d / name)
    proc = run_isolated(_MAKERS_CHILD.format(enabled=enabled, directory=str(d), victim=str(d / "librewritten.so")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


@needs_speedups
@elf_only
def test_a_host_owned_file_is_read_again_only_when_it_changed(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """The makers a host-owned file's .dynsym named are kept per file identity: loaded again
    unchanged, the file is not read again; rewritten in place (the same size, its mtime put back)
    with a maker no longer exported, it is, and the makers it names now are the ones made -- as
    the pure-Python pipeline (which reads every time) does."""
    with_c, without_c = (_host_owned_loads(example_plugins, tmp_path / str(on), on) for on in (True, False))
    both = ["libkept.so", "librewritten.so"]
    assert with_c[0] == f"FIRST {[(n, ['German', 'Italian']) for n in both]} [] read"
    assert with_c[2] == f"AGAIN {[(n, ['German', 'Italian']) for n in both]} [] not read"
    rewritten = [("libkept.so", ["German", "Italian"]), ("librewritten.so", ["German"])]
    assert with_c[4] == f"REWRITTEN {rewritten} [] read"
    assert [line.rsplit("]", 1)[0] for line in with_c] == [line.rsplit("]", 1)[0] for line in without_c]
    assert with_c[5] == "counters [('libkept.so', {'Greeter': 2}), ('librewritten.so', {'Greeter': 1})]"


TWO_HOSTED_TRAITS = r"""
/* Host-owned makers of two traits, one type name in both: what a read found for one trait is
 * not what the other has. */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"
#include "plugin_trait_transformer.h"

static char *german_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Hallo, %s!", name);
}

static size_t same(void *self, uint8_t *data, size_t len) {
    (void)self, (void)data;
    return len;
}

PLUGIN_IMPL(Greeter, German, .greet = german_greet)
PLUGIN_IMPL(Transformer, German, .transform = same)
PLUGIN_IMPL(Transformer, Upper, .transform = same)
PLUGIN_UNMAKER_COUNTER(Greeter)
PLUGIN_UNMAKER_COUNTER(Transformer)
"""


@needs_speedups
@elf_only
def test_what_a_read_found_serves_only_its_trait(compile_plugin: CompilePlugin, tmp_path: Path) -> None:
    """The makers kept for a file are those of the trait its load read them for: a load of the same
    unchanged file for another trait reads its own."""
    d = tmp_path / "plugins"
    d.mkdir()
    shutil.copy(compile_plugin("two_hosted", TWO_HOSTED_TRAITS), d / "libtwo.so")
    with PluginManager() as manager:
        seen = []
        for trait in (PluginTrait.Greeter, PluginTrait.Transformer, PluginTrait.Greeter):
            [handle] = manager.load_plugins(d, trait)
            seen.append((handle.type_names, handle.registration_set._records is not None))
            manager.unload_all()
    assert seen == [(["German"], True), (["German", "Upper"], True), (["German"], True)]


@needs_speedups
@elf_only
@pytest.mark.parametrize("plugin", ["null_maker", "duplicate"])
def test_a_host_owned_failure_makes_nothing_twice(
    pipeline_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    """Where a maker's registration fails in the one call, the Python path names the error from
    the registrations C made: no maker runs again (each would make a registration nobody frees)."""
    from plugin_host.registry import _registrations

    d = tmp_path / "plugins"
    d.mkdir()
    shutil.copy(pipeline_catalog / f"libho_{plugin}.so", d / f"libho_{plugin}.so")
    maker_fn = _registrations.MAKER_FN
    calls = []

    def counting(address: int) -> Any:
        calls.append(address)
        return maker_fn(address)

    monkeypatch.setattr(_registrations, "MAKER_FN", counting)
    found: list[Any] = []
    for enabled in (True, False):
        previous = _accel.set_enabled(enabled)
        try:
            with PluginManager() as manager:
                errors: list[PluginError] = []
                assert manager.load_plugins(d, PluginTrait.Greeter, errors=errors) == []
                found.append([(type(e).__name__, str(e)) for e in errors])
        finally:
            _accel.set_enabled(previous)
        found.append(len(calls))
        calls.clear()
    assert found[0] == found[2]  # the same error, word for word
    assert (found[1], found[3]) == (0, 2)  # C made both; Python makes both itself


@needs_speedups
@elf_only
def test_a_host_owned_load_short_of_room_finishes_in_python(
    example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of room for names after a maker ran, the one call stops there; Python makes the rest of
    that file's registrations (not the one C made again), and the next file from the start."""
    from plugin_host.registry import _registrations

    d = tmp_path / "plugins"
    d.mkdir()
    for i in range(2):
        shutil.copy(example_plugins["host_owned"], d / f"libhost_owned_{i}.so")
    maker_fn = _registrations.MAKER_FN
    calls: list[int] = []

    def counting(address: int) -> Any:
        calls.append(address)
        return maker_fn(address)

    monkeypatch.setattr(_registrations, "MAKER_FN", counting)
    # "German\0Italian\0" fits, and German's own name after it does not.
    monkeypatch.setattr(_accel, "_ROOM_PER_FILE", 0)
    monkeypatch.setattr(_accel, "_NAMES_BYTES", 20)
    results = []
    for enabled in (True, False):
        previous = _accel.set_enabled(enabled)
        try:
            with PluginManager() as manager:
                handles = manager.load_plugins(d, PluginTrait.Greeter)
                verdicts = [h.registration_set._records is not None for h in handles]
                greetings = [p.greet("x") for h in handles for p in h.proxies()]  # type: ignore[attr-defined]
                counters = sorted(dict(r)["Greeter"] for r in manager.unload_all().values())
            results.append((greetings, counters, verdicts, len(calls)))
        finally:
            _accel.set_enabled(previous)
        calls.clear()
    assert results[0][:2] == results[1][:2] == (["Hallo, x!", "Ciao, x!"] * 2, [2, 2])
    assert results[0][2:] == ([False, False], 3)  # Python made Italian of one, both of the other
    assert results[1][2:] == ([False, False], 4)


@needs_speedups
@elf_only
def test_c_and_python_record_the_same_identity(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    lib = shutil.copy(example_plugins["greeters"], tmp_path / "libgreeters.so")
    known: dict[str, bytes] = {}
    assert fast_precheck([str(lib)], os.geteuid(), known=known) == [True]
    assert known == {str(lib): _accel.identity_of(os.stat(lib))}
    assert len(known[str(lib)]) == _accel.IDENTITY_BYTES


@needs_speedups
@elf_only
def test_a_known_identity_is_what_a_second_pre_check_trusts(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """The shortcut reads no byte: given a file's present identity as known, even garbage passes (so
    the identity must be one the file had when it passed); the rule for the file is still applied."""
    lib = tmp_path / "libgarbage.so"
    lib.write_bytes(b"not a library at all")
    lib.chmod(0o644)
    uid = os.geteuid()
    assert fast_precheck([str(lib)], uid) == [False]
    forged = {str(lib): _accel.identity_of(os.lstat(lib))}
    assert fast_precheck([str(lib)], uid, known=dict(forged)) == [True]
    lib.chmod(0o664)  # group-writable: the rule refuses it, whatever the identity says
    assert fast_precheck([str(lib)], uid, known={str(lib): _accel.identity_of(os.lstat(lib))}) == [False]
    assert fast_precheck([str(lib)], uid, known={str(lib): bytes(_accel.IDENTITY_BYTES)}) == [False]


def _identity_without_ctime(source: str) -> str:
    """A mutation of the C identity: the ctime is left out (the brief's four fields and the mode)."""
    lines = ["        (uint64_t)ctime.tv_sec, /* what a rewrite with its mtime put back cannot hide */\n"]
    lines.append("        (uint64_t)ctime.tv_nsec,\n")
    for line in lines:
        assert source.count(line) == 1, "the identity in image.h changed shape"
        source = source.replace(line, "        0,\n")
    return source


_MUTANT_IDENTITY_CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location({module!r}, {built!r})
mutant = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutant)
from plugin_host.loading import _accel
_accel._lib, _accel._ffi = mutant.lib, mutant.ffi
"""


@needs_speedups
@elf_only
def test_an_identity_without_the_ctime_is_caught(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """The rewrite test above fails on a C identity that leaves the ctime out: the rewritten file,
    another machine's, passes unread and reaches dlopen."""
    from test_policy_agreement import build_speedups

    mutant = build_speedups(tmp_path / "mutant", _identity_without_ctime, "_speedups_no_ctime", source="image.h")
    built = mutant.__file__
    assert built is not None
    d = tmp_path / "plugins"
    d.mkdir()
    for name in ("libkept.so", "librewritten.so"):
        shutil.copy(example_plugins["greeters"], d / name)
    victim = str(d / "librewritten.so")
    prelude = _MUTANT_IDENTITY_CHILD.format(module="_speedups_no_ctime", built=built)
    proc = run_isolated(prelude + _IDENTITY_CHILD.format(enabled=True, directory=str(d), victim=victim))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "LOADED ['libkept.so']"
    assert lines[1].startswith("ERROR LibraryLoadError True "), lines  # the loader's words, not the pre-check's
    with pytest.raises(AssertionError):
        assert lines[1].startswith("ERROR ArchitectureMismatchError True ")


@needs_speedups
@elf_only
@pytest.mark.parametrize("kind", ["plugin-owned", "host-owned"])
def test_an_interrupted_directory_load_leaves_nothing_made(
    example_plugins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Interrupted after the one call opened every file (here while the third set is kept): every
    file is released and closed, none is half-loaded, and the manager holds nothing."""
    d = tmp_path / "plugins"
    d.mkdir()
    for i in range(5):
        shutil.copy(example_plugins["greeters"], d / f"libgreeters_{i}.so")
        shutil.copy(example_plugins["host_owned"], d / f"libhost_owned_{i}.so")
    step = "_from_opened" if kind == "plugin-owned" else "_from_opened_makers"
    original = getattr(RegistrationSet, step)
    calls = iter(range(100))

    def interrupted(*args: Any) -> RegistrationSet:
        if next(calls) == 2:
            raise KeyboardInterrupt
        made: RegistrationSet = original(*args)
        return made

    monkeypatch.setattr(RegistrationSet, step, staticmethod(interrupted))
    # A file the interrupt leaves unkept, held open here too: it stays mapped, so its counter
    # tells how many of its registrations the abandon released (every one, once).
    last = d / ("libgreeters_4.so" if kind == "plugin-owned" else "libhost_owned_4.so")
    held = _ctypes.dlopen(str(last), os.RTLD_NOW | os.RTLD_LOCAL)
    try:
        manager = PluginManager()
        with pytest.raises(KeyboardInterrupt):
            manager.load_plugins(d, PluginTrait.Greeter)
        assert manager.handles == []
        counter = ctypes.CFUNCTYPE(ctypes.c_size_t)(_ctypes.dlsym(held, "plugin_unmaker_counter_Greeter_v1"))
        assert counter() == (3 if kind == "plugin-owned" else 2)
    finally:
        _ctypes.dlclose(held)
    assert not [p for p in mapped_paths() if p.startswith(str(d))]


_INTERRUPTED_CHECK_CHILD = """
import _ctypes, ctypes, os
from plugin_host import PluginManager, PluginTrait
from plugin_host.registry import _registrations
directory, held_path = {directory!r}, {held!r}
held = _ctypes.dlopen(held_path, os.RTLD_NOW | os.RTLD_LOCAL)  # keeps the counter readable after the close

def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

_registrations._read_registration = interrupted
manager = PluginManager()
try:
    manager.load_plugins(directory, PluginTrait.Greeter)
except KeyboardInterrupt:
    pass
counter = ctypes.CFUNCTYPE(ctypes.c_size_t)(_ctypes.dlsym(held, "plugin_unmaker_counter_Greeter_v1"))
print("HANDLES", len(manager.handles), "UNMADE", counter())
"""


@needs_speedups
@elf_only
def test_interrupted_while_python_checks_what_c_made_releases_each_once(pipeline_catalog: Path, tmp_path: Path) -> None:
    """Interrupted while the Python path checks a registration the one call made: that path
    releases what it took (AFine, unmade once) and closes the file, and nothing is released again
    (a second unmake would free the registration twice)."""
    d = tmp_path / "plugins"
    d.mkdir()
    lib = shutil.copy(pipeline_catalog / "libho_null_maker.so", d / "libho_null_maker.so")
    proc = run_isolated(_INTERRUPTED_CHECK_CHILD.format(directory=str(d), held=str(lib)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "HANDLES 0 UNMADE 1"


_LATE_GATE_CHILD = """
from plugin_host import PluginManager, PluginTrait
from plugin_host.registry import RegistrationSet, make_proxy
from plugin_interface import PluginUnloadedError

manager = PluginManager()
handles = manager.load_plugins({directory!r}, PluginTrait.Greeter)
original = RegistrationSet.closes_at_once.fget
seen, proxies = set(), []

def closes_at_once(self):
    # The second look (the release's own) comes after the manager's: another thread makes a proxy
    # of the set right between that look and the release mark.
    answer = original(self)
    if id(self) in seen and answer:
        proxies.append(make_proxy(self, self.registrations[0]))
    seen.add(id(self))
    return answer

RegistrationSet.closes_at_once = property(closes_at_once)
manager.unload_all()
assert len(proxies) == len(handles), (len(proxies), len(handles))
refused = 0
for proxy in proxies:
    try:
        proxy.greet("x")  # into an unmapped library, had the gate been left open
    except PluginUnloadedError:
        refused += 1
print("refused", refused, "of", len(proxies))
"""


@needs_speedups
@elf_only
def test_a_gate_made_while_the_run_is_released_is_closed(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """The batch unload marks its sets released before it looks at their gates again, as release()
    does: a proxy made by another thread in between refuses its calls rather than calling into a
    library the batch unmaps."""
    d = tmp_path / "plugins"
    d.mkdir()
    for i in range(3):
        shutil.copy(example_plugins["greeters"], d / f"libgreeters_{i}.so")
    proc = run_isolated(_LATE_GATE_CHILD.format(directory=str(d)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["refused 3 of 3"]


def test_a_gate_asked_for_after_the_release_comes_closed(example_plugins: dict[str, Path]) -> None:
    """A set's gate is made on first use; one first asked for after the release refuses every call."""
    from plugin_host.loading import Library
    from plugin_host.registry import make_proxy, register_trait

    library = Library(example_plugins["greeters"])
    try:
        regset = register_trait(library, PluginTrait.Greeter)
        registration = regset.registrations[0]
        regset.release()
        proxy = make_proxy(regset, registration)
        with pytest.raises(PluginUnloadedError):
            proxy.greet("x")  # type: ignore[attr-defined]
    finally:
        library.close()
