/*
 * load.c: the directory load of one admitted file in one call.
 *
 * A directory load pre-checks all its files first (ph_precheck_paths); each
 * file that passes is then opened and registered.  In Python that is a dlopen,
 * four dlsym calls (aggregate, ABI descriptor, the array's release, the
 * unmaker counter) and ph_register_all: six crossings and their bookkeeping,
 * about as much work as the dlopen itself.  Here it is one crossing, and
 * ph_register_all does exactly what it does when Python calls it.
 *
 * Whatever does not pass is handed back to the Python path at the step it
 * reached (the library stays open; see PH_NO_AGGREGATE and ph_register_all's
 * verdicts), which raises the typed error or finishes the load its own way.
 */
#if !defined(_WIN32)
#define PH_HAVE_DLOPEN 1
#include <dlfcn.h>
#endif

#include <string.h>

#include "speedups.h"

#ifdef PH_HAVE_DLOPEN
/* The address of name in the library, 0 when it is not exported (as the Python
 * path reads a NULL from dlsym).  A failed look-up leaves no error behind for
 * the next dlerror() caller. */
static uintptr_t find_symbol(void *handle, const char *name) {
    void *address = dlsym(handle, name);
    if (address == NULL) {
        (void)dlerror();
        return 0;
    }
    return (uintptr_t)address;
}
#endif

/* One file: out has room for PH_OPEN_WORDS + PH_HEADER_WORDS words at least. */
static int open_register(const char *path, int mode, const char *symbols, const char *expected, size_t expected_len,
                         size_t max_len, const char *trait_name, uint32_t version, uint32_t vtable_size,
                         size_t usable, uintptr_t *out, size_t out_words, char *names, size_t names_len) {
    memset(out, 0, (PH_OPEN_WORDS + PH_HEADER_WORDS) * sizeof *out);
    out[0] = PH_NOT_OPENED;
#ifndef PH_HAVE_DLOPEN
    (void)path, (void)mode, (void)symbols, (void)expected, (void)expected_len, (void)max_len, (void)trait_name;
    (void)version, (void)vtable_size, (void)usable, (void)out_words, (void)names, (void)names_len;
    return PH_NOT_OPENED;
#else
    if (path[0] == '\0') {
        return PH_NOT_OPENED;
    }
    void *handle = dlopen(path, mode);
    if (handle == NULL) {
        (void)dlerror(); /* the Python path opens it again and reports the loader's words */
        return PH_NOT_OPENED;
    }
    out[1] = (uintptr_t)handle;
    const char *aggregate = symbols;
    const char *descriptor = aggregate + strlen(aggregate) + 1;
    const char *release = descriptor + strlen(descriptor) + 1;
    const char *counter = release + strlen(release) + 1;
    out[2] = find_symbol(handle, aggregate);
    if (out[2] == 0) {
        return out[0] = PH_NO_AGGREGATE;
    }
    out[3] = find_symbol(handle, release);
    out[4] = find_symbol(handle, counter);
    out[0] = (uintptr_t)ph_register_all(find_symbol(handle, descriptor), expected, expected_len, out[2], max_len,
                                        trait_name, version, vtable_size, usable, out + PH_OPEN_WORDS,
                                        out_words - PH_OPEN_WORDS, names, names_len);
    return (int)out[0];
#endif
}

size_t ph_open_register_paths(const char *paths, size_t n, int mode, const char *symbols, const char *expected,
                              size_t expected_len, size_t max_len, const char *trait_name, uint32_t version,
                              uint32_t vtable_size, size_t usable, uintptr_t *out, size_t out_words, char *names,
                              size_t names_len, size_t *starts) {
    const size_t least = PH_OPEN_WORDS + PH_HEADER_WORDS;
    size_t used = 0, names_used = 0, i = 0;
    /* A file is started only with room for its header: the rest are left to the caller. */
    for (; i < n && out_words - used >= least; i++) {
        uintptr_t *file = out + used;
        starts[i] = used;
        int verdict = open_register(paths, mode, symbols, expected, expected_len, max_len, trait_name, version,
                                    vtable_size, usable, file, out_words - used, names + names_used,
                                    names_len - names_used);
        used += least;
        if (verdict == PH_PASS) { /* ph_register_all's header: the array, its length, the bytes of names used */
            used += file[PH_OPEN_WORDS + 1] * (PH_RECORD_WORDS + usable);
            names_used += file[PH_OPEN_WORDS + 2];
        }
        paths += strlen(paths) + 1;
    }
    starts[i] = used;
    starts[i + 1] = names_used;
    return i;
}
