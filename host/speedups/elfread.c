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
 * NULL: a table after the first), the unload blockers into b. */
static int read_symbols(const PhElf *elf, const unsigned char *entries, uint64_t count, const unsigned char *strings,
                        uint64_t strsz, PyObject *exports, Blockers *b) {
    const int elf64 = elf->elf64, be = elf->be;
    const uint64_t entry = elf->syment;
    for (uint64_t i = 0; i < count; i++) {
        const unsigned char *e = entries + i * entry;
        const uint64_t name_offset = ph_rd(e, 4, be);
        const unsigned info = elf64 ? e[4] : e[12];
        const unsigned other = elf64 ? e[5] : e[13];
        const uint64_t shndx = ph_rd(e + (elf64 ? 6 : 14), 2, be);
        const unsigned binding = info >> 4, type = info & 0xFu;
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
                if (len == 0) {
                    continue;
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
static int read_table(const PhImage *s, const PhElf *elf, PhShdr h, PyObject *exports, Blockers *b) {
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
        verdict = read_symbols(elf, entries, count, strings, strtab.size, exports, b);
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

static PyObject *read_exports(const PhImage *s) {
    PhElf elf;
    if (ph_elf_open(s, &elf) != PH_PASS) {
        Py_RETURN_NONE;
    }
    PyObject *exports = PyDict_New(), *result = NULL;
    Blockers b = {PyList_New(0), 0, 0, 0};
    int verdict = exports != NULL && b.unique != NULL ? READ_OK : READ_ERROR;
    int tables = 0;
    for (uint64_t i = 0; i < elf.shnum && verdict == READ_OK; i++) {
        const PhShdr h = ph_elf_section(&elf, i);
        if (h.type == SHT_DYNSYM) { /* the exports are the first table's; the blockers are all of them */
            verdict = read_table(s, &elf, h, tables++ == 0 ? exports : NULL, &b);
        }
    }
    if (verdict == READ_OK && tables == 0) {
        verdict = READ_NONE; /* "no dynamic symbol table (.dynsym)" */
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

static PyObject *elfread_elf_exports(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "elf_exports(fd, size, ident) takes 3 arguments");
        return NULL;
    }
    const long fd = PyLong_AsLong(args[0]);
    const unsigned long long size = PyLong_AsUnsignedLongLong(args[1]);
    char *ident = NULL;
    Py_ssize_t ident_len = 0;
    if (PyErr_Occurred() || PyBytes_AsStringAndSize(args[2], &ident, &ident_len) < 0) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "elf_exports: fd must be an open descriptor");
        return NULL;
    }
    PhImage s;
    s.fd = (int)fd;
    s.data = NULL;
    s.size = (uint64_t)size;
    s.head = (const unsigned char *)ident;
    s.head_len = (size_t)ident_len < s.size ? (size_t)ident_len : (size_t)s.size; /* never past the end */
    return read_exports(&s);
}

static PyMethodDef elfread_methods[] = {
    {"elf_exports", (PyCFunction)(void (*)(void))elfread_elf_exports, METH_FASTCALL,
     "elf_exports(fd, size, ident) -> (e_machine, elf_class, byte_order, symbols, regions, unique_symbols,\n"
     "unique_count, nodelete, thread_local_destructors, weak_thread_atexit), or None: leave it to the Python reader."},
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
