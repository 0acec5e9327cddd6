/*
 * exports.c: the makers of one trait a library exports, read from its .dynsym.
 *
 * A host-owned load (a library with PLUGIN_IMPLs and no aggregate) finds its
 * makers, plugin_register_<T>_<Type>_v1, among the library's exported dynamic
 * symbols.  The Python path reads them with the host's own ELF reader
 * (plugin_host/formats/_elf.py elf_exports) and picks the makers out of the
 * sorted names (registry/_registrations.py find_maker_types, through
 * plugin_interface.parse_symbol); together that costs several times the
 * dlopen.  Here the same reading is a few system calls.
 *
 * Like the other C checks this only answers "passes": PH_PASS when the Python
 * reader would read the file without an error, with the makers it would find,
 * in its order.  Anything else (PH_FAIL: the Python reader may refuse it;
 * PH_UNSUPPORTED: beyond what is read here) hands the file to the Python
 * path, which reads it again and raises the typed error.  So every check the
 * Python reader makes on the way is made here too, however little it matters
 * to the makers: tests/test_exports_c.py holds the two to the same answer on
 * every built plugin and on fuzzed and truncated images.
 *
 * Every read is bounds-checked against the image's size without overflow.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread */
#endif

#include "image.h"

#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#define SHT_DYNAMIC 6u
#define SHT_DYNSYM 11u
#define STB_GLOBAL 1u
#define STB_WEAK 2u
#define STT_NOTYPE 0u
#define STT_OBJECT 1u
#define STT_FUNC 2u

static const char MAKER_PREFIX[] = PH_PLUGIN_PREFIX;

typedef PhImage Source;

/* Whether name (NUL-terminated) is a maker of trait (trait_len bytes) under ABI version 1, as
 * plugin_interface.parse_symbol and find_maker_types decide; *type and *type_len: its type name. */
static int is_maker(const char *name, const char *trait, size_t trait_len, const char **type, size_t *type_len) {
    const size_t prefix_len = sizeof MAKER_PREFIX - 1;
    if (strncmp(name, MAKER_PREFIX, prefix_len) != 0 || strncmp(name + prefix_len, trait, trait_len) != 0 ||
        name[prefix_len + trait_len] != '_') {
        return 0;
    }
    const char *tail = name + prefix_len + trait_len + 1;
    /* tail.rpartition("_v"): the last "_v" (no byte of a UTF-8 sequence is '_' or 'v'). */
    const char *sep = NULL;
    for (const char *p = tail; p[0] != '\0'; p++) {
        if (p[0] == '_' && p[1] == 'v') {
            sep = p;
        }
    }
    if (sep == NULL || sep == tail) {
        return 0;
    }
    const char *version = sep + 2;
    size_t digits = strlen(version);
    if (digits == 0 || digits > 9) {
        return 0;
    }
    uint32_t value = 0;
    for (size_t i = 0; i < digits; i++) {
        if (version[i] < '0' || version[i] > '9') {
            return 0;
        }
        value = value * 10u + (uint32_t)(version[i] - '0');
    }
    if (value != PLUGIN_ABI_VERSION) {
        return 0;
    }
    for (const char *p = tail; p < sep; p++) { /* ASCII letters, digits and '_' */
        const char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
            return 0;
        }
    }
    *type = tail;
    *type_len = (size_t)(sep - tail);
    return 1;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The makers among the exports of symbol table entries (count of entry bytes) with strings (strsz bytes). */
static int collect_makers(const unsigned char *entries, uint64_t count, uint64_t entry, const unsigned char *strings,
                          uint64_t strsz, int elf64, int be, const char *trait, char *types, size_t types_len,
                          size_t *found) {
    const size_t trait_len = strlen(trait);
    const char **names = NULL;
    size_t n = 0, room = 0;
    int verdict = PH_PASS;
    for (uint64_t i = 0; i < count && verdict == PH_PASS; i++) {
        const unsigned char *e = entries + i * entry;
        const PhSym sym = ph_read_sym(e, elf64, be);
        const uint64_t name_offset = sym.name, shndx = sym.shndx;
        const unsigned binding = sym.binding, type = sym.type, other = sym.other;
        /* _read_symbols: a defined, global or weak, untyped, object or function symbol of default
         * visibility with a name is an export, and its name must end inside the string table. */
        if (shndx == 0 || (binding != STB_GLOBAL && binding != STB_WEAK) ||
            (type != STT_NOTYPE && type != STT_OBJECT && type != STT_FUNC) || (other & 0x3u) != 0 ||
            name_offset == 0) {
            continue;
        }
        if (name_offset >= strsz || memchr(strings + name_offset, '\0', (size_t)(strsz - name_offset)) == NULL) {
            verdict = PH_FAIL;
            break;
        }
        const char *name = (const char *)strings + name_offset, *maker_type;
        size_t maker_type_len;
        if (!is_maker(name, trait, trait_len, &maker_type, &maker_type_len)) {
            continue;
        }
        if (n == room) {
            room = room ? 2 * room : 8;
            const char **grown = realloc(names, room * sizeof *names);
            if (grown == NULL) {
                verdict = PH_UNSUPPORTED;
                break;
            }
            names = grown;
        }
        names[n++] = name;
    }
    size_t used = 0, kept = 0;
    if (verdict == PH_PASS && n > 0) {
        /* The order of sorted(exports): by name, each name once (a dict of names). */
        qsort(names, n, sizeof *names, by_name);
        for (size_t i = 0; i < n && verdict == PH_PASS; i++) {
            if (i > 0 && strcmp(names[i], names[i - 1]) == 0) {
                continue;
            }
            const char *maker_type;
            size_t maker_type_len;
            (void)is_maker(names[i], trait, trait_len, &maker_type, &maker_type_len);
            if (maker_type_len + 1 > types_len - used) {
                verdict = PH_UNSUPPORTED;
                break;
            }
            memcpy(types + used, maker_type, maker_type_len);
            types[used + maker_type_len] = '\0';
            used += maker_type_len + 1;
            kept++;
        }
    }
    free(names);
    found[0] = kept;
    found[1] = used;
    return verdict;
}

