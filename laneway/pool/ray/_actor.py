"""Inside a Ray actor: one laneway pool worker, running its batches in order.

The backend turns :class:`RayWorker` into a Ray actor class with restarts and
retries switched off (laneway's supervisor owns restart policy). It is a
*synchronous* actor with one thread for batches (Ray then runs one caller's
calls in the order they were sent) and a ``control`` concurrency group for
``hello``, ``beat`` and ``more``, so a heartbeat answers while a long task runs.
Batch calls (``run``, ``more``) record no Ray task events: the pool keeps each
task's state itself, and a Ray task event per call of 16 tiny tasks costs the
driver, the actor and the GCS work that nobody reads.

A batch call (:meth:`RayWorker.run`) runs its tasks right on the calling
thread and answers with all the outcomes when they take less than
:data:`FLUSH_S` together: for tiny tasks one plain Ray call carries a whole
batch out and back, with no thread hop and none of the per-item costs of a
streaming generator. A batch that runs longer answers with the outcomes so far
and goes on in a background thread; the backend then long-polls
:meth:`RayWorker.more` for the rest, so the pool still sees each slow task end
when it ends (it infers the running task from that order, and the function
cache, :class:`~laneway.worker.TaskRunner`, must evict in step with the
sender's :class:`~laneway.worker.ShipLedger`). The next batch waits until the
background one is done.

This module imports ray: only Ray worker processes and the backend's ``open``
import it, never a plain ``import laneway``.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
import time
from typing import Any

import psutil
import ray

from laneway.worker import TaskRunner

log = logging.getLogger(__name__)

#: A batch still running after this long answers with the outcomes so far; the rest follow by ``more``.
FLUSH_S = 0.002
#: Longest a ``more`` call waits for an outcome before answering with none (the backend asks again).
MORE_WAIT_S = 10.0

#: ``(task_id, digest, fn_bytes_or_empty, args)``, as the backend sends it: ``args`` is the pickled
#: ``(args, kwargs)`` or an inline tuple of small scalars (as in ``laneway.worker.wire.TASKS``).
WireTask = tuple[int, bytes, bytes, "bytes | tuple"]
#: ``(task_id, ok, form, data)``, a DONE row of ``laneway.worker.wire`` (``TaskRunner.run_row``).
WireOutcome = tuple[int, bool, int, Any]
#: A batch call's answer: outcomes, whether the batch is over (False: ask ``more``), and the seconds
#: the actor spent running those outcomes' tasks (the pool sizes the worker's window by it, as by a
#: ZeroMQ worker's ``busy_s``: the gaps between answers would also count Ray's transit and queues).
WireAnswer = tuple[list[WireOutcome], bool, float]
#: Batches and answers cross Ray as one pickle each: Ray's own serializer takes several
#: times longer over a list of tuples of bytes than over one ``bytes``.
PROTOCOL = pickle.HIGHEST_PROTOCOL


class RayWorker:
    """The body of one laneway worker actor (the backend wraps it with ``ray.remote``)."""

    def __init__(self) -> None:
        self._runner = TaskRunner()
        self._cond = threading.Condition()
        self._next_seq = 0  # the batch the actor runs next; guarded by _cond
        # Background outcomes not yet fetched, by batch, with the seconds their tasks took.
        self._rest: dict[int, tuple[list[WireOutcome], float]] = {}
        self._running = -1  # the batch running in the background (-1: none)
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)

    @ray.method(concurrency_group="control")
    def hello(self) -> tuple[int, str, str]:
        """``(pid, host, node id)``: the actor is up and can take tasks."""
        return os.getpid(), socket.gethostname(), ray.get_runtime_context().get_node_id()

    @ray.method(concurrency_group="control")
    def beat(self, period: float) -> tuple[int, float]:
        """Answer after ``period`` seconds with ``(rss bytes, cpu percent)``.

        The backend always keeps one ``beat`` outstanding: it is how an idle actor's
        death is noticed (the call fails) and how a hung one is (the answer is late).
        """
        self._stop.wait(period)
        try:
            return self._proc.memory_info().rss, self._proc.cpu_percent(None)
        except Exception:  # psutil can fail in odd containers; liveness matters, numbers do not
            return 0, 0.0

    @ray.method(enable_task_events=False)
    def run(self, batch: bytes) -> bytes:
        """Run a batch (pickled ``(seq, list[WireTask])``) after every earlier one.

        The batch number rides inside the one pickle: each argument of a Ray call costs its own
        serialization and signature binding at both ends. Answers with a pickled :data:`WireAnswer`:
        all the outcomes, or those of the first ``FLUSH_S``.
        """
        seq: int
        tasks: list[WireTask]
        seq, tasks = pickle.loads(batch)
        self._wait_turn(seq)
        run, clock = self._runner.run_row, time.monotonic
        out: list[WireOutcome] = []
        began = clock()
        last = len(tasks) - 1
        for i, (task_id, digest, fn_bytes, args) in enumerate(tasks):
            out.append(run(task_id, digest, fn_bytes or None, args))
            if i < last and (busy := clock() - began) > FLUSH_S:
                self._go_on(seq, tasks[i + 1:])
                return pickle.dumps((out, False, busy), PROTOCOL)
        busy = clock() - began
        with self._cond:
            self._next_seq = seq + 1
        return pickle.dumps((out, True, busy), PROTOCOL)

    @ray.method(concurrency_group="control", enable_task_events=False)
    def more(self, seq: int) -> bytes:
        """(control) Outcomes of background batch ``seq`` since the last call, once there is at least one (pickled)."""
        with self._cond:
            self._cond.wait_for(lambda: seq in self._rest or self._running != seq, MORE_WAIT_S)
            rows, busy = self._rest.pop(seq, ([], 0.0))
            answer = rows, self._running != seq, busy
        return pickle.dumps(answer, PROTOCOL)

    def stop(self, seq: int) -> None:
        """Exit once batches before ``seq`` are done (a graceful stop)."""
        self._wait_turn(seq)
        self._stop.set()  # the outstanding beat answers now, so the actor can exit at once
        ray.actor.exit_actor()

    def _wait_turn(self, seq: int) -> None:
        with self._cond:
            # Only a background batch can be ahead: Ray runs this thread's calls in send order.
            self._cond.wait_for(lambda: self._next_seq >= seq)
            if self._next_seq != seq:
                raise RuntimeError(f"batch {seq} arrived after batch {self._next_seq}: calls out of order")

    def _go_on(self, seq: int, tasks: list[WireTask]) -> None:
        with self._cond:
            self._running = seq
        threading.Thread(target=self._run_rest, args=(seq, tasks), name=f"laneway-batch-{seq}", daemon=True).start()

    def _run_rest(self, seq: int, tasks: list[WireTask]) -> None:
        run, clock = self._runner.run_row, time.monotonic
        for task_id, digest, fn_bytes, args in tasks:
            began = clock()
            row = run(task_id, digest, fn_bytes or None, args)
            busy = clock() - began
            with self._cond:
                rows, total = self._rest.get(seq, ([], 0.0))
                rows.append(row)
                self._rest[seq] = rows, total + busy
                self._cond.notify_all()
        with self._cond:
            self._running = -1
            self._next_seq = seq + 1
            self._cond.notify_all()
