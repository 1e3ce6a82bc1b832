"""The pool's hot paths against their baselines: round trip, tiny tasks, map, memory, 1 MB payloads, start, USS, CPU: `python benchmarks/pool_paths.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.pool_paths`) so that
``laneway bench pool_paths`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.pool_paths import main

if __name__ == "__main__":
    main()
