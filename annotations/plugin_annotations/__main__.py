"""``python -m plugin_annotations``: headers, compile flags, builds."""

from __future__ import annotations

import argparse
import sys

from . import BuildError, build_plugins, get_include_dirs, write_trait_headers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugin_annotations", description=__doc__)
    parser.add_argument("--cflags", action="store_true", help="print the -I flags a plugin needs")
    sub = parser.add_subparsers(dest="command")
    h = sub.add_parser("headers", help="(re)generate the built-in trait headers")
    h.add_argument("--check", action="store_true", help="exit 1 if a committed header is stale")
    h.add_argument("directory", nargs="?", help="default: plugin_interface's include directory")
    b = sub.add_parser("build", help="build every plugin directory under ROOT")
    b.add_argument("root")
    b.add_argument("build_dir")
    b.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.cflags:
        print(" ".join(f"-I{d}" for d in get_include_dirs()))
        return 0
    if args.command == "headers":
        changed = write_trait_headers(args.directory, check=args.check)
        for path in changed:
            print(f"{'stale' if args.check else 'wrote'}: {path}")
        return 1 if (args.check and changed) else 0
    if args.command == "build":
        try:
            result = build_plugins(args.root, args.build_dir, force=args.force)
        except BuildError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for name, path in sorted(result.outputs.items()):
            print(f"{'built' if name in result.built else 'up to date'}: {path}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
