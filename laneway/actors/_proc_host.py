"""Inside an actor host process: run process-placed actors, each on its own thread with its own mailbox.

A host is started by the parent's :class:`~laneway.actors._proc_cell.ProcessHosts`
with the ``spawn`` start method. Its main thread reads the control socket
(start an actor, stop one, quit) and watches the parent; each actor thread binds
its own ZeroMQ socket, which is its mailbox: ZeroMQ keeps the order of one
connection, and the parent sends each sender's messages in the order it sent
them, so handlers see messages per sender in order (as pykka's do).

The host dies with its parent: ``PR_SET_PDEATHSIG`` (the parent forks from a
thread that lives as long as it does) and a parent-pid check every half second.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import sys
import threading
from typing import Any, Callable

import attrs
import zmq

from laneway.actors import _proc_wire as w
from laneway.worker import die_with_parent

log = logging.getLogger(__name__)

_dumps = pickle.dumps

#: The child acknowledges handled messages at least this often (and whenever idle).
ACK_EVERY = 256

#: Messages shorter than this are unpickled from a copy, longer ones from a view of the frame.
COPY_BELOW = 4096

#: Reply sockets to asking threads an actor keeps open.
DIRECT_SOCKETS = 64


@attrs.frozen
class HostConfig:
    """How one host process connects: its control endpoint, the reply endpoint, the parent to watch."""

    control: str
    replies: str
    parent_pid: int
    curve: Any = None


def host_entry(cfg: HostConfig) -> None:
    """Target of the parent's ``spawn`` processes."""
    die_with_parent(cfg.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us in order
    sys.exit(_Host(cfg).serve())


class _Host:
    def __init__(self, cfg: HostConfig) -> None:
        self.cfg = cfg
        self.ctx = zmq.Context()
        self.actors: dict[bytes, _ActorThread] = {}

    def serve(self) -> int:
        ctl = self.ctx.socket(zmq.DEALER)
        ctl.setsockopt(zmq.LINGER, 0)
        ctl.bind(self.cfg.control)
        try:
            while True:
                if not ctl.poll(500):
                    if os.getppid() != self.cfg.parent_pid:
                        os._exit(70)  # orphaned
                    continue
                frames = ctl.recv_multipart()
                kind = frames[0]
                if kind == w.START:
                    actor = _ActorThread(self, frames[1], frames[2])
                    self.actors[frames[1]] = actor
                    actor.start()
                elif kind == w.STOP:
                    target = self.actors.get(frames[1])
                    if target is not None:
                        target.request_stop(frames[2].decode())
                elif kind == w.QUIT:
                    return 0
        finally:
            for actor in list(self.actors.values()):
                actor.request_stop("shutdown")
            for actor in list(self.actors.values()):
                actor.join(2.0)
            ctl.close(linger=0)
            self.ctx.destroy(linger=1000)


class _LocalRef:
    """What ``self.ref`` is inside a process actor: its name (the parent holds the real ref)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def orchestrator(self) -> Any:
        from laneway.errors import ConfigError

        raise ConfigError(f"{self.name} runs in its own process; the orchestrator is in the parent process")


class _ActorThread:
    """One process actor: the child-side cell (``instance._cell``) and the thread running its handlers."""

    def __init__(self, host: _Host, key: bytes, spec: bytes) -> None:
        self.host = host
        self.key = key
        self.spec = spec
        self.lw_ref: _LocalRef | None = None
        self.stop_kind: str | None = None
        self.direct: dict[bytes, Callable[..., None]] = {}  # reply senders by asking thread's endpoint
        self.direct_socks: dict[bytes, zmq.Socket] = {}  # for replies too big for a datagram
        self.dgram: socket.socket | None = None
        self.endpoint: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"laneway-actor:{key.decode()}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    @property
    def name(self) -> str:
        """The actor's name (known once its spec is loaded, before any message is handled)."""
        ref = self.lw_ref
        assert ref is not None, "the actor's spec is not loaded yet"
        return ref.name

    def request_stop(self, kind: Any) -> None:
        # Called with the Exit of Actor.stop() in this thread, or an ExitKind value from the control thread.
        kind = getattr(getattr(kind, "kind", None), "value", kind)
        if self.stop_kind is None:
            self.stop_kind = kind
        if threading.current_thread() is self.thread:
            return  # the loop looks at stop_kind before it takes the next message
        endpoint = self.endpoint  # read after stop_kind is set: an actor not bound yet sees it at its first turn
        if endpoint is None:
            return
        # The actor may be blocked in recv on its mailbox: a WAKE frame from a socket of this
        # thread's own (stops are rare; this keeps the message path free of a second fd to poll).
        waker = self.host.ctx.socket(zmq.DEALER)
        try:
            waker.connect(endpoint)
            waker.send(w.WAKE, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the actor is gone already
        finally:
            waker.close(linger=1000)

    def _run(self) -> None:
        out = self.host.ctx.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 2000)
        out.connect(self.host.cfg.replies)
        try:
            self._serve(out)
        finally:
            out.close()
            self.host.actors.pop(self.key, None)

    def _send(self, kind: bytes, seq_b: bytes = w.NO_SEQ, status: bytes = b"-", payload: bytes = b"") -> None:
        self.out.send_multipart((self.key, kind + status + seq_b + payload))

    def _serve(self, out: zmq.Socket) -> None:
        from laneway.actors._actor import Actor

        self.out = out
        send = self._send
        try:
            factory, args, kwargs, name, endpoint, state = pickle.loads(self.spec)
        except Exception as exc:
            send(w.START_FAILED, payload=w.dump_error(exc))
            return
        self.lw_ref = _LocalRef(name)
        sock = self.host.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        try:
            sock.bind(endpoint)
            instance = factory(*args, **kwargs)
            if not isinstance(instance, Actor):
                raise TypeError(f"{factory!r} returned {type(instance).__name__}, not an Actor")
            instance._cell = self  # type: ignore[assignment]  # lw_ref is optional here (set just above)
            instance.on_start()
            if state is not None:
                instance.load_state(pickle.loads(state))
        except Exception as exc:
            sock.close()
            send(w.START_FAILED, payload=w.dump_error(exc))
            return
        saves = type(instance).save_state is not Actor.save_state
        self.endpoint = endpoint
        send(w.STARTED)
        last = w.NO_SEQ
        unacked = 0  # tells handled since the last ack or reply (a reply acknowledges all before it)
        error: BaseException | None = None
        recv, handle = sock.recv, self._handle
        try:
            while self.stop_kind is None:
                if unacked:
                    try:
                        data = recv(zmq.NOBLOCK)
                    except zmq.Again:  # idle: tell the parent which tells are done, then wait
                        send(w.ACK, last)
                        unacked = 0
                        data = recv()
                else:
                    data = recv()
                kind = data[:1]
                if kind == w.ASK_DIRECT:
                    last = data[1:9]
                    end = 10 + data[9]
                    error = handle(instance, True, last, data, saves, data[10:end], end)
                    unacked = 0
                elif kind == w.TELL:
                    last = data[1:9]
                    error = handle(instance, False, last, data, saves)
                    unacked += 1
                    if unacked >= ACK_EVERY:
                        send(w.ACK, last)
                        unacked = 0
                elif kind == w.ASK:
                    last = data[1:9]
                    error = handle(instance, True, last, data, saves)
                    unacked = 0
                # else a WAKE: look at stop_kind again
                if error is not None:
                    break
        finally:
            sock.close()
            for direct in self.direct_socks.values():
                direct.close(linger=1000)
            if self.dgram is not None:
                self.dgram.close()  # a last reply may still be on its way out
            try:
                instance.on_stop()
            except Exception:
                log.exception("%s: on_stop raised", self.lw_ref.name)
            kind_text = "crash" if error is not None else (self.stop_kind or "normal")
            send(w.EXITED, last, w.EXIT_CODES[kind_text], w.dump_error(error) if error else b"")

    def _direct(self, path: bytes) -> Callable[..., None]:
        """The sender of replies to one asking thread (made on its first ask, then kept)."""
        sender = self.direct.get(path)
        if sender is not None:
            return sender
        if len(self.direct) >= DIRECT_SOCKETS:  # forget the oldest asking thread
            oldest = next(iter(self.direct))
            self.direct.pop(oldest)
            old_sock = self.direct_socks.pop(oldest, None)
            if old_sock is not None:
                old_sock.close(linger=0)
        if self.dgram is None:
            self.dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.dgram.setblocking(False)
        sendto, other, big_max = self.dgram.sendto, self._send, w.DGRAM_MAX

        def send(kind: bytes, seq_b: bytes = w.NO_SEQ, status: bytes = b"-", payload: bytes = b"") -> None:
            if kind != w.REPLY:
                other(kind, seq_b, status, payload)
                return
            frame = kind + status + seq_b + payload
            try:
                if len(frame) <= big_max:
                    sendto(frame, path)
                else:
                    self._big_reply(path, frame)
                    sendto(w.BIG_REPLY + status + seq_b, path)
            except OSError:
                pass  # never block: an asker whose thread is gone (or is not reading) has nobody to read it

        self.direct[path] = send
        return send

    def _big_reply(self, path: bytes, frame: bytes) -> None:
        sock = self.direct_socks.get(path)
        if sock is None:
            sock = self.direct_socks[path] = self.host.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(w.big_reply_endpoint(path))
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _handle(self, instance: Any, ask: bool, seq_b: bytes, data: bytes, saves: bool,
                reply_to: bytes = b"", start: int = 9) -> BaseException | None:
        """Run one message; return the exception if it crashed the actor."""
        send = self._direct(reply_to) if reply_to else self._send
        try:
            # A small message is copied out (cheaper than a memoryview); a big one is read in place.
            msg = pickle.loads(data[start:] if len(data) < COPY_BELOW else memoryview(data)[start:])
        except Exception as exc:
            # The sender pickled something this process cannot load (a class only the parent has).
            err = w.dump_error(_serialization(f"{self.name} cannot unpickle the message: {exc!r}"))
            if ask:
                send(w.REPLY, seq_b, w.REFUSED, err)
            else:
                send(w.LETTER, seq_b, payload=f"could not unpickle: {exc!r}".encode())
            return None
        try:
            result = instance._dispatch(msg)
        except Exception as exc:
            if isinstance(exc, instance.reply_errors):
                if ask:
                    send(w.REPLY, seq_b, w.REFUSED, w.dump_error(exc))
                else:
                    send(w.LETTER, seq_b, payload=repr(exc).encode())
                return None
            log.warning("%s crashed handling %s: %r", self.name, type(msg).__qualname__, exc, exc_info=exc)
            if ask:
                send(w.REPLY, seq_b, w.CRASHED, w.dump_error(exc))
            return exc
        if saves:
            try:
                state = w.dumps(instance.save_state(), f"the state {self.name} saved")
            except Exception as exc:
                log.warning("%s: save_state failed: %r", self.name, exc)
            else:
                send(w.STATE, seq_b, payload=state)
        if ask:
            try:
                payload = _dumps(result, w.PROTOCOL)  # the common case, without naming it first
            except Exception:
                try:
                    payload = w.dumps(result, f"the reply of {self.name} to {type(msg).__qualname__}")
                except Exception as exc:
                    send(w.REPLY, seq_b, w.REFUSED, w.dump_error(exc))
                    return None
            send(w.REPLY, seq_b, w.OK, payload)
        return None


def _serialization(text: str) -> BaseException:
    from laneway.errors import SerializationError

    return SerializationError(text)
