/* image_filter/image_filter.c -- demonstrates a user-declared trait (ImageFilter,
 * declared in ../image_traits.py; its header is generated next to this file)
 * using structs, arrays, a status result, a callback and a session object. */
#include <stdlib.h>
#include <string.h>

#include "plugin_annotations.h"
#include "plugin_trait_imagefilter.h"

typedef struct {
    char label[32];
    uint64_t pixels;
    uint64_t total;
} Stats;

static int32_t check(const Image *image, size_t len, char **error) {
    if ((size_t)image->stride * image->height > len || image->width > image->stride) {
        *error = plugin_string_format("%u rows of %u bytes (%u pixels each) do not fit %zu bytes", image->height,
                                      image->stride, image->width, len);
        return 1;
    }
    return 0;
}

static char *describe(void *self) {
    (void)self;
    return plugin_string_format("8-bit grey: invert, levels, row sums, sessions");
}

static int32_t invert(void *self, const Image *image, uint8_t *pixels, size_t len, char **error) {
    (void)self;
    if (check(image, len, error)) {
        return 1;
    }
    for (uint32_t y = 0; y < image->height; y++) {
        for (uint32_t x = 0; x < image->width; x++) {
            uint8_t *p = &pixels[(size_t)y * image->stride + x];
            *p = (uint8_t)(255 - *p);
        }
    }
    return 0;
}

static int32_t adjust(void *self, const Image *image, uint8_t *pixels, size_t len, Levels levels, char **error) {
    (void)self;
    if (check(image, len, error)) {
        return 1;
    }
    for (uint32_t y = 0; y < image->height; y++) {
        for (uint32_t x = 0; x < image->width; x++) {
            uint8_t *p = &pixels[(size_t)y * image->stride + x];
            float v = (float)*p * levels.gain + levels.offset;
            *p = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return 0;
}

static uint32_t rows(void *self, const Image *image, const uint8_t *pixels, size_t len,
                     _Bool (*visit)(void *, uint32_t, uint64_t), void *context) {
    (void)self;
    uint32_t y = 0;
    for (; y < image->height && (size_t)(y + 1) * image->stride <= len; y++) {
        uint64_t sum = 0;
        for (uint32_t x = 0; x < image->width; x++) {
            sum += pixels[(size_t)y * image->stride + x];
        }
        if (!visit(context, y, sum)) {
            break;
        }
    }
    return y;
}

static void *open_session(void *self, const char *label) {
    (void)self;
    Stats *s = calloc(1, sizeof *s);
    if (s) {
        strncpy(s->label, label, sizeof s->label - 1);
    }
    return s;
}

static uint64_t feed(void *self, void *session, const Image *image, const uint8_t *pixels, size_t len) {
    (void)self;
    Stats *s = session;
    for (uint32_t y = 0; y < image->height && (size_t)(y + 1) * image->stride <= len; y++) {
        for (uint32_t x = 0; x < image->width; x++) {
            s->total += pixels[(size_t)y * image->stride + x];
            s->pixels++;
        }
    }
    return s->pixels;
}

static char *report(void *self, void *session) {
    (void)self;
    const Stats *s = session;
    unsigned mean = s->pixels ? (unsigned)(s->total / s->pixels) : 0;
    return plugin_string_format("%s: %llu pixels, mean %u", s->label, (unsigned long long)s->pixels, mean);
}

static void end(void *self, void *session) {
    (void)self;
    free(session);
}

PLUGIN_IMPL(ImageFilter, Grey, .describe = describe, .invert = invert, .adjust = adjust, .rows = rows,
            .open = open_session, .feed = feed, .report = report, .end = end)
PLUGIN_AGGREGATES(ImageFilter)
