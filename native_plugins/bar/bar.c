/* bar/bar.c -- foo's partner: uses foo's interface (foo.h) and calls
 * foo_ping through the host's lookup; see foo/foo.c. */
#include <stddef.h>

#include "bar_internal.h"

/* Not thread-safe: the example is driven from one thread. */
static BarState bar_state;

void bar_bind(FooLookupFn lookup) {
    bar_state.lookup = lookup;
    bar_state.ping = NULL;
}

static FooPingFn bar_find_ping(void) {
    if (bar_state.ping == NULL && bar_state.lookup != NULL) {
        bar_state.ping = (FooPingFn)bar_state.lookup(FOO_MODULE, FOO_PING_SYMBOL);
    }
    return bar_state.ping;
}

int bar_pong(int hops) {
    if (hops <= 0) {
        return 0;
    }
    FooPingFn ping = bar_find_ping();
    if (ping == NULL) {
        return -1;
    }
    bar_state.hops++;
    int rest = ping(hops - 1);
    return rest < 0 ? rest : rest + 1;
}

int bar_hops(void) { return bar_state.hops; }
