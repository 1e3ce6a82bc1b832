"""A backend that runs nothing by itself: tests decide when tasks are sent, finish, or workers die."""

from __future__ import annotations

import collections
import threading

from laneway.pool import Backend
from laneway.worker import TaskRunner


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, auto_ready: bool = True) -> None:
        self.auto_ready = auto_ready
        self.started: list[str] = []
        self.sent: dict[str, list] = collections.defaultdict(list)
        self.done: dict[str, int] = collections.defaultdict(int)
        self.killed: list[tuple[str, str]] = []
        self.stopped: list[str] = []
        self.closed = False
        self.runner = TaskRunner()
        self.wakes = 0
        self._cond = threading.Condition()
        self._pids = iter(range(1001, 10_000))

    def open(self, hub):
        self.hub = hub

    def start_worker(self, worker_id):
        with self._cond:
            self.started.append(worker_id)
            self._cond.notify_all()
        if self.auto_ready:
            self.ready(worker_id)

    def wait_started(self, count, timeout=10.0):
        """Wait until ``count`` workers were started (restarts happen on the supervisor's thread)."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.started) >= count, timeout), self.started
        return self.started[count - 1]

    def ready(self, worker_id):
        self.hub.worker_ready(worker_id, pid=next(self._pids), host="fakehost")

    def wake(self):
        self.wakes += 1

    def pump(self):
        """Send what the pool assigns now; returns {worker_id: [task ids]}."""
        out = {}
        for wid, wires in self.hub.assign():
            self.sent[wid].extend(wires)
            out[wid] = [w.task_id for w in wires]
        return out

    def in_flight(self, worker_id):
        return self.sent[worker_id][self.done[worker_id]:]

    def finish(self, worker_id, n=1, busy_s=None):
        """Run the next ``n`` tasks sent to ``worker_id`` in this process and report them; with ``busy_s``,
        as wire rows with the seconds the worker says it spent on them (as a ZeroMQ worker's DONE does)."""
        wires = self.in_flight(worker_id)[:n]
        self.done[worker_id] += len(wires)
        if busy_s is not None:
            rows = [self.runner.run_row(w.task_id, w.fn_digest, w.fn_bytes, w.args_bytes) for w in wires]
            self.hub.results_rows(worker_id, rows, busy_s)
            return
        outcomes = [self.runner.run(w.task_id, w.fn_digest, w.fn_bytes, w.args_bytes) for w in wires]
        self.hub.results(worker_id, outcomes)

    def die(self, worker_id, reason="killed by SIGKILL"):
        self.hub.worker_lost(worker_id, reason)

    def stop_worker(self, worker_id, timeout):
        self.stopped.append(worker_id)
        self.hub.worker_lost(worker_id, "exited with code 0")

    def kill_worker(self, worker_id, reason):
        self.killed.append((worker_id, reason))
        self.hub.worker_lost(worker_id, f"{reason}; killed by SIGKILL")

    def close(self, timeout):
        self.closed = True
