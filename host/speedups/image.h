/* What speedups.c (the pre-check) and exports.c (the makers' read) share: the
 * bounded view of a library image, the byte-order read, and the file identity.
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
