/*
 * plugin_annotations.h -- the macros plugin authors apply.
 *
 * Purpose: turn one line per implementation into the exported maker/unmaker
 * pair of plugin_interface.h, and one line per trait into the aggregate that
 * finds every implementation of the library at link time.
 *
 * Minimal plugin (see plugin_interface.h for the ABI itself):
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
 * Macros:
 *   PLUGIN_IMPL(T, Ty, vtable initialisers...)
 *       Stateless implementation: the instance pointer is a non-NULL dummy.
 *   PLUGIN_IMPL_WITH_STATE(T, Ty, new_fn, free_fn, vtable initialisers...)
 *       void *new_fn(void) makes the instance (NULL = failure, the maker then
 *       returns NULL); void free_fn(void *) releases it in the unmaker.
 *   PLUGIN_AGGREGATES(T)
 *       Once per library per trait: plugin_register_all_T_v1,
 *       plugin_unregister_all_T_v1, plugin_unmaker_counter_T_v1 and the ABI
 *       descriptor plugin_abi_descriptor_T_v1.
 *   PLUGIN_UNMAKER_COUNTER(T)
 *       Only the counter reader and the ABI descriptor, for a library with
 *       PLUGIN_IMPLs of T but no aggregate (the host then assembles a
 *       host-owned array itself).  Never together with PLUGIN_AGGREGATES(T),
 *       which already includes it.
 *   plugin_string_format(fmt, ...)
 *       malloc'd printf; what methods return as char * (released by the host
 *       through registration->free_memory).
 *
 * Link-time collection (the role Rust's `inventory` crate plays):
 *   ELF (default): each PLUGIN_IMPL puts its factory in the linker section
 *   "plugin_factories_T"; the aggregate walks __start_/__stop_ symbols, which
 *   the linker defines per shared object (declared hidden here).
 *   PE and Mach-O, or ELF with -DPLUGIN_COLLECT_WITH_CONSTRUCTORS: each
 *   PLUGIN_IMPL adds a node to a per-library list from a constructor that runs
 *   when the library is loaded.  Mach-O section names are limited to 16
 *   characters, which is why the constructor path is used there.
 *
 * Per-library shared state (the unmaker counter, the constructor list head)
 * is a weak hidden definition, so any number of translation units of one
 * library share one copy and separate libraries never share it.
 *
 * Supported compilers: gcc and clang (also `zig cc`), C11.  MSVC lacks
 * weak definitions and __start_/__stop_ symbols and is rejected with #error.
 *
 * Embedded declaration: plugin_trait_declaration_T_v1 is a const char array,
 * the trait's declaration as text (PLUGIN_TRAIT_DECLARATION_T), emitted with
 * the descriptor; no pointers, so it too is read from the file alone.
 *
 * ABI descriptor: plugin_abi_descriptor_T_v1 is a const TAbiDescriptor
 * (sizes, versions and method fingerprints of the trait header this library
 * was compiled against), defined once per library per trait by the macro
 * that is itself once per library per trait (PLUGIN_UNMAKER_COUNTER, which
 * PLUGIN_AGGREGATES includes).  The host reads it before calling any maker.
 *
 * Changelog:
 *   2026-11-21  first release (ABI version 1).
 *   2026-11-21  PLUGIN_UNMAKER_COUNTER (and so PLUGIN_AGGREGATES) also exports
 *               plugin_abi_descriptor_T_v1 (compatible).
 *   2026-12-01  ... and plugin_trait_declaration_T_v1, the trait's declaration
 *               (PLUGIN_TRAIT_DECLARATION_T of the generated header), so a host
 *               or tool with no Python declaration knows the methods
 *               (compatible; headers must be regenerated).
 */
#ifndef PLUGIN_ANNOTATIONS_H
#define PLUGIN_ANNOTATIONS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#ifndef __cplusplus
#  include <stdatomic.h>
#endif

#include "plugin_interface.h"

#if !defined(__GNUC__) && !defined(__clang__)
#  error "plugin_annotations.h: needs gcc or clang (weak symbols, constructors)"
#endif

#if !defined(PLUGIN_COLLECT_WITH_CONSTRUCTORS) && !defined(PLUGIN_PLATFORM_ELF)
#  define PLUGIN_COLLECT_WITH_CONSTRUCTORS 1
#endif

