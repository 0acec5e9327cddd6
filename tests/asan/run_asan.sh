#!/usr/bin/env bash
# Builds the example and test plugins and a C driver with -fsanitize=address,
# runs the driver on every plugin, and fails on any AddressSanitizer report.
# Usage: tests/asan/run_asan.sh [BUILD_DIR]     (CC honoured; default cc)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
cc="${CC:-cc}"
san=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g -O1)
warn=(-std=c11 -Wall -Wextra -Werror)
inc=(-I "$repo/interface/plugin_interface/include" -I "$repo/annotations/plugin_annotations/include")

build() {  # name, sources..., [-Dflags via DEFS]
  local name=$1; shift
  "$cc" "${warn[@]}" "${san[@]}" -fPIC -shared -fvisibility=hidden "${inc[@]}" ${DEFS:-} -o "$out/lib$name.so" "$@"
}
build greeters "$repo"/native_plugins/greeters/{english,french,aggregates}.c
build host_owned "$repo/native_plugins/host_owned/host_owned.c"
build multi_trait "$repo/native_plugins/multi_trait/multi_trait.c"
build handwritten "$repo/tests/plugins/handwritten/handwritten.c"
build null_maker "$repo/tests/plugins/null_maker/null_maker.c"
DEFS=-DNO_AGGREGATE build null_maker_host_owned "$repo/tests/plugins/null_maker/null_maker.c"
build undefined_symbol "$repo/tests/plugins/undefined_symbol/undefined_symbol.c" -Wl,--unresolved-symbols=ignore-all
"$cc" "${warn[@]}" -D_POSIX_C_SOURCE=200809L "${san[@]}" "${inc[@]}" -o "$out/asan_driver" "$here/asan_driver.c" -ldl

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=99"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for lib in "$out"/lib*.so; do
  mapfile -t symbols < <(nm -D --defined-only "$lib" | awk '{print $3}' | grep '^plugin_register_' || true)
  if ! "$out/asan_driver" "$lib" "${symbols[@]}"; then
    echo "asan: FAILED on $lib" >&2
    status=1
  fi
done

# The host's C checks (host/speedups) on every plugin, truncated and mutated.
"$cc" "${warn[@]}" "${san[@]}" "${inc[@]}" -I "$repo/host/speedups" -o "$out/speedups_driver" \
  "$here/speedups_driver.c" "$repo/host/speedups/speedups.c" "$repo/host/speedups/load.c" \
  "$repo/host/speedups/unload.c" "$repo/host/speedups/exports.c" -ldl
for lib in "$out"/lib*.so; do
  if ! "$out/speedups_driver" "$lib" "$out/scratch.so"; then
    echo "asan: speedups FAILED on $lib" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "asan: all plugins clean"
exit "$status"
