/*
 * elfread.c: plugin_host.formats._elfread, the export table of an ELF shared
 * library read in C.
 *
 * formats/_elf.py elf_exports is the reference and the fallback: it reads the
 * ELF header, the section headers, every .dynsym with its linked string
 * table, the .dynamic sections (DF_1_NODELETE) and the program headers
 * (PT_LOAD regions), each bounded by the file's size.  That costs some 70 us a
 * file in Python, most of abi check's reading of a directory; here the same
 * reads through the descriptor already open are a few pread calls.
 *
 * Like the C checks of plugin_host.loading this only answers "reads": the
 * table elf_exports would return, or None for anything the Python reader may
 * refuse (and for what is not worth judging here: very large tables).  The
 * caller then runs the Python reader, which raises its typed error with its
 * message.  So every check the Python reader makes is made here too, and
 * every field is decoded by its rules: tests/test_elfread.py holds the two to
 * the same table on every built plugin, on synthetic ELF32/ELF64 images of
 * both byte orders, on every truncation of a real library and on mutated
 * copies.
 *
 * The ELF header and section headers are read by image.h (ph_elf_open), as
 * exports.c reads them; every offset and count is checked against the size
 * before it drives a read or a loop, without overflow.
 *
 * scheme_scan does abi check's reading of a file (abi/_check.py scan_library) in one call: the
 * same tables (only the exports named "plugin_..." kept), each such name parsed by a copy of
 * plugin_interface split_symbol (split_scheme, held to it on every string by
 * tests/test_scheme_scan.py), and the first read of each descriptor and declaration of the ABI
 * version asked, located in the PT_LOAD segments as ExportTable.locate does.  Python decodes
 * them.  What the Python reading would read further (a descriptor larger than its first read, a
 * declaration without a NUL in it), what is not stored in the file, and a _v01 (one key with a
 * _v1) are left to it: None for the whole file.
 *
 * Safety: fd must be open for reading, size its size (fstat), ident its first
 * bytes (up to 64, fewer only when the file is shorter).  The GIL is held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "image.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SHT_DYNAMIC 6u
#define SHT_DYNSYM 11u
#define STB_GLOBAL 1u
#define STB_WEAK 2u
#define STB_GNU_UNIQUE 10u
#define STT_NOTYPE 0u
#define STT_OBJECT 1u
#define STT_FUNC 2u
#define PT_LOAD 1u
#define DT_NULL 0u
#define DT_FLAGS_1 0x6FFFFFFBu
#define DF_1_NODELETE 0x8u

/* formats/_blockers.py MAX_UNIQUE_NAMES (formats/_elf.py asserts them equal at import). */
#define MAX_UNIQUE_NAMES 8

/* What the result is made of; readers answer READ_OK, READ_NONE (leave it to Python) or
 * READ_ERROR (a Python exception is set: out of memory). */
enum { READ_ERROR = -1, READ_NONE = 0, READ_OK = 1 };

typedef struct Blockers {
    PyObject *unique; /* list of the first MAX_UNIQUE_NAMES STB_GNU_UNIQUE names */
    uint64_t unique_count;
    int tls, weak_tls;
} Blockers;

/* The NUL-terminated name at offset of a string table of strsz bytes, and its length; NULL when
 * it does not end inside the table (_Symbols.name raises then). */
static const char *name_at(const unsigned char *strings, uint64_t strsz, uint64_t offset, size_t *len) {
    if (offset >= strsz) {
        return NULL;
    }
    const unsigned char *start = strings + offset;
    const unsigned char *end = memchr(start, '\0', (size_t)(strsz - offset));
    if (end == NULL) {
        return NULL;
    }
    *len = (size_t)(end - start);
    return (const char *)start;
}

/* A name as _Symbols decodes it: latin-1 when the table is ASCII, else UTF-8 with U+FFFD for
 * what is not UTF-8.  One rule for both: an ASCII name decodes alike either way. */
static PyObject *decode(const char *name, size_t len) {
    return PyUnicode_DecodeUTF8(name, (Py_ssize_t)len, "replace");
}

/* _Symbols.name_or_empty: the name, or "" when it does not end inside the table. */
static PyObject *name_or_empty(const unsigned char *strings, uint64_t strsz, uint64_t offset) {
    size_t len = 0;
    const char *name = name_at(strings, strsz, offset, &len);
    return name != NULL ? decode(name, len) : PyUnicode_FromStringAndSize("", 0);
}

