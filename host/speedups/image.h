/* What speedups.c (the pre-check), exports.c (the makers' read) and elfread.c
 * (plugin_host.formats._elfread, the export table) share: the bounded view of a
 * library image, the byte-order read, the ELF header and section headers, and
 * the file identity.
 * One source for each, included by both (static inline: no symbol, no warning
 * where a file leaves one unused).  Include after the system headers. */
#ifndef PLUGIN_HOST_SPEEDUPS_IMAGE_H
#define PLUGIN_HOST_SPEEDUPS_IMAGE_H

#include "speedups.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#include <sys/stat.h>
#include <unistd.h>
#endif

/* The prefix of every plugin symbol a file is judged by (plugin_interface's register prefix). */
#define PH_PLUGIN_PREFIX "plugin_register_"

/* A library image: all of it in memory (data), or a file read with pread whose
 * first head_len bytes are in head. */
typedef struct PhImage {
    int fd;                    /* read with pread when data is NULL */
    const unsigned char *data; /* the whole image, or NULL */
    uint64_t size;
    const unsigned char *head; /* the first head_len bytes */
    size_t head_len;
} PhImage;

/* Bytes [offset, offset + length) of the image, all of them or NULL (outside
 * it, or a failed read: the file shrank, which the Python reader calls
 * "truncated while reading").  A result not in memory already is malloc'ed
 * into *owned, for the caller to free. */
static inline const unsigned char *ph_view(const PhImage *im, uint64_t offset, uint64_t length,
                                           unsigned char **owned) {
    *owned = NULL;
    if (offset > im->size || length > im->size - offset) {
        return NULL;
    }
    if (im->data != NULL) {
        return im->data + offset;
    }
    if (offset + length <= im->head_len) {
        return im->head + offset;
    }
    if (length == 0) {
        static const unsigned char nothing = 0;
        return &nothing; /* no bytes to read, and malloc(0) may say NULL */
    }
#if defined(_WIN32)
    return NULL;
#else
    unsigned char *buf = malloc((size_t)length);
    if (buf == NULL) {
        return NULL;
    }
    size_t got = 0;
    while (got < length) {
        ssize_t n = pread(im->fd, buf + got, (size_t)length - got, (off_t)(offset + got));
        if (n <= 0) {
            free(buf);
            return NULL;
        }
        got += (size_t)n;
    }
    *owned = buf;
    return buf;
#endif
}

/* An unsigned integer of width bytes at p, in the image's byte order. */
static inline uint64_t ph_rd(const unsigned char *p, unsigned width, int big_endian) {
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++) {
        unsigned shift = big_endian ? 8u * (width - 1u - i) : 8u * i;
        v |= (uint64_t)p[i] << shift;
    }
    return v;
}

/* ---- ELF: what exports.c (the makers) and elfread.c (the export table) both read ---- */

/* formats/_table.py check_table: count entries of entry bytes at offset lie inside an image of size bytes. */
static inline int ph_table_fits(uint64_t offset, uint64_t count, uint64_t entry, uint64_t size) {
    return entry > 0 && offset <= size && count <= (size - offset) / entry;
}

typedef struct PhShdr {
    uint64_t type, offset, size, link, entsize;
} PhShdr;

/* formats/_elf.py _section_struct: sh_type, sh_offset, sh_size, sh_link, sh_entsize of one entry. */
static inline PhShdr ph_read_shdr(const unsigned char *p, int elf64, int be) {
    PhShdr h;
    h.type = ph_rd(p + 4, 4, be);
    if (elf64) {
        h.offset = ph_rd(p + 24, 8, be);
        h.size = ph_rd(p + 32, 8, be);
        h.link = ph_rd(p + 40, 4, be);
        h.entsize = ph_rd(p + 56, 8, be);
    } else {
        h.offset = ph_rd(p + 16, 4, be);
        h.size = ph_rd(p + 20, 4, be);
        h.link = ph_rd(p + 24, 4, be);
        h.entsize = ph_rd(p + 36, 4, be);
    }
    return h;
}

typedef struct PhSym {
    uint64_t name, shndx;
    unsigned binding, type, other;
} PhSym;

/* formats/_elf.py symbol_table: st_name, the binding and type of st_info, st_other, st_shndx of one
 * .dynsym entry (st_value is read where it is used: the maker look-up has no need of it). */
static inline PhSym ph_read_sym(const unsigned char *e, int elf64, int be) {
    PhSym sym;
    const unsigned info = elf64 ? e[4] : e[12];
    sym.name = ph_rd(e, 4, be);
    sym.other = elf64 ? e[5] : e[13];
    sym.shndx = ph_rd(e + (elf64 ? 6 : 14), 2, be);
    sym.binding = info >> 4;
    sym.type = info & 0xFu;
    return sym;
}

typedef struct PhPhdr {
    uint64_t type, offset, vaddr, filesz;
} PhPhdr;

/* formats/_elf.py _elf_structs: p_type, p_offset, p_vaddr, p_filesz of one program header entry. */
static inline PhPhdr ph_read_phdr(const unsigned char *p, int elf64, int be) {
    PhPhdr h;
    h.type = ph_rd(p, 4, be);
    if (elf64) {
        h.offset = ph_rd(p + 8, 8, be);
        h.vaddr = ph_rd(p + 16, 8, be);
        h.filesz = ph_rd(p + 32, 8, be);
    } else {
        h.offset = ph_rd(p + 4, 4, be);
        h.vaddr = ph_rd(p + 8, 4, be);
        h.filesz = ph_rd(p + 16, 4, be);
    }
    return h;
}

