"""The ``laneway`` command line: a small dispatcher; each subcommand's code lives in its own module.

The CLI is the top layer: it imports the rest of laneway, and nothing in
``laneway`` imports it. The flagship example (``laneway.cli.swarm``) and the
benchmark scripts (``laneway.cli.benchmarks``) ship inside it, so ``laneway
demo`` and ``laneway bench`` work from an installed wheel.

A subcommand module provides ``HELP`` (one line), ``configure(parser)`` to add
its arguments and ``run(args) -> int``. A module that sets ``PASSTHROUGH = True``
gets every argument it does not declare, in order, as ``args.passthrough``
(``laneway demo`` hands them to the example's own parser, ``--help`` included).
Modules are imported when the parser is built, so keep their top level light.

Example:
    $ laneway --help
    $ laneway demo --files 50 --out report.json
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from laneway.errors import LanewayError

#: (subcommand, module) in the order ``--help`` lists them.
COMMANDS: list[tuple[str, str]] = [
    ("demo", "laneway.cli.demo"),
    ("console", "laneway.cli.console"),
    ("bench", "laneway.cli.bench"),
    ("worker", "laneway.cli.worker"),
    ("keys", "laneway.cli.keys"),
    ("serve", "laneway.cli.serve"),
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="laneway", description="laneway: an actor-model runtime for AI agents and their tools."
    )
    parser.add_argument("--version", action="version", version=f"laneway {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in COMMANDS:
        module = importlib.import_module(modname)
        passthrough = getattr(module, "PASSTHROUGH", False)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, add_help=not passthrough)
        module.configure(p)
        p.set_defaults(_module=module, _passthrough=passthrough)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if extra and not args._passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.passthrough = extra
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`laneway bench --list | head`): not an error worth a traceback.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except LanewayError as exc:
        # A usage or configuration mistake: one line naming it, not a traceback.
        print(f"laneway {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _version() -> str:
    """The installed distribution's version, else the package's own (a plain checkout on the path)."""
    from importlib import metadata

    try:
        return metadata.version("laneway")
    except metadata.PackageNotFoundError:
        import laneway

        return laneway.__version__


if __name__ == "__main__":
    raise SystemExit(main())
