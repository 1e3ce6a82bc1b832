"""The pool's public records: states, strategies, statistics and dead-letter payloads."""

from __future__ import annotations

import enum

import attrs


class WorkerState(enum.Enum):
    """Where a worker is in its life."""

    STARTING = "starting"  #: launched, not yet connected
    IDLE = "idle"  #: connected, nothing in its window
    BUSY = "busy"  #: running a task
    DRAINING = "draining"  #: takes no new tasks (recycling, shrinking or stopping)
    GONE = "gone"  #: a remote worker that died, disconnected or stopped heartbeating


class Assignment(enum.Enum):
    """How the pool picks a worker for the next task."""

    ROUND_ROBIN = "round_robin"  #: workers in turn
    LEAST_BUSY = "least_busy"  #: the one with the fewest tasks in flight
    RANDOM = "random"  #: uniformly among those with room


@attrs.frozen
class WorkerStats:
    """One worker as :meth:`Pool.workers` reports it.

    Attributes:
        name: the worker's actor name (``"pool/workers/w1"``; remote: ``"pool/workers/remote-<id>"``).
        worker_id: id of the current incarnation (a restart gets a new one).
        pid: its process id (0 until it connected).
        state: see :class:`WorkerState`.
        tasks_done: tasks finished by this incarnation.
        current_task: id of the task it runs now, or None.
        in_flight: tasks sent to it and not yet answered (at most the pool's window).
        rss: resident memory in bytes at the last heartbeat.
        cpu: CPU use in percent at the last heartbeat.
        host: host name it runs on.
        node: cluster node id (Ray) or ``""``.
        remote: True if it was started by hand elsewhere (never restarted by the pool).
        restarts: how often its supervisor restarted this slot.
    """

    name: str
    worker_id: str
    pid: int
    state: WorkerState
    tasks_done: int
    current_task: str | None
    in_flight: int
    rss: int
    cpu: float
    host: str
    node: str = ""
    remote: bool = False
    restarts: int = 0


@attrs.frozen
class PoolStats:
    """Counters of a pool since it started (trio-style ``statistics()``).

    Attributes:
        backend: the backend's name (``"zmq"``, ``"ray"``).
        workers: workers connected now (not starting, not gone).
        starting: workers launched and not yet connected.
        busy: workers with at least one task in flight.
        queued: tasks waiting in the pool's queue.
        in_flight: tasks sent to workers and not yet answered.
        max_queue: the queue's bound.
        submitted: tasks accepted by ``submit``.
        completed: tasks that returned a value.
        failed: tasks whose function raised (RemoteError) or could not travel.
        timed_out: tasks that ran past their timeout.
        retried: re-runs after a worker died under a task.
        dead_lettered: tasks that exhausted their attempts and went to the DLQ.
        late_results: results dropped because their task had already been settled.
        worker_deaths: workers that died or were killed (not graceful stops).
        restarts: worker restarts by the supervisor.
        recycled: workers replaced after max tasks or memory.
    """

    backend: str
    workers: int
    starting: int
    busy: int
    queued: int
    in_flight: int
    max_queue: int
    submitted: int
    completed: int
    failed: int
    timed_out: int
    retried: int
    dead_lettered: int
    late_results: int
    worker_deaths: int
    restarts: int
    recycled: int


@attrs.frozen
class TaskPayload:
    """What a pool dead letter carries so :meth:`DeadLetterQueue.resubmit` can run it again.

    Attributes:
        fn_bytes: the cloudpickled function.
        args_bytes: the cloudpickled ``(args, kwargs)``.
        timeout: the task's timeout.
        attempts: the task's attempts budget (a resubmit gets a fresh one).
        label: the function's name, for humans.
        args_buffers: out-of-band buffers of ``args_bytes`` (pickle protocol 5), if any.
    """

    fn_bytes: bytes
    args_bytes: bytes
    timeout: float | None
    attempts: int
    label: str
    args_buffers: tuple[bytes, ...] = ()
