"""Inside a worker process: connect to the pool, run tasks in order, heartbeat, die with the parent.

The same loop serves local workers (spawned by the pool with the ``spawn`` start
method) and remote ones (``laneway worker --connect``). A local worker asks the
kernel to SIGKILL it when its parent goes (``PR_SET_PDEATHSIG``; the pool spawns
from a thread that lives as long as the pool, since the signal follows the
spawning *thread*), and its heartbeat thread also exits the process when the
parent pid changes, so workers never outlive a pool even after SIGKILL.

A local worker starts without ZeroMQ (its import is a good part of a worker's start-up,
and of its memory): it says HELLO and heartbeats with datagrams to the pool's reply socket,
runs the task datagrams that come, and imports ZeroMQ and connects only when the pool asks
(see :mod:`laneway.worker.wire`), which a pool whose tasks fit in datagrams never does.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time

from laneway.worker import wire
from laneway.worker._runner import TaskRunner

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record
else:
    from laneway.worker._record import Record

log = logging.getLogger(__name__)

#: A worker sends the outcomes of a batch at least this often while running it.
FLUSH_S = 0.001

#: A local worker holding sequenced TASKS that came ahead of one that has not come this
#: long leaves (the pool then requeues its window): the pool sends every batch, so one
#: that never comes is a bug, and tasks waiting for it must not wait forever.
SEQ_GAP_S = 10.0

#: Exit status of a remote worker the pool never answered (refused key, wrong pool, nothing there).
EXIT_NOT_ADMITTED = 3

if TYPE_CHECKING:
    import zmq


def _handshake_failures() -> dict[int, str]:
    """ZeroMQ handshake events a remote worker watches to say why the pool never answered."""
    import zmq

    return {
        zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the pool refused this worker's key",
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the security handshake failed (keys missing on one side, or a wrong server key)",
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the security handshake failed",
    }


class _Context:
    """The process's ZeroMQ context, made (ZeroMQ imported) on first use: a local worker starts without it."""

    def __init__(self) -> None:
        self._ctx: zmq.Context | None = None

    def get(self) -> zmq.Context:
        if self._ctx is None:
            import zmq

            self._ctx = zmq.Context()
        return self._ctx

    def destroy(self) -> None:
        if self._ctx is not None:
            self._ctx.destroy(linger=0)


# The records here are named tuples, not attrs classes: every worker process imports this
# module, and attrs would add a few MB and milliseconds of start-up to each (typing.NamedTuple's
# import ~3 ms: see laneway.worker._record).


class CurveClient(Record):
    """Keys a worker needs to join a CurveZMQ pool (z85-encoded bytes)."""

    server_public: bytes
    public: bytes
    secret: bytes


class WorkerConfig(Record):
    """How one worker process connects and behaves.

    Attributes:
        endpoint: the pool's ZeroMQ endpoint.
        worker_id: identity for local workers (assigned by the pool); remote ones make their own.
        token: proof a local worker was spawned by this pool (empty for remote workers).
        heartbeat_s: seconds between heartbeats.
        parent_pid: the pool's pid for local workers (watch it), None for remote ones.
        curve: client keys when the pool requires CurveZMQ.
        pool_timeout_s: a remote worker that hears nothing from the pool this long rejoins.
        handshake_timeout_s: a remote worker that has not heard from the pool this long
            after connecting (a refused key, a wrong server key, no pool there) logs why
            and exits with :data:`EXIT_NOT_ADMITTED`.
        reply_path: for a local worker, the pool's Unix datagram socket its outcomes go to,
            each datagram tagged with ``token`` (see :mod:`laneway.worker.wire`): one system
            call to the pool thread that reads, with no ZeroMQ I/O thread in between.
            Empty: outcomes go over ZeroMQ (remote workers).
        task_path: for a local worker, the Unix datagram socket it binds for its tasks,
            which it runs in sequence order with those that come over ZeroMQ (see
            :mod:`laneway.worker.wire`). Empty: tasks come over ZeroMQ only.
    """

    endpoint: str
    worker_id: str = ""
    token: bytes = b""
    heartbeat_s: float = 0.5
    parent_pid: int | None = None
    curve: CurveClient | None = None
    pool_timeout_s: float = 10.0
    handshake_timeout_s: float = 30.0
    reply_path: str = ""
    task_path: str = ""

    @property
    def remote(self) -> bool:
        return self.parent_pid is None


