"""Reading a plugin's unmaker counter (``plugin_unmaker_counter_<Trait>_v1``)."""

from __future__ import annotations

import ctypes
from typing import Protocol, runtime_checkable

from ._abi import unmaker_counter_symbol
from ._errors import SymbolNotFoundError
from ._traits import PluginTrait, TraitLike, resolve_trait

__all__ = ["SupportsUnmakerCounter", "get_unmaker_counter", "get_unmaker_counter_for"]


@runtime_checkable
class SupportsUnmakerCounter(Protocol):
    """A loaded library of the host: it reads its own counters safely."""

    def get_unmaker_counter(self, trait: str) -> int:
        """The counter of ``trait``; raises :class:`SymbolNotFoundError`."""
        ...


_COUNTER_FN = ctypes.CFUNCTYPE(ctypes.c_size_t)


def get_unmaker_counter(lib: ctypes.CDLL | SupportsUnmakerCounter, trait: TraitLike) -> int:
    """How many unmaker calls have run inside ``lib`` for ``trait``.

    :param lib: a :class:`ctypes.CDLL` or a loaded library/handle of ``plugin_host``.
    :param trait: a trait name, :class:`PluginTrait` member or spec.
    :raises SymbolNotFoundError: if ``plugin_unmaker_counter_<Trait>_v1`` is not exported.
    :raises PluginUnloadedError: if a host handle's library was unloaded.
    """
    name = trait if isinstance(trait, str) else resolve_trait(trait).name
    if isinstance(lib, SupportsUnmakerCounter):
        return lib.get_unmaker_counter(name)
    symbol = unmaker_counter_symbol(name)
    try:
        address = ctypes.cast(lib[symbol], ctypes.c_void_p).value
    except AttributeError as e:
        raise SymbolNotFoundError(getattr(lib, "_name", None), symbol) from e
    return int(_COUNTER_FN(address)())


def get_unmaker_counter_for(lib: ctypes.CDLL | SupportsUnmakerCounter, trait: PluginTrait) -> int:
    """:func:`get_unmaker_counter` for a :class:`PluginTrait` member."""
    return get_unmaker_counter(lib, trait)
