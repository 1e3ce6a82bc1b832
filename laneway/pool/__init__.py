"""The process pool: CPU-bound work in supervised worker processes over ZeroMQ (or Ray).

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="doc") as orch:                       # doctest: +SKIP
    ...     pool = orch.start_pool(workers=2)
    ...     pool.submit(pow, 2, 10).get(timeout=30)
    1024
"""

from laneway.pool._backend import Backend, TaskOutcome, TaskWire, WorkerHub, exit_reason, make_backend
from laneway.pool._pool import Pool
from laneway.pool._records import Assignment, PoolStats, TaskPayload, WorkerState, WorkerStats

__all__ = [
    "Assignment",
    "Backend",
    "Pool",
    "PoolStats",
    "TaskOutcome",
    "TaskPayload",
    "TaskWire",
    "WorkerHub",
    "WorkerState",
    "WorkerStats",
    "exit_reason",
    "make_backend",
]
