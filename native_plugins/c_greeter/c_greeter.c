/* c_greeter/c_greeter.c -- the three greeters of cpp_greeter and rust_greeter, in C:
 * English and French are stateless; Counting keeps a per-library call counter,
 * static state that must start at 1 again after an unload and a reload.
 * -DNO_AGGREGATE leaves the aggregate out (the host-owned path). */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

static int calls;

static char *english_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Hello, %s!", name);
}

static char *french_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("Bonjour, %s!", name);
}

static char *counting_greet(void *self, const char *name) {
    (void)self;
    return plugin_string_format("call %d, %s", ++calls, name);
}

PLUGIN_IMPL(Greeter, English, .greet = english_greet)
PLUGIN_IMPL(Greeter, French, .greet = french_greet)
PLUGIN_IMPL(Greeter, Counting, .greet = counting_greet)
#ifdef NO_AGGREGATE
PLUGIN_UNMAKER_COUNTER(Greeter)
#else
PLUGIN_AGGREGATES(Greeter)
#endif
