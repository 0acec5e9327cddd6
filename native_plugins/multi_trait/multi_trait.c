/* multi_trait/multi_trait.c -- demonstrates one library with two traits, a
 * stateful implementation (PLUGIN_IMPL_WITH_STATE) and a buffer trait that
 * works on the caller's memory in place (no copies). */
#include <ctype.h>
#include <stdatomic.h>

#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"
#include "plugin_trait_transformer.h"

/* ---- Greeter: a stateful greeter that counts its calls ---------------- */

typedef struct CountingState {
    _Atomic unsigned long calls;
} CountingState;

static void *counting_new(void) { return calloc(1, sizeof(CountingState)); }

static void counting_free(void *instance) { free(instance); }

static char *counting_greet(void *self, const char *name) {
    CountingState *state = (CountingState *)self;
    unsigned long n = atomic_fetch_add(&state->calls, 1) + 1;
    return plugin_string_format("Hello #%lu, %s!", n, name);
}

PLUGIN_IMPL_WITH_STATE(Greeter, Counting, counting_new, counting_free, .greet = counting_greet)
PLUGIN_AGGREGATES(Greeter)

/* ---- Transformer: in-place buffer rewriting --------------------------- */

static size_t upper_transform(void *self, uint8_t *data, size_t len) {
    (void)self;
    size_t changed = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] >= 'a' && data[i] <= 'z') {
            data[i] = (uint8_t)(data[i] - 'a' + 'A');
            changed++;
        }
    }
    return changed;
}

static size_t rot13_transform(void *self, uint8_t *data, size_t len) {
    (void)self;
    size_t changed = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (c >= 'a' && c <= 'z') {
            data[i] = (uint8_t)('a' + (c - 'a' + 13) % 26);
            changed++;
        } else if (c >= 'A' && c <= 'Z') {
            data[i] = (uint8_t)('A' + (c - 'A' + 13) % 26);
            changed++;
        }
    }
    return changed;
}

PLUGIN_IMPL(Transformer, Upper, .transform = upper_transform)
PLUGIN_IMPL(Transformer, Rot13, .transform = rot13_transform)
PLUGIN_AGGREGATES(Transformer)