static int is_thread_atexit(const char *name, size_t len) {
    /* formats/_blockers.py THREAD_ATEXIT_SYMBOLS */
    static const char impl[] = "__cxa_thread_atexit_impl", plain[] = "__cxa_thread_atexit";
    return (len == sizeof impl - 1 && memcmp(name, impl, len) == 0) ||
           (len == sizeof plain - 1 && memcmp(name, plain, len) == 0);
}

/* formats/_elf.py _read_symbols: one pass over count entries, the exports into exports (unless
 * NULL: a table after the first), the unload blockers into b.  With a prefix (not NULL), only the
 * exports whose names start with it go into exports; every export's name is still checked to end
 * inside the table, as the Python reader checks it. */
static int read_symbols(const PhElf *elf, const unsigned char *entries, uint64_t count, const unsigned char *strings,
                        uint64_t strsz, PyObject *exports, Blockers *b, const char *prefix) {
    const size_t prefix_len = prefix != NULL ? strlen(prefix) : 0;
    const int elf64 = elf->elf64, be = elf->be;
    const uint64_t entry = elf->syment;
    for (uint64_t i = 0; i < count; i++) {
        const unsigned char *e = entries + i * entry;
        const PhSym sym = ph_read_sym(e, elf64, be);
        const uint64_t name_offset = sym.name, shndx = sym.shndx;
        const unsigned binding = sym.binding, type = sym.type, other = sym.other;
        if (shndx != 0) {
            if (binding == STB_GLOBAL || binding == STB_WEAK) {
                /* An export: untyped, object or function, default visibility, a name. */
                if (exports == NULL || (type != STT_NOTYPE && type != STT_OBJECT && type != STT_FUNC) ||
                    (other & 0x3u) != 0 || name_offset == 0) {
                    continue;
                }
                size_t len = 0;
                const char *name = name_at(strings, strsz, name_offset, &len);
                if (name == NULL) {
                    return READ_NONE; /* "its name ... runs past the end of .dynstr" */
                }
                if (len == 0 || (prefix_len && (len < prefix_len || memcmp(name, prefix, prefix_len) != 0))) {
                    continue; /* an ASCII prefix: a decoded name starts with it when its bytes do */
                }
                const uint64_t value = elf64 ? ph_rd(e + 8, 8, be) : ph_rd(e + 4, 4, be);
                PyObject *key = decode(name, len);
                PyObject *address = key != NULL ? PyLong_FromUnsignedLongLong(value) : NULL;
                const int stored = address != NULL ? PyDict_SetItem(exports, key, address) : -1;
                Py_XDECREF(key);
                Py_XDECREF(address);
                if (stored < 0) {
                    return READ_ERROR;
                }
            } else if (binding == STB_GNU_UNIQUE) {
                b->unique_count++;
                if (PyList_Size(b->unique) < MAX_UNIQUE_NAMES) {
                    PyObject *name = name_or_empty(strings, strsz, name_offset);
                    const int appended = name != NULL ? PyList_Append(b->unique, name) : -1;
                    Py_XDECREF(name);
                    if (appended < 0) {
                        return READ_ERROR;
                    }
                }
            }
        } else if ((binding == STB_GLOBAL || binding == STB_WEAK) && !b->tls) {
            /* An import: of __cxa_thread_atexit(_impl)?  Compared as bytes: a name that decodes
             * to one of them is one of them. */
            size_t len = 0;
            const char *name = name_at(strings, strsz, name_offset, &len);
            if (name != NULL && is_thread_atexit(name, len)) {
                b->tls = binding == STB_GLOBAL;
                b->weak_tls = b->weak_tls || binding == STB_WEAK;
            }
        }
    }
    return READ_OK;
}

/* _ElfTables.symbol_table (the checks of symbol_data) and _read_symbols on symbol table h. */
static int read_table(const PhImage *s, const PhElf *elf, PhShdr h, PyObject *exports, Blockers *b,
                      const char *prefix) {
    const uint64_t count = h.size / elf->syment;
    if (h.entsize != elf->syment || !ph_table_fits(h.offset, count, elf->syment, s->size) || h.link >= elf->shnum) {
        return READ_NONE;
    }
    const PhShdr strtab = ph_elf_section(elf, h.link);
    if (!ph_table_fits(strtab.offset, strtab.size, 1, s->size)) {
        return READ_NONE;
    }
    if (count * elf->syment > PH_MAX_DYNSTR_BYTES || strtab.size > PH_MAX_DYNSTR_BYTES) {
        return READ_NONE; /* a table this large is the Python reader's to judge */
    }
    unsigned char *entries_owned = NULL, *strings_owned = NULL;
    const unsigned char *entries = ph_view(s, h.offset, count * elf->syment, &entries_owned);
    const unsigned char *strings = entries != NULL ? ph_view(s, strtab.offset, strtab.size, &strings_owned) : NULL;
    int verdict = READ_NONE; /* a short read: "truncated while reading" */
    if (entries != NULL && strings != NULL) {
        verdict = read_symbols(elf, entries, count, strings, strtab.size, exports, b, prefix);
    }
    free(entries_owned);
    free(strings_owned);
    return verdict;
}