def spawn_entry(cfg: WorkerConfig) -> None:
    """Target of the pool's worker processes (started by :func:`laneway.worker.start_process`)."""
    die_with_parent(cfg.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the pool, which stops us in order
    sys.exit(run(cfg))


def die_with_parent(parent_pid: int | None) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); exit now if the parent is already gone.

    For any child laneway starts (pool workers, actor host processes): a SIGKILLed
    parent must not leave children behind.
    """
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    import ctypes  # here, not at the top: the pool's process imports this module too, and never calls this

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
    ctx = _Context()
    stop = threading.Event()
    previous = _stop_on_sigterm(stop) if cfg.remote else None
    try:
        while True:
            wid = cfg.worker_id or _remote_worker_id()
            session = _Session(ctx, cfg, wid, runner, stop)
            outcome = session.serve()
            if outcome == "sigterm":
                log.warning("worker %s: SIGTERM; finished the tasks it had, leaving the pool", wid)
                return 0
            if outcome == "stop" or not cfg.remote:
                return 0
            if outcome == "not admitted":
                log.error(
                    "worker %s: no answer from the pool at %s within %ss: %s; exiting",
                    wid, cfg.endpoint, cfg.handshake_timeout_s,
                    session.handshake_failure or "nothing answered (is a pool listening there?)",
                )  # fmt: skip
                return EXIT_NOT_ADMITTED
            log.warning("worker %s lost the pool (%s); rejoining", wid, outcome)
            runner = TaskRunner()  # a new identity starts with an empty function cache on both ends
    finally:
        ctx.destroy()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _remote_worker_id() -> str:
    import uuid  # remote workers only: a local worker's id comes from the pool

    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _stop_on_sigterm(stop: threading.Event) -> Any:
    """A remote worker (``laneway worker``) stops gracefully on SIGTERM: it finishes the tasks it
    was sent, then leaves (the pool hands anything unanswered to another worker); a second
    SIGTERM ends it at once. Returns the handler it replaced, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop.set()

    return signal.signal(signal.SIGTERM, on_sigterm)


