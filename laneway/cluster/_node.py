"""ClusterNode: one orchestrator's membership in a cluster sharing one PostgreSQL database.

Three connections, three threads, so a slow one never delays another:

* the heartbeat thread renews this node's lease every ``heartbeat_s`` and, on
  the same tick, declares dead the nodes whose lease expired and puts their
  running work back in the queue (adoption);
* the listener thread waits on LISTEN/NOTIFY (``n``: commands queued, ``w``:
  workflows queued, ``d <ids>``: commands finished) with ``poll_s`` as the
  slow fallback, wakes the worker and settles the handles waiting here;
* the worker thread (in :mod:`._work`) claims commands and workflows with
  ``FOR UPDATE SKIP LOCKED`` up to this node's capacity, runs them on the
  local lanes and workflow engine, and commits results in fenced batches.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import cloudpickle

from laneway.cluster import _sql
from laneway.cluster._records import ClusterHandle, ClusterStats, ClusterWorkflow, NodeInfo, NodeState, ResultFuture
from laneway.cluster._work import Worker
from laneway.errors import ClusterError, CommandFailed, ConfigError, NodeNameTaken, SystemShutdown
from laneway.lanes import Priority
from laneway.store import import_psycopg

if TYPE_CHECKING:
    from laneway.lanes import LaneManager
    from laneway.store import Store
    from laneway.workflow import TaskDefinition, WorkflowEngine, WorkflowStatus

log = logging.getLogger(__name__)

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
#: NOTIFY payloads are limited to 8000 bytes; finished ids go out in chunks below that.
NOTIFY_CHUNK = 7000


class ClusterNode(Worker):
    """This orchestrator as one node of several sharing a PostgreSQL database.

    Any node can :meth:`submit` a durable lane command or :meth:`submit_workflow`
    a workflow; one node claims and runs it; its result can be read from any
    node. When a node dies (SIGKILL, lost connection) its lease expires and the
    others adopt its work within about ``lease_s + heartbeat_s``; a workflow
    resumes from its stored state (completed tasks are never run again, the
    interrupted ones run again with their checkpoint). A node that lost its
    lease (paused, cut off) commits nothing more: every commit checks its epoch
    in the same transaction; it then rejoins under a new epoch.

    Normally built by ``Orchestrator(store="postgresql://...", node="name")``
    and reached as ``orch.cluster``.

    Args:
        dsn: the PostgreSQL URL every node of the cluster uses.
        node: this node's name, unique among live nodes (letters, digits, ``_ - .``).
        lanes: returns the lane manager claimed commands run on (tools by registered name).
        engine: builds the workflow engine for a store (one per epoch, so a
            fenced engine's late writes stay fenced).
        lease_s: lease length; a dead node's work is adopted about this long
            after its last heartbeat (default 3 s, so adoption within 5 s).
        heartbeat_s: seconds between lease renewals and adoption scans (default ``lease_s / 4``).
        poll_s: fallback poll when no notification comes (default 5 s).
        max_inflight: commands claimed here and not yet finished, at most.
        max_workflows: workflows running here at once, at most.
        table_prefix: prefix of the cluster tables (letters, digits, ``_``).
        join_timeout: seconds to wait for a live node of the same name to expire before :class:`NodeNameTaken`.
        executors: workflow executors by agent type, registered before the node
            claims anything (see :meth:`register_executor`).
        claim: False makes a client node: it submits and reads results but runs nothing.
    """

    def __init__(self, dsn: str, node: str, *, lanes: Callable[[], LaneManager],
                 engine: Callable[[Store], WorkflowEngine], lease_s: float = 3.0, heartbeat_s: float | None = None,
                 poll_s: float = 5.0, max_inflight: int = 64, max_workflows: int = 16,
                 table_prefix: str = "laneway_cluster_", join_timeout: float | None = None,
                 executors: Mapping[str, Callable[..., Any]] | None = None, claim: bool = True) -> None:
        if not isinstance(node, str) or not node or not set(node) <= _NAME_OK:
            raise ConfigError(f"node must be a non-empty name of letters, digits, '_', '-', '.'; got {node!r}")
        for name, value in (("lease_s", lease_s), ("poll_s", poll_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
        heartbeat_s = lease_s / 4 if heartbeat_s is None else heartbeat_s
        if isinstance(heartbeat_s, bool) or not isinstance(heartbeat_s, (int, float)) or not 0 < heartbeat_s < lease_s:
            raise ConfigError(f"heartbeat_s must be a number of seconds > 0 and < lease_s ({lease_s}), got {heartbeat_s!r}")
        for name, value in (("max_inflight", max_inflight), ("max_workflows", max_workflows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(table_prefix, str) or not table_prefix or not set(table_prefix) <= _NAME_OK - {"-", "."}:
            raise ConfigError(f"table_prefix must be letters, digits and '_', got {table_prefix!r}")
        self._psycopg = import_psycopg("a cluster node")
        self.dsn = dsn
        self.node = node
        self.lease_s = float(lease_s)
        self.heartbeat_s = float(heartbeat_s)
        self.poll_s = float(poll_s)
        self.max_inflight = max_inflight
        self.max_workflows = max_workflows
        self.prefix = table_prefix
        self.channel = f"{table_prefix}events"
        self._join_timeout = self.lease_s + 2 * self.heartbeat_s if join_timeout is None else join_timeout
        self._sql = {name: getattr(_sql, name).replace("{p}", table_prefix) for name in dir(_sql) if name.isupper()}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.state = NodeState.JOINING
        self.epoch = 0
        self._waiters: dict[str, ResultFuture] = {}
        self._wf_waiters: dict[str, ResultFuture] = {}
        self._counts = dict.fromkeys(("requeued", "nodes_declared_dead", "lease_losses"), 0)
        self._hb_conn = self._connect()
        self._create_schema()
        self._submit_conn = self._connect()
        self._submit_lock = threading.Lock()
        self._listen_conn = self._connect()
        self._listen_conn.execute(f'LISTEN "{self.channel}"')
        super().__init__(lanes, engine)
        self._claiming = bool(claim)
        for agent_type, fn in (executors or {}).items():
            self.register_executor(agent_type, fn)
        self._join(rejoin=False)
        self._threads = [
            threading.Thread(target=self._heartbeat_loop, name=f"cluster-{node}-heartbeat", daemon=True),
            threading.Thread(target=self._listen_loop, name=f"cluster-{node}-listen", daemon=True),
            threading.Thread(target=self._work_loop, name=f"cluster-{node}-work", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def __repr__(self) -> str:
        return f"<ClusterNode {self.node} epoch={self.epoch} {self.state.value}>"

    # connections and membership ---------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(2, int(self.lease_s)))
        except self._psycopg.Error as exc:
            raise ClusterError(f"cluster node {self.node}: cannot connect to PostgreSQL: {exc}") from exc

    def _create_schema(self) -> None:
        with self._hb_conn.transaction():
            self._hb_conn.execute(_sql.SCHEMA_LOCK, (f"{self.prefix}schema",))
            self._hb_conn.execute(self._sql["SCHEMA"])

    def _join(self, *, rejoin: bool) -> None:
        """Register (or re-register) this node under a new epoch; waits for a live namesake's lease to end."""
        deadline = time.monotonic() + self._join_timeout
        args = {"node": self.node, "lease": self.lease_s, "pid": os.getpid(), "host": socket.gethostname(),
                "rejoin": rejoin}
        while True:
            row = self._hb_conn.execute(self._sql["JOIN"], args).fetchone()
            if row is not None:
                break
            if time.monotonic() >= deadline or self._stop.is_set():
                raise NodeNameTaken(f"node name {self.node!r} is held by a live node (lease not expired after "
                                    f"{self._join_timeout:.1f}s); give each node a unique name")
            self._stop.wait(self.heartbeat_s)
        with self._lock:
            self.epoch = row[0]
            self.state = NodeState.MEMBER
        self._new_epoch(self.epoch)
        log.info("cluster node %s joined with epoch %d", self.node, self.epoch)

    def fence_sql(self) -> tuple[str, tuple[str, int]]:
        """The fencing check (query and arguments) every commit of this epoch runs first."""
        return self._sql["FENCE"], (self.node, self.epoch)

    def _heartbeat_loop(self) -> None:
        conn = self._hb_conn
        while not self._stop.wait(self.heartbeat_s):
            try:
                if conn.closed or conn.broken:
                    conn = self._hb_conn = self._connect()
                with self._lock:
                    epoch, member = self.epoch, self.state is NodeState.MEMBER
                if member and conn.execute(self._sql["RENEW"], (self.lease_s, self.node, epoch)).fetchone() is None:
                    self._lease_lost(epoch)
                self._adopt(conn)
            except (self._psycopg.Error, ClusterError) as exc:
                # Cut off from the database: the lease runs out here as it does for the others;
                # the next renewal after reconnecting fails and the node rejoins.
                log.warning("cluster node %s: heartbeat failed: %s", self.node, exc)

    def _adopt(self, conn: Any) -> None:
        """Declare expired nodes dead and put every orphaned command and workflow back in the queue."""
        with conn.transaction():
            dead = conn.execute(self._sql["DECLARE_DEAD"], (self.node,)).fetchall()
            commands = conn.execute(self._sql["REQUEUE_ORPHANS"].replace("{table}", "commands")).fetchall()
            workflows = conn.execute(self._sql["REQUEUE_ORPHANS"].replace("{table}", "workflows")).fetchall()
            if commands:
                conn.execute("SELECT pg_notify(%s, 'n')", (self.channel,))
            if workflows:
                conn.execute("SELECT pg_notify(%s, 'w')", (self.channel,))
        if dead or commands or workflows:
            with self._lock:
                self._counts["nodes_declared_dead"] += len(dead)
                self._counts["requeued"] += len(commands) + len(workflows)
            log.warning("cluster node %s: declared %s dead; requeued %d commands and %d workflows",
                        self.node, [f"{n}@{e}" for n, e in dead] or "no node", len(commands), len(workflows))

    def _lease_lost(self, epoch: int) -> None:
        """Our lease is gone (we were paused or cut off): drop our work and rejoin under a new epoch."""
        with self._lock:
            if self.epoch != epoch or self.state is not NodeState.MEMBER:
                return
            self.state = NodeState.FENCED
            self._counts["lease_losses"] += 1
        log.warning("cluster node %s lost its lease (epoch %d); its work is adopted elsewhere; rejoining",
                    self.node, epoch)
        self._abandon_epoch()
        if not self._stop.is_set():
            self._join(rejoin=True)
            self.wake()

    # listening --------------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        conn = self._listen_conn
        while not self._stop.is_set():
            try:
                if conn.closed or conn.broken:
                    conn = self._listen_conn = self._connect()
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.wake()
                # Queries wait until the notifies() generator has ended: it holds the connection.
                payloads = [n.payload for n in conn.notifies(timeout=self.poll_s, stop_after=1)]
                if payloads:
                    payloads += [n.payload for n in conn.notifies(timeout=0.0)]  # whatever else arrived meanwhile
                finished: set[str] = set()
                workflows: list[str] = []
                for payload in payloads:
                    self._on_notify(payload, finished, workflows)
                if not payloads:
                    self.wake()  # the fallback poll
                    with self._lock:
                        finished = set(self._waiters)
                        workflows = list(self._wf_waiters)
                self._settle_waiters(conn, finished)
                self._check_workflow_waiters(conn, workflows)
            except self._psycopg.Error as exc:
                log.warning("cluster node %s: listener failed: %s", self.node, exc)
                self._stop.wait(min(self.poll_s, self.heartbeat_s))

    def _on_notify(self, payload: str, finished: set[str], workflows: list[str]) -> None:
        kind, _, rest = payload.partition(" ")
        if kind == "d":
            with self._lock:
                finished.update(i for i in rest.split(",") if i in self._waiters)
        elif kind == "f":
            with self._lock:
                if rest in self._wf_waiters:
                    workflows.append(rest)
        else:
            self.wake()

    def _settle_waiters(self, conn: Any, ids: Iterable[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        for cid, state, result, error, blob in conn.execute(self._sql["RESULTS"], (ids,)).fetchall():
            with self._lock:
                future = self._waiters.pop(cid, None)
            if future is None:
                continue
            if state == "done":
                try:
                    future.settle(pickle.loads(result))
                except Exception as exc:
                    future.settle(error=CommandFailed(f"command {cid}: its result cannot be read here: {exc!r}"))
            else:
                future.settle(error=_rebuild_error(cid, error, blob))

    def _check_workflow_waiters(self, conn: Any, ids: list[str]) -> None:
        for wid in ids:
            status = self._read_status(conn, wid)
            if status is not None:
                with self._lock:
                    future = self._wf_waiters.pop(wid, None)
                if future is not None:
                    future.settle(status)

    def _read_status(self, conn: Any, wid: str) -> WorkflowStatus | None:
        row = conn.execute(self._sql["WF_RESULT"], (wid,)).fetchone()
        return None if row is None else pickle.loads(row[0])

    # submitting ---------------------------------------------------------------------------

    def submit(self, lane: str, tool: str, params: Mapping[str, Any] | None = None, *,
               priority: Priority | int | None = None, caller: str = "default", timeout: float | None = None,
               command_id: str | None = None) -> ClusterHandle:
        """Queue a durable command in the cluster; one node runs it; its result is readable from any node.

        The command is in the database when this returns. Nodes claim commands
        by lane priority, then ``priority``, then round-robin among the lane's
        callers, then age.

        Args:
            lane: a lane every node has (its priority orders claims cluster-wide).
            tool: a tool registered by name on every node (checked here against this node's registry).
            params: the tool's keyword arguments (checked here; must pickle).
            priority: level inside the lane (a :class:`~laneway.lanes.Priority` or 0..4; default NORMAL).
            caller: who submits; a lane's callers take turns across the cluster.
            timeout: seconds per attempt on the node that runs it (default: the tool's, else the lane's).
            command_id: your own cluster-wide unique id (default: generated).

        Raises:
            LaneNotFound, ToolNotFound, ToolParameterError: bad lane, tool or parameters.
            ConfigError: a bad option or a duplicate ``command_id``.
            SystemShutdown: the node is stopping.
        """
        lanes = self._lanes()
        config = lanes.lane_config(lane)
        spec = lanes.tools.get(tool) if isinstance(tool, str) else None
        if spec is None:
            raise ConfigError(f"a cluster command names a registered tool by its name (a str), got {tool!r}")
        params = dict(params or {})
        spec.validate(params)
        level = Priority.NORMAL if priority is None else Priority(priority)
        if not isinstance(caller, str) or not caller:
            raise ConfigError(f"caller must be a non-empty string, got {caller!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigError(f"timeout must be a number > 0 or None, got {timeout!r}")
        cid = f"c-{uuid.uuid4().hex}" if command_id is None else command_id
        if not isinstance(cid, str) or not cid or "," in cid or " " in cid:
            raise ConfigError(f"command_id must be a non-empty string without ',' or spaces, got {cid!r}")
        if self._stop.is_set():
            raise SystemShutdown(f"cluster node {self.node} is stopping and takes no new commands")
        future = ResultFuture()
        with self._lock:
            self._waiters[cid] = future  # before the insert: a fast result's notification must find it
        args = {"id": cid, "lane": lane, "turns": f"{lane}/{int(level)}", "lane_priority": config.priority, "level": int(level), "caller": caller,
                "tool": tool, "params": cloudpickle.dumps(params), "timeout": timeout, "node": self.node,
                "channel": self.channel}
        try:
            with self._submit_lock:
                self._submit_conn.execute(self._sql["SUBMIT"], args)
        except self._psycopg.errors.UniqueViolation:
            with self._lock:
                self._waiters.pop(cid, None)
            raise ConfigError(f"command id {cid!r} is already in use in the cluster") from None
        except self._psycopg.Error as exc:
            with self._lock:
                self._waiters.pop(cid, None)
            raise ClusterError(f"cluster node {self.node}: could not queue command {cid}: {exc}") from exc
        return ClusterHandle(cid, lane, future)

    def handle(self, command_id: str) -> ClusterHandle:
        """A handle on a command submitted by any node (its result settles when it finishes)."""
        future = ResultFuture()
        with self._lock:
            future = self._waiters.setdefault(command_id, future)
        with self._submit_lock:
            row = self._submit_conn.execute(f"SELECT lane FROM {self.prefix}commands WHERE id = %s",
                                            (command_id,)).fetchone()
            if row is None:
                with self._lock:
                    self._waiters.pop(command_id, None)
                raise ConfigError(f"no cluster command {command_id!r}")
            self._settle_waiters(self._submit_conn, [command_id])
        return ClusterHandle(command_id, row[0], future)

    def submit_workflow(self, tasks: Iterable[TaskDefinition], *, workflow_id: str | None = None, name: str = "",
                        variables: Mapping[str, Any] | None = None,
                        max_parallel_tasks: int | None = None) -> ClusterWorkflow:
        """Store a workflow and queue it in the cluster; one node runs it, and adopts it if that node dies.

        Register the task executors on every node (:meth:`register_executor`).

        Raises:
            WorkflowValidationError, CycleError: as for ``WorkflowEngine.create_workflow``.
        """
        wid = f"wf-{uuid.uuid4().hex[:16]}" if workflow_id is None else workflow_id
        engine = self._current_engine()
        engine.create_workflow(tasks, workflow_id=wid, name=name, variables=variables,
                               max_parallel_tasks=max_parallel_tasks)
        # Whichever node claims it reads it back from the store; a copy kept here would go stale.
        engine.forget(wid)
        future = ResultFuture()
        with self._lock:
            self._wf_waiters[wid] = future
        with self._submit_lock:
            self._submit_conn.execute(self._sql["WF_SUBMIT"], (wid, self.node, self.channel))
        return ClusterWorkflow(wid, future, status_fn=self.workflow_status)

    def workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """The final status of a cluster workflow, or None while it runs."""
        with self._submit_lock:
            return self._read_status(self._submit_conn, workflow_id)

    # inspection ----------------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """Every node the database knows, live or not."""
        with self._submit_lock:
            rows = self._submit_conn.execute(
                f"SELECT node, epoch, alive, EXTRACT(EPOCH FROM lease_until - clock_timestamp()), pid, host "
                f"FROM {self.prefix}nodes ORDER BY node").fetchall()
        return [NodeInfo(n, e, a, float(left), pid, host) for n, e, a, left, pid, host in rows]

    def statistics(self) -> ClusterStats:
        """This node's counters."""
        with self._lock:
            return ClusterStats(self.node, self.epoch, self.state, running=len(self._inflight),
                                workflows_running=len(self._wf_inflight), **self._work_counts, **self._counts)

    # stopping ----------------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Leave the cluster: stop claiming, let running commands finish and commit (up to ``timeout``),
        put the rest back in the queue, and end the lease so the others take it at once."""
        if self._stop.is_set():
            return
        self._drain(timeout)
        self._stop.set()
        self.wake()
        try:
            with self._lock:
                epoch = self.epoch
            with self._submit_lock:
                conn = self._submit_conn
                # Leaving bumps the epoch first, which fences every late write of this node; then release.
                conn.execute(self._sql["LEAVE"], (self.node, epoch))
                self._release_all(conn, epoch)
                # Wakes the other nodes to claim what was released, and this node's listener to stop.
                conn.execute("SELECT pg_notify(%s, 'n'), pg_notify(%s, 'w')", (self.channel, self.channel))
        except self._psycopg.Error as exc:
            log.warning("cluster node %s: could not leave cleanly (the lease expires instead): %s", self.node, exc)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=self.poll_s + 1.0)
        with self._lock:
            self.state = NodeState.LEFT
            waiters = list(self._waiters.values()) + list(self._wf_waiters.values())
            self._waiters.clear()
            self._wf_waiters.clear()
        for f in waiters:
            f.settle(error=SystemShutdown(f"cluster node {self.node} stopped before the result arrived; "
                                          "read it later with handle(command_id) on any node"))
        for conn in (self._hb_conn, self._listen_conn, self._submit_conn, self._work_conn):
            try:
                conn.close()
            except Exception:
                log.debug("closing a cluster connection failed", exc_info=True)


def _rebuild_error(cid: str, text: str | None, blob: bytes | None) -> BaseException:
    if blob is not None:
        try:
            error = pickle.loads(blob)
            if isinstance(error, BaseException):
                return error
        except Exception:
            log.debug("error of command %s cannot be unpickled here", cid, exc_info=True)
    return CommandFailed(f"command {cid} failed: {text}")