/* C and C++ translation units get the same C symbols: in C++ every generated
 * definition is wrapped in extern "C" (PLUGIN__BEGIN_C / PLUGIN__END_C). */
#ifdef __cplusplus
#  define PLUGIN__BEGIN_C extern "C" {
#  define PLUGIN__END_C }
#  define PLUGIN__STATIC_ASSERT static_assert
/* g++ ignores (and warns about) the attribute repeated on a const's definition. */
#  define PLUGIN__EXPORT_DEFINITION
#else
#  define PLUGIN__EXPORT_DEFINITION PLUGIN_EXPORT
#  define PLUGIN__BEGIN_C
#  define PLUGIN__END_C
#  define PLUGIN__STATIC_ASSERT _Static_assert
#endif

/* Per-library shared definition: one copy per linked library. */
#if defined(PLUGIN_PLATFORM_PE)
#  define PLUGIN__LIBRARY_SHARED __attribute__((weak))
#else
#  define PLUGIN__LIBRARY_SHARED __attribute__((weak, visibility("hidden")))
#endif

/* malloc'd printf; NULL when out of memory. */
static inline char *plugin_string_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *plugin_string_format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *out = (char *)malloc((size_t)n + 1);
    if (!out) {
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

/* What registration->free_memory points at: this library's free(), unless the
 * plugin defines PLUGIN_FREE_MEMORY as its own void (*)(void *) (declared before
 * its PLUGIN_IMPLs), e.g. to release through another allocator. */
static inline void plugin__free_memory(void *ptr) { free(ptr); }
#ifndef PLUGIN_FREE_MEMORY
#  define PLUGIN_FREE_MEMORY plugin__free_memory
#endif

static const char plugin__stateless_instance = 0;
static inline void *plugin_stateless_new(void) { return (void *)&plugin__stateless_instance; }
static inline void plugin_stateless_free(void *instance) { (void)instance; }

/* ---- link-time collection ---------------------------------------------- */

typedef struct PluginFactoryNode {
    const PluginRegistrationFactory *factory;
    struct PluginFactoryNode *next;
} PluginFactoryNode;

#if defined(PLUGIN_COLLECT_WITH_CONSTRUCTORS)
/* The list head: as with the counter, C repeats a tentative weak definition;
 * C++ declares it weak in PLUGIN_IMPL (a library without an aggregate has no
 * list, and its constructors then add nothing) and PLUGIN_AGGREGATES defines it. */
#  ifdef __cplusplus
#    define PLUGIN__DECLARE_COLLECTION(T) \
    extern PLUGIN__LIBRARY_SHARED PluginFactoryNode *plugin__factory_list_##T;
#    define PLUGIN__DEFINE_COLLECTION(T) \
    PLUGIN__DECLARE_COLLECTION(T)        \
    PLUGIN__LIBRARY_SHARED PluginFactoryNode *plugin__factory_list_##T = nullptr;
#    define PLUGIN__HAS_COLLECTION(T) (&plugin__factory_list_##T != nullptr)
#  else
#    define PLUGIN__DECLARE_COLLECTION(T) \
    PLUGIN__LIBRARY_SHARED PluginFactoryNode *plugin__factory_list_##T;
#    define PLUGIN__DEFINE_COLLECTION(T) PLUGIN__DECLARE_COLLECTION(T)
#    define PLUGIN__HAS_COLLECTION(T) 1
#  endif
#  define PLUGIN__SUBMIT(T, Ty)                                                    \
    PLUGIN__DECLARE_COLLECTION(T)                                                \
    static PluginFactoryNode plugin__node_##T##_##Ty = {&plugin__factory_##T##_##Ty, NULL}; \
    __attribute__((constructor)) static void plugin__submit_##T##_##Ty(void) {   \
        if (PLUGIN__HAS_COLLECTION(T)) {                                         \
            plugin__node_##T##_##Ty.next = plugin__factory_list_##T;             \
            plugin__factory_list_##T = &plugin__node_##T##_##Ty;                 \
        }                                                                        \
    }
#  define PLUGIN__FACTORY_ATTRS(T)
#else
#  define PLUGIN__DECLARE_COLLECTION(T)                                                  \
    extern const PluginRegistrationFactory __start_plugin_factories_##T[]                \
        __attribute__((weak, visibility("hidden")));                                     \
    extern const PluginRegistrationFactory __stop_plugin_factories_##T[]                 \
        __attribute__((weak, visibility("hidden")));
