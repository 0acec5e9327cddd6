"""The C reading of a library's makers (host/speedups/exports.c) against the Python reader.

A host-owned directory load reads each file's makers in C (``ph_elf_makers``);
the Python reader (``formats`` ``elf_exports``, then ``registry``
``maker_types``) is the reference and the fallback.  What must hold: C passes
only images the Python reader reads without an error, and then names the same
makers in the same order.  Compared here on every built plugin, on synthetic
ELF32/ELF64 images of both byte orders, on every truncation of a real library
and on fuzzed copies; a mutation of the C (one check removed) is caught.  The
directory load's use of it (the one call, the cache of what a read found) is
compared with the pure-Python pipeline in tests/test_speedups.py.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_host.formats._elf import elf_exports
from plugin_host.loading import _accel
from plugin_host.registry._registrations import maker_types
from plugin_interface import NotASharedLibraryError, PluginTrait, SymbolRole, TraitSpec, parse_symbol, resolve_trait
from test_elf_reader import GLOBAL_FUNC, GLOBAL_OBJECT, LOCAL_FUNC, WEAK_FUNC, make_elf
from test_symbols import MUTATION, deadline, mutate

needs_speedups = pytest.mark.skipif(
    not _accel.available(), reason="plugin_host.loading._speedups was not built (no C compiler at install time)"
)
pytestmark = needs_speedups

GREETER = resolve_trait(PluginTrait.Greeter)


def python_makers(data: bytes, trait: TraitSpec | str) -> list[str] | None:
    """The Python reader's makers of ``trait`` in the image, ``None`` when it refuses the image."""
    name = trait if isinstance(trait, str) else trait.name
    spec = TraitSpec(name, 1, ()) if isinstance(trait, str) else trait
    try:
        with deadline():
            table = elf_exports(lambda offset, n: data[offset : offset + n], len(data), "image")
    except NotASharedLibraryError:
        return None
    return maker_types(table.names, spec)


def c_makers(data: bytes, trait: str, path: Path | None = None) -> list[str] | None:
    """``ph_elf_makers`` on the image in memory and, with ``path`` (holding the same bytes), on the file."""
    in_memory = _accel.elf_makers(None, data, trait.encode())
    if path is None:
        return None if in_memory is None else in_memory[0]
    on_file = _accel.elf_makers(str(path), None, trait.encode())
    assert (in_memory is None) == (on_file is None), "C reads the file and the bytes differently"
    if in_memory is None or on_file is None:
        return None
    assert in_memory[0] == on_file[0]
    assert on_file[1] == _accel.identity_of(os.stat(path))  # the identity of the file it read
    return in_memory[0]


def agree(data: bytes, trait: TraitSpec | str, stats: dict[str, int] | None = None, path: Path | None = None) -> None:
    """C passes only what Python reads, with the same makers."""
    name = trait if isinstance(trait, str) else trait.name
    if path is not None:
        path.write_bytes(data)
    mine, reference = c_makers(data, name, path), python_makers(data, trait)
    if mine is not None:
        assert reference is not None, "C passed an image the Python reader refuses"
        assert mine == reference
    if stats is not None:
        key = "both read" if mine is not None else ("C refuses" if reference is None else "C leaves to Python")
        stats[key] += 1


def _traits_named(lib: Path) -> set[str]:
    names = elf_exports(lambda o, n: lib.read_bytes()[o : o + n], lib.stat().st_size, str(lib)).names
    parsed = [parse_symbol(n) for n in names]
    return {p.trait for p in parsed if p is not None} | {"Greeter", "Nothing"}


def test_every_built_plugin_reads_alike(
    example_plugins: dict[str, Path], test_plugins: dict[str, Path], tmp_path: Path
) -> None:
    libraries = {**{f"example {k}": v for k, v in example_plugins.items()}, **test_plugins}
    assert len(libraries) >= 12
    found = 0
    for what, lib in sorted(libraries.items()):
        data = lib.read_bytes()
        for trait in sorted(_traits_named(lib)):
            mine = c_makers(data, trait, lib)
            assert mine is not None, (what, trait)  # a well-formed library: C serves it
            assert mine == python_makers(data, trait), (what, trait)
            found += len(mine)
    assert found >= 10  # not vacuous


def test_language_plugins_read_alike(language: str, language_greeter: Any) -> None:
    for host_owned in (False, True):
        lib = language_greeter(language, host_owned)
        mine = c_makers(lib.read_bytes(), "Greeter", lib)
        assert mine is not None and mine == python_makers(lib.read_bytes(), GREETER)
        assert mine  # every language's greeter has a maker


