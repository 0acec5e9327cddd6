"""``abi check``'s reading of a file in C (``_elfread.scheme_scan``) against the Python reading.

``scan_library`` asks the C reader for the scheme's names, parsed, and the first bytes of each
descriptor and declaration (``formats.open_scheme_exports``); the Python reading (the export table,
``split_symbol``, ``read_descriptor``, ``read_declaration``) is the reference and the fallback.  What
must hold: the same :class:`LibraryAbi` (every field, ``to_json()``, ``unload_blockers``) and the same
``check_library`` answer, or the same error, on every built plugin, on synthetic images with the
edges of each rule (malformed and non-ASCII names, other ABI versions, duplicates, descriptors and
declarations not stored, truncated, corrupt, larger than the first read, without a NUL), on every
truncation of a real library and on seeded random mutations (in a child process).  The C copy of the
grammar is held to ``split_symbol`` on every string hypothesis makes; a perturbed answer and a
weakened C are caught.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_PLUGINS, CompilePlugin, run_isolated
from greeter_versions import GREETER_CHANGED, GREETER_V2, GREETER_V3, build_greeter
from hypothesis import given, settings
from hypothesis import strategies as st
from plugin_host.abi import LibraryAbi, check_library, scan_library
from plugin_host.abi._check import _SCHEME_PREFIXES
from plugin_host.formats import _elf
from plugin_interface import (
    ABI_VERSION,
    AbiDescriptor,
    MethodSpec,
    NotASharedLibraryError,
    PluginTrait,
    TraitSpec,
    encode_declaration,
    split_symbol,
)
from test_abi_check import BSS_DESCRIPTOR, ODD_EXPORTS
from test_abi_gate import ABI_V2
from test_elfread import (  # the C reader on in every test here too (its autouse fixture)
    GLOBAL_FUNC,
    GLOBAL_OBJECT,
    _build_elfread,
    _compiled_reader_on,  # noqa: F401
    needs_reader,
    rich_elf,
)
from test_symbols import _PIECES, TRICKY_NAMES
from untrusted_sources import HOSTILE_DATA

# ---- the grammar ------------------------------------------------------------------------------------------------


def c_split(name: str | bytes) -> Any:
    assert _elf._compiled is not None
    return _elf._compiled.split_symbol(name)


def decoded(raw: bytes) -> str:
    """A name as the export table decodes it (UTF-8, U+FFFD for what is not)."""
    return raw.decode("utf-8", "replace")


@needs_reader
@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.lists(_PIECES, max_size=10).map("".join) | st.text(max_size=40))
def test_the_c_grammar_is_split_symbols(symbol: str) -> None:
    assert c_split(symbol) == split_symbol(symbol)
    raw = symbol.encode("utf-8", "surrogatepass")
    assert c_split(raw) == split_symbol(decoded(raw))


@needs_reader
@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(_PIECES.map(str.encode) | st.binary(max_size=3), max_size=10).map(b"".join))
def test_the_c_grammar_on_bytes_is_split_symbols_on_the_decoded_name(raw: bytes) -> None:
    assert c_split(raw) == split_symbol(decoded(raw))


@needs_reader
def test_the_c_grammar_on_real_and_tricky_names(example_plugins: dict[str, Path]) -> None:
    names = [n for lib in example_plugins.values() for n in _elf.read_elf_exports(str(lib)).symbols]
    names += [*TRICKY_NAMES, "plugin_register_Greeter_T_v01", "plugin_abi_descriptor_G_v000000001"]
    names += ["plugin_register_Greeter_T\u00b2_v1", "plugin_register_Greeter_\ufffd_v1", "plugin_register_\0_T_v1"]
    names += ["plugin_register_Greeter_T_v1\n", "plugin_register_Greeter_T_v999999999", "plugin__v1", "_v1", ""]
    accepted = 0
    for name in names:
        assert c_split(name) == split_symbol(name), name
        assert c_split(name.encode()) == split_symbol(name), name
        accepted += split_symbol(name) is not None
    assert accepted > 40  # not vacuous
    assert c_split("plugin_register_Greeter_T_v01") == ("maker", "Greeter", "T", 1)
    with pytest.raises(TypeError):
        c_split(1)  # type: ignore[arg-type]


# ---- the comparison ---------------------------------------------------------------------------------------------


Outcome = tuple[str, object]


def outcome(path: Path) -> Outcome:
    """scan_library's answer: its LibraryAbi in every form that is compared, or its error."""
    try:
        abi = scan_library(path)
        problems, checks = check_library(abi)
    except NotASharedLibraryError as e:
        return ("error", (type(e).__name__, str(e), e.path))
    except Exception as e:  # a crash of the Python reading must be the C path's crash too
        return ("raised", (type(e).__name__, str(e)))
    traits = [(name, list(t.symbols.items())) for name, t in abi.traits.items()]
    return ("abi", (abi, abi.to_json(), abi.unload_blockers, traits, repr(abi), problems, checks))