/* _ElfTables.nodelete: DF_1_NODELETE in DT_FLAGS_1 of a .dynamic section, the sections read in
 * order until one has it (a later one is not read, as in Python).  1, 0, or -1 for READ_NONE. */
static int read_nodelete(const PhImage *s, const PhElf *elf) {
    const unsigned half = elf->elf64 ? 8u : 4u;
    for (uint64_t i = 0; i < elf->shnum; i++) {
        const PhShdr h = ph_elf_section(elf, i);
        if (h.type != SHT_DYNAMIC) {
            continue;
        }
        const uint64_t count = h.size / elf->dynent;
        if (!ph_table_fits(h.offset, count, elf->dynent, s->size) || count * elf->dynent > PH_MAX_DYNAMIC_BYTES) {
            return -1;
        }
        unsigned char *owned = NULL;
        const unsigned char *entries = ph_view(s, h.offset, count * elf->dynent, &owned);
        if (entries == NULL) {
            return -1;
        }
        int found = 0;
        for (uint64_t j = 0; j < count; j++) {
            const unsigned char *e = entries + j * elf->dynent;
            const uint64_t tag = ph_rd(e, half, elf->be), value = ph_rd(e + half, half, elf->be);
            if (tag == DT_NULL) {
                break;
            }
            if (tag == DT_FLAGS_1 && (value & DF_1_NODELETE)) {
                found = 1;
                break;
            }
        }
        free(owned);
        if (found) {
            return 1;
        }
    }
    return 0;
}

/* _ElfTables.load_regions: (p_vaddr, p_filesz, p_offset) of each PT_LOAD entry, none when the
 * entries are not of the size read.  NULL with no exception set: READ_NONE. */
static PyObject *read_regions(const PhImage *s, const PhElf *elf) {
    const uint64_t used = elf->elf64 ? 56u : 32u;
    if (!elf->phnum || elf->phentsize != used) {
        return PyTuple_New(0);
    }
    unsigned char *owned = NULL; /* the extent was checked by ph_elf_open */
    const unsigned char *headers = ph_view(s, elf->phoff, elf->phnum * used, &owned);
    if (headers == NULL) {
        return NULL;
    }
    Py_ssize_t loads = 0;
    for (uint64_t i = 0; i < elf->phnum; i++) {
        loads += ph_read_phdr(headers + i * used, elf->elf64, elf->be).type == PT_LOAD;
    }
    PyObject *regions = PyTuple_New(loads);
    for (uint64_t i = 0, k = 0; regions != NULL && i < elf->phnum; i++) {
        const PhPhdr h = ph_read_phdr(headers + i * used, elf->elf64, elf->be);
        if (h.type != PT_LOAD) {
            continue;
        }
        PyObject *region = Py_BuildValue("(KKK)", (unsigned long long)h.vaddr, (unsigned long long)h.filesz,
                                         (unsigned long long)h.offset);
        if (region == NULL || PyTuple_SetItem(regions, (Py_ssize_t)k++, region) < 0) {
            Py_CLEAR(regions);
        }
    }
    free(owned);
    return regions;
}

/* elf_exports' pass over every SHT_DYNSYM table: the exports (those starting with prefix, unless
 * NULL) into exports, the unload blockers into b. */
static int read_dynsym(const PhImage *s, const PhElf *elf, PyObject *exports, Blockers *b, const char *prefix) {
    int verdict = READ_OK, tables = 0;
    for (uint64_t i = 0; i < elf->shnum && verdict == READ_OK; i++) {
        const PhShdr h = ph_elf_section(elf, i);
        if (h.type == SHT_DYNSYM) { /* the exports are the first table's; the blockers are all of them */
            verdict = read_table(s, elf, h, tables++ == 0 ? exports : NULL, b, prefix);
        }
    }
    if (verdict == READ_OK && tables == 0) {
        verdict = READ_NONE; /* "no dynamic symbol table (.dynsym)" */
    }
    return verdict;
}

