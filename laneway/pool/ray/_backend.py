"""The pool's Ray backend: each laneway worker is one Ray actor.

``Pool(orch, backend="ray")`` runs the same workers as the default ZeroMQ pool,
as Ray actors on a local Ray (``ray.init(num_cpus=...)``) or on an existing
cluster (``address="auto"`` or ``"ray://HOST:10001"``). Everything that decides
*what* happens (queue, windows, attempts, timeouts, dead letters, restarts) stays
in the pool; this module only moves tasks and notices deaths. Ray's own actor
restarts and task retries are switched off so they never double up with
laneway's supervisor.

How it works, in one event loop thread and one reply thread:

* ``start_worker`` creates the actor and one *watch* call chain: ``hello`` (the
  worker is ready: pid, host, node), then ``beat`` calls forever (memory and CPU
  for the pool). The watch is the only place that reports ``worker_lost``: a
  dead actor, however it died (``ray.kill`` after a timeout, a SIGKILLed process,
  a lost node), fails the outstanding call, so no idle death goes unnoticed. A
  beat that does not come back in time (``hub.clock``) kills the actor as hung.
* Tasks the pool assigns to a worker go out as plain actor calls of at most
  ``batch_size`` tasks (at most ``max_calls_per_worker`` in flight, the rest
  waiting to form the next batch), and the pool's default window per worker is
  one batch more than their product: the actor always has the next calls queued,
  and the batch after them is ready, so it leaves the moment a call answers,
  before that call's outcomes are reported (the actor does not wait on the
  pool's bookkeeping). Each call's tasks ride in one pickle with the batch
  number: every argument of a Ray call costs its own serialization. A call answers
  with its batch's outcomes; a batch that runs longer than a couple of
  milliseconds answers with those so far and the backend long-polls the rest
  (``more``), so slow tasks are still reported as each ends. Each answer says how
  long the actor spent on its tasks, and the pool sizes the worker's window by
  that (``busy_s``), not by the gaps between answers, which also count Ray's
  transit and queues: on a loaded driver those gaps made fast tasks look slow
  and shrank the window to 2. Tiny tasks thus
  cost one ordinary Ray call per batch, not Ray's costlier streaming
  generators. Functions travel once per actor, then by digest. Tasks and
  outcomes travel as the ZeroMQ wire's rows (``laneway.worker.wire``): small
  scalar arguments and results ride as themselves inside the call's one
  pickle, so a tiny task costs no pickle of its own at either end.
* Answers are collected by a reply thread blocked in ``ray.wait``, as a raw Ray
  driver collects them (:mod:`laneway.pool.ray._replies`): Ray's own I/O thread
  never waits for the GIL to hand an answer over, and no second thread hop sits
  between an answer and the batch that follows it. That thread reports the
  outcomes (``hub.results_rows``, which never blocks) and sends the next batches,
  under the lock that guards the batch state (the loop sends too: tasks the pool
  assigns after a submit). Every other report goes through one reporter thread,
  in order, so no pool callback (which may run user code) ever stalls Ray I/O,
  and a worker's last results always reach the pool before its ``worker_lost``.

Sizing: a pool asking for more workers than the cluster has room for (its
``CPU`` resources divided by ``worker_cpus``, read when the pool starts) is
sized down to that room with a warning log line (and a ``pool.resized`` event):
``max_workers``, ``wait_ready()`` and ``statistics()`` then count only workers
that can start, instead of leaving the rest "starting" until ``start_timeout_s``.
A cluster that autoscales may have room later: give ``worker_cpus=0`` (or
``actor_options`` with custom ``resources``) to size the pool yourself.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="doc") as orch:                                  # doctest: +SKIP
    ...     pool = orch.start_pool(backend="ray", workers=2, num_cpus=2)
    ...     pool.submit(pow, 2, 10).get(timeout=60)
    1024
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pickle
import signal
import threading
import time
from typing import Any, Callable

from laneway.errors import ConfigError, PoolError
from laneway.core import acquire_ray, ray_client_mode, release_ray
from laneway.pool._backend import Backend, TaskRow, WorkerHub
from laneway.pool.ray._calls import Call, batch_rows, describe_actor_error
from laneway.pool.ray._loop import LoopThreads
from laneway.pool.ray._replies import Entry, Replies
from laneway.worker import ShipLedger

log = logging.getLogger(__name__)

#: After a kill, how long to wait for Ray to confirm the death before reporting it anyway.
KILL_CONFIRM_S = 10.0
#: How long a dead worker's last streamed results may take to drain before ``worker_lost``.
DRAIN_S = 5.0
#: Actor options laneway owns: Ray restarting or retrying would double up with the supervisor.
_OWNED_OPTIONS = {"max_restarts": 0, "max_task_retries": 0}
#: The worker actor's "control" methods (hello, beat, more) run beside its batches: a thread for each.
_CONCURRENCY = {"concurrency_groups": {"control": 3}}
#: Batches and answers cross Ray as one pickle each (the worker actor's ``PROTOCOL``).
PROTOCOL = pickle.HIGHEST_PROTOCOL


class _Slot:
    """The backend's state for one worker incarnation.

    Its batch state (``ledger``, ``seq``, ``outbox``, ``calls``, ``drain``) is guarded by
    ``Replies.lock``: the loop thread sends the tasks the pool assigns, the reply thread
    handles answers and sends the batches that follow. The rest is the loop thread's.
    """

    __slots__ = ("wid", "handle", "run", "ledger", "seq", "outbox", "calls", "drain", "reason", "error", "dead",
                 "timer", "gone", "pidfd")

    def __init__(self, wid: str, handle: Any) -> None:
        self.wid = wid
        self.handle = handle
        self.run = handle.run  # the bound actor method, looked up once (each lookup makes a new one)
        self.ledger = ShipLedger()
        self.seq = 0  # next batch number; the actor serves them strictly in order
        self.outbox: list[TaskRow] = []  # assigned, waiting for a free call
        self.calls: collections.deque[Call] = collections.deque()  # batch calls in flight, in send order
        self.drain: asyncio.Future[None] | None = None  # a dead worker's end waits on it for its last answers
        self.reason: str | None = None  # why we stopped or killed it (None: it died on its own)
        self.error: BaseException | None = None
        self.dead = False
        self.timer: Any = None  # start or heartbeat deadline on hub.clock
        self.gone = threading.Event()  # set once worker_lost was reported
        self.pidfd: int | None = None  # the actor's process, when it runs on the driver's node


class RayBackend(Backend):
    """Runs pool workers as Ray actors (``Pool(orch, backend="ray", ...)``).

    Args:
        address: ``None`` starts a local Ray (unless the application already called
            ``ray.init``); ``"auto"`` or ``"ray://HOST:10001"`` joins a running cluster.
        num_cpus: CPUs of the local Ray (only without ``address``).
        worker_cpus: CPUs each worker actor reserves from Ray's scheduler.
        heartbeat_s: seconds between a worker's heartbeats (memory and CPU for the pool).
        heartbeat_timeout_s: a heartbeat this much later than due means the worker hung: it is killed.
        start_timeout_s: an actor not up after this long (e.g. the cluster lacks resources) is killed.
        batch_size: most tasks in one actor call.
        max_calls_per_worker: batch calls in flight per actor; tasks assigned meanwhile wait to
            form the next batch. The pool's default ``window`` is ``batch_size * (max_calls_per_worker + 1)``:
            the calls in flight, and the next batch ready to leave when one answers.
        actor_options: extra ``ray.remote`` options for the worker actors (``resources``,
            ``scheduling_strategy``, ``runtime_env``, ...), except restarts and retries.
        init_options: extra ``ray.init`` keywords when laneway starts or joins Ray.

    Raises:
        ConfigError: a bad value, or an option laneway must own (``max_restarts``, ...).

    Example:
        >>> pool = orch.start_pool(backend="ray", address="auto", workers=8)   # doctest: +SKIP
    """

    name = "ray"
    #: Tiny tasks' arguments (builtin scalars) ride as themselves in the batch's one pickle.
    inline_args = True

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        worker_cpus: float = 1.0,
        heartbeat_s: float = 1.0,
        heartbeat_timeout_s: float = 30.0,
        start_timeout_s: float = 120.0,
        batch_size: int = 16,
        max_calls_per_worker: int = 4,
        actor_options: dict[str, Any] | None = None,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        _check_positive(heartbeat_s=heartbeat_s, heartbeat_timeout_s=heartbeat_timeout_s,
                        start_timeout_s=start_timeout_s)
        for key, count in (("batch_size", batch_size), ("max_calls_per_worker", max_calls_per_worker)):
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigError(f"RayBackend {key} must be an int >= 1, got {count!r}")
        if worker_cpus < 0:
            raise ConfigError(f"RayBackend worker_cpus must be >= 0, got {worker_cpus!r}")
        if num_cpus is not None and num_cpus < 1:
            raise ConfigError(f"RayBackend num_cpus must be >= 1, got {num_cpus!r}")
        if address is not None and num_cpus is not None:
            raise ConfigError(f"num_cpus={num_cpus} applies to a local Ray only; the cluster at {address!r} "
                              "has its own resources (drop num_cpus or address)")
        owned = sorted(set(actor_options or ()) & {*_OWNED_OPTIONS, "max_retries"})
        if owned:
            raise ConfigError(f"RayBackend actor_options may not set {owned}: laneway's supervisor owns "
                              "restarts and retries, so Ray's are always off")
        self.address = address
        self.num_cpus = num_cpus
        self.heartbeat_s = heartbeat_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_calls = max_calls_per_worker
        self.batch_size = batch_size
        self.window = batch_size * (max_calls_per_worker + 1)
        self._actor_options = {"num_cpus": worker_cpus, **_CONCURRENCY, **(actor_options or {}), **_OWNED_OPTIONS}
        self._init_options = dict(init_options or {})
        self._hub: WorkerHub  # set by open(), which the pool calls first
        self._owns_session = False
        self._slots: dict[str, _Slot] = {}
        self._closed = False
        self._wake_pending = False
        self._replies: Replies | None = None
        self._dispatch_due = False  # the pool woke the backend from the reply thread (under Replies.lock)
        self._threads: LoopThreads | None = None
        self._loop_ident = -1  # the loop thread's ident, once open
        self._capacity_text = ""

    # --- lifecycle --------------------------------------------------------------

    def open(self, hub: WorkerHub) -> None:
        """Start or join Ray, then the loop and reporter threads."""
        import ray

        from laneway.pool.ray._actor import RayWorker

        self._owns_session = acquire_ray(self.address, self.num_cpus, self._init_options)
        self._hub = hub
        self._ray = ray
        self._actor_cls = ray.remote(**self._actor_options)(RayWorker)
        self._node = "" if ray_client_mode() else ray.get_runtime_context().get_node_id()
        self._threads = LoopThreads(getattr(hub, "name", "pool"))
        self._loop = self._threads.loop
        self._post, self._report = self._threads.post, self._threads.report
        self._loop_ident = self._threads.call(threading.get_ident)
        self._replies = Replies(ray, getattr(hub, "name", "pool"), self._answered, self._rescue)
        self._lock = self._replies.lock

    def close(self, timeout: float) -> None:
        """Kill any actor still alive, stop the threads, and shut Ray down if laneway started it."""
        if self._closed or self._threads is None:
            self._closed = True
            return
        slots = self._threads.call(lambda: list(self._slots.values()))
        for slot in slots:
            self.kill_worker(slot.wid, "pool closed")
        deadline = time.monotonic() + timeout
        for slot in slots:
            if not slot.gone.wait(max(0.0, deadline - time.monotonic())):
                log.warning("Ray worker %s still not confirmed dead at close", slot.wid)
        self._closed = True
        self._threads.stop()
        if self._replies is not None and not self._replies.close(timeout):
            log.warning("the Ray reply thread did not end within %ss", timeout)
        if self._owns_session:
            release_ray()

    def describe(self) -> dict[str, Any]:
        """Where the workers run: the cluster address (or ``"local"``) and actor resources."""
        return {"address": self.address or "local", "num_cpus": self.num_cpus,
                "worker_cpus": self._actor_options["num_cpus"], "started_ray": self._owns_session,
                "capacity": self._capacity_text}

    def capacity(self) -> int | None:
        """Workers the cluster's CPUs hold (``CPU`` resources // ``worker_cpus``); None if unbounded."""
        cpus_each = self._actor_options["num_cpus"]
        if not cpus_each:
            return None
        total = float(self._ray.cluster_resources().get("CPU", 0.0))
        self._capacity_text = f"{total:g} CPUs, {cpus_each:g} per worker"
        return int(total // cpus_each + 1e-9)

    # --- the Backend contract ---------------------------------------------------------

    def start_worker(self, worker_id: str) -> None:
        """Create the worker's actor; ``worker_ready`` follows once it answers ``hello``."""
        try:
            self._call(self._start, worker_id)
        except PoolError:
            raise
        except Exception as exc:
            raise PoolError(f"could not create the Ray actor for worker {worker_id}: {exc!r}") from exc

    def stop_worker(self, worker_id: str, timeout: float) -> None:
        """Let the actor finish what it was sent and exit; kill it after ``timeout``; block until gone."""
        if self._closed:
            return
        slot = self._call(self._begin_stop, worker_id)
        if slot is None or slot.gone.wait(timeout):
            return
        self.kill_worker(worker_id, f"did not stop within {timeout}s; killed")
        if not slot.gone.wait(KILL_CONFIRM_S + DRAIN_S):
            log.warning("Ray never confirmed the end of worker %s; reporting it gone", worker_id)
            self._post(self._finish_now, slot)
            slot.gone.wait(KILL_CONFIRM_S)

    def kill_worker(self, worker_id: str, reason: str) -> None:
        """``ray.kill`` the actor (from any thread, without blocking); the watch reports the death."""
        if self._threads is not None:
            self._post(self._kill, worker_id, reason)

    def wake(self) -> None:
        """Schedule a dispatch on the loop thread (coalesced: one pending at a time)."""
        if self._replies is not None and threading.get_ident() == self._replies.ident:
            # results_rows() on the reply thread, under the lock: it dispatches once its answers are handled
            self._dispatch_due = True
            return
        if not self._wake_pending and not self._closed and self._threads is not None:
            self._wake_pending = True
            if threading.get_ident() == self._loop_ident:  # results() on the loop: no need to wake it
                self._loop.call_soon(self._dispatch)
            else:
                self._post(self._dispatch)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed or self._threads is None:
            raise PoolError("the Ray backend is closed" if self._closed else "the Ray backend is not open")
        return self._threads.call(fn, *args)

    # --- loop thread: starting, stopping, killing ------------------------------------

    def _start(self, wid: str) -> None:
        slot = _Slot(wid, self._actor_cls.remote())
        self._slots[wid] = slot
        self._loop.create_task(self._watch(slot))

    def _begin_stop(self, wid: str) -> _Slot | None:
        slot = self._slots.get(wid)
        if slot is None:
            return None  # already gone, and reported
        with self._lock:
            self._pump(slot, float("inf"))  # whatever is still assigned runs before the stop
            if slot.reason is None:
                slot.reason = "stopped"
            try:
                slot.handle.stop.remote(self._next_seq(slot))
            except Exception as exc:
                failed: BaseException | None = exc
            else:
                failed = None
        if failed is not None:
            self._fail(slot, failed)
        return slot

    def _kill(self, wid: str, reason: str) -> None:
        slot = self._slots.get(wid)
        if slot is None or slot.dead:
            return
        with self._lock:  # no batch leaves after this
            if slot.reason in (None, "stopped"):
                slot.reason = reason
        log.info("killing Ray worker %s: %s", wid, reason)
        try:
            self._ray.kill(slot.handle, no_restart=True)
        except Exception:
            log.debug("ray.kill(%s) failed; the watch will still report the end", wid, exc_info=True)
        if slot.pidfd is not None:
            # Ray asks the process to exit and SIGKILLs it only seconds later if it does not
            # (a hung or SIGSTOPped one); a process on this node can be killed now, race-free.
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(slot.pidfd, signal.SIGKILL)
        self._arm(slot, KILL_CONFIRM_S, self._finish_now, slot)

    def _fail(self, slot: _Slot, exc: BaseException) -> None:
        """A call to the actor failed: make sure it is dead; the watch reports it."""
        if slot.error is None:
            slot.error = exc
        self._kill(slot.wid, slot.reason or f"ray actor died: {describe_actor_error(exc)}")

    # --- loop thread: the watch (ready, heartbeats, the one place that reports the end) ----

    async def _watch(self, slot: _Slot) -> None:
        hub, wid = self._hub, slot.wid
        try:
            self._arm(slot, self.start_timeout_s, self._kill, wid,
                      f"ray actor not up within {self.start_timeout_s}s (does the cluster have the resources?)")
            pid, host, node = await slot.handle.hello.remote()
            if node == self._node:
                slot.pidfd = _pidfd(pid)
            self._report(hub.worker_ready, wid, pid=pid, host=host, node=node)
            beat = self.heartbeat_s + self.heartbeat_timeout_s
            while True:
                self._arm(slot, beat, self._kill, wid, f"no heartbeat for {beat:.3g}s")
                rss, cpu = await slot.handle.beat.remote(self.heartbeat_s)
                self._report(hub.heartbeat, wid, rss=rss, cpu=cpu)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the actor is gone (or unusable): report it once
            if slot.error is None:
                slot.error = exc
        await self._finish(slot)

    async def _finish(self, slot: _Slot) -> None:
        if slot.dead:
            return
        with self._lock:
            slot.dead = True
            if slot.calls:  # results the actor sent before dying go first
                slot.drain = self._loop.create_future()
        self._disarm(slot)
        self._slots.pop(slot.wid, None)
        if slot.drain is not None:
            await asyncio.wait({slot.drain}, timeout=DRAIN_S)
        if slot.pidfd is not None:  # on this node we can see the process really end
            await self._exited(slot.pidfd, DRAIN_S)
            os.close(slot.pidfd)
            slot.pidfd = None
        if slot.reason is None:
            log.warning("Ray worker %s died: %s", slot.wid, slot.error)
        reason = slot.reason or f"ray actor died: {describe_actor_error(slot.error or RuntimeError('unknown'))}"
        try:
            self._ray.kill(slot.handle, no_restart=True)  # no-op if dead; sure if merely unusable
        except Exception:
            log.debug("ray.kill after the end of %s failed", slot.wid, exc_info=True)
        self._report(self._lost, slot, reason)

    async def _exited(self, pidfd: int, timeout: float) -> None:
        """Wait until the process behind ``pidfd`` has ended (its pidfd turns readable)."""
        ended = self._loop.create_future()
        self._loop.add_reader(pidfd, lambda: None if ended.done() else ended.set_result(None))
        try:
            await asyncio.wait({ended}, timeout=timeout)
        finally:
            self._loop.remove_reader(pidfd)

    def _finish_now(self, slot: _Slot) -> None:
        if not slot.dead:
            self._loop.create_task(self._finish(slot))

    def _lost(self, slot: _Slot, reason: str) -> None:
        try:
            self._hub.worker_lost(slot.wid, reason)
        finally:
            slot.gone.set()

    def _arm(self, slot: _Slot, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self._disarm(slot)
        slot.timer = self._hub.clock.call_later(delay, lambda: self._post(fn, *args))

    @staticmethod
    def _disarm(slot: _Slot) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None

    # --- loop thread: tasks out, outcomes in --------------------------------------------

    def _dispatch(self) -> None:
        self._wake_pending = False
        with self._lock:
            self._dispatch_locked()

    def _dispatch_locked(self) -> None:
        # Under the lock from assign to send: tasks assigned to a worker leave in the order assigned.
        slots = self._slots
        while batches := self._hub.assign_rows():
            for wid, rows in batches:
                slot = slots.get(wid)
                if slot is None or slot.dead:
                    continue  # its worker_lost is reported (or on its way); the pool requeues the window
                slot.outbox.extend(rows)
                self._pump(slot, self.max_calls)

    def _pump(self, slot: _Slot, max_calls: float) -> None:
        """(Under the lock) Send what is assigned to ``slot`` while it has fewer than ``max_calls`` calls in flight."""
        size = self.batch_size
        while (slot.outbox and len(slot.calls) < max_calls and slot.reason is None and not slot.dead
               and slot.error is None):
            rows, slot.outbox = slot.outbox[:size], slot.outbox[size:]
            batch = batch_rows(rows, slot.ledger)
            seq = self._next_seq(slot)
            try:
                ref = slot.run.remote(pickle.dumps((seq, batch), PROTOCOL))
            except Exception as exc:  # the actor is unusable: nothing more leaves; the loop kills it
                slot.error = exc
                self._post(self._fail, slot, exc)
                return
            call = Call(seq)
            slot.calls.append(call)
            self._expect(slot, call, ref)

    def _expect(self, slot: _Slot, call: Call, ref: Any) -> None:
        """(Under the lock) Have Ray's answer to ``call`` handled by the reply thread (see ``_replies``)."""
        self._replies.expect(ref, slot, call)  # type: ignore[union-attr]  # open() made it

    def _answered(self, entries: list[Entry]) -> None:
        """(Under the lock) Answers Ray gave: report them, send the batches that follow, then dispatch."""
        arrived = self._arrived
        for slot, call, answer in entries:
            arrived(slot, call, answer)
        if self._dispatch_due:  # the pool has more for the workers whose windows these answers emptied
            self._dispatch_due = False
            self._dispatch_locked()

    def _rescue(self, ref: Any, answer: Any) -> None:
        """On Ray's callback thread: the answer to a call the reply thread was not waiting on; the loop takes it."""
        self._post(self._rescued, ref, answer)

    def _rescued(self, ref: Any, answer: Any) -> None:
        with self._lock:
            entry = self._replies.take(ref, answer)  # type: ignore[union-attr]  # open() made it
            if entry is not None:
                self._answered([entry])

    @staticmethod
    def _next_seq(slot: _Slot) -> int:
        seq, slot.seq = slot.seq, slot.seq + 1
        return seq

    def _arrived(self, slot: _Slot, call: Call, answer: Any) -> None:
        """(Under the lock) Report the answers at the head of ``slot``'s calls, in the order the calls were sent."""
        call.answer, call.arrived = answer, True
        calls, hub, wid = slot.calls, self._hub, slot.wid
        while calls and calls[0].arrived:
            head = calls[0]
            answer, head.answer = head.answer, None  # hold no results once reported
            if isinstance(answer, BaseException):  # the actor is gone: later calls can hold nothing
                self._abandon(slot, answer)
                return
            try:
                # busy: the actor's own time on these tasks, which sizes the worker's window.
                chunk, over, busy = pickle.loads(answer)
            except Exception as exc:  # only if the wire is broken; the worker then is too
                self._abandon(slot, exc)
                return
            if over:
                calls.popleft()
                # The next batch (the window holds one more than the calls) leaves before this one's
                # outcomes are reported: the actor does not wait on the pool's bookkeeping (settling
                # futures, assigning the tasks that refill the window).
                self._pump(slot, self.max_calls)
            if chunk:
                # Straight from the thread that took the answer, as the ZeroMQ backend does from its
                # I/O thread: results_rows() never blocks and runs no user code (it hands anything
                # that might to the pool's results thread).
                hub.results_rows(wid, chunk, busy)
            if not over:  # the batch runs on in the actor: long-poll its next outcomes
                head.arrived = False
                try:
                    self._expect(slot, head, slot.handle.more.remote(head.seq))
                except Exception as exc:
                    self._abandon(slot, exc)
                return
        if not calls:
            self._drained(slot)
        self._pump(slot, self.max_calls)

    def _abandon(self, slot: _Slot, exc: BaseException) -> None:
        """(Under the lock) A call failed: the calls after it can hold nothing; the worker is done for."""
        slot.calls.clear()
        self._drained(slot)
        if slot.error is None:
            slot.error = exc  # no batch leaves from now on
        self._post(self._fail, slot, exc)

    def _drained(self, slot: _Slot) -> None:
        """(Under the lock) No call of ``slot``'s is in flight: a dead worker's end need not wait any longer."""
        drain = slot.drain
        if drain is not None:
            slot.drain = None
            self._post(_resolve, drain)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux 5.3+), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"RayBackend {key} must be > 0, got {value!r}")
