"""The registration pipeline: everything the host does with an opened library.

Two halves, and every load path runs exactly these: :func:`register_traits`
(descriptor check, aggregate or makers, every registration read: names,
vtables) and :func:`release_sets` (unregister per the ownership rule, then the
unmaker counter).  The manager runs them in-process; the probe child
(:mod:`plugin_host.admission`) runs them first, through :func:`exercise`, so
whatever the host will do with a library has already been done once where a
crash cannot hurt.  :func:`register_trait` and :func:`unload_trait` are the
one-trait forms.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from plugin_interface import (
    PluginError,
    PluginTrait,
    TraitLike,
    TraitNotImplementedError,
    TraitSpec,
    maker_symbol,
    register_all_symbol,
    resolve_trait,
    trait_declaration_symbol,
    unmaker_counter_symbol,
)
from plugin_interface._abi import UNMAKER_FN

from ..loading import Library, _accel
from ._declarations import check_declarations, implemented_traits, read_declaration
from ._registrations import MAX_REGISTRATIONS, RegistrationSet, _plan, find_maker_types

__all__ = [
    "Exercised",
    "MakerCache",
    "exercise",
    "open_and_register",
    "prepare",
    "register_greeter",
    "register_trait",
    "register_traits",
    "register_transformer",
    "release_sets",
    "unload_greeter",
    "unload_trait",
    "unload_transformer",
]


def register_trait(library: Library, trait: TraitLike) -> RegistrationSet:
    """Make every registration of ``trait`` the library offers.

    Uses ``plugin_register_all_<T>_v1`` when exported (plugin-owned array);
    otherwise finds ``plugin_register_<T>_<Ty>_v1`` makers in the symbol table
    and builds a host-owned array.

    :raises TraitNotImplementedError: the library has neither.
    """
    spec = resolve_trait(trait)
    aggregate = library.find_symbol(register_all_symbol(spec))
    if aggregate is not None:
        return RegistrationSet.from_aggregate(library, spec, aggregate)
    types = find_maker_types(library, spec)
    if not types:
        hint = f"and no {maker_symbol(spec, '<Type>')} makers either: the library does not implement {spec.name}"
        raise TraitNotImplementedError(library.path, spec.name, register_all_symbol(spec), hint)
    return RegistrationSet.from_makers(library, spec, types)


class MakerCache:
    """What the ``.dynsym`` reads of host-owned files found, per file identity and trait.

    A host-owned file's makers are read from the file (its export table); a file
    loaded again unchanged (the same device, inode, size, mtime, ctime, mode and
    owner as when they were read) is not read again.

    :param identities: path -> the identity each file had when it last passed the
        pre-check (the admission's, current for the files a directory load lets through).
    """

    def __init__(self, identities: Mapping[str, bytes]) -> None:
        self._identities = identities
        #: (path, trait name) -> (the identity read, the maker types found)
        self._found: dict[tuple[str, str], tuple[bytes, bytes]] = {}

    def known(self, path: str, trait: TraitSpec) -> bytes:
        """The makers of ``trait`` read from ``path`` while it had its current identity, else ``b""``."""
        found = self._found.get((path, trait.name))
        if found is not None and found[0] == self._identities.get(path):
            return found[1]
        return b""

    def entries(self, paths: Sequence[str], trait: TraitSpec) -> bytes:
        """:meth:`known` for each path, as ``ph_open_register_paths`` takes them (each ended by a NUL)."""
        if not self._found:  # nothing read yet (or a directory of plugin-owned files): nothing to look up
            return bytes(len(paths))
        return b"".join([self.known(path, trait) + b"\0" for path in paths])

    def remember(self, path: str, trait: TraitSpec, hosted: _accel.Hosted) -> None:
        """Keep what was read from ``path`` for ``trait`` (nothing when it was known already)."""
        if hosted.identity != _NO_IDENTITY:
            self._found[path, trait.name] = (hosted.identity, hosted.types)


_NO_IDENTITY = bytes(_accel.IDENTITY_BYTES)


def open_and_register(
    paths: Sequence[str], trait: TraitSpec, makers: MakerCache | None = None
) -> list[RegistrationSet | PluginError]:
    """Open each file in place and make every registration of ``trait`` it offers.

    :class:`Library` then :func:`register_trait` per file, for the files the
    admission let through in place (a directory load's
    :meth:`~plugin_host.admission.Admission.admitted_in_place`).  With the C
    extension the common cases -- a plugin-owned array whose ABI descriptor is
    byte for byte the host's, or a host-owned one (makers read from ``.dynsym``)
    with that descriptor, and every check passes -- are done for all the
    files in one call (:func:`~plugin_host.loading._accel.open_register_paths`);
    any other file goes on in Python from the step C reached, which raises the
    same typed error.  A file that fails is closed again.

    :param paths: the files, each absolute and normalised (what :attr:`Library.key` will be).
    :param makers: what earlier reads of host-owned files found (kept up to date here).
    :returns: per file, its registrations or the typed error it failed with.
    :raises BaseException: anything but a :class:`PluginError` (every file is closed first).
    """
    if not _accel.enabled():
        return [_registered(path, None, trait) for path in paths]
    plan = _plan(trait)
    host = plan.identical.found
    known = makers.entries(paths, trait) if makers is not None else bytes(len(paths))
    opened = _accel.open_register_paths(
        list(paths),
        plan.symbols,
        plan.expected,
        MAX_REGISTRATIONS,
        plan.name,
        host.trait_version,
        host.vtable_size,
        len(plan.method_names),
        known,
    )
    made: list[RegistrationSet | PluginError] = []
    passed, hosted = _accel.PASS, _accel.MAKERS_PASS
    adopt = Library.adopt
    from_opened = RegistrationSet._from_opened
    handed = 0  # the files whose results are owned by now (kept in made, or _registered's)
    try:
        for path, result in zip(paths, opened, strict=True):
            verdict = result.verdict
            if verdict == passed:  # the common case, without a call
                made.append(from_opened(adopt(path, result.handle), trait, result))
                handed += 1
            elif verdict == hosted:
                made.append(RegistrationSet._from_opened_makers(adopt(path, result.handle), trait, result))
                handed += 1
                if makers is not None and result.hosted is not None:
                    makers.remember(path, trait, result.hosted)
            else:
                handed += 1  # _registered's from here: raising, it has released and closed what it took
                made.append(_registered(path, result, trait))
    except BaseException:
        # Interrupted: nothing opened may stay unowned, nothing is half-made.  Every file is released and closed.
        for result in opened[handed:]:
            _abandon(result)
        for regset in made:
            if isinstance(regset, RegistrationSet) and not regset.is_released:
                regset.release(close=True)
        raise
    return made


def _registered(path: str, opened: _accel.Opened | None, trait: TraitSpec) -> RegistrationSet | PluginError:
    """One file of :func:`open_and_register` in Python, from where C left it (``opened``; ``None``: nothing done)."""
    try:
        if opened is None or opened.handle == 0:  # not opened: the Python way says why (or opens it)
            library = Library(path)
        else:
            library = Library.adopt(path, opened.handle)
    except PluginError as e:
        return e
    try:
        if opened is not None and opened.verdict == _accel.MAKERS_PARTIAL:  # makers ran: checked again here
            return RegistrationSet._from_partial(library, trait, opened)
        if opened is None or opened.handle == 0 or opened.aggregate == 0:  # the makers, or not implemented
            return register_trait(library, trait)
        if opened.verdict == _accel.DESCRIPTOR:  # nothing called: the descriptor is checked in Python
            return RegistrationSet.from_aggregate(library, trait, opened.aggregate)
        # The aggregate ran and a check failed (or C had no room): the Python checks name it.
        return RegistrationSet._from_array(library, trait, opened.array, _plan(trait).identical)
    except PluginError as e:
        if library.live_sets == 0:
            library.close()
        return e
    except BaseException:
        if library.live_sets == 0:
            library.close()
        raise


def _abandon(opened: _accel.Opened) -> None:
    """Release (when every check passed) and close what :func:`open_register_paths` opened."""
    if opened.handle == 0:
        return
    with contextlib.suppress(OSError):  # dlclose failed: nothing more to do
        if opened.hosted is not None:  # host-owned: what from_makers would have kept, each unmade once
            kept: set[int] = set()
            for reg, unmaker in zip(opened.hosted.made, opened.hosted.unmakers, strict=False):
                if reg and reg not in kept:
                    kept.add(reg)
                    UNMAKER_FN(unmaker)(reg)
            _accel.close_library(opened.handle)
        elif opened.verdict == _accel.PASS and opened.release:
            _accel.release_close(opened.release, opened.array, 0, opened.handle)
        else:  # an array that failed a check is not released (see RegistrationSet.from_aggregate)
            _accel.close_library(opened.handle)


def unload_trait(library: Library, array: RegistrationSet, *, close: bool = False) -> int | None:
    """Release ``array`` per its ownership rule; the trait's final unmaker counter.

    :param close: then close the library if ``array`` was its last live set
        (:meth:`RegistrationSet.release`).
    :returns: ``plugin_unmaker_counter_<T>_v1()`` after the release, or
        ``None`` when the library does not export it.
    :raises AlreadyReleasedError: if ``array`` was released already.
    """
    if array.library is not library:
        raise ValueError(f"{array!r} was not made from {library!r}")
    array.release(close=close)
    return array.final_counter  # read before a deferred close could unmap the library


def register_greeter(library: Library) -> RegistrationSet:
    """:func:`register_trait` for :attr:`PluginTrait.Greeter`."""
    return register_trait(library, PluginTrait.Greeter)


def unload_greeter(library: Library, array: RegistrationSet) -> int | None:
    """:func:`unload_trait` for a Greeter array: release it, return the counter."""
    return unload_trait(library, array)


def register_transformer(library: Library) -> RegistrationSet:
    """:func:`register_trait` for :attr:`PluginTrait.Transformer`."""
    return register_trait(library, PluginTrait.Transformer)


def unload_transformer(library: Library, array: RegistrationSet) -> int | None:
    """:func:`unload_trait` for a Transformer array: release it, return the counter."""
    return unload_trait(library, array)


def register_traits(
    library: Library, required: Iterable[TraitSpec], optional: Iterable[TraitSpec] = ()
) -> dict[str, RegistrationSet]:
    """Register every ``required`` trait and whichever ``optional`` ones the library implements.

    On failure every set made is released first (nothing is left half-made),
    and the library is left open for the caller to close.

    :returns: trait name -> its registrations.
    :raises TraitNotImplementedError: a required trait is not implemented, or
        no trait at all when only optional ones were asked for.
    :raises PluginError: a trait is implemented but broken (typed, as :func:`register_trait`).
    """
    sets: dict[str, RegistrationSet] = {}
    try:
        for spec in required:
            sets[spec.name] = register_trait(library, spec)
        tried = []
        for spec in optional:
            if spec.name in sets:
                continue
            tried.append(spec.name)
            # Not implemented is fine here; implemented but broken is not.
            with contextlib.suppress(TraitNotImplementedError):
                sets[spec.name] = register_trait(library, spec)
        if not sets:
            names = ", ".join(tried) or "none declared"
            raise TraitNotImplementedError(
                library.path, names, register_all_symbol("<Trait>"), f"implements no known trait: {names}"
            )
    except BaseException:
        release_sets(library, sets)
        raise
    return sets


def release_sets(library: Library, sets: Mapping[str, RegistrationSet]) -> dict[str, int | None]:
    """Release each set not yet released (:func:`unload_trait`); the counters per trait.

    A set already released elsewhere is skipped, and every other set is
    still released when one release raises (the first error is raised at the end).
    """
    counters: dict[str, int | None] = {}
    first: BaseException | None = None
    for name, regset in sets.items():
        if regset.is_released:
            continue
        try:
            counters[name] = unload_trait(library, regset)
        except BaseException as e:  # finish the rest first: nothing may stay made
            first = first or e
    if first is not None:
        raise first
    return counters


def prepare(traits: Iterable[TraitSpec]) -> None:
    """Compute now what the pipeline derives from ``traits`` alone: no library is touched.

    For a process that forks a child per :func:`exercise` (the probe server):
    what it computes once before forking, every child inherits instead of
    computing again (this host's descriptor of each trait, the C path's plan).
    """
    for spec in traits:
        _plan(spec)


class Exercised:
    """What :func:`exercise` did: per trait, the registrations made and the final counter.

    :ivar made: trait name -> number of registrations made (and released).
    :ivar counters: trait name -> the unmaker counter after the release (``None`` if not exported).
    :ivar problems: failures the host reports safely in-process (typed errors, as ``"Type: message"``).
    """

    def __init__(self) -> None:
        self.made: dict[str, int] = {}
        self.counters: dict[str, int | None] = {}
        self.problems: list[str] = []


def exercise(
    library: Library, traits: Iterable[TraitSpec], step: Callable[[str], None], *, discover: bool = True
) -> Exercised:
    """Run the whole pipeline once per trait, as the host will: register, then release.

    The probe child's job.  ``step(name)`` is called before each stage that
    runs plugin code or reads plugin memory, so a crash can be placed.

    :param discover: also run every other trait the library implements and
        embeds a declaration of (what ``load_plugins(path)`` with no trait loads).
    :returns: what was made; a typed failure is recorded, not raised (the
        host would raise it in-process just as safely).
    """
    done = Exercised()
    todo = list(traits)
    if discover:
        # What load_plugins(path) with no trait does (trait_for per implemented trait): read every
        # embedded declaration, the host's traits' too, and compare it with the host's declaration.
        known = {spec.name: spec for spec in todo}
        step("symbol table")
        try:
            names = implemented_traits(library)
        except PluginError as e:  # the host reports the same safely in-process
            done.problems.append(f"{type(e).__name__}: {e}")
            names = []
        for name in names:
            step(trait_declaration_symbol(name))
            try:
                embedded = read_declaration(library, name)
                host = known.get(name)
                if host is not None and embedded is not None:
                    check_declarations(library, host, embedded)
            except PluginError as e:
                done.problems.append(f"{type(e).__name__}: {e}")
                continue
            if embedded is not None and name not in known:
                todo.append(embedded)
    for spec in todo:
        step(register_all_symbol(spec))
        try:
            sets = register_traits(library, [spec])
        except TraitNotImplementedError:
            continue
        except PluginError as e:
            done.problems.append(f"{type(e).__name__}: {e}")
            continue
        done.made[spec.name] = len(sets[spec.name].registrations)
        step(unmaker_counter_symbol(spec))
        try:
            done.counters.update(release_sets(library, sets))
        except PluginError as e:
            done.problems.append(f"{type(e).__name__}: {e}")
    return done
