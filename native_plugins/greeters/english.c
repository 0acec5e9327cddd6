/* greeters/english.c -- demonstrates a stateless PLUGIN_IMPL in its own
 * translation unit; the aggregate in aggregates.c finds it at link time. */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *english_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Hello, %s!", name);
}

PLUGIN_IMPL(Greeter, English, .greet = english_greet)
