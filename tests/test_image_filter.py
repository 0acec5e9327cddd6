"""The image_filter example (native_plugins/image_filter, its trait in native_plugins/image_traits.py).

The plugin as a user calls it: structs by pointer and by value, an in/out pixel array, a status, a
callback and a session object; from ``bytearray`` and, when numpy is installed, from numpy arrays
(zero-copy both ways, non-contiguous and wrong-dtype arrays refused before the call).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_isolated
from plugin_host import PluginManager
from plugin_host.errors import CallArgumentError, PluginMethodError, PluginUnloadedError
from plugin_host.examples.image_traits import Image, ImageFilter, Levels


@pytest.fixture
def grey(example_plugins: dict[str, Path]) -> Iterator[Any]:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(example_plugins["image_filter"], ImageFilter)
        yield handle.proxy("Grey")


def test_invert_adjust_and_a_failing_status(grey: Any) -> None:
    assert grey.describe() == "8-bit grey: invert, levels, row sums, sessions"
    image = Image(width=3, height=2, stride=4)  # one byte of padding per row: left alone
    pixels = bytearray([0, 100, 255, 7, 10, 20, 30, 7])
    assert grey.invert(image, pixels) is None
    assert list(pixels) == [255, 155, 0, 7, 245, 235, 225, 7]
    grey.adjust(image, pixels, Levels(gain=0.5, offset=10.0))
    assert list(pixels) == [137, 87, 10, 7, 132, 127, 122, 7]
    with pytest.raises(PluginMethodError, match="2 rows of 4 bytes .3 pixels each. do not fit 7 bytes") as exc:
        grey.invert(image, pixels[:7])
    assert exc.value.code == 1 and exc.value.symbol == "ImageFilter.Grey.invert"


def test_rows_through_a_callback_and_a_callback_that_raises(grey: Any) -> None:
    image = Image(2, 3, 2)
    pixels = bytes([1, 2, 3, 4, 5, 6])  # read-only is fine for an Array[U8]
    seen: list[tuple[int, int]] = []
    assert grey.rows(image, pixels, lambda row, total: seen.append((row, total)) or True) == 3
    assert seen == [(0, 3), (1, 7), (2, 11)]

    def stop_at_one(row: int, total: int) -> bool:
        if row == 1:
            raise ValueError("enough")
        return True

    with pytest.raises(ValueError, match="enough"):  # re-raised after the plugin returned
        grey.rows(image, pixels, stop_at_one)
    assert grey.rows(image, pixels, lambda row, total: False) == 0  # and the proxy still works


def test_sessions_are_destroyed_once_and_refused_after_unload(example_plugins: dict[str, Path]) -> None:
    with PluginManager() as manager:
        [handle] = manager.load_plugins(example_plugins["image_filter"], ImageFilter)
        grey: Any = handle.proxy("Grey")
        image = Image(2, 2, 2)
        with grey.open("first") as session:
            assert grey.feed(session, image, bytes([10, 20, 30, 40])) == 4
            assert grey.feed(session, image, bytes([0, 0, 0, 0])) == 8
            assert grey.report(session) == "first: 8 pixels, mean 12"
        assert not session.is_alive
        with pytest.raises(CallArgumentError, match="the Session object was destroyed already"):
            grey.report(session)
        kept = grey.open("kept")
        manager.unload_by_path(example_plugins["image_filter"])  # destroys it first
        assert not kept.is_alive
        with pytest.raises(PluginUnloadedError):
            grey.report(kept)
        del kept
        gc.collect()  # its finalizer does not call into the unloaded library


# ---- from numpy ------------------------------------------------------------------------------------


def test_numpy_pixels_are_changed_in_place(grey: Any) -> None:
    np = pytest.importorskip("numpy")
    frame = np.array([[0, 1, 2, 3], [250, 251, 252, 253]], dtype=np.uint8)
    whole = frame.reshape(-1)  # another view of the same memory
    grey.invert(Image(4, 2, 4), frame)
    assert frame.tolist() == [[255, 254, 253, 252], [5, 4, 3, 2]]  # the caller's array, written by C
    assert whole.tolist() == [255, 254, 253, 252, 5, 4, 3, 2]
    row = frame[1]  # a C-contiguous row of a larger array: its own memory, no copy
    grey.adjust(Image(4, 1, 4), row, Levels(2.0, 0.0))
    assert frame[1].tolist() == [10, 8, 6, 4] and frame[0].tolist() == [255, 254, 253, 252]


def test_numpy_pixels_are_read_in_place(grey: Any) -> None:
    np = pytest.importorskip("numpy")
    frame = np.ones((3, 2), dtype=np.uint8)
    sums: list[int] = []

    def visit(row: int, total: int) -> bool:
        sums.append(total)
        frame[row + 1 :] = 9  # the plugin reads the next rows after this: from the same memory
        return True

    assert grey.rows(Image(2, 3, 2), frame, visit) == 3
    assert sums == [2, 18, 18]


def test_a_non_contiguous_numpy_slice_is_refused(grey: Any) -> None:
    np = pytest.importorskip("numpy")
    frame = np.zeros((4, 4), dtype=np.uint8)
    for sliced in (frame[:, :2], frame[::2], frame.T):
        with pytest.raises(CallArgumentError, match=r"pixels: the buffer is not C-contiguous \(MutArray\[U8\]\)") as e:
            grey.invert(Image(2, 2, 2), sliced)
        assert e.value.symbol == "ImageFilter.Grey.invert" and e.value.path
    assert not frame.any()  # nothing was written
    copy = np.ascontiguousarray(frame[:, :2])  # what the caller does about it: a contiguous copy
    grey.invert(Image(2, 4, 2), copy)
    assert (copy == 255).all()
    with pytest.raises(CallArgumentError, match="not C-contiguous"):
        grey.rows(Image(2, 2, 2), frame[:, ::2], lambda row, total: True)  # Array[U8] too


def test_a_wrong_dtype_or_a_read_only_array_is_refused(grey: Any) -> None:
    np = pytest.importorskip("numpy")
    for dtype, fmt in ((np.uint16, "H"), (np.int8, "b"), (np.float32, "f")):
        with pytest.raises(CallArgumentError, match=rf"pixels: items of format '{fmt}' .* MutArray\[U8\] needs U8"):
            grey.invert(Image(2, 1, 2), np.zeros(2, dtype=dtype))
    frozen = np.zeros(4, dtype=np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(CallArgumentError, match=r"read-only, MutArray\[U8\] is written to"):
        grey.invert(Image(2, 2, 2), frozen)
    assert grey.rows(Image(2, 2, 2), frozen, lambda row, total: True) == 2  # read-only is fine where only read


def test_the_embedded_declaration_alone_takes_numpy_arrays(example_plugins: dict[str, Path]) -> None:
    pytest.importorskip("numpy")
    done = run_isolated(
        f"""
        import json
        import numpy as np
        from plugin_host import PluginManager
        from plugin_interface import declared_traits

        with PluginManager() as manager:
            [handle] = manager.load_plugins({str(example_plugins["image_filter"])!r}, "ImageFilter")
            grey = handle.proxy("Grey")
            frame = np.arange(6, dtype=np.uint8).reshape(2, 3)
            grey.invert({{"width": 3, "height": 2, "stride": 3}}, frame)
            print(json.dumps([sorted(declared_traits()), frame.tolist()]))
        """
    )
    assert done.returncode == 0, done.stderr
    declared, frame = json.loads(done.stdout)
    assert "ImageFilter" not in declared  # only the plugin declared it
    assert frame == [[255, 254, 253], [252, 251, 250]]
