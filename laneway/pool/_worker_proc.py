"""Inside a worker process: connect to the pool, run tasks in order, heartbeat, die with the parent.

The same loop serves local workers (spawned by the pool with the ``spawn`` start
method) and remote ones (``laneway worker --connect``). A local worker asks the
kernel to SIGKILL it when its parent goes (``PR_SET_PDEATHSIG``; the pool spawns
from a thread that lives as long as the pool, since the signal follows the
spawning *thread*), and its heartbeat thread also exits the process when the
parent pid changes, so workers never outlive a pool even after SIGKILL.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any

import attrs
import zmq

from laneway.pool import _wire
from laneway.pool._runner import TaskRunner

log = logging.getLogger(__name__)

#: A worker sends the outcomes of a batch at least this often while running it.
FLUSH_S = 0.001


@attrs.frozen
class CurveClient:
    """Keys a worker needs to join a CurveZMQ pool (z85-encoded bytes)."""

    server_public: bytes
    public: bytes
    secret: bytes


@attrs.frozen
class WorkerConfig:
    """How one worker process connects and behaves.

    Attributes:
        endpoint: the pool's ZeroMQ endpoint.
        worker_id: identity for local workers (assigned by the pool); remote ones make their own.
        token: proof a local worker was spawned by this pool (empty for remote workers).
        heartbeat_s: seconds between heartbeats.
        parent_pid: the pool's pid for local workers (watch it), None for remote ones.
        curve: client keys when the pool requires CurveZMQ.
        pool_timeout_s: a remote worker that hears nothing from the pool this long rejoins.
    """

    endpoint: str
    worker_id: str = ""
    token: bytes = b""
    heartbeat_s: float = 0.5
    parent_pid: int | None = None
    curve: CurveClient | None = None
    pool_timeout_s: float = 10.0

    @property
    def remote(self) -> bool:
        return self.parent_pid is None


def spawn_entry(cfg: WorkerConfig) -> None:
    """Target of the pool's ``spawn`` processes."""
    _die_with_parent(cfg.parent_pid)
    # multiprocessing marks our Process daemonic (so an interpreter exit kills us); a
    # daemonic process may not start children, but tasks may legitimately want to.
    import multiprocessing

    multiprocessing.current_process()._config.pop("daemon", None)  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the pool, which stops us in order
    sys.exit(run(cfg))


def _die_with_parent(parent_pid: int | None) -> None:
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.debug("prctl unavailable; relying on the parent watch")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(70)


def run(cfg: WorkerConfig) -> int:
    """Serve the pool until told to stop; remote workers rejoin after losing it. Returns an exit code."""
    runner = TaskRunner()
    ctx = zmq.Context()
    try:
        while True:
            wid = cfg.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            outcome = _Session(ctx, cfg, wid, runner).serve()
            if outcome == "stop" or not cfg.remote:
                return 0
            log.warning("worker %s lost the pool (%s); rejoining", wid, outcome)
            runner = TaskRunner()  # a new identity starts with an empty function cache on both ends
    finally:
        ctx.destroy(linger=0)


class _Session:
    """One connection under one identity."""

    def __init__(self, ctx: zmq.Context, cfg: WorkerConfig, wid: str, runner: TaskRunner) -> None:
        self.cfg = cfg
        self.wid = wid
        self.runner = runner
        self.sock = self._socket(ctx, wid.encode())
        self.hb_stop = threading.Event()
        self.hb = threading.Thread(target=self._beat, args=(ctx,), name="laneway-worker-heartbeat", daemon=True)

    def _socket(self, ctx: zmq.Context, identity: bytes) -> zmq.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 2000)
        curve = self.cfg.curve
        if curve is not None:
            sock.curve_serverkey = curve.server_public
            sock.curve_publickey = curve.public
            sock.curve_secretkey = curve.secret
        sock.connect(self.cfg.endpoint)
        return sock

    def serve(self) -> str:
        cfg, sock = self.cfg, self.sock
        hello = [os.getpid(), socket.gethostname(), cfg.token.hex()]
        sock.send_multipart([_wire.HELLO, json.dumps(hello).encode()])
        self.hb.start()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        heard = time.monotonic()
        try:
            while True:
                if not poller.poll(cfg.heartbeat_s * 1000):
                    if cfg.remote and time.monotonic() - heard > cfg.pool_timeout_s:
                        return f"no word from the pool for {cfg.pool_timeout_s}s"
                    continue
                frames = sock.recv_multipart()
                heard = time.monotonic()
                kind = frames[0]
                if kind == _wire.TASKS:
                    batch = frames[1]
                    del frames  # hold no finished task's arguments while idle
                    self._run_batch(pickle.loads(batch))
                    del batch
                elif kind == _wire.STOP:
                    return "stop"
                elif kind == _wire.REJOIN:
                    return "the pool asked to rejoin"
        finally:
            self.hb_stop.set()
            self.hb.join(timeout=2 * cfg.heartbeat_s + 1)
            sock.close()

    def _run_batch(self, tasks: list[tuple[int, bytes, bytes, bytes]]) -> None:
        sock, run = self.sock, self.runner.run
        out: list[tuple[int, bool, bytes]] = []
        started = time.monotonic()
        last = len(tasks) - 1
        for i, (task_id, digest, fn_bytes, args_bytes) in enumerate(tasks):
            o = run(task_id, digest, fn_bytes, args_bytes)
            out.append((o.task_id, o.ok, o.data))
            if i < last and time.monotonic() - started > FLUSH_S:
                sock.send_multipart([_wire.DONE, pickle.dumps(out)])
                out = []
                started = time.monotonic()
        if out:
            sock.send_multipart([_wire.DONE, pickle.dumps(out)])

    def _beat(self, ctx: zmq.Context) -> None:
        import psutil

        cfg = self.cfg
        sock = self._socket(ctx, self.wid.encode() + _wire.HB_SUFFIX)
        me = psutil.Process()
        me.cpu_percent(None)
        try:
            while True:
                self._send_beat(sock, me)
                if self.hb_stop.wait(cfg.heartbeat_s):
                    return
                if cfg.parent_pid is not None and os.getppid() != cfg.parent_pid:
                    os._exit(70)  # orphaned: the pool is gone, and with it anyone to answer
        finally:
            sock.close(linger=0)

    @staticmethod
    def _send_beat(sock: zmq.Socket, me: Any) -> None:
        try:
            rss, cpu = me.memory_info().rss, me.cpu_percent(None)
        except Exception:
            rss, cpu = 0, 0.0
        sock.send_multipart([_wire.BEAT, json.dumps([rss, cpu]).encode()])
