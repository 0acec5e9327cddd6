"""PluginManager and PluginHandle: load, call, unload."""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import NamedTuple

from plugin_interface import (
    AlreadyLoadedError,
    PluginError,
    PluginLoadErrors,
    PluginUnloadedError,
    TraitLike,
    TraitSpec,
    UnknownTraitError,
    register_all_symbol,
)

from .admission import DEFAULT_PROBE_TIMEOUT_S, Admission, ProbeMode
from .formats import MAX_LIBRARY_BYTES, plugin_file_paths
from .loading import DirectoryVerdicts, Library, LibraryStillMappedWarning, LoadPolicy, StillMapped
from .registry import (
    MakerCache,
    RegistrationSet,
    TraitProxy,
    embedded_trait,
    implemented_traits,
    make_proxy,
    open_and_register,
    register_trait,
    register_traits,
    release_sets,
    requested_trait,
    trait_for,
    unload_trait,
)

__all__ = [
    "PluginHandle",
    "PluginManager",
    "ProbeMode",
    "Reloaded",
    "UnloadResult",
    "UnloadResults",
    "default_manager",
    "load_plugins",
    "unload_by_path",
]


class Reloaded(NamedTuple):
    """What :meth:`PluginManager.reload` did.

    :ivar handles: the new version's handles, one per trait.
    :ivar counters: the old version's final unmaker counter per trait it
        released (empty for a first load, or when the old version was kept).
    :ivar replaced: whether a previous version of the file was loaded.
    """

    handles: list[PluginHandle]
    counters: dict[str, int | None]
    replaced: bool


