/* null_maker.c -- demonstrates a maker that returns NULL (its instance could
 * not be created).  The aggregate must release the registrations it already
 * made; the host must report the failing symbol.  -DNO_AGGREGATE leaves only
 * the makers (host-owned path). */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static char *fine_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Fine, %s!", name);
}

static void *failing_new(void) { return NULL; }

static void failing_free(void *instance) { (void)instance; }

PLUGIN_IMPL(Greeter, AFine, .greet = fine_greet)
PLUGIN_IMPL_WITH_STATE(Greeter, Failing, failing_new, failing_free, .greet = fine_greet)
#ifdef NO_AGGREGATE
PLUGIN_UNMAKER_COUNTER(Greeter)
#else
PLUGIN_AGGREGATES(Greeter)
#endif