class _Session:
    """One connection under one identity."""

    def __init__(self, ctx: _Context, cfg: WorkerConfig, wid: str, runner: TaskRunner,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop if stop is not None else threading.Event()
        self.cfg = cfg
        self.ctx = ctx
        self.wid = wid
        self.runner = runner
        self.handshake_failure: str | None = None
        self.monitor: zmq.Socket | None = None
        # A local worker with both datagram sockets connects over ZeroMQ later (see the module docstring).
        self.sock: zmq.Socket | None = None
        if not (cfg.reply_path and cfg.task_path):
            self.sock = self._socket(ctx.get(), wid.encode(), watch=cfg.remote)
        self.connect_asked = False  # the pool asked this local worker to connect over ZeroMQ
        self.stop_asked = False  # a STOP datagram came (to a local worker not connected over ZeroMQ)
        self.lost = ""  # why the pool's reply socket refused an outcome (the pool is gone)
        self.reply: socket.socket | None = None
        if cfg.reply_path:
            self.reply = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.reply.connect(cfg.reply_path)
            self.reply_head = cfg.token[: wire.REPLY_TOKEN]
        self.tasks_in: socket.socket | None = None
        if cfg.task_path:  # bound before HELLO: the pool sends here once it heard from us
            self.tasks_in = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            self.tasks_in.bind(cfg.task_path)
        self.next_seq = 1  # the sequenced TASKS to run next
        self.early: dict[int, tuple[Any, list, int]] = {}  # sequenced TASKS that came ahead of one still on its way
        self.early_since = 0.0  # when the first of them came
        self.hb_stop = threading.Event()
        self.hb = threading.Thread(target=self._beat, name="laneway-worker-heartbeat", daemon=True)

    def _socket(self, ctx: zmq.Context, identity: bytes, watch: bool = False) -> zmq.Socket:
        import zmq

        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 2000)
        curve = self.cfg.curve
        if curve is not None:
            sock.curve_serverkey = curve.server_public
            sock.curve_publickey = curve.public
            sock.curve_secretkey = curve.secret
        if watch:  # before connect, so the first handshake's outcome is seen
            self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | sum(_handshake_failures()))
        sock.connect(self.cfg.endpoint)
        return sock

    def serve(self) -> str:
        cfg = self.cfg
        if self.sock is None:  # a local worker: datagrams until it connects over ZeroMQ
            try:
                outcome = self._serve_datagrams()
            except BaseException:
                self._close()
                raise
            if outcome:
                self._close()
                return outcome
        else:
            self.sock.send_multipart([wire.HELLO, json.dumps(self._hello()).encode()])
            self.hb.start()
        import zmq  # here: a local worker has served its first tasks without it

        sock = self.sock
        assert sock is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self.monitor is not None:
            poller.register(self.monitor, zmq.POLLIN)
        tasks_fd = -1
        if self.tasks_in is not None:
            tasks_fd = self.tasks_in.fileno()
            poller.register(tasks_fd, zmq.POLLIN)
        heard = connected = time.monotonic()
        admitted = not cfg.remote
        try:
            while True:
                if self.stop.is_set():
                    return "sigterm"
                ready = dict(poller.poll(int(cfg.heartbeat_s * 1000)))
                if self.monitor is not None and self.monitor in ready:
                    self._handshake_event()
                if tasks_fd in ready:
                    self._receive_task_datagrams()
                    if self.lost:
                        return self.lost
                    if self.stop_asked:
                        return self._stopping()
                if self.early and time.monotonic() - self.early_since > SEQ_GAP_S:
                    log.error("worker %s: task batch %d never came; leaving so the pool requeues what it sent",
                              self.wid, self.next_seq)
                    return f"task batch {self.next_seq} never came"
                if sock not in ready:
                    if not admitted and time.monotonic() - connected > cfg.handshake_timeout_s:
                        return "not admitted"
                    if admitted and cfg.remote and time.monotonic() - heard > cfg.pool_timeout_s:
                        return f"no word from the pool for {cfg.pool_timeout_s}s"
                    continue
                # Frames are not copied out of ZeroMQ's buffers: a large argument is unpickled
                # straight from the message it came in.
                frames = sock.recv_multipart(copy=False)
                heard = time.monotonic()
                admitted = True
                kind = frames[0].bytes
                if kind == wire.TASKS:
                    self._run_batch(frames[1].buffer, frames, 2)
                elif kind == wire.SEQ_TASKS:
                    self._sequenced(int.from_bytes(frames[1].bytes, "big"), (frames[2].buffer, frames, 3))
                elif kind == wire.STOP:
                    self._receive_task_datagrams()  # sent before the STOP: queued here already
                    return self._stopping()
                elif kind == wire.REJOIN:
                    return "the pool asked to rejoin"
                del frames  # hold no finished task's arguments while idle
                if self.lost:
                    return self.lost
        finally:
            self._close()

    def _stopping(self) -> str:
        if self.early:
            log.error("worker %s: stopping with tasks %s not run (some before them never came)",
                      self.wid, sorted(self.early))
        return "stop"

    def _close(self) -> None:
        self.hb_stop.set()
        if self.hb.is_alive():
            self.hb.join(timeout=2 * self.cfg.heartbeat_s + 1)
        if self.sock is not None:
            if self.monitor is not None:
                self.sock.disable_monitor()
                self.monitor.close(linger=0)
            self.sock.close()
        if self.reply is not None:
            self.reply.close()
        if self.tasks_in is not None:
            self.tasks_in.close()

    def _hello(self) -> list:
        return [os.getpid(), socket.gethostname(), self.cfg.token.hex()]

    def _serve_datagrams(self) -> str:
        """A local worker's start: say HELLO, heartbeat and run task datagrams until the pool
        asks it to connect over ZeroMQ, then connect. Returns why the session ends, or "" once connected."""
        assert self.tasks_in is not None
        self._send_reply(json.dumps(self._hello()).encode(), wire.REPLY_HELLO)
        self.hb.start()
        poller = select.poll()
        poller.register(self.tasks_in.fileno(), select.POLLIN)
        # (A batch that came early follows one that went over ZeroMQ: the pool asked first.)
        while not (self.connect_asked or self.early):
            if self.stop.is_set() or self.lost:
                return "sigterm" if self.stop.is_set() else self.lost
            if self.stop_asked:
                return self._stopping()
            if poller.poll(self.cfg.heartbeat_s * 1000):
                self._receive_task_datagrams()
        if self.lost:
            return self.lost
        self.sock = self._socket(self.ctx.get(), self.wid.encode())
        self.sock.send_multipart([wire.HELLO, json.dumps(self._hello()).encode()])
        return ""

    def _handshake_event(self) -> None:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        assert self.monitor is not None  # only called when the poller saw the monitor socket
        event = zmq.Event(recv_monitor_message(self.monitor)["event"])
        failures = _handshake_failures()
        if event in failures and self.handshake_failure is None:
            self.handshake_failure = failures[event]
            # Logged once per session: ZeroMQ retries the handshake on its own until the timeout.
            log.warning("worker %s: %s", self.wid, self.handshake_failure)

    def _receive_task_datagrams(self) -> None:
        """Run the sequenced TASKS waiting on the task socket (see :mod:`laneway.worker.wire`)."""
        if self.tasks_in is None:
            return
        recv, n = self.tasks_in.recv, wire.SEQ_BYTES
        while not self.lost:
            try:
                data = recv(wire.REPLY_CHUNK + 64)
            except BlockingIOError:
                return
            seq = int.from_bytes(data[:n], "big")
            if seq == wire.CONNECT_SEQ:  # the pool wants ZeroMQ (ignored once connected)
                if self.sock is None:  # connect now: the datagrams still queued are read once connected
                    self.connect_asked = True
                    return
                continue
            if seq == wire.STOP_SEQ:  # after every task sent before it, all of them datagrams
                self.stop_asked = True
                return
            self._sequenced(seq, (memoryview(data)[n:], [], 0))

    def _sequenced(self, seq: int, batch: tuple[Any, list, int]) -> None:
        """Run a sequenced TASKS batch in its turn, and any that came early and follow it."""
        if seq != self.next_seq:
            if not self.early:
                self.early_since = time.monotonic()
            self.early[seq] = batch
            return
        self._run_batch(*batch)
        self.next_seq += 1
        early = self.early
        while early and self.next_seq in early and not self.lost:
            self._run_batch(*early.pop(self.next_seq))
            self.next_seq += 1
        if early:  # still a gap: time it from now
            self.early_since = time.monotonic()

    def _run_batch(self, header: Any, frames: list, pos: int) -> None:
        """Run one TASKS message (see :mod:`laneway.worker.wire`), sending outcomes as they are ready.

        ``header`` is the message's pickled header; its tasks' payload frames are
        ``frames[pos:]``.

        Outcomes go back at once after the last task; within a long batch at least every
        :data:`FLUSH_S`, so the pool sees progress (and frees window room) while it runs.
        Each DONE says how long this process spent on its tasks (see ``wire.DONE``).
        """
        run, send, value_form, inline_max = self.runner.run_row, self._send_done, wire.VALUE, wire.INLINE_MAX
        if self.reply is not None:  # large data stays in the body, which the datagrams carry in pieces
            inline_max = sys.maxsize
        started = time.monotonic()
        head = pickle.loads(header)
        del header
        out: list[tuple[int, bool, int, Any]] = []
        big: list[bytes] = []
        last = len(head) - 1
        for i, (task_id, digest, fn_bytes, args, nbufs) in enumerate(head):
            if args is None:
                args = frames[pos].buffer
                frames[pos] = None
                pos += 1
            bufs: list[Any] = []
            if nbufs:
                bufs = [f.buffer for f in frames[pos: pos + nbufs]]
                frames[pos: pos + nbufs] = [None] * nbufs  # drop this task's frames once it ran
                pos += nbufs
            row = run(task_id, digest, fn_bytes or None, args, bufs)
            del args, bufs
            if row[2] != value_form and len(row[3]) >= inline_max:
                big.append(row[3])
                row = (task_id, row[1], row[2], None)
            out.append(row)
            if i < last and time.monotonic() - started > FLUSH_S:
                send(out, big, time.monotonic() - started)
                if self.lost:
                    return  # the pool is gone: nobody takes the rest
                out, big = [], []
                started = time.monotonic()
        if out:
            send(out, big, time.monotonic() - started)

    def _send_done(self, out: list, big: list[bytes], busy_s: float) -> None:
        body = pickle.dumps((out, busy_s), 5)
        if self.reply is not None:
            self._send_reply(body)
            return
        assert self.sock is not None  # no reply socket: connected over ZeroMQ from the start
        if big:
            self.sock.send_multipart([wire.DONE, body, *big], copy=False)
        else:
            self.sock.send_multipart([wire.DONE, body])

    def _send_reply(self, body: bytes, flag: bytes = wire.REPLY_END) -> None:
        """One DONE body (or a small HELLO, by its ``flag``) to the pool's reply socket, in pieces if it is
        large (see :mod:`laneway.worker.wire`).

        Sends block while the pool's socket is full: the pool reads it all the time, and
        a worker has nothing else to do until its outcomes are taken.
        """
        assert self.reply is not None
        head, chunk = self.reply_head, wire.REPLY_CHUNK
        try:
            if len(body) <= chunk:
                self.reply.send(head + flag + body)
                return
            view, more, end = memoryview(body), head + wire.REPLY_MORE, head + wire.REPLY_END
            last = (len(body) - 1) // chunk * chunk
            for at in range(0, last, chunk):
                self.reply.sendmsg([more, view[at: at + chunk]])
            self.reply.sendmsg([end, view[last:]])
        except OSError as exc:  # the pool closed its socket, or is gone
            self.lost = f"the pool's reply socket refused an outcome ({exc})"

    def _beat(self) -> None:
        cfg = self.cfg
        # A local worker with a reply socket beats there (from the start, before any ZeroMQ).
        sock = None if self.reply is not None and cfg.task_path else self._socket(self.ctx.get(),
                                                                                 self.wid.encode() + wire.HB_SUFFIX)
        me = _Usage()
        try:
            while True:
                if sock is None:
                    self._send_beat_datagram(me)
                else:
                    self._send_beat(sock, me)
                if self.hb_stop.wait(cfg.heartbeat_s):
                    return
                if cfg.parent_pid is not None and os.getppid() != cfg.parent_pid:
                    os._exit(70)  # orphaned: the pool is gone, and with it anyone to answer
        finally:
            if sock is not None:
                sock.close(linger=0)

    def _send_beat_datagram(self, me: _Usage) -> None:
        assert self.reply is not None
        try:
            # Never block (as the ZeroMQ beat below): a beat that cannot go now is stale anyway.
            self.reply.send(self.reply_head + wire.REPLY_BEAT + me.beat(), socket.MSG_DONTWAIT)
        except OSError:
            pass  # full: the next one follows in heartbeat_s; gone: the main loop finds out

    @staticmethod
    def _send_beat(sock: zmq.Socket, me: _Usage) -> None:
        import zmq

        try:
            # Never block: a DEALER with no connected pool (a refused handshake drops its
            # pipe) would hold this thread past the session's end. A beat that cannot
            # go now is stale anyway; the next one follows in heartbeat_s.
            sock.send_multipart([wire.BEAT, me.beat()], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass


class _Usage:
    """This process's RSS and CPU use, read from ``/proc`` where there is one.

    psutil does the same everywhere, but importing it costs a worker a few MB and
    milliseconds of start-up for two numbers; it is imported only where ``/proc`` is missing.
    """

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._proc: Any = None
        if not os.path.exists("/proc/self/statm"):
            import psutil

            self._proc = psutil.Process()
            self._proc.cpu_percent(None)
        self._last = (time.monotonic(), _cpu_s())

    def beat(self) -> bytes:
        """A heartbeat's body: ``[rss, cpu_percent]`` as JSON (zeros if they cannot be read)."""
        try:
            rss, cpu = self.rss(), self.cpu_percent()
        except Exception:
            rss, cpu = 0, 0.0
        return json.dumps([rss, cpu]).encode()

    def rss(self) -> int:
        if self._proc is not None:
            return int(self._proc.memory_info().rss)
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * self._page

    def cpu_percent(self) -> float:
        """CPU use since the last call, in percent of one core (psutil's convention)."""
        if self._proc is not None:
            return float(self._proc.cpu_percent(None))
        now, cpu = time.monotonic(), _cpu_s()
        (then, was), self._last = self._last, (now, cpu)
        return 100.0 * (cpu - was) / (now - then) if now > then else 0.0


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system
