"""The plugin-host command line: demo, list, call, exit statuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI
from plugin_host.cli import main


def test_demo_builds_loads_calls_and_unloads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "built" in out
    for expected in ("Hello, world!", "Bonjour, world!", "Hallo, world!", "Uryyb, jbeyq!", "HELLO, WORLD!"):
        assert expected in out
    lines = [line.split() for line in out.splitlines()]
    greeters = [row for row in lines if row[:1] == ["libgreeters.so"]]
    assert len(greeters) == 3 and all(row[-2:] == ["3", "unmapped"] for row in greeters)
    host_owned = [row for row in lines if row[:1] == ["libhost_owned.so"]]
    assert [row[3] for row in host_owned] == ["host", "host"]
    # ImageFilter is declared only by its plugin: loaded from the embedded declaration, and called.
    [image] = [line for line in out.splitlines() if line.startswith("libimage_filter.so")]
    assert "inverted [255, 191, 127, 0], row sums [573, 920]; demo: 8 pixels, mean 186" in image, image
    assert image.split()[1] == "ImageFilter" and image.split()[-2:] == ["1", "unmapped"], image
    # The C++ and Rust greeters answer as the C one does (where their compilers are; CI has both).
    for lib in ("libc_greeter.so", "libcpp_greeter.so", "librust_greeter.so"):
        rows = [row for row in lines if row[:1] == [lib]]
        if rows or lib == "libc_greeter.so" or IN_CI:
            assert sorted(row[2] for row in rows) == ["Counting", "English", "French"], lib
            assert all(row[-2:] == ["3", "unmapped"] for row in rows), lib
    filters = {row[0]: row[4:] for row in lines if row[:1] in (["libimage_filter.so"], ["librust_image_filter.so"])}
    if "librust_image_filter.so" in filters or IN_CI:  # the twins answer alike
        assert filters["librust_image_filter.so"] == filters["libimage_filter.so"]
        assert filters["libimage_filter.so"][-2:] == ["1", "unmapped"]
    # A second run finds everything up to date and compiles nothing.
    assert main(["demo", "--build-dir", str(tmp_path)]) == 0
    assert "all up to date" in capsys.readouterr().out


def test_list_shows_every_trait_and_ownership(
    example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    lib_dir = example_plugins["greeters"].parent
    assert main(["list", str(lib_dir)]) == 0
    out = capsys.readouterr().out
    assert "Rot13, Upper" in out or "Upper, Rot13" in out
    assert "German, Italian" in out
    assert main(["list", str(example_plugins["greeters"]), "--trait", "Transformer"]) == 1
    assert "exports no plugin for Transformer" in capsys.readouterr().err


def test_call_a_method(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", str(example_plugins["greeters"]), "Greeter", "English", "greet", "Ada"]) == 0
    assert capsys.readouterr().out == "Hello, Ada!\n"
    assert main(["call", str(example_plugins["multi_trait"]), "Transformer", "Rot13", "transform", "abc"]) == 0
    assert capsys.readouterr().out == "3\nnop\n"


def test_call_errors(example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = str(example_plugins["greeters"])
    assert main(["call", lib, "Greeter", "English", "greet"]) == 2
    assert "takes 1 argument(s) (name), got 0" in capsys.readouterr().err
    assert main(["call", lib, "Greeter", "Klingon", "greet", "x"]) == 1
    assert "no Greeter implementation 'Klingon'" in capsys.readouterr().err
    assert main(["call", lib, "Nope", "English", "greet", "x"]) == 1
    assert "unknown trait 'Nope'" in capsys.readouterr().err
    bad = tmp_path / "libbad.so"
    bad.write_text("text")
    assert main(["call", str(bad), "Greeter", "English", "greet", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["call"])
    assert exc.value.code == 2


def test_module_entry_point(example_plugins: dict[str, Path]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "plugin_host",
            "call",
            str(example_plugins["greeters"]),
            "Greeter",
            "French",
            "greet",
            "Zoë",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout == "Bonjour, Zoë!\n"


def test_a_refused_file_is_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", str(tmp_path / "libmissing.so")]) == 1
    err = capsys.readouterr().err
    assert err.count("libmissing.so") == 1 and "cannot read it" in err


def test_call_and_watch_refuse_the_wrong_kind_of_path(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", str(tmp_path), "Greeter", "English", "greet", "x"]) == 2
    assert "call takes one plugin file" in capsys.readouterr().err
    assert main(["watch", str(tmp_path / "missing")]) == 2
    out, err = capsys.readouterr()
    assert "not a directory" in err and "watching" not in out


def test_list_keeps_listing_after_a_bad_file(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    (tmp_path / "liba_bad.so").write_text("text")
    shutil.copy(example_plugins["foo"], tmp_path / "libfoo.so")
    assert main(["list", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "liba_bad.so" in err
    assert "libfoo.so" in out and "plain library" in out


def test_negative_debounce_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["watch", str(tmp_path), "--debounce-ms", "-5"])
    assert exc.value.code == 2
    assert "must be 0 or more" in capsys.readouterr().err


def test_list_and_call_refuse_an_unreadable_file_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    # /proc/self/mem stats as a regular file, but reading its first page fails (EIO).
    assert main(["list", "/proc/self/mem"]) == 1
    assert "error: /proc/self/mem: not a loadable shared library: cannot read it" in capsys.readouterr().err
    assert main(["call", "/proc/self/mem", "Greeter", "English", "greet", "x"]) == 1
    assert "error: /proc/self/mem: not a loadable shared library: cannot read it" in capsys.readouterr().err


def test_call_arguments_that_are_not_utf8(example_plugins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # argv's bytes that are not UTF-8 arrive as surrogates (PEP 383).
    lib = str(example_plugins["greeters"])
    assert main(["call", lib, "Greeter", "English", "greet", "Ad\udcffa"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {lib}: Greeter.greet: argument name b'Ad\\xffa' is not UTF-8 text\n"
    # A buffer takes the bytes as they came.
    assert main(["call", str(example_plugins["multi_trait"]), "Transformer", "Rot13", "transform", "a\udcffb"]) == 0
    assert capsys.readouterr().out == "2\nn\ufffdo\n"


def test_demo_build_dir_that_cannot_be_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--build-dir", "/dev/null"]) == 2
    assert capsys.readouterr().err == "error: --build-dir /dev/null: not a directory\n"
    (tmp_path / "file").write_text("x")
    assert main(["demo", "--build-dir", str(tmp_path / "file" / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'file' / 'sub'}: cannot build the examples there: ")


def test_a_name_too_long_is_an_error_not_a_traceback(
    example_plugins: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = str(tmp_path / ("x" * 5000))  # every system call on it fails with ENAMETOOLONG
    lib = str(example_plugins["greeters"])
    for argv, status in [
        (["list", long], 1),
        (["call", long, "Greeter", "English", "greet", "x"], 1),
        (["watch", long], 2),
        (["abi", "check", long], 2),
        (["abi", "dump", long], 2),
        (["abi", "diff", long, lib], 2),
        (["abi", "dump", lib, "-o", long], 2),
    ]:
        assert main(argv) == status, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and long in err and ("too long" in err or "not a directory" in err), argv


def test_help_is_wrapped_at_the_width_of_each_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The width is asked for each parser (as argparse asks shutil), not once per process."""
    widths = []
    for columns in ("60", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        with pytest.raises(SystemExit):
            main(["abi", "check", "--help"])
        widths.append(max(map(len, capsys.readouterr().out.splitlines())))
    assert widths[0] < 100 < widths[1], widths  # a width asked once would wrap both alike
