"""Routing decision time with many agents (target: < 1 ms per decision with 1,000 agents), same run, same machine: `python benchmarks/router_decision.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.router_decision`) so that
``laneway bench router_decision`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.router_decision import main

if __name__ == "__main__":
    main()
