"""The generated trait headers: committed copies are not stale, and the
generator's output compiles warning-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from plugin_annotations import generate_trait_header, get_include, get_include_dirs, write_trait_headers
from plugin_interface import PluginTrait


def test_committed_headers_are_not_stale() -> None:
    committed = REPO / "interface" / "plugin_interface" / "include"
    stale = write_trait_headers(committed, check=True)
    assert stale == [], f"regenerate with `python -m plugin_annotations headers`: {stale}"


def test_installed_headers_match_the_generator() -> None:
    assert write_trait_headers(None, check=True) == []


def test_header_contents() -> None:
    text = generate_trait_header(PluginTrait.Transformer)
    assert "#ifndef PLUGIN_TRAIT_TRANSFORMER_H" in text
    assert "size_t (*transform)(void *self, uint8_t *data, size_t data_len);" in text
    assert "#define PLUGIN_TRAIT_VERSION_Transformer 1u" in text
    assert generate_trait_header(PluginTrait.Transformer) == text  # deterministic


def test_include_dirs_hold_the_headers() -> None:
    assert (Path(get_include()) / "plugin_annotations.h").is_file()
    names = {p.name for d in get_include_dirs() for p in Path(d).glob("*.h")}
    assert {"plugin_annotations.h", "plugin_interface.h", "plugin_trait_greeter.h"} <= names


def test_cflags_command_prints_every_include_dir() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "plugin_annotations", "--cflags"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [f"-I{d}" for d in get_include_dirs()]


def test_headers_check_command_exit_status(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "plugin_annotations", "headers", "--check", str(tmp_path)]
    assert subprocess.run(cmd, capture_output=True).returncode == 1
    subprocess.run([*cmd[:4], str(tmp_path)], check=True, capture_output=True)
    assert subprocess.run(cmd, capture_output=True).returncode == 0


def test_the_image_filter_examples_header_is_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """native_plugins/image_filter's header is generated from image_traits.py (the command is in its comment)."""
    import importlib

    traits = importlib.import_module("plugin_host.examples.image_traits")
    monkeypatch.chdir(REPO)  # the command in the header names the directory relative to the repository
    assert write_trait_headers("native_plugins/image_filter", [traits.ImageFilter], check=True) == []
