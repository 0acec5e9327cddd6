/* undefined_symbol.c -- demonstrates a library the loader refuses: it calls
 * a function that no library defines. */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

extern const char *plugin_test_symbol_defined_nowhere(void);

static char *broken_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("%s, %s!", plugin_test_symbol_defined_nowhere(), name);
}

PLUGIN_IMPL(Greeter, Broken, .greet = broken_greet)
PLUGIN_AGGREGATES(Greeter)
