/* foo/include/foo.h -- foo's public interface: what other plugins may use.
 *
 * foo is a no_link plugin: nothing links to it.  A plugin that wants to call
 * it includes this header for the types and names, and asks the host for the
 * address at run time (see FooLookupFn).  foo does the same with bar.
 *
 * Lifetime: foo keeps the addresses it got from the host; the host closes foo
 * and bar together (or calls foo_bind(NULL) first). */
#ifndef FOO_H
#define FOO_H

#include "plugin_interface.h" /* PLUGIN_EXPORT */

#define FOO_MODULE "foo"
#define FOO_PING_SYMBOL "foo_ping"

/** Any C function, as the host's lookup returns it (cast to the real type). */
typedef void (*FooAnyFn)(void);

/** The host's lookup: the function `symbol` of module `module`, or NULL.
 *  The host may load the module on demand. */
typedef FooAnyFn (*FooLookupFn)(const char *module, const char *symbol);

/** The type of foo_ping, for callers that looked it up. */
typedef int (*FooPingFn)(int hops);

/** Give foo the host's lookup (NULL unbinds: foo forgets bar's address). */
PLUGIN_EXPORT void foo_bind(FooLookupFn lookup);

/** Play `hops` hops of ping-pong with bar: foo takes one, hands the rest to
 *  bar_pong.  Returns the hops played, or -1 if bar cannot be found. */
PLUGIN_EXPORT int foo_ping(int hops);

/** Hops foo played since it was loaded (a static variable: 0 after a reload). */
PLUGIN_EXPORT int foo_hops(void);

#endif /* FOO_H */
