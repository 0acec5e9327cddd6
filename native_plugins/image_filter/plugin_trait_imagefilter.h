/* plugin_trait_imagefilter.h -- GENERATED from the Python declaration of trait ImageFilter v1
 * (plugin_host.examples.image_traits:ImageFilter); do not edit: regenerate with
 * `python -m plugin_annotations headers plugin_host.examples.image_traits:ImageFilter -o native_plugins/image_filter`.
 */
#ifndef PLUGIN_TRAIT_IMAGEFILTER_H
#define PLUGIN_TRAIT_IMAGEFILTER_H

#include <stddef.h>
#include <stdint.h>

#include "plugin_interface.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Filters 8-bit grey images in place. */
#ifndef PLUGIN_STRUCT_Image_DEFINED
#define PLUGIN_STRUCT_Image_DEFINED
typedef struct Image {
    uint32_t width;
    uint32_t height;
    uint32_t stride;
} Image;
PLUGIN_STATIC_ASSERT(offsetof(Image, width) == 0, "Image.width: the host expects offset 0");
PLUGIN_STATIC_ASSERT(offsetof(Image, height) == 4, "Image.height: the host expects offset 4");
PLUGIN_STATIC_ASSERT(offsetof(Image, stride) == 8, "Image.stride: the host expects offset 8");
PLUGIN_STATIC_ASSERT(sizeof(Image) == 12, "Image: the host expects 12 bytes");
#endif

#ifndef PLUGIN_STRUCT_Levels_DEFINED
#define PLUGIN_STRUCT_Levels_DEFINED
typedef struct Levels {
    float gain;
    float offset;
} Levels;
PLUGIN_STATIC_ASSERT(offsetof(Levels, gain) == 0, "Levels.gain: the host expects offset 0");
PLUGIN_STATIC_ASSERT(offsetof(Levels, offset) == 4, "Levels.offset: the host expects offset 4");
PLUGIN_STATIC_ASSERT(sizeof(Levels) == 8, "Levels: the host expects 8 bytes");
#endif

#define PLUGIN_TRAIT_VERSION_ImageFilter 1u
#define PLUGIN_TRAIT_FINGERPRINT_ImageFilter UINT64_C(0x4f7fe04b58ded5b0)

typedef struct ImageFilterVTable {
    size_t size; /* sizeof(ImageFilterVTable) as built by the plugin */
    /* What the filter does. */
    char *(*describe)(void *self);
    /* Invert every pixel; fails when ``pixels`` is shorter than the image. */
    int32_t (*invert)(void *self, const Image *image, uint8_t *pixels, size_t pixels_len, char **error);
    /* Apply ``levels`` to every pixel. */
    int32_t (*adjust)(void *self, const Image *image, uint8_t *pixels, size_t pixels_len, Levels levels, char **error);
    /* Call ``visit(row, sum of its pixels)`` per row until it returns false;
     * the rows visited.
     */
    uint32_t (*rows)(void *self, const Image *image, const uint8_t *pixels, size_t pixels_len, _Bool (*visit)(void *, uint32_t, uint64_t), void *visit_context);
    /* A new session. */
    void *(*open)(void *self, const char *label);
    /* Count the image into the session's statistics; the pixels seen so far. */
    uint64_t (*feed)(void *self, void *session, const Image *image, const uint8_t *pixels, size_t pixels_len);
    /* The session's statistics. */
    char *(*report)(void *self, void *session);
    /* Destroy a session. */
    void (*end)(void *self, void *session);
} ImageFilterVTable;

/* One fingerprint per vtable method, in order: what lets a host accept a
 * plugin built against a later version that only appended methods. */
#define PLUGIN_TRAIT_METHOD_COUNT_ImageFilter 8u
#define PLUGIN_TRAIT_METHOD_FINGERPRINTS_ImageFilter \
    UINT64_C(0x2e3623d0e517a684), \
    UINT64_C(0x05163fe4e5cea7f1), \
    UINT64_C(0x771c1b1e587c1ed7), \
    UINT64_C(0xea717c63759bc26f), \
    UINT64_C(0x60772b02da25a4f5), \
    UINT64_C(0x593c9b4eecbd7216), \
    UINT64_C(0xdacddcdad3e4e745), \
    UINT64_C(0x031c701e6617c46a)

/* The trait's declaration as plugin_trait_declaration_<T>_v1 embeds it (format:
 * plugin_interface/_declaration.py, and the README's "Self-describing plugins"). */
