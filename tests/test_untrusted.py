"""The catalog of untrusted and broken plugins (issue 6).

Every case is a real file made here (compiled, truncated, patched, linked,
chmod-ed) and is loaded in a child interpreter (``run_isolated``) that first
loads a good plugin: a crash there cannot take pytest down, and each case
checks the expected error type, message and attributes, and that the host
still serves the plugin it had.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import CompilePlugin, run_isolated
from plugin_host.formats import ELF_MACHINES, host_elf_identity, machine_name
from untrusted_sources import DESCRIPTOR_SOURCE, DUPLICATE_MAKERS, GREETER, HOSTILE_DATA, INCONSISTENT, PLAIN

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="ELF/Linux catalog")

_CHILD = """
import json, sys
from plugin_host import LoadPolicy, PluginManager, PluginTrait
from plugin_interface import PluginError

args = json.loads({args!r})
{setup}
manager = PluginManager(**eval(args["manager"]))
[good] = manager.load_plugins(args["good"], PluginTrait.Greeter)
proxy = good.proxy("English")
outcome = {{"type": None}}
try:
    result = manager.load_plugins(args["bad"], PluginTrait.Greeter, **eval(args["load"]))
    outcome["loaded"] = [h.proxies()[0].greet("bad") for h in result]
except PluginError as e:
    outcome = {{"type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "message": str(e),
               "attrs": {{k: getattr(e, k) for k in ("path", "symbol", "field", "expected", "found", "detail",
                                                    "signal", "signal_name", "exit_code", "timeout_s", "step")
                         if isinstance(getattr(e, k, None), (str, int, float))}},
               "errors": [type(x).__name__ + ": " + str(x) for x in getattr(e, "errors", [])]}}
outcome["still_serves"] = proxy.greet("world")
outcome["bad_loaded"] = manager.is_loaded(args["bad"])
manager.close()
print("OUTCOME " + json.dumps(outcome))
"""


def run_case(
    good: Path,
    bad: Path,
    *,
    manager: str = "{}",
    load: str = "{}",
    setup: str = "",
    timeout: float = 60.0,
    bad_loaded: bool = False,
) -> dict[str, Any]:
    """Load ``good``, then ``bad``, in a child interpreter; what happened."""
    args = json.dumps({"good": str(good), "bad": str(bad), "manager": manager, "load": load})
    proc = run_isolated(_CHILD.format(args=args, setup=setup), timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"the host died (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    outcome: dict[str, Any] = json.loads(lines[-1][len("OUTCOME ") :])
    assert outcome["still_serves"] == "Hello, world!"
    assert outcome["bad_loaded"] is bad_loaded
    outcome["stdout"] = proc.stdout
    return outcome


@pytest.fixture(scope="module")
def good(example_plugins: dict[str, Path]) -> Path:
    return example_plugins["greeters"]


@pytest.fixture(scope="module")
def sayer(compile_plugin: CompilePlugin) -> Path:
    return compile_plugin("sayer", GREETER)


def _expect(outcome: dict[str, Any], error: str, match: str, bad: Path) -> None:
    assert outcome["type"] == error, outcome
    assert match in outcome["message"], outcome["message"]
    assert str(bad) in outcome["message"]
    assert outcome["attrs"]["path"] == str(bad)


def test_empty_file(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "libempty.so"
    bad.touch()
    _expect(run_case(good, bad), "NotASharedLibraryError", "the file is empty", bad)


def test_text_file(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "libtext.so"
    bad.write_text("INPUT(-lc)\n")
    _expect(run_case(good, bad), "NotASharedLibraryError", "unrecognised file format", bad)


def test_directory_named_like_a_plugin(good: Path, tmp_path: Path) -> None:
    (tmp_path / "libdir.so").mkdir()
    outcome = run_case(good, tmp_path, load="{'errors': None}")
    assert outcome["type"] == "PluginLoadErrors"
    assert outcome["errors"] == [
        f"NotASharedLibraryError: {tmp_path / 'libdir.so'}: not a loadable shared library: it is a directory"
    ]


def test_symlink_loop(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "libloop.so"
    os.symlink(bad.name, bad)
    _expect(run_case(good, bad), "NotASharedLibraryError", "Too many levels of symbolic links", bad)


def test_fifo_does_not_hang_the_host(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "libfifo.so"
    os.mkfifo(bad)
    _expect(run_case(good, bad, timeout=30), "NotASharedLibraryError", "not a regular file", bad)


def test_truncated_at_many_offsets(good: Path, tmp_path: Path) -> None:
    """The SIGBUS cases: every prefix is refused before dlopen, none crashes."""
    data = good.read_bytes()
    offsets = sorted(
        {
            1,
            4,
            16,
            40,
            63,
            64,
            200,
            1000,
            4096,
            8192,
            *range(0, len(data), len(data) // 23),
            len(data) // 2,
            len(data) - 4096,
            len(data) - 1,
        }
    )
    offsets.remove(0)
    setup = f"""