#: Names on the edges of the scheme: each C must take or leave exactly as parse_symbol does.
EDGES = [
    ("plugin_register_Greeter_Zeta_v1", GLOBAL_FUNC, 0, 7, 0x1100),
    ("plugin_register_Greeter_Alpha_v1", WEAK_FUNC, 0, 7, 0x1110),
    ("plugin_register_Greeter_Alpha_v1", GLOBAL_FUNC, 0, 7, 0x1118),  # the same name twice: once
    ("plugin_register_Greeter_Alpha_v01", GLOBAL_FUNC, 0, 7, 0x1120),  # ABI 1 too: Alpha again
    ("plugin_register_Greeter_Beta_v2", GLOBAL_FUNC, 0, 7, 0x1130),  # another ABI
    ("plugin_register_Greeter_Two_Words_v1", GLOBAL_FUNC, 0, 7, 0x1140),
    ("plugin_register_Greeter_A_v1_v1", GLOBAL_FUNC, 0, 7, 0x1150),  # type A_v1
    ("plugin_register_Greeter__v1", GLOBAL_FUNC, 0, 7, 0x1160),  # no type
    ("plugin_register_Greeter_v1", GLOBAL_FUNC, 0, 7, 0x1170),
    ("plugin_register_Greeter_Long_v1234567890", GLOBAL_FUNC, 0, 7, 0x1180),  # ten digits
    ("plugin_register_Greeter_Caf\u00e9_v1", GLOBAL_FUNC, 0, 7, 0x1190),  # not ASCII
    ("plugin_register_Greeter_Da-sh_v1", GLOBAL_FUNC, 0, 7, 0x11A0),
    ("plugin_register_Greeterx_Gamma_v1", GLOBAL_FUNC, 0, 7, 0x11B0),  # another trait
    ("plugin_register_all_Greeter_v1", GLOBAL_FUNC, 0, 7, 0x11C0),  # the aggregate
    ("plugin_register_Greeter_Object_v1", GLOBAL_OBJECT, 0, 8, 0x2000),  # an object is an export
    ("plugin_register_Greeter_Local_v1", LOCAL_FUNC, 0, 7, 0x11D0),
    ("plugin_register_Greeter_Hidden_v1", GLOBAL_FUNC, 2, 7, 0x11E0),
    ("plugin_register_Greeter_Imported_v1", GLOBAL_FUNC, 0, 0, 0),
    ("plugin_register_Greeter_Tls_v1", 0x16, 0, 9, 0x10),
    ("plugin_unregister_Greeter_Zeta_v1", GLOBAL_FUNC, 0, 7, 0x1200),
]


@pytest.mark.parametrize(("elf_class", "order"), [(1, "<"), (1, ">"), (2, "<"), (2, ">")])
def test_synthetic_names_of_each_class_and_byte_order(tmp_path: Path, elf_class: int, order: str) -> None:
    data = make_elf(elf_class, order, EDGES, machine=183)
    assert python_makers(data, GREETER) == ["A_v1", "Alpha", "Alpha", "Object", "Two_Words", "Zeta"]
    for trait in ("Greeter", "Greeterx", "all", "Beta"):
        agree(data, trait, path=tmp_path / "libsynthetic.so")
    assert c_makers(data, "Greeter") == python_makers(data, GREETER)  # C served it
    assert c_makers(data, "all") is None  # plugin_register_all_<T>_v1 reads first: left to Python


def test_a_name_past_the_string_table_is_left_to_python(tmp_path: Path) -> None:
    data = _name_cut_off()
    assert python_makers(data, GREETER) is None
    assert c_makers(data, "Greeter", tmp_path / "libcut.so") is None


def _name_cut_off() -> bytes:
    """A library whose last name (a maker's) has its NUL past the end of .dynstr."""
    data = bytearray(make_elf(2, "<", EDGES[:1]))
    (shoff,) = struct.unpack_from("<Q", data, 40)
    dynstr_header = shoff + 2 * 64
    (dynstr_size,) = struct.unpack_from("<Q", data, dynstr_header + 32)
    struct.pack_into("<Q", data, dynstr_header + 32, dynstr_size - 1)
    return bytes(data)


