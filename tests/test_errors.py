"""Every error carries a reason, a path and (where there is one) a symbol; groups are ExceptionGroups."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import plugin_host.errors as errors
import pytest
from plugin_host import PluginManager, PluginTrait
from plugin_host.errors import (
    ErrorReason,
    LibraryLoadError,
    NotASharedLibraryError,
    PluginError,
    PluginLoadErrors,
    TraitNotImplementedError,
)

ERROR_CLASSES = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, PluginError)]
#: Classes that are only ever raised through a subclass.
ABSTRACT = {PluginError, errors.ProbeError}


def test_every_error_class_has_its_own_reason() -> None:
    concrete = [cls for cls in ERROR_CLASSES if cls not in ABSTRACT]
    reasons = {cls: cls.REASON for cls in concrete}
    assert all(isinstance(r, ErrorReason) for r in reasons.values())
    duplicated = {r for r in reasons.values() if list(reasons.values()).count(r) > 1}
    assert not duplicated, {cls.__name__: r for cls, r in reasons.items() if r in duplicated}
    assert set(reasons.values()) | {ErrorReason.ERROR} == set(ErrorReason)


def test_the_reason_is_on_every_instance(tmp_path: Path) -> None:
    text = tmp_path / "libtext.so"
    text.write_text("not a library\n")
    with PluginManager() as manager, pytest.raises(NotASharedLibraryError) as exc:
        manager.load_plugins(text, PluginTrait.Greeter)
    assert exc.value.reason is ErrorReason.NOT_A_LIBRARY
    assert exc.value.path == str(text) and exc.value.symbol is None
    assert exc.value.detail == "unrecognised file format (starts with b'not a library\\n')"


def test_a_trait_not_implemented_is_its_own_type(example_plugins: dict[str, Path]) -> None:
    lib = example_plugins["greeters"]
    with PluginManager() as manager, pytest.raises(TraitNotImplementedError) as exc:
        manager.load_plugins(lib, PluginTrait.Transformer)
    assert exc.value.reason is ErrorReason.TRAIT_NOT_IMPLEMENTED
    assert exc.value.trait == "Transformer"
    assert exc.value.symbol == "plugin_register_all_Transformer_v1"
    assert "does not implement Transformer" in str(exc.value)


def test_a_directory_loads_failures_are_an_exception_group(
    tmp_path: Path, example_plugins: dict[str, Path], test_plugins: dict[str, Path]
) -> None:
    directory = tmp_path
    shutil.copy(example_plugins["greeters"], directory / "libgood.so")
    (directory / "libtext.so").write_text("junk\n")
    shutil.copy(test_plugins["undefined_symbol"], directory / "libundefined.so")
    with PluginManager() as manager:
        with pytest.raises(PluginLoadErrors) as exc:
            manager.load_plugins(directory, PluginTrait.Greeter)
        group = exc.value
        assert isinstance(group, ExceptionGroup) and isinstance(group, PluginError)
        assert group.reason is ErrorReason.LOAD_ERRORS and group.path == str(directory)
        assert [type(e) for e in group.exceptions] == [NotASharedLibraryError, LibraryLoadError]
        assert [h.path.name for h in group.loaded] == ["libgood.so"]  # type: ignore[attr-defined]
        loaders, rest = group.split(LibraryLoadError)
        assert isinstance(loaders, PluginLoadErrors) and loaders.loaded == group.loaded
        assert rest is not None and [type(e) for e in rest.exceptions] == [NotASharedLibraryError]
        caught: list[type[BaseException]] = []
        try:
            raise group
        except* NotASharedLibraryError as e:
            caught += [type(x) for x in e.exceptions]
        except* LibraryLoadError as e:
            caught += [type(x) for x in e.exceptions]
        assert caught == [NotASharedLibraryError, LibraryLoadError]
