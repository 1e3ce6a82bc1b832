"""The worker side of a cluster node: claim with SKIP LOCKED, run locally, commit fenced batches."""

from __future__ import annotations

import functools

import logging
import pickle
import threading
import time
from concurrent.futures import Future as CFuture
from typing import TYPE_CHECKING, Any, Callable

import cloudpickle

from laneway.cluster._records import NodeState
from laneway.errors import LaneFull, LanewayError, LeaseLost
from laneway.lanes import Priority
from laneway.store import PostgresStore
from laneway.workflow import WorkflowState

if TYPE_CHECKING:
    from laneway.lanes import LaneManager
    from laneway.store import Store
    from laneway.workflow import WorkflowEngine, WorkflowStatus

log = logging.getLogger(__name__)

#: Notification payloads stay below PostgreSQL's 8000-byte limit.
_CHUNK = 7000


class Worker:
    """Claims, runs and commits; mixed into :class:`ClusterNode` (which provides the connections and the lease)."""

    node: str
    epoch: int
    state: NodeState
    dsn: str
    prefix: str
    channel: str
    max_inflight: int
    max_workflows: int
    poll_s: float
    _sql: dict[str, str]
    _lock: threading.RLock
    _stop: threading.Event
    _psycopg: Any

    def __init__(self, lanes: Callable[[], LaneManager], engine: Callable[[Store], WorkflowEngine]) -> None:
        self._lanes = lanes
        self._engine_factory = engine
        self._executors: dict[str, Callable[..., Any]] = {}
        self._engine: WorkflowEngine | None = None
        self._stores: list[PostgresStore] = []
        self._work_conn = self._connect()  # type: ignore[attr-defined]
        self._cv = threading.Condition(self._lock)
        self._woken = True
        self._claiming = True
        self._inflight: dict[str, tuple[int, str]] = {}  # command id -> (epoch, lane command id)
        self._wf_inflight: dict[str, int] = {}  # workflow id -> epoch
        self._finished: list[tuple[str, int, str, bytes | None, str | None, bytes | None]] = []
        self._wf_finished: list[tuple[str, int, bytes]] = []
        self._work_counts = dict.fromkeys(("claimed", "committed", "fenced", "workflows_claimed"), 0)

    # workflow engines, one per epoch -------------------------------------------------------------

    def _new_epoch(self, epoch: int) -> None:
        store = PostgresStore(self.dsn, table_prefix=f"{self.prefix}wf_")
        store.set_fence(self._sql["FENCE"], (self.node, epoch))
        engine = self._engine_factory(store)
        with self._lock:
            for agent_type, fn in self._executors.items():
                engine.register_executor(agent_type, fn)
            self._engine = engine
            self._stores.append(store)

    def _current_engine(self) -> WorkflowEngine:
        with self._lock:
            assert self._engine is not None
            return self._engine

    def register_executor(self, agent_type: str, fn: Callable[..., Any]) -> None:
        """Run workflow tasks of ``agent_type`` with ``fn(ctx)`` on this node (register the same on every node).

        ``ctx.idempotency_key`` is the same for every attempt of a task on any
        node: record it with the task's effect to make a re-run after a
        failover exactly-once in effect.
        """
        with self._lock:
            self._executors[agent_type] = fn
            engine = self._engine
        if engine is not None:
            engine.register_executor(agent_type, fn)

    def _abandon_epoch(self) -> None:
        """After losing the lease: stop what runs here; it belongs to the adopting nodes now."""
        lanes = self._lanes()
        with self._lock:
            running = list(self._inflight.values())
            self._work_counts["fenced"] += len(running) + len(self._wf_inflight)
            self._inflight.clear()
            self._finished.clear()
            self._wf_inflight.clear()
            self._wf_finished.clear()
        for _, lane_id in running:
            lanes.cancel(lane_id, "this node lost its cluster lease; the command was adopted by another node")

    # the loop -------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Make the worker claim and commit now (a notification arrived, a slot freed)."""
        with self._cv:
            self._woken = True
            self._cv.notify()

    def _work_loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._woken or self._stop.is_set(), timeout=self.poll_s)
                if self._stop.is_set():
                    return
                self._woken = False
                finished, self._finished = self._finished, []
                wf_finished, self._wf_finished = self._wf_finished, []
                member = self.state is NodeState.MEMBER
                epoch = self.epoch
            try:
                conn = self._work_conn
                if conn.closed or conn.broken:
                    conn = self._work_conn = self._connect()  # type: ignore[attr-defined]
                if finished:
                    self._commit_commands(conn, epoch, finished)
                if wf_finished:
                    self._commit_workflows(conn, epoch, wf_finished)
                if member and self._claiming:
                    self._claim_commands(conn, epoch)
                    self._claim_workflows(conn, epoch)
            except LeaseLost as exc:
                # The heartbeat finds the same on its next renewal and rejoins; nothing was written.
                log.warning("cluster node %s: %s", self.node, exc)
            except (self._psycopg.Error, LanewayError) as exc:
                log.warning("cluster node %s: claim/commit failed, retrying: %s", self.node, exc)
                with self._lock:
                    self._finished[:0] = finished  # committed later (or fenced if the lease went meanwhile)
                    self._wf_finished[:0] = wf_finished
                self._stop.wait(min(1.0, self.poll_s))
                self.wake()

    def _fence(self, conn: Any, epoch: int) -> None:
        if conn.execute(self._sql["FENCE"], (self.node, epoch)).fetchone() is None:
            raise LeaseLost(f"node {self.node} epoch {epoch} no longer holds its lease; commits are refused")

    # commands -------------------------------------------------------------------------------------

    def _claim_commands(self, conn: Any, epoch: int) -> None:
        with self._lock:
            room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        rows = conn.execute(self._sql["CLAIM"], {"node": self.node, "epoch": epoch, "n": room}).fetchall()
        if not rows:
            return
        conn.execute(self._sql["RAISE_FLOOR"], ([f"{r[1]}/{r[2]}" for r in rows], [r[3] for r in rows]))
        lanes = self._lanes()
        refused: list[str] = []
        for cid, lane, level, _turn, caller, tool, params, timeout in rows:
            lane_id = f"{cid}~{epoch}"
            with self._lock:
                self._work_counts["claimed"] += 1
                self._inflight[cid] = (epoch, lane_id)
            options: dict[str, Any] = {"priority": Priority(level), "caller": caller, "command_id": lane_id}
            if timeout is not None:
                options["timeout"] = timeout
            try:
                handle = lanes.submit_nowait(lane, tool, pickle.loads(params), **options)
            except LaneFull:
                with self._lock:
                    self._inflight.pop(cid, None)
                refused.append(cid)
                continue
            except Exception as exc:
                # No such tool or lane on this node, bad parameters: the command fails, visibly.
                self._command_done(cid, epoch, _failed(exc))
                continue
            handle.future.add_done_callback(functools.partial(self._command_done, cid, epoch))
        if refused:
            conn.execute(self._sql["RELEASE"].replace("{table}", "commands"), (refused, self.node, epoch))
        if len(rows) == room:
            self.wake()  # there may be more

    def _command_done(self, cid: str, epoch: int, future: CFuture[Any]) -> None:
        error = future.exception()
        entry: tuple[str, int, str, bytes | None, str | None, bytes | None]
        if error is None:
            try:
                entry = (cid, epoch, "done", cloudpickle.dumps(future.result()), None, None)
            except Exception as exc:
                error = exc
        if error is not None:
            try:
                blob: bytes | None = cloudpickle.dumps(error)
            except Exception:
                blob = None
            entry = (cid, epoch, "failed", None, f"{type(error).__name__}: {error}", blob)
        with self._cv:
            if self._inflight.get(cid, (None,))[0] != epoch:
                return  # abandoned with a lost lease: not ours to commit
            self._finished.append(entry)
            self._woken = True
            self._cv.notify()

    def _commit_commands(self, conn: Any, epoch: int, batch: list[tuple[Any, ...]]) -> None:
        stale = [b for b in batch if b[1] != epoch]
        batch = [b for b in batch if b[1] == epoch]
        written: list[str] = []
        lost: LeaseLost | None = None
        if batch:
            try:
                with conn.transaction():
                    self._fence(conn, epoch)
                    ids, _, states, results, errors, blobs = (list(col) for col in zip(*batch))
                    written = [r[0] for r in conn.execute(self._sql["FINISH"], {
                        "node": self.node, "epoch": epoch, "ids": ids, "states": states, "results": results,
                        "errors": errors, "blobs": blobs}).fetchall()]
                    for chunk in _chunks(written):
                        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, "d " + ",".join(chunk)))
            except LeaseLost as exc:
                lost = exc
        with self._cv:
            for b in batch + stale:
                if self._inflight.get(b[0], (None,))[0] == b[1]:
                    del self._inflight[b[0]]
            self._work_counts["committed"] += len(written)
            self._work_counts["fenced"] += len(batch) + len(stale) - len(written)
            self._cv.notify_all()
        if lost is not None:
            raise lost
        self.wake()  # room for more

    # workflows ------------------------------------------------------------------------------------

    def _claim_workflows(self, conn: Any, epoch: int) -> None:
        with self._lock:
            room = self.max_workflows - len(self._wf_inflight)
            engine = self._engine
        if room <= 0 or engine is None:
            return
        rows = conn.execute(self._sql["WF_CLAIM"], {"node": self.node, "epoch": epoch, "n": room}).fetchall()
        for (wid,) in rows:
            with self._lock:
                self._wf_inflight[wid] = epoch
                self._work_counts["workflows_claimed"] += 1
            try:
                wf = engine.get(wid)  # read back from the store; a running one resumes from its last version
                if wf.status().state is WorkflowState.CREATED:
                    wf.start()
            except Exception:
                log.exception("cluster node %s: could not take workflow %s; releasing it", self.node, wid)
                with self._lock:
                    self._wf_inflight.pop(wid, None)
                conn.execute(self._sql["RELEASE"].replace("{table}", "workflows"), ([wid], self.node, epoch))
                continue
            wf.future.add_done_callback(functools.partial(self._workflow_done, wid, epoch))

    def _workflow_done(self, wid: str, epoch: int, future: CFuture[WorkflowStatus]) -> None:
        if future.exception() is not None:
            return  # the engine stopped under it: the workflow stays claimed and is adopted or released
        status = future.result()
        with self._cv:
            if self._wf_inflight.get(wid) != epoch:
                return
            self._wf_finished.append((wid, epoch, cloudpickle.dumps(status)))
            self._woken = True
            self._cv.notify()

    def _commit_workflows(self, conn: Any, epoch: int, batch: list[tuple[str, int, bytes]]) -> None:
        for wid, wf_epoch, blob in batch:
            written = False
            if wf_epoch == epoch:
                try:
                    with conn.transaction():
                        self._fence(conn, epoch)
                        args = {"id": wid, "node": self.node, "epoch": epoch, "status": blob}
                        written = conn.execute(self._sql["WF_FINISH"], args).fetchone() is not None
                        if written:
                            conn.execute("SELECT pg_notify(%s, %s)", (self.channel, f"f {wid}"))
                except LeaseLost:
                    written = False
            with self._cv:
                if self._wf_inflight.get(wid) == wf_epoch:
                    del self._wf_inflight[wid]
                if not written:
                    self._work_counts["fenced"] += 1
                self._cv.notify_all()
        self.wake()

    # stopping -------------------------------------------------------------------------------------

    def _drain(self, timeout: float) -> None:
        """Claim nothing more; wait up to ``timeout`` for the commands and workflows running here to commit."""
        self._claiming = False
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._inflight or self._finished or self._wf_finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 0.1))

    def _release_all(self, conn: Any, epoch: int) -> None:
        with self._lock:
            commands = [c for c, (e, _) in self._inflight.items() if e == epoch]
            workflows = [w for w, e in self._wf_inflight.items() if e == epoch]
        if commands:
            conn.execute(self._sql["RELEASE"].replace("{table}", "commands"), (commands, self.node, epoch))
        if workflows:
            conn.execute(self._sql["RELEASE"].replace("{table}", "workflows"), (workflows, self.node, epoch))
        for store in self._stores:
            store.close()


def _failed(error: BaseException) -> CFuture[Any]:
    future: CFuture[Any] = CFuture()
    future.set_exception(error)
    return future


def _chunks(ids: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    size = _CHUNK
    for cid in ids:
        if size + len(cid) + 1 > _CHUNK:
            out.append([])
            size = 0
        out[-1].append(cid)
        size += len(cid) + 1
    return out
