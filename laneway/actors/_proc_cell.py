"""The parent side of process actors: a cell that stands in for the pykka cell, and the hosts behind it.

A :class:`ProcessCell` offers what :class:`~laneway.actors.ActorRef`, supervisors
and the actor system use of a thread cell (``deliver``, ``request_stop``,
``exit``, ``exited``...), so refs, lookup, supervision and restarts work
unchanged. Messages are pickled in the sender's thread (an unpicklable one is a
:class:`~laneway.errors.SerializationError` there), numbered and sent under the
cell's lock, so each sender's messages arrive in order.

The cell remembers every ask until its reply and every tell until the child
acknowledges it, so when the actor ends each message is accounted for: asks in
flight fail (:class:`~laneway.errors.ActorProcessDied`, naming pid and signal,
when the process died) and tells not yet handled go to the dead letters.

:class:`ProcessHosts` (one per actor system) starts host processes (``spawn``,
from one long-lived thread, since ``PR_SET_PDEATHSIG`` follows the forking
thread), and one watcher thread reads every child's replies and polls a pidfd
per host, so a host's death is seen at once.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import shutil
import socket
import struct
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

import zmq

from laneway.actors import _proc_wire as w
from laneway.actors._actor import Exit, ExitKind, announce_exit, publish_dead_letter, _Ask
from laneway.actors._proc_host import HostConfig, host_entry
from laneway.core import Future
from laneway.errors import ActorCrashed, AskTimeout, ActorDead, ActorProcessDied, ActorStartError, SerializationError, SystemShutdown

if TYPE_CHECKING:
    from laneway.actors._actor import ActorRef

log = logging.getLogger(__name__)

_CTX = multiprocessing.get_context("spawn")

#: Seconds a host process may take to come up and start an actor.
START_TIMEOUT_S = 60.0


_SPARE = object()  # a request to the spawner thread: start a spare host
_header = struct.Struct(">cQ").pack  # kind, seq
_dumps = pickle.dumps


class CellHost(Protocol):
    """What a cell needs of the process it runs in: a local :class:`_Host` or a remote host."""

    pid: int

    def send_control(self, *frames: bytes) -> None: ...

    def kill(self) -> None: ...

    def actor_ended(self, cell: ProcessCell) -> None: ...


#: A thread blocked on a direct reply looks this often whether the actor ended or the time ran out.
DIRECT_WAKE_MS = 50

_seq_bytes = struct.Struct(">Q").pack
_monotonic = time.monotonic
_PROTOCOL, _ASK_DIRECT, _OK, _BIG_REPLY = w.PROTOCOL, w.ASK_DIRECT, w.OK, w.BIG_REPLY
_DGRAM_BUF = w.DGRAM_MAX + 64

#: Replies shorter than this are unpickled from a copy, longer ones from a view of the frame.
_COPY_BELOW = 4096


class _DirectAsk:
    """What the cell records for a direct ask: where an end of the actor leaves its error for the asker."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def settle(self, value: Any = None, error: BaseException | None = None) -> None:
        self.error = error if error is not None else ActorDead("the actor ended before replying")


