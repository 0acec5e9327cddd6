/* greeters/aggregates.c -- the one PLUGIN_AGGREGATES line of the library:
 * plugin_register_all_Greeter_v1 and friends, with no list of impls here. */
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

PLUGIN_AGGREGATES(Greeter)
