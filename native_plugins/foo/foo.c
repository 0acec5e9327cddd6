/* foo/foo.c -- demonstrates a plugin that uses another plugin's interface
 * (bar.h) without linking to it, and calls it through the host's lookup:
 * explicit, on-demand loading from C.  foo and bar depend on each other's
 * interface, a cycle the build graph allows because nothing is linked. */
#include <stddef.h>

#include "foo_internal.h"

/* Not thread-safe: the example is driven from one thread. */
static FooState foo_state;

void foo_bind(FooLookupFn lookup) {
    foo_state.lookup = lookup;
    foo_state.pong = NULL;
}

static BarPongFn foo_find_pong(void) {
    if (foo_state.pong == NULL && foo_state.lookup != NULL) {
        foo_state.pong = (BarPongFn)foo_state.lookup(BAR_MODULE, BAR_PONG_SYMBOL);
    }
    return foo_state.pong;
}

int foo_ping(int hops) {
    if (hops <= 0) {
        return 0;
    }
    BarPongFn pong = foo_find_pong();
    if (pong == NULL) {
        return -1;
    }
    foo_state.hops++;
    int rest = pong(hops - 1);
    return rest < 0 ? rest : rest + 1;
}

int foo_hops(void) { return foo_state.hops; }
