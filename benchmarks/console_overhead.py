"""Console overhead on lane throughput: the same lane workload with and without the web console open: `python benchmarks/console_overhead.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.console_overhead`) so that
``laneway bench console_overhead`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.console_overhead import main

if __name__ == "__main__":
    main()