import os, shutil
from plugin_interface import NotASharedLibraryError
good_bytes = open(args["good"], "rb").read()
seen = []
for n in {offsets!r}:
    p = os.path.join({str(tmp_path)!r}, f"libtrunc{{n}}.so")
    with open(p, "wb") as f:
        f.write(good_bytes[:n])
    try:
        PluginManager().load_plugins(p, PluginTrait.Greeter)
        seen.append((n, "LOADED"))
    except NotASharedLibraryError as e:
        seen.append((n, str(e)))
print("TRUNC " + json.dumps(seen))
"""
    bad = tmp_path / f"libtrunc{len(data) // 2}.so"
    outcome = run_case(good, bad, setup=setup)
    _expect(outcome, "NotASharedLibraryError", "truncated", bad)
    [line] = [x for x in outcome["stdout"].splitlines() if x.startswith("TRUNC ")]
    seen = dict(json.loads(line[len("TRUNC ") :]))
    assert len(seen) >= 25
    for n, message in seen.items():
        assert message != "LOADED", n
        assert any(m in message for m in ("truncated", "unrecognised file format", "unknown ELF class")), message


def test_truncation_messages(good: Path, tmp_path: Path) -> None:
    # In-process on purpose: the pre-check must refuse these without ever calling dlopen.
    from plugin_host import PluginManager, PluginTrait
    from plugin_interface import NotASharedLibraryError

    data = good.read_bytes()
    for n in (64, 1000, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"libcut{n}.so"
        bad.write_bytes(data[:n])
        with pytest.raises(NotASharedLibraryError, match="truncated") as exc:
            PluginManager().load_plugins(bad, PluginTrait.Greeter)
        assert exc.value.path == str(bad)


def _patched(src: Path, dst: Path, offset: int, value: bytes) -> Path:
    data = bytearray(src.read_bytes())
    data[offset : offset + len(value)] = value
    dst.write_bytes(bytes(data))
    return dst


def test_patched_machine(good: Path, tmp_path: Path) -> None:
    host = host_elf_identity()
    other = 62 if host.machine == 183 else 183
    bad = _patched(good, tmp_path / "libarm.so", 18, other.to_bytes(2, "little"))
    outcome = run_case(good, bad)
    _expect(
        outcome,
        "ArchitectureMismatchError",
        f"built for {machine_name(ELF_MACHINES, other)}, this host is {machine_name(ELF_MACHINES, host.machine or 62)}",
        bad,
    )
    assert outcome["attrs"]["field"] == "machine"
    assert "NotASharedLibraryError" in outcome["mro"]


def test_32_bit_class(good: Path, tmp_path: Path) -> None:
    bad = _patched(good, tmp_path / "lib32.so", 4, b"\x01")
    outcome = run_case(good, bad)
    _expect(outcome, "ArchitectureMismatchError", "built for 32-bit (ELF32), this host is 64-bit (ELF64)", bad)
    assert outcome["attrs"]["field"] == "class"


def test_windows_dll(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "libwin.so"
    bad.write_bytes(b"MZ\x90\x00" + bytes(200))
    outcome = run_case(good, bad)
    _expect(outcome, "ArchitectureMismatchError", "built for PE (Windows), this host is ELF", bad)


def test_undefined_symbol(good: Path, test_plugins: dict[str, Path]) -> None:
    bad = test_plugins["undefined_symbol"]
    _expect(run_case(good, bad), "LibraryLoadError", "undefined symbol: plugin_test_symbol_defined_nowhere", bad)


def test_no_plugin_symbols(good: Path, compile_plugin: CompilePlugin) -> None:
    bad = compile_plugin("plain", PLAIN)
    outcome = run_case(good, bad)
    _expect(outcome, "NoPluginSymbolsError", "no plugin symbols at all", bad)
    assert outcome["attrs"].get("symbol") is None  # no made-up symbol: the file names none


def test_maker_returns_null(good: Path, test_plugins: dict[str, Path]) -> None:
    bad = test_plugins["null_maker"]
    outcome = run_case(good, bad)
    _expect(outcome, "MakerReturnedNullError", "returned NULL", bad)


@pytest.mark.parametrize(
    ("define", "reason"), [("BAD_FACTORIES", "factories"), ("BAD_LEN", "len"), ("NULL_ENTRY", "NULL")]
)
def test_inconsistent_aggregate(good: Path, compile_plugin: CompilePlugin, define: str, reason: str) -> None:
    bad = compile_plugin("inconsistent", INCONSISTENT, defines=(define,))
    outcome = run_case(good, bad)
    _expect(outcome, "InconsistentArrayError", "inconsistent array", bad)
    assert reason in outcome["attrs"]["detail"]
    assert outcome["attrs"]["symbol"] == "plugin_register_all_Greeter_v1"


@pytest.mark.parametrize(
    ("define", "error", "match", "attr", "value"),
    [
        ("CTOR_SEGFAULT", "ProbeCrashedError", "crashed with SIGSEGV", "signal", 11),
        ("CTOR_ABORT", "ProbeCrashedError", "crashed with SIGABRT", "signal", 6),
        ("CTOR_EXIT", "ProbeExitedError", "exited with status 3", "exit_code", 3),
        ("CTOR_HANG", "ProbeTimeoutError", "no answer within 1.5 s", "timeout_s", 1.5),
    ],
)
@pytest.mark.usefixtures("probe_mode")
def test_constructor_that_kills_the_process(
    good: Path,
    compile_plugin: CompilePlugin,
    tmp_path: Path,
    define: str,
    error: str,
    match: str,
    attr: str,
    value: object,
) -> None:
    bad = compile_plugin("ctor", GREETER, defines=(define,))
    manager = f"dict(probe=True, probe_timeout_s=1.5, probe_cache_dir={str(tmp_path)!r})"
    outcome = run_case(good, bad, manager=manager)
    _expect(outcome, error, match, bad)
    assert outcome["attrs"][attr] == value
    assert outcome["attrs"]["step"] == "dlopen"  # in the constructors
    # Blocked until it changes: the second attempt does not start a child.
    again = run_case(good, bad, manager=manager)
    _expect(again, "BlockedPluginError", error, bad)


def test_constructor_segfault_without_probe_kills_only_the_child(good: Path, compile_plugin: CompilePlugin) -> None:
    """What the probe protects against: without it the process dies (here, the child)."""
    bad = compile_plugin("ctor", GREETER, defines=("CTOR_SEGFAULT",))
    proc = run_isolated(f"""
