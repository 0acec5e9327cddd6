"""C sources of the broken plugins the untrusted-plugin tests build (issue 6).

Each is a complete plugin (a working ``English``-like Greeter) plus one defect,
selected with ``-D``: the tests compile them with the ``compile_plugin``
fixture, so every case is a real library made in the test run.
"""

from __future__ import annotations

#: A Greeter whose constructor misbehaves per define: CTOR_SEGFAULT, CTOR_EXIT (exit(3)),
#: CTOR_HANG (blocks forever), CTOR_ABORT, CTOR_FORK (starts a helper process that lives on);
#: without a define it is a good plugin.
#: GREETING sets what it says, so tests can tell versions apart.
GREETER = r"""
/* greeter.c -- a Greeter whose constructor can be made to crash, exit, hang or fork. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include "plugin_annotations.h"
#include "plugin_trait_greeter.h"

#ifndef GREETING
#define GREETING "Hello"
#endif

static char *say(void *self, const char *name) {
    (void)self;
    return plugin_string_format("%s, %s!", GREETING, name);
}

PLUGIN_IMPL(Greeter, Sayer, .greet = say)
PLUGIN_AGGREGATES(Greeter)

#if defined(CTOR_FORK)
/* A constructor that starts a helper process which outlives the library's load. */
__attribute__((constructor)) static void start_helper(void) {
    if (fork() == 0) {
        sleep(30);
        _exit(0);
    }
}
#endif

#if defined(CTOR_SEGFAULT) || defined(CTOR_EXIT) || defined(CTOR_HANG) || defined(CTOR_ABORT)
__attribute__((constructor)) static void misbehave(void) {
#if defined(CTOR_SEGFAULT)
    raise(SIGSEGV);
#elif defined(CTOR_EXIT)
    exit(3);
#elif defined(CTOR_HANG)
    for (;;) pause();
#else
    abort();
#endif
}
#endif
"""

#: An aggregate whose array is inconsistent: BAD_FACTORIES (factories NULL), BAD_LEN (absurd len),
#: NULL_ENTRY (a NULL registration).
INCONSISTENT = r"""
/* inconsistent.c -- plugin_register_all_Greeter_v1 returns a malformed array. */
#include <stddef.h>
#include "plugin_interface.h"
#include "plugin_trait_greeter.h"

static PluginRegistration *entries[2];
static PluginRegistrationFactory factories[2];
static PluginRegistrationArray array;

PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_Greeter_v1(void);
PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_Greeter_v1(void) {
    array.registrations = entries;
    array.len = 2;
    array.factories = factories;
#if defined(BAD_FACTORIES)
    array.factories = NULL;
#elif defined(BAD_LEN)
    array.len = (size_t)1 << 40;
#endif
    return &array;  /* NULL_ENTRY (the default): entries[] are NULL */
}

PLUGIN_EXPORT void plugin_unregister_all_Greeter_v1(PluginRegistrationArray *a);
PLUGIN_EXPORT void plugin_unregister_all_Greeter_v1(PluginRegistrationArray *a) { (void)a; }
"""

#: A library that exports no plugin symbol at all.
PLAIN = "int plain_add(int a, int b) { return a + b; }\n"

