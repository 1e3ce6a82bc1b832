"""The orchestrator's side of remote actor hosts: where ``placement="remote"`` actors run.

:meth:`~laneway.actors.ActorSystem.accept_actor_hosts` opens one ROUTER endpoint
(CurveZMQ with the pool's key layout, so ``laneway keys`` serves both; listening
beyond loopback without keys is refused). Hosts join with ``laneway worker
--actors --connect tcp://HOST:PORT --keys DIR --name NAME``. One thread owns the
socket: it admits hosts, passes their frames to the cells, pings them and drops
a host silent for ``heartbeat_timeout_s``. Other threads hand it what to send
through a queue, so a cell's messages leave in the order the cell numbered them.

A remote actor's cell is a :class:`~laneway.actors._proc_cell.ProcessCell`, so
refs, lookup, supervision, dead letters and saved state work as for local process
actors. A host's death, departure or silence is the crash of each actor on it:
asks in flight fail with :class:`~laneway.errors.ActorProcessDied` naming the host
and its pid, tells not yet handled go to the dead letters, and supervisors restart
the actors on another host with that name (or any host), waiting at most
``host_wait_s`` for one to join before the start fails with
:class:`~laneway.errors.ActorStartError`, which counts against restart intensity.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

import attrs
import zmq

from laneway.actors import _proc_wire as w
from laneway.actors._actor import Exit, ExitKind
from laneway.actors._proc_cell import START_TIMEOUT_S, ProcessCell
from laneway.errors import ActorProcessDied, ActorStartError, AuthError, ConfigError, SystemShutdown
from laneway.worker import bind_router, is_loopback

if TYPE_CHECKING:
    from laneway.actors._actor import ActorRef

log = logging.getLogger(__name__)


@attrs.frozen
class ActorHostInfo:
    """One remote actor host, as :meth:`RemoteActorHosts.hosts` lists it.

    Attributes:
        name: the name actors are placed by (``host=``).
        pid: its process id on its own machine.
        hostname: the machine it runs on.
        actors: names of the actors it runs now.
    """

    name: str
    pid: int
    hostname: str
    actors: tuple[str, ...]


class RemoteHost:
    """One admitted remote host and the cells it runs (what a :class:`ProcessCell` calls its host)."""

    def __init__(self, owner: RemoteActorHosts, ident: bytes, name: str, pid: int, hostname: str, now: float) -> None:
        self.owner = owner
        self.ident = ident
        self.name = name
        self.pid = pid
        self.hostname = hostname
        self.seen = now
        self.cells: set[ProcessCell] = set()
        self.dead = False

    def send_control(self, *frames: bytes) -> None:
        if not self.dead:
            self.owner.post([self.ident, *frames])

    def kill(self) -> None:
        """A remote process is not ours to kill; :meth:`RemoteCell.kill` abandons the actor instead."""

    def actor_ended(self, cell: ProcessCell) -> None:
        with self.owner.lock:
            self.cells.discard(cell)


class _Mailbox:
    """What a remote cell sends on: the owner's queue, addressed to the actor on its host."""

    __slots__ = ("owner", "head")

    def __init__(self, owner: RemoteActorHosts, ident: bytes, key: bytes) -> None:
        self.owner = owner
        self.head = (ident, w.HOST_MAIL, key)

    def send(self, data: bytes) -> None:
        self.owner.post([*self.head, data])

    def close(self, linger: int = 0) -> None:
        """Nothing to close: the connection is the host's."""


class RemoteCell(ProcessCell):
    """A process cell whose actor runs on a remote host."""

    #: Replies come back through the host's connection, never to the asking thread's own socket.
    ask_direct = None  # type: ignore[assignment]
    by_value = True

    def host_died(self, reason: str) -> None:
        host: RemoteHost = self.host
        where = f"its host {host.name!r} (pid {host.pid} on {host.hostname})"
        err = ActorProcessDied(f"{self.lw_ref.name}: {where} {reason}", pid=host.pid, reason=f"{host.name}: {reason}")
        self._ended(Exit(ExitKind.CRASH, err), 0, err)

    def kill(self) -> None:
        """The actor did not stop in time: count it as ended (the host is told to stop it) and move on."""
        self.host_died("did not stop the actor in time; abandoned there")


