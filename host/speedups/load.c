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
 * A library without the aggregate is a host-owned one: its makers are read
 * from its .dynsym (ph_elf_makers, exports.c; or given, as an earlier read of
 * the same file found them), looked up with their unmakers, and made and
 * checked by ph_register_makers, as RegistrationSet.from_makers does.
 *
 * Whatever does not pass is handed back to the Python path at the step it
 * reached (the library stays open; see PH_NO_AGGREGATE, PH_MAKERS_PARTIAL and
 * ph_register_all's verdicts), which raises the typed error or finishes the
 * load its own way.
 */
#if !defined(_WIN32)
#define PH_HAVE_DLOPEN 1
#include <dlfcn.h>
#endif

#include <string.h>

#include "speedups.h"

/* The longest maker or unmaker name, and the most makers, a library's load here has (more: the Python path). */
#define PH_MAX_SYMBOL 512
#define PH_MAX_MAKERS 64

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

#ifdef PH_HAVE_DLOPEN
/* The names plugin_interface.maker_symbol and unmaker_symbol give (the suffix is the ABI version's). */
_Static_assert(PLUGIN_ABI_VERSION == 1u, "maker names end in _v1");
static const char ABI_SUFFIX[] = "_v1";

/* prefix, trait, "_", type, ABI_SUFFIX into symbol (PH_MAX_SYMBOL bytes); 0 when it does not fit. */
static int symbol_name(char *symbol, const char *prefix, const char *trait, const char *type) {
    const size_t a = strlen(prefix), b = strlen(trait), c = strlen(type);
    if (a + b + 1 + c + sizeof ABI_SUFFIX > PH_MAX_SYMBOL) {
        return 0;
    }
    memcpy(symbol, prefix, a);
    memcpy(symbol + a, trait, b);
    symbol[a + b] = '_';
    memcpy(symbol + a + b + 1, type, c);
    memcpy(symbol + a + b + 1 + c, ABI_SUFFIX, sizeof ABI_SUFFIX);
    return 1;
}

/* The host-owned load of an open library without the aggregate (see ph_open_register_paths in
 * speedups.h); the verdict, the rest of out[0..PH_OPEN_WORDS) is set. */
static int register_makers(void *handle, const char *path, const char *known, const char *descriptor,
                           const char *expected, size_t expected_len, const char *trait_name, uint32_t version,
                           uint32_t vtable_size, size_t usable, uintptr_t *out, size_t out_words, char *names,
                           size_t names_len, unsigned char *identity) {
    size_t found[2] = {0, 0};
    if (known[0] != '\0') { /* what an earlier read of this very file found */
        const char *p = known;
        while (*p != '\0') {
            p += strlen(p) + 1;
            found[0]++;
        }
        found[1] = (size_t)(p - known);
        if (found[1] > names_len) {
            return PH_NO_AGGREGATE;
        }
        memcpy(names, known, found[1]);
    } else if (ph_elf_makers(path, NULL, 0, trait_name, names, names_len, found, identity) != PH_PASS) {
        return PH_NO_AGGREGATE; /* the Python path reads the file, and says what is wrong */
    }
    const size_t n = found[0], width = PH_RECORD_WORDS + usable;
    const size_t least = PH_OPEN_WORDS + PH_HEADER_WORDS;
    if (n == 0 || n > PH_MAX_MAKERS || n > (out_words - least) / (2 + width)) {
        return PH_NO_AGGREGATE; /* no makers (the Python path says so), or no room */
    }
    /* Every maker and unmaker is looked up before any maker runs (from_makers' pairs). */
    uintptr_t makers[PH_MAX_MAKERS];
    uintptr_t *made = out + least, *unmakers = made + n;
    const char *type = names;
    for (size_t i = 0; i < n; i++, type += strlen(type) + 1) {
        char symbol[PH_MAX_SYMBOL];
        if (!symbol_name(symbol, "plugin_register_", trait_name, type) ||
            (makers[i] = find_symbol(handle, symbol)) == 0 ||
            !symbol_name(symbol, "plugin_unregister_", trait_name, type) ||
            (unmakers[i] = find_symbol(handle, symbol)) == 0) {
            return PH_NO_AGGREGATE;
        }
    }
    size_t done[2] = {0, 0};
    int verdict = ph_register_makers(find_symbol(handle, descriptor), expected, expected_len, makers, n, trait_name,
                                     version, vtable_size, usable, made, unmakers + n, out_words - least - 2 * n,
                                     names + found[1], names_len - found[1], done);
    if (done[0] == 0) {
        return PH_NO_AGGREGATE; /* nothing called: another descriptor, or no room */
    }
    out[PH_OPEN_WORDS] = found[1];
    out[PH_OPEN_WORDS + 1] = done[0];
    out[PH_OPEN_WORDS + 2] = found[1] + done[1];
    return verdict == PH_PASS ? PH_MAKERS_PASS : PH_MAKERS_PARTIAL;
}
#endif

/* One file: out has room for PH_OPEN_WORDS + PH_HEADER_WORDS words at least. */
static int open_register(const char *path, int mode, const char *symbols, const char *expected, size_t expected_len,
                         size_t max_len, const char *trait_name, uint32_t version, uint32_t vtable_size,
                         size_t usable, uintptr_t *out, size_t out_words, char *names, size_t names_len,
                         const char *known, unsigned char *identity) {
    memset(out, 0, (PH_OPEN_WORDS + PH_HEADER_WORDS) * sizeof *out);
    out[0] = PH_NOT_OPENED;
#ifndef PH_HAVE_DLOPEN
    (void)path, (void)mode, (void)symbols, (void)expected, (void)expected_len, (void)max_len, (void)trait_name;
    (void)version, (void)vtable_size, (void)usable, (void)out_words, (void)names, (void)names_len;
    (void)known, (void)identity;
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
        out[0] = PH_NO_AGGREGATE;
        if (known != NULL) {
            out[4] = find_symbol(handle, counter);
            out[0] = (uintptr_t)register_makers(handle, path, known, descriptor, expected, expected_len, trait_name,
                                                version, vtable_size, usable, out, out_words, names, names_len,
                                                identity);
        }
        return (int)out[0];
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
                              size_t names_len, size_t *starts, const char *known, unsigned char *identities) {
    const size_t least = PH_OPEN_WORDS + PH_HEADER_WORDS;
    size_t used = 0, names_used = 0, i = 0;
    /* A file is started only with room for its header: the rest are left to the caller. */
    for (; i < n && out_words - used >= least; i++) {
        uintptr_t *file = out + used;
        starts[i] = used;
        unsigned char *identity = identities != NULL ? identities + i * PH_IDENTITY_WORDS * sizeof(uint64_t) : NULL;
        if (identity != NULL) {
            memset(identity, 0, PH_IDENTITY_WORDS * sizeof(uint64_t));
        }
        int verdict = open_register(paths, mode, symbols, expected, expected_len, max_len, trait_name, version,
                                    vtable_size, usable, file, out_words - used, names + names_used,
                                    names_len - names_used, known, identity);
        used += least;
        if (verdict == PH_PASS) { /* ph_register_all's header: the array, its length, the bytes of names used */
            used += file[PH_OPEN_WORDS + 1] * (PH_RECORD_WORDS + usable);
            names_used += file[PH_OPEN_WORDS + 2];
        } else if (verdict == PH_MAKERS_PASS || verdict == PH_MAKERS_PARTIAL) {
            /* the types' bytes, the registrations made, the bytes of names used; then the made and the
             * unmakers (a word per maker each), then on PH_MAKERS_PASS the records */
            const char *type = names + names_used;
            size_t makers = 0;
            for (const char *end = type + file[PH_OPEN_WORDS]; type < end; type += strlen(type) + 1) {
                makers++;
            }
            used += 2 * makers;
            if (verdict == PH_MAKERS_PASS) {
                used += makers * (PH_RECORD_WORDS + usable);
            }
            names_used += file[PH_OPEN_WORDS + 2];
        }
        if (known != NULL) { /* the next file's entry */
            while (*known != '\0') {
                known += strlen(known) + 1;
            }
            known++;
        }
        paths += strlen(paths) + 1;
    }
    starts[i] = used;
    starts[i + 1] = names_used;
    return i;
}
