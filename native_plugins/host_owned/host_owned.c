/* host_owned/host_owned.c -- demonstrates the host-owned path: PLUGIN_IMPLs
 * and the unmaker counter, but no PLUGIN_AGGREGATES. */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *german_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Hallo, %s!", name);
}

static char *italian_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Ciao, %s!", name);
}

PLUGIN_IMPL(Greeter, German, .greet = german_greet)
PLUGIN_IMPL(Greeter, Italian, .greet = italian_greet)
PLUGIN_UNMAKER_COUNTER(Greeter)
