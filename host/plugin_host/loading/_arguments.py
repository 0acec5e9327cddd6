"""Why a value does not convert to a C type: the question the error path of a call asks.

A call converts its arguments in one step (cffi's, or the call engine's),
and a refusal from that step names neither the argument nor the function:
cffi says ``integer 300 does not fit 'uint8_t'``.  Once a call has been
refused, :func:`refusal` asks again one value at a time, with the same
conversion, so the typed error can name the parameter.  Nothing here runs
on a call that succeeds.
"""

from __future__ import annotations

import functools
import reprlib
from typing import Any

import cffi

__all__ = ["CONVERSION_ERRORS", "refusal", "short_repr"]

#: What converting an argument raises, before any C code runs (a buffer's exporter may raise
#: ``ValueError``, as numpy does for a scattered array).
CONVERSION_ERRORS = (TypeError, OverflowError, ValueError, BufferError)

_ffi = cffi.FFI()
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def short_repr(value: object) -> str:
    """``repr(value)``, shortened for a message (a long string or list is elided in the middle)."""
    return _repr.repr(value)


def _ignore(*args: object) -> None:
    """The body of the one-argument functions :func:`refusal` calls: it never runs for a refusal."""


@functools.lru_cache(maxsize=64)
def _taking(spelling: str) -> Any:
    """A C function (a cffi callback) taking one argument of C type ``spelling`` and doing nothing.

    Calling it converts the argument exactly as a call of any function with a
    parameter of that type does, pointer types included (``char *`` takes
    ``bytes``, which a ``char *`` initialiser would not).
    """
    return _ffi.callback(f"void({spelling})", _ignore)


def refusal(spelling: str, value: object) -> Exception | None:
    """What converting ``value`` to a call argument of C type ``spelling`` raises, or ``None`` if it converts.

    :param spelling: a C type cffi knows (``"int8_t"``, ``"unsigned char"``, ``"char *"``).
    """
    try:
        _taking(spelling)(value)
    except CONVERSION_ERRORS as e:
        # Without its traceback: kept in a local of the frame that asked, it would make a cycle
        # through that frame and its caller's, and a cycle holding the call's buffer views is one
        # the garbage collector can take apart in the wrong order (a memoryview cleared while cffi
        # still holds its export: a crash at the next release).
        return e.with_traceback(None)
    return None
