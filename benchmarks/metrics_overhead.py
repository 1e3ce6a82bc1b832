"""Metrics overhead on lane throughput: the same lane workload with and without ``orch.metrics``: `python benchmarks/metrics_overhead.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.metrics_overhead`) so that
``laneway bench metrics_overhead`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.metrics_overhead import main

if __name__ == "__main__":
    main()
