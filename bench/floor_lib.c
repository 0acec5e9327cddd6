/*
 * floor_lib.c: plain C functions for the benchmarks' ctypes and cffi baselines
 * (bench/bench_calls.py builds it as a shared library).
 */
#include <stdio.h>

#if defined(_WIN32)
#define FLOOR_EXPORT __declspec(dllexport)
#else
#define FLOOR_EXPORT __attribute__((visibility("default")))
#endif

/* greet with the Greeter method's signature, into a static buffer: nothing to
 * allocate or free, so one ctypes call (c_char_p result) is the whole job. */
FLOOR_EXPORT const char *greet_static(void *self, const char *name) {
    static char buffer[256];
    (void)self;
    snprintf(buffer, sizeof buffer, "Hello, %s!", name);
    return buffer;
}

FLOOR_EXPORT int add(int a, int b) { return a + b; }
