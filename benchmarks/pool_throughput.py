"""Process-pool throughput: laneway's pool against the stdlib pools, same run, same worker count: `python benchmarks/pool_throughput.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.pool_throughput`) so that
``laneway bench pool_throughput`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.pool_throughput import main

if __name__ == "__main__":
    main()
