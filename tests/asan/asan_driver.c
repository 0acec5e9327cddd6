/* asan_driver.c -- exercises plugins from C, under AddressSanitizer (issue 6).
 *
 * Usage: asan_driver LIBRARY SYMBOL...   (SYMBOL: the library's plugin_register_* names)
 *
 * dlopens LIBRARY, and for each aggregate plugin_register_all_<T>_v1 (or each
 * maker plugin_register_<T>_<Ty>_v1 of a trait without one) makes the
 * registrations, calls every Greeter/Transformer method, releases them the way
 * the host does, and checks that the unmaker counter rose by what was made.
 * Exit 0: clean (or refused by the loader, printed as such); 1: a check failed.
 * Memory errors are ASan's to report (it aborts with a non-zero status). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_interface.h"
#include "plugin_trait_greeter.h"
#include "plugin_trait_transformer.h"

typedef PluginRegistrationArray *(*register_all_fn)(void);
typedef void (*unregister_all_fn)(PluginRegistrationArray *);
typedef PluginRegistration *(*maker_fn)(void);
typedef void (*unmaker_fn)(PluginRegistration *);
typedef size_t (*counter_fn)(void);

static int failures;

static void *find(void *lib, const char *fmt, const char *a, const char *b) {
    char name[512];
    snprintf(name, sizeof name, fmt, a, b);
    return dlsym(lib, name);
}

static void exercise(const PluginRegistration *r) {
    if (strcmp(r->trait_name, "Greeter") == 0) {
        const GreeterVTable *vt = r->vtable;
        char *s = vt->greet(r->instance, "asan");
        if (s == NULL || strstr(s, "asan") == NULL) {
            printf("  FAIL %s: greet returned %s\n", r->type_name, s ? s : "NULL");
            failures++;
        }
        r->free_memory(s);
    } else if (strcmp(r->trait_name, "Transformer") == 0) {
        const TransformerVTable *vt = r->vtable;
        uint8_t buf[] = "Hello, AddressSanitizer!";
        (void)vt->transform(r->instance, buf, sizeof buf - 1);
    }
}

static size_t counter(void *lib, const char *trait) {
    counter_fn c;
    *(void **)&c = find(lib, "plugin_unmaker_counter_%s_v1%s", trait, "");
    return c ? c() : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s LIBRARY SYMBOL...\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        printf("%s: refused by the loader (expected for broken plugins): %s\n", argv[1], dlerror());
        return 0;
    }
    char aggregated[64][64];
    int n_aggregated = 0;
    for (int i = 2; i < argc; i++) {
        char trait[64];
        if (sscanf(argv[i], "plugin_register_all_%63[A-Za-z0-9]_v1", trait) != 1) continue;
        register_all_fn reg_all;
        unregister_all_fn unreg_all;
        *(void **)&reg_all = dlsym(lib, argv[i]);
        *(void **)&unreg_all = find(lib, "plugin_unregister_all_%s_v1%s", trait, "");
        if (reg_all == NULL) continue;
        snprintf(aggregated[n_aggregated++ % 64], 64, "%s", trait);
        size_t before = counter(lib, trait);
        PluginRegistrationArray *array = reg_all();
        if (array == NULL) {
            printf("%s: %s returned NULL (released what it made)\n", argv[1], argv[i]);
            continue;
        }
        size_t len = array->len;
        for (size_t k = 0; k < len; k++) exercise(array->registrations[k]);
        if (unreg_all) {
            unreg_all(array);
        } else {
            for (size_t k = 0; k < len; k++) array->factories[k].unmaker(array->registrations[k]);
        }
        size_t after = counter(lib, trait);
        printf("%s: %s made %zu, unmaker counter %zu -> %zu\n", argv[1], trait, len, before, after);
        if (after - before != len) failures++;
    }
    for (int i = 2; i < argc; i++) {
        char trait[64], type[128];
        if (strncmp(argv[i], "plugin_register_all_", 20) == 0) continue;
        if (sscanf(argv[i], "plugin_register_%63[A-Za-z0-9]_%127[A-Za-z0-9_]", trait, type) != 2) continue;
        int skip = 0;
        for (int k = 0; k < n_aggregated && k < 64; k++) skip |= strcmp(aggregated[k], trait) == 0;
        if (skip) continue;
        size_t tl = strlen(type);
        if (tl > 3 && strcmp(type + tl - 3, "_v1") == 0) type[tl - 3] = '\0';
        maker_fn maker;
        unmaker_fn unmaker;
        *(void **)&maker = dlsym(lib, argv[i]);
        *(void **)&unmaker = find(lib, "plugin_unregister_%s_%s_v1", trait, type);
        if (maker == NULL || unmaker == NULL) continue;
        size_t before = counter(lib, trait);
        PluginRegistration *r = maker();
        if (r == NULL) {
            printf("%s: %s returned NULL\n", argv[1], argv[i]);
            continue;
        }
        exercise(r);
        unmaker(r);
        size_t after = counter(lib, trait);
        printf("%s: %s/%s made 1, unmaker counter %zu -> %zu\n", argv[1], trait, type, before, after);
        if (after - before != 1) failures++;
    }
    dlclose(lib);
    return failures ? 1 : 0;
}
