"""Local workers send their outcomes as datagrams to the pool's reply socket, not over ZeroMQ."""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import threading
import time
from typing import Iterator

import attrs
import pytest
import zmq

from laneway.pool._results import decode_row
from laneway.worker import FunctionPickler, WorkerConfig, run_worker, wire

from .conftest import wait_until

pytestmark = pytest.mark.multiprocess


@attrs.frozen
class BareWorker:
    """A worker run on a thread against sockets the test holds in the pool's place."""

    router: zmq.Socket  # the pool's ROUTER
    replies: socket.socket  # the pool's reply socket
    out: socket.socket  # what sends task datagrams
    task_path: str  # the worker's task socket ("": it has none, and connects over ZeroMQ at once)
    token: bytes
    worker: threading.Thread

    def hello(self) -> bytes:
        """Wait for the worker's HELLO (asking it to connect first if it has a task socket: it connects
        only when asked); its ZeroMQ identity."""
        if self.task_path:
            def ask() -> bool:
                try:
                    self.out.sendto(wire.CONNECT_SEQ.to_bytes(wire.SEQ_BYTES, "big"), self.task_path)
                except OSError:  # not bound yet
                    return False
                return True

            wait_until(ask, what="the worker's task socket")
        assert self.router.poll(30_000)
        ident, kind, _ = self.router.recv_multipart()
        assert kind == wire.HELLO
        return ident

    def recv_reply(self) -> bytes:
        """The next reply datagram that carries outcomes (a worker with a task socket also says HELLO and beats there)."""
        while True:
            data = self.replies.recv(2 * wire.REPLY_CHUNK)
            if data[wire.REPLY_TOKEN: wire.REPLY_TOKEN + 1] not in (wire.REPLY_HELLO, wire.REPLY_BEAT):
                return data


