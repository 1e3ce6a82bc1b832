"""Lane throughput and latency: laneway lanes vs a ThreadPoolExecutor (and a3s-lane, raw asks), same run: `python benchmarks/lanes_throughput.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.lanes_throughput`) so that
``laneway bench lanes_throughput`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.lanes_throughput import main

if __name__ == "__main__":
    main()
