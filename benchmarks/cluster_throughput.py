"""Durable jobs per second on 1, 2 and 3 processes: laneway cluster nodes, Procrastinate and DBOS workers: `python benchmarks/cluster_throughput.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.cluster_throughput`) so that
``laneway bench cluster_throughput`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.cluster_throughput import main

if __name__ == "__main__":
    main()