def _recv_timeout(sock: socket.socket, ms: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", ms // 1000, (ms % 1000) * 1000))


class _ReplySocket:
    """One thread's sockets for the replies to its blocking asks; closed when the thread ends (its thread-local goes).

    A reply comes as one datagram on a Unix socket of the thread's own: the
    actor's thread sends it and this thread receives it with one system call
    each, no ZeroMQ I/O thread in between on either side. A reply too big for a
    datagram (:data:`~laneway.actors._proc_wire.DGRAM_MAX`) comes through a
    ZeroMQ PULL socket instead, announced by a small datagram. Waits are blocking
    receives with a timeout: no poller per ask.
    """

    def __init__(self, ctx: zmq.Context, path: str) -> None:
        self.path = path
        self.dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dgram.bind(path)
        # The kernel's receive timeout, not Python's: a blocking recv is then one system call (a
        # Python timeout would poll first), and an expired wait raises BlockingIOError.
        _recv_timeout(self.dgram, DIRECT_WAKE_MS)
        self.recv = self.dgram.recv
        self.wake_ms = DIRECT_WAKE_MS
        self.big: zmq.Socket = ctx.socket(zmq.PULL)
        self.big.setsockopt(zmq.LINGER, 0)
        self.big.setsockopt(zmq.RCVTIMEO, DIRECT_WAKE_MS)
        self.big.bind(w.big_reply_endpoint(path.encode()))
        raw = path.encode()
        self.header = bytes([len(raw)]) + raw

    def wake_within(self, seconds: float | None) -> None:
        """Let the next receive wait at most ``seconds`` (None: the usual :data:`DIRECT_WAKE_MS`)."""
        ms = DIRECT_WAKE_MS if seconds is None else max(1, min(DIRECT_WAKE_MS, int(seconds * 1000) + 1))
        if ms != self.wake_ms:
            _recv_timeout(self.dgram, ms)
            self.big.setsockopt(zmq.RCVTIMEO, ms)
            self.wake_ms = ms

    def __del__(self) -> None:
        try:
            self.dgram.close()
            os.unlink(self.path)
            self.big.close(linger=0)
        except Exception:
            pass


class ProcessCell:
    """One incarnation of a process actor, seen from the parent."""

    host: Any  # a CellHost; a local _Host also gives ask_direct its reply sockets

    #: Pickle messages with cloudpickle, so classes of the program's ``__main__`` travel by
    #: value (a remote host does not import it; a local host does, as multiprocessing's spawn).
    by_value = False

    def __init__(self, ref: ActorRef, host: CellHost, key: bytes, on_exit: Callable[[Any, Exit], None],
                 seq_base: int = 0) -> None:
        self.lw_ref = ref
        self.host = host
        self.key = key
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._sock: zmq.Socket | None = None
        # Numbers of different cells never meet, so a thread's socket never takes a late
        # reply from an earlier incarnation for the reply to its current ask.
        self._seq = seq_base
        self._asks: dict[int, tuple[Future[Any] | _DirectAsk, Any]] = {}  # the waiter and the message
        self._tells: collections.deque[tuple[int, Any]] = collections.deque()
        self._closed = False
        self.exit: Exit | None = None
        self.started = False
        self.start_error: BaseException | None = None
        self.settled = threading.Event()
        self.exited = threading.Event()
        self.actor_stopped = threading.Event()  # named as pykka's, which ActorRef.is_alive reads

    @property
    def pid(self) -> int:
        return self.host.pid

    # sending (any thread) ----------------------------------------------------

    def deliver(self, message: Any) -> None:
        # The hot path of tells: keep it to a pickle, a lock and a send.
        ask = type(message) is _Ask
        body = message.message if ask else message
        try:
            if self.by_value:
                raise TypeError  # see by_value
            data = _dumps(body, w.PROTOCOL)
        except Exception:  # not for the stdlib pickler: cloudpickle, or a SerializationError
            dump = w.dumps_by_value if self.by_value else w.dumps
            data = dump(body, f"a message to {self.lw_ref.name} ({type(body).__qualname__})")
        with self._lock:
            if self._closed:
                raise ActorDead(f"{self.lw_ref.name} is not running ({self._why_dead()})")
            self._seq = seq = self._seq + 1
            if ask:
                self._asks[seq] = (message.future, body)
                self._sock.send(_header(w.ASK, seq) + data)  # type: ignore[union-attr]
            else:
                self._tells.append((seq, body))
                self._sock.send(_header(w.TELL, seq) + data)  # type: ignore[union-attr]

    def ask_direct(self, message: Any, timeout: float) -> Any:
        """A blocking ask whose reply comes to this thread's own socket (no hand-over between threads).

        The ask is also recorded as usual, so if the actor ends first the cell
        fails it (the wait below looks at that every :data:`DIRECT_WAKE_MS`).
        """
        reply = self.host.hosts.reply_socket()
        try:
            data = _dumps(message, _PROTOCOL)
        except Exception:
            data = w.dumps(message, f"a message to {self.lw_ref.name} ({type(message).__qualname__})")
        waiting = _DirectAsk()
        with self._lock:
            if self._closed:
                raise ActorDead(f"{self.lw_ref.name} is not running ({self._why_dead()})")
            self._seq = seq = self._seq + 1
            self._asks[seq] = (waiting, message)
            self._sock.send(_header(_ASK_DIRECT, seq) + reply.header + data)  # type: ignore[union-attr]
        deadline = _monotonic() + timeout
        if timeout * 1000 < DIRECT_WAKE_MS:
            reply.wake_within(timeout)
        mine = _seq_bytes(seq)
        recv = reply.recv
        big = False  # the datagram said the reply comes through ZeroMQ
        while True:
            try:
                if not big:
                    body = recv(_DGRAM_BUF)
                    if body[2:10] != mine:
                        continue  # the late reply to an earlier ask of this thread that timed out
                    if body[:1] != _BIG_REPLY:
                        break
                    big = True
                body = reply.big.recv()
                if body[2:10] == mine:  # else the big late reply to an earlier ask
                    break
            except (BlockingIOError, zmq.Again):  # no reply yet: did the actor end, or the time run out?
                if waiting.error is not None:
                    raise waiting.error
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    with self._lock:
                        self._asks.pop(seq, None)
                    if waiting.error is not None:
                        raise waiting.error
                    raise AskTimeout(f"no reply from {self.lw_ref.name} to {type(message).__qualname__} within {timeout}s")
                reply.wake_within(remaining)
        if reply.wake_ms != DIRECT_WAKE_MS:
            reply.wake_within(None)
        # dict.pop is atomic, and _ended fails only the asks it popped itself: no lock for this one.
        entry = self._asks.pop(seq, None)
        if self._tells:  # empty: every tell sent before this ask was acknowledged already
            with self._lock:
                tells = self._tells
                while tells and tells[0][0] <= seq:  # a reply acknowledges every message before it
                    tells.popleft()
        if entry is None:  # the cell ended first and failed the ask
            raise waiting.error or ActorDead(f"{self.lw_ref.name} ended before replying")
        # A small reply is copied out (cheaper than a memoryview); a big one is read in place.
        payload = body[10:] if len(body) < _COPY_BELOW else memoryview(body)[10:]
        if body[1:2] == _OK:
            try:
                return pickle.loads(payload)
            except Exception as exc:
                raise SerializationError(f"the reply of {self.lw_ref.name} cannot be unpickled here: {exc!r}") from exc
        raise self._reply_error(body[1:2], memoryview(payload), message)

    def _reply_error(self, status: bytes, data: memoryview, msg: Any) -> BaseException:
        """The error an ask gets for a REFUSED or CRASHED reply."""
        if status == w.REFUSED:
            return w.load_error(data)
        cause = w.load_error(data)
        err = ActorCrashed(f"{self.lw_ref.name} crashed handling {type(msg).__qualname__}: {cause!r}", cause)
        err.__cause__ = cause
        return err

    def request_stop(self, exit: Exit) -> None:
        if not self.exited.is_set():
            self.host.send_control(w.STOP, self.key, exit.kind.value.encode())

    def kill(self) -> None:
        """End the host process now (a stop that did not finish in time)."""
        self.host.kill()

    def _drain(self) -> None:
        """Nothing to do: the cell accounts for every message itself when it ends."""

    def _why_dead(self) -> str:
        exit = self.exit
        if exit is None:
            return "stopping"
        return f"crashed: {exit.error!r}" if exit.error is not None else exit.kind.value

    # frames from the child (watcher thread) -----------------------------------

    def on_frame(self, body: bytes) -> None:
        kind, status, seq = body[:1], body[1:2], int.from_bytes(body[2:10], "big")
        if kind == w.REPLY:
            with self._lock:
                entry = self._asks.pop(seq, None)
                tells = self._tells
                while tells and tells[0][0] <= seq:  # a reply acknowledges every message before it
                    tells.popleft()
            if entry is None:
                return
            fut, msg = entry
            data = memoryview(body)[10:]
            if status == w.OK:
                try:
                    fut.settle(pickle.loads(data))
                except Exception as exc:
                    fut.settle(error=SerializationError(f"the reply of {self.lw_ref.name} cannot be unpickled here: {exc!r}"))
            else:
                fut.settle(error=self._reply_error(status, data, msg))
        elif kind == w.ACK:
            self._acked(seq)
        elif kind == w.LETTER:
            with self._lock:
                msg = next((m for s, m in self._tells if s == seq), None)
            self._dead_letter(msg, body[10:].decode())
        elif kind == w.STATE:
            self.lw_ref.orchestrator._save_actor_state(self.lw_ref.name, body[10:])
        elif kind == w.STARTED:
            self.started = True
            self.settled.set()
        elif kind == w.START_FAILED:
            self.start_error = w.load_error(body[10:])
            self._ended(Exit(ExitKind.CRASH, self.start_error), 0, None)
        elif kind == w.EXITED:
            error = w.load_error(body[10:]) if len(body) > 10 else None
            self._ended(Exit(ExitKind(w.EXIT_KINDS[status]), error), seq, None)

    def _acked(self, seq: int) -> None:
        with self._lock:
            tells = self._tells
            while tells and tells[0][0] <= seq:
                tells.popleft()

    def host_died(self, reason: str) -> None:
        err = ActorProcessDied(f"{self.lw_ref.name}: its process (pid {self.pid}) {reason}", pid=self.pid, reason=reason)
        self._ended(Exit(ExitKind.CRASH, err), 0, err)

    def _ended(self, exit: Exit, last: int, died: ActorProcessDied | None) -> None:
        with self._lock:
            if self._closed and self.exited.is_set():
                return
            self._closed = True
            if self.exit is None:
                self.exit = exit
            self.actor_stopped.set()
            # A direct ask the actor handled has its reply on the way to the asking thread
            # (not through the reply socket this exit came by): that thread settles it.
            # Popped one by one: a direct asker takes its own ask out without the lock.
            asks = [(s, e) for s, e in ((s, self._asks.pop(s, None)) for s in sorted(self._asks)
                                        if died is not None or s > last) if e is not None]
            tells = [m for s, m in self._tells if s > last]
            self._tells.clear()
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close(linger=0)
        self.settled.set()
        reason = self._why_dead()
        for _, (fut, _body) in asks:
            if died is not None:
                fut.settle(error=ActorProcessDied(str(died), pid=died.pid, reason=died.reason))
            else:
                fut.settle(error=ActorDead(f"{self.lw_ref.name} ended ({reason}) before handling the message"))
        for body in tells:
            self._dead_letter(body, reason)
        self.host.actor_ended(self)
        # The supervisor hears of the exit before anyone waiting on `exited` wakes, so
        # whoever stopped the actor then asks its supervisor gets an answer that knows.
        announce_exit(self.lw_ref, self.exit, self.started, lambda e: self._on_exit(self, e))
        self.exited.set()

    def _dead_letter(self, body: Any, reason: str) -> None:
        publish_dead_letter(self.lw_ref, body, reason)

    def connect(self, ctx: zmq.Context, endpoint: str) -> None:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, 0)  # the cell's own records bound what is in flight
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 5)  # the child binds in a moment: retry soon
        sock.connect(endpoint)
        self._sock = sock