def c_answers(path: Path) -> bool:
    """Whether the C scan answers for the file (rather than leaving it to the Python reading)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.pread(fd, 64, 0)
        found = _elf.compiled_scheme_scan(fd, os.fstat(fd).st_size, str(path), head, ABI_VERSION, _SCHEME_PREFIXES)
    finally:
        os.close(fd)
    return found is not None


def python_outcome(path: Path) -> Outcome:
    """The Python reading (the export table still read in C, as before the scheme scan)."""
    scanner, _elf._compiled_scanner = _elf._compiled_scanner, None
    try:
        return outcome(path)
    finally:
        _elf._compiled_scanner = scanner


def agree(path: Path, stats: dict[str, int] | None = None) -> Outcome:
    """The C path's outcome is the Python reading's (and the pure Python one's); that outcome."""
    mine, reference = outcome(path), python_outcome(path)
    assert mine == reference, (path, mine, reference)
    if stats is not None:
        key = "C read" if c_answers(path) else ("refused" if reference[0] == "error" else "left to Python")
        stats[key] = stats.get(key, 0) + 1
    return mine


def serves(path: Path) -> LibraryAbi:
    """:func:`agree`, and the C did answer (a well-formed library must not fall back)."""
    found = agree(path)
    assert c_answers(path), f"the C scan left a well-formed library to Python: {path}"
    assert found[0] == "abi"
    abi = found[1][0]  # type: ignore[index]
    assert isinstance(abi, LibraryAbi)
    return abi


# ---- built plugins ----------------------------------------------------------------------------------------------


@needs_reader
def test_every_built_plugin_scans_alike(example_plugins: dict[str, Path], test_plugins: dict[str, Path]) -> None:
    with_traits = [lib for lib in example_plugins.values() if serves(lib).traits]
    assert len(with_traits) >= 8  # not vacuous (a few examples are plain libraries they depend on)
    for lib in test_plugins.values():
        agree(lib)
    _elf.set_compiled_reader(False)  # and the pure Python reading agrees with both
    pure = {lib: outcome(lib) for lib in [*example_plugins.values(), *test_plugins.values()]}
    _elf.set_compiled_reader(True)
    assert {lib: outcome(lib) for lib in pure} == pure
    assert len(list(TEST_PLUGINS.iterdir())) <= len(test_plugins) + 1


@needs_reader
def test_language_plugins_scan_alike(language: str, language_greeter: Any) -> None:
    for host_owned in (False, True):
        assert serves(language_greeter(language, host_owned)).traits


@needs_reader
def test_the_variants_abi_check_reports_scan_alike(compile_plugin: CompilePlugin) -> None:
    """Malformed names, an unknown ABI version, a missing unmaker, a descriptor in .bss (not stored), other
    trait versions, descriptors and declarations at absolute addresses (not stored)."""
    odd = compile_plugin("odd", ODD_EXPORTS)
    abi = serves(odd)
    assert abi.malformed == ["plugin_register_Greeter_v1"]
    assert abi.traits["Greeter"].abi_versions == [1, 2]
    serves(compile_plugin("abi_v2", ABI_V2))
    bss = compile_plugin("bss", BSS_DESCRIPTOR)
    found = agree(bss)
    assert found[0] == "abi" and not c_answers(bss)  # not stored in the file: left to Python, which says so
    for spec in (GREETER_CHANGED, GREETER_V2, GREETER_V3):
        serves(build_greeter(compile_plugin, spec))
    for define in ("ABS_DESCRIPTOR", "ABS_DECLARATION"):
        agree(compile_plugin("hostile", {"hostile.c": HOSTILE_DATA}, defines=(define,)))


# ---- synthetic images: descriptors and declarations of every kind ---------------------------------------------

#: Where data_elf puts its data: a PT_LOAD segment of its own at this address.
DATA_ADDRESS = 0x80000
BASE_LOADS = ((1, 0, 0, 0x100), (1, 0x100, 0x10100, 0x80))


def data_elf(elf_class: int, order: str, symbols: list[tuple[bytes, int]], data: bytes) -> bytes:
    """:func:`rich_elf` with ``symbols`` (name, address) exported as objects and ``data`` stored at DATA_ADDRESS."""
    table = [(name, GLOBAL_OBJECT, 0, 7, address) for name, address in symbols]
    table.append((b"plain_function", GLOBAL_FUNC, 0, 7, 0x1000))
    sized = rich_elf(elf_class, order, [table], loads=(*BASE_LOADS, (1, 0, DATA_ADDRESS, 0)))
    loads = (*BASE_LOADS, (1, len(sized), DATA_ADDRESS, len(data)))
    return rich_elf(elf_class, order, [table], loads=loads) + data


def descriptor_bytes(spec: TraitSpec, pointer_size: int, order: str) -> bytes:
    return AbiDescriptor.for_trait(spec, pointer_size).to_bytes("little" if order == "<" else "big")


GREETER = PluginTrait.Greeter.spec
#: A declaration longer than the first read (1024 bytes).
LONG = TraitSpec(
    "Long", 1, tuple(MethodSpec(f"method_number_{i:03d}", (), GREETER.methods[0].returns) for i in range(40))
)
assert len(encode_declaration(LONG)) > 1024


def images(elf_class: int, order: str) -> dict[str, bytes]:
    """One image per case: (exported names and addresses, the data stored)."""
    pointer = 4 * elf_class
    good = descriptor_bytes(GREETER, pointer, order)
    declaration = encode_declaration(GREETER) + b"\0"
    descriptor_at, declaration_at = DATA_ADDRESS, DATA_ADDRESS + 64
    plain = [
        (b"plugin_register_Greeter_English_v1", 0x1000),
        (b"plugin_unregister_Greeter_English_v1", 0x1010),
        (b"plugin_register_all_Greeter_v1", 0x1020),
        (b"plugin_unregister_all_Greeter_v1", 0x1030),
        (b"plugin_unmaker_counter_Greeter_v1", 0x1040),
    ]
    one = [*plain, (b"plugin_abi_descriptor_Greeter_v1", descriptor_at)]
    both = [*one, (b"plugin_trait_declaration_Greeter_v1", declaration_at)]
    stored = good.ljust(64, b"\0") + declaration
    huge = descriptor_bytes(
        TraitSpec("Huge", 1, tuple(MethodSpec(f"m{i}", (), GREETER.methods[0].returns) for i in range(80))),
        pointer,
        order,
    )
    corrupt = bytearray(good)
    corrupt[0:4] = (3).to_bytes(4, "little" if order == "<" else "big")
    long_text = encode_declaration(LONG)
    cases: dict[str, tuple[list[tuple[bytes, int]], bytes]] = {
        "descriptor and declaration": (both, stored),
        "no descriptor": (plain, b"\0" * 16),
        "descriptor only": (one, good),
        "descriptor larger than the first read": (
            [(b"plugin_abi_descriptor_Huge_v1", DATA_ADDRESS), (b"plugin_register_Huge_T_v1", 0x1000)],
            huge,
        ),
        "descriptor with a corrupt size": (one, bytes(corrupt)),
        "descriptor cut by its segment": (one, good[:20]),
        "descriptor cut after its head": (one, good[:36]),
        "descriptor not stored": ([*plain, (b"plugin_abi_descriptor_Greeter_v1", 0x900000)], b"\0"),
        "descriptor in the headers": ([*plain, (b"plugin_abi_descriptor_Greeter_v1", 0x10)], b"\0"),
        "declaration without a NUL, cut by its segment": (both, stored[:-40]),
        "declaration longer than the first read": (
            [(b"plugin_trait_declaration_Long_v1", DATA_ADDRESS), (b"plugin_register_Long_T_v1", 0x1000)],
            long_text + b"\0",
        ),
        "declaration without a NUL in its first read": (
            [(b"plugin_trait_declaration_Long_v1", DATA_ADDRESS)],
            long_text,
        ),
        "declaration of another trait": ([(b"plugin_trait_declaration_Other_v1", declaration_at)], stored),
        "declaration that is not one": ([(b"plugin_trait_declaration_Greeter_v1", DATA_ADDRESS)], b"junk\0"),
        "data of another ABI version": (
            [(b"plugin_abi_descriptor_Greeter_v2", DATA_ADDRESS), (b"plugin_trait_declaration_Greeter_v2", 0x900000)],
            b"junk",
        ),
        "malformed and non-ASCII names": (
            [
                (b"plugin_register_Greeter_v1", 0x1000),
                (b"plugin_abi_descriptor_Gr\xc3\xa9eter_v1", DATA_ADDRESS),
                (b"plugin_register_Greeter_\xff\xfe_v1", 0x1000),
                (b"plugin_register_Greeter_\xfe\xff_v1", 0x1010),  # decodes to the same name: one export
                (b"plugin_trait_declaration__v1", 0x1000),
                (b"plugin_unmaker_counter_", 0x1000),
                (b"plugin_other_Greeter_v1", 0x1000),  # not a scheme prefix: not malformed
                (b"plugin_\xc3\xa9", 0x1000),
                (b"plugin_register_all_Greeter_Foo_v1", 0x1000),  # a maker of type Greeter_Foo of trait "all"
            ],
            b"\0",
        ),
        "the same name twice": (
            [
                (b"plugin_abi_descriptor_Greeter_v1", 0x900000),
                (b"plugin_register_Greeter_English_v1", 0x1000),
                (b"plugin_abi_descriptor_Greeter_v1", DATA_ADDRESS),  # the later address is read
            ],
            good,
        ),
        "a leading zero": (
            [(b"plugin_abi_descriptor_Greeter_v01", DATA_ADDRESS), (b"plugin_register_Greeter_E_v01", 0x1000)],
            good,
        ),
        "a leading zero and the name": (
            [(b"plugin_abi_descriptor_Greeter_v1", DATA_ADDRESS), (b"plugin_abi_descriptor_Greeter_v01", 0x900000)],
            good,
        ),
        "many traits": (
            [(b"plugin_register_T%d_X%d_v1" % (i, j), 0x1000 + i) for i in range(20) for j in range(3)],
            b"\0",
        ),
    }
    return {what: data_elf(elf_class, order, symbols, data) for what, (symbols, data) in cases.items()}


#: The cases the C leaves to the Python reading (each on purpose); every other one it reads.
LEFT_TO_PYTHON = {
    "descriptor larger than the first read",
    "descriptor cut after its head",  # struct_size past what was read: read again (and cut short)
    "descriptor not stored",
    "descriptor in the headers",  # e_type and e_machine as struct_size: past what was read
    "declaration longer than the first read",
    "declaration without a NUL in its first read",
    "a leading zero",
    "a leading zero and the name",
}


@needs_reader
@pytest.mark.parametrize(("elf_class", "order"), [(1, "<"), (1, ">"), (2, "<"), (2, ">")])
def test_synthetic_images_scan_alike(tmp_path: Path, elf_class: int, order: str) -> None:
    found: dict[str, Outcome] = {}
    for what, image in images(elf_class, order).items():
        path = tmp_path / "libsynthetic.so"
        path.write_bytes(image)
        found[what] = agree(path)
        assert c_answers(path) == (what not in LEFT_TO_PYTHON), what
    # Not vacuous: each case says what it is about.
    good = found["descriptor and declaration"][1][0]  # type: ignore[index]
    assert good.traits["Greeter"].descriptor == AbiDescriptor.for_trait(GREETER, 4 * elf_class)
    assert good.traits["Greeter"].declaration == GREETER
    assert found["descriptor larger than the first read"][1][0].traits["Huge"].descriptor  # type: ignore[index]
    assert found["declaration longer than the first read"][1][0].traits["Long"].declaration == LONG  # type: ignore[index]
    errors = {
        "descriptor with a corrupt size": ("descriptor_error", "struct_size 3 is too small"),
        "descriptor cut by its segment": ("descriptor_error", "descriptor truncated: 20 of 32 bytes"),
        "descriptor cut after its head": ("descriptor_error", "descriptor truncated: 36 of 40 bytes"),
        "descriptor not stored": ("descriptor_error", "is not stored in the file"),
        "declaration of another trait": ("declaration_error", "not Other"),
        "declaration that is not one": ("declaration_error", "unknown declaration format"),
    }
    for what, (field, text) in errors.items():
        [trait] = [t for t in found[what][1][0].traits.values() if getattr(t, field)]  # type: ignore[index]
        assert text in getattr(trait, field), (what, getattr(trait, field))
    odd = found["malformed and non-ASCII names"][1][0]  # type: ignore[index]
    assert len(odd.malformed) == 5 and "plugin_register_Greeter_\ufffd\ufffd_v1" in odd.malformed
    assert found["a leading zero and the name"][0] == "abi"
    # A _v01 is version 1: its descriptor is read by the name exported (a bare KeyError on the _v1 name before).
    zero = found["a leading zero"]
    assert zero[0] == "abi", zero
    assert zero[1][0].traits["Greeter"].descriptor == AbiDescriptor.for_trait(GREETER, 4 * elf_class)  # type: ignore[index]


def test_a_segment_offset_past_any_file_is_a_descriptor_error(tmp_path: Path) -> None:
    data = descriptor_bytes(GREETER, 8, "<")
    table = [(b"plugin_abi_descriptor_Greeter_v1", GLOBAL_OBJECT, 0, 7, DATA_ADDRESS)]
    path = tmp_path / "libfaroff.so"
    path.write_bytes(rich_elf(2, "<", [table], loads=(*BASE_LOADS, (1, 2**64 - 0x1000, DATA_ADDRESS, len(data)))))
    for compiled in (True, False):  # an OverflowError out of pread before, on both readings
        _elf.set_compiled_reader(compiled)
        try:
            trait = scan_library(path).traits["Greeter"]
        finally:
            _elf.set_compiled_reader(True)
        assert trait.descriptor is None
        assert (
            trait.descriptor_error
            == "cannot read plugin_abi_descriptor_Greeter_v1: offset 0xfffffffffffff000 is past any file"
        )


@needs_reader
@pytest.mark.parametrize("which", ["greeters", "multi_trait"])
def test_every_truncation_scans_alike(tmp_path: Path, example_plugins: dict[str, Path], which: str) -> None:
    data = example_plugins[which].read_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 40)
    stats: dict[str, int] = {}
    path = tmp_path / "libtruncated.so"
    for size in sorted({*range(0, 256, 7), *range(0, len(data), 97), *range(shoff - 8, len(data) + 1)}):
        path.write_bytes(data[:size])
        agree(path, stats)
    assert stats.get("C read") == 1 and stats.get("left to Python", 0) == 0, stats


