"""``laneway console``: the flagship example with the web console open (``laneway demo --console``).

``laneway console --port 9000 --chaos`` is ``laneway demo --console 9000 --chaos``:
the console's own options (``--port``, ``--host``, ``--linger``) are read here,
everything else goes to the example. The console serves only while the
program runs; ``--linger`` keeps it up after the run to look at the end state.
"""

from __future__ import annotations

import argparse

from laneway.cli._args import port, positive

HELP = "run the flagship example with the web console open (http://127.0.0.1:8642/; --help for options)"
PASSTHROUGH = True


def configure(parser: argparse.ArgumentParser) -> None:
    """The console's options; the example's go through unchanged."""
    parser.add_argument("--port", type=port, default=8642, help="console port (default 8642; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other needs a token: LANEWAY_CONSOLE_TOKEN, "
                             "or one is generated and printed)")  # fmt: skip
    parser.add_argument("--linger", type=positive(float), default=None, metavar="SECONDS",
                        help="keep the console open this long after the run ends")


def run(args: argparse.Namespace) -> int:
    """Run the code swarm with the console; returns its exit status."""
    from laneway.cli.swarm import code_swarm

    argv = ["--console", str(args.port), "--console-host", args.host, *args.passthrough]
    if args.linger:
        argv += ["--console-linger", str(args.linger)]
    return int(code_swarm.main(argv, prog="laneway console") or 0)
