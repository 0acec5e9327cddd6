"""What in a library file keeps it mapped after its last ``dlclose`` (glibc), as the readers report it.

Apart from :mod:`._elf` so that :class:`~._table.ExportTable` can carry the
blockers its reader found in the same pass, without an import cycle.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAX_UNIQUE_NAMES", "THREAD_ATEXIT_SYMBOLS", "UnloadBlockers"]

#: Imports through which a library registers ``thread_local`` destructors (C++ and Rust std).
THREAD_ATEXIT_SYMBOLS = frozenset({"__cxa_thread_atexit_impl", "__cxa_thread_atexit"})
#: At most this many ``STB_GNU_UNIQUE`` names are kept (the count is always exact).
MAX_UNIQUE_NAMES = 8


class UnloadBlockers(NamedTuple):
    """What in an ELF file makes glibc keep it mapped after its last ``dlclose``.

    :ivar unique_symbols: the first :data:`MAX_UNIQUE_NAMES` defined
        ``STB_GNU_UNIQUE`` symbols of ``.dynsym`` (g++ gives them to static
        locals of inline functions and template static members, libstdc++'s
        included); glibc never unloads a library that has one.
    :ivar unique_count: how many there are in all.
    :ivar nodelete: ``DF_1_NODELETE`` is set in ``DT_FLAGS_1`` (linked with ``-z nodelete``).
    :ivar thread_local_destructors: it imports ``__cxa_thread_atexit_impl``
        (or libstdc++'s ``__cxa_thread_atexit``): it may register a
        ``thread_local`` destructor, and glibc does not unload it while a
        thread that ran one is alive (closed then, it stays mapped for good:
        nothing closes it again once the thread has exited).
    :ivar weak_thread_atexit: it imports it only weakly, as Rust's std does
        in every ``cdylib`` (used only if the code touches a ``thread_local!``
        with ``Drop``): a reason only once the library did stay mapped.
    """

    unique_symbols: tuple[str, ...] = ()
    unique_count: int = 0
    nodelete: bool = False
    thread_local_destructors: bool = False
    weak_thread_atexit: bool = False

    @property
    def certain(self) -> list[str]:
        """The reasons that always block unloading, as sentences (empty when none)."""
        out = []
        if self.unique_count:
            more = f" (and {self.unique_count - 1} more)" if self.unique_count > 1 else ""
            out.append(
                f"STB_GNU_UNIQUE symbol {self.unique_symbols[0]}{more}: glibc never unloads a library that "
                "exports one (link with a version script that exports only plugin_*: the builder's "
                "restrict_exports, the default for C++)"
            )
        if self.nodelete:
            out.append("DF_1_NODELETE is set (linked with -z nodelete): glibc never unloads it")
        return out

    def possible(self, *, weak: bool = False) -> list[str]:
        """The reasons that block unloading only at times, as sentences.

        :param weak: count a weak import of ``__cxa_thread_atexit_impl`` too.
        """
        if not (self.thread_local_destructors or (weak and self.weak_thread_atexit)):
            return []
        return [
            "thread-local destructors may be pending (it imports __cxa_thread_atexit_impl): glibc does not unload "
            "a library while a thread that used one of its thread_local objects with a destructor is alive"
        ]