#: The child that compares the two readings on mutants: seeded, a bounded count, one JSON line out.
_FUZZ_CHILD = r"""
import json, os, random, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import elf_mutants as m
from plugin_host.formats import _elf
import test_scheme_scan as t

libraries, count, seed, scratch = json.loads(sys.argv[1])
rng = random.Random(seed)
_elf.set_compiled_reader(True)
stats, failures = {}, []

originals = [Path(p).read_bytes() for p in libraries]
path = Path(scratch) / "libmutant.so"
for n in range(count):
    data = bytearray(rng.choice(originals))
    spots = m.hot_spots(data, (m.DYNSYM, m.STRTAB, m.PROGBITS))
    for _ in range(rng.randint(1, 3)):
        start, length = rng.choice(spots)
        at = min(start + rng.randrange(length), len(data) - 1)
        if rng.random() < 0.6:
            data[at] = rng.randrange(256)
        else:
            data[at] ^= 1 << rng.randrange(8)
    data = m.cut(rng, data)
    path.write_bytes(data)
    try:
        t.agree(path, stats)
    except AssertionError as e:
        failures.append((n, str(e)[:2000]))
print(json.dumps({"stats": stats, "failures": failures[:3], "failed": len(failures)}))
"""

FUZZ_COUNT = int(os.environ.get("PLUGIN_HOST_FUZZ_EXAMPLES", "150")) * 10


