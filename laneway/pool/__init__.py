"""The process pool: CPU-bound work in supervised worker processes over ZeroMQ (or Ray).

The :class:`Pool` is a :class:`concurrent.futures.Executor`; laneway's own task options
(timeout, attempts, ...) are bound with :meth:`Pool.options`, never mixed with the
task's keyword arguments.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="doc") as orch:                       # doctest: +SKIP
    ...     pool = orch.start_pool(workers=2)
    ...     pool.submit(pow, 2, 10).result(timeout=30)
    ...     pool.options(timeout=5, attempts=1).submit(sorted, [3, 1, 2], reverse=True).result(timeout=30)
    ...     list(pool.map(pow, range(5), [2] * 5, chunksize=2))
    1024
    [3, 2, 1]
    [0, 1, 4, 9, 16]

Running on several machines with ZeroMQ and CurveZMQ:

1. On the pool host, create keys (one pair per worker host)::

       laneway keys ~/lw-keys --client gpu1 --client gpu2

2. Start the pool listening on tcp with the keys (a pool refuses to listen beyond
   loopback without them)::

       orch.start_pool(workers=2, listen="tcp://0.0.0.0:5555", keys="~/lw-keys")

3. Copy ``server.key`` and ``gpu1.key_secret`` to host gpu1 (into a directory of its own)
   and start a worker there::

       laneway worker --connect tcp://POOL-HOST:5555 --keys ~/lw-keys --key-name gpu1

Remote workers heartbeat like local ones. One that dies or goes silent is reported
as gone (``WorkerState.GONE``), its task is retried elsewhere, and it is not
restarted (the pool cannot start processes on other hosts); when it comes back it
joins again under a new id. Revoke a host by deleting its key from
``~/lw-keys/authorized/`` and restarting the pool.

Security: tasks and results are pickles, so joining a pool is code execution both
ways. A worker key lets its holder receive every task the pool assigns to it (the
code and the data) and send back results the pool will unpickle, i.e. run code in
the pool's process. Give keys only to hosts you would give a shell. Keys
authenticate and encrypt; they do not sandbox. Without ``listen`` the pool uses an
``ipc://`` socket in a private (0700) directory; ``listen="tcp://127.0.0.1:..."``
without keys admits any local user, so use keys there too on shared machines.
"""

from laneway.pool._backend import Backend, TaskWire, WorkerHub, exit_reason
from laneway.pool._select_backend import make_backend
from laneway.pool._future import TaskFuture
from laneway.pool._options import TaskOptions, TaskSubmitter
from laneway.pool._pool import DEFAULT_ROOT_SUPERVISION, DEFAULT_WORKER_BACKOFF, Pool
from laneway.pool._records import Assignment, PoolStats, TaskPayload, WorkerState, WorkerStats

__all__ = [
    "DEFAULT_ROOT_SUPERVISION",
    "DEFAULT_WORKER_BACKOFF",
    "Assignment",
    "Backend",
    "Pool",
    "PoolStats",
    "TaskFuture",
    "TaskOptions",
    "TaskPayload",
    "TaskSubmitter",
    "TaskWire",
    "WorkerHub",
    "WorkerState",
    "WorkerStats",
    "exit_reason",
    "make_backend",
]