/* ph_elf_makers on an open source (see speedups.h). */
static int read_makers(const Source *s, const char *trait, char *types, size_t types_len, size_t *found) {
    const uint64_t size = s->size;
    PhElf elf;
    int opened = ph_elf_open(s, &elf);
    if (opened != PH_PASS) {
        return opened;
    }
    if (elf.shnum == 0) {
        return PH_FAIL; /* no .dynsym */
    }
    const int elf64 = elf.elf64, be = elf.be;
    const uint64_t shnum = elf.shnum, syment = elf.syment, dynent = elf.dynent;
    int verdict = PH_PASS, any = 0;
    found[0] = found[1] = 0;
    for (uint64_t i = 0; i < shnum && verdict == PH_PASS; i++) {
        const PhShdr h = ph_elf_section(&elf, i);
        if (h.type == SHT_DYNAMIC) { /* nodelete(): every .dynamic is read whole */
            if (!ph_table_fits(h.offset, h.size / dynent, dynent, size)) {
                verdict = PH_FAIL;
            }
            continue;
        }
        if (h.type != SHT_DYNSYM) {
            continue;
        }
        /* symbol_table(): the entries' size, the table and its linked string table inside the image. */
        const uint64_t count = h.size / syment;
        if (h.entsize != syment || !ph_table_fits(h.offset, count, syment, size) || h.link >= shnum) {
            verdict = PH_FAIL;
            break;
        }
        const PhShdr strtab = ph_elf_section(&elf, h.link);
        if (!ph_table_fits(strtab.offset, strtab.size, 1, size)) {
            verdict = PH_FAIL;
            break;
        }
        if (any++) {
            continue; /* the exports are the first table's; the others are only checked */
        }
        const uint64_t strsz = strtab.size;
        if (count * syment > PH_MAX_DYNSTR_BYTES || strsz > PH_MAX_DYNSTR_BYTES) {
            verdict = PH_UNSUPPORTED;
            break;
        }
        unsigned char *entries_owned = NULL, *strings_owned = NULL;
        const unsigned char *entries = ph_view(s, h.offset, count * syment, &entries_owned);
        const unsigned char *strings = ph_view(s, strtab.offset, strsz, &strings_owned);
        if (entries == NULL || strings == NULL) {
            verdict = PH_FAIL;
        } else {
            verdict = collect_makers(entries, count, syment, strings, strsz, elf64, be, trait, types, types_len, found);
        }
        free(entries_owned);
        free(strings_owned);
    }
    ph_elf_close(&elf);
    if (verdict == PH_PASS && !any) {
        verdict = PH_FAIL; /* "no dynamic symbol table (.dynsym)" */
    }
    return verdict;
}

/* A trait name the C reading stands for: [A-Za-z][A-Za-z0-9]*, and not "all" (whose makers'
 * names parse_symbol may read as plugin_register_all_<T>_v1 first). */
static int trait_supported(const char *trait) {
    const char c0 = trait[0];
    if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z')) || strcmp(trait, "all") == 0) {
        return 0;
    }
    for (const char *p = trait; *p; p++) {
        const char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
            return 0;
        }
    }
    return 1;
}

int ph_elf_makers(const char *path, const unsigned char *data, uint64_t size, const char *trait_name, char *types,
                  size_t types_len, size_t *found, unsigned char *identity) {
    found[0] = found[1] = 0;
    if (!trait_supported(trait_name)) {
        return PH_UNSUPPORTED;
    }
    Source s;
    s.fd = -1;
    s.data = data;
    s.size = size;
    s.head = data;
    s.head_len = (size_t)size;
    if (data != NULL) {
        return read_makers(&s, trait_name, types, types_len, found);
    }
#if defined(_WIN32)
    (void)path, (void)identity;
    return PH_UNSUPPORTED;
#else
    /* formats/_exports.py open_exports: the flags of READ_FLAGS (a FIFO must not block). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return PH_FAIL;
    }
    struct stat st;
    unsigned char head[4096]; /* the ELF header, and in a small library its symbols and their names */
    int verdict = PH_FAIL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0) {
        ssize_t n = pread(fd, head, sizeof head, 0);
        if (n > 0) {
            s.fd = fd;
            s.size = (uint64_t)st.st_size;
            s.head = head;
            s.head_len = (size_t)n;
            verdict = read_makers(&s, trait_name, types, types_len, found);
            if (verdict == PH_PASS && identity != NULL) {
                ph_identity_of(&st, identity);
            }
        }
    }
    close(fd);
    return verdict;
#endif
}