/* The ELF header and section headers of an image, as formats/_elf.py _ElfTables reads them. */
typedef struct PhElf {
    int elf64, be;
    uint64_t machine, phoff, phentsize, phnum;
    uint64_t shnum;                     /* section headers (0 without any) */
    uint64_t shent, syment, dynent;     /* bytes of a section header, a symbol, a dynamic entry */
    const unsigned char *sections;      /* shnum * shent bytes */
    unsigned char *sections_owned;      /* what to free (ph_elf_close) */
} PhElf;

/* _ElfTables.__init__ on the image: the identity, the header of its class, the program headers'
 * extent, and the section headers (extended numbering included) read whole.  PH_PASS, or PH_FAIL
 * where the Python reader raises (a short read included), or PH_UNSUPPORTED (131072 sections and
 * more: the Python reader decides).  On PH_PASS the caller calls ph_elf_close. */
static inline int ph_elf_open(const PhImage *s, PhElf *elf) {
    const uint64_t size = s->size;
    const size_t ident_len = s->head_len < 64 ? s->head_len : 64;
    const unsigned char *e = s->head;
    memset(elf, 0, sizeof *elf);
    if (ident_len < 6 || memcmp(e, "\177ELF", 4) != 0 || (e[4] != 1 && e[4] != 2) || (e[5] != 1 && e[5] != 2)) {
        return PH_FAIL;
    }
    const int elf64 = e[4] == 2, be = e[5] == 2;
    if (ident_len < (elf64 ? 64u : 52u)) {
        return PH_FAIL;
    }
    elf->elf64 = elf64;
    elf->be = be;
    elf->machine = ph_rd(e + 18, 2, be);
    elf->phoff = elf64 ? ph_rd(e + 32, 8, be) : ph_rd(e + 28, 4, be);
    const uint64_t shoff = elf64 ? ph_rd(e + 40, 8, be) : ph_rd(e + 32, 4, be);
    const unsigned char *t = e + (elf64 ? 54 : 42);
    elf->phentsize = ph_rd(t, 2, be);
    elf->phnum = ph_rd(t + 2, 2, be);
    const uint64_t shentsize = ph_rd(t + 4, 2, be);
    uint64_t shnum = ph_rd(t + 6, 2, be);
    const uint64_t shent = elf64 ? 64 : 40;
    elf->shent = shent;
    elf->syment = elf64 ? 24 : 16;
    elf->dynent = elf64 ? 16 : 8;
    if (elf->phnum && !ph_table_fits(elf->phoff, elf->phnum, elf->phentsize, size)) {
        return PH_FAIL;
    }
    if (shoff && shentsize != shent) {
        return PH_FAIL;
    }
    unsigned char *owned = NULL;
    if (shoff && !shnum) { /* extended numbering: section 0's sh_size holds the count */
        if (!ph_table_fits(shoff, 1, shent, size)) {
            return PH_FAIL;
        }
        const unsigned char *first = ph_view(s, shoff, shent, &owned);
        if (first == NULL) {
            return PH_FAIL;
        }
        shnum = elf64 ? ph_rd(first + 32, 8, be) : ph_rd(first + 20, 4, be);
        free(owned);
    } else if (!shoff) {
        shnum = 0;
    }
    if (!ph_table_fits(shoff, shnum, shent, size)) {
        return PH_FAIL;
    }
    if (shnum > PH_MAX_DYNAMIC_BYTES / 8) {
        return PH_UNSUPPORTED;
    }
    if (shnum) {
        elf->sections = ph_view(s, shoff, shnum * shent, &owned);
        if (elf->sections == NULL) {
            return PH_FAIL;
        }
        elf->sections_owned = owned;
    }
    elf->shnum = shnum;
    return PH_PASS;
}

static inline void ph_elf_close(PhElf *elf) {
    free(elf->sections_owned);
    elf->sections_owned = NULL;
    elf->sections = NULL;
}

/* Section index's header (index below elf->shnum). */
static inline PhShdr ph_elf_section(const PhElf *elf, uint64_t index) {
    return ph_read_shdr(elf->sections + index * elf->shent, elf->elf64, elf->be);
}

#if !defined(_WIN32)
/* What ph_precheck_paths calls a file's identity (see speedups.h), in the order of
 * plugin_host.loading._accel.identity_of (tests/test_speedups.py compares them). */
static inline void ph_identity_of(const struct stat *st, unsigned char *out) {
#if defined(__APPLE__)
    const struct timespec mtime = st->st_mtimespec, ctime = st->st_ctimespec;
#else
    const struct timespec mtime = st->st_mtim, ctime = st->st_ctim;
#endif
    const uint64_t words[PH_IDENTITY_WORDS] = {
        (uint64_t)st->st_dev,
        (uint64_t)st->st_ino,
        (uint64_t)st->st_size,
        (uint64_t)mtime.tv_sec,
        (uint64_t)mtime.tv_nsec,
        (uint64_t)ctime.tv_sec, /* what a rewrite with its mtime put back cannot hide */
        (uint64_t)ctime.tv_nsec,
        (uint64_t)st->st_mode,
        (uint64_t)st->st_uid,
    };
    memcpy(out, words, sizeof words);
}
#endif

#endif
