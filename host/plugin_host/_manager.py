"""PluginManager and PluginHandle: load, call, unload."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from plugin_interface import (
    PluginError,
    PluginLoadErrors,
    PluginUnloadedError,
    SymbolNotFoundError,
    TraitLike,
    TraitSpec,
    maker_symbol,
    register_all_symbol,
    resolve_trait,
    shared_library_suffix,
)

from ._library import Library
from ._proxy import TraitProxy, make_proxy
from ._registrations import RegistrationSet, find_maker_types

__all__ = ["PluginHandle", "PluginManager", "is_plugin_file", "register_trait", "unload_trait"]


def is_plugin_file(path: str | os.PathLike[str]) -> bool:
    """Whether a directory entry is a candidate plugin: the platform's suffix, not hidden."""
    name = os.path.basename(path)
    return name.endswith(shared_library_suffix()) and not name.startswith(".")


def register_trait(library: Library, trait: TraitLike) -> RegistrationSet:
    """Make every registration of ``trait`` the library offers.

    Uses ``plugin_register_all_<T>_v1`` when exported (plugin-owned array);
    otherwise finds ``plugin_register_<T>_<Ty>_v1`` makers in the symbol table
    and builds a host-owned array.

    :raises SymbolNotFoundError: the library has neither.
    """
    spec = resolve_trait(trait)
    if library.find_symbol(register_all_symbol(spec)) is not None:
        return RegistrationSet.from_aggregate(library, spec)
    types = find_maker_types(library, spec)
    if not types:
        raise SymbolNotFoundError(
            library.path,
            register_all_symbol(spec),
            f"and no {maker_symbol(spec, '<Type>')} makers either",
        )
    return RegistrationSet.from_makers(library, spec, types)


def unload_trait(library: Library, array: RegistrationSet) -> int | None:
    """Release ``array`` per its ownership rule; the trait's final unmaker counter.

    :returns: ``plugin_unmaker_counter_<T>_v1()`` after the release, or
        ``None`` when the library does not export it.
    :raises AlreadyReleasedError: if ``array`` was released already.
    """
    if array.library is not library:
        raise ValueError(f"{array!r} was not made from {library!r}")
    array.release()
    try:
        return library.get_unmaker_counter(array.trait.name)
    except SymbolNotFoundError:
        return None


class PluginHandle:
    """The registrations of one trait from one loaded plugin file.

    :ivar path: the plugin file (as given, absolute).
    :ivar trait: the trait's declaration.

    **Safety**: proxies from :meth:`proxies` call into the library; after
    :meth:`unload` (or the manager's unload of the file) they raise
    :class:`PluginUnloadedError` instead of touching freed memory.
    """

    def __init__(self, manager: PluginManager, regset: RegistrationSet) -> None:
        self._manager = manager
        self._set = regset
        self.path = regset.library.path
        self.trait: TraitSpec = regset.trait
        self._proxies = [make_proxy(regset, r) for r in regset.registrations]

    @property
    def library(self) -> Library:
        """The loaded library (shared by the handles of every trait of the file)."""
        return self._set.library

    @property
    def registration_set(self) -> RegistrationSet:
        """The registrations and their ownership."""
        return self._set

    @property
    def is_loaded(self) -> bool:
        """Whether the registrations are still alive."""
        return not self._set.is_released

    @property
    def is_plugin_owned(self) -> bool:
        """Whether the plugin's aggregate made the array (else the host assembled it)."""
        return self._set.is_plugin_owned

    @property
    def type_names(self) -> list[str]:
        """The implementation types, in registration order."""
        return [r.type_name for r in self._set.registrations]

    def proxies(self) -> list[TraitProxy]:
        """One typed proxy per registration.

        :raises PluginUnloadedError: if the handle was unloaded.
        """
        if self._set.is_released:
            raise PluginUnloadedError(self.path, register_all_symbol(self.trait))
        return list(self._proxies)

    def proxy(self, type_name: str) -> TraitProxy:
        """The proxy of one implementation type.

        :raises KeyError: naming the types there are.
        """
        for p in self.proxies():
            if p.type_name == type_name:
                return p
        raise KeyError(f"{self.path}: no {self.trait.name} implementation {type_name!r}; has {self.type_names}")

    def get_unmaker_counter(self) -> int:
        """The plugin's unmaker counter for this trait.

        :raises SymbolNotFoundError: if not exported.
        :raises PluginUnloadedError: after the library was unloaded.
        """
        return self.library.get_unmaker_counter(self.trait.name)

    def unload(self) -> int | None:
        """Release the registrations; closes the library if this was its last handle.

        :returns: the unmaker counter read after the release (``None`` if not exported).
        :raises AlreadyReleasedError: on a second call.
        """
        return self._manager._unload_handle(self)

    def __repr__(self) -> str:
        state = "loaded" if self.is_loaded else "unloaded"
        return f"<PluginHandle {self.trait.name} {self.type_names} from {self.path} {state}>"


