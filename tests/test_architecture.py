"""The layering is checked by a tool, and the tool really catches a breach.

``lint-imports`` runs in CI on the tree; these tests run it on copies of the
tree with one breach planted each (an upward import, a cycle hidden in a
function), to show the contracts in pyproject.toml fail when they should.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "plugin_interface": REPO / "interface" / "plugin_interface",
    "plugin_annotations": REPO / "annotations" / "plugin_annotations",
    "plugin_host": REPO / "host" / "plugin_host",
}

pytest.importorskip("importlinter", reason="import-linter is a test dependency: pip install '.[test]'")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts on the packages under ``tree`` (and nothing else).

    ``-S`` keeps an editable install's import hook from pointing at the real tree.
    """
    paths = [str(tree), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    code = (
        f"import sys; sys.path[:0] = {paths!r}; "
        "from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(REPO / 'pyproject.toml')!r}, no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300, cwd=tree, env=dict(os.environ)
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, source in PACKAGES.items():
        shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return tmp_path


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tree: Path) -> None:
    module = tree / "plugin_host" / "formats" / "_sniff.py"
    module.write_text(module.read_text() + "\nfrom ..loading import Library  # planted: formats -> loading\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "The host's layers BROKEN" in result.stdout
    assert "plugin_host.formats._sniff -> plugin_host.loading" in result.stdout


def test_a_cycle_hidden_in_a_function_is_still_a_cycle(tree: Path) -> None:
    module = tree / "plugin_host" / "loading" / "_precheck.py"
    planted = "\n\ndef _planted() -> None:\n    from . import _library  # planted: _precheck -> _library -> _precheck\n"
    module.write_text(module.read_text() + planted)
    result = _lint(tree)
    assert result.returncode != 0
    assert "No import cycles between sibling modules or packages anywhere in the project BROKEN" in result.stdout


def test_the_interface_never_imports_the_host(tree: Path) -> None:
    module = tree / "plugin_interface" / "_types.py"
    module.write_text(module.read_text() + "\nimport plugin_host  # planted\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "The three parts: host -> annotations -> interface BROKEN" in result.stdout