#: A Greeter whose registration data is bad in a way only the host's own reads
#: reveal (its makers and unmakers run fine): GARBAGE_TRAIT_NAME, GARBAGE_TYPE_NAME
#: and GARBAGE_VTABLE point into unmapped memory; COUNTER_AS_DATA exports
#: plugin_unmaker_counter_Greeter_v1 as data, not a function; ABS_DESCRIPTOR
#: exports plugin_abi_descriptor_Greeter_v1 at an absolute address; DUPLICATE_ENTRY
#: lists one registration twice and has no plugin_unregister_all.  Without a
#: define it is a good plugin (type "Data").  Link it with DESCRIPTOR_SOURCE for
#: a byte-identical descriptor (the C load path).
HOSTILE_DATA = r"""
/* hostile_data.c -- registration data that only the host's reads trip over. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plugin_interface.h"
#include "plugin_trait_greeter.h"

#define UNMAPPED ((const void *)(uintptr_t)0x10)

static size_t unmade;

static char *hello(void *self, const char *name) {
    (void)self;
    size_t n = strlen(name) + sizeof "Data, !";
    char *out = malloc(n);
    if (out) {
        snprintf(out, n, "Data, %s!", name);
    }
    return out;
}

static void release(void *p) { free(p); }

static const GreeterVTable vtable = {.size = sizeof(GreeterVTable), .greet = hello};

static PluginRegistration *make(void) {
    PluginRegistration *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    r->struct_size = sizeof *r;
    r->abi_version = PLUGIN_ABI_VERSION;
    r->trait_name = "Greeter";
    r->trait_version = PLUGIN_TRAIT_VERSION_Greeter;
    r->type_name = "Data";
    r->vtable = &vtable;
    r->vtable_size = (uint32_t)sizeof vtable;
    r->free_memory = release;
#if defined(GARBAGE_TRAIT_NAME)
    r->trait_name = UNMAPPED;
#elif defined(GARBAGE_TYPE_NAME)
    r->type_name = UNMAPPED;
#elif defined(GARBAGE_VTABLE)
    r->vtable = UNMAPPED;
#endif
    return r;
}

static void unmake(PluginRegistration *r) {
    free(r);
    unmade++;
}

#if defined(DUPLICATE_ENTRY)
/* The same registration twice, and no plugin_unregister_all: releasing entry
 * by entry through the factories would free it twice. */
static const PluginRegistrationFactory factories[2] = {{make, unmake}, {make, unmake}};
static PluginRegistration *entries[2];
static PluginRegistrationArray array = {entries, 2, factories};
#else
static const PluginRegistrationFactory factories[1] = {{make, unmake}};
static PluginRegistration *entries[1];
static PluginRegistrationArray array = {entries, 1, factories};
#endif

PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_Greeter_v1(void);
PLUGIN_EXPORT PluginRegistrationArray *plugin_register_all_Greeter_v1(void) {
    entries[0] = make();
#if defined(DUPLICATE_ENTRY)
    entries[1] = entries[0];
#endif
    return entries[0] ? &array : NULL;
}

#if !defined(DUPLICATE_ENTRY)
PLUGIN_EXPORT void plugin_unregister_all_Greeter_v1(PluginRegistrationArray *a);
PLUGIN_EXPORT void plugin_unregister_all_Greeter_v1(PluginRegistrationArray *a) { unmake(a->registrations[0]); }
#endif

#if defined(COUNTER_AS_DATA)
PLUGIN_EXPORT extern const size_t plugin_unmaker_counter_Greeter_v1;
PLUGIN_EXPORT const size_t plugin_unmaker_counter_Greeter_v1 = 0;
#else
PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void);
PLUGIN_EXPORT size_t plugin_unmaker_counter_Greeter_v1(void) { return unmade; }
#endif

#if defined(ABS_DESCRIPTOR)
__asm__(".globl plugin_abi_descriptor_Greeter_v1\n"
        ".type plugin_abi_descriptor_Greeter_v1, @object\n"
        ".set plugin_abi_descriptor_Greeter_v1, 0x10\n");
#endif
#if defined(ABS_DECLARATION)
__asm__(".globl plugin_trait_declaration_Greeter_v1\n"
        ".type plugin_trait_declaration_Greeter_v1, @object\n"
        ".set plugin_trait_declaration_Greeter_v1, 0x10\n");
#endif
"""

#: A descriptor byte for byte the host's, for HOSTILE_DATA's C-path variants.
DESCRIPTOR_SOURCE = r"""
/* descriptor.c -- the Greeter descriptor the macros would emit. */
#include "plugin_trait_greeter.h"
PLUGIN_EXPORT extern const GreeterAbiDescriptor plugin_abi_descriptor_Greeter_v1;
PLUGIN_EXPORT const GreeterAbiDescriptor plugin_abi_descriptor_Greeter_v1 = {
    {(uint32_t)sizeof(GreeterAbiDescriptor), PLUGIN_ABI_VERSION, PLUGIN_TRAIT_VERSION_Greeter,
     (uint32_t)sizeof(PluginRegistration), (uint32_t)sizeof(GreeterVTable), PLUGIN_TRAIT_METHOD_COUNT_Greeter,
     PLUGIN_TRAIT_FINGERPRINT_Greeter},
    {PLUGIN_TRAIT_METHOD_FINGERPRINTS_Greeter}};
"""

#: Two host-owned makers that hand out the same registration: releasing each
#: through its own unmaker would free it twice.
DUPLICATE_MAKERS = r"""
/* duplicate_makers.c -- plugin_register_Greeter_A_v1 and _B_v1 return one pointer. */
#include <stdlib.h>
#include <string.h>
#include "plugin_interface.h"
#include "plugin_trait_greeter.h"

static char *hello(void *self, const char *name) {
    (void)self;
    (void)name;
    char *out = malloc(sizeof "hello");
    if (out) {
        memcpy(out, "hello", sizeof "hello");
    }
    return out;
}

static void release(void *p) { free(p); }

static const GreeterVTable vtable = {.size = sizeof(GreeterVTable), .greet = hello};
static PluginRegistration *shared;

static PluginRegistration *make(void) {
    if (!shared) {
        shared = calloc(1, sizeof *shared);
        if (!shared) {
            return NULL;
        }
        shared->struct_size = sizeof *shared;
        shared->abi_version = PLUGIN_ABI_VERSION;
        shared->trait_name = "Greeter";
        shared->trait_version = PLUGIN_TRAIT_VERSION_Greeter;
        shared->type_name = "Shared";
        shared->vtable = &vtable;
        shared->vtable_size = (uint32_t)sizeof vtable;
        shared->free_memory = release;
    }
    return shared;
}

static void unmake(PluginRegistration *r) { free(r); }

PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_A_v1(void);
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_A_v1(void) { return make(); }
PLUGIN_EXPORT void plugin_unregister_Greeter_A_v1(PluginRegistration *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_A_v1(PluginRegistration *r) { unmake(r); }
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_B_v1(void);
PLUGIN_EXPORT PluginRegistration *plugin_register_Greeter_B_v1(void) { return make(); }
PLUGIN_EXPORT void plugin_unregister_Greeter_B_v1(PluginRegistration *r);
PLUGIN_EXPORT void plugin_unregister_Greeter_B_v1(PluginRegistration *r) { unmake(r); }
"""
