/*
 * speedups.c: the host's per-file checks in C.
 *
 * Loading a directory of plugins runs two checks per file: the pre-check of
 * the file's ELF headers before dlopen (plugin_host/loading/_precheck.py) and
 * the validation of every registration the plugin made
 * (plugin_host/registry/_registrations.py).  In
 * Python they cost several times what dlopen itself does; here, about a
 * microsecond.
 *
 * Each function only says whether everything passes.  On anything else the
 * host runs the Python version, which raises the typed error with its
 * message: the rules are written twice (here for speed, there for the
 * words), and tests/test_speedups.py holds both to the same verdict on every
 * catalogued bad file and on fuzzed ones.
 *
 * Every read of the image is bounds-checked against its size without
 * overflow; the registration reads trust plugin pointers exactly as far as
 * the Python version does (which reads the same addresses through ctypes).
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread */
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE /* O_NOFOLLOW, which macOS hides under _POSIX_C_SOURCE alone */
#endif

#include "image.h"

#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#define PT_LOAD 1u
#define PT_DYNAMIC 2u
#define ET_DYN 3u
#define DT_STRTAB 5
#define DT_STRSZ 10

static const char PLUGIN_PREFIX[] = PH_PLUGIN_PREFIX;

/* Records hold function pointers as uintptr_t words. */
_Static_assert(sizeof(void (*)(void *)) == sizeof(uintptr_t), "function pointers must fit a uintptr_t");

/* ---- reading the image ------------------------------------------------- */

typedef PhImage Image;

/* The first used bytes of each of n entries of stride bytes from offset, packed
 * (n * used bytes, malloc'ed into *owned), or NULL: a table of wide entries is
 * never read whole (65535 entries of 65535 bytes would be 4 GiB). */
static const unsigned char *image_entries(const Image *im, uint64_t offset, uint64_t n, uint64_t stride,
                                          uint64_t used, unsigned char **owned) {
    *owned = NULL;
    if (stride == used || n == 0) {
        return ph_view(im, offset, n * stride, owned);
    }
    unsigned char *buf = malloc((size_t)(n * used));
    if (buf == NULL) {
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        unsigned char *part = NULL;
        const unsigned char *entry = ph_view(im, offset + i * stride, used, &part);
        if (entry == NULL) {
            free(buf);
            return NULL;
        }
        memcpy(buf + i * used, entry, (size_t)used);
        free(part);
    }
    *owned = buf;
    return buf;
}

static int contains_prefix(const unsigned char *hay, uint64_t len) {
    const size_t n = sizeof PLUGIN_PREFIX - 1;
    if (len < n) {
        return 0;
    }
    const unsigned char *p = hay;
    const unsigned char *last = hay + (len - n);
    while (p <= last) {
        p = memchr(p, PLUGIN_PREFIX[0], (size_t)(last - p) + 1);
        if (p == NULL) {
            return 0;
        }
        if (memcmp(p, PLUGIN_PREFIX, n) == 0) {
            return 1;
        }
        p++;
    }
    return 0;
}

/* ---- the ELF pre-check -------------------------------------------------- */

typedef PhPhdr Phdr;

/* Whether the dynamic string table (found through PT_DYNAMIC) names a plugin
 * maker; the checks of loading/_precheck.py _dynamic_strings on the way. */