#  define PLUGIN__DEFINE_COLLECTION(T) PLUGIN__DECLARE_COLLECTION(T)
#  define PLUGIN__SUBMIT(T, Ty)
#  define PLUGIN__FACTORY_ATTRS(T) \
    __attribute__((used, section("plugin_factories_" #T), aligned(sizeof(void *))))
#endif

/* ---- shared helpers used by the generated functions -------------------- */

static inline PluginRegistrationArray *plugin__array_new(size_t len) {
    PluginRegistrationArray *a = (PluginRegistrationArray *)calloc(1, sizeof *a);
    if (!a) {
        return NULL;
    }
    a->registrations = (PluginRegistration **)calloc(len ? len : 1, sizeof *a->registrations);
    PluginRegistrationFactory *f =
        (PluginRegistrationFactory *)calloc(len ? len : 1, sizeof *f);
    if (!a->registrations || !f) {
        free(a->registrations);
        free(f);
        free(a);
        return NULL;
    }
    a->factories = f;
    return a;
}

/* Calls the makers; on any failure unmakes what was made and returns NULL. */
static inline PluginRegistrationArray *plugin__array_fill(PluginRegistrationArray *a) {
    for (size_t i = 0; i < a->len; i++) {
        a->registrations[i] = a->factories[i].maker();
        if (!a->registrations[i]) {
            while (i-- > 0) {
                a->factories[i].unmaker(a->registrations[i]);
            }
            free(a->registrations);
            free((void *)a->factories);
            free(a);
            return NULL;
        }
    }
    return a;
}

static inline void plugin__array_free(PluginRegistrationArray *a) {
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->len; i++) {
        if (a->factories && a->registrations[i]) {
            a->factories[i].unmaker(a->registrations[i]);
        }
    }
    free(a->registrations);
    free((void *)a->factories);
    free(a);
}

#define PLUGIN__COUNTER(T) plugin__unmaker_count_##T

/* The per-library counter.  C: a tentative weak definition, so it may be
 * repeated in one translation unit and across all units of one library.
 * C++ has no tentative definitions: PLUGIN_IMPL only declares it (weak, so a
 * library with no counter macro links and simply does not count) and
 * PLUGIN_UNMAKER_COUNTER defines it, once per library.  Both languages name
 * the same size_t-sized symbol, so C and C++ units of one library share it. */
#ifdef __cplusplus
#  define PLUGIN__COUNTER_DEFS(T) \
    extern PLUGIN__LIBRARY_SHARED size_t PLUGIN__COUNTER(T);
#  define PLUGIN__COUNTER_DEFINITION(T) \
    PLUGIN__COUNTER_DEFS(T)           \
    PLUGIN__LIBRARY_SHARED size_t PLUGIN__COUNTER(T) = 0;
#  define PLUGIN__COUNTER_ADD(T)                                          \
    if (&PLUGIN__COUNTER(T) != nullptr) {                                 \
        __atomic_fetch_add(&PLUGIN__COUNTER(T), 1, __ATOMIC_SEQ_CST);     \
    }
#  define PLUGIN__COUNTER_LOAD(T) __atomic_load_n(&PLUGIN__COUNTER(T), __ATOMIC_SEQ_CST)
#else
#  define PLUGIN__COUNTER_DEFS(T) \
    PLUGIN__LIBRARY_SHARED _Atomic size_t PLUGIN__COUNTER(T);
#  define PLUGIN__COUNTER_DEFINITION(T) PLUGIN__COUNTER_DEFS(T)
#  define PLUGIN__COUNTER_ADD(T) atomic_fetch_add(&PLUGIN__COUNTER(T), 1);
#  define PLUGIN__COUNTER_LOAD(T) atomic_load(&PLUGIN__COUNTER(T))
#endif

/* The instance maker and releaser of PLUGIN_IMPL_WITH_STATE: in C++ an
 * exception from either stops at the boundary (the maker then returns NULL). */
#if defined(__cplusplus) && (defined(__cpp_exceptions) || defined(__EXCEPTIONS))
template <class F>
static inline void *plugin__call_new(F f) noexcept {
    try {
        return f();
    } catch (...) {
        return nullptr;
    }
}
template <class F>
static inline void plugin__call_free(F f, void *instance) noexcept {
    try {
        f(instance);
    } catch (...) {
    }
}
#  define PLUGIN__CALL_NEW(new_fn) plugin__call_new(new_fn)
#  define PLUGIN__CALL_FREE(free_fn, instance) plugin__call_free(free_fn, instance)
#else
#  define PLUGIN__CALL_NEW(new_fn) new_fn()
#  define PLUGIN__CALL_FREE(free_fn, instance) free_fn(instance)
#endif

/* The vtable initialiser: C takes designated initialisers after .size; C++
 * builds it from the generated <T>Methods struct (C++20 designated
 * initialisers `.greet = f`, or in C++17 the functions in method order). */
#ifdef __cplusplus
#  define PLUGIN__VTABLE_INIT(T, ...) plugin_vtable_##T(T##Methods{__VA_ARGS__})
#else
#  define PLUGIN__VTABLE_INIT(T, ...) {.size = sizeof(T##VTable), __VA_ARGS__}
#endif

/* The exported ABI descriptor of T: integers only (no relocations), so it
 * can be read from the file without loading the library.  The static
 * assertion catches a trait header whose vtable and method count disagree. */
#define PLUGIN__ABI_DESCRIPTOR(T)                                                     \
    PLUGIN__STATIC_ASSERT(sizeof(T##VTable) ==                                               \
                       sizeof(size_t) + PLUGIN_TRAIT_METHOD_COUNT_##T * sizeof(void (*)(void)), \
                   "plugin_annotations.h: " #T "VTable does not match its method count"); \
    PLUGIN_EXPORT extern const T##AbiDescriptor plugin_abi_descriptor_##T##_v1;     \
    PLUGIN__EXPORT_DEFINITION const T##AbiDescriptor plugin_abi_descriptor_##T##_v1 = { \
        {(uint32_t)sizeof(T##AbiDescriptor), PLUGIN_ABI_VERSION,                      \
         PLUGIN_TRAIT_VERSION_##T, (uint32_t)sizeof(PluginRegistration),              \
         (uint32_t)sizeof(T##VTable), PLUGIN_TRAIT_METHOD_COUNT_##T,                  \
         PLUGIN_TRAIT_FINGERPRINT_##T},                                               \
        {PLUGIN_TRAIT_METHOD_FINGERPRINTS_##T}};                                      \
    PLUGIN_EXPORT extern const char plugin_trait_declaration_##T##_v1[];              \
    PLUGIN__EXPORT_DEFINITION const char plugin_trait_declaration_##T##_v1[] =          \
        PLUGIN_TRAIT_DECLARATION_##T;

/* Exports plugin_unmaker_counter_T_v1 and plugin_abi_descriptor_T_v1.
 * PLUGIN_AGGREGATES includes it; use this alone in a library that has
 * PLUGIN_IMPLs but no aggregate. */
#define PLUGIN_UNMAKER_COUNTER(T)                                 \
    PLUGIN__BEGIN_C                                               \
    PLUGIN__COUNTER_DEFINITION(T)                                 \
    PLUGIN__ABI_DESCRIPTOR(T)                                     \
    PLUGIN_EXPORT size_t plugin_unmaker_counter_##T##_v1(void);   \
    PLUGIN_EXPORT size_t plugin_unmaker_counter_##T##_v1(void) {  \
        return PLUGIN__COUNTER_LOAD(T);                           \
    }                                                             \
    PLUGIN__END_C

/* ---- public macros -------------------------------------------------------- */

#define PLUGIN_IMPL_WITH_STATE(T, Ty, new_fn, free_fn, ...)                          \
    PLUGIN__BEGIN_C                                                                   \
    PLUGIN__COUNTER_DEFS(T)                                                           \
    static const T##VTable plugin__vtable_##T##_##Ty =                                \
        PLUGIN__VTABLE_INIT(T, __VA_ARGS__);                                          \
    PLUGIN_EXPORT PluginRegistration *plugin_register_##T##_##Ty##_v1(void);          \
    PLUGIN_EXPORT void plugin_unregister_##T##_##Ty##_v1(PluginRegistration *reg);    \
    PLUGIN_EXPORT PluginRegistration *plugin_register_##T##_##Ty##_v1(void) {         \
        PluginRegistration *reg = (PluginRegistration *)calloc(1, sizeof *reg);       \
        if (!reg) {                                                                   \
            return NULL;                                                              \
        }                                                                             \
        reg->struct_size = (uint32_t)sizeof *reg;                                     \
        reg->abi_version = PLUGIN_ABI_VERSION;                                        \
        reg->trait_name = #T;                                                         \
        reg->trait_version = PLUGIN_TRAIT_VERSION_##T;                                \
        reg->vtable_size = (uint32_t)sizeof(T##VTable);                               \
        reg->type_name = #Ty;                                                         \
        reg->vtable = &plugin__vtable_##T##_##Ty;                                     \
        reg->free_memory = PLUGIN_FREE_MEMORY;                                        \
        reg->instance = PLUGIN__CALL_NEW(new_fn);                                     \
        if (!reg->instance) {                                                         \
            free(reg);                                                                \
            return NULL;                                                              \
        }                                                                             \
        return reg;                                                                   \
    }                                                                                 \
    PLUGIN_EXPORT void plugin_unregister_##T##_##Ty##_v1(PluginRegistration *reg) {   \
        if (!reg) {                                                                   \
            return;                                                                   \
        }                                                                             \
        PLUGIN__CALL_FREE(free_fn, reg->instance);                                    \
        free(reg);                                                                    \
        PLUGIN__COUNTER_ADD(T)                                                        \
    }                                                                                 \
    static const PluginRegistrationFactory plugin__factory_##T##_##Ty                 \
        PLUGIN__FACTORY_ATTRS(T) = {plugin_register_##T##_##Ty##_v1,                  \
                                    plugin_unregister_##T##_##Ty##_v1};               \
    PLUGIN__SUBMIT(T, Ty)                                                             \
    PLUGIN__END_C

#define PLUGIN_IMPL(T, Ty, ...) \
    PLUGIN_IMPL_WITH_STATE(T, Ty, plugin_stateless_new, plugin_stateless_free, __VA_ARGS__)

#if defined(PLUGIN_COLLECT_WITH_CONSTRUCTORS)
#  define PLUGIN__COLLECT(T)                                                       \
    size_t len = 0;                                                                \
    for (PluginFactoryNode *n = plugin__factory_list_##T; n; n = n->next) {        \
        len++;                                                                     \
    }                                                                              \
    PluginRegistrationArray *a = plugin__array_new(len);                           \
    if (!a) {                                                                      \
        return NULL;                                                               \
    }                                                                              \
    PluginRegistrationFactory *f = (PluginRegistrationFactory *)a->factories;      \
    for (PluginFactoryNode *n = plugin__factory_list_##T; n; n = n->next) {        \
        f[a->len++] = *n->factory;                                                 \
    }
#else
#  define PLUGIN__COLLECT(T)                                                       \
    const PluginRegistrationFactory *begin = __start_plugin_factories_##T;         \
    const PluginRegistrationFactory *end = __stop_plugin_factories_##T;            \
    size_t len = (begin && end) ? (size_t)(end - begin) : 0;                       \
    PluginRegistrationArray *a = plugin__array_new(len);                           \
    if (!a) {                                                                      \
        return NULL;                                                               \
    }                                                                              \
    PluginRegistrationFactory *f = (PluginRegistrationFactory *)a->factories;      \
    for (size_t i = 0; i < len; i++) {                                             \
        f[a->len++] = begin[i];                                                    \
    }
#endif

#define PLUGIN_AGGREGATES(T)                                                          \
    PLUGIN_UNMAKER_COUNTER(T)                                                         \
    PLUGIN__BEGIN_C                                                                   \
    PLUGIN__DEFINE_COLLECTION(T)                                                      \
    PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_##T##_v1(void);        \
    PLUGIN_EXPORT void plugin_unregister_all_##T##_v1(PluginRegistrationArray *array); \
    PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_##T##_v1(void) {       \
        PLUGIN__COLLECT(T)                                                            \
        return plugin__array_fill(a);                                                 \
    }                                                                                 \
    PLUGIN_EXPORT void plugin_unregister_all_##T##_v1(PluginRegistrationArray *array) { \
        plugin__array_free(array);                                                    \
    }                                                                                 \
    PLUGIN__END_C

#endif /* PLUGIN_ANNOTATIONS_H */
