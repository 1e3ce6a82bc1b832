"""``laneway demo``: run the flagship example, :mod:`laneway.cli.swarm.code_swarm`.

The example owns its options (``laneway demo --help`` shows them), so the
command only hands the arguments over: the same run as
``python examples/code_swarm.py ...`` in a source checkout.
"""

from __future__ import annotations

import argparse

HELP = "run the flagship example: an agent swarm analyzing the Python standard library (--help for options)"
PASSTHROUGH = True


def configure(parser: argparse.ArgumentParser) -> None:
    """Nothing to declare: every argument goes to the example."""


def run(args: argparse.Namespace) -> int:
    """Run the code swarm with the passed-through arguments; returns its exit status."""
    from laneway.cli.swarm import code_swarm

    return int(code_swarm.main(args.passthrough, prog="laneway demo") or 0)
