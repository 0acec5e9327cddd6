/*
 * plugin_interface.h -- the C ABI between plugin libraries and the plugin host.
 *
 * A plugin is a shared library (.so / .dll / .dylib) that exports plain C
 * symbols.  For a trait T at ABI version 1 and an implementation type Ty:
 *
 *   PluginRegistration      *plugin_register_T_Ty_v1(void);          maker
 *   void                     plugin_unregister_T_Ty_v1(PluginRegistration *);  unmaker
 *   PluginRegistrationArray *plugin_register_all_T_v1(void);          aggregate
 *   void                     plugin_unregister_all_T_v1(PluginRegistrationArray *);
 *   size_t                   plugin_unmaker_counter_T_v1(void);       unmaker calls so far
 *   const TAbiDescriptor     plugin_abi_descriptor_T_v1;              layout check (data)
 *
 * Plugin authors do not write these by hand: include "plugin_annotations.h"
 * and the generated trait header, then use PLUGIN_IMPL / PLUGIN_AGGREGATES.
 *
 * Minimal plugin:
 *
 *   #include "plugin_annotations.h"
 *   #include "plugin_trait_greeter.h"
 *
 *   static char *hello(void *self, const char *name) {
 *       (void)self;
 *       return plugin_string_format("Hello, %s!", name);
 *   }
 *   PLUGIN_IMPL(Greeter, English, .greet = hello)
 *   PLUGIN_AGGREGATES(Greeter)
 *
 * Ownership:
 *   - A maker heap-allocates one registration; only the matching unmaker frees
 *     it.  The host never frees plugin memory with its own allocator.
 *   - An array returned by plugin_register_all_T_v1 has factories != NULL and is
 *     plugin-owned: plugin_unregister_all_T_v1 releases it and every entry.
 *   - An array with factories == NULL is host-owned: the host assembled it from
 *     individual makers and releases each entry with its unmaker.
 *   - A char * (or buffer) returned by a vtable method belongs to the caller,
 *     who releases it with registration->free_memory (the plugin's allocator).
 *   - Pointer parameters (strings, buffers) stay owned by the caller; a plugin
 *     must not keep them after the call returns.
 *
 * Versioning:
 *   - PluginRegistration and every vtable start with their own size as built
 *     by the plugin.  New fields are only ever appended, so a host reads the
 *     common prefix and checks the size before touching a later field.
 *   - Incompatible changes bump PLUGIN_ABI_VERSION and the _vN symbol suffix.
 *   - plugin_abi_descriptor_T_v1 (a PluginAbiDescriptor followed by one
 *     fingerprint per vtable method) lets a host check sizes and method
 *     signatures before it calls any maker.  A new trait version may only
 *     append methods: a host accepts a plugin whose method fingerprints agree
 *     with its own on the methods both know (the README's compatibility rule).
 *
 * ABI changelog:
 *   2026-11-21  version 1 (first release).
 *   2026-11-21  version 1, compatible: PluginAbiDescriptor and the exported
 *               constant plugin_abi_descriptor_T_v1 (a host without it still
 *               loads such plugins; a plugin without it still loads).
 */
#ifndef PLUGIN_INTERFACE_H
#define PLUGIN_INTERFACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
/* The Bool marker's C spelling in generated trait headers; the same one byte
 * in C++ (GCC's and clang's <stdbool.h> define it alike as an extension). */
#  ifndef _Bool
#    define _Bool bool
#  endif
extern "C" {
#endif

/* ---- platform / compiler detection (once) ---------------------------- */
#if defined(_WIN32) || defined(__CYGWIN__)
#  define PLUGIN_PLATFORM_PE 1
#elif defined(__APPLE__) && defined(__MACH__)
#  define PLUGIN_PLATFORM_MACHO 1
#elif defined(__ELF__)
#  define PLUGIN_PLATFORM_ELF 1
#else
#  error "plugin_interface.h: unknown object format (expected ELF, PE or Mach-O)"
#endif

#ifndef PLUGIN_EXPORT
#  if defined(PLUGIN_PLATFORM_PE)
#    define PLUGIN_EXPORT __declspec(dllexport)
#  elif defined(__GNUC__) || defined(__clang__)
#    define PLUGIN_EXPORT __attribute__((visibility("default")))
#  else
#    error "plugin_interface.h: unknown compiler; define PLUGIN_EXPORT before including"
#  endif
#endif

/* A compile-time check (C11 and C++11 spell it differently); the generated
 * trait headers assert every struct field offset and size with it. */
#ifndef PLUGIN_STATIC_ASSERT
#  ifdef __cplusplus
#    define PLUGIN_STATIC_ASSERT static_assert
#  else
#    define PLUGIN_STATIC_ASSERT _Static_assert
#  endif
#endif

/* ABI version: the _vN suffix of every exported symbol. */
#define PLUGIN_ABI_VERSION 1u

/* One registered implementation of one trait. */
typedef struct PluginRegistration {
    uint32_t struct_size;    /* sizeof(PluginRegistration) as built by the plugin */
    uint32_t abi_version;    /* PLUGIN_ABI_VERSION */
    const char *trait_name;  /* "Greeter"; static storage in the plugin */
    uint32_t trait_version;  /* the trait declaration's version */
    uint32_t vtable_size;    /* sizeof(<Trait>VTable) as built by the plugin */
    const char *type_name;   /* "English"; static storage in the plugin */
    void *instance;          /* passed as the first argument of every method */
    const void *vtable;      /* const <Trait>VTable *; begins with size_t size */
    void (*free_memory)(void *ptr); /* releases what a method returned */
} PluginRegistration;

typedef struct PluginRegistrationFactory {
    PluginRegistration *(*maker)(void);
    void (*unmaker)(PluginRegistration *);
} PluginRegistrationFactory;

typedef struct PluginRegistrationArray {
    PluginRegistration **registrations;
    size_t len;
    /* Parallel to registrations; NULL means a host-owned array. */
    const PluginRegistrationFactory *factories;
} PluginRegistrationArray;

/* What a method declared to return OwnedBytes returns: len bytes at data,
 * allocated by the plugin and released by the host with the registration's
 * free_memory(data), once, after copying them (data may be NULL when len is 0). */
typedef struct PluginBytes {
    uint8_t *data;
    size_t len;
} PluginBytes;

/* The head of the exported constant plugin_abi_descriptor_T_v1, one per
 * library and trait (type TAbiDescriptor from the generated trait header,
 * which continues with uint64_t method_fingerprints[method_count]).
 * Integers only: no pointers means no relocations, so a checker reads it
 * straight from the file without loading the library. */
typedef struct PluginAbiDescriptor {
    uint32_t struct_size;       /* sizeof(TAbiDescriptor), fingerprints included */
    uint32_t abi_version;       /* PLUGIN_ABI_VERSION */
    uint32_t trait_version;     /* PLUGIN_TRAIT_VERSION_T */
    uint32_t registration_size; /* sizeof(PluginRegistration) */
    uint32_t vtable_size;       /* sizeof(TVTable) */
    uint32_t method_count;      /* entries of method_fingerprints */
    uint64_t fingerprint;       /* PLUGIN_TRAIT_FINGERPRINT_T: all method signatures */
} PluginAbiDescriptor;

#ifdef __cplusplus
}
#endif

#endif /* PLUGIN_INTERFACE_H */
