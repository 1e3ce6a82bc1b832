"""Process actors against their baselines, interleaved in one run: raw pyzmq, multiprocessing.Pipe, Ray: `python benchmarks/actor_process.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.actor_process`) so that
``laneway bench actor_process`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.actor_process import main

if __name__ == "__main__":
    main()