class _Host:
    """One host process and the cells it runs."""

    def __init__(self, hosts: ProcessHosts, number: int, group: str | None) -> None:
        self.hosts = hosts
        self.number = number
        self.group = group
        self.control = f"ipc://{hosts.dir}/h{number}"
        self.proc: Any = None
        self.pid = 0
        self.pidfd = -1
        self.cells: set[ProcessCell] = set()
        self.dead = False
        self.ready = threading.Event()  # set once started (or failed to start)
        self._lock = threading.Lock()
        self._ctl: zmq.Socket | None = None

    def launch_args(self) -> tuple[Any, tuple, str]:
        cfg = HostConfig(self.control, self.hosts.replies, os.getpid())
        return host_entry, (cfg,), f"laneway-actors-{self.group or self.number}"

    def attach(self, proc: Any) -> None:
        """Take the started process: watch it, connect its control socket, mark the host ready."""
        self.proc = proc
        self.pid = proc.pid
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self.pidfd = -1  # multiprocessing's sentinel pipe also turns readable on exit
        ctl = self.hosts.ctx.socket(zmq.DEALER)
        ctl.setsockopt(zmq.LINGER, 0)
        ctl.setsockopt(zmq.RECONNECT_IVL, 10)  # connect before the host binds: retry soon
        ctl.connect(self.control)
        self._ctl = ctl

    @property
    def fd(self) -> int:
        return self.pidfd if self.pidfd >= 0 else self.proc.sentinel

    def send_control(self, *frames: bytes) -> None:
        with self._lock:
            if self._ctl is not None and not self.dead:
                self._ctl.send_multipart(frames)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass

    def actor_ended(self, cell: ProcessCell) -> None:
        with self.hosts.lock:
            self.cells.discard(cell)
            idle = not self.cells and self.group is None
        if idle:
            self.send_control(w.QUIT)

    def reaped(self) -> str:
        self.proc.join(timeout=5)
        with self._lock:
            self.dead = True
            ctl, self._ctl = self._ctl, None
        if ctl is not None:
            ctl.close(linger=0)
        if self.pidfd >= 0:
            os.close(self.pidfd)
        return w.describe_exit(self.proc.exitcode)


