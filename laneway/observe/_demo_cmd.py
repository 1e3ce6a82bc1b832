"""``laneway demo``: run the flagship example, ``examples/code_swarm.py``.

The example owns its options (``laneway demo --help`` shows them), so the
command only finds it and hands the arguments over: the same run as
``python examples/code_swarm.py ...``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from laneway.observe._checkout import checkout_dir

HELP = "run the flagship example: an agent swarm analyzing the Python standard library (--help for options)"
PASSTHROUGH = True


def configure(parser: argparse.ArgumentParser) -> None:
    """Nothing to declare: every argument goes to the example."""


def run(args: argparse.Namespace) -> int:
    directory = checkout_dir("examples", "LANEWAY_EXAMPLES")
    if not (directory / "code_swarm.py").is_file():
        print(
            f"the demo lives in examples/code_swarm.py of the source checkout; not found in {directory} "
            "(clone the repository and `pip install -e .`, or set LANEWAY_EXAMPLES)",
            file=sys.stderr,
        )
        return 2
    # The example and its helper module import each other by name, as a script would.
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    swarm = importlib.import_module("code_swarm")
    return int(swarm.main(args.passthrough, prog="laneway demo") or 0)
