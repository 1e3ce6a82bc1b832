"""Worker replacement: time from SIGKILLing a pool worker to a ready replacement: `python benchmarks/worker_replacement.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.worker_replacement`) so that
``laneway bench worker_replacement`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.worker_replacement import main

if __name__ == "__main__":
    main()
