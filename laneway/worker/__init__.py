"""What runs inside a worker process, and the formats both ends of the pool speak.

A pool worker imports only this package (no actors, no rich, no observe), so
it starts fast and stays small: the task runner with its function cache, the
codec (cloudpickle, remote errors), the ZeroMQ message kinds (:mod:`laneway.worker.wire`),
CurveZMQ keys, and the worker's main loop. The pool (``laneway.pool``) is the
other end: it imports these names; nothing here imports the pool.

Example:
    >>> from laneway.worker import FunctionPickler, TaskRunner, decode_outcome, dumps_args
    >>> digest, fn_bytes = FunctionPickler().dumps(pow)
    >>> outcome = TaskRunner().run(1, digest, fn_bytes, dumps_args((2, 10), None))
    >>> decode_outcome(outcome)
    1024
"""

from laneway.worker._keys import CurveServer, create_keys, is_loopback, load_client, load_server
from laneway.worker._outcome import TaskOutcome
from laneway.worker._process import CurveClient, WorkerConfig, die_with_parent, run as run_worker, spawn_entry
from laneway.worker._runner import ShipLedger, TaskRunner
from laneway.worker.codec import FunctionPickler, decode_outcome, digest, dumps_args

__all__ = [
    "CurveClient",
    "CurveServer",
    "FunctionPickler",
    "ShipLedger",
    "TaskOutcome",
    "TaskRunner",
    "WorkerConfig",
    "create_keys",
    "decode_outcome",
    "die_with_parent",
    "digest",
    "dumps_args",
    "is_loopback",
    "load_client",
    "load_server",
    "run_worker",
    "spawn_entry",
]
