#!/usr/bin/env python3
"""Build this repository's example plugins (native_plugins/) into build/plugins/.

A thin wrapper: the builder itself is ``plugin_annotations.build_plugins``, so
users and tests build their own plugins the same way.  Honours CC and CFLAGS;
a no-op rebuild compiles nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", default=str(ROOT / "build" / "plugins"))
    parser.add_argument("--force", action="store_true", help="rebuild everything")
    parser.add_argument("--werror", action="store_true", help="treat compiler warnings as errors")
    args = parser.parse_args()
    try:
        from plugin_annotations import BuildError, build_plugins
    except ImportError:  # a fresh clone, not installed: use the sources next to this script
        sys.path[:0] = [str(ROOT / "interface"), str(ROOT / "annotations")]
        from plugin_annotations import BuildError, build_plugins

    try:
        result = build_plugins(
            ROOT / "native_plugins",
            args.build_dir,
            force=args.force,
            extra_cflags=["-Werror"] if args.werror else [],
        )
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, path in sorted(result.outputs.items()):
        print(f"{'built' if name in result.built else 'up to date'}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
