#!/usr/bin/env python3
"""Removing many watched plugins: the watcher's owner thread against ``unload_all``.

``--files`` copies of one Greeter plugin (1000 by default) are put in a
directory and loaded by a real watcher (watchdog observer, ``load_existing``),
then every file is deleted; the watcher reports the removals and its owner
thread unloads them.  The other side loads the same files into a second
manager the way the watcher does (:meth:`PluginManager.reload`, private
copies) and times :meth:`PluginManager.unload_all`.

The watcher's figure is the owner thread's *busy* time on the removal
notifications (from taking each one off the queue to asking for the next), so
the debounce window and the observer's own latency are left out; both sides
do the same ``dlclose`` of the same number of libraries, so a ratio near 1
means the owner adds no per-file bookkeeping that grows with the number of
files.  ``--cpu`` measures both sides in the CPU time of the thread doing the
work (``time.thread_time``): the observer's threads, busy with the same
deletions while the owner works, and other processes on a shared machine then
count on neither side (wall time counts the owner's waits for the GIL and for
a core).  The end-to-end time (last ``unlink`` to last ``Unloaded``, wall
time) is printed too; it includes one debounce window.  Each repeat runs both
sides, in alternating order; the figure is the median of the per-repeat
ratios.

Run:

    python bench/bench_watch_remove.py --cpu           # after `pip install .`
    python bench/bench_watch_remove.py --files 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from plugin_annotations import PluginSpec, build_plugins
from plugin_host import Loaded, ManagerNotification, PluginManager, Unloaded, WatchNotification, WatchOptions
from plugin_host.watch import process_watch_notifications_blocking, start_watch_background

SOURCE = """\
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"
static char *bench_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("bench %s", name);
}
PLUGIN_IMPL(Greeter, Bench, .greet = bench_greet)
PLUGIN_AGGREGATES(Greeter)
"""

TIMEOUT_S = 120.0
TARGET = 2.0
#: Wall time by default; ``--cpu``: the CPU time of the thread that does the work.
CLOCK = time.perf_counter


class BusyClock(queue.Queue[WatchNotification]):
    """The watcher's queue as the owner thread sees it, timing the owner's work.

    The owner is busy from the moment a ``get`` returns a notification to its
    next ``get``; the time spent on notifications with removals is summed.
    """

    def __init__(self, source: queue.Queue[WatchNotification]) -> None:
        super().__init__()
        self._source = source
        self._taken: float | None = None
        self._removing = False
        self.busy_s = 0.0

    def get(self, block: bool = True, timeout: float | None = None) -> WatchNotification:
        now = CLOCK()
        if self._taken is not None and self._removing:
            self.busy_s += now - self._taken
        note = self._source.get(block, timeout)
        self._taken = CLOCK()
        self._removing = bool(note.removed)
        return note


def build_library(work: Path) -> Path:
    src = work / "src"
    src.mkdir()
    (src / "bench.c").write_text(SOURCE)
    spec = PluginSpec(name="bench", directory=src, sources=(src / "bench.c",))
    return build_plugins([spec], work / "build").outputs["bench"]


def populate(directory: Path, library: Path, files: int) -> list[Path]:
    directory.mkdir()
    paths = [directory / f"libbench{i:05}.so" for i in range(files)]
    for p in paths:
        shutil.copyfile(library, p)
    return paths


def watcher_side(directory: Path, paths: list[Path]) -> tuple[float, float]:
    """Owner busy time on the removals, and last unlink -> last Unloaded, in seconds."""
    opts = WatchOptions(debounce_ms=50)
    loaded = threading.Semaphore(0)
    unloaded: list[float] = []
    all_unloaded = threading.Event()
    failures: list[BaseException] = []

    def on_note(note: ManagerNotification) -> bool:
        if isinstance(note, Loaded):
            loaded.release()
        elif isinstance(note, Unloaded):
            unloaded.append(time.perf_counter())
            if len(unloaded) == len(paths):
                all_unloaded.set()
        else:
            failures.append(note.error)
        return True

    with PluginManager() as manager:
        source, stop, watcher = start_watch_background(directory, opts)
        clock = BusyClock(source)
        owner = threading.Thread(
            target=process_watch_notifications_blocking,
            args=(manager, directory, clock, "Greeter", opts, on_note),
        )
        owner.start()
        try:
            for _ in paths:
                if not loaded.acquire(timeout=TIMEOUT_S):
                    raise RuntimeError("the watcher did not load every file")
            for p in paths:
                p.unlink()
            removed_at = time.perf_counter()
            if not all_unloaded.wait(TIMEOUT_S):
                raise RuntimeError(f"only {len(unloaded)} of {len(paths)} files were unloaded")
        finally:
            stop.set()
            watcher.join(TIMEOUT_S)
            owner.join(TIMEOUT_S)
        if failures:
            raise failures[0]
        if manager.handles:
            raise RuntimeError(f"{len(manager.handles)} handles still loaded")
        return clock.busy_s, unloaded[-1] - removed_at


def unload_all_side(paths: list[Path]) -> float:
    """``unload_all`` of the same files, loaded the way the watcher loads them, in seconds."""
    with PluginManager() as manager:
        for p in paths:
            manager.reload(p, "Greeter")
        start = CLOCK()
        counters = manager.unload_all()
        elapsed = CLOCK() - start
    if len(counters) != len(paths):
        raise RuntimeError(f"unload_all unloaded {len(counters)} of {len(paths)} files")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="CPU time of the working thread instead of wall time")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.cpu else time.perf_counter
    print(
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.files} files, {args.repeats} repeats, {'thread CPU time' if args.cpu else 'wall time'}"
    )
    print(f"{'repeat':>6}  {'watcher owner':>13}  {'unload_all':>10}  {'ratio':>6}  {'end-to-end':>10}")
    ratios: list[float] = []
    busy: list[float] = []
    unloads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-watch-remove-") as tmp:
        work = Path(tmp)
        library = build_library(work)
        for i in range(args.repeats):
            watched = populate(work / f"watched{i}", library, args.files)
            plain = populate(work / f"plain{i}", library, args.files)
            if i % 2:  # alternating order: a side is not always the one after a cold start
                unload_s = unload_all_side(plain)
                busy_s, end_to_end_s = watcher_side(work / f"watched{i}", watched)
            else:
                busy_s, end_to_end_s = watcher_side(work / f"watched{i}", watched)
                unload_s = unload_all_side(plain)
            ratios.append(busy_s / unload_s)
            busy.append(busy_s)
            unloads.append(unload_s)
            print(
                f"{i + 1:>6}  {busy_s * 1000:>11.1f}ms  {unload_s * 1000:>8.1f}ms  {ratios[-1]:>6.2f}  "
                f"{end_to_end_s * 1000:>8.1f}ms"
            )
    ratio = statistics.median(ratios)
    print(
        f"\nmedians: watcher owner {statistics.median(busy) * 1000:.1f}ms, "
        f"unload_all {statistics.median(unloads) * 1000:.1f}ms"
    )
    print(
        f"median ratio (watcher owner / unload_all): {ratio:.2f} (spread {min(ratios):.2f}-{max(ratios):.2f})"
        f"  target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
