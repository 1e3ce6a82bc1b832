"""What runs inside a worker process, and the formats both ends of the pool speak.

A pool worker imports only this package (no actors, no rich, no observe, not even
``typing``: the modules it loads, and ``laneway`` and ``laneway.errors``, set
``TYPE_CHECKING = False`` themselves, which mypy reads as true, and their records are plain
named tuples (:mod:`laneway.worker._record`); typing would cost each worker ~3 ms), so it starts fast and stays small:
the task runner with its function cache, the codec (cloudpickle, remote errors), the ZeroMQ
message kinds (:mod:`laneway.worker.wire`), CurveZMQ keys, and the worker's main loop. The pool (``laneway.pool``) is the
other end: it imports these names; nothing here imports the pool.

Example:
    >>> from laneway.worker import FunctionPickler, TaskRunner, decode_outcome, dumps_args
    >>> digest, fn_bytes = FunctionPickler().dumps(pow)
    >>> outcome = TaskRunner().run(1, digest, fn_bytes, dumps_args((2, 10), None))
    >>> decode_outcome(outcome)
    1024
"""

from __future__ import annotations

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import Any

    from laneway.worker._boot import ChildProcess, launch, start_process
    from laneway.worker._keys import CurveServer, bind_router, create_keys, is_loopback, load_client, load_server
    from laneway.worker._outcome import TaskOutcome
    from laneway.worker._process import CurveClient, WorkerConfig, die_with_parent, run as run_worker, spawn_entry
    from laneway.worker._runner import ShipLedger, TaskRunner
    from laneway.worker._spawner import Spawner
    from laneway.worker.codec import FunctionPickler, decode_outcome, digest, dumps_args

#: Where each public name lives. A worker process starts by importing ``_process`` (its
#: ``spawn_entry``), which would import this package first: loading every module here
#: eagerly would give each worker the CurveZMQ key files' code and the pool side's
#: helpers it never uses, so names load on first use.
_HOME = {
    "ChildProcess": "_boot", "launch": "_boot", "start_process": "_boot", "Spawner": "_spawner",
    "CurveServer": "_keys", "bind_router": "_keys", "create_keys": "_keys", "is_loopback": "_keys", "load_client": "_keys",
    "load_server": "_keys", "TaskOutcome": "_outcome", "CurveClient": "_process", "WorkerConfig": "_process",
    "die_with_parent": "_process", "run_worker": "_process", "spawn_entry": "_process", "ShipLedger": "_runner",
    "TaskRunner": "_runner", "FunctionPickler": "codec", "decode_outcome": "codec", "digest": "codec",
    "dumps_args": "codec",
}

#: The module that holds :func:`spawn_entry`, for :meth:`Spawner.launch_ahead`'s ``preload``: an
#: interpreter launched ahead for a pool worker imports it while the pool loads.
SPAWN_ENTRY_MODULE = f"{__name__}.{_HOME['spawn_entry']}"

__all__ = [
    "SPAWN_ENTRY_MODULE",
    "ChildProcess",
    "CurveClient",
    "CurveServer",
    "FunctionPickler",
    "ShipLedger",
    "Spawner",
    "TaskOutcome",
    "TaskRunner",
    "WorkerConfig",
    "bind_router",
    "create_keys",
    "decode_outcome",
    "die_with_parent",
    "digest",
    "dumps_args",
    "is_loopback",
    "launch",
    "load_client",
    "load_server",
    "run_worker",
    "spawn_entry",
    "start_process",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{home}")
    value = getattr(module, "run" if name == "run_worker" else name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The module's names, including those loaded on first use (PEP 562)."""
    return sorted(set(globals()) | set(__all__))
