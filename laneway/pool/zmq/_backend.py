"""The default backend: worker OS processes talking to the pool over ZeroMQ.

One I/O thread carries the data path: it receives outcomes and heartbeats, sends
task batches, and polls, in the same ``select.poll``, a pidfd per local worker, which
becomes readable the moment the process exits, so a death is seen within
milliseconds rather than at the next heartbeat. Other threads reach it through a
command deque plus an eventfd.

Sending and receiving off the I/O thread (see ``_socket.py``): a thread that submits
a task while nobody uses the socket assigns and sends it itself, and a caller
blocked on a task's result reads the socket itself while nobody else does, sparing
a lone task's round trip both hops through the I/O thread. Routing every task through per-worker actor
mailboxes would add two thread hand-offs per task and cap throughput near the
actor ask rate (about 10k/s); the worker actors instead handle lifecycle
(start, stop, crash, restart), which is rare.

Local workers' data path skips ZeroMQ (see :mod:`laneway.worker.wire`): a batch of
tasks goes as one datagram, sent by the thread that assigns it, to the worker's own
Unix socket, and the worker sends its outcomes as datagrams to a Unix socket the pool
binds in its private directory, read by whoever reads the ROUTER. A lone round trip
then costs one system call each way on each side, where ZeroMQ hands every message
to an I/O thread in both processes. A batch with payload frames, or one that finds
the worker's socket full (a datagram send never blocks the pool), goes over the
ROUTER instead, numbered so the worker runs it in its turn. Remote workers use the
ROUTER both ways. A local worker starts without ZeroMQ: it says HELLO and heartbeats
by datagram, and connects its DEALER only when the pool asks; until its ZeroMQ HELLO,
what only the ROUTER can carry to it (``SEQ_TASKS``; a ``STOP`` that must follow
something kept, or finds its socket full) is kept on its ``_Peer``, in order, and it is
asked to connect (see :mod:`laneway.worker.wire`); a worker the pool keeps busy (a
batch sent while another is unanswered) is asked too, before its socket is full. So a
pool whose workers are all local binds its ROUTER, and imports ZeroMQ, only then (one
that listens for remote workers, in :meth:`ZmqBackend.open`): its start and a program
whose tasks come one at a time never load ZeroMQ, in the pool or in its workers.

Liveness: local workers are watched by pidfd; every worker, local or remote,
heartbeats from a thread of its own, and one that stays silent for
``heartbeat_timeout_s`` (read on the orchestrator's clock) is killed (local) or
dropped (remote). Remote workers join on their own with ``laneway worker
--connect``; a pool that listens beyond loopback requires CurveZMQ keys.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pickle
import select
import shutil
import signal
import socket
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

from laneway.errors import AuthError, ConfigError, PoolError
from laneway.worker import wire
from laneway.pool._backend import Backend, WorkerHub, exit_reason
from laneway.worker import ShipLedger
from laneway.pool.zmq._socket import IO_RECHECK_S, SharedRouter
from laneway.worker import Spawner, WorkerConfig, spawn_entry

if TYPE_CHECKING:
    import zmq

    from laneway.worker import CurveServer

log = logging.getLogger(__name__)

#: Incoming messages handled per poll round before sending again (keeps windows fed).
RECV_BURST = 256

#: Receive size for a reply datagram: a whole piece of a DONE body with its tag.
_REPLY_BUF = wire.REPLY_CHUNK + wire.REPLY_TOKEN + 64



class _Peer:
    """One worker as the I/O thread knows it."""

    __slots__ = ("wid", "ident", "remote", "token", "proc", "pid", "pidfd", "hello", "seen", "ledger",
                 "exited", "kill_reason", "pieces", "task_path", "seq", "sent", "answered", "routed", "held",
                 "wanted", "asked")

    def __init__(self, wid: str, remote: bool, token: bytes, now: float) -> None:
        self.wid = wid
        self.ident = wid.encode()
        self.remote = remote
        self.token = token
        self.proc: Any = None
        self.pid = 0
        self.pidfd = -1
        self.hello = False
        self.seen = now
        self.ledger = ShipLedger()
        self.exited = threading.Event()
        self.kill_reason = ""
        self.pieces: list[bytes] = []  # the reply datagrams so far of a DONE body sent in pieces
        self.task_path = ""  # a local worker's task socket
        self.seq = 0  # the last TASKS sent to it (numbered: see laneway.worker.wire)
        # Under SharedRouter.lock: its ZeroMQ HELLO came (a local worker says HELLO by datagram first
        # and connects later), and until then what only the ROUTER can carry to it, in order.
        self.routed = remote
        self.held: list[list[bytes]] = []
        # Tasks sent to it (under SharedRouter.lock) and answered (by the reader): each has one writer.
        self.sent = 0
        self.answered = 0
        self.wanted = False  # the pool wants it connected over ZeroMQ (_want_router_locked)
        self.asked = False  # the datagram that asks it to connect went (its socket may have been full)


class ZmqBackend(Backend):
    """Worker processes over ZeroMQ (``Pool(backend="zmq")``, the default).

    Args:
        listen: endpoint the pool binds. None (default): an ``ipc://`` socket in a private
            temporary directory, for local workers only. ``"tcp://HOST:PORT"`` also admits
            remote workers (``laneway worker --connect``); port 0 picks a free port.
        keys: directory from ``laneway keys``; required when ``listen`` is not loopback.
        heartbeat_s: seconds between worker heartbeats (and pings to remote workers).
        heartbeat_timeout_s: silence after which a worker is considered hung or gone.
        start_timeout_s: how long a launched worker may take to connect.
        spawner: the :class:`~laneway.worker.Spawner` that starts the local workers; the
            backend owns it from here on and closes it. The orchestrator passes one that
            launched the first workers' interpreters ahead, while the pool was loading
            (see :meth:`~laneway.worker.Spawner.launch_ahead`). None: the backend starts its own.

    Example:
        >>> orch.start_pool(workers=2, listen="tcp://0.0.0.0:5555", keys="/etc/laneway/keys")  # doctest: +SKIP
    """

    name = "zmq"
    out_of_band = True
    inline_args = True

    def __init__(
        self,
        *,
        listen: str | None = None,
        keys: str | os.PathLike | None = None,
        heartbeat_s: float = 0.5,
        heartbeat_timeout_s: float = 5.0,
        start_timeout_s: float = 60.0,
        spawner: Spawner | None = None,
    ) -> None:
        self._spawner_given = spawner  # closed by open() if it fails, else handed to self._spawner
        if not 0 < heartbeat_s < heartbeat_timeout_s:
            raise ConfigError(f"need 0 < heartbeat_s < heartbeat_timeout_s, got {heartbeat_s}, {heartbeat_timeout_s}")
        if listen is not None:
            scheme = urlsplit(listen).scheme
            if scheme not in ("tcp", "ipc"):
                raise ConfigError(f"listen must be a tcp:// or ipc:// endpoint, got {listen!r}")
            from laneway.worker import is_loopback  # (with the key handling, which imports ZeroMQ: a listening pool needs it)

            if keys is None and not is_loopback(listen):
                raise AuthError(
                    f"refusing to listen on {listen} without keys: anyone who reaches it could run code in "
                    f"this process; create keys with `laneway keys DIR` and pass keys=DIR")
        self.listen = listen
        self.keys = keys
        self.heartbeat_s = heartbeat_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.start_timeout_s = start_timeout_s
        self.endpoint = ""
        self._peers: dict[str, _Peer] = {}
        self._by_token: dict[bytes, _Peer] = {}  # local workers, by the tag of their reply datagrams
        self._cmds: collections.deque[tuple] = collections.deque()
        self._signalled = False
        self._io_ident = 0
        self._closed = False

    # --- Backend ------------------------------------------------------------------

    def open(self, hub: WorkerHub) -> None:
        self._hub = hub
        self._clock = hub.clock
        self._ctx: zmq.Context | None = None
        # mode 0700: only this user can connect to the sockets in it
        self._tmpdir = tempfile.mkdtemp(prefix="laneway-pool-")
        self._curve: CurveServer | None = None
        self._reply_path = f"{self._tmpdir}/replies.sock"
        replies = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            replies.bind(self._reply_path)
        except Exception:
            replies.close()
            self._shutdown_ctx()
            raise
        self._shared = SharedRouter(None, replies)
        if self.listen is None:  # local workers only: bound when one first needs it (_bind_router_locked)
            self.endpoint = self._connect_ep = self._bind_address()
        else:
            try:
                self._bind_router_locked()
            except Exception:
                self._shared.close()
                self._shutdown_ctx()
                raise
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._spawner = self._spawner_given or Spawner(self.endpoint)
        self._spawner_given = None
        self._thread = threading.Thread(target=self._loop, name="laneway-pool-io", daemon=True)
        self._thread.start()
        self._tick_timer = self._clock.call_later(self.heartbeat_s, self._tick)

    def _bind_router_locked(self) -> None:
        """Bind the ROUTER, importing ZeroMQ: in :meth:`open` for a pool that admits remote workers,
        otherwise when a local worker first needs it (holding the socket lock then)."""
        import zmq

        from laneway.worker import bind_router

        self._ctx = zmq.Context()
        router, self._curve = bind_router(self._ctx, self._bind_address(), self.keys)
        if self.listen is not None:  # (a local pool's endpoint is known from the start: its workers have it)
            self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            self._connect_ep = self._connectable(self.endpoint)
        self._shared.attach_locked(router)

    def _bind_address(self) -> str:
        if self.listen is None:
            return f"ipc://{self._tmpdir}/pool.sock"
        parts = urlsplit(self.listen)
        if parts.scheme == "tcp" and parts.port in (0, None):
            return f"tcp://{parts.hostname}:*"
        return self.listen

    @staticmethod
    def _connectable(endpoint: str) -> str:
        parts = urlsplit(endpoint)
        if parts.scheme == "tcp" and parts.hostname in ("0.0.0.0", "::", "*"):
            host = "[::1]" if parts.hostname == "::" else "127.0.0.1"
            return f"tcp://{host}:{parts.port}"
        return endpoint

    def start_worker(self, worker_id: str) -> None:
        if self._closed:
            raise PoolError("the pool's backend is closed")
        peer = _Peer(worker_id, False, os.urandom(16), self._clock.now())
        peer.task_path = f"{self._tmpdir}/{worker_id}.tasks"
        cfg = WorkerConfig(
            endpoint=self._connect_ep,
            worker_id=worker_id,
            token=peer.token,
            heartbeat_s=self.heartbeat_s,
            parent_pid=os.getpid(),
            curve=self._curve.local_client() if self._curve is not None else None,
            reply_path=self._reply_path,
            task_path=peer.task_path,
        )
        # Known before it runs: an interpreter launched ahead says HELLO (a datagram) within a
        # millisecond of its arguments, maybe before spawn() returns here.
        self._peers[worker_id] = peer
        self._by_token[peer.token] = peer
        try:
            proc = self._spawner.spawn(spawn_entry, (cfg,), name=f"laneway-worker:{worker_id}")
        except BaseException:
            self._peers.pop(worker_id, None)
            self._by_token.pop(peer.token, None)
            raise
        peer.proc, peer.pid = proc, proc.pid
        try:
            peer.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            peer.pidfd = -1  # fall back to multiprocessing's sentinel pipe, which also turns readable on exit
        self._post(("watch", peer))

    def stop_worker(self, worker_id: str, timeout: float) -> None:
        peer = self._peers.get(worker_id)
        if peer is None:
            return
        self._post(("stop", peer))
        if peer.exited.wait(timeout) or peer.remote:
            return
        peer.kill_reason = f"did not stop within {timeout}s"
        self._signal(peer, signal.SIGKILL)
        if not peer.exited.wait(max(5.0, timeout)):
            log.error("worker %s (pid %d) did not go away after SIGKILL", worker_id, peer.pid)

    def kill_worker(self, worker_id: str, reason: str) -> None:
        peer = self._peers.get(worker_id)
        if peer is None:
            return
        if peer.remote:
            self._post(("drop", peer, reason))
            return
        peer.kill_reason = peer.kill_reason or reason
        self._signal(peer, signal.SIGKILL)

    def wake(self) -> None:
        if threading.get_ident() == self._io_ident:
            return  # the I/O loop assigns at the end of every round anyway
        shared = self._shared
        lock = shared.lock
        if lock.acquire(blocking=False):  # the socket is free: send from this thread (see the module docstring)
            try:
                pending = shared.open and self._dispatch_locked()
            finally:
                lock.release()
            if pending:  # results came in while we sent: read them here if nobody else reads
                if shared.reader.acquire(blocking=False):
                    try:
                        pending = self._receive(True, False)  # replies: poll announces them to the reader
                    finally:
                        shared.reader.release()
                if pending:
                    shared.kick_reader(self._wake_io)
            return
        self._wake_io()

    def _wake_io(self) -> None:
        if not self._signalled:
            self._signalled = True
            try:
                os.eventfd_write(self._efd, 1)
            except OSError:
                pass  # closed: nothing left to wake

    def close(self, timeout: float) -> None:
        if self._closed:
            return
        self._closed = True
        self._tick_timer.cancel()
        self._post(("close", timeout))
        self._thread.join(timeout + 5)
        if self._thread.is_alive():
            log.error("pool I/O thread did not finish closing")
        self._spawner.close()
        self._shutdown_ctx()
        os.close(self._efd)

    def _shutdown_ctx(self) -> None:
        if self._spawner_given is not None:  # open() failed before the backend took it over
            self._spawner_given.close()
            self._spawner_given = None
        if self._curve is not None:
            self._curve.stop()
        if self._ctx is not None:
            self._ctx.term()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def is_remote(self, worker_id: str) -> bool:
        peer = self._peers.get(worker_id)
        return peer is not None and peer.remote

    def admits_remote_workers(self) -> bool:
        return self.listen is not None

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "curve": self._curve is not None}

    # --- helpers for any thread ----------------------------------------------------

    def _post(self, cmd: tuple) -> None:
        self._cmds.append(cmd)
        try:
            os.eventfd_write(self._efd, 1)
        except OSError:
            pass

    @staticmethod
    def _signal(peer: _Peer, sig: int) -> None:
        if peer.pid <= 0:
            return  # not started yet (pid 0 would signal this whole process group)
        try:
            os.kill(peer.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # already gone (its pidfd reports it)

    def _tick(self) -> None:
        if not self._closed:
            self._post(("tick",))
            self._tick_timer = self._clock.call_later(self.heartbeat_s, self._tick)

    # --- the I/O thread ------------------------------------------------------------

    def serve_waiter(self, done: Callable[[], bool], deadline: float | None) -> None:
        if threading.get_ident() == self._io_ident or self._closed:
            return
        self._shared.serve_waiter(done, deadline, self._receive, lambda: self._post(("resume",)))

    def _send(self, frames: list[bytes]) -> None:
        """Send a control message (from the I/O thread, or a caller reading the socket)."""
        if self._shared.send(frames):
            self._shared.kick_reader(self._wake_io)

    def _loop(self) -> None:
        self._io_ident = threading.get_ident()
        shared = self._shared
        # select's poll, not ZeroMQ's: every descriptor here is a plain one (the ROUTER's ZMQ_FD
        # included), and a pool of local workers may never load ZeroMQ.
        poller = select.poll()
        self._poller = poller
        self._poll_sockets(True)
        poller.register(self._efd, select.POLLIN)
        self._by_fd: dict[int, _Peer] = {}
        timeout: int | None = None
        try:
            while True:
                ready = poller.poll(timeout)
                for item, _ in ready:
                    if item == shared.fd or item == shared.reply_fd:
                        continue  # received below, every round
                    if item == self._efd:
                        self._signalled = False
                        try:
                            os.eventfd_read(self._efd)
                        except BlockingIOError:
                            pass
                        if not self._commands():
                            return
                    else:
                        peer = self._by_fd.get(item)
                        if peer is not None:
                            self._reap(peer)
                if shared.io_yielded and shared.take_back():
                    self._poll_sockets(True)
                more = self._receive_io()
                with shared.lock:
                    pending = self._dispatch_locked()
                if pending and shared.io_yielded:
                    shared.kick_reader(self._wake_io)  # the reading caller, or us if it just left
                    pending = False
                # 0: a message waits that no edge will announce again
                timeout = 0 if more or pending else int(IO_RECHECK_S * 1000) if shared.io_yielded else None
        except BaseException:  # a bug, never a task (whose outcomes it only forwards): stop cleanly
            log.exception("pool I/O thread failed; killing workers")
            self._close_all(1.0)
        finally:
            self._shared.close()

    def _poll_sockets(self, on: bool) -> None:
        """Have the I/O thread poll the ROUTER's ZMQ_FD (once there is a ROUTER) and the reply socket, or stop."""
        shared, poller = self._shared, self._poller
        for fd in (shared.fd, shared.reply_fd):
            if fd < 0:
                continue
            if on:
                poller.register(fd, select.POLLIN)
            else:
                try:
                    poller.unregister(fd)
                except KeyError:
                    pass  # the ROUTER, bound while the sockets were left to a reading caller
        self._sock_polled = on

    def _receive_io(self) -> bool:
        """The I/O thread's turn at reading, unless a waiting caller reads; True if more may wait."""
        shared = self._shared
        if not shared.reader.acquire(blocking=False):
            if shared.io_may_read():
                return True  # the caller is just leaving: look again at once
            if self._sock_polled:  # stop polling the sockets until the caller leaves
                # (the reply socket is level-triggered: polled while the caller reads, it would spin)
                self._poll_sockets(False)
            return False
        try:
            return self._receive()
        finally:
            shared.reader.release()

    def _commands(self) -> bool:
        cmds = self._cmds
        while cmds:
            cmd = cmds.popleft()
            kind = cmd[0]
            if kind == "watch":
                peer = cmd[1]
                fd = peer.pidfd if peer.pidfd >= 0 else peer.proc.sentinel
                self._by_fd[fd] = peer
                self._poller.register(fd, select.POLLIN)
            elif kind == "router":  # bound just now, for a local worker (_want_router_locked)
                if self._sock_polled:
                    self._poll_sockets(True)
            elif kind == "tick":
                self._check_heartbeats()
            elif kind == "stop":
                peer = cmd[1]
                if peer.remote:
                    self._send([peer.ident, wire.STOP])
                    self._drop(peer, "stopped by the pool")
                elif peer.hello:
                    self._send_local(peer, [peer.ident, wire.STOP], wire.STOP_SEQ.to_bytes(wire.SEQ_BYTES, "big"))
                else:  # not connected yet: a STOP would be dropped, and it runs nothing anyway
                    peer.kill_reason = "stopped before it connected"
                    self._signal(peer, signal.SIGKILL)
            elif kind == "drop":
                self._send([cmd[1].ident, wire.REJOIN])
                self._drop(cmd[1], cmd[2])
            elif kind == "close":
                self._close_all(cmd[1])
                return False
            elif kind == "frames":  # a message a waiting caller received and left to this thread
                self._handle_frames(cmd[1])
            elif kind == "hello":  # a local worker's datagram HELLO a waiting caller received
                self._hello(cmd[1], cmd[2], routed=False)
            # "resume" only wakes the loop, which takes the socket back
        return True

    def _receive(self, router: bool = True, replies: bool = True) -> bool:
        """Receive and handle what waits on the ROUTER and/or the reply socket, holding the reader role;
        True if more may wait."""
        more = self._receive_router() if router else False
        if replies:
            more = self._receive_replies() or more
        return more

    def _receive_router(self) -> bool:
        """Receive and handle what waits, up to RECV_BURST messages; True if more may wait.

        Off the I/O thread (a waiting caller reads), only results and heartbeats are
        handled here; anything else goes to the I/O thread, which owns the peers' lifecycle.
        """
        shared = self._shared
        lock, on_io = shared.lock, threading.get_ident() == self._io_ident
        for _ in range(RECV_BURST):
            with lock:
                # Asking first is cheaper than a recv that raises zmq.Again, and it leaves the
                # edge of ZMQ_FD armed once nothing waits.
                if not shared.open or not shared.readable_locked():
                    return False
                frames = shared.recv_locked()
            if on_io or len(frames) > 1 and frames[1] in (wire.DONE, wire.BEAT):
                self._handle_frames(frames)
            else:
                self._post(("frames", frames))
        return True

    def _receive_replies(self) -> bool:
        """Receive and handle local workers' reply datagrams, up to RECV_BURST; True if more may wait."""
        replies = self._shared.replies
        if replies is None:
            return False
        recv, by_token, tlen = replies.recv, self._by_token, wire.REPLY_TOKEN
        for _ in range(RECV_BURST):
            try:
                data = recv(_REPLY_BUF)
            except OSError:  # BlockingIOError: nothing waits (or closed: the pool is closing)
                return False
            peer = by_token.get(data[:tlen])
            flag = data[tlen: tlen + 1]
            if peer is None:  # from a worker the pool already gave up on: counted as late, never unpickled
                if flag == wire.REPLY_END:
                    self._hub.results_rows("?", [(0, False, wire.PICKLED, b"")])
                continue
            if flag == wire.REPLY_MORE:
                peer.pieces.append(data[tlen + 1:])
                continue
            if flag == wire.REPLY_BEAT:
                self._handle_frames([peer.ident + wire.HB_SUFFIX, wire.BEAT, data[tlen + 1:]])
                continue
            if flag == wire.REPLY_HELLO:  # the worker's lifecycle is the I/O thread's
                if threading.get_ident() == self._io_ident:
                    self._hello(peer.ident, data[tlen + 1:], routed=False)
                else:
                    self._post(("hello", peer.ident, data[tlen + 1:]))
                continue
            body = data[tlen + 1:]
            if peer.pieces:
                peer.pieces.append(body)
                body, peer.pieces = b"".join(peer.pieces), []
            self._handle_frames([peer.ident, wire.DONE, body])
            if peer.wanted and not peer.asked:  # its socket was full when it was asked to connect: room now?
                with self._shared.lock:
                    if self._shared.open:
                        self._ask_locked(peer)
        return True

    def _handle_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return
        try:
            self._handle(frames[0], frames[1], frames[2] if len(frames) > 2 else b"", frames)
        except BaseException:
            # A malformed message (a worker of another version, a bug) must not stop the pool.
            log.exception("dropped a malformed %r message from worker %r", frames[1][:1], frames[0])

    def _handle(self, ident: bytes, kind: bytes, body: bytes, frames: list[bytes]) -> None:
        hub, peers = self._hub, self._peers
        if kind == wire.DONE:
            peer = peers.get(ident.decode(errors="replace"))
            if peer is not None and peer.hello:
                peer.seen = self._clock.now()
                rows, busy_s = pickle.loads(body), None
                if type(rows) is tuple:  # (rows, busy_s); a bare list from an older worker
                    rows, busy_s = rows
                if len(frames) > 3:  # data too large to travel inside the header came as frames
                    big, value = iter(frames[3:]), wire.VALUE
                    rows = [(tid, ok, form, next(big)) if data is None and form != value else (tid, ok, form, data)
                            for tid, ok, form, data in rows]
                peer.answered += len(rows)
                hub.results_rows(peer.wid, rows, busy_s)
            else:  # from an id the pool already gave up on: counted as late, never unpickled
                hub.results_rows(ident.decode(errors="replace"), [(0, False, wire.PICKLED, b"")])
                self._send([ident, wire.REJOIN])
        elif kind == wire.BEAT and ident.endswith(wire.HB_SUFFIX):
            peer = peers.get(ident[: -len(wire.HB_SUFFIX)].decode(errors="replace"))
            if peer is not None:
                peer.seen = self._clock.now()
                if peer.hello:
                    rss, cpu = _json(body, [0, 0.0])
                    hub.heartbeat(peer.wid, rss=int(rss), cpu=float(cpu))
        elif kind == wire.HELLO:
            self._hello(ident, body)

    def _hello(self, ident: bytes, body: bytes, routed: bool = True) -> None:
        """A worker's HELLO: over ZeroMQ (``routed``), or a local worker's datagram (it connects later)."""
        pid, host, token = _json(body, [0, "?", ""])
        wid = ident.decode(errors="replace")
        peer = self._peers.get(wid)
        if peer is not None and not peer.remote:
            if token != peer.token.hex() or routed and peer.routed:
                log.warning("ignored a HELLO for local worker %s with a wrong token, or a second one", wid)
                return
            if routed:
                self._routed(peer)
            if not peer.hello:  # (a datagram HELLO read after the ZeroMQ one changes nothing)
                peer.hello = True
                peer.seen = self._clock.now()
                # Its pid from the HELLO (the token vouches for it) if it came before spawn() returned.
                self._hub.worker_ready(wid, pid=peer.pid or (pid if type(pid) is int else 0), host=str(host))
            return
        if not routed:
            return
        if peer is not None or token or self.listen is None:
            log.warning("ignored a HELLO from %r (unknown or duplicate worker)", wid)
            return
        peer = _Peer(wid, True, b"", self._clock.now())
        peer.pid, peer.hello = int(pid), True
        self._peers[wid] = peer
        if not self._hub.worker_joined(wid, pid=peer.pid, host=str(host)):
            del self._peers[wid]
            self._send([ident, wire.STOP])

    def _dispatch_locked(self) -> bool:
        """Send what the pool assigns, holding ``_sock_lock``; True if a message waits to be received
        (a send on the ROUTER may have consumed the ZMQ_FD edge that announced it)."""
        send, peers, inline_max = self._shared.send_locked, self._peers, wire.INLINE_MAX
        dgram_max = wire.REPLY_CHUNK
        used_router = False
        batches = self._hub.assign_rows()
        for wid, rows in batches:
            peer = peers.get(wid)
            if peer is None:
                continue  # reaped this round; the pool already requeued its window
            to_send = peer.ledger.to_send
            head: list[tuple[int, bytes, bytes, bytes | tuple | None, int]] = []
            out = [peer.ident, wire.TASKS, b""]
            last = b""  # the digest of the task before: the ledger's answer for a repeat is b"" (no change)
            for tid, digest, fn_bytes, args_bytes, bufs in rows:
                args: bytes | tuple | None = args_bytes
                if len(args_bytes) >= inline_max and isinstance(args_bytes, bytes):  # never an inline tuple
                    out.append(args_bytes)
                    args = None
                if bufs:
                    out.extend(bufs)
                if digest is not last:
                    fn_bytes, last = to_send(digest, fn_bytes), digest
                else:
                    fn_bytes = b""
                head.append((tid, digest, fn_bytes, args, len(bufs)))
            header = pickle.dumps(head, pickle.HIGHEST_PROTOCOL)
            # zero-copy past the header: ZeroMQ sends large buffers themselves, the caller's objects included
            if peer.task_path:  # a local worker: numbered, and a datagram if it can be (see the module docstring)
                # A batch sent while another is unanswered: the pool is busy, and a busy pool soon finds
                # the worker's socket full (a Unix datagram socket queues a few: net.unix.max_dgram_qlen,
                # 10 by default), so it has the worker connect over ZeroMQ now rather than keep that batch
                # waiting for the connection then.
                busy = peer.sent > peer.answered
                peer.sent += len(rows)
                peer.seq += 1
                seq = peer.seq.to_bytes(wire.SEQ_BYTES, "big")
                small = len(out) == 3 and len(header) <= dgram_max
                out[1:3] = [wire.SEQ_TASKS, seq, header]
                if not peer.routed:  # not connected over ZeroMQ yet: a datagram, or it waits
                    if not (small and self._shared.send_datagram_locked(seq + header, peer.task_path)):
                        self._hold_locked(peer, out)
                    elif busy and not peer.wanted:
                        self._want_router_locked(peer)
                elif send(out, 4, seq + header if small else b"", peer.task_path if small else ""):
                    used_router = True
            else:
                out[2] = header
                send(out)
                used_router = True
        return used_router and self._shared.readable_locked()

    def _send_local(self, peer: _Peer, frames: list[bytes], datagram: bytes = b"") -> None:
        """Send a control message to a local worker over the ROUTER; to one not connected over ZeroMQ,
        as ``datagram`` if there is one and nothing is kept for it (which would have to go first),
        else keep it until the worker connects."""
        with self._shared.lock:
            if not self._shared.open:
                return
            if not peer.routed:
                if not (datagram and not peer.held and self._shared.send_datagram_locked(datagram, peer.task_path)):
                    self._hold_locked(peer, frames)
                return
            self._shared.send_locked(frames)
            pending = self._shared.readable_locked()
        if pending:
            self._shared.kick_reader(self._wake_io)

    def _hold_locked(self, peer: _Peer, frames: list[bytes]) -> None:
        """Keep a message for a local worker not connected over ZeroMQ yet, and ask it to connect."""
        peer.held.append(frames)
        self._want_router_locked(peer)

    def _want_router_locked(self, peer: _Peer) -> None:
        """Have a local worker connect over ZeroMQ: bind the ROUTER if it is the first, and ask it."""
        if self._shared.sock is None:  # the first local worker to need the ROUTER
            self._bind_router_locked()
            self._post(("router",))
        peer.wanted = True
        self._ask_locked(peer)

    def _ask_locked(self, peer: _Peer) -> None:
        """Ask a local worker the pool wants connected over ZeroMQ to connect, unless asked already.

        A full socket refuses the datagram: the worker is running batches then, and each of its
        outcomes has this asked again (:meth:`_receive_replies`) until one finds room.
        """
        if not peer.asked and not peer.routed:
            peer.asked = self._shared.send_datagram_locked(wire.CONNECT_SEQ.to_bytes(wire.SEQ_BYTES, "big"),
                                                           peer.task_path)

    def _routed(self, peer: _Peer) -> None:
        """A local worker connected over ZeroMQ: send what was kept for it, in order."""
        with self._shared.lock:
            if not self._shared.open:
                return
            peer.routed = True
            held, peer.held = peer.held, []
            for frames in held:
                self._shared.send_locked(frames, 4)
            pending = bool(held) and self._shared.readable_locked()
        if pending:
            self._shared.kick_reader(self._wake_io)

    def _check_heartbeats(self) -> None:
        now = self._clock.now()
        for peer in list(self._peers.values()):
            limit = self.heartbeat_timeout_s if peer.hello else self.start_timeout_s
            if now - peer.seen > limit:
                what = f"no heartbeat for {limit}s" if peer.hello else f"did not connect within {limit}s"
                if peer.remote:
                    self._drop(peer, what)
                elif not peer.kill_reason:
                    log.warning("worker %s (pid %d): %s; killing it", peer.wid, peer.pid, what)
                    peer.kill_reason = what
                    self._signal(peer, signal.SIGKILL)
            elif peer.remote:
                self._send([peer.ident, wire.PING])

    def _drop(self, peer: _Peer, reason: str) -> None:
        if self._peers.pop(peer.wid, None) is None:
            return
        peer.exited.set()
        self._hub.worker_lost(peer.wid, reason)

    def _reap(self, peer: _Peer) -> None:
        fd = peer.pidfd if peer.pidfd >= 0 else peer.proc.sentinel
        self._poller.unregister(fd)
        del self._by_fd[fd]
        peer.proc.join(timeout=1)  # the process has exited; this only collects its status
        code = peer.proc.exitcode
        # None: someone else in this process (an os.wait() call) collected the status first.
        reason = exit_reason(code) if code is not None else "exited (status collected elsewhere)"
        if peer.kill_reason:
            reason = f"{peer.kill_reason}; {reason}"
        if peer.pidfd >= 0:
            os.close(peer.pidfd)
        if code is not None:
            peer.proc.close()
        self._peers.pop(peer.wid, None)
        self._by_token.pop(peer.token, None)
        try:
            os.unlink(peer.task_path)  # the socket file a dead worker leaves behind
        except OSError:
            pass  # it never bound it
        try:
            self._hub.worker_lost(peer.wid, reason)
        finally:
            peer.exited.set()

    def _close_all(self, timeout: float) -> None:
        """Stop every worker still here: remote ones are told to stop, local ones killed and reaped."""
        for peer in list(self._peers.values()):
            if peer.remote:
                self._send([peer.ident, wire.STOP])
                self._drop(peer, "pool closed")
            else:
                peer.kill_reason = peer.kill_reason or "pool closed"
                self._signal(peer, signal.SIGKILL)
        for peer in list(self._by_fd.values()):
            self._reap(peer)
        for peer in list(self._peers.values()):  # launched but never watched (a race with close)
            if peer.proc is not None:
                peer.proc.join(timeout)
            self._peers.pop(peer.wid, None)
            self._by_token.pop(peer.token, None)
            self._hub.worker_lost(peer.wid, "pool closed")
            peer.exited.set()


def _json(body: bytes, default: list) -> list:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return default
    return value if isinstance(value, list) and len(value) == len(default) else default