from plugin_host import PluginManager, PluginTrait
PluginManager(probe=False).load_plugins({str(bad)!r}, PluginTrait.Greeter)
print("survived")
""")
    assert proc.returncode == -11 and "survived" not in proc.stdout


def test_group_writable_file(good: Path, sayer: Path, tmp_path: Path) -> None:
    bad = tmp_path / "libgroupw.so"
    shutil.copy(sayer, bad)
    bad.chmod(0o664)
    outcome = run_case(good, bad)
    _expect(outcome, "InsecurePluginError", "the file is writable by group (mode 0o664)", bad)
    assert "LoadPolicy(allow_insecure_permissions=True)" in outcome["message"]


def test_world_writable_directory(good: Path, sayer: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    bad = shared / "libshared.so"
    shutil.copy(sayer, bad)
    shared.chmod(0o777)
    outcome = run_case(good, bad)
    _expect(outcome, "InsecurePluginError", "its directory is writable by group and others (mode 0o777)", bad)


C_CHECKS = pytest.mark.parametrize("c_checks", [True, False], ids=["C checks on", "C checks off"])


def _c_checks(on: bool) -> str:
    return f"from plugin_host.loading import _accel\n_accel.set_enabled({on})"


@C_CHECKS
def test_symlink_into_world_writable_directory(good: Path, sayer: Path, tmp_path: Path, c_checks: bool) -> None:
    """Refused by name in a shared directory, so refused through a private link to it too."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(sayer, shared / "libshared.so")
    shared.chmod(0o777)
    bad = tmp_path / "mine"
    bad.mkdir()
    bad = bad / "liblink.so"
    bad.symlink_to(shared / "libshared.so")
    outcome = run_case(good, bad, setup=_c_checks(c_checks))
    _expect(outcome, "InsecurePluginError", f"its real directory {shared} is writable by group and others", bad)