class ProcessHosts:
    """Host processes for one actor system's process actors, their replies and their deaths.

    Args:
        name: the system's name (thread and process names).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self._gone = threading.Condition(self.lock)  # notified as the watcher reaps hosts
        self.ctx = zmq.Context()
        self.dir = tempfile.mkdtemp(prefix="laneway-actors-")  # mode 0700: only this user can connect
        self.replies = f"ipc://{self.dir}/replies"
        self._pull = self.ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.RCVHWM, 0)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.bind(self.replies)
        self._wake_r, self._wake_w = os.pipe()
        self._hosts: dict[int, _Host] = {}
        self._groups: dict[str, _Host] = {}
        self._spare: _Host | None = None
        self._local = threading.local()
        self._reaping = 0  # hosts out of the table whose reaping is under way
        self._cells: dict[bytes, ProcessCell] = {}
        self._numbers = itertools.count(1)
        self._keys = itertools.count(1)
        self._closed = False
        self._spawns: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._spawner = threading.Thread(target=self._spawn_loop, name=f"laneway-actor-spawner:{name}", daemon=True)
        self._spawner.start()
        self._watcher = threading.Thread(target=self._watch, name=f"laneway-actor-watcher:{name}", daemon=True)
        self._watcher.start()

    def reply_socket(self) -> _ReplySocket:
        """This thread's socket for the replies to its blocking asks (made on first use)."""
        mine = getattr(self._local, "reply", None)
        if mine is None:
            with self.lock:
                if self._closed:
                    raise SystemShutdown(f"process hosts of {self.name} are closed")
                number = next(self._numbers)
            mine = self._local.reply = _ReplySocket(self.ctx, f"{self.dir}/t{number}")
        return mine

    # starting ------------------------------------------------------------------

    def start_cell(self, ref: ActorRef, factory: Any, args: tuple, kwargs: dict, on_exit: Callable[[Any, Exit], None],
                   group: str | None, state: bytes | None) -> ProcessCell:
        """Start one incarnation of ``ref``'s actor in a host process and wait until its ``on_start`` finished.

        Raises:
            ActorStartError: the spec cannot be pickled, the host did not come up, or the actor failed to start.
        """
        number = next(self._keys)
        key = f"{ref.name}#{number}".encode()
        endpoint = f"ipc://{self.dir}/a{key.decode().replace('/', '.')}"
        try:
            spec = w.dumps((factory, args, kwargs, ref.name, endpoint, state), f"the actor spec of {ref.name}")
        except Exception as exc:
            raise ActorStartError(f"{ref.name}: {exc}") from exc
        host = self._host_for(group)
        cell = ProcessCell(ref, host, key, on_exit, seq_base=number << 32)
        with self.lock:
            if host.dead:
                raise ActorStartError(f"{ref.name}: its host process (pid {host.pid}) is gone")
            host.cells.add(cell)
            self._cells[key] = cell
        # Connected before the child binds: what senders tell it meanwhile queues in order.
        cell.connect(self.ctx, endpoint)
        ref._cell = cell
        ref.incarnation += 1
        host.send_control(w.START, key, spec)
        if not cell.settled.wait(START_TIMEOUT_S):
            host.kill()
            cell.settled.wait(10)
        if not cell.started:
            cell.exited.wait(10)
            cause = cell.start_error or (cell.exit.error if cell.exit is not None else None)
            raise ActorStartError(f"{ref.name} failed to start in process {host.pid}: {cause!r}") from cause
        ref.orchestrator.events.publish("actor.started", ref.name, pid=host.pid)
        return cell

    def _host_for(self, group: str | None) -> _Host:
        with self.lock:
            if self._closed:
                raise SystemShutdown(f"process hosts of {self.name} are closed")
            found = self._groups.get(group) if group is not None else self._spare
            fresh = found is None or found.dead
            if found is None or found.dead:
                host = _Host(self, next(self._numbers), group)
                if group is not None:
                    self._groups[group] = host
            else:
                host = found
                if group is None:
                    self._spare = None
        if group is None:
            self._spawns.put(_SPARE)  # a warm host for the next actor (or restart) of its own
        if fresh:
            target, args, name = host.launch_args()
            try:
                self._launch(host, self.spawn(target, args, name))
            except Exception as exc:
                with self.lock:
                    host.dead = True
                host.ready.set()
                raise ActorStartError(f"could not start an actor host process: {exc!r}") from exc
        if not host.ready.wait(START_TIMEOUT_S) or host.dead:
            raise ActorStartError(f"the actor host process {host.pid or '(not started)'} is not available")
        return host

    def _launch(self, host: _Host, proc: Any) -> None:
        host.attach(proc)
        with self.lock:
            self._hosts[host.fd] = host
        host.ready.set()
        os.write(self._wake_w, b"h")

    def spawn(self, target: Any, args: tuple, name: str) -> Any:
        done: Future[Any] = Future()
        self._spawns.put((target, args, name, done))
        return done.get(START_TIMEOUT_S)

    def _spawn_loop(self) -> None:
        while True:
            item = self._spawns.get()
            if item is None:
                return
            if item is _SPARE:
                self._make_spare()
                continue
            target, args, name, done = item
            try:
                proc = _CTX.Process(target=target, args=args, name=name, daemon=True)
                proc.start()
            except BaseException as exc:
                done.settle(error=exc)
            else:
                done.settle(proc)

    def _make_spare(self) -> None:
        # Starting an interpreter takes a good part of a second; a host started ahead
        # makes the next spawn, and above all the next restart, take milliseconds.
        with self.lock:
            if self._closed or (self._spare is not None and not self._spare.dead):
                return
            host = self._spare = _Host(self, next(self._numbers), None)
        target, args, name = host.launch_args()
        try:
            proc = _CTX.Process(target=target, args=args, name=name, daemon=True)
            proc.start()
            self._launch(host, proc)
        except Exception:
            log.exception("could not start a spare actor host process")
            with self.lock:
                host.dead = True
                if self._spare is host:
                    self._spare = None
            host.ready.set()

    # watching --------------------------------------------------------------------

    def _watch(self) -> None:
        poller = zmq.Poller()
        poller.register(self._pull, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        watched: set[int] = set()
        while True:
            with self.lock:
                current = dict(self._hosts)
                closed = self._closed and not current
            for fd in current.keys() - watched:
                poller.register(fd, zmq.POLLIN)
                watched.add(fd)
            if closed:
                return
            ready = dict(poller.poll(500))
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if self._pull in ready:
                self._read_replies()
            for fd in [fd for fd in watched if fd in ready]:
                self._read_replies()  # what the host said before it died comes first
                poller.unregister(fd)
                watched.discard(fd)
                with self.lock:  # dead first, so start_cell puts no cell in it after we looked
                    # Out of the table before reaped() closes the pidfd: a new host may get its number.
                    host = self._hosts.pop(fd)
                    host.dead = True
                    cells = list(host.cells)
                    self._reaping += 1
                reason = host.reaped()
                with self.lock:
                    self._reaping -= 1
                    self._gone.notify_all()
                for cell in cells:
                    try:
                        cell.host_died(reason)
                    except Exception:
                        log.exception("reporting the death of %s failed", cell.lw_ref.name)

    def _read_replies(self) -> None:
        pull = self._pull
        while True:
            try:
                frames = pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            cell = self._cells.get(frames[0])
            if cell is None:
                continue
            body = frames[1]
            if body[:1] in (w.EXITED, w.START_FAILED):
                self._cells.pop(frames[0], None)
            try:
                cell.on_frame(body)
            except Exception:
                log.exception("handling a frame from %s failed", cell.lw_ref.name)

    # closing ---------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Quit every host (killing those that do not go within ``timeout``), then the threads."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
        self._spawns.put(None)  # first, so no spare starts behind our back
        self._spawner.join(5)
        with self.lock:
            hosts = list(self._hosts.values())
        for host in hosts:
            host.send_control(w.QUIT)
        with self.lock:  # the watcher reaps each host as its pidfd turns readable
            if not self._gone.wait_for(lambda: not self._hosts and not self._reaping, timeout):
                for host in self._hosts.values():
                    log.error("actor host process %d did not quit within %.1fs; killing it", host.pid, timeout)
                    host.kill()
                self._gone.wait_for(lambda: not self._hosts and not self._reaping, 5.0)
        os.write(self._wake_w, b"c")
        self._watcher.join(timeout + 5)
        self._pull.close(linger=0)
        self.ctx.destroy(linger=0)
        os.close(self._wake_r)
        os.close(self._wake_w)
        shutil.rmtree(self.dir, ignore_errors=True)
