"""The pool's actors: one per worker process (lifecycle), and one that sizes the pool.

A :class:`WorkerActor` owns one worker incarnation: its ``on_start`` launches
the process through the backend, its ``on_stop`` stops it, and when the backend
reports the process gone the actor crashes with
:class:`~laneway.errors.WorkerDied`, so the pool supervisor restarts it by its
policy (intensity and backoff) exactly as it would any actor. Tasks never pass
through these mailboxes (see ``_zmq_backend`` for why); only lifecycle does.

The :class:`PoolManager` serializes sizing decisions: growing under queue
pressure, shrinking after idleness, replacing workers that served their
``max_tasks_per_worker`` or outgrew ``max_memory_mb``, and giving remote
workers that joined on their own an actor (``temporary``: never restarted).

The tree, as in OTP::

    pool                 the pool root (rest_for_one, its own intensity and backoff)
    ├── pool/workers     WorkerSupervisor: one WorkerActor per slot (the pool's ``supervision``)
    └── pool/manager     PoolManager

When the workers' supervisor gives up, the root restarts it after its backoff,
and the manager after it (rest_for_one), which starts ``min_workers`` again;
meanwhile queued tasks wait and ``submit`` raises ``PoolDown``. When the root
gives up too, the pool is down for good.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs

from laneway.actors import Actor, Backoff, ChildSpec, RestartType, Strategy, Supervisor, handler
from laneway import errors
from laneway.errors import ActorDead, ActorError, ActorNotFound, ActorStartError
from laneway.pool._window import remote_slot

if TYPE_CHECKING:
    from laneway.pool._pool import Pool

log = logging.getLogger(__name__)


@attrs.frozen
class ProcessLost:
    """The backend reported this worker incarnation gone."""

    worker_id: str
    reason: str


@attrs.frozen
class Grow:
    """Queue pressure: start one more worker if below the maximum."""


@attrs.frozen
class Populate:
    """Start workers until there are ``min_workers``."""


@attrs.frozen
class Drained:
    """A draining worker's window is empty; replace it (recycle) or remove it (shrink)."""

    slot: str


@attrs.frozen
class Adopt:
    """A remote worker joined; give it an actor."""

    worker_id: str


@attrs.frozen
class Tick:
    """Time to look for idle workers to shrink."""


class WorkerActor(Actor):
    """The parent-side actor of one worker process (or one remote worker)."""

    def __init__(self, pool: Pool, slot: str, remote_id: str = "") -> None:
        self._pool = pool
        self._slot = slot
        self._remote_id = remote_id
        self.wid = ""
        self._gone = False

    def on_start(self) -> None:
        core = self._pool._core
        if self._remote_id:
            self.wid = self._remote_id
            if not core.attach(self.wid, self.ref):
                self._gone = True
                self.stop()  # it left before we got here; it is already reported as gone
            return
        self.wid = core.new_worker(self._slot, self.ref)
        try:
            self._pool._backend.start_worker(self.wid)
        except Exception:
            core.stopping(self.wid)
            core.worker_lost(self.wid, "failed to start")
            raise

    @handler(ProcessLost)
    def _lost(self, msg: ProcessLost) -> None:
        if msg.worker_id != self.wid:
            return  # about an earlier incarnation
        self._gone = True
        if self._remote_id:
            self.stop()  # a remote worker cannot be restarted from here; it may join again
            return
        raise errors.WorkerDied(f"worker {self.wid} {msg.reason}", reason=msg.reason)

    def on_stop(self) -> None:
        if self._gone or not self.wid:
            return
        core = self._pool._core
        if core.stopping(self.wid):
            self._pool._backend.stop_worker(self.wid, self._pool.stop_timeout_s)


class WorkerSupervisor(Supervisor):
    """The supervisor of the pool's worker actors; tells the pool each time it (re)starts.

    It starts with no children: the pool manager adds the slots (its ``Populate``).
    """

    def __init__(self, pool: Pool, strategy: Strategy) -> None:
        super().__init__(strategy)
        self._pool = pool

    def on_start(self) -> None:
        self._pool._core.resume()
        super().on_start()


#: Consecutive failed worker starts, with no worker running, after which the pool is down.
START_ATTEMPTS = 3
_START_BACKOFF = Backoff(initial_s=0.2, factor=2.0, max_s=2.0, jitter=0.1)


