"""The embedded trait declaration: what a plugin says about its trait, readable without Python.

Beside its ABI descriptor, a library built with the macros exports
``plugin_trait_declaration_<T>_v1``: a NUL-terminated ``const char`` array
(no pointers, so no relocations: it can be read from the file without loading
it, like the descriptor).  Its text is one header line and one JSON object::

    plugin-host-trait/1
    {"methods":[{"name":"score","params":[["text","CStr"]],"returns":"F64"}],"name":"Scorer","version":1}

The JSON is :meth:`TraitSpec.to_json`, with sorted keys and no spaces: the
trait's name and version, and per method (in vtable order) its name, its
parameters as ``[name, type]`` and its return type, types spelled as the
markers are (``CStr``, ``I32``, ``OwnedStr``, ...).  A hand-written or non-C
plugin may emit the same bytes; a reader refuses any other header line
(a later format gets ``/2``) and anything over :data:`MAX_DECLARATION_BYTES`.
"""

from __future__ import annotations

import json

from ._traits import TraitSpec

__all__ = ["DECLARATION_FORMAT", "MAX_DECLARATION_BYTES", "decode_declaration", "encode_declaration"]

#: The header line of the current format.
DECLARATION_FORMAT = "plugin-host-trait/1"
#: A declaration longer than this (in bytes, with the NUL) is treated as corruption.
MAX_DECLARATION_BYTES = 64 * 1024


def encode_declaration(spec: TraitSpec) -> bytes:
    """The declaration's bytes (without the terminating NUL the C array adds)."""
    body = json.dumps(spec.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{DECLARATION_FORMAT}\n{body}".encode("ascii")


def decode_declaration(data: bytes) -> TraitSpec:
    """The trait a declaration describes (up to its first NUL, if any).

    :raises ValueError: not a declaration of this format, naming what is wrong.
    """
    text = data.split(b"\0", 1)[0]
    if len(text) >= MAX_DECLARATION_BYTES:
        raise ValueError(f"a declaration of {len(text)} bytes or more (the limit is {MAX_DECLARATION_BYTES})")
    header, _, body = text.partition(b"\n")
    if header != DECLARATION_FORMAT.encode():
        raise ValueError(f"unknown declaration format {header[:40]!r}, expected {DECLARATION_FORMAT!r}")
    try:
        data_json = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"the declaration is not JSON: {e}") from e
    return TraitSpec.from_json(data_json)
