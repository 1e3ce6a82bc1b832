"""Lanes: priority scheduling of tool calls, session lanes, the tool registry, retries and dead letters.

Submit a command (a tool call) to a lane and get a handle with its id, queue
position, ETA and a future of its result::

    from laneway import Orchestrator
    from laneway.lanes import Priority, RetryPolicy, tool

    @tool(description="Search the web", parameters=[{"name": "q", "type": "string"}], parallel_allowed=True)
    def search(q):
        ...

    with Orchestrator(store="state.db") as orch:
        h = orch.lanes.submit("query", "search", {"q": "actors"}, priority=Priority.HIGH,
                              retry=RetryPolicy.exponential(3), timeout=10)
        print(h.position, h.eta_s, h.result(timeout=30))
        chat = orch.lanes.session("user-42")            # serial lane of one session
        chat.execute_parallel([("search", {"q": "a"}), ("search", {"q": "b"})], max_concurrent=2)

Scheduling
    The scheduler always starts the next command from the highest-priority lane
    (lowest ``LaneConfig.priority``) that has pending work and a free slot,
    within ``max_workers`` commands running at once (``min_concurrency`` slots
    stay reserved per lane). Default lanes: system (0, max 5), control (1, 3),
    query (2, 10), session (3, 5), skill (4, 3), prompt (5, 2). Inside a lane,
    callers take turns (fair share); inside one caller's queue, commands go by
    :class:`Priority` (critical .. background), then FIFO. Each named lane is
    also a supervised actor (:class:`LaneActor`, ``orch.lookup("lanes/<name>")``
    or ``orch.lanes.lane_ref(name)``) whose mailbox takes :class:`Submit`,
    :class:`Cancel`, :class:`Pause`, :class:`Resume`, :class:`SetMaxConcurrent`,
    :class:`SetRateLimit` and :class:`GetStats`; ``submit`` is the direct path
    to the same queues, without a thread hand-off per command. Commands run on
    a shared pool of threads (no thread per lane or per command).

Execution
    Sync tools run on worker threads, ``async def`` tools on one event loop
    owned by the manager, ``cpu_bound`` tools on ``orch.pool``. A run gets a
    :class:`CancellationToken` (``cancel_token`` parameter or
    :func:`current_token`); cancel, timeout and preemption cancel it.
    ``call`` / ``call_async`` withdraw the command when their caller gives up
    (``wait_timeout`` passed, or the awaiting task was cancelled): a queued
    one is cancelled and never runs, a running one has its token cancelled;
    ``on_give_up=GiveUp.KEEP`` lets it go on instead.

Failures
    Per-command ``timeout`` and :class:`RetryPolicy`; after the last attempt the
    command goes to ``orch.dead_letters`` under source ``"lane:<lane>"`` with its
    error, and ``resubmit(letter_id)`` runs it again. Typed errors (all in
    :mod:`laneway.errors`): ToolNotFound, ToolParameterError, LaneNotFound,
    LaneFull, LaneBusy, LaneShutdown, CommandCancelled, Preempted,
    CommandTimeout, ParallelNotAllowed.

Events (``orch.events``, source = lane name)
    ``queue.command.submitted|started|completed|retry|timeout|failed|dead_lettered``
    (all with ``command_id`` and ``caller``; ``completed`` adds ``latency_s``,
    ``run_s``, ``attempts``), plus ``.cancelled``, ``.preempted``, ``.boosted``,
    ``.rejected``, ``.recovered``; ``queue.lane.pressure`` (pending reached
    the lane's ``pressure_threshold``; off unless configured) and
    ``queue.lane.idle`` (nothing pending or running, published only after a
    pressure event of that lane), ``queue.session.closed``,
    ``queue.shutdown.started``.

Status
    ``lanes.status()`` (a :class:`ManagerStatusReport`) and
    ``lanes.status(lane)`` (a :class:`LaneStatusReport`) say what each lane
    is doing as a :class:`LaneStatus`: idle, busy, paused, draining, closed.

Metrics
    Lanes report queue length, completions and latencies to a
    :class:`LaneMetrics` backend (``metrics=``; default
    :class:`InMemoryLaneMetrics`, which ``lane_stats`` reads);
    ``lanes.metrics.reset()`` starts the windows afresh.

Persistence
    With a store (the orchestrator's, by default), pending commands are written
    before ``submit`` returns and removed when they end, so after a crash of the
    whole process the next manager on the same store runs them (exactly once for
    queued commands; a run cut short by the crash runs again as a new attempt).
    Persisted commands name their tool; import the module defining it (or
    register it) before the manager starts.
"""

from laneway.lanes._config import DEFAULT_LANES, GiveUp, LaneConfig, PreemptAction, Priority, RateLimit
from laneway.lanes._lane_actor import Cancel, GetStats, LaneActor, Pause, Resume, SetMaxConcurrent, SetRateLimit, Submit
from laneway.lanes._manager import LaneManager
from laneway.lanes._metrics import InMemoryLaneMetrics, LaneMetrics, LaneReading, LaneRecorder
from laneway.lanes._records import (
    CommandHandle,
    CommandState,
    DrainReport,
    LaneManagerStats,
    LaneStats,
    LaneStatus,
    LaneStatusReport,
    ManagerStatusReport,
)
from laneway.core import RetryKind, RetryPolicy
from laneway.lanes._sessions import SessionLane
from laneway.core import CancellationToken, current_token
from laneway.lanes._tools import ToolParam, ToolRegistry, ToolSpec, default_registry, tool

__all__ = [
    "Cancel",
    "CancellationToken",
    "CommandHandle",
    "CommandState",
    "DEFAULT_LANES",
    "DrainReport",
    "GetStats",
    "GiveUp",
    "InMemoryLaneMetrics",
    "LaneActor",
    "LaneConfig",
    "LaneManager",
    "LaneManagerStats",
    "LaneMetrics",
    "LaneReading",
    "LaneRecorder",
    "LaneStats",
    "LaneStatus",
    "LaneStatusReport",
    "ManagerStatusReport",
    "Pause",
    "PreemptAction",
    "Priority",
    "RateLimit",
    "Resume",
    "RetryKind",
    "RetryPolicy",
    "SessionLane",
    "SetMaxConcurrent",
    "SetRateLimit",
    "Submit",
    "ToolParam",
    "ToolRegistry",
    "ToolSpec",
    "current_token",
    "default_registry",
    "tool",
]
