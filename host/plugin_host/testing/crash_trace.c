/* crash_trace.c -- the C stack of a crashing isolated test (plugin_host.testing).
 *
 * Loaded into the child process that runs an isolated test or a fuzzed call,
 * after faulthandler is enabled.  On a fatal signal it writes the C stack
 * (glibc's backtrace_symbols_fd: file, symbol or offset, address) to the crash
 * file, then hands the signal to the handler it replaced (faulthandler: the
 * Python stack), which ends the process with that signal.  The parent turns the
 * offsets into functions and lines (addr2line).
 *
 * Installing twice (a forked child of an armed process arms again) only changes the file.
 *
 * Async-signal-safety: backtrace() may load libgcc_s on its first call, so
 * ph_install_crash_trace() calls it once up front; the handler then only calls
 * backtrace, backtrace_symbols_fd, write, sigaction and raise.
 */
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#define PH_MAX_FRAMES 64

static int ph_trace_fd = -1;
static int ph_installed;
static const int ph_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
#define PH_NSIGNALS (sizeof ph_signals / sizeof ph_signals[0])
static struct sigaction ph_previous[PH_NSIGNALS];

static void ph_write(const char *text) {
    ssize_t ignored = write(ph_trace_fd, text, strlen(text));
    (void)ignored;
}

static void ph_on_fatal(int sig) {
    void *frames[PH_MAX_FRAMES];
    int n = backtrace(frames, PH_MAX_FRAMES);
    ph_write("C stack (most recent call first):\n");
    backtrace_symbols_fd(frames, n, ph_trace_fd);
    ph_write("\n");
    for (size_t i = 0; i < PH_NSIGNALS; i++) {
        if (ph_signals[i] == sig) {
            sigaction(sig, &ph_previous[i], NULL);
            break;
        }
    }
    /* SA_NODEFER: the previous handler runs now, and ends the process. */
    raise(sig);
}

__attribute__((visibility("default"))) int ph_install_crash_trace(int fd);
__attribute__((visibility("default"))) int ph_install_crash_trace(int fd) {
    void *warm[1];
    (void)backtrace(warm, 1);
    ph_trace_fd = fd;
    if (ph_installed) {
        /* A child of an armed process (a fuzzed call inside an isolated test): only the file
         * changes.  Installing again would make this handler its own "previous" one. */
        return 0;
    }
    for (size_t i = 0; i < PH_NSIGNALS; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = ph_on_fatal;
        action.sa_flags = SA_ONSTACK | SA_NODEFER;
        sigemptyset(&action.sa_mask);
        if (sigaction(ph_signals[i], &action, &ph_previous[i]) != 0) {
            return -1;
        }
    }
    ph_installed = 1;
    return 0;
}