@contextlib.contextmanager
def bare_worker(tmp_path, *, heartbeat_s: float = 0.2, task_socket: bool = True) -> Iterator[BareWorker]:
    """Start a local worker on a thread; stop it (if it still runs) and close every socket after."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tmp_path}/pool.sock"
    router.bind(endpoint)
    reply_path, task_path = str(tmp_path / "replies.sock"), str(tmp_path / "w1.1.tasks")
    replies = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    replies.bind(reply_path)
    replies.settimeout(30)
    out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    token = os.urandom(16)
    # parent_pid is this process's parent: the worker's watch of it must find it alive
    cfg = WorkerConfig(endpoint=endpoint, worker_id="w1.1", token=token, heartbeat_s=heartbeat_s,
                       parent_pid=os.getppid(), reply_path=reply_path, task_path=task_path if task_socket else "")
    worker = threading.Thread(target=run_worker, args=(cfg,), daemon=True)
    worker.start()
    try:
        yield BareWorker(router, replies, out, task_path if task_socket else "", token, worker)
    finally:
        if worker.is_alive():
            router.send_multipart([b"w1.1", wire.STOP])
            if task_socket:  # (not connected over ZeroMQ, it stops on a STOP datagram)
                with contextlib.suppress(OSError):
                    out.sendto(wire.STOP_SEQ.to_bytes(wire.SEQ_BYTES, "big"), task_path)
            worker.join(30)
        router.close(linger=0)
        replies.close()
        out.close()
        ctx.term()


@pytest.mark.timeout(60)
def test_a_local_worker_sends_its_outcomes_to_the_reply_socket_tagged_and_a_large_one_in_pieces(tmp_path):
    with bare_worker(tmp_path, task_socket=False) as w:
        ident = w.hello()
        digest, fn_bytes = FunctionPickler().dumps(bytes)
        big = 3 * wire.REPLY_CHUNK
        head = [(1, digest, fn_bytes, (3,), 0), (2, digest, b"", (big,), 0), (3, digest, b"", (1,), 0)]
        w.router.send_multipart([ident, wire.TASKS, pickle.dumps(head)])

        rows: list = []
        pieces: list[bytes] = []
        sizes: list[int] = []
        while len(rows) < 3:
            data = w.recv_reply()
            sizes.append(len(data))
            assert data[: wire.REPLY_TOKEN] == w.token  # names and authenticates the worker
            flag, body = data[wire.REPLY_TOKEN: wire.REPLY_TOKEN + 1], data[wire.REPLY_TOKEN + 1:]
            pieces.append(body)
            if flag == wire.REPLY_END:
                batch, busy_s = pickle.loads(b"".join(pieces))
                rows += batch
                pieces = []
            else:
                assert flag == wire.REPLY_MORE
        assert max(sizes) <= wire.REPLY_TOKEN + 1 + wire.REPLY_CHUNK
        assert len(sizes) >= 4  # the large outcome came in pieces
        assert [row[0] for row in rows] == [1, 2, 3]  # in the order the tasks ran
        assert [decode_row(row) for row in rows] == [(True, bytes(3)), (True, bytes(big)), (True, bytes(1))]
        w.router.send_multipart([ident, wire.STOP])
        w.worker.join(30)
    assert not w.worker.is_alive()


@pytest.mark.timeout(60)
def test_a_local_workers_outcomes_say_how_long_it_spent_on_their_tasks(tmp_path):
    """The pool sizes a worker's window by the worker's own time per task (see wire.DONE)."""
    from . import tasks

    with bare_worker(tmp_path, task_socket=False) as w:
        ident = w.hello()
        digest, fn_bytes = FunctionPickler().dumps(tasks.sleep_then)
        head = [(1, digest, fn_bytes, (0.2, "a"), 0), (2, digest, b"", (0.1, "b"), 0)]
        w.router.send_multipart([ident, wire.TASKS, pickle.dumps(head)])
        rows: list = []
        busy: list[float] = []
        while len(rows) < 2:
            data = w.replies.recv(2 * wire.REPLY_CHUNK)
            batch, busy_s = pickle.loads(data[wire.REPLY_TOKEN + 1:])
            rows += batch
            busy.append(busy_s)
        assert [decode_row(row) for row in rows] == [(True, "a"), (True, "b")]
        assert sum(busy) >= 0.3  # both tasks' sleeps, in one DONE or two (a flush after the first)


@pytest.mark.timeout(120)
def test_large_payload_tasks_whose_results_reach_the_pool_late_keep_a_wide_window(orch, monkeypatch):
    """Every result reaches the scheduler 10 ms late (the pool's process descheduled on a loaded
    machine, payloads slow to cross): the worker's own figures say its tasks are quick, so its window
    opens to the byte budget. Timed by the gaps between results, the tasks looked slow, the window
    stayed at 2, and the worker sat idle a round trip for every other task."""
    from laneway.pool import _reports
    from laneway.pool._window import SLOW_WINDOW

    from . import tasks

    original = _reports.Reports.results_rows
    deepest = [0]

    def late(self, worker_id, *rest):
        time.sleep(0.01)
        w = self._workers.get(worker_id)
        if w is not None:
            deepest[0] = max(deepest[0], len(w.window))  # tasks in flight when a result came
        return original(self, worker_id, *rest)

    monkeypatch.setattr(_reports.Reports, "results_rows", late)
    pool = orch.start_pool(workers=1)
    assert pool.wait_ready(timeout=60)
    payloads = [os.urandom(256 * 1024 - 1) + bytes([i]) for i in range(80)]
    futs = [pool.submit(tasks.describe_payload, p) for p in payloads]
    assert [f.get(60) for f in futs] == [("bytes", 256 * 1024, i, ()) for i in range(80)]
    assert deepest[0] > 2 * SLOW_WINDOW


@pytest.mark.timeout(120)
def test_large_and_small_results_of_local_workers_reach_their_futures_in_one_burst(orch):
    """Outcomes larger than a datagram travel in pieces between small ones, for every future."""
    from . import tasks

    pool = orch.start_pool(workers=2)
    assert pool.wait_ready(timeout=60)
    sizes = [0, 1, wire.REPLY_CHUNK - 40, wire.REPLY_CHUNK + 1, 5 * wire.REPLY_CHUNK, 3, 2 << 20] * 20
    futs = [pool.submit(tasks.sleep_then, 0, bytes(n)) for n in sizes]
    assert [len(f.get(60)) for f in futs] == sizes
    stats = pool.statistics()
    assert (stats.completed, stats.failed, stats.late_results) == (len(sizes), 0, 0)


@pytest.mark.timeout(60)
def test_a_local_worker_runs_numbered_batches_in_order_whichever_socket_each_came_on(tmp_path):
    """A batch that came as a datagram waits for an earlier one still on its way over ZeroMQ;
    a STOP runs the datagrams sent before it first."""
    with bare_worker(tmp_path) as w:
        ident = w.hello()
        digest, fn_bytes = FunctionPickler().dumps(abs)

        def seq(n: int) -> bytes:
            return n.to_bytes(wire.SEQ_BYTES, "big")

        # 2 comes first, as a datagram; 1 (which ships the function) follows over ZeroMQ
        w.out.sendto(seq(2) + pickle.dumps([(2, digest, b"", (-2,), 0)]), w.task_path)
        w.router.send_multipart([ident, wire.SEQ_TASKS, seq(1), pickle.dumps([(1, digest, fn_bytes, (-1,), 0)])])
        w.out.sendto(seq(3) + pickle.dumps([(3, digest, b"", (-3,), 0)]), w.task_path)
        w.router.send_multipart([ident, wire.STOP])
        rows: list = []
        while len(rows) < 3:
            data = w.recv_reply()
            rows += pickle.loads(data[wire.REPLY_TOKEN + 1:])[0]
        assert [(row[0], decode_row(row)) for row in rows] == [(1, (True, 1)), (2, (True, 2)), (3, (True, 3))]
        w.worker.join(30)
        assert not w.worker.is_alive()  # it stopped after running what was sent before the STOP


@pytest.mark.timeout(120)
def test_batches_that_find_a_busy_local_workers_socket_full_go_over_zeromq_and_run_in_order(orch, monkeypatch):
    from laneway.pool.zmq import _socket

    from . import tasks

    over_router: list[bytes] = []
    original = _socket.SharedRouter.send_locked

    def spy(self, frames, zero_copy_from=3, datagram=b"", path=""):
        used = original(self, frames, zero_copy_from, datagram, path)
        if used:
            over_router.append(frames[1])
        return used

    monkeypatch.setattr(_socket.SharedRouter, "send_locked", spy)
    pool = orch.start_pool(workers=1)
    assert pool.wait_ready(timeout=60)
    assert [f.get(60) for f in [pool.submit(tasks.echo, i) for i in range(50)]] == [((i,), {}) for i in range(50)]
    # the worker's tasks proved fast, so its window is wide; arguments past the tiny size are sent
    # at once, one batch each, while the worker sleeps
    first = pool.submit(tasks.sleep_then, 0.5, "slept")
    args = [bytes([i]) * 2000 for i in range(100)]
    futs = [pool.submit(tasks.echo, a) for a in args]
    assert first.get(60) == "slept"
    assert [f.get(60) for f in futs] == [((a,), {}) for a in args]
    assert wire.SEQ_TASKS in over_router  # the worker's socket was full: the ROUTER carried the rest, numbered
    stats = pool.statistics()
    assert (stats.completed, stats.retried, stats.late_results) == (151, 0, 0)


@pytest.mark.timeout(60)
def test_a_local_worker_waiting_for_a_batch_that_never_comes_leaves(tmp_path, monkeypatch):
    """Tasks queued behind a missing batch never wait forever: the worker leaves and the pool requeues them."""
    from laneway.worker import _process

    monkeypatch.setattr(_process, "SEQ_GAP_S", 0.3)
    with bare_worker(tmp_path, heartbeat_s=0.1) as w:
        w.hello()
        digest, fn_bytes = FunctionPickler().dumps(abs)
        w.out.sendto((2).to_bytes(wire.SEQ_BYTES, "big") + pickle.dumps([(2, digest, fn_bytes, (-2,), 0)]),
                     w.task_path)
        w.worker.join(30)  # batch 1 never comes
        assert not w.worker.is_alive()
