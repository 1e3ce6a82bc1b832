"""Actor ask/tell latency and throughput: laneway vs raw pykka, same run, same machine: `python benchmarks/actor_ask.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.actor_ask`) so that
``laneway bench actor_ask`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.actor_ask import main

if __name__ == "__main__":
    main()
