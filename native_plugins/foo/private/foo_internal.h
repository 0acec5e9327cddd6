/* foo/private/foo_internal.h -- foo's implementation details.  private_include:
 * on foo's include path only; a plugin that includes it fails to compile. */
#ifndef FOO_INTERNAL_H
#define FOO_INTERNAL_H

#include "bar.h"
#include "foo.h"

typedef struct FooState {
    FooLookupFn lookup; /* from the host (foo_bind) */
    BarPongFn pong;     /* bar_pong, looked up on first use */
    int hops;           /* hops played since load */
} FooState;

#endif /* FOO_INTERNAL_H */
