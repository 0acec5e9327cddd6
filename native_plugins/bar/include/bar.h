/* bar/include/bar.h -- bar's public interface: what other plugins may use.
 *
 * bar is foo's counterpart (see foo.h): a no_link plugin that calls foo_ping
 * through the host's lookup.  The lookup type is foo's (FooLookupFn): the
 * two interfaces include each other, which header guards make harmless. */
#ifndef BAR_H
#define BAR_H

#include "foo.h" /* FooLookupFn: the interfaces depend on each other */
#include "plugin_interface.h" /* PLUGIN_EXPORT */

#define BAR_MODULE "bar"
#define BAR_PONG_SYMBOL "bar_pong"

/** The type of bar_pong, for callers that looked it up. */
typedef int (*BarPongFn)(int hops);

/** Give bar the host's lookup (NULL unbinds). */
PLUGIN_EXPORT void bar_bind(FooLookupFn lookup);

/** bar takes one hop and hands the rest back to foo_ping.  Returns the hops
 *  played, or -1 if foo cannot be found. */
PLUGIN_EXPORT int bar_pong(int hops);

/** Hops bar played since it was loaded (0 after a reload). */
PLUGIN_EXPORT int bar_hops(void);

#endif /* BAR_H */