static int dynamic_strings_name_plugins(const Image *im, const unsigned char *phdrs, uint64_t phnum,
                                        uint64_t phentsize, int elf64, int be) {
    int found = 0;
    Phdr dyn = {0, 0, 0, 0};
    for (uint64_t i = 0; i < phnum; i++) {
        Phdr h = ph_read_phdr(phdrs + i * phentsize, elf64, be);
        if (h.type == PT_DYNAMIC) {
            dyn = h;
            found = 1;
            break;
        }
    }
    if (!found || dyn.offset > im->size || dyn.filesz > im->size - dyn.offset ||
        dyn.filesz > (uint64_t)PH_MAX_DYNAMIC_BYTES) {
        return 0;
    }
    const uint64_t entry_len = elf64 ? 16 : 8;
    const uint64_t entries_len = dyn.filesz - dyn.filesz % entry_len;
    unsigned char *owned = NULL;
    const unsigned char *entries = ph_view(im, dyn.offset, entries_len, &owned);
    if (entries == NULL) {
        return 0;
    }
    int have_strtab = 0, have_strsz = 0;
    uint64_t strtab = 0, strsz = 0;
    /* Every entry, the last of a tag winning, as the Python dict() does. */
    for (uint64_t off = 0; off < entries_len; off += entry_len) {
        const unsigned half = elf64 ? 8 : 4;
        uint64_t tag = ph_rd(entries + off, half, be);
        uint64_t value = ph_rd(entries + off + half, half, be);
        if (tag == DT_STRTAB) {
            strtab = value;
            have_strtab = 1;
        } else if (tag == DT_STRSZ) {
            strsz = value;
            have_strsz = 1;
        }
    }
    free(owned);
    if (!have_strtab || !have_strsz) {
        return 0;
    }
    uint64_t start = 0;
    found = 0;
    for (uint64_t i = 0; i < phnum; i++) {
        Phdr h = ph_read_phdr(phdrs + i * phentsize, elf64, be);
        if (h.type == PT_LOAD && h.vaddr <= strtab && strtab - h.vaddr < h.filesz) {
            start = strtab - h.vaddr + h.offset; /* < offset + filesz <= size: checked by the caller */
            found = 1;
            break;
        }
    }
    if (!found || strsz > (uint64_t)PH_MAX_DYNSTR_BYTES || start > im->size || strsz > im->size - start) {
        return 0;
    }
    const unsigned char *strings = ph_view(im, start, strsz, &owned);
    if (strings == NULL) {
        return 0;
    }
    int named = contains_prefix(strings, strsz);
    free(owned);
    return named;
}

int ph_precheck_elf(int fd, const unsigned char *data, uint64_t size, size_t head_len, int host_class,
                    int host_order, int host_machine) {
    Image im;
#if !defined(_WIN32)
    unsigned char head_buf[PH_HEAD_BYTES]; /* the head read, when the image is read from fd */
#endif
    im.fd = fd;
    im.data = data;
    im.size = size;
    if (data != NULL) {
        im.head = data;
        im.head_len = (size_t)size;
    } else {
#if defined(_WIN32)
        (void)head_len;
        return PH_UNSUPPORTED;
#else
        if (head_len > sizeof head_buf) {
            return PH_UNSUPPORTED;
        }
        ssize_t n = pread(fd, head_buf, head_len, 0);
        if (n < 0) {
            return PH_FAIL;
        }
        im.head = head_buf;
        im.head_len = (size_t)n;
#endif
    }
    const size_t ident_len = im.head_len < 64 ? im.head_len : 64;
    const unsigned char *e = im.head;
    if (ident_len < 6 || memcmp(e, "\177ELF", 4) != 0 || (e[4] != 1 && e[4] != 2) || (e[5] != 1 && e[5] != 2)) {
        return PH_FAIL;
    }
    if (e[4] != host_class || e[5] != host_order) {
        return PH_FAIL;
    }
    const int elf64 = e[4] == 2, be = e[5] == 2;
    if (ident_len < (elf64 ? 64u : 52u)) {
        return PH_FAIL;
    }
    const uint64_t e_type = ph_rd(e + 16, 2, be), e_machine = ph_rd(e + 18, 2, be);
    const uint64_t phoff = elf64 ? ph_rd(e + 32, 8, be) : ph_rd(e + 28, 4, be);
    const uint64_t shoff = elf64 ? ph_rd(e + 40, 8, be) : ph_rd(e + 32, 4, be);
    const unsigned char *t = e + (elf64 ? 54 : 42);
    const uint64_t phentsize = ph_rd(t, 2, be), phnum = ph_rd(t + 2, 2, be);
    const uint64_t shentsize = ph_rd(t + 4, 2, be), shnum = ph_rd(t + 6, 2, be);
    if (phoff > size || phnum * phentsize > size - phoff) {
        return PH_FAIL; /* truncated: the program headers end past the file */
    }
    if (shoff && (shoff > size || shnum * shentsize > size - shoff)) {
        return PH_FAIL; /* truncated: the section headers end past the file */
    }
    const uint64_t used = elf64 ? 56u : 32u; /* the bytes of an entry read_phdr reads */
    if (phnum && phentsize < used) {
        return PH_FAIL;
    }
    unsigned char *owned = NULL;
    /* Entries wider than used are packed: only their used bytes are read. */
    const uint64_t stride = used;
    const unsigned char *phdrs = image_entries(&im, phoff, phnum, phentsize, used, &owned);
    if (phdrs == NULL) {
        return PH_FAIL;
    }
    int verdict = PH_PASS;
    for (uint64_t i = 0; i < phnum && verdict == PH_PASS; i++) {
        Phdr h = ph_read_phdr(phdrs + i * stride, elf64, be);
        if (h.type == PT_LOAD && (h.offset > size || h.filesz > size - h.offset)) {
            verdict = PH_FAIL; /* truncated: a load segment ends past the file (SIGBUS in dlopen) */
        }
    }
    if (verdict == PH_PASS && e_type != ET_DYN) {
        verdict = PH_FAIL;
    }
    if (verdict == PH_PASS && host_machine >= 0 && e_machine != (uint64_t)host_machine) {
        verdict = PH_FAIL;
    }
    if (verdict == PH_PASS && !contains_prefix(im.head, im.head_len) &&
        !dynamic_strings_name_plugins(&im, phdrs, phnum, stride, elf64, be)) {
        verdict = PH_FAIL;
    }
    free(owned);
    return verdict;
}

