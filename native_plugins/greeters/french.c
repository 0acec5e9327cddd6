/* greeters/french.c -- two implementations in one translation unit. */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *french_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Bonjour, %s!", name);
}

static char *spanish_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("\xc2\xa1Hola, %s!", name);
}

PLUGIN_IMPL(Greeter, French, .greet = french_greet)
PLUGIN_IMPL(Greeter, Spanish, .greet = spanish_greet)