#define PLUGIN_TRAIT_DECLARATION_ImageFilter \
    "plugin-host-trait/1\n{\"methods\":[{\"name\":\"describe\",\"params\":[],\"returns\":\"OwnedStr\"},{\"name\":\"invert\",\"params\":[[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"MutArray[U8]\"]],\"returns\":\"Status\"},{\"name\":\"adjust\",\"params\":[[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"MutArray[U8]\"],[\"levels\",\"Levels{gain:F32@0,offset:F32@4}#8\"]],\"returns\":\"Status\"},{\"name\":\"rows\",\"params\":[[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"Array[U8]\"],[\"visit\",\"Callback[[U32, U64], Bool]\"]],\"returns\":\"U32\"},{\"name\":\"open\",\"params\":[[\"label\",\"CStr\"]],\"returns\":\"Handle[Session]\"},{\"name\":\"feed\",\"params\":[[\"session\",\"Handle[Session]\"],[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"Array[U8]\"]],\"returns\":\"U64\"},{\"name\":\"report\",\"params\":[[\"session\",\"Handle[Session]\"]],\"returns\":\"OwnedStr\"},{\"name\":\"end\",\"params\":[[\"session\",\"Drop[Session]\"]],\"returns\":\"None\"}],\"name\":\"ImageFilter\",\"version\":1}"

/* The type of plugin_abi_descriptor_ImageFilter_v1 (see PluginAbiDescriptor). */
typedef struct ImageFilterAbiDescriptor {
    PluginAbiDescriptor header;
    uint64_t method_fingerprints[8];
} ImageFilterAbiDescriptor;

#ifdef __cplusplus
}

/* C++: ImageFilterVTable without its size, for PLUGIN_IMPL (see plugin_annotations.h). */
struct ImageFilterMethods {
    char *(*describe)(void *self);
    int32_t (*invert)(void *self, const Image *image, uint8_t *pixels, size_t pixels_len, char **error);
    int32_t (*adjust)(void *self, const Image *image, uint8_t *pixels, size_t pixels_len, Levels levels, char **error);
    uint32_t (*rows)(void *self, const Image *image, const uint8_t *pixels, size_t pixels_len, _Bool (*visit)(void *, uint32_t, uint64_t), void *visit_context);
    void *(*open)(void *self, const char *label);
    uint64_t (*feed)(void *self, void *session, const Image *image, const uint8_t *pixels, size_t pixels_len);
    char *(*report)(void *self, void *session);
    void (*end)(void *self, void *session);
};

static inline constexpr ImageFilterVTable plugin_vtable_ImageFilter(ImageFilterMethods m) {
    return ImageFilterVTable{sizeof(ImageFilterVTable), m.describe, m.invert, m.adjust, m.rows, m.open, m.feed, m.report, m.end};
}

/* C++: every method as X(ctx, name, result kind, C return type, (C parameters), (arguments)),
 * in vtable order; PLUGIN_CLASS (plugin_annotations.hpp) makes its thunks from it. */
#define PLUGIN_TRAIT_METHODS_ImageFilter(X, ctx) \
    X(ctx, describe, OWNEDSTR, char *, (void *self), ()) \
    X(ctx, invert, STATUS, int32_t, (void *self, const Image *image, uint8_t *pixels, size_t pixels_len, char **error), (image, pixels, pixels_len)) \
    X(ctx, adjust, STATUS, int32_t, (void *self, const Image *image, uint8_t *pixels, size_t pixels_len, Levels levels, char **error), (image, pixels, pixels_len, levels)) \
    X(ctx, rows, SCALAR, uint32_t, (void *self, const Image *image, const uint8_t *pixels, size_t pixels_len, _Bool (*visit)(void *, uint32_t, uint64_t), void *visit_context), (image, pixels, pixels_len, , visit_context)) \
    X(ctx, open, SCALAR, void *, (void *self, const char *label), (label)) \
    X(ctx, feed, SCALAR, uint64_t, (void *self, void *session, const Image *image, const uint8_t *pixels, size_t pixels_len), (session, image, pixels, pixels_len)) \
    X(ctx, report, OWNEDSTR, char *, (void *self, void *session), (session)) \
    X(ctx, end, VOID, void, (void *self, void *session), (session))
#endif

#endif /* PLUGIN_TRAIT_IMAGEFILTER_H */
