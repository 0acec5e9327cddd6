"""C sources of the broken plugins the untrusted-plugin tests build (issue 6).

Each is a complete plugin (a working ``English``-like Greeter) plus one defect,
selected with ``-D``: the tests compile them with the ``compile_plugin``
fixture, so every case is a real library made in the test run.
"""

from __future__ import annotations

#: A Greeter whose constructor misbehaves per define: CTOR_SEGFAULT, CTOR_EXIT (exit(3)),
#: CTOR_HANG (blocks forever), CTOR_ABORT; without a define it is a good plugin.
#: GREETING sets what it says, so tests can tell versions apart.
GREETER = r"""
/* greeter.c -- a Greeter whose constructor can be made to crash, exit or hang. */
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
