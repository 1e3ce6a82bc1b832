"""The pool's Ray backend against raw Ray actors with the same batching: `python benchmarks/pool_ray.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.pool_ray`) so that
``laneway bench pool_ray`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.pool_ray import main

if __name__ == "__main__":
    main()
