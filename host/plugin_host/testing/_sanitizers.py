"""AddressSanitizer and UBSan for plugins loaded into an uninstrumented Python.

A plugin compiled with ``-fsanitize=address`` needs the ASan runtime loaded
before anything else: ``dlopen`` of such a library into a normal interpreter
aborts with "ASan runtime does not come first in initial library list".  So
the plugins are compiled with the sanitizer flags but **not linked** with the
runtime (their ``__asan_*`` references resolve at ``dlopen``), and the tests
that load them run in a fresh interpreter with the runtime preloaded
(``LD_PRELOAD``, the path the compiler itself gives:
``gcc -print-file-name=libasan.so``).  A plugin loaded without it fails to load
(``undefined symbol: __asan_...``) instead of taking the process down.

Reports go to files (``log_path``), so that they survive the process and the
parent can put them in the test's failure; leak detection is off (the
interpreter itself "leaks" at exit); the first error ends the process.

**Platform-specific behaviour**: Linux with gcc or clang; Rust plugins are
built without instrumentation (rustc needs a nightly toolchain for it), so
only ASan's ``malloc``/``free`` checks apply to them.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sysconfig
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SANITIZERS", "SanitizerError", "compile_flags", "parse_sanitizers", "runtime_env", "runtimes"]

#: The sanitizers ``--plugin-sanitize`` accepts, in the order their runtimes are preloaded.
SANITIZERS = ("address", "undefined")
_RUNTIMES = {
    "address": ("libasan.so", "libclang_rt.asan-{arch}.so"),
    "undefined": ("libubsan.so", "libclang_rt.ubsan_standalone-{arch}.so"),
}


class SanitizerError(Exception):
    """A sanitizer that is unknown, or whose runtime the compiler cannot find (a usage error)."""


def parse_sanitizers(text: str) -> tuple[str, ...]:
    """``"address,undefined"`` -> ``("address", "undefined")``, in preload order.

    :raises SanitizerError: naming the unknown ones.
    """
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SANITIZERS]
    if unknown:
        msg = f"--plugin-sanitize: unknown sanitizer(s) {', '.join(unknown)}; choose from {', '.join(SANITIZERS)}"
        raise SanitizerError(msg)
    return tuple(s for s in SANITIZERS if s in wanted)


def compile_flags(sanitizers: Sequence[str]) -> list[str]:
    """The compile flags for ``sanitizers`` (C and C++): instrument, keep frames, stop at the first error."""
    if not sanitizers:
        return []
    return [
        f"-fsanitize={','.join(sanitizers)}",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
        "-g",
        "-O1",
    ]


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def runtimes(sanitizers: Sequence[str]) -> list[str]:
    """The runtime libraries to preload for ``sanitizers``, ASan first, as the C compiler names them.

    :raises SanitizerError: the compiler (``CC``) finds no runtime; the message says what to install.
    """
    compiler = _compiler()
    arch = platform.machine()
    found: list[str] = []
    for sanitizer in sanitizers:
        tried = []
        for name in _RUNTIMES[sanitizer]:
            name = name.format(arch=arch)
            tried.append(name)
            try:
                out = subprocess.run([*compiler, f"-print-file-name={name}"], capture_output=True, text=True)
            except OSError as e:
                raise SanitizerError(f"--plugin-sanitize: cannot run the C compiler {compiler[0]!r}: {e}") from e
            path = out.stdout.strip()
            if os.path.isabs(path) and os.path.exists(path):
                found.append(str(Path(path).resolve()))
                break
        else:
            msg = (
                f"--plugin-sanitize={sanitizer}: `{' '.join(compiler)} -print-file-name=...` finds none of "
                f"{', '.join(tried)}; install the compiler's sanitizer runtime (gcc: apt-get install "
                f"{'libasan8' if sanitizer == 'address' else 'libubsan1'})"
            )
            raise SanitizerError(msg)
    return found


def runtime_env(sanitizers: Sequence[str], log_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    """The environment of a child that loads plugins built with ``sanitizers``.

    The user's own ``ASAN_OPTIONS``/``UBSAN_OPTIONS`` are kept (after the
    defaults, so they win), except ``log_path``, which must be ours.
    """
    env = dict(environ)
    preload = [*runtimes(sanitizers), *env.get("LD_PRELOAD", "").split()]
    env["LD_PRELOAD"] = " ".join(preload)
    # handle_abort: an abort() (or the SIGABRT that stops a timed-out test) is reported with its stack.
    asan = ["detect_leaks=0", "halt_on_error=1", "abort_on_error=0", "allocator_may_return_null=1", "handle_abort=1"]
    ubsan = ["print_stacktrace=1", "halt_on_error=1", "handle_abort=1"]
    env["ASAN_OPTIONS"] = ":".join([*asan, *_user_options(env, "ASAN_OPTIONS"), f"log_path={log_dir / 'asan'}"])
    env["UBSAN_OPTIONS"] = ":".join([*ubsan, *_user_options(env, "UBSAN_OPTIONS"), f"log_path={log_dir / 'ubsan'}"])
    return env


def _user_options(env: dict[str, str], variable: str) -> list[str]:
    return [o for o in env.get(variable, "").replace(" ", ":").split(":") if o and not o.startswith("log_path=")]
