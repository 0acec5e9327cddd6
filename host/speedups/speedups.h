/*
 * plugin_host.loading._speedups: C versions of the two checks the host runs on every
 * plugin file it loads (see speedups.c), the directory load's open-and-register
 * in one call (load.c), and a release and close that tells whether the library
 * left the process (unload.c).  Compiled at install time through cffi's API
 * mode (build.py); the host works without it, in pure Python.
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
 * verdicts[i] receives the verdict of the i-th.
 *
 * known (NULL, or n identities of PH_IDENTITY_WORDS native uint64_t words
 * each, all zero for "none"): the identity a path had when it last passed.
 * A path whose lstat still gives that identity, and passes the rule for the
 * file, passes without being opened or read again.  identities (NULL, or
 * room for n identities) receives the identity of each path that passes (of
 * the file opened; zeros for the others): device, inode, size, mtime
 * seconds and nanoseconds, ctime seconds and nanoseconds, mode, owner.
 * The ctime is what a rewrite of the same size with its mtime put back
 * cannot hide. */
void ph_precheck_paths(const char *paths, size_t n, size_t head_len, int host_class, int host_order,
                       int host_machine, int64_t uid, const unsigned char *known, unsigned char *identities,
                       unsigned char *verdicts);

#define PH_IDENTITY_WORDS 9

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

/* RegistrationSet.from_makers once its makers are looked up (host-owned arrays):
 * compares the ABI descriptor with the host's (PH_DESCRIPTOR: not byte for
 * byte the host's; nothing was called), then calls makers[0..n) in turn,
 * each registration checked (not NULL, not one made before, the checks of
 * ph_register_all) before the next maker runs, and stops at the first that
 * fails.  made (room for n) receives the registrations made; done[0] counts
 * the makers that ran, done[1] the bytes of names used.  On PH_PASS out
 * holds PH_RECORD_WORDS + usable words per registration (as after
 * ph_register_all's header) and names their type names.  PH_FAIL: the last
 * registration made failed a check.  PH_UNSUPPORTED: no room in out
 * (nothing called) or in names (for the last one made). */
int ph_register_makers(uintptr_t descriptor, const char *expected, size_t expected_len, const uintptr_t *makers,
                       size_t n, const char *trait_name, uint32_t version, uint32_t vtable_size, size_t usable,
                       uintptr_t *made, uintptr_t *out, size_t out_words, char *names, size_t names_len,
                       size_t *done);

/* The makers of trait_name a library exports (exports.c), read from its
 * .dynsym as the host's Python reader does (plugin_host.formats elf_exports,
 * then registry find_maker_types): the whole image in memory (data, size
 * bytes; path ignored), or the file at path (data NULL).  On PH_PASS types
 * holds the makers' type names, each NUL-terminated, in the order of their
 * symbol names (sorted, each name once); found[0] counts them, found[1] the
 * bytes used; for a path, identity (when not NULL) receives the identity of
 * the file read (PH_IDENTITY_WORDS words, as ph_precheck_paths records it).
 * PH_FAIL: the Python reader may refuse the image; PH_UNSUPPORTED: a table
 * over the limits, no room in types, or a trait named "all". */
int ph_elf_makers(const char *path, const unsigned char *data, uint64_t size, const char *trait_name, char *types,
                  size_t types_len, size_t *found, unsigned char *identity);

/* The directory load of its admitted files (load.c): for each of n paths,
 * given one after another, each NUL-terminated, dlopen(path, mode), then the
 * symbols, then ph_register_all, in one call for all of them.  symbols holds
 * four NUL-terminated names one after another: the aggregate, the ABI
 * descriptor, the array's release (plugin_unregister_all_<T>_v1) and the
 * unmaker counter.
 *
 * Returns how many files it went through: it starts a file only with room
 * for its header in out (the rest are left to the caller).  File i's words
 * start at out[starts[i]] (starts[returned]: the words used, and
 * starts[returned + 1] the bytes of names; starts has room for n + 2): its
 * verdict, the handle, the addresses of the aggregate, the release and the
 * counter (0 when not exported), then ph_register_all's output (its header,
 * then on PH_PASS the records); its type names follow those of the files
 * before it in names.  Verdicts: PH_NOT_OPENED: dlopen failed, or is not
 * available here; nothing is open (the caller opens
 * the file its own way, which says why).  PH_NO_AGGREGATE: open, no
 * aggregate; nothing was called.  Otherwise what ph_register_all returned,
 * with the library open.
 *
 * Host-owned files: with known NULL a file without the aggregate is
 * PH_NO_AGGREGATE.  Otherwise known holds an entry per path: the maker types
 * an earlier read of the same file found (each NUL-terminated), then an
 * empty one; an entry of just the NUL means "read them"
 * (ph_elf_makers).  The makers and their unmakers are looked up (all before
 * any maker runs), then ph_register_makers; identities (room for n
 * identities, zeroed here) receives the identity of each file whose makers
 * were read.  The file's words: the verdict, the handle, 0, 0, the
 * counter's address, the bytes of the maker types (which begin the file's
 * names), how many makers ran, the bytes of names used; then a word per
 * maker with what it made and one with its unmaker; then on
 * PH_MAKERS_PASS the records.  Verdicts: PH_MAKERS_PASS, every
 * registration made and passed; PH_MAKERS_PARTIAL, the makers ran up to the
 * one whose registration failed a check (or did not fit); PH_NO_AGGREGATE,
 * nothing was called (no makers found, an unmaker missing, another
 * descriptor, no room, or the makers not read here). */
size_t ph_open_register_paths(const char *paths, size_t n, int mode, const char *symbols, const char *expected,
                              size_t expected_len, size_t max_len, const char *trait_name, uint32_t version,
                              uint32_t vtable_size, size_t usable, uintptr_t *out, size_t out_words, char *names,
                              size_t names_len, size_t *starts, const char *known, unsigned char *identities);

/* Per file in ph_open_register_paths's out: the verdict, the handle, three addresses. */
#define PH_OPEN_WORDS 5
#define PH_NOT_OPENED 4
#define PH_NO_AGGREGATE 5
#define PH_MAKERS_PASS 6
#define PH_MAKERS_PARTIAL 7

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

/* The unload of a plugin-owned set in one call (unload.c): release(array)
 * (plugin_unregister_all_<T>_v1), then *count = counter() when counter is
 * not 0, then, when handle is not 0, ph_close_library(handle) and its
 * verdict; PH_CLOSE_NOT_ASKED when handle is 0. */
int ph_release_close(uintptr_t release, uintptr_t array, uintptr_t counter, uintptr_t handle, size_t *count);

/* ph_release_close on n sets in turn (a manager's unload of many files):
 * calls holds PH_RELEASE_WORDS words per set (release, array, counter,
 * handle); out receives 2 words per set, the counter (0 when counter is 0)
 * and the close verdict. */
void ph_release_close_all(const uintptr_t *calls, size_t n, uintptr_t *out);

#define PH_RELEASE_WORDS 4

#define PH_CLOSE_NOT_ASKED 5

#endif /* PLUGIN_HOST_SPEEDUPS_H */