class RemoteActorHosts:
    """The endpoint remote actor hosts join, the hosts that joined, and their actors' traffic.

    Made by :meth:`~laneway.actors.ActorSystem.accept_actor_hosts`; see there for the arguments.
    """

    def __init__(self, system: Any, listen: str, keys: Any = None, *, heartbeat_s: float = 0.5,
                 heartbeat_timeout_s: float = 5.0, host_wait_s: float = 10.0) -> None:
        if urlsplit(listen).scheme not in ("tcp", "ipc"):
            raise ConfigError(f"listen must be a tcp:// or ipc:// endpoint, got {listen!r}")
        if keys is None and not is_loopback(listen):
            raise AuthError(f"refusing to listen for actor hosts on {listen} without keys: anyone who reaches it "
                            "could run code here; create keys with `laneway keys DIR` and pass keys=DIR")
        if not 0 < heartbeat_s < heartbeat_timeout_s:
            raise ConfigError(f"need 0 < heartbeat_s < heartbeat_timeout_s, got {heartbeat_s}, {heartbeat_timeout_s}")
        if host_wait_s < 0:
            raise ConfigError(f"host_wait_s must be >= 0, got {host_wait_s!r}")
        self.system = system
        self.heartbeat_s = heartbeat_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.host_wait_s = host_wait_s
        self._now: Callable[[], float] = system.clock.now  # heartbeats are read on the system's clock
        self.lock = threading.Lock()
        self._changed = threading.Condition(self.lock)  # notified as hosts join and leave
        self.ctx = zmq.Context()
        try:
            router, self._curve = bind_router(self.ctx, listen, keys)
        except Exception:
            self.ctx.destroy(linger=0)
            raise
        self.endpoint: str = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._router = router
        self._hosts: dict[bytes, RemoteHost] = {}
        self._cells: dict[bytes, ProcessCell] = {}
        self._keys = itertools.count(1)
        self._out: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"laneway-actor-hosts:{system.name}", daemon=True)
        self._thread.start()

    # what others call --------------------------------------------------------------

    def hosts(self) -> list[ActorHostInfo]:
        """The hosts connected now, by name."""
        with self.lock:
            found = [ActorHostInfo(h.name, h.pid, h.hostname, tuple(sorted(c.lw_ref.name for c in h.cells)))
                     for h in self._hosts.values()]
        return sorted(found, key=lambda h: (h.name, h.pid))

    def wait_hosts(self, count: int, *, name: str | None = None, timeout: float) -> bool:
        """Wait until ``count`` hosts (named ``name``, if given) are connected; False if not within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._candidates(name)) >= count, timeout)

    def post(self, frames: list[bytes]) -> None:
        """Send ``frames`` (identity first) from the socket's thread, after everything posted before."""
        self._out.put(frames)
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def start_cell(self, ref: ActorRef, factory: Any, args: tuple, kwargs: dict, on_exit: Callable[[Any, Exit], None],
                   host_name: str | None, state: bytes | None) -> ProcessCell:
        """Start one incarnation of ``ref``'s actor on a connected host (named ``host_name``, or the least busy).

        Raises:
            ActorStartError: the spec cannot be pickled, no such host joined within ``host_wait_s``,
                the host went away, or the actor failed to start.
        """
        number = next(self._keys)
        key = f"{ref.name}#{number}".encode()
        try:  # by value: the remote host does not import the program's __main__
            spec = w.dumps_by_value((factory, args, kwargs, ref.name, w.remote_mailbox(key), state),
                                    f"the actor spec of {ref.name}")
        except Exception as exc:
            raise ActorStartError(f"{ref.name}: {exc}") from exc
        deadline = time.monotonic() + self.host_wait_s
        with self._changed:
            while True:
                if self._closed:
                    raise SystemShutdown(f"remote actor hosts of {self.system.name} are closed")
                found = self._candidates(host_name)
                if found:
                    host = min(found, key=lambda h: len(h.cells))
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    which = f"named {host_name!r} " if host_name is not None else ""
                    present = sorted({h.name for h in self._hosts.values()})
                    raise ActorStartError(
                        f"{ref.name}: no remote actor host {which}connected to {self.endpoint} within "
                        f"{self.host_wait_s}s (connected: {present or 'none'}); start one with "
                        f"`laneway worker --actors --connect {self.endpoint} --keys DIR --name NAME`"
                    )
                self._changed.wait(remaining)
            cell = RemoteCell(ref, host, key, on_exit, seq_base=number << 32)
            host.cells.add(cell)
            self._cells[key] = cell
        cell._sock = _Mailbox(self, host.ident, key)  # type: ignore[assignment]
        ref._cell = cell
        ref.incarnation += 1
        host.send_control(w.START, key, spec)
        if not cell.settled.wait(START_TIMEOUT_S):
            cell.host_died(f"did not start the actor within {START_TIMEOUT_S}s")
        if not cell.started:
            cause = cell.start_error or (cell.exit.error if cell.exit is not None else None)
            raise ActorStartError(f"{ref.name} failed to start on host {host.name!r} (pid {host.pid} on "
                                  f"{host.hostname}): {cause!r}") from cause
        ref.orchestrator.events.publish("actor.started", ref.name, pid=host.pid, host=host.name)
        return cell

    def _candidates(self, name: str | None) -> list[RemoteHost]:
        return [h for h in self._hosts.values() if not h.dead and (name is None or h.name == name)]

    def close(self, timeout: float = 5.0) -> None:
        """Fail the actors still on remote hosts, tell the hosts to let them go, and close the endpoint."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        self._out.put(None)
        os.write(self._wake_w, b"c")
        self._thread.join(timeout + 5)
        self._router.close(linger=0)
        if self._curve is not None:
            self._curve.stop()
        self.ctx.destroy(linger=0)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # the socket's thread ----------------------------------------------------------

    def _serve(self) -> None:
        router = self._router
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        tick = time.monotonic() + self.heartbeat_s
        try:
            while True:
                ready = dict(poller.poll(int(max(0.0, tick - time.monotonic()) * 1000)))
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                if not self._send_posted():
                    break
                if router in ready:
                    self._receive()
                if time.monotonic() >= tick:
                    tick = time.monotonic() + self.heartbeat_s
                    self._tick()
        except Exception:
            log.exception("the remote actor host endpoint %s failed", self.endpoint)
        finally:
            with self.lock:
                hosts = list(self._hosts.values())
            for host in hosts:
                self._lost(host, "is out of reach: the orchestrator closed its endpoint")
                try:
                    router.send_multipart([host.ident, w.HOST_REJOIN], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass

    def _send_posted(self) -> bool:
        """Send what other threads posted; False once closing was posted."""
        send = self._router.send_multipart
        while True:
            try:
                frames = self._out.get_nowait()
            except queue.Empty:
                return True
            if frames is None:
                return False
            try:
                send(frames, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # a host gone this instant: its cells learn it from the heartbeat
                log.debug("could not send to actor host %r: %r", frames[0], exc)

    def _receive(self) -> None:
        router = self._router
        while True:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            ident, kind = frames[0], frames[1]
            host = self._hosts.get(ident)
            if kind == w.HOST_HELLO:
                self._admit(ident, frames[2])
                continue
            if host is None:
                if kind != w.HOST_BYE:  # a host we dropped (silent too long) or never admitted
                    router.send_multipart([ident, w.HOST_REJOIN], zmq.NOBLOCK)
                continue
            host.seen = self._now()
            if kind == w.HOST_FRAME:
                key, body = frames[2], frames[3]
                cell = self._cells.get(key)
                if cell is None:
                    continue
                if body[:1] in (w.EXITED, w.START_FAILED):
                    self._cells.pop(key, None)
                try:
                    cell.on_frame(body)
                except Exception:
                    log.exception("handling a frame from %s failed", cell.lw_ref.name)
            elif kind == w.HOST_BYE:
                self._lost(host, "left (its worker was stopped)")

    def _admit(self, ident: bytes, hello: bytes) -> None:
        try:
            name, pid, hostname = json.loads(hello)
            host = RemoteHost(self, ident, str(name), int(pid), str(hostname), self._now())
        except Exception as exc:
            log.warning("ignoring a malformed hello from actor host %r: %r", ident, exc)
            return
        with self._changed:
            if self._closed:
                return
            self._hosts[ident] = host
            self._changed.notify_all()
        self._router.send_multipart([ident, w.HOST_WELCOME], zmq.NOBLOCK)
        log.info("actor host %s joined (pid %d on %s)", host.name, host.pid, host.hostname)
        self.system.events.publish("actor.host.joined", host.name, pid=host.pid, hostname=host.hostname)

    def _tick(self) -> None:
        now = self._now()
        for host in list(self._hosts.values()):
            if now - host.seen > self.heartbeat_timeout_s:
                self._lost(host, f"sent no heartbeat for {self.heartbeat_timeout_s}s (dead or disconnected)")
                self._router.send_multipart([host.ident, w.HOST_REJOIN], zmq.NOBLOCK)
            else:
                self._router.send_multipart([host.ident, w.HOST_PING], zmq.NOBLOCK)

    def _lost(self, host: RemoteHost, reason: str) -> None:
        """``host`` is gone: each of its actors crashed."""
        with self._changed:
            if self._hosts.pop(host.ident, None) is None:
                return
            host.dead = True
            cells = list(host.cells)
            self._changed.notify_all()
        log.warning("actor host %s (pid %d on %s) %s", host.name, host.pid, host.hostname, reason)
        self.system.events.publish("actor.host.lost", host.name, pid=host.pid, reason=reason)
        for cell in cells:
            self._cells.pop(cell.key, None)
            try:
                cell.host_died(reason)
            except Exception:
                log.exception("reporting the loss of %s failed", cell.lw_ref.name)
