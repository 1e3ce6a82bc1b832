"""Workflow state memory (target: <= 1 MB per 100 tasks) and scheduling overhead, same run, same machine: `python benchmarks/workflow_memory.py --help`.

The script ships inside the package (:mod:`laneway.cli.benchmarks.workflow_memory`) so that
``laneway bench workflow_memory`` also runs from an installed wheel; this file runs it from a checkout.
"""

from laneway.cli.benchmarks.workflow_memory import main

if __name__ == "__main__":
    main()
