"""``python -m plugin_annotations``: headers, Rust modules, compile flags, builds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import BuildError, build_plugins, get_include_dirs, write_trait_headers
from ._headers import rust_traits_of, traits_of
from ._rust import write_rust_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugin_annotations", description=__doc__)
    parser.add_argument("--cflags", action="store_true", help="print the -I flags a plugin needs")
    sub = parser.add_subparsers(dest="command")
    h = sub.add_parser(
        "headers",
        help="(re)generate trait headers: the built-in ones, or those a module declares",
        description="Without MODULE: the built-in traits' headers, into plugin_interface's include directory "
        "(or DIR). With MODULE or MODULE:TRAIT: the headers of the traits that module declares, into -o DIR.",
    )
    h.add_argument("--check", action="store_true", help="exit 1 if a header is stale (write nothing)")
    h.add_argument("-o", "--output", metavar="DIR", help="where to write the headers")
    h.add_argument(
        "targets", nargs="*", metavar="MODULE[:TRAIT]", help="modules whose traits to write (default: built-in)"
    )
    r = sub.add_parser(
        "rust",
        help="generate a dependency-free Rust module for traits",
        description="The #[repr(C)] types, vtables, descriptors, embedded declarations and the plugin_impl!, "
        "plugin_aggregates! and plugin_unmaker_counter! macros of the traits MODULE declares (MODULE:TRAIT: "
        "that one, also one the module imports, e.g. plugin_interface:Greeter), in one file for the crate root.",
    )
    r.add_argument("targets", nargs="+", metavar="MODULE[:TRAIT]", help="where the traits are declared")
    r.add_argument("-o", "--output", metavar="FILE.rs", required=True, help="the module to write")
    r.add_argument("--module", help="its name at the crate root (default: the file's stem)")
    r.add_argument("--check", action="store_true", help="exit 1 if the file is stale (write nothing)")
    b = sub.add_parser("build", help="build every plugin directory under ROOT")
    b.add_argument("root")
    b.add_argument("build_dir")
    b.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.cflags:
        print(" ".join(f"-I{d}" for d in get_include_dirs()))
        return 0
    if args.command == "headers":
        targets = list(args.targets)
        output = args.output
        if output is None and len(targets) == 1 and (Path(targets[0]).is_dir() or "/" in targets[0]):
            output, targets = targets[0], []  # the older form: headers [DIR]
        traits = None
        if targets:
            if output is None:
                print(
                    "error: -o DIR is required with MODULE (a user trait's header never goes into site-packages)",
                    file=sys.stderr,
                )
                return 2
            try:
                traits = [spec for target in targets for spec in traits_of(target)]
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        changed = write_trait_headers(output, traits, check=args.check)
        for path in changed:
            print(f"{'stale' if args.check else 'wrote'}: {path}")
        return 1 if (args.check and changed) else 0
    if args.command == "rust":
        try:
            specs = [spec for target in args.targets for spec in rust_traits_of(target)]
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            stale = write_rust_module(args.output, specs, module=args.module, targets=args.targets, check=args.check)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if stale:
            print(f"{'stale' if args.check else 'wrote'}: {args.output}")
        return 1 if (args.check and stale) else 0
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
