/* plugin_trait_transformer.h -- GENERATED from the Python declaration of trait Transformer;
 * do not edit: regenerate with `python -m plugin_annotations headers`.
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

#ifdef __cplusplus
}
#endif

#endif /* PLUGIN_TRAIT_TRANSFORMER_H */