@needs_reader
def test_mutated_libraries_scan_alike(example_plugins: dict[str, Path], tmp_path: Path) -> None:
    """Seeded random mutations of the headers, tables and data of real libraries, compared in a child process."""
    libraries = [str(example_plugins[k]) for k in ("greeters", "host_owned", "multi_trait")]
    argument = json.dumps([libraries, FUZZ_COUNT, 20261201, str(tmp_path)])
    tests = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-c", _FUZZ_CHILD, argument, tests], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, f"the child died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == 0, report
    stats = report["stats"]
    assert sum(stats.values()) == FUZZ_COUNT
    assert stats.get("C read", 0) >= FUZZ_COUNT // 5 and stats.get("refused", 0) >= FUZZ_COUNT // 10, stats


# ---- the comparison can fail ------------------------------------------------------------------------------------


def _perturbations() -> dict[str, Callable[[list[Any]], None]]:
    def symbols(change: Callable[[list[list[Any]]], None]) -> Callable[[list[Any]], None]:
        def apply(found: list[Any]) -> None:
            entries = [list(entry) for entry in found[9]]
            change(entries)
            found[9] = tuple(tuple(entry) for entry in entries)

        return apply

    def data(entries: list[list[Any]]) -> None:
        entry = next(e for e in entries if e[5] is not None and e[0] == "abi_descriptor")
        entry[5] = entry[5][:24] + bytes([entry[5][24] ^ 1]) + entry[5][25:]  # the trait fingerprint

    def flip(index: int) -> Callable[[list[Any]], None]:
        def apply(found: list[Any]) -> None:
            value = found[index]
            found[index] = (not value) if isinstance(value, bool) else 3 - value if index in (1, 2) else value + 1

        return apply

    return {
        "e_machine": flip(0),
        "class": flip(1),
        "byte order": flip(2),
        "unique names": lambda found: found.__setitem__(3, (*found[3], "x")),
        "unique count": flip(4),
        "nodelete": flip(5),
        "thread_local": flip(6),
        "weak atexit": flip(7),
        "malformed": lambda found: found.__setitem__(8, (*found[8], "plugin_register_x")),
        "a symbol dropped": symbols(lambda entries: entries.pop()),
        "a type renamed": symbols(lambda entries: next(e for e in entries if e[2]).__setitem__(2, "Other")),
        "a version": symbols(lambda entries: entries[0].__setitem__(3, 2)),
        "the descriptor's bytes": symbols(data),
        "the declaration dropped": symbols(
            lambda entries: next(e for e in entries if e[0] == "trait_declaration").__setitem__(5, None)
        ),
    }