/* ---- registrations ----------------------------------------------------- */

/* The checks of registry/_registrations.py _read_registration on regs[0..n); the type
 * names go one after another into names (names_len bytes), *used counts them. */
static int check_registrations(PluginRegistration *const *regs, size_t n, const char *trait_name, uint32_t version,
                               uint32_t vtable_size, size_t usable, uintptr_t *out, char *names, size_t names_len,
                               size_t *used) {
    const size_t needed = sizeof(void *) * (1 + usable); /* size_t size, then one pointer per method */
    for (size_t i = 0; i < n; i++) {
        const PluginRegistration *r = regs[i];
        if (r == NULL || r->struct_size < sizeof(PluginRegistration) || r->abi_version != PLUGIN_ABI_VERSION ||
            r->trait_name == NULL || strcmp(r->trait_name, trait_name) != 0 || r->trait_version != version ||
            r->vtable_size != vtable_size || r->vtable_size < needed ||
            r->vtable == NULL || r->free_memory == NULL || r->type_name == NULL) {
            return PH_FAIL;
        }
        size_t declared;
        memcpy(&declared, r->vtable, sizeof declared);
        if (declared != r->vtable_size) {
            return PH_FAIL;
        }
        uintptr_t *rec = out + i * (PH_RECORD_WORDS + usable);
        rec[0] = (uintptr_t)r;
        rec[1] = (uintptr_t)r->instance;
        /* A function pointer's bits, without converting it to an object pointer. */
        memcpy(&rec[2], &r->free_memory, sizeof rec[2]);
        rec[3] = r->trait_version;
        rec[4] = r->vtable_size;
        const unsigned char *methods = (const unsigned char *)r->vtable + sizeof(size_t);
        for (size_t m = 0; m < usable; m++) {
            memcpy(&rec[PH_RECORD_WORDS + m], methods + m * sizeof(void *), sizeof(uintptr_t));
            if (rec[PH_RECORD_WORDS + m] == 0) {
                return PH_FAIL;
            }
        }
        size_t name_len = strlen(r->type_name) + 1;
        if (name_len > names_len - *used) {
            return PH_UNSUPPORTED;
        }
        memcpy(names + *used, r->type_name, name_len);
        *used += name_len;
    }
    return PH_PASS;
}