static PyObject *read_exports(const PhImage *s) {
    PhElf elf;
    if (ph_elf_open(s, &elf) != PH_PASS) {
        Py_RETURN_NONE;
    }
    PyObject *exports = PyDict_New(), *result = NULL;
    Blockers b = {PyList_New(0), 0, 0, 0};
    int verdict = exports != NULL && b.unique != NULL ? READ_OK : READ_ERROR;
    if (verdict == READ_OK) {
        verdict = read_dynsym(s, &elf, exports, &b, NULL);
    }
    PyObject *regions = NULL;
    if (verdict == READ_OK) {
        regions = read_regions(s, &elf);
        if (regions == NULL) {
            verdict = PyErr_Occurred() ? READ_ERROR : READ_NONE;
        }
    }
    const int nodelete = verdict == READ_OK ? read_nodelete(s, &elf) : 0;
    if (nodelete < 0) {
        verdict = READ_NONE;
    }
    if (verdict == READ_OK) {
        PyObject *unique = PyList_AsTuple(b.unique);
        /* (e_machine, EI_CLASS, EI_DATA, exports, regions, UnloadBlockers' fields) */
        result = unique == NULL ? NULL
                                : Py_BuildValue("(kiiONNKNNN)", (unsigned long)elf.machine, elf.elf64 ? 2 : 1,
                                                elf.be ? 2 : 1, exports, regions, unique,
                                                (unsigned long long)b.unique_count, PyBool_FromLong(nodelete),
                                                PyBool_FromLong(b.tls), PyBool_FromLong(b.weak_tls && !b.tls));
        if (unique != NULL) {
            regions = NULL; /* stolen (N) */
        }
    } else if (verdict == READ_NONE) {
        result = Py_NewRef(Py_None);
    }
    Py_XDECREF(regions);
    Py_XDECREF(exports);
    Py_XDECREF(b.unique);
    ph_elf_close(&elf);
    return result;
}

/* ---- the symbol scheme: plugin_interface._abi split_symbol, and scan_library's reading -------- */

/* The roles, spelled as plugin_interface.SymbolRole's values. */
enum {
    ROLE_MAKER,
    ROLE_UNMAKER,
    ROLE_REGISTER_ALL,
    ROLE_UNREGISTER_ALL,
    ROLE_UNMAKER_COUNTER,
    ROLE_ABI_DESCRIPTOR,
    ROLE_TRAIT_DECLARATION,
};
static const char *const ROLE_NAMES[] = {"maker",          "unmaker",        "register_all",     "unregister_all",
                                         "unmaker_counter", "abi_descriptor", "trait_declaration"};

/* What abi/_check.py read_descriptor and read_declaration read first (_DESCRIPTOR_FIRST_READ,
 * _DECLARATION_FIRST_READ); a descriptor or declaration that needs more is left to Python.  These
 * three decide only where the C stops, never an answer: _scan_scheme checks every size again on the
 * bytes and reads the file the Python way whenever they are short, so a value that drifted from
 * Python's costs speed, not correctness (tests/test_scheme_scan.py compares the two readings). */
#define DESCRIPTOR_FIRST_READ 512u
#define DECLARATION_FIRST_READ 1024u
/* plugin_interface DESCRIPTOR_HEAD_SIZE (struct_size is its first word).  Only where the C stops:
 * scan_library checks the sizes again and reads again whatever the C did not read. */
#define DESCRIPTOR_HEAD_SIZE 32u

typedef struct Scheme {
    int role;
    const char *trait, *type; /* type NULL for the per-trait roles */
    size_t trait_len, type_len;
    unsigned long abi;
    int canonical; /* the _vN digits are str(N): no leading zero */
} Scheme;

static int is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_alnum(unsigned char c) { return is_alpha(c) || (c >= '0' && c <= '9'); }

/* A trait name: ASCII letters and digits, a letter first (str.isascii, isalnum, [0].isalpha). */
static int is_trait(const char *p, size_t n) {
    if (n == 0 || !is_alpha((unsigned char)p[0])) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (!is_alnum((unsigned char)p[i])) {
            return 0;
        }
    }
    return 1;
}

/* A type name: ASCII letters, digits and underscores, at least one. */
static int is_type(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum((unsigned char)p[i]) && p[i] != '_') {
            return 0;
        }
    }
    return n > 0;
}

static int is_word(const char *p, size_t n, const char *word) { return n == strlen(word) && memcmp(p, word, n) == 0; }

/* s.partition("_") of the n bytes at s: the part before (its length in *before) and the rest
 * after (NULL when there is no "_"). */
static const char *partition(const char *s, size_t n, size_t *before) {
    const char *sep = n ? memchr(s, '_', n) : NULL;
    *before = sep != NULL ? (size_t)(sep - s) : n;
    return sep != NULL ? sep + 1 : NULL;
}

