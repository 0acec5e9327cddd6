"""The probe server: one warm interpreter that forks a child per probe (Linux).

The probe's verdicts are tested in both modes by test_probe.py and the crash
catalogue (the ``probe_mode`` fixture); here, the server's own life: reuse,
crashes and hangs of its children, its death, threads, and turning it off.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import CompilePlugin
from plugin_host import PluginTrait
from plugin_host.admission._probe import Prober, ProbeServer, fork_server_supported, run_probe
from plugin_host.admission._probe_child import _prepared
from plugin_host.errors import ProbeCrashedError, ProbeError, ProbeExitedError, ProbeTimeoutError
from plugin_interface import TraitSpec
from untrusted_sources import GREETER

server_only = pytest.mark.skipif(not fork_server_supported(), reason="no probe server on this platform")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@server_only
def test_probes_fork_from_one_warm_server(example_plugins: dict[str, Path]) -> None:
    prober = Prober()
    assert prober.server is not None  # the default on Linux
    spec = [PluginTrait.Greeter.spec]
    first = run_probe(example_plugins["greeters"], spec, server=prober.server)
    pid = prober.server.pid
    second = run_probe(example_plugins["greeters"], spec, server=prober.server)
    assert first.clean and second.clean and first.made == second.made > 0
    assert pid is not None and prober.server.pid == pid  # the same server answered both
    prober.server.close()
    assert prober.server.pid is None
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(pid), "the server outlived close()"


@server_only
@pytest.mark.parametrize(
    ("define", "error"),
    [("CTOR_SEGFAULT", ProbeCrashedError), ("CTOR_EXIT", ProbeExitedError), ("CTOR_HANG", ProbeTimeoutError)],
)
def test_a_crashing_child_leaves_the_server_serving(
    compile_plugin: CompilePlugin, example_plugins: dict[str, Path], define: str, error: type[Exception]
) -> None:
    bad = compile_plugin("ctor", GREETER, defines=(define,))
    server = ProbeServer()
    try:
        with pytest.raises(error) as exc:
            run_probe(bad, [PluginTrait.Greeter.spec], server=server, timeout_s=1.0)
        assert isinstance(exc.value, ProbeError) and exc.value.step == "dlopen" and exc.value.path == str(bad)
        pid = server.pid
        assert run_probe(example_plugins["greeters"], [PluginTrait.Greeter.spec], server=server).clean
        assert server.pid == pid  # the same server, still there
    finally:
        server.close()


@server_only
def test_a_hung_child_is_killed_with_its_helpers(compile_plugin: CompilePlugin) -> None:
    hang = compile_plugin("ctor", GREETER, defines=("CTOR_HANG",))
    server = ProbeServer()
    try:
        with pytest.raises(ProbeTimeoutError):
            run_probe(hang, [], server=server, timeout_s=0.5)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert children == []  # killed and reaped by the server
    finally:
        server.close()


@server_only
def test_a_dead_server_is_restarted(example_plugins: dict[str, Path]) -> None:
    server = ProbeServer()
    try:
        assert run_probe(example_plugins["greeters"], [], server=server).clean
        old = server.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        while _alive(old):
            time.sleep(0.01)
        assert run_probe(example_plugins["greeters"], [], server=server).clean
        assert server.pid not in (None, old)
    finally:
        server.close()


@server_only
def test_probes_from_many_threads_share_the_server(example_plugins: dict[str, Path]) -> None:
    server = ProbeServer()
    results: list[bool] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(run_probe(example_plugins["greeters"], [PluginTrait.Greeter.spec], server=server).clean)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a probe hung"
        assert errors == [] and results == [True] * 20
    finally:
        server.close()


def test_the_server_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUGIN_HOST_PROBE_SERVER", "0")
    assert Prober().server is None
    assert Prober(server=False).server is None


def test_the_server_parses_and_prepares_each_trait_list_once() -> None:
    """What the server parsed before a fork, every child it forks inherits instead of parsing again."""
    listed = [PluginTrait.Greeter.spec.to_json()]
    memo: dict[str, list[TraitSpec]] = {}
    first = _prepared({"traits": listed}, memo)
    assert first == [PluginTrait.Greeter.spec]
    assert _prepared({"traits": json.loads(json.dumps(listed))}, memo) is first  # equal list: the same objects
    assert _prepared({"traits": [PluginTrait.Transformer.spec.to_json()]}, memo) == [PluginTrait.Transformer.spec]
    broken = [{**listed[0], "name": "not a name"}]
    assert _prepared({"traits": broken}, memo) is None  # the child parses it again, and fails as it always did
    assert _prepared({"traits": "not a list"}, memo) is None
    assert len(memo) == 2


@server_only
def test_a_wedged_server_is_given_up_and_its_hung_child_killed(
    compile_plugin: CompilePlugin, example_plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's own deadline (the probe's timeout and a grace) holds when the server stops answering."""
    import plugin_host.admission._probe as probe_module

    monkeypatch.setattr(probe_module, "SERVER_GRACE_S", 1.0)
    hang = compile_plugin("ctor", GREETER, defines=("CTOR_HANG",))
    server = ProbeServer()
    errors: list[BaseException] = []
    pid: int | None = None

    def probe() -> None:
        try:
            run_probe(hang, [], server=server, timeout_s=0.5)
        except BaseException as e:  # asserted below
            errors.append(e)

    try:
        assert run_probe(example_plugins["greeters"], [], server=server).clean
        pid = server.pid
        assert pid is not None
        thread = threading.Thread(target=probe)
        thread.start()
        deadline = time.monotonic() + 10
        while not (children := Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
            assert time.monotonic() < deadline, "the server forked no child"
            time.sleep(0.001)
        os.kill(pid, signal.SIGSTOP)  # wedged before the child's timeout: only the host can end it now
        thread.join(30)
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], ProbeTimeoutError), errors
        assert server.pid is None  # given up (and killed)
        [child] = children
        deadline = time.monotonic() + 10
        while _alive(int(child)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _alive(int(child)), "the hung child outlived its wedged server"
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        server.close()
