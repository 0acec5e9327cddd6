/* handwritten.c -- a Greeter plugin using only plugin_interface.h and the
 * generated trait header: what a third party can write from the README.
 *
 * Behaviour switches (each makes one malformation the host must refuse):
 *   BAD_ABI_VERSION, BAD_TRAIT_VERSION, BAD_TRAIT_NAME, NULL_METHOD,
 *   SHORT_VTABLE, NULL_FACTORIES, NULL_REGISTRATIONS, NULL_ENTRY, HUGE_LEN,
 *   NO_AGGREGATE, NO_UNMAKER, NO_UNREGISTER_ALL
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_interface.h"
#include "plugin_trait_greeter.h"

static _Atomic size_t unmakers;

#ifdef NULL_METHOD
#  define MAYBE_UNUSED __attribute__((unused))
#else
#  define MAYBE_UNUSED
#endif

MAYBE_UNUSED static char *polite_greet(void *self, const char *name) {
    (void)self;
    size_t n = strlen(name) + sizeof "Good day, !";
    char *out = malloc(n);
    if (out) {
        snprintf(out, n, "Good day, %s!", name);
    }
    return out;
}

static void release(void *p) { free(p); }

static const GreeterVTable vtable = {
#ifdef SHORT_VTABLE
    .size = sizeof(size_t),
#else
    .size = sizeof(GreeterVTable),
#endif
#ifdef NULL_METHOD
    .greet = NULL,
#else
    .greet = polite_greet,
#endif
};

PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_Polite_v1(void);
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_Polite_v1(void) {
    PluginRegistration *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    r->struct_size = sizeof *r;
#ifdef BAD_ABI_VERSION
    r->abi_version = 2;
#else
    r->abi_version = PLUGIN_ABI_VERSION;
#endif
#ifdef BAD_TRAIT_NAME
    r->trait_name = "Transformer";
#else
    r->trait_name = "Greeter";
#endif
#ifdef BAD_TRAIT_VERSION
    r->trait_version = PLUGIN_TRAIT_VERSION_Greeter + 1;
#else
    r->trait_version = PLUGIN_TRAIT_VERSION_Greeter;
#endif
    r->type_name = "Polite";
    r->vtable = &vtable;
    r->vtable_size = (uint32_t)vtable.size;
    r->instance = NULL;
    r->free_memory = release;
    return r;
}

#ifndef NO_UNMAKER
PLUGIN_EXPORT void plugin_unregister_Greeter_Polite_v1(PluginRegistration *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_Polite_v1(PluginRegistration *r) {
    if (r) {
        free(r);
        atomic_fetch_add(&unmakers, 1);
    }
}
#endif

PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void);
PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void) { return atomic_load(&unmakers); }

#if !defined(NO_AGGREGATE) && !defined(NO_UNMAKER)
static const PluginRegistrationFactory factories[1] = {
    {plugin_register_Greeter_Polite_v1, plugin_unregister_Greeter_Polite_v1},
};

PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_Greeter_v1(void);
PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_Greeter_v1(void) {
    PluginRegistrationArray *a = calloc(1, sizeof *a);
    if (!a) {
        return NULL;
    }
    a->len = 1;
    a->registrations = calloc(1, sizeof *a->registrations);
    a->factories = factories;
#ifdef NULL_FACTORIES
    a->factories = NULL;
#endif
#ifdef HUGE_LEN
    a->len = (size_t)1 << 40;
#endif
#ifdef NULL_REGISTRATIONS
    free(a->registrations);
    a->registrations = NULL;
#elif !defined(NULL_ENTRY)
    a->registrations[0] = plugin_register_Greeter_Polite_v1();
#endif
    return a;
}

#ifndef NO_UNREGISTER_ALL
PLUGIN_EXPORT void plugin_unregister_all_Greeter_v1(PluginRegistrationArray *a);
PLUGIN_EXPORT void plugin_unregister_all_Greeter_v1(PluginRegistrationArray *a) {
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->len; i++) {
        plugin_unregister_Greeter_Polite_v1(a->registrations[i]);
    }
    free(a->registrations);
    free(a);
}
#endif
#endif
