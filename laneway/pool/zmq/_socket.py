"""The pool's sockets, shared by the I/O thread, submitting threads and one waiting caller.

Besides the ROUTER, which carries everything to and from remote workers and what
does not fit a datagram for local ones, two Unix datagram sockets: one that sends
task batches to local workers' own sockets (under :attr:`SharedRouter.lock`, like
the ROUTER), and the reply socket, on which local workers' outcomes arrive (see
:mod:`laneway.worker.wire`). Whoever holds the reader role (below) reads both the
ROUTER and the reply socket; the reply socket needs no lock of its own, since only
the reader receives from it, and its readiness is level-triggered. A pool whose
workers are all local has no ROUTER (nor ZeroMQ imported) until something has to go
that way (:meth:`SharedRouter.attach_locked`; see the backend's docstring).

ZeroMQ sockets are not thread-safe, so every use of the socket happens under
:attr:`SharedRouter.lock`, and nobody polls the socket itself: the I/O thread polls
its ``ZMQ_FD``, a plain file descriptor. ``ZMQ_FD`` is edge-triggered: any operation
on the socket may consume the edge that announced an arriving message, so whoever
used the socket asks :meth:`SharedRouter.readable_locked` afterwards and, if a message
waits, makes sure the current reader looks (:meth:`SharedRouter.kick_reader`).

Reading (receiving *and* handling, so outcomes are reported one batch at a time, in
the order they arrived) is a role, :attr:`SharedRouter.reader`, held briefly by the
I/O thread in each round, or for a whole wait by one caller blocked on a task's
future (leader/follower): that caller reads the socket itself, settling every
future it receives on the way, and the result it waits for reaches it without a
hop through the I/O thread. While a caller reads, the I/O thread stops polling
``ZMQ_FD`` (:meth:`SharedRouter.io_may_read`) and keeps watching workers and commands;
it takes the socket back within :data:`IO_RECHECK_S` of the caller leaving (at once
if the caller left messages behind), so that callers waiting one after the other
(the sequential round trip) do not wake it twice per task. A reading caller looks at
its future at least every :data:`WAITER_SLICE_S`, since a future can also be settled
elsewhere (a worker died, the pool closed), and it never reads past its deadline.
A reading caller receives from the ROUTER only when its ``ZMQ_FD`` or a kick says a
message may wait (and once as it starts), and from the reply socket only when poll
says a datagram waits: a lone round trip then costs it one poll and one receive.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

if TYPE_CHECKING:
    import zmq

#: A caller reading the socket while it waits checks its future at least this often.
WAITER_SLICE_S = 0.02
#: While a caller reads, the I/O thread checks this often whether it left (and takes the socket back).
IO_RECHECK_S = 0.005


class SharedRouter:
    """The ROUTER socket with its lock, its ``ZMQ_FD``, the reply socket and the reader role (see the module docstring).

    Example:
        >>> import zmq
        >>> ctx = zmq.Context()
        >>> shared = SharedRouter(ctx.socket(zmq.ROUTER))
        >>> with shared.lock:
        ...     shared.readable_locked()
        False
        >>> shared.close()
        >>> ctx.term()
    """

    def __init__(self, sock: zmq.Socket | None, replies: socket.socket | None = None) -> None:
        #: The ROUTER, or None until :meth:`attach_locked`: a pool of local workers only binds it
        #: (and imports ZeroMQ) when something has to go that way (see the backend's docstring).
        self.sock: zmq.Socket | None = None
        self.fd = -1  # the ROUTER's ZMQ_FD
        #: Local workers' outcomes (non-blocking; closed with the ROUTER), or None.
        self.replies = replies
        self.reply_fd = replies.fileno() if replies is not None else -1
        # task batches to local workers' sockets (non-blocking: a full socket is the ROUTER's turn)
        self._tasks_out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.lock = threading.Lock()  # every use of the socket, from any thread
        self.open = True  # under lock: False once the I/O thread closed the socket
        self.reader = threading.Lock()  # whoever receives and handles messages holds it
        self._flags = threading.Lock()  # guards the two flags below
        self._waiter_reads = False  # a waiting caller holds the reader role
        self._io_yielded = False  # the I/O thread stopped polling fd until the caller leaves
        self._waiter_efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._waiter_poll = select.poll()
        self._waiter_poll.register(self._waiter_efd, select.POLLIN)
        if replies is not None:
            self._waiter_poll.register(self.reply_fd, select.POLLIN)
        if sock is not None:
            self.attach_locked(sock)

    def attach_locked(self, sock: zmq.Socket) -> None:
        """Start using ``sock`` as the ROUTER (holding :attr:`lock`, or before other threads use this object).

        A caller reading the sockets polls its ``ZMQ_FD`` from its next slice at the latest; the
        I/O thread is told by the backend.
        """
        import zmq

        # The data path calls pyzmq's compiled socket methods with int flags: its Python layer
        # (recv_multipart, enum flags) cost as much per message as the rest of the round trip.
        raw = zmq.backend.Socket
        self._send: Callable[..., Any] = raw.send
        self._recv: Callable[..., Any] = raw.recv
        self._get: Callable[..., Any] = raw.get
        self._sndmore, self._rcvmore, self._noblock = int(zmq.SNDMORE), int(zmq.RCVMORE), int(zmq.NOBLOCK)
        self._events, self._pollin = int(zmq.EVENTS), int(zmq.POLLIN)
        self.fd = cast(int, sock.getsockopt(zmq.FD))
        self.sock = sock
        self._waiter_poll.register(self.fd, select.POLLIN)

    # --- under lock ------------------------------------------------------------------

    def readable_locked(self) -> bool:
        """A message waits (reading ZMQ_EVENTS also re-arms the edge of ZMQ_FD); False before there is a ROUTER."""
        sock = self.sock
        return sock is not None and bool(cast(int, self._get(sock, self._events)) & self._pollin)

    def recv_locked(self) -> list[bytes]:
        """One whole multipart message; only after :meth:`readable_locked` said one waits."""
        sock, recv, noblock = self.sock, self._recv, self._noblock
        frames = [recv(sock, noblock)]
        while self._get(sock, self._rcvmore):
            frames.append(recv(sock, noblock))
        return frames

    def send_locked(self, frames: Sequence[bytes], zero_copy_from: int = 3, datagram: bytes = b"",
                    path: str = "") -> bool:
        """Send one message to a worker; True if it went over the ROUTER (and may have consumed its edge).

        With ``path``, ``datagram`` goes to that Unix socket (a local worker's) instead,
        unless the socket is full or gone; otherwise ``frames`` go over the ROUTER, those
        from ``zero_copy_from`` on without a copy (large buffers).
        """
        if path:
            try:
                self._tasks_out.sendto(datagram, path)
                return False
            except OSError:  # full (the worker is busy) or gone (its pidfd says so soon): the ROUTER takes it
                pass
        sock, last, send, more = self.sock, len(frames) - 1, self._send, self._sndmore
        for i, frame in enumerate(frames):
            if i < zero_copy_from:
                send(sock, frame, more if i < last else 0)
            else:
                send(sock, frame, more if i < last else 0, copy=False)
        return True

    def send_datagram_locked(self, datagram: bytes, path: str) -> bool:
        """Send ``datagram`` to a local worker's Unix socket; False if it is full or gone (nothing sent)."""
        try:
            self._tasks_out.sendto(datagram, path)
            return True
        except OSError:
            return False

    # --- any thread ----------------------------------------------------------------------

    def send(self, frames: Sequence[bytes]) -> bool:
        """Send a small message; True if a message waits to be received afterwards."""
        with self.lock:
            if not self.open:
                return False
            self.send_locked(frames)
            return self.readable_locked()

    def kick_reader(self, wake_io: Callable[[], None]) -> None:
        """A message waits that no edge will announce again: wake whoever reads now."""
        if self._waiter_reads:
            try:
                os.eventfd_write(self._waiter_efd, 1)
            except OSError:
                pass  # closed: the pool is closing, and the caller leaves on its own
        else:
            # Also when a caller starts reading right now: it receives before it first waits.
            wake_io()

    def close(self) -> None:
        """Close the socket (the I/O thread, as it ends) and the caller's wake-up descriptor."""
        with self.lock:
            if not self.open:
                return
            self.open = False
            if self.sock is not None:
                self.sock.close(linger=0)
            self._tasks_out.close()
        with self.reader:  # a reading caller sees ``open`` False within WAITER_SLICE_S and leaves
            os.close(self._waiter_efd)
            if self.replies is not None:
                self.replies.close()

    # --- the reader role -------------------------------------------------------------

    def io_may_read(self) -> bool:
        """The I/O thread, holding ``reader``? No: a caller reads; True means look again at once.

        Returns False when the I/O thread should leave the socket alone (a caller reads);
        it then stops polling :attr:`fd` (``io_yielded``) until that caller resumes it.
        """
        with self._flags:
            if self._waiter_reads:
                self._io_yielded = True
                return False
        return True

    def take_back(self) -> bool:
        """The I/O thread, told to resume: True if it had yielded and no caller reads now (poll fd again)."""
        with self._flags:
            if self._io_yielded and not self._waiter_reads:
                self._io_yielded = False
                return True
            return False

    @property
    def io_yielded(self) -> bool:
        return self._io_yielded

    def serve_waiter(self, done: Callable[[], bool], deadline: float | None, receive: Callable[[bool, bool], bool],
                     resume: Callable[[], None]) -> None:
        """Read the sockets on the calling thread until ``done()`` or ``deadline`` (monotonic), if nobody else reads.

        ``receive(router, replies)`` receives and handles what waits on the ROUTER and/or the
        reply socket (True: more may wait); ``resume()`` gives the sockets back to the I/O
        thread. Returns at once if another thread reads.
        """
        if not self.reader.acquire(blocking=False):
            return
        more = False
        try:
            with self._flags:
                self._waiter_reads = True
            poll, efd, reply_fd = self._waiter_poll.poll, self._waiter_efd, self.reply_fd
            # First the ROUTER: a message whose edge another thread consumed before this one read
            # waits there unannounced. Datagrams need no such look: poll reports them as long as they wait.
            router, replies = True, False
            while self.open:
                more = receive(router, replies)
                if done():
                    return
                wait_s = WAITER_SLICE_S
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    wait_s = min(wait_s, left)
                if more:
                    router = replies = True
                    continue
                router = replies = False
                for fd, _ in poll(max(1, int(wait_s * 1000))):
                    if fd == reply_fd:
                        replies = True
                        continue
                    router = True
                    if fd == efd:
                        try:
                            os.eventfd_read(efd)
                        except BlockingIOError:
                            pass
        finally:
            with self._flags:
                self._waiter_reads = False
            self.reader.release()
            if more:  # messages left behind: the I/O thread takes over now rather than at its next check
                resume()
