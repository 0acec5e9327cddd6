"""Greeter plugins built against other versions of the Greeter header.

Each variant is a :class:`TraitSpec` named ``Greeter`` (not registered, so the
built-in declaration stays the host's); its header comes from the real
generator and is placed next to the plugin source, where it shadows the
built-in ``plugin_trait_greeter.h``.
"""

from __future__ import annotations

from pathlib import Path

from conftest import CompilePlugin
from plugin_annotations import generate_trait_header
from plugin_interface import I32, CStr, MethodSpec, OwnedStr, ParamSpec, PluginTrait, TraitSpec
from plugin_interface._types import ctype_for_annotation


def _ct(marker: object):  # type: ignore[no-untyped-def]
    ctype = ctype_for_annotation(marker)
    assert ctype is not None
    return ctype


GREETER = PluginTrait.Greeter.spec
SHOUT = MethodSpec("shout", (ParamSpec("name", _ct(CStr)),), _ct(OwnedStr), "A louder greeting.")
GREET_TIMES = MethodSpec(
    "greet", (ParamSpec("name", _ct(CStr)), ParamSpec("times", _ct(I32))), _ct(OwnedStr), "Greets several times."
)
#: Version 2 appends shout: compatible both ways.
GREETER_V2 = TraitSpec("Greeter", 2, (*GREETER.methods, SHOUT), GREETER.doc)
#: Same version, greet gained a parameter: the "changed header" that must be refused.
GREETER_CHANGED = TraitSpec("Greeter", 1, (GREET_TIMES,), GREETER.doc)
#: Version 2 that changes greet and appends shout: breaking despite the bump.
GREETER_V2_CHANGED = TraitSpec("Greeter", 2, (GREET_TIMES, SHOUT), GREETER.doc)
#: Version 1 with an extra method: the header changed without a version bump.
GREETER_APPENDED_SAME_VERSION = TraitSpec("Greeter", 1, (*GREETER.methods, SHOUT), GREETER.doc)
WHISPER = MethodSpec("whisper", (ParamSpec("name", _ct(CStr)),), _ct(OwnedStr), "A quieter greeting.")
#: Version 3 appends whisper to version 2: a third host version for the contract matrix.
GREETER_V3 = TraitSpec("Greeter", 3, (*GREETER_V2.methods, WHISPER), GREETER.doc)
#: Version 2 with version 1's methods: the trait version bumped, nothing appended.
GREETER_V2_SAME_METHODS = TraitSpec("Greeter", 2, GREETER.methods, GREETER.doc)

SOURCE = r"""
/* A Greeter built against whichever plugin_trait_greeter.h sits next to it.
 * MARKER: a file the maker creates (proves whether a maker ran).
 * WITH_TIMES: greet takes (name, times); WITH_SHOUT: the vtable has shout (WITH_WHISPER: and whisper).
 * WITH_FRENCH: a second implementation; NO_AGGREGATE: host-owned array. */
#include <stdio.h>

#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static void *marked_new(void) {
#ifdef MARKER
    FILE *f = fopen(MARKER, "w");
    if (f) {
        fclose(f);
    }
#endif
    return plugin_stateless_new();
}

#ifdef WITH_TIMES
static char *hello(void *self, const char *name, int32_t times) {
    (void)self;
    return plugin_string_format("Hello x%d, %s!", (int)times, name);
}
#else
static char *hello(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Hello, %s!", name);
}
#endif

#ifdef WITH_SHOUT
static char *shout(void *self, const char *name) {
    (void)self;
    return plugin_string_format("HELLO, %s!", name);
}
#  define SHOUT_SLOT , .shout = shout
#else
#  define SHOUT_SLOT
#endif

#ifdef WITH_WHISPER
static char *whisper(void *self, const char *name) {
    (void)self;
    return plugin_string_format("psst, %s", name);
}
#  define WHISPER_SLOT , .whisper = whisper
#else
#  define WHISPER_SLOT
#endif

PLUGIN_IMPL_WITH_STATE(Greeter, English, marked_new, plugin_stateless_free, .greet = hello SHOUT_SLOT WHISPER_SLOT)
#ifdef WITH_FRENCH
PLUGIN_IMPL(Greeter, French, .greet = hello SHOUT_SLOT WHISPER_SLOT)
#endif

#ifdef NO_AGGREGATE
PLUGIN_UNMAKER_COUNTER(Greeter)
#else
PLUGIN_AGGREGATES(Greeter)
#endif
"""


def build_greeter(
    compile_plugin: CompilePlugin, spec: TraitSpec | None = None, *defines: str, marker: Path | None = None
) -> Path:
    """Compile :data:`SOURCE` against ``spec``'s header (default: the built-in one)."""
    files = {"greeter.c": SOURCE}
    if spec is not None:
        files["plugin_trait_greeter.h"] = generate_trait_header(spec)
        if any(m.name == "shout" for m in spec.methods):
            defines += ("WITH_SHOUT",)
        if any(m.name == "whisper" for m in spec.methods):
            defines += ("WITH_WHISPER",)
        if spec.methods[0].params != GREETER.methods[0].params:
            defines += ("WITH_TIMES",)
    if marker is not None:
        defines += (f'MARKER="{marker}"',)
    return compile_plugin("greeter", files, defines=defines)