/* plugin_interface split_symbol on the n bytes of a name, step by step as it is written there
 * (tests/test_scheme_scan.py holds the two to the same answer on every string).  Every name it
 * accepts is ASCII, so the bytes of a name and its decoded text parse alike.  1 and *out, or 0. */
static int split_scheme(const char *s, size_t n, Scheme *out) {
    size_t p = 0; /* head, sep, version = s.rpartition("_v") */
    int found = 0;
    for (size_t i = n > 1 ? n - 1 : 0; i-- > 0;) {
        if (s[i] == '_' && s[i + 1] == 'v') {
            p = i;
            found = 1;
            break;
        }
    }
    if (!found || p < 7 || memcmp(s, "plugin_", 7) != 0) {
        return 0;
    }
    const char *version = s + p + 2;
    const size_t version_len = n - p - 2;
    if (version_len == 0 || version_len > 9) {
        return 0;
    }
    unsigned long abi = 0;
    for (size_t i = 0; i < version_len; i++) {
        if (version[i] < '0' || version[i] > '9') {
            return 0;
        }
        abi = abi * 10u + (unsigned long)(version[i] - '0');
    }
    const char *head = s + 7;
    const size_t head_len = p - 7;
    size_t word_len = 0, second_len = 0;
    const char *rest = partition(head, head_len, &word_len); /* word, _, rest = head[7:].partition("_") */
    const size_t rest_len = rest != NULL ? head_len - word_len - 1 : 0;
    const char *trait = rest != NULL ? partition(rest, rest_len, &second_len) : NULL; /* second, _, trait */
    const size_t trait_len = trait != NULL ? rest_len - second_len - 1 : 0;
    static const struct {
        const char *word, *second;
        int role;
    } aggregates[] = {
        {"register", "all", ROLE_REGISTER_ALL},     {"unregister", "all", ROLE_UNREGISTER_ALL},
        {"unmaker", "counter", ROLE_UNMAKER_COUNTER}, {"abi", "descriptor", ROLE_ABI_DESCRIPTOR},
        {"trait", "declaration", ROLE_TRAIT_DECLARATION},
    };
    out->abi = abi;
    out->canonical = version[0] != '0' || version_len == 1;
    out->type = NULL;
    out->type_len = 0;
    if (rest != NULL && trait != NULL && is_trait(trait, trait_len)) {
        for (size_t i = 0; i < sizeof aggregates / sizeof aggregates[0]; i++) {
            if (is_word(head, word_len, aggregates[i].word) && is_word(rest, second_len, aggregates[i].second)) {
                out->role = aggregates[i].role;
                out->trait = trait;
                out->trait_len = trait_len;
                return 1;
            }
        }
    }
    if (is_word(head, word_len, "register")) {
        out->role = ROLE_MAKER;
    } else if (is_word(head, word_len, "unregister")) {
        out->role = ROLE_UNMAKER;
    } else {
        return 0;
    }
    /* trait, sep, type_name = rest.partition("_") (trait here is what followed the second "_") */
    if (rest == NULL || trait == NULL || !is_trait(rest, second_len) || !is_type(trait, trait_len)) {
        return 0;
    }
    out->trait = rest;
    out->trait_len = second_len;
    out->type = trait;
    out->type_len = trait_len;
    return 1;
}

/* The role's name (borrowed: made once, interned, kept for the life of the process). */
static PyObject *role_name(int role) {
    static PyObject *names[sizeof ROLE_NAMES / sizeof ROLE_NAMES[0]];
    if (names[role] == NULL) {
        names[role] = PyUnicode_InternFromString(ROLE_NAMES[role]);
    }
    return names[role];
}

/* (role, trait, type or None, abi) of a parse, as split_symbol answers. */
static PyObject *scheme_parts(const Scheme *m) {
    PyObject *type = m->type != NULL ? PyUnicode_FromStringAndSize(m->type, (Py_ssize_t)m->type_len)
                                     : Py_NewRef(Py_None);
    PyObject *parts = type != NULL ? Py_BuildValue("(ss#Ok)", ROLE_NAMES[m->role], m->trait,
                                                   (Py_ssize_t)m->trait_len, type, m->abi)
                                   : NULL;
    Py_XDECREF(type);
    return parts;
}

/* Up to want bytes of the file at offset, as os.pread gives them: fewer at its end.  NULL with no
 * exception set when the read fails (Python then reads and says why). */