int ph_register_all(uintptr_t descriptor, const char *expected, size_t expected_len, uintptr_t aggregate,
                    size_t max_len, const char *trait_name, uint32_t version, uint32_t vtable_size, size_t usable,
                    uintptr_t *out, size_t out_words, char *names, size_t names_len) {
    out[0] = out[1] = out[2] = 0;
    /* The descriptor first, before any plugin code runs: byte for byte the
     * host's own.  Its head first: the head's struct_size says how long the
     * plugin's descriptor is, so the rest is read only from one as long. */
    const size_t head = sizeof(PluginAbiDescriptor);
    if (descriptor == 0 || expected_len < head || memcmp((const void *)descriptor, expected, head) != 0 ||
        memcmp((const char *)descriptor + head, expected + head, expected_len - head) != 0) {
        return PH_DESCRIPTOR;
    }
    PluginRegistrationArray *(*make_all)(void) = (PluginRegistrationArray * (*)(void)) aggregate;
    const PluginRegistrationArray *array = make_all();
    out[0] = (uintptr_t)array;
    /* The array checks of RegistrationSet.from_aggregate. */
    if (array == NULL || array->len > max_len || array->factories == NULL ||
        (array->len && array->registrations == NULL)) {
        return PH_FAIL;
    }
    for (size_t i = 0; i < array->len; i++) {
        if (array->registrations[i] == NULL || array->factories[i].maker == NULL ||
            array->factories[i].unmaker == NULL) {
            return PH_FAIL;
        }
    }
    /* The same registration twice would be unmade twice (a double free).  A
     * quadratic look is cheap for the arrays plugins make; longer ones are
     * left to the Python check (a set). */
    if (array->len > PH_DUPLICATE_SCAN_MAX) {
        out[1] = array->len;
        return PH_UNSUPPORTED;
    }
    for (size_t i = 1; i < array->len; i++) {
        for (size_t j = 0; j < i; j++) {
            if (array->registrations[i] == array->registrations[j]) {
                return PH_FAIL;
            }
        }
    }
    out[1] = array->len;
    if (array->len > (out_words - PH_HEADER_WORDS) / (PH_RECORD_WORDS + usable)) {
        return PH_UNSUPPORTED;
    }
    size_t used = 0;
    int verdict = check_registrations(array->registrations, array->len, trait_name, version, vtable_size, usable,
                                      out + PH_HEADER_WORDS, names, names_len, &used);
    out[2] = used;
    return verdict;
}

int ph_register_makers(uintptr_t descriptor, const char *expected, size_t expected_len, const uintptr_t *makers,
                       size_t n, const char *trait_name, uint32_t version, uint32_t vtable_size, size_t usable,
                       uintptr_t *made, uintptr_t *out, size_t out_words, char *names, size_t names_len,
                       size_t *done) {
    done[0] = done[1] = 0;
    /* The descriptor first, before any plugin code runs, as in ph_register_all. */
    const size_t head = sizeof(PluginAbiDescriptor);
    if (descriptor == 0 || expected_len < head || memcmp((const void *)descriptor, expected, head) != 0 ||
        memcmp((const char *)descriptor + head, expected + head, expected_len - head) != 0) {
        return PH_DESCRIPTOR;
    }
    const size_t width = PH_RECORD_WORDS + usable;
    if (n > out_words / width) {
        return PH_UNSUPPORTED; /* nothing called */
    }
    /* RegistrationSet.from_makers: each maker in turn, its registration checked before the next
     * runs, so a failure leaves exactly the registrations the Python path would have made. */
    for (size_t i = 0; i < n; i++) {
        PluginRegistration *(*maker)(void) = (PluginRegistration * (*)(void)) makers[i];
        PluginRegistration *reg = maker();
        made[i] = (uintptr_t)reg;
        done[0] = i + 1;
        if (reg == NULL) {
            return PH_FAIL;
        }
        for (size_t j = 0; j < i; j++) {
            if (made[j] == (uintptr_t)reg) { /* two makers, one registration: a double free at release */
                return PH_FAIL;
            }
        }
        PluginRegistration *const regs[1] = {reg};
        int verdict = check_registrations(regs, 1, trait_name, version, vtable_size, usable, out + i * width, names,
                                          names_len, &done[1]);
        if (verdict != PH_PASS) {
            return verdict;
        }
    }
    return PH_PASS;
}