class PoolManager(Actor):
    """Grows, shrinks and recycles the pool's workers, one decision at a time."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._shrinking: set[str] = set()
        self._timer: Any = None
        self._start_failures = 0

    def _add_slot(self) -> bool:
        """Start one more worker; on failure retry later, or declare the pool down.

        A worker that cannot even start (the executable is gone, the machine is out of
        processes, a script without a ``__main__`` guard) would otherwise leave queued
        tasks waiting forever for a worker that never comes.
        """
        try:
            self._pool._add_slot()
        except (ActorDead, ActorNotFound):
            return False  # the workers' supervisor gave up; its restart restarts this manager too
        except ActorStartError as exc:
            self._start_failures += 1
            cause = exc.__cause__ or exc
            self.orchestrator.events.publish(
                "pool.worker.start_failed", self._pool.name, error=repr(cause), failures=self._start_failures
            )
            if self._start_failures >= START_ATTEMPTS and not self._pool._core.wait_ready(1, 0):
                hint = ""
                if "bootstrapping phase" in str(cause):
                    hint = " (the main module starts a pool at import time: guard it with if __name__ == '__main__')"
                first_line = next((line.strip() for line in str(cause).splitlines() if line.strip()), repr(cause))
                self._pool._core.close(f"workers cannot start: {type(cause).__name__}: {first_line}{hint}")
            else:
                me = self.ref
                delay = _START_BACKOFF.delay(self._start_failures)
                self.orchestrator.clock.call_later(delay, lambda: _tell_quietly(me, Populate()))
            return False
        self._start_failures = 0
        return True

    def on_start(self) -> None:
        self._arm()
        # Started after the workers' supervisor (rest_for_one), whose slots are all gone
        # on a restart: bring back min_workers.
        self.ref.tell(Populate())

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _arm(self) -> None:
        me = self.ref
        pool = self._pool

        def due() -> None:
            try:
                me.tell(Tick())
            except ActorError:
                pass  # the manager stopped; the pool is shutting down

        self._timer = self.orchestrator.clock.call_later(pool.idle_check_s, due)

    @handler(Grow)
    def _grow(self, msg: Grow) -> None:
        pool = self._pool
        try:
            if pool._core.count() < pool.max_workers:
                self._add_slot()
        finally:
            pool._core.grow_handled()

    @handler(Populate)
    def _populate(self, msg: Populate) -> None:
        pool = self._pool
        while pool._core.count() < pool.min_workers and self._add_slot():
            pass

    @handler(Drained)
    def _drained(self, msg: Drained) -> None:
        sup = self._pool._workers_sup()
        try:
            sup.terminate_child(msg.slot)
            if msg.slot in self._shrinking:
                self._shrinking.discard(msg.slot)
                sup.delete_child(msg.slot)
                self._pool._core.slot_removed()
                self.orchestrator.events.publish("pool.worker.removed", msg.slot)
            else:
                sup.restart_child(msg.slot)
                self.orchestrator.events.publish("pool.worker.recycled", msg.slot)
        except (LookupError, ActorDead):
            log.debug("slot %s vanished before it could be replaced", msg.slot)

    @handler(Tick)
    def _tick(self, msg: Tick) -> None:
        try:
            pool = self._pool
            for slot in pool._core.idle_slots(pool.idle_shrink_s):
                if pool._core.count() - len(self._shrinking) <= pool.min_workers:
                    break
                self._shrinking.add(slot)
                if pool._core.drain(slot):
                    self._drained(Drained(slot))
        finally:
            self._arm()

    @handler(Adopt)
    def _adopt(self, msg: Adopt) -> None:
        name = remote_slot(msg.worker_id)
        spec = ChildSpec(WorkerActor, name=name, kwargs={"pool": self._pool, "slot": name, "remote_id": msg.worker_id},
                         restart=RestartType.TEMPORARY, shutdown_s=self._pool.stop_timeout_s + 5)
        try:
            self._pool._workers_sup().start_child(spec)
        except ActorDead:
            log.info("remote worker %s joined while the pool was down; it may join again", msg.worker_id)


def _tell_quietly(ref: Any, msg: Any) -> None:
    try:
        ref.tell(msg)
    except ActorError:
        pass  # the manager stopped; the pool is shutting down
