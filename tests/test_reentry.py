"""Calling the manager from inside a plugin call while another thread unloads the plugin.

A release waits for the calls inside the library to return.  When the thread
that is inside calls the manager (from a callback the plugin runs, or a signal
handler), and the releasing thread holds the manager's lock while it waits,
neither can go on.  A query must answer; a change the manager cannot make
without waiting for the caller's own call must fail with a typed error, not hang.

Each case runs in a child interpreter with a timeout: a deadlock is a hung child,
reported as a failure instead of a hung test run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import CompilePlugin, run_isolated
from plugin_annotations import write_trait_headers
from plugin_interface import TraitSpec

#: A trait only the plugin declares: ``run`` calls ``then`` once, and returns.
RELAY = TraitSpec.from_json(
    {
        "name": "Relay",
        "version": 1,
        "methods": [{"name": "run", "params": [["then", "Callback[[], None]"]], "returns": "None"}],
    }
)

RELAY_C = """
#include "plugin_annotations.h"
#include "plugin_trait_relay.h"

static void run(void *self, void (*then)(void *context), void *then_context) {
    (void)self;
    then(then_context);
}
PLUGIN_IMPL(Relay, Once, .run = run)
PLUGIN_AGGREGATES(Relay)
"""

#: Thread ``caller`` calls ``run``; inside the callback it lets the main thread unload the file, waits until the
#: release has begun (the manager's lock is taken and the gate closed), then does ``ACTION`` with the manager.
CHILD = """
import sys, threading, time
from plugin_host import PluginManager
from plugin_host.errors import PluginError

manager = PluginManager()
[handle] = manager.load_plugins({lib!r}, "Relay")
proxy = handle.proxy("Once")
other = {other!r}
inside, outcome = threading.Event(), []

def then():
    inside.set()
    deadline = time.monotonic() + 10
    while handle.registration_set.gate.is_open and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)  # the releasing thread is waiting for this call by now
    try:
        outcome.append(repr({action}))
    except PluginError as e:
        outcome.append(f"{{type(e).__name__}}: {{e}}")

caller = threading.Thread(target=proxy.run, args=(then,), daemon=True)
caller.start()
inside.wait(10)
result = manager.unload_by_path({lib!r})
caller.join(10)
assert not caller.is_alive()
print(outcome[0])
print("unloaded", sorted(result))
manager.close()
"""


@pytest.fixture(scope="module")
def relay(compile_plugin: CompilePlugin, tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = tmp_path_factory.mktemp("relay-headers")
    write_trait_headers(headers, [RELAY])
    return compile_plugin("relay", RELAY_C, include_dirs=(headers,))


def _run(relay: Path, action: str, other: Path | None = None) -> list[str]:
    code = CHILD.format(lib=str(relay), other=str(other or relay), action=action)
    try:
        proc = run_isolated(code, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"deadlock: the callback's {action!r} and the unload waited for each other")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize(
    ("action", "answer"),
    [
        ("len(manager.handles)", "1"),  # the handle being released is still listed
        ("manager.is_loaded({lib!r})", "True"),
        ("len(manager.get_handles({lib!r}))", "1"),
    ],
)
def test_a_query_from_inside_the_call_answers_while_another_thread_unloads(
    relay: Path, action: str, answer: str
) -> None:
    out = _run(relay, action.format(lib=str(relay)))
    assert out == [answer, "unloaded ['Relay']"]


def test_a_change_from_inside_the_call_is_refused_while_another_thread_unloads(relay: Path) -> None:
    """Loading another file would need the lock the unload holds while it waits for this very call."""
    out = _run(relay, "manager.load_plugins(other)", other=relay.parent)
    assert out[0].startswith("ReleaseInsideCallError: "), out
    assert str(relay) in out[0] and "another thread" in out[0], out
    assert out[1] == "unloaded ['Relay']"


def test_an_unload_from_inside_the_call_is_refused_while_another_thread_unloads(relay: Path) -> None:
    out = _run(relay, "manager.unload_by_path(other)")
    assert out[0].startswith("ReleaseInsideCallError: "), out
    assert "unload_by_path() would wait for that release" in out[0], out
    assert out[1] == "unloaded ['Relay']"