def test_every_truncation_reads_alike(tmp_path: Path, example_plugins: dict[str, Path]) -> None:
    data = example_plugins["host_owned"].read_bytes()
    stats = dict.fromkeys(("both read", "C refuses", "C leaves to Python"), 0)
    for size in sorted({*range(0, 256, 7), *range(0, len(data), max(1, len(data) // 97)), len(data) - 1}):
        agree(data[:size], GREETER, stats, tmp_path / "libtruncated.so")
    assert stats["C refuses"] > 90, stats
    # The section headers are last: a library cut anywhere loses them, and both readers refuse it.
    assert stats["both read"] == 0, stats


def _regions(data: bytes) -> list[tuple[int, int]]:
    """Where a mutation matters most: the ELF header, the section headers, and .dynsym and .dynstr."""
    (shoff,) = struct.unpack_from("<Q", data, 40)
    (shnum,) = struct.unpack_from("<H", data, 60)
    regions = [(0, 64), (shoff, shnum * 64)]
    for i in range(shnum):
        sh_type, offset, size = struct.unpack_from("<I20xQQ", data, shoff + i * 64 + 4)
        if sh_type in (11, 3, 6):  # .dynsym, string tables, .dynamic
            regions.append((offset, max(size, 1)))
    return regions


FUZZ_STATS = dict.fromkeys(("both read", "C refuses", "C leaves to Python"), 0)


@settings(
    max_examples=int(os.environ.get("PLUGIN_HOST_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    which=st.sampled_from(["host_owned", "greeters", "multi_trait"]),
    targeted=st.lists(
        st.tuples(st.integers(0, 10), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)), max_size=4
    ),
    mutations=st.lists(MUTATION, max_size=3),
    header_bias=st.booleans(),
)
def test_fuzzed_libraries_read_alike(
    tmp_path_factory: pytest.TempPathFactory,
    example_plugins: dict[str, Path],
    which: str,
    targeted: list[tuple[int, int, bytes]],
    mutations: list[tuple[str, int, int]],
    header_bias: bool,
) -> None:
    original = example_plugins[which].read_bytes()
    regions = _regions(original)
    data = bytearray(original)
    for region, at, patch in targeted:
        start, length = regions[region % len(regions)]
        offset = start + at % length
        data[offset : offset + len(patch)] = patch[: max(0, len(data) - offset)]
    lib = tmp_path_factory.getbasetemp() / "fuzz-exports-c" / "libmutant.so"
    lib.parent.mkdir(exist_ok=True)
    agree(mutate(bytes(data), mutations, header_bias), GREETER, FUZZ_STATS, lib)


def test_fuzzing_compared_real_tables() -> None:
    """The fuzz comparison above was not vacuous: C read many mutants, and refused many."""
    if sum(FUZZ_STATS.values()) == 0:
        pytest.skip("test_fuzzed_libraries_read_alike did not run in this session")
    assert FUZZ_STATS["both read"] >= sum(FUZZ_STATS.values()) // 10, FUZZ_STATS
    assert FUZZ_STATS["C refuses"] >= sum(FUZZ_STATS.values()) // 10, FUZZ_STATS


def _no_name_end_check(source: str) -> str:
    """A mutation of the C reading: an export's name no longer has to end inside .dynstr."""
    check = "if (name_offset >= strsz || memchr(strings + name_offset, '\\0', (size_t)(strsz - name_offset)) == NULL) {"
    assert source.count(check) == 1, "the name check in exports.c changed shape"
    return source.replace(check, "if (name_offset >= strsz) {")


def test_a_weakened_c_reading_is_caught_by_the_agreement_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C reading is tied to the Python one by these tests: one check removed from the C, and they fail."""
    from test_policy_agreement import build_speedups

    data = _name_cut_off()
    agree(data, GREETER)  # the real C leaves it to Python
    mutant = build_speedups(tmp_path / "mutant", _no_name_end_check, "_speedups_no_name_end", source="exports.c")
    monkeypatch.setattr(_accel, "_lib", mutant.lib)
    monkeypatch.setattr(_accel, "_ffi", mutant.ffi)
    with pytest.raises(AssertionError, match="C passed an image the Python reader refuses"):
        agree(data, GREETER)


def test_maker_types_is_find_maker_types_rule() -> None:
    """``maker_types`` (what the C is compared with) is the rule of the scheme's parser."""
    names = sorted({name for name, *_ in EDGES})
    expected = []
    for name in names:
        parsed = parse_symbol(name)
        if parsed and parsed.role is SymbolRole.MAKER and parsed.trait == "Greeter" and parsed.abi == 1:
            expected.append(parsed.type_name)
    assert maker_types(names, GREETER) == expected
