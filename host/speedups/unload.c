/*
 * unload.c: dlclose, and whether the loader really unmapped the library.
 *
 * dlclose succeeds whether or not the library leaves the process (glibc keeps
 * one with STB_GNU_UNIQUE symbols, DF_1_NODELETE, pending thread_local
 * destructors or another open handle).  Asking with dlopen(RTLD_NOLOAD), as
 * the pure-Python path does, costs a failed file open and an error message
 * per unloaded library: about 70,000 instructions, more than the dlclose.
 * Here the library's load address is read before the close and looked for
 * among the loaded objects after it: no file access, no allocation.
 *
 * ph_release_close puts the last release of a plugin-owned set (its
 * plugin_unregister_all, the unmaker counter) in the same call, so unloading
 * a file is one crossing rather than four.
 */
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dlinfo, dl_iterate_phdr */
#endif
#define PH_HAVE_LINK_MAP 1
#include <dlfcn.h>
#include <link.h>
#endif

#include "speedups.h"

#ifdef PH_HAVE_LINK_MAP
struct ph_lookup {
    uintptr_t base;
    int found;
};

static int ph_find_base(struct dl_phdr_info *info, size_t size, void *data) {
    struct ph_lookup *lookup = data;
    (void)size; /* dlpi_addr is the first field of every version of the struct */
    if ((uintptr_t)info->dlpi_addr == lookup->base) {
        lookup->found = 1;
        return 1; /* stop the walk */
    }
    return 0;
}
#endif

int ph_close_library(uintptr_t handle) {
#ifdef PH_HAVE_LINK_MAP
    struct link_map *map = NULL;
    uintptr_t base = 0;
    struct ph_lookup lookup;
    if (dlinfo((void *)handle, RTLD_DI_LINKMAP, &map) == 0 && map != NULL) {
        base = (uintptr_t)map->l_addr;
    }
    if (dlclose((void *)handle) != 0) {
        return PH_CLOSE_FAILED;
    }
    if (base == 0) { /* a library mapped at its link address: nothing to tell it apart by */
        return PH_CLOSE_UNKNOWN;
    }
    lookup.base = base;
    lookup.found = 0;
    dl_iterate_phdr(ph_find_base, &lookup);
    return lookup.found ? PH_CLOSE_STILL_MAPPED : PH_CLOSE_UNMAPPED;
#else
    (void)handle;
    return PH_CLOSE_UNSUPPORTED;
#endif
}

int ph_release_close(uintptr_t release, uintptr_t array, uintptr_t counter, uintptr_t handle, size_t *count) {
    /* The order of the Python path: the release, then the counter (which the
     * release moved), then the close (after which neither may run). */
    void (*release_all)(PluginRegistrationArray *) = (void (*)(PluginRegistrationArray *))release;
    release_all((PluginRegistrationArray *)array);
    if (counter != 0) {
        size_t (*read_counter)(void) = (size_t(*)(void))counter;
        *count = read_counter();
    }
    if (handle == 0) {
        return PH_CLOSE_NOT_ASKED;
    }
    return ph_close_library(handle);
}

void ph_release_close_all(const uintptr_t *calls, size_t n, uintptr_t *out) {
    for (size_t i = 0; i < n; i++, calls += PH_RELEASE_WORDS, out += 2) {
        size_t count = 0;
        out[1] = (uintptr_t)ph_release_close(calls[0], calls[1], calls[2], calls[3], &count);
        out[0] = count;
    }
}
