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
