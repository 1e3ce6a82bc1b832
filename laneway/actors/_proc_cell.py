"""The parent side of process actors: a cell that stands in for the pykka cell, and the asker's reply sockets.

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

The host processes behind the cells are :mod:`laneway.actors._proc_hosts`'s.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

import zmq

from laneway.actors import _proc_wire as w
from laneway.actors._actor import Exit, ExitKind, announce_exit, publish_dead_letter, why_dead, _Ask
from laneway.core import Future
from laneway.errors import ActorCrashed, AskTimeout, ActorDead, ActorProcessDied, SerializationError

if TYPE_CHECKING:
    from laneway.actors._actor import ActorRef

log = logging.getLogger(__name__)

#: Seconds a host process may take to come up and start an actor.
START_TIMEOUT_S = 60.0


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


class ReplySocket:
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

    #: The actor has ``save_state`` (set by the host that starts the cell): its asks take the
    #: cell's own channel (see :meth:`ask_direct`).
    saves_state = False

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

        Not for an actor that saves its state: the state it saved after the message travels
        the cell's own channel, and there a reply comes after it, so by the time the ask
        returns the parent has kept that state. A direct reply could overtake it, and an actor
        killed right after replying would restart from the state before the message it answered.
        """
        if self.saves_state:
            return self.lw_ref.ask_future(message).get(timeout)
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

    def _why_dead(self) -> str:
        return why_dead(self.exit, not_yet="stopping")

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
