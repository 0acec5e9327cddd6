/* plugin_trait_transformer.h -- GENERATED from the Python declaration of trait Transformer v1
 * (plugin_interface._traits:Transformer); do not edit: regenerate with
 * `python -m plugin_annotations headers`.
 */
#ifndef PLUGIN_TRAIT_TRANSFORMER_H
#define PLUGIN_TRAIT_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

#include "plugin_interface.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Transforms a caller-supplied buffer in place. */
#define PLUGIN_TRAIT_VERSION_Transformer 1u
#define PLUGIN_TRAIT_FINGERPRINT_Transformer UINT64_C(0x100343b50125688b)

typedef struct TransformerVTable {
    size_t size; /* sizeof(TransformerVTable) as built by the plugin */
    /* Rewrite ``data`` in place; returns how many bytes changed. */
    size_t (*transform)(void *self, uint8_t *data, size_t data_len);
} TransformerVTable;

/* One fingerprint per vtable method, in order: what lets a host accept a
 * plugin built against a later version that only appended methods. */
#define PLUGIN_TRAIT_METHOD_COUNT_Transformer 1u
#define PLUGIN_TRAIT_METHOD_FINGERPRINTS_Transformer \
    UINT64_C(0x100343b50125688b)

/* The trait's declaration as plugin_trait_declaration_<T>_v1 embeds it (format:
 * plugin_interface/_declaration.py, and the README's "Self-describing plugins"). */
#define PLUGIN_TRAIT_DECLARATION_Transformer \
    "plugin-host-trait/1\n{\"methods\":[{\"name\":\"transform\",\"params\":[[\"data\",\"MutBuffer\"]],\"returns\":\"Size\"}],\"name\":\"Transformer\",\"version\":1}"

/* The type of plugin_abi_descriptor_Transformer_v1 (see PluginAbiDescriptor). */
typedef struct TransformerAbiDescriptor {
    PluginAbiDescriptor header;
    uint64_t method_fingerprints[1];
} TransformerAbiDescriptor;

#ifdef __cplusplus
}

/* C++: TransformerVTable without its size, for PLUGIN_IMPL (see plugin_annotations.h). */
struct TransformerMethods {
    size_t (*transform)(void *self, uint8_t *data, size_t data_len);
};

static inline constexpr TransformerVTable plugin_vtable_Transformer(TransformerMethods m) {
    return TransformerVTable{sizeof(TransformerVTable), m.transform};
}

/* C++: every method as X(ctx, name, result kind, C return type, (C parameters), (arguments)),
 * in vtable order; PLUGIN_CLASS (plugin_annotations.hpp) makes its thunks from it. */
#define PLUGIN_TRAIT_METHODS_Transformer(X, ctx) \
    X(ctx, transform, SCALAR, size_t, (void *self, uint8_t *data, size_t data_len), (data, data_len))
#endif

#endif /* PLUGIN_TRAIT_TRANSFORMER_H */