static PyObject *read_at(const PhImage *s, uint64_t offset, size_t want) {
#if defined(_WIN32)
    (void)s, (void)offset, (void)want;
    return NULL;
#else
    unsigned char buf[DECLARATION_FIRST_READ > DESCRIPTOR_FIRST_READ ? DECLARATION_FIRST_READ : DESCRIPTOR_FIRST_READ];
    size_t got = 0;
    if (want > sizeof buf) {
        return NULL;
    }
    while (got < want) {
        const ssize_t n = pread(s->fd, buf + got, want - got, (off_t)(offset + got));
        if (n < 0) {
            return NULL;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    return PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)got);
#endif
}

/* abi/_check.py read_descriptor's or read_declaration's bytes (before decoding) of the data at
 * address: ExportTable.locate in the PT_LOAD regions, then its first read.  NULL with no exception
 * set: left to Python (not stored in the file, a read that fails or needs more, an offset past the
 * end of the file or of a C integer). */
static PyObject *read_data(const PhImage *s, const PhElf *elf, const unsigned char *headers, uint64_t address,
                           int role) {
    if (headers == NULL) {
        return NULL; /* no regions (ExportTable.regions is empty): "not stored in the file" */
    }
    const uint64_t used = elf->elf64 ? 56u : 32u;
    for (uint64_t i = 0; i < elf->phnum; i++) {
        const PhPhdr h = ph_read_phdr(headers + i * used, elf->elf64, elf->be);
        if (h.type != PT_LOAD || address < h.vaddr || address - h.vaddr >= h.filesz) {
            continue;
        }
        const uint64_t delta = address - h.vaddr;
        if (h.offset > UINT64_MAX - delta || h.offset + delta >= s->size || h.offset + delta > (uint64_t)INT64_MAX) {
            return NULL;
        }
        const size_t first = role == ROLE_ABI_DESCRIPTOR ? DESCRIPTOR_FIRST_READ : DECLARATION_FIRST_READ;
        const size_t want = h.filesz - delta < first ? (size_t)(h.filesz - delta) : first;
        PyObject *data = read_at(s, h.offset + delta, want);
        if (data == NULL) {
            return NULL;
        }
        const unsigned char *bytes = (const unsigned char *)PyBytes_AsString(data);
        const size_t got = (size_t)PyBytes_Size(data);
        if (role == ROLE_ABI_DESCRIPTOR) {
            /* descriptor_size reads struct_size from the head; larger than what was read: read again */
            if (got >= DESCRIPTOR_HEAD_SIZE && ph_rd(bytes, 4, elf->be) > got) {
                Py_DECREF(data);
                return NULL;
            }
            return data;
        }
        const unsigned char *nul = got ? memchr(bytes, '\0', got) : NULL;
        if (nul == NULL && got == first) {
            Py_DECREF(data);
            return NULL; /* no NUL in the first read: read again, up to MAX_DECLARATION_BYTES */
        }
        if (nul == NULL) {
            return data;
        }
        PyObject *text = PyBytes_FromStringAndSize((const char *)bytes, (Py_ssize_t)(nul - bytes)); /* split(b"\0") */
        Py_DECREF(data);
        return text;
    }
    return NULL;
}