class PluginManager:
    """Loads plugin libraries, keeps them alive, and unloads them.

    :param copy_on_load: load each file from a private copy with a unique
        name, so the original may be rebuilt (or replaced) while loaded and a
        changed file really loads new code.  The copies are removed at unload
        and at interpreter exit.

    **Thread-safety**: proxies may be called from any thread.  Loading and
    unloading are serialised by a lock; they are meant to run on the thread
    that owns the manager.
    """

    def __init__(self, *, copy_on_load: bool = False) -> None:
        self.copy_on_load = copy_on_load
        self._libraries: dict[Path, Library] = {}
        self._handles: dict[Path, dict[str, PluginHandle]] = {}
        self._lock = threading.RLock()

    # ---- queries ------------------------------------------------------------

    @property
    def handles(self) -> list[PluginHandle]:
        """Every loaded handle."""
        with self._lock:
            return [h for per_file in self._handles.values() for h in per_file.values()]

    def get_handles(self, path: str | os.PathLike[str]) -> list[PluginHandle]:
        """The handles loaded from one file (empty if none)."""
        with self._lock:
            return list(self._handles.get(Path(path).absolute(), {}).values())

    def is_loaded(self, path: str | os.PathLike[str]) -> bool:
        """Whether the file is loaded."""
        with self._lock:
            return Path(path).absolute() in self._libraries

    def __iter__(self) -> Iterator[PluginHandle]:
        return iter(self.handles)

    # ---- loading --------------------------------------------------------------

    def load_plugins(
        self,
        path: str | os.PathLike[str],
        trait: TraitLike,
        *,
        errors: list[PluginError] | None = None,
    ) -> list[PluginHandle]:
        """Load a plugin file, or every plugin file of a directory, for ``trait``.

        A file already loaded for ``trait`` is not loaded again: its existing
        handle is returned.

        :param path: a library file, or a directory (non-recursive; files with
            the platform's suffix, hidden files skipped).
        :param trait: the trait (:class:`PluginTrait`, name, or declaration).
        :param errors: for a directory, failures are appended here and loading
            goes on; without it they are raised together at the end as
            :class:`PluginLoadErrors` (the good files stay loaded either way).
        :returns: one handle per loaded file.
        :raises PluginError: for a single file that fails (typed: not a shared
            library, missing symbol, ABI mismatch, maker returned NULL, ...).
        """
        spec = resolve_trait(trait)
        target = Path(path).absolute()
        if not target.is_dir():
            return [self._load_file(target, spec)]
        handles: list[PluginHandle] = []
        failures: list[PluginError] = []
        for entry in sorted(target.iterdir()):
            if not is_plugin_file(entry):
                continue
            try:
                handles.append(self._load_file(entry, spec))
            except PluginError as e:
                failures.append(e)
        if failures:
            if errors is None:
                raise PluginLoadErrors(target, failures, list(handles))
            errors.extend(failures)
        return handles

    def _load_file(self, path: Path, spec: TraitSpec) -> PluginHandle:
        with self._lock:
            existing = self._handles.get(path, {}).get(spec.name)
            if existing is not None:
                return existing
            library = self._libraries.get(path)
            opened = library is None
            if library is None:
                library = Library(path, copy_on_load=self.copy_on_load)
            try:
                regset = register_trait(library, spec)
            except BaseException:
                if opened and library.handles == 0:
                    library.close()
                raise
            handle = PluginHandle(self, regset)
            self._libraries[path] = library
            self._handles.setdefault(path, {})[spec.name] = handle
            return handle

    # ---- unloading ------------------------------------------------------------

    def _unload_handle(self, handle: PluginHandle) -> int | None:
        with self._lock:
            library = handle.library
            counter = unload_trait(library, handle.registration_set)
            per_file = self._handles.get(handle.path, {})
            if per_file.get(handle.trait.name) is handle:
                del per_file[handle.trait.name]
            if library.handles == 0:
                self._close_library(handle.path, library)
            return counter

    def _close_library(self, path: Path, library: Library) -> None:
        self._handles.pop(path, None)
        if self._libraries.get(path) is library:
            del self._libraries[path]
        library.close()

    def unload_by_path(self, path: str | os.PathLike[str]) -> dict[str, int | None]:
        """Release every registration of the file, then unload the library.

        :returns: the final unmaker counter of each trait that was loaded
            (``None`` where the library does not export the counter).
        :raises KeyError: if the file is not loaded.
        """
        target = Path(path).absolute()
        with self._lock:
            if target not in self._libraries:
                raise KeyError(f"{target}: not loaded")
            counters: dict[str, int | None] = {}
            for handle in list(self._handles.get(target, {}).values()):
                counters[handle.trait.name] = self._unload_handle(handle)
            library = self._libraries.get(target)
            if library is not None:  # loaded but no live handle
                self._close_library(target, library)
            return counters

    def unload_all(self) -> dict[Path, dict[str, int | None]]:
        """Unload every file; the counters per file, as :meth:`unload_by_path`."""
        with self._lock:
            return {p: self.unload_by_path(p) for p in list(self._libraries)}

    def close(self) -> None:
        """Unload everything (alias of :meth:`unload_all` without the result)."""
        self.unload_all()

    def __enter__(self) -> PluginManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PluginManager {len(self._libraries)} libraries>"