#if !defined(_WIN32) && defined(O_NOFOLLOW)
/* The load policy's rule for the file (permission_problems in plugin_host/loading/_policy.py;
 * tests/test_policy_agreement.py ties the two): a regular file owned by uid or root that
 * neither group nor others can write. */
static int file_rule_passes(const struct stat *st, int64_t uid) {
    return S_ISREG(st->st_mode) && (uid < 0 || (int64_t)st->st_uid == uid || st->st_uid == 0) &&
           !(st->st_mode & (S_IWGRP | S_IWOTH));
}

/* ph_precheck_path, and the identity of the file it opened when it passes. */
static int precheck_path(const char *path, size_t head_len, int host_class, int host_order, int host_machine,
                         int64_t uid, unsigned char *identity) {
    /* The flags of plugin_host.formats.READ_FLAGS (a FIFO must not block, nothing is inherited), and
     * O_NOFOLLOW: a symlink is judged by its real directory, which the host resolves in Python. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return PH_FAIL;
    }
    struct stat st;
    int verdict = PH_FAIL;
    if (fstat(fd, &st) == 0 && file_rule_passes(&st, uid)) {
        verdict = ph_precheck_elf(fd, NULL, (uint64_t)st.st_size, head_len, host_class, host_order, host_machine);
        if (verdict == PH_PASS && identity != NULL) {
            ph_identity_of(&st, identity);
        }
    }
    close(fd);
    return verdict;
}

/* Whether path, not opened, still is the file of identity known (not all zero) and passes the rule. */
static int still_known(const char *path, const unsigned char *known, int64_t uid) {
    static const unsigned char none[PH_IDENTITY_WORDS * sizeof(uint64_t)];
    unsigned char now[PH_IDENTITY_WORDS * sizeof(uint64_t)];
    struct stat st;
    if (memcmp(known, none, sizeof none) == 0 || lstat(path, &st) != 0 || !file_rule_passes(&st, uid)) {
        return 0;
    }
    ph_identity_of(&st, now);
    return memcmp(now, known, sizeof now) == 0;
}
#endif

int ph_precheck_path(const char *path, size_t head_len, int host_class, int host_order, int host_machine,
                     int64_t uid) {
#if defined(_WIN32) || !defined(O_NOFOLLOW) /* without it a symlink could pass: Python decides */
    (void)path, (void)head_len, (void)host_class, (void)host_order, (void)host_machine, (void)uid;
    return PH_UNSUPPORTED;
#else
    return precheck_path(path, head_len, host_class, host_order, host_machine, uid, NULL);
#endif
}

void ph_precheck_paths(const char *paths, size_t n, size_t head_len, int host_class, int host_order,
                       int host_machine, int64_t uid, const unsigned char *known, unsigned char *identities,
                       unsigned char *verdicts) {
    /* One pass over a directory's files: the kernel's open and read paths stay
     * warm from one file to the next, which dlopen calls in between would not. */
    const size_t width = PH_IDENTITY_WORDS * sizeof(uint64_t);
    if (identities != NULL) {
        memset(identities, 0, n * width);
    }
    for (size_t i = 0; i < n; i++) {
#if defined(_WIN32) || !defined(O_NOFOLLOW)
        (void)known;
        verdicts[i] = (unsigned char)ph_precheck_path(paths, head_len, host_class, host_order, host_machine, uid);
#else
        unsigned char *identity = identities != NULL ? identities + i * width : NULL;
        /* A file that passed before and has not changed since (a second load of the same directory)
         * is not read again: same device, inode, size, mtime and ctime, and the rule still holds. */
        if (known != NULL && still_known(paths, known + i * width, uid)) {
            verdicts[i] = PH_PASS;
            if (identity != NULL) {
                memcpy(identity, known + i * width, width);
            }
        } else {
            verdicts[i] =
                (unsigned char)precheck_path(paths, head_len, host_class, host_order, host_machine, uid, identity);
        }
#endif
        paths += strlen(paths) + 1;
    }
}