/* Whether the n bytes at name start with one of the prefixes (a tuple of str). */
static int has_prefix(const char *name, size_t n, PyObject *prefixes) {
    const Py_ssize_t count = PyTuple_Size(prefixes);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t len = 0;
        const char *prefix = PyUnicode_AsUTF8AndSize(PyTuple_GetItem(prefixes, i), &len);
        if (prefix == NULL) {
            return -1;
        }
        if ((size_t)len <= n && memcmp(name, prefix, (size_t)len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The scheme's names among the exports (a dict of the "plugin_" ones, as the Python reader builds
 * it), sorted as scan_library sorts them: malformed names into malformed, the others as
 * (role, trait, type, abi, name, data) into parsed.  READ_NONE for what is left to Python. */
static int sort_scheme(const PhImage *s, const PhElf *elf, const unsigned char *headers, PyObject *exports,
                       unsigned long abi_version, PyObject *prefixes, PyObject *malformed, PyObject *parsed) {
    Py_ssize_t pos = 0;
    PyObject *key = NULL, *value = NULL;
    while (PyDict_Next(exports, &pos, &key, &value)) {
        Py_ssize_t len = 0;
        const char *name = PyUnicode_AsUTF8AndSize(key, &len);
        if (name == NULL) {
            return READ_ERROR;
        }
        Scheme m;
        if (!split_scheme(name, (size_t)len, &m)) {
            const int scheme = has_prefix(name, (size_t)len, prefixes);
            if (scheme < 0 || (scheme && PyList_Append(malformed, key) < 0)) {
                return READ_ERROR;
            }
            continue;
        }
        if (!m.canonical) {
            return READ_NONE; /* _v01 and _v1 are one key: which of the two names is read is Python's to say */
        }
        PyObject *data = NULL;
        if ((m.role == ROLE_ABI_DESCRIPTOR || m.role == ROLE_TRAIT_DECLARATION) && m.abi == abi_version) {
            const unsigned long long address = PyLong_AsUnsignedLongLong(value);
            if (PyErr_Occurred()) {
                return READ_ERROR;
            }
            data = read_data(s, elf, headers, (uint64_t)address, m.role);
            if (data == NULL) {
                return PyErr_Occurred() ? READ_ERROR : READ_NONE;
            }
        } else {
            data = Py_NewRef(Py_None);
        }
        /* (role, trait, type, abi, name, data), made directly: Py_BuildValue parses its format per call */
        PyObject *role = role_name(m.role);
        PyObject *trait = role != NULL ? PyUnicode_FromStringAndSize(m.trait, (Py_ssize_t)m.trait_len) : NULL;
        PyObject *type = trait == NULL                ? NULL
                         : m.type != NULL ? PyUnicode_FromStringAndSize(m.type, (Py_ssize_t)m.type_len)
                                          : Py_NewRef(Py_None);
        PyObject *abi = type != NULL ? PyLong_FromUnsignedLong(m.abi) : NULL;
        PyObject *entry = abi != NULL ? PyTuple_Pack(6, role, trait, type, abi, key, data) : NULL;
        Py_XDECREF(trait);
        Py_XDECREF(type);
        Py_XDECREF(abi);
        Py_DECREF(data);
        const int appended = entry != NULL ? PyList_Append(parsed, entry) : -1;
        Py_XDECREF(entry);
        if (appended < 0) {
            return READ_ERROR;
        }
    }
    return READ_OK;
}

static PyObject *scan_scheme(const PhImage *s, unsigned long abi_version, PyObject *prefixes) {
    PhElf elf;
    if (ph_elf_open(s, &elf) != PH_PASS) {
        Py_RETURN_NONE;
    }
    PyObject *exports = PyDict_New(), *malformed = PyList_New(0), *parsed = PyList_New(0), *result = NULL;
    Blockers b = {PyList_New(0), 0, 0, 0};
    int verdict = exports != NULL && malformed != NULL && parsed != NULL && b.unique != NULL ? READ_OK : READ_ERROR;
    if (verdict == READ_OK) {
        verdict = read_dynsym(s, &elf, exports, &b, "plugin_"); /* every name of the scheme starts so */
    }
    const int nodelete = verdict == READ_OK ? read_nodelete(s, &elf) : 0;
    if (nodelete < 0) {
        verdict = READ_NONE;
    }
    unsigned char *owned = NULL;
    const uint64_t used = elf.elf64 ? 56u : 32u;
    const unsigned char *headers = NULL; /* the program headers, when ExportTable.regions has them */
    if (verdict == READ_OK && elf.phnum && elf.phentsize == used) {
        headers = ph_view(s, elf.phoff, elf.phnum * used, &owned); /* the extent was checked by ph_elf_open */
        if (headers == NULL) {
            verdict = READ_NONE;
        }
    }
    if (verdict == READ_OK) {
        verdict = sort_scheme(s, &elf, headers, exports, abi_version, prefixes, malformed, parsed);
    }
    if (verdict == READ_OK) {
        PyObject *unique = PyList_AsTuple(b.unique);
        PyObject *malformed_names = unique != NULL ? PyList_AsTuple(malformed) : NULL;
        PyObject *symbols = malformed_names != NULL ? PyList_AsTuple(parsed) : NULL;
        /* (e_machine, EI_CLASS, EI_DATA, UnloadBlockers' fields, malformed, symbols) */
        if (symbols != NULL) {
            result = Py_BuildValue("(kiiNKNNNNN)", (unsigned long)elf.machine, elf.elf64 ? 2 : 1, elf.be ? 2 : 1, unique,
                                   (unsigned long long)b.unique_count, PyBool_FromLong(nodelete),
                                   PyBool_FromLong(b.tls), PyBool_FromLong(b.weak_tls && !b.tls), malformed_names,
                                   symbols);
        } else {
            Py_XDECREF(unique);
            Py_XDECREF(malformed_names);
        }
    } else if (verdict == READ_NONE) {
        result = Py_NewRef(Py_None);
    }
    free(owned);
    Py_XDECREF(exports);
    Py_XDECREF(malformed);
    Py_XDECREF(parsed);
    Py_XDECREF(b.unique);
    ph_elf_close(&elf);
    return result;
}

/* fd, size, ident of the first three arguments as an image; 0 with an exception set. */
static int image_of(PyObject *const *args, const char *function, PhImage *s) {
    const long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) {
        return 0; /* each conversion checked before the next: none runs with an exception set */
    }
    const unsigned long long size = PyLong_AsUnsignedLongLong(args[1]);
    if (size == (unsigned long long)-1 && PyErr_Occurred()) {
        return 0;
    }
    char *ident = NULL;
    Py_ssize_t ident_len = 0;
    if (PyBytes_AsStringAndSize(args[2], &ident, &ident_len) < 0) {
        return 0;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: fd must be an open descriptor", function);
        return 0;
    }
    s->fd = (int)fd;
    s->data = NULL;
    s->size = (uint64_t)size;
    s->head = (const unsigned char *)ident;
    s->head_len = (size_t)ident_len < s->size ? (size_t)ident_len : (size_t)s->size; /* never past the end */
    return 1;
}

static PyObject *elfread_scheme_scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scheme_scan(fd, size, ident, abi_version, prefixes) takes 5 arguments");
        return NULL;
    }
    PhImage s;
    if (!image_of(args, "scheme_scan", &s)) {
        return NULL;
    }
    const unsigned long abi_version = PyLong_AsUnsignedLong(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyTuple_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "scheme_scan: prefixes must be a tuple of str");
        return NULL;
    }
    return scan_scheme(&s, abi_version, args[4]);
}