@needs_reader
@pytest.mark.parametrize("field", sorted(_perturbations()))
def test_a_perturbed_answer_is_caught(
    example_plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    scanner = _elf._compiled_scanner
    assert scanner is not None
    change = _perturbations()[field]

    def perturbed(*args: Any) -> Any:
        found = scanner(*args)
        assert found is not None
        changed = list(found)
        change(changed)
        return tuple(changed)

    lib = example_plugins["greeters"]
    agree(lib)
    monkeypatch.setattr(_elf, "_compiled_scanner", perturbed)
    with pytest.raises(AssertionError):
        agree(lib)


def _no_first_letter_rule(source: str) -> str:
    check = "if (n == 0 || !is_alpha((unsigned char)p[0])) {"
    assert source.count(check) == 1, "the trait name rule in elfread.c changed shape"
    return source.replace(check, "if (n == 0) {")


@needs_reader
@pytest.mark.parametrize(
    ("mutate", "symbol"),
    # (A C that reads a _v01 itself now agrees with the Python reading, which reads it by its name: it stays
    # left to Python, where the name that wins among _v01 and _v1 is decided.)
    [(_no_first_letter_rule, b"plugin_register_9x_T_v1")],
)
def test_a_weakened_c_scan_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutate: Any, symbol: bytes
) -> None:
    """One rule removed from the C (no bound removed: safe in this process), and the comparison fails."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    lib = tmp_path / "libodd.so"
    good = descriptor_bytes(GREETER, 8, "<")
    lib.write_bytes(data_elf(2, "<", [(symbol, DATA_ADDRESS), (b"plugin_register_Greeter_E_v1", 0x1000)], good))
    agree(lib)
    mutant = _build_elfread(tmp_path, mutate)
    monkeypatch.setattr(_elf, "_compiled_scanner", mutant.scheme_scan)
    with pytest.raises(AssertionError):
        agree(lib)


# ---- where the host uses it -------------------------------------------------------------------------------------


@needs_reader
def test_scan_library_asks_the_c_scan_first_and_the_switch_turns_it_off(
    example_plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = example_plugins["multi_trait"]
    scans: list[int] = []
    tables: list[int] = []
    scanner, reader = _elf._compiled_scanner, _elf._compiled_reader
    assert scanner is not None and reader is not None

    def counted_scan(*args: Any) -> Any:
        scans.append(1)
        return scanner(*args)

    def counted_read(*args: Any) -> Any:
        tables.append(1)
        return reader(*args)

    monkeypatch.setattr(_elf, "_compiled_scanner", counted_scan)
    monkeypatch.setattr(_elf, "_compiled_reader", counted_read)
    with_c = scan_library(lib)
    assert (len(scans), len(tables)) == (1, 0)  # one call does the file's work
    monkeypatch.setattr(_elf, "_compiled_scanner", lambda *args: None)  # left to Python: the table is read
    assert scan_library(lib) == with_c and len(tables) == 1
    _elf.set_compiled_reader(False)  # off: neither is asked
    scans.clear()
    tables.clear()
    assert _elf._compiled_scanner is None
    assert scan_library(lib) == with_c and scans == tables == []


def test_the_pure_python_switch_turns_the_scan_off(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "from plugin_host.formats import _elf; print(_elf._compiled_scanner is not None)"
    monkeypatch.setenv("PLUGIN_HOST_PURE_PYTHON", "1")
    assert run_isolated(code).stdout.split() == ["False"]
    monkeypatch.setenv("PLUGIN_HOST_PURE_PYTHON", "0")
    assert run_isolated(code).stdout.split() == [str(_elf.compiled_reader_available())]
