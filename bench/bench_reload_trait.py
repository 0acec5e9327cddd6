#!/usr/bin/env python3
"""Reloading a changed plugin with the trait found from the file, against the trait given, and raw watchdog.

What ``plugin-host watch`` does per changed file is ``manager.reload(path,
None)``: the traits are found from the file (its export table, and its
embedded declarations for a trait not loaded yet).  Sides, each on its own
file, each operation on a new version of it (two builds of one Greeter
plugin, published alternately with ``os.replace`` before the clock starts,
as a compiler or ``cp --atomic`` publishes):

- ``none``: ``reload(path, None)``, the file already loaded (the watcher's
  reload of a changed file);
- ``greeter``: ``reload(path, PluginTrait.Greeter)``, the same;
- ``watchdog``: a bare watchdog observer (the platform's default, scheduled
  with the event filter the host's watcher uses) noticing the same change:
  from the call of ``os.replace`` to its handler being called for the file;
- ``rename``: the same ``os.replace`` into a directory nobody watches.

``watchdog`` minus ``rename`` (per repeat) is what noticing the change costs:
what any watcher built on watchdog pays before the host does anything (the
debounce window aside).  The clock cannot start after ``os.replace``
returns: the observer's threads notice the change on the other core while
the rename is still returning (a rename here takes milliseconds of wall time).

``--first`` adds the first load of a file (a new file in the directory:
``reload`` of a path not loaded, unloaded again off the clock), where
``None`` also reads and checks the embedded declaration.

The sides run in short turns in a rotating order, so noise on this shared
machine hits them alike; each figure is the median over repeats, each ratio
the median of the per-repeat ratios.  ``--cpu`` measures the process's CPU
time (all threads: watchdog's are counted), which other processes disturb
far less than wall time.  ``--instructions`` counts instructions per
operation with callgrind (each side alone in a child at two lengths,
differenced).

Target (issue 16): ``none`` <= 1.3x ``greeter``.  Run:

    python bench/bench_reload_trait.py --cpu        # after `pip install .`
    python bench/bench_reload_trait.py --cpu --first --instructions
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _callgrind import instructions_per_op  # bench/, on the path when a bench runs as a script
from plugin_annotations import PluginSpec, build_plugins
from plugin_host import PluginManager, PluginTrait
from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

SOURCE = """\
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"
static char *bench_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("v%d %s", VERSION, name);
}
PLUGIN_IMPL(Greeter, Bench, .greet = bench_greet)
PLUGIN_AGGREGATES(Greeter)
"""

#: The filter ``plugin_host.watch`` schedules its observer with (what can change a path).
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
#: Each side's operations of one repeat run in this many turns, interleaved with the other sides'.
CHUNKS = 5
TIMEOUT_S = 30.0
TARGET = 1.3
CLOCK: Callable[[], float] = time.perf_counter


def build_versions(work: Path) -> list[bytes]:
    """Two builds of the bench greeter (they greet with different text): their bytes."""
    src = work / "src"
    src.mkdir()
    (src / "bench.c").write_text(SOURCE)
    out = []
    for version in (1, 2):
        spec = PluginSpec(name="bench", directory=src, sources=(src / "bench.c",), defines=(f"VERSION={version}",))
        out.append(build_plugins([spec], work / f"build{version}").outputs["bench"].read_bytes())
    return out


class Publisher:
    """Publishes the two versions alternately at one path, through a staging file (off the clock)."""

    def __init__(self, versions: list[bytes], staging: Path, target: Path) -> None:
        self.versions, self.staging, self.target = versions, staging, target
        self.count = 0

    def stage(self) -> None:
        self.staging.write_bytes(self.versions[self.count % 2])
        self.count += 1

    def publish(self) -> None:
        os.replace(self.staging, self.target)


class ReloadSide:
    """``reload`` of a changed file with one trait argument, in a manager of its own."""

    def __init__(self, versions: list[bytes], work: Path, name: str, trait: PluginTrait | None, first: bool) -> None:
        directory = work / name
        directory.mkdir()
        self.directory, self.trait, self.first = directory, trait, first
        self.publisher = Publisher(versions, work / f"{name}.staging", directory / "libbench.so")
        self.manager = PluginManager()
        self.publisher.stage()
        self.publisher.publish()
        self.manager.reload(self.publisher.target, trait)

    def __call__(self, n: int) -> float:
        total = 0.0
        manager, trait, publisher = self.manager, self.trait, self.publisher
        for _ in range(n):
            if self.first:  # a file not loaded yet: the old version is unloaded off the clock
                manager.unload_by_path(publisher.target)
            publisher.stage()
            publisher.publish()
            start = CLOCK()
            manager.reload(publisher.target, trait)
            total += CLOCK() - start
        return total / n

    def close(self) -> None:
        self.manager.unload_all()


class _Noticed(FileSystemEventHandler):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.event = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not event.is_directory and os.fsdecode(event.src_path) == self.path:
            self.event.set()


class WatchdogSide:
    """A publication (``os.replace``) and, if ``watched``, a bare watchdog observer's handler called for it."""

    def __init__(self, versions: list[bytes], work: Path, watched: bool) -> None:
        name = "watchdog" if watched else "rename"
        directory = work / name
        directory.mkdir()
        self.publisher = Publisher(versions, work / f"{name}.staging", directory / "libbench.so")
        self.publisher.stage()
        self.publisher.publish()
        self.handler = _Noticed(str(self.publisher.target))
        self.observer: BaseObserver | None = None
        if watched:
            self.observer = Observer()
            self.observer.schedule(self.handler, str(directory), event_filter=EVENT_FILTER)
            self.observer.start()

    def __call__(self, n: int) -> float:
        total = 0.0
        noticed, publisher, watched = self.handler.event, self.publisher, self.observer is not None
        for _ in range(n):
            publisher.stage()
            noticed.clear()
            start = CLOCK()
            publisher.publish()
            if watched and not noticed.wait(TIMEOUT_S):
                raise RuntimeError(f"watchdog did not report {publisher.target} within {TIMEOUT_S} s")
            total += CLOCK() - start
        return total / n

    def close(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(TIMEOUT_S)


Side = ReloadSide | WatchdogSide


def make_sides(versions: list[bytes], work: Path, first: bool) -> dict[str, dict[str, Side]]:
    cases: dict[str, dict[str, Side]] = {
        "reload": {
            "none": ReloadSide(versions, work, "none", None, False),
            "greeter": ReloadSide(versions, work, "greeter", PluginTrait.Greeter, False),
            "watchdog": WatchdogSide(versions, work, watched=True),
            "rename": WatchdogSide(versions, work, watched=False),
        }
    }
    if first:
        cases["first load"] = {
            "none": ReloadSide(versions, work, "first-none", None, True),
            "greeter": ReloadSide(versions, work, "first-greeter", PluginTrait.Greeter, True),
        }
    return cases


def measure(
    cases: dict[str, dict[str, Side]], repeats: int, ops: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, float]]]:
    """Per case and side, the mean seconds per operation of each repeat, and their medians."""
    times: dict[str, dict[str, list[float]]] = {c: {s: [] for s in sides} for c, sides in cases.items()}
    n = max(ops // CHUNKS, 1)
    for r in range(repeats):
        for case, sides in cases.items():
            names = list(sides)
            total = dict.fromkeys(names, 0.0)
            for k in range(CHUNKS):  # short turns, in a rotating order: noise hits every side alike
                shift = (r + k) % len(names)
                for name in names[shift:] + names[:shift]:
                    total[name] += sides[name](n)
            for name in names:
                times[case][name].append(total[name] / CHUNKS)
    medians = {c: {s: statistics.median(v) for s, v in sides.items()} for c, sides in times.items()}
    return times, medians


def paired(times: dict[str, list[float]], a: str, b: str) -> list[float]:
    return sorted(x / y for x, y in zip(times[a], times[b], strict=True))


# ---- instruction counts -----------------------------------------------------------------------------


def child(work: Path, case: str, side: str, ops: int) -> None:
    """One side alone (run under callgrind by --instructions)."""
    versions = [(work / f"v{i}.so").read_bytes() for i in (1, 2)]
    with tempfile.TemporaryDirectory(prefix="child-", dir=work) as tmp:
        cases = make_sides(versions, Path(tmp), case != "reload")
        run = cases[case][side]
        run(2)  # warm: first calls, first copies
        gc.disable()  # a collection landing in one length but not the other would be counted as operations
        run(ops)
        gc.enable()
        for sides in cases.values():
            for s in sides.values():
                s.close()


def instructions(work: Path, case: str, side: str, short: int, long: int) -> float:
    """Instructions per operation: callgrind totals at two lengths, differenced."""
    return instructions_per_op(__file__, work, case, side, short, long)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--ops", type=int, default=50, help="operations per side per repeat")
    parser.add_argument("--cpu", action="store_true", help="CPU time of this process instead of wall time")
    parser.add_argument("--first", action="store_true", help="also the first load of a file")
    parser.add_argument("--instructions", action="store_true", help="also count instructions (callgrind)")
    parser.add_argument("--child", nargs=4, metavar=("WORK", "CASE", "SIDE", "OPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.cpu else time.perf_counter
    if args.child:
        work, case, side, ops = args.child
        child(Path(work), case, side, int(ops))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-reload-trait-") as tmp:
        work = Path(tmp)
        versions = build_versions(work)
        for i, data in enumerate(versions, 1):
            (work / f"v{i}.so").write_bytes(data)
        (work / "run").mkdir()
        cases = make_sides(versions, work / "run", args.first)
        for sides in cases.values():  # warm: first calls, first copies, the observer's first events
            for side in sides.values():
                side(3)
        times, medians = measure(cases, args.repeats, args.ops)
        for sides in cases.values():
            for side in sides.values():
                side.close()
        clock = "CPU time" if args.cpu else "wall time"
        print(
            f"python {sys.version.split()[0]}, watchdog {Observer.__name__}, {clock}, "
            f"median of {args.repeats} repeats of {args.ops} operations per side"
        )
        met = True
        for case, sides in medians.items():
            figures = "   ".join(f"{name} {value * 1e3:6.3f} ms" for name, value in sides.items())
            print(f"{case:11s} {figures}")
            ratios = paired(times[case], "none", "greeter")
            ratio = statistics.median(ratios)
            verdict = ""
            if case == "reload":
                met = ratio <= TARGET
                verdict = f"   target <= {TARGET}: {'met' if met else 'MISSED'}"
            print(f"{'':11s} none/greeter {ratio:5.2f} (spread {ratios[0]:.2f}-{ratios[-1]:.2f}){verdict}")
            if "watchdog" in sides:
                notice = [w - r for w, r in zip(times[case]["watchdog"], times[case]["rename"], strict=True)]
                print(f"{'':11s} watchdog noticing (watchdog - rename): {statistics.median(notice) * 1e3:6.3f} ms")
                for a in ("none", "greeter"):
                    r = sorted(x / y for x, y in zip(times[case][a], notice, strict=True) if y > 0)
                    if r:
                        print(f"{'':11s} {a}/noticing {statistics.median(r):5.1f} (spread {r[0]:.1f}-{r[-1]:.1f})")
        if args.instructions:
            if shutil.which("valgrind") is None:
                print("\nvalgrind is not installed: no instruction counts")
            else:
                print("\ninstructions per operation (callgrind, differenced over two lengths):")
                for case, sides in medians.items():
                    counts = {s: instructions(work, case, s, 10, 30) for s in sides}
                    figures = "   ".join(f"{name} {value / 1e3:7.1f}k" for name, value in counts.items())
                    print(f"{case:11s} {figures}   none/greeter {counts['none'] / counts['greeter']:.3f}")
        print("\ntarget met" if met else "\ntarget MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
