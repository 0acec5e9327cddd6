/* bar/private/bar_internal.h -- bar's implementation details (private_include). */
#ifndef BAR_INTERNAL_H
#define BAR_INTERNAL_H

#include "bar.h"
#include "foo.h"

typedef struct BarState {
    FooLookupFn lookup; /* from the host (bar_bind) */
    FooPingFn ping;     /* foo_ping, looked up on first use */
    int hops;           /* hops played since load */
} BarState;

#endif /* BAR_INTERNAL_H */
