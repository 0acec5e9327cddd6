"""The trait of the image_filter example: most of the type vocabulary, as an image filter uses it.

The committed header ``image_filter/plugin_trait_imagefilter.h`` is generated from this
declaration (``python -m plugin_annotations headers plugin_host.examples.image_traits -o
native_plugins/image_filter``; a test fails when it is stale).  The host needs no import of this
module to use the plugin: the library embeds the declaration (``plugin-host demo`` relies on that).
"""

from __future__ import annotations

from typing import Protocol

from plugin_interface import (
    F32,
    U8,
    U32,
    U64,
    Array,
    Bool,
    Callback,
    CStr,
    Drop,
    Handle,
    MutArray,
    OwnedStr,
    Ref,
    Status,
    declare_trait,
    plugin_struct,
)

__all__ = ["Image", "ImageFilter", "Levels", "Session"]


@plugin_struct
class Image:
    """An 8-bit grey image's geometry: ``height`` rows of ``stride`` bytes, ``width`` of them pixels."""

    width: U32
    height: U32
    stride: U32


@plugin_struct
class Levels:
    """A linear level adjustment: ``out = in * gain + offset``, clamped to 0..255."""

    gain: F32
    offset: F32


class Session:
    """A filter session in the plugin: it keeps statistics over the images it is fed."""


@declare_trait(version=1)
class ImageFilter(Protocol):
    """Filters 8-bit grey images in place."""

    def describe(self) -> OwnedStr:
        """What the filter does."""
        ...

    def invert(self, image: Ref[Image], pixels: MutArray[U8]) -> Status:
        """Invert every pixel; fails when ``pixels`` is shorter than the image."""
        ...

    def adjust(self, image: Ref[Image], pixels: MutArray[U8], levels: Levels) -> Status:
        """Apply ``levels`` to every pixel."""
        ...

    def rows(self, image: Ref[Image], pixels: Array[U8], visit: Callback[[U32, U64], Bool]) -> U32:
        """Call ``visit(row, sum of its pixels)`` per row until it returns false; the rows visited."""
        ...

    def open(self, label: CStr) -> Handle[Session]:
        """A new session."""
        ...

    def feed(self, session: Handle[Session], image: Ref[Image], pixels: Array[U8]) -> U64:
        """Count the image into the session's statistics; the pixels seen so far."""
        ...

    def report(self, session: Handle[Session]) -> OwnedStr:
        """The session's statistics."""
        ...

    def end(self, session: Drop[Session]) -> None:
        """Destroy a session."""
        ...
