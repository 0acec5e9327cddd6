/*
 * plugin_host.loading._speedups: C versions of the two checks the host runs on every
 * plugin file it loads (see speedups.c), and a close that tells whether the
 * library left the process (unload.c).  Compiled at install time through
 * cffi's API mode (build.py); the host works without it, in pure Python.
 */
#ifndef PLUGIN_HOST_SPEEDUPS_H
#define PLUGIN_HOST_SPEEDUPS_H

#include <stddef.h>
#include <stdint.h>

#include "plugin_interface.h"

/* Limits the Python checks share (plugin_host/loading/_accel.py asserts them
 * equal at import): how much of a file the pre-check reads up front, and the
 * largest dynamic string table and dynamic section it accepts. */
#define PH_HEAD_BYTES 8192
#define PH_MAX_DYNSTR_BYTES (16 << 20)
#define PH_MAX_DYNAMIC_BYTES (1 << 20)

/* Verdicts: 0 passes; anything else means "ask the pure-Python check", which
 * raises the typed error with its message (or, on PH_UNSUPPORTED, decides). */
#define PH_PASS 0
#define PH_FAIL 1
#define PH_UNSUPPORTED 2
#define PH_DESCRIPTOR 3

/* The ELF pre-check of plugin_host.loading._precheck on one image: the whole
 * image in memory (data, size bytes; fd ignored), or an open file of size
 * bytes read with pread (data NULL), whose first head_len bytes (at most
 * PH_HEAD_BYTES) count as "the head".  host_machine < 0 means unknown (not
 * compared). */
int ph_precheck_elf(int fd, const unsigned char *data, uint64_t size, size_t head_len, int host_class,
                    int host_order, int host_machine);

/* ph_precheck_elf on the file at path, opened as the host opens it
 * (O_NONBLOCK, O_CLOEXEC) but not through a symlink (O_NOFOLLOW): passes only
 * a regular file that uid (unless negative) or root owns and neither group
 * nor others can write (the load policy's rule for the file; the host checks
 * the directories). */
int ph_precheck_path(const char *path, size_t head_len, int host_class, int host_order, int host_machine,
                     int64_t uid);

/* ph_precheck_path on n paths, given one after another, each NUL-terminated;
 * verdicts[i] receives the verdict of the i-th. */
void ph_precheck_paths(const char *paths, size_t n, size_t head_len, int host_class, int host_order,
                       int host_machine, int64_t uid, unsigned char *verdicts);

/* RegistrationSet.from_aggregate: compares the ABI descriptor at descriptor
 * with the host's own (expected), calls the aggregate and checks the array
 * and each registration: at most max_len entries, non-NULL factories and
 * entries; trait name, ABI version, trait_version == version, vtable_size ==
 * vtable_size, usable non-NULL methods.
 *
 * PH_DESCRIPTOR: no descriptor, or not byte for byte the host's; nothing was
 * called.  Otherwise the aggregate ran and out[0] holds the array it
 * returned, out[1] its length and out[2] the bytes of names used; on PH_PASS
 * out[PH_HEADER_WORDS...] holds PH_RECORD_WORDS + usable words per
 * registration and names its type names, each NUL-terminated.  PH_FAIL: a
 * check failed; PH_UNSUPPORTED: out or names too small (out_words must be
 * at least PH_HEADER_WORDS). */
int ph_register_all(uintptr_t descriptor, const char *expected, size_t expected_len, uintptr_t aggregate,
                    size_t max_len, const char *trait_name, uint32_t version, uint32_t vtable_size, size_t usable,
                    uintptr_t *out, size_t out_words, char *names, size_t names_len);

#define PH_HEADER_WORDS 3
/* Arrays longer than this are checked for duplicate registrations in Python. */
#define PH_DUPLICATE_SCAN_MAX 64
/* Per registration in out: address, instance, free_memory, trait_version,
 * vtable_size, then the usable method pointers. */
#define PH_RECORD_WORDS 5

/* dlclose the handle (a dlopen result) and say whether the loader unmapped
 * the library (unload.c): PH_CLOSE_UNMAPPED, PH_CLOSE_STILL_MAPPED, or
 * PH_CLOSE_UNKNOWN when closed but not found out.  PH_CLOSE_FAILED: dlclose
 * failed (dlerror says why).  PH_CLOSE_UNSUPPORTED: nothing was done (no
 * dl_iterate_phdr here); close it another way. */
int ph_close_library(uintptr_t handle);

#define PH_CLOSE_UNMAPPED 0
#define PH_CLOSE_STILL_MAPPED 1
#define PH_CLOSE_UNKNOWN 2
#define PH_CLOSE_FAILED 3
#define PH_CLOSE_UNSUPPORTED 4

#endif /* PLUGIN_HOST_SPEEDUPS_H */