static PyObject *elfread_split_symbol(PyObject *module, PyObject *arg) {
    (void)module;
    const char *name = NULL;
    Py_ssize_t len = 0;
    if (PyBytes_Check(arg)) {
        name = PyBytes_AsString(arg);
        len = PyBytes_Size(arg);
    } else if (PyUnicode_Check(arg)) {
        name = PyUnicode_AsUTF8AndSize(arg, &len);
        if (name == NULL) { /* a lone surrogate: not ASCII, so not a name of the scheme */
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    } else {
        PyErr_SetString(PyExc_TypeError, "split_symbol takes bytes or str");
        return NULL;
    }
    if (name == NULL) {
        return NULL;
    }
    Scheme m;
    if (!split_scheme(name, (size_t)len, &m)) {
        Py_RETURN_NONE;
    }
    return scheme_parts(&m);
}

static PyObject *elfread_elf_exports(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "elf_exports(fd, size, ident) takes 3 arguments");
        return NULL;
    }
    PhImage s;
    if (!image_of(args, "elf_exports", &s)) {
        return NULL;
    }
    return read_exports(&s);
}

static PyMethodDef elfread_methods[] = {
    {"elf_exports", (PyCFunction)(void (*)(void))elfread_elf_exports, METH_FASTCALL,
     "elf_exports(fd, size, ident) -> (e_machine, elf_class, byte_order, symbols, regions, unique_symbols,\n"
     "unique_count, nodelete, thread_local_destructors, weak_thread_atexit), or None: leave it to the Python reader."},
    {"scheme_scan", (PyCFunction)(void (*)(void))elfread_scheme_scan, METH_FASTCALL,
     "scheme_scan(fd, size, ident, abi_version, prefixes) -> (e_machine, elf_class, byte_order, unique_symbols,\n"
     "unique_count, nodelete, thread_local_destructors, weak_thread_atexit, malformed, symbols), or None: leave\n"
     "it to the Python reader.  symbols: (role, trait, type or None, abi, name, data) per name of the scheme,\n"
     "data the first bytes of a descriptor or declaration of abi_version (None for the other roles)."},
    {"split_symbol", (PyCFunction)(void (*)(void))elfread_split_symbol, METH_O,
     "split_symbol(name: bytes | str) -> (role, trait, type or None, abi) or None: plugin_interface.split_symbol."},
    {NULL, NULL, 0, NULL},
};

static int elfread_exec(PyObject *module) { return PyModule_AddIntConstant(module, "MAX_UNIQUE_NAMES", MAX_UNIQUE_NAMES); }

static PyModuleDef_Slot elfread_slots[] = {
    {Py_mod_exec, elfread_exec},
    {0, NULL},
};

static struct PyModuleDef elfread_module = {
    PyModuleDef_HEAD_INIT,
    "plugin_host.formats._elfread",
    "The ELF export table read in C (optional; formats/_elf.py is the reference and the fallback).",
    0,
    elfread_methods,
    elfread_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__elfread(void) { return PyModuleDef_Init(&elfread_module); }
