/* plugin_trait_greeter.h -- GENERATED from the Python declaration of trait Greeter v1
 * (plugin_interface._traits:Greeter); do not edit: regenerate with
 * `python -m plugin_annotations headers`.
 */
#ifndef PLUGIN_TRAIT_GREETER_H
#define PLUGIN_TRAIT_GREETER_H

#include <stddef.h>
#include <stdint.h>

#include "plugin_interface.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Says hello to someone. */
#define PLUGIN_TRAIT_VERSION_Greeter 1u
#define PLUGIN_TRAIT_FINGERPRINT_Greeter UINT64_C(0x276281f942385c9f)

typedef struct GreeterVTable {
    size_t size; /* sizeof(GreeterVTable) as built by the plugin */
    /* A greeting that contains ``name`` (``Hello, world!``). */
    char *(*greet)(void *self, const char *name);
} GreeterVTable;

/* One fingerprint per vtable method, in order: what lets a host accept a
 * plugin built against a later version that only appended methods. */
#define PLUGIN_TRAIT_METHOD_COUNT_Greeter 1u
#define PLUGIN_TRAIT_METHOD_FINGERPRINTS_Greeter \
    UINT64_C(0x276281f942385c9f)

/* The trait's declaration as plugin_trait_declaration_<T>_v1 embeds it (format:
 * plugin_interface/_declaration.py, and the README's "Self-describing plugins"). */
#define PLUGIN_TRAIT_DECLARATION_Greeter \
    "plugin-host-trait/1\n{\"methods\":[{\"name\":\"greet\",\"params\":[[\"name\",\"CStr\"]],\"returns\":\"OwnedStr\"}],\"name\":\"Greeter\",\"version\":1}"

/* The type of plugin_abi_descriptor_Greeter_v1 (see PluginAbiDescriptor). */
typedef struct GreeterAbiDescriptor {
    PluginAbiDescriptor header;
    uint64_t method_fingerprints[1];
} GreeterAbiDescriptor;

#ifdef __cplusplus
}

/* C++: GreeterVTable without its size, for PLUGIN_IMPL (see plugin_annotations.h). */
struct GreeterMethods {
    char *(*greet)(void *self, const char *name);
};

static inline constexpr GreeterVTable plugin_vtable_Greeter(GreeterMethods m) {
    return GreeterVTable{sizeof(GreeterVTable), m.greet};
}

/* C++: every method as X(ctx, name, result kind, C return type, (C parameters), (arguments)),
 * in vtable order; PLUGIN_CLASS (plugin_annotations.hpp) makes its thunks from it. */
#define PLUGIN_TRAIT_METHODS_Greeter(X, ctx) \
    X(ctx, greet, OWNEDSTR, char *, (void *self, const char *name), (name))
#endif

#endif /* PLUGIN_TRAIT_GREETER_H */