class UnloadResult(dict[str, "int | None"]):
    """What :meth:`PluginManager.unload_by_path` returns: the final unmaker counter per trait (a plain
    ``dict`` to compare and print), and whether the library really left the process.

    :ivar still_mapped: the libraries the loader kept mapped after their last close, with the reasons
        (each was also warned about as :class:`~plugin_host.loading.LibraryStillMappedWarning`).
    """

    __slots__ = ("still_mapped",)  # one of these per file unloaded: no instance dictionary

    def __init__(self, counters: dict[str, int | None], libraries: Iterable[Library | None] = ()) -> None:
        dict.__init__(self, counters)  # not super(): a look-up less
        self.still_mapped: list[StillMapped] = [
            kept for lib in libraries if lib is not None and not lib.is_open and (kept := lib.still_mapped)
        ]

    @property
    def unmapped(self) -> bool:
        """Whether every library closed by the unload really left the process."""
        return not self.still_mapped

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why libraries stayed mapped (empty when :attr:`unmapped`)."""
        return tuple(reason for kept in self.still_mapped for reason in kept.reasons)


#: An :class:`UnloadResult` not made yet: the file's one trait, its counter, why the library stayed (or ``None``).
_Unloaded = tuple[str, "int | None", "StillMapped | None"]


class UnloadResults(Mapping[Path, UnloadResult]):
    """What :meth:`PluginManager.unload_all` returns: per file (a :class:`~pathlib.Path`), its
    :class:`UnloadResult`, in unload order.

    A read-only mapping that compares equal to the ``dict`` with the same
    items.  It is kept by the file names as strings and makes a ``Path`` only
    for what is read, so unloading many files hashes no ``Path``; a key may be
    given as a ``Path`` or a string.
    """

    __slots__ = ("_results",)

    def __init__(self, results: dict[str, UnloadResult | _Unloaded]) -> None:
        self._results = results

    def __getitem__(self, path: str | os.PathLike[str]) -> UnloadResult:
        key = _key(path)
        try:
            result = self._results[key]
        except KeyError:
            raise KeyError(path) from None
        if isinstance(result, UnloadResult):
            return result
        # Made when first read (an unload of many files is often not looked at); racing readers make equal ones.
        trait, counter, kept = result
        made = self._results[key] = UnloadResult({trait: counter})
        if kept is not None:
            made.still_mapped.append(kept)
        return made

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str | os.PathLike) and _key(path) in self._results

    def __iter__(self) -> Iterator[Path]:
        return (Path(key) for key in self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __repr__(self) -> str:
        return f"UnloadResults({dict(self.items())!r})"


class PluginHandle:
    """The registrations of one trait from one loaded plugin file.

    :ivar path: the plugin file (as given, absolute).
    :ivar trait: the trait's declaration.

    **Safety**: proxies from :meth:`proxies` call into the library; after
    :meth:`unload` (or the manager's unload of the file) they raise
    :class:`PluginUnloadedError` instead of touching freed memory.
    """

    _proxies: list[TraitProxy] | None = None  # made on first use

    def __init__(self, manager: PluginManager, regset: RegistrationSet) -> None:
        self._manager = manager
        self._set = regset
        self.trait: TraitSpec = regset.trait

    @property
    def path(self) -> Path:
        """The plugin file (as given, absolute)."""
        return self._set.library.path

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
            raise PluginUnloadedError(self.library.key, register_all_symbol(self.trait))
        if self._proxies is None:
            self._proxies = [make_proxy(self._set, r) for r in self._set.registrations]
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

    @property
    def unload_warning(self) -> LibraryStillMappedWarning | None:
        """After the library was closed: why the loader kept it mapped (``None`` while open, or when it is gone)."""
        kept = self.library.still_mapped
        return None if kept is None or self.library.is_open else kept.warning

    def unload(self) -> int | None:
        """Release the registrations; closes the library if this was its last handle.

        A library the loader keeps mapped after that close is reported: a
        :class:`~plugin_host.loading.LibraryStillMappedWarning`, and :attr:`unload_warning`.

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
    :param policy: what files are refused before being read as libraries
        (default :class:`LoadPolicy`: a file another user could change, itself
        or through its real directory or a directory above it, is refused;
        ``LoadPolicy(allow_insecure_permissions=True)`` opts out).
    :param probe: which files are loaded in a short-lived child process first
        (:class:`ProbeMode`): ``ALWAYS``, ``NEVER``, or ``UNTRUSTED`` (the
        default): files the policy let through although another user could
        write them.  ``True``/``False``/``None`` are accepted for the same.
    :param probe_timeout_s: the probe's time limit, in seconds.
    :param probe_cache_dir: the probe's blocklist and clean-result cache
        (default ``$XDG_CACHE_HOME/plugin-host``).
    :param max_library_bytes: the largest file loaded from a private copy
        (copy-on-load, reload, probed, hash-allowlisted or untrusted files), in
        bytes; default :data:`plugin_host.formats.MAX_LIBRARY_BYTES` (1 GiB).  A
        larger file is refused with :class:`~plugin_interface.NotASharedLibraryError`
        before it is read.

    **Untrusted plugins**: every file goes through the policy, a pre-check of
    its headers (no ``dlopen`` of a truncated file, a file for another
    machine, or a file without plugin symbols) and, if enabled, the probe,
    before it is opened; see :mod:`plugin_host.admission`.

    **Thread-safety**: proxies may be called from any thread.  Loading and
    unloading are serialised by a lock; they are meant to run on the thread
    that owns the manager.

    **Versions**: per path the manager holds the *current* version (what
    :meth:`get_handles` and :meth:`load_plugins` return) and, after a
    :meth:`reload` with ``unload_old=False``, *retired* versions that stay
    loaded until their handles are unloaded, the path is unloaded, or the
    manager is closed.
    """

    def __init__(
        self,
        *,
        copy_on_load: bool = False,
        policy: LoadPolicy | None = None,
        probe: ProbeMode | str | bool | None = ProbeMode.UNTRUSTED,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        probe_cache_dir: str | os.PathLike[str] | None = None,
        max_library_bytes: int = MAX_LIBRARY_BYTES,
    ) -> None:
        self.copy_on_load = copy_on_load
        self._admission = Admission(policy, probe, probe_timeout_s, probe_cache_dir, max_library_bytes)
        # What host-owned files' export tables said, per file identity: not read again unchanged.
        self._makers = MakerCache(self._admission.identities)
        # Keyed by the absolute path as a string (_key): a Path costs microseconds to make and hash.
        self._libraries: dict[str, Library] = {}
        self._handles: dict[str, dict[str, PluginHandle]] = {}
        self._retired: dict[Library, dict[str, PluginHandle]] = {}  # older versions still loaded
        self._lock = threading.RLock()

    # ---- queries ------------------------------------------------------------

    @property
    def handles(self) -> list[PluginHandle]:
        """Every loaded handle, retired versions included."""
        with self._lock:
            per_files = [*self._handles.values(), *self._retired.values()]
            return [h for per_file in per_files for h in per_file.values()]

    def get_handles(self, path: str | os.PathLike[str]) -> list[PluginHandle]:
        """The handles of the current version of one file (empty if none)."""
        with self._lock:
            return list(self._handles.get(_key(path), {}).values())

    def is_loaded(self, path: str | os.PathLike[str]) -> bool:
        """Whether the file is loaded."""
        with self._lock:
            return _key(path) in self._libraries

    def __iter__(self) -> Iterator[PluginHandle]:
        return iter(self.handles)

    # ---- loading --------------------------------------------------------------

    def load_plugins(
        self,
        path: str | os.PathLike[str],
        trait: TraitLike | None = None,
        *,
        errors: list[PluginError] | None = None,
    ) -> list[PluginHandle]:
        """Load a plugin file, or every plugin file of a directory, for ``trait`` (or for every trait).

        A file already loaded for ``trait`` is not loaded again: its existing
        handle is returned.

        :param path: a library file, or a directory (non-recursive; files with
            the platform's suffix, hidden files skipped).
        :param trait: the trait (:class:`PluginTrait`, name, or declaration);
            ``None`` loads every trait each file implements that has a
            declaration: the host's, else the one the library embeds
            (``plugin_trait_declaration_<T>_v1``).  A name (``"Name"``,
            ``"Name@2"``) this host declares no such version of is each
            library's own declaration of it.
        :param errors: for a directory, failures are appended here and loading
            goes on; without it they are raised together at the end as
            :class:`PluginLoadErrors` (the good files stay loaded either way).
        :returns: one handle per loaded file (per file and trait, with ``trait=None``).
        :raises PluginError: for a single file that fails (typed: not a shared
            library, missing symbol, ABI mismatch, maker returned NULL, ...).
        :raises UnknownTraitError: a name neither this host nor the file declares.
        """
        spec = None if trait is None else requested_trait(trait)
        target = _key(path)
        if not os.path.isdir(target):
            return self._load_file(target, spec)
        handles: list[PluginHandle] = []
        failures: list[PluginError] = []
        files = plugin_file_paths(target)
        dirs = DirectoryVerdicts()  # each directory judged once for all the files
        admitted = self._admission.admitted_in_place(files, dirs, copy_on_load=self.copy_on_load)
        with self._lock:  # once for the directory (each file's own take is then a re-entry)
            kept: dict[str, PluginHandle | PluginError] = {}
            if isinstance(spec, TraitSpec):  # (a name is each library's own declaration: file by file)
                # Admitted in place and not loaded: opened and registered all at once (one call into C).
                loaded = self._libraries
                fresh = [f for f, ok in zip(files, admitted, strict=True) if ok and f not in loaded]
                if fresh:
                    kept = self._keep(fresh, open_and_register(fresh, spec, self._makers))
            for file, ok in zip(files, admitted, strict=True):
                done = kept.get(file)
                if done is None:
                    try:
                        handles += self._load_file(file, spec, dirs, admitted=ok)
                    except PluginError as e:
                        failures.append(e)
                elif isinstance(done, PluginError):
                    failures.append(done)
                else:
                    handles.append(done)
        if failures:
            if errors is None:
                raise PluginLoadErrors(target, failures, list(handles))
            errors.extend(failures)
        return handles

    def _keep(
        self, keys: list[str], made: list[RegistrationSet | PluginError]
    ) -> dict[str, PluginHandle | PluginError]:
        """Keep what :func:`~plugin_host.registry.open_and_register` made of the files ``keys``:
        per file its handle, or the error it failed with."""
        kept: dict[str, PluginHandle | PluginError] = {}
        libraries, handles = self._libraries, self._handles
        for key, regset in zip(keys, made, strict=True):
            if isinstance(regset, PluginError):
                kept[key] = regset
                continue
            handle = kept[key] = PluginHandle(self, regset)
            libraries[key] = regset.library
            handles[key] = {regset.trait.name: handle}
        return kept

    def _load_file(
        self,
        key: str,
        asked: TraitSpec | str | None,
        dirs: DirectoryVerdicts | None = None,
        *,
        admitted: bool = False,
    ) -> list[PluginHandle]:
        """Load the file ``key`` (:func:`_key`) for ``asked`` (for every trait it implements when ``None``; a
        name is the library's own declaration of it, :func:`~plugin_host.registry.embedded_trait`)."""
        with self._lock:
            loaded = self._handles.get(key, {})
            library = self._libraries.get(key)
            spec = embedded_trait(library, asked) if isinstance(asked, str) and library is not None else asked
            if isinstance(spec, TraitSpec) and spec.name in loaded:
                existing = loaded[spec.name]
                if existing.trait != spec:  # another version: its registrations are not this one's
                    symbol = register_all_symbol(spec)
                    raise AlreadyLoadedError(key, symbol, spec.name, existing.trait.version, spec.version)
                return [existing]
            opened = library is None
            if library is None:
                library = self._admission.open_library(
                    Path(key),
                    copy_on_load=self.copy_on_load,
                    dirs=dirs,
                    admitted=admitted,
                    traits=[spec] if isinstance(spec, TraitSpec) else [],
                )
            try:
                if isinstance(spec, str):  # known once the library is open (nothing of it is loaded yet)
                    spec = embedded_trait(library, spec)
                if spec is not None:  # register_traits' one-trait case, without its loops (a hot path)
                    sets = {spec.name: register_trait(library, spec)}
                else:
                    wanted = _traits_of(library, skip=set(loaded))
                    sets = register_traits(library, [], wanted) if wanted or not loaded else {}
            except BaseException:
                if opened and library.live_sets == 0:
                    library.close()
                raise
            self._libraries[key] = library
            per_file = self._handles.setdefault(key, {})
            for name, regset in sets.items():
                per_file[name] = PluginHandle(self, regset)
            if spec is not None:
                return [per_file[spec.name]]
            return list(per_file.values())

    # ---- hot reload -------------------------------------------------------------

    def reload(
        self,
        path: str | os.PathLike[str],
        traits: TraitLike | Sequence[TraitLike] | None = None,
        *,
        unload_old: bool = True,
    ) -> Reloaded:
        """Load the file's current content as a new version, then swap it in.

        The new version is always loaded from a private copy with a unique
        name (whatever :attr:`copy_on_load` says), so a file changed at the
        same path really loads the new code.  It replaces the current version
        only once every trait registered; if anything fails, nothing changes
        and the current version keeps serving.

        Then, with ``unload_old``, the old version's registrations are
        released -- each release first waits for calls already inside the
        plugin, and its proxies raise :class:`PluginUnloadedError` from then
        on -- and the old library is closed.

        :param traits: the traits to load; ``None`` means every trait the file
            implements that has a declaration, the host's or the library's own
            (at least one).  The traits the current
            version is loaded for are always included.
        :param unload_old: release and close the old version; with ``False``
            it stays loaded as a retired version (its handles and proxies keep
            working until unloaded).
        :returns: the new handles, the old version's counters, whether a
            version was replaced.
        :raises PluginError: the new version failed to load (typed: not a
            shared library, truncated, missing symbol, ABI mismatch, maker
            returned NULL, ...); the current version is untouched.
        :raises ReleaseInsideCallError: called from inside a call through the
            old version on this thread (a signal handler): the new version
            serves, the old one stays loaded, retired, until unloaded.
        """
        target = _key(path)
        discover = traits is None
        if traits is None:
            asked: list[TraitSpec | str] = []
        elif isinstance(traits, str) or not isinstance(traits, Sequence):
            asked = [requested_trait(traits)]
        else:
            asked = [requested_trait(t) for t in traits]
        wanted = [t for t in asked if isinstance(t, TraitSpec)]
        named = [t for t in asked if isinstance(t, str)]  # each library's own declaration, once it is open
        optional: list[TraitSpec] = []
        with self._lock:
            old_library = self._libraries.get(target)
            old_handles = dict(self._handles.get(target, {}))
            required = {spec.name: spec for spec in wanted}
            for handle in old_handles.values():
                required.setdefault(handle.trait.name, handle.trait)
            library = self._admission.open_library(Path(target), copy_on_load=True, traits=list(required.values()))
            try:
                for name in named:
                    spec = embedded_trait(library, name)
                    required.setdefault(spec.name, spec)
                if discover:
                    optional = _traits_of(library, skip=set(required))
            except BaseException:
                library.close()
                raise
            sets = self._register_version(
                library, list(required.values()), [s for s in optional if s.name not in required]
            )
            new_handles = {name: PluginHandle(self, regset) for name, regset in sets.items()}
            self._libraries[target] = library
            self._handles[target] = new_handles
            counters: dict[str, int | None] = {}
            if old_library is not None:
                if unload_old:
                    counters = self._release_version(target, old_library, old_handles)
                else:
                    self._retired[old_library] = old_handles
            return Reloaded(list(new_handles.values()), counters, old_library is not None)

    def _register_version(
        self, library: Library, required: list[TraitSpec], optional: list[TraitSpec]
    ) -> dict[str, RegistrationSet]:
        """:func:`~plugin_host.registry.register_traits`; on failure the new library is closed."""
        try:
            return register_traits(library, required, optional)
        except BaseException:
            library.request_close()
            raise

    def _release_version(self, path: str, library: Library, handles: dict[str, PluginHandle]) -> dict[str, int | None]:
        """Unload a version that is no longer current; its counters per trait."""
        try:
            return release_sets(library, {name: h.registration_set for name, h in handles.items()})
        finally:
            if library.live_sets == 0:
                self._close_library(path, library)
            else:  # sets made outside the manager, or a release refused: keep it until unloaded
                self._retired[library] = {n: h for n, h in handles.items() if not h.registration_set.is_released}

    # ---- unloading ------------------------------------------------------------

    def _unload_handle(self, handle: PluginHandle, *, strict: bool = True, depth: int = 0) -> int | None:
        """Release a handle's set and forget the handle; close its library after the last one.

        :param strict: raise :class:`AlreadyReleasedError` for a set someone
            released already (``handle.unload()`` twice); else (the manager's
            own sweeps) skip the release, read the counter, and go on.
        :param depth: frames between this and the caller the warnings name, beyond one
            (:meth:`PluginHandle.unload`'s).
        """
        with self._lock:
            regset = handle._set
            library = regset.library
            if strict or not regset.is_released:
                # close: the last set's release and the library's close in one step (the C extension's).
                counter = unload_trait(library, regset, close=True)
            else:  # released out of band (unload_trait on the set): finish the bookkeeping
                counter = library.get_unmaker_counter_or_none(regset.trait.name)
            key = library.key
            name = handle.trait.name
            for per_file in (self._handles.get(key), self._retired.get(library)):
                if per_file is not None and per_file.get(name) is handle:
                    del per_file[name]
            if library.live_sets == 0:
                self._close_library(key, library, depth)
            return counter

    def _close_library(self, path: str, library: Library, depth: int = 0) -> None:
        """Forget ``library`` (the version of ``path``) and close it; warn if the loader keeps it.

        :param depth: frames between the caller and the public method whose caller the warning names, beyond one.
        """
        # Only the version being closed: a newer one may hold the same path.
        if self._libraries.get(path) is library:
            del self._libraries[path]
            self._handles.pop(path, None)
        self._retired.pop(library, None)
        # A set someone made directly with register_trait() keeps it open until released.
        if library.request_close() and library.still_mapped is not None:
            warnings.warn(library.still_mapped.warning, stacklevel=4 + depth)

    def unload_by_path(self, path: str | os.PathLike[str]) -> UnloadResult:
        """Release every registration of the file, then unload the library.

        The host then checks that the library really left the process; one
        that the loader keeps (``STB_GNU_UNIQUE`` symbols, ``DF_1_NODELETE``,
        pending thread-local destructors, another open handle) is warned about
        (:class:`~plugin_host.loading.LibraryStillMappedWarning`) and listed in
        the result's ``still_mapped``.

        :returns: the final unmaker counter of each trait that was loaded
            (``None`` where the library does not export the counter), as an
            :class:`UnloadResult`.
        :raises KeyError: if the file is not loaded.
        :raises ReleaseInsideCallError: called from inside a call through the
            file's proxies on this thread (a signal handler, a C callback);
            what was not released stays loaded.
        """
        with self._lock:
            return self._unload_key(_key(path))

    def _unload_key(self, key: str, depth: int = 0) -> UnloadResult:
        """:meth:`unload_by_path` of the file ``key`` (:func:`_key`); called by the public method
        whose caller the warnings name (``depth``: frames in between)."""
        retired = [lib for lib in self._retired if lib.key == key] if self._retired else []
        library = self._libraries.get(key)
        if library is None and not retired:
            raise KeyError(f"{key}: not loaded")
        libraries = [*retired, library]
        counters: dict[str, int | None] = {}
        for old in retired:  # older versions first; the current version's counters win
            for handle in list(self._retired.get(old, {}).values()):
                counters[handle.trait.name] = self._unload_handle(handle, strict=False, depth=1 + depth)
            if old in self._retired:
                self._close_library(key, old, depth)
        per_file = self._handles.get(key)
        if per_file:
            for handle in list(per_file.values()):
                counters[handle.trait.name] = self._unload_handle(handle, strict=False, depth=1 + depth)
        library = self._libraries.get(key)
        if library is not None:  # loaded but no live handle
            self._close_library(key, library, depth)
        return UnloadResult(counters, libraries)

    def unload_all(self) -> UnloadResults:
        """Unload every file; the counters per file, as :meth:`unload_by_path`.

        Every file is unloaded even when one fails: the failures are raised
        together at the end (:class:`PluginLoadErrors`, a group), after the rest.

        :returns: per file, its :class:`UnloadResult` (a mapping keyed by :class:`~pathlib.Path`).
        """
        with self._lock:
            keys = dict.fromkeys([*self._libraries, *(lib.key for lib in self._retired)])
            return self._unload_keys(keys, "unload_all", None)

    def unload_paths(
        self, paths: Iterable[str | os.PathLike[str]], *, errors: list[PluginError] | None = None
    ) -> UnloadResults:
        """:meth:`unload_by_path` of each of ``paths`` that is loaded, in order, as :meth:`unload_all`
        does it (files with nothing to wait for are released and closed together, in one call into C).

        A path that is not loaded is skipped.  Every file is unloaded even when one fails.

        :param errors: where the failures go; without it they are raised together at the end
            (:class:`PluginLoadErrors`), after the rest.
        :returns: per file unloaded, its :class:`UnloadResult` (a mapping keyed by :class:`~pathlib.Path`).
        """
        with self._lock:
            retired = {lib.key for lib in self._retired}
            keys = dict.fromkeys(k for k in map(_key, paths) if k in self._libraries or k in retired)
            return self._unload_keys(keys, "unload_paths", errors)

    def _unload_keys(self, keys: Iterable[str], asked: str, errors: list[PluginError] | None) -> UnloadResults:
        """Unload the files ``keys`` (:func:`_key`, each loaded), for :meth:`unload_all` and :meth:`unload_paths`."""
        results: dict[str, UnloadResult | _Unloaded] = {}
        failures: list[PluginError] = [] if errors is None else errors
        failed = len(failures)
        # Files with nothing but one plain set (the common case) go in runs, each run released and
        # closed in one call into C; the others one by one, in between, so the order is kept.
        run: list[tuple[str, PluginHandle]] = []
        handles = self._handles
        retired = bool(self._retired)
        for key in keys:
            per_file = handles.get(key)
            if not retired and per_file is not None and len(per_file) == 1:
                [handle] = per_file.values()
                if handle._set.closes_at_once:
                    run.append((key, handle))
                    continue
            if run:
                self._unload_run(run, results)
                run = []
            try:
                results[key] = self._unload_key(key, depth=1)
            except PluginError as e:
                failures.append(e)
        if run:
            self._unload_run(run, results)
        if errors is None and len(failures) > failed:
            raise PluginLoadErrors(asked, failures, [], "failed to unload")
        return UnloadResults(results)

    def _unload_run(self, run: list[tuple[str, PluginHandle]], results: dict[str, UnloadResult | _Unloaded]) -> None:
        """:meth:`unload_all` of files whose one set :attr:`~plugin_host.registry.RegistrationSet.closes_at_once`."""
        libraries, handles = self._libraries, self._handles
        for key, _ in run:  # first, as _close_library forgets a library before it closes it
            del libraries[key], handles[key]
        sets = [handle._set for _, handle in run]
        RegistrationSet.release_and_close_all(sets)
        for (key, _), regset in zip(run, sets, strict=True):
            kept = regset.library.still_mapped
            results[key] = (regset.trait.name, regset.final_counter, kept)  # an UnloadResult when read
            if kept is not None:
                warnings.warn(kept.warning, stacklevel=4)  # the caller of unload_all or unload_paths

    def close(self) -> None:
        """Unload everything (alias of :meth:`unload_all` without the result)."""
        self.unload_all()

    def __enter__(self) -> PluginManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PluginManager {len(self._libraries)} libraries>"


def _traits_of(library: Library, skip: set[str]) -> list[TraitSpec]:
    """The declarations of every trait ``library`` implements (but ``skip``), the host's or its own.

    A trait with neither is left out; so is one whose two declarations disagree
    when another trait can load (then :func:`register_traits` reports nothing
    implemented if none can).

    :raises AbiMismatchError: the only trait's declarations disagree.
    """
    specs: list[TraitSpec] = []
    problems: list[PluginError] = []
    for name in implemented_traits(library):
        if name in skip:
            continue
        try:
            specs.append(trait_for(library, name))
        except UnknownTraitError:
            continue
        except PluginError as e:
            problems.append(e)
    if problems and not specs:
        raise problems[0]
    return specs


def _key(path: str | os.PathLike[str]) -> str:
    """``str(Path(path).absolute())``, the manager's key of a file, without making a Path when
    ``path`` already has that form (an absolute, normalised POSIX path, as a directory load gives)."""
    text = os.fspath(path)
    if isinstance(path, PurePath):  # printed normalised already
        return text if path.is_absolute() else str(Path(path).absolute())
    if (
        sys.platform != "win32"
        and text.startswith("/")
        and "//" not in text
        and "/./" not in text
        and (not text.endswith(("/", "/.")) or text == "/")
    ):
        return text
    return str(Path(text).absolute())


_default_lock = threading.Lock()
_default: PluginManager | None = None


def default_manager() -> PluginManager:
    """The process-wide manager behind :func:`load_plugins` and :func:`unload_by_path`
    (created on first use, with the default policy)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginManager()
        return _default


def load_plugins(
    path: str | os.PathLike[str], trait: TraitLike | None = None, *, errors: list[PluginError] | None = None
) -> list[PluginHandle]:
    """:meth:`PluginManager.load_plugins` on :func:`default_manager`."""
    return default_manager().load_plugins(path, trait, errors=errors)


def unload_by_path(path: str | os.PathLike[str]) -> UnloadResult:
    """:meth:`PluginManager.unload_by_path` on :func:`default_manager`."""
    return default_manager().unload_by_path(path)