@C_CHECKS
def test_directory_of_symlinks_into_world_writable_directory(
    good: Path, sayer: Path, tmp_path: Path, c_checks: bool
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    links = tmp_path / "links"
    links.mkdir()
    for name in ("liba.so", "libb.so"):
        shutil.copy(sayer, shared / name)
        (links / name).symlink_to(shared / name)
    shared.chmod(0o777)
    outcome = run_case(good, links, load="{'errors': None}", setup=_c_checks(c_checks))
    assert outcome["type"] == "PluginLoadErrors"
    reason = f"its real directory {shared} is writable by group and others (mode 0o777)"
    opt_out = "PluginManager(policy=LoadPolicy(allow_insecure_permissions=True))"
    assert outcome["errors"] == [
        f"InsecurePluginError: {links / name}: refused by the load policy: {reason}; to load it anyway: {opt_out}"
        for name in ("liba.so", "libb.so")
    ]


@C_CHECKS
def test_group_writable_ancestor(good: Path, sayer: Path, tmp_path: Path, c_checks: bool) -> None:
    team = tmp_path / "team"
    (team / "plugins").mkdir(parents=True)
    (team / "plugins").chmod(0o700)
    bad = team / "plugins" / "libteam.so"
    shutil.copy(sayer, bad)
    team.chmod(0o775)
    outcome = run_case(good, bad, setup=_c_checks(c_checks))
    _expect(outcome, "InsecurePluginError", f"the directory {team} above it is writable by group (mode 0o775)", bad)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_file_owned_by_another_user(good: Path, sayer: Path, tmp_path: Path) -> None:
    bad = tmp_path / "libforeign.so"
    shutil.copy(sayer, bad)
    os.chown(bad, 4242, -1)
    _expect(run_case(good, bad), "InsecurePluginError", "the file is owned by uid 4242", bad)


def test_file_swapped_during_load(good: Path, sayer: Path, tmp_path: Path) -> None:
    """The original is replaced by a truncated file right after it was read:
    the bytes checked (the good plugin) are the bytes loaded; the swap never reaches dlopen."""
    target = tmp_path / "libswapped.so"
    shutil.copy(sayer, target)
    truncated = tmp_path / "half.so"
    truncated.write_bytes(sayer.read_bytes()[:5000])
    setup = f"""
import os
import plugin_host.loading._copies as L
real = L.write_private_copy
def swapping(name, data, path):
    if str(path) == {str(target)!r}:
        os.replace({str(truncated)!r}, path)   # the swap, between read and load
    return real(name, data, path)
L.write_private_copy = swapping
"""
    outcome = run_case(good, target, manager="dict(copy_on_load=True)", setup=setup, bad_loaded=True)
    assert outcome["type"] is None
    assert outcome["loaded"] == ["Hello, bad!"]  # the checked version serves
    assert target.stat().st_size == 5000  # and the file on disk really was swapped


def test_bare_name_never_searches_ld_library_path(good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(good, elsewhere / "libhidden.so")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("LD_LIBRARY_PATH", str(elsewhere))
    proc = run_isolated(f"""
import os
os.chdir({str(cwd)!r})
from plugin_host import PluginManager, PluginTrait
from plugin_interface import NotASharedLibraryError
try:
    PluginManager().load_plugins("libhidden.so", PluginTrait.Greeter)
    print("LOADED")
except NotASharedLibraryError as e:
    print("REFUSED", e)
""")
    assert "REFUSED" in proc.stdout and "No such file or directory" in proc.stdout, proc.stdout + proc.stderr


def test_catalog_has_at_least_15_cases() -> None:
    cases = [name for name in globals() if name.startswith("test_") and name != "test_catalog_has_at_least_15_cases"]
    assert len(cases) >= 15


@pytest.mark.parametrize("c_path", [False, True], ids=["python-path", "c-path"])
def test_a_registration_listed_twice_is_refused_not_freed_twice(
    good: Path, compile_plugin: CompilePlugin, c_path: bool
) -> None:
    """Released entry by entry (no plugin_unregister_all), a duplicate would be unmade twice: a double free."""
    sources = {"dup.c": HOSTILE_DATA, **({"descriptor.c": DESCRIPTOR_SOURCE} if c_path else {})}
    bad = compile_plugin("dup", sources, defines=("DUPLICATE_ENTRY",))
    outcome = run_case(good, bad)
    _expect(outcome, "InconsistentArrayError", "registrations[1] is registrations[0] again", bad)
    assert outcome["attrs"]["symbol"] == "plugin_register_all_Greeter_v1"


def test_two_makers_returning_one_registration_are_refused(good: Path, compile_plugin: CompilePlugin) -> None:
    bad = compile_plugin("dupmakers", DUPLICATE_MAKERS)
    outcome = run_case(good, bad)
    _expect(outcome, "InconsistentArrayError", "returned the registration plugin_register_Greeter_A_v1 made", bad)
    assert outcome["attrs"]["symbol"] == "plugin_register_Greeter_B_v1"
