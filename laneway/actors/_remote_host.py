"""A remote actor host: ``laneway worker --actors`` runs process-placed actors for an orchestrator on another host.

The host connects out (a DEALER, CurveZMQ client keys) to the endpoint an
orchestrator opened with :meth:`~laneway.actors.ActorSystem.accept_actor_hosts`,
announces itself (``HOST_HELLO``: its name, pid and host name) and then runs the
actors the orchestrator starts on it, each on its own thread with its own
mailbox, exactly as a local host process does (:mod:`laneway.actors._proc_host`):
the main thread forwards each actor's messages to its in-process mailbox and
every frame the actors send back to the orchestrator, in order.

Liveness both ways: the host beats every ``heartbeat_s``; the orchestrator pings.
A host that hears nothing for ``parent_timeout_s`` stops its actors (the
orchestrator has counted them as crashed by then) and joins again under a new
identity, as does one told ``HOST_REJOIN``. SIGTERM stops the actors, says
``HOST_BYE`` and exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

import attrs
import zmq

from laneway.actors import _proc_wire as w
from laneway.actors._proc_host import HostConfig, _ActorThread
from laneway.worker import CurveClient

log = logging.getLogger(__name__)

#: Exit status of a host the orchestrator never answered (a refused key, nothing listening).
EXIT_NOT_ADMITTED = 3

#: Seconds a leaving host gives its actors to stop.
STOP_GRACE_S = 5.0


@attrs.frozen
class ActorHostConfig:
    """How a remote actor host connects.

    Attributes:
        endpoint: the orchestrator's actor-host endpoint (``tcp://HOST:PORT``).
        name: the name actors are placed by (``host="gpu-1"``); several hosts may share one.
        curve: client keys when the orchestrator requires CurveZMQ.
        heartbeat_s: seconds between heartbeats.
        parent_timeout_s: join again after hearing nothing from the orchestrator this long.
        handshake_timeout_s: exit with :data:`EXIT_NOT_ADMITTED` if the orchestrator has not
            answered this long after connecting (a refused key, a wrong server key, nothing there).
    """

    endpoint: str
    name: str
    curve: CurveClient | None = None
    heartbeat_s: float = 0.5
    parent_timeout_s: float = 10.0
    handshake_timeout_s: float = 30.0


def run_actor_host(cfg: ActorHostConfig) -> int:
    """Host actors for the orchestrator at ``cfg.endpoint`` until SIGTERM; returns an exit status.

    Example:
        $ laneway worker --actors --connect tcp://orch-host:5556 --keys ~/lw-keys --name gpu-1
    """
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_sigterm(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
            stop.set()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while True:
            session = _Session(cfg, stop)
            outcome = session.serve()
            if outcome == "sigterm":
                return 0
            if outcome == "not admitted":
                log.error("actor host %s: no answer from %s within %ss (a refused key, a wrong server key, "
                          "or nothing listening there); exiting", cfg.name, cfg.endpoint, cfg.handshake_timeout_s)
                return EXIT_NOT_ADMITTED
            log.warning("actor host %s: %s; joining again", cfg.name, outcome)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Session:
    """One connection under one identity; what :class:`_ActorThread` sees as its host."""

    def __init__(self, cfg: ActorHostConfig, stop: threading.Event) -> None:
        self.host_cfg = cfg
        self.stop = stop
        self.ident = f"{cfg.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}".encode()
        self.ctx = zmq.Context()
        self.cfg = HostConfig(control="", replies=f"inproc://laneway-replies/{self.ident.decode()}", parent_pid=0)
        self.actors: dict[bytes, _ActorThread] = {}
        self.mailboxes: dict[bytes, zmq.Socket] = {}

    def serve(self) -> str:
        cfg = self.host_cfg
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.ident)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if cfg.curve is not None:
            sock.curve_serverkey = cfg.curve.server_public
            sock.curve_publickey = cfg.curve.public
            sock.curve_secretkey = cfg.curve.secret
        sock.connect(cfg.endpoint)
        replies = self.ctx.socket(zmq.PULL)
        replies.setsockopt(zmq.LINGER, 0)
        replies.bind(self.cfg.replies)
        sock.send_multipart([w.HOST_HELLO, json.dumps([cfg.name, os.getpid(), socket.gethostname()]).encode()])
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(replies, zmq.POLLIN)
        connected = heard = beat = time.monotonic()
        admitted = False
        outcome = "stopped"
        try:
            while True:
                if self.stop.is_set():
                    outcome = "sigterm"
                    return outcome
                ready = dict(poller.poll(int(cfg.heartbeat_s * 500)))
                now = time.monotonic()
                if replies in ready:
                    self._forward(sock, replies)
                if sock in ready:
                    heard = now
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        admitted = True
                        if self._on_message(frames):
                            outcome = "the orchestrator asked this host to join again"
                            return outcome
                if now - beat >= cfg.heartbeat_s:
                    beat = now
                    if admitted:
                        _send(sock, [w.HOST_BEAT])
                if not admitted and now - connected > cfg.handshake_timeout_s:
                    outcome = "not admitted"
                    return outcome
                if admitted and now - heard > cfg.parent_timeout_s:
                    outcome = f"no word from the orchestrator for {cfg.parent_timeout_s}s"
                    return outcome
        finally:
            self._stop_actors(sock, replies, goodbye=outcome == "sigterm")
            for mailbox in self.mailboxes.values():
                mailbox.close(linger=0)
            replies.close(linger=0)
            sock.close()
            stuck = [a.name for a in self.actors.values() if a.thread.is_alive()]
            if stuck:  # their threads still hold sockets of this context: leave it to them
                log.error("actor host %s: actors %s did not stop within %ss; abandoning them",
                          self.host_cfg.name, stuck, STOP_GRACE_S)
            else:
                self.ctx.term()

    def _on_message(self, frames: list[bytes]) -> bool:
        """Act on one message from the orchestrator; True when told to join again."""
        kind = frames[0]
        if kind == w.HOST_MAIL:
            mailbox = self.mailboxes.get(frames[1])
            if mailbox is not None:  # else the actor ended: the orchestrator accounts for the message
                mailbox.send(frames[2])
        elif kind == w.START:
            key = frames[1]
            mailbox = self.ctx.socket(zmq.DEALER)
            mailbox.setsockopt(zmq.LINGER, 0)
            mailbox.setsockopt(zmq.SNDHWM, 0)
            mailbox.connect(w.remote_mailbox(key))  # before the actor binds: messages queue in order
            self.mailboxes[key] = mailbox
            actor = _ActorThread(self, key, frames[2])  # type: ignore[arg-type]  # a session stands in for the host
            self.actors[key] = actor
            actor.start()
        elif kind == w.STOP:
            target = self.actors.get(frames[1])
            if target is not None:
                target.request_stop(frames[2].decode())
        elif kind == w.HOST_REJOIN:
            return True
        return False

    def _forward(self, sock: zmq.Socket, replies: zmq.Socket) -> None:
        while True:
            try:
                key, body = replies.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            _send(sock, [w.HOST_FRAME, key, body])
            if body[:1] in (w.EXITED, w.START_FAILED):
                mailbox = self.mailboxes.pop(key, None)
                if mailbox is not None:
                    mailbox.close(linger=0)

    def _stop_actors(self, sock: zmq.Socket, replies: zmq.Socket, goodbye: bool) -> None:
        """Stop every actor here, passing on what they say as they go; then, when leaving for good, say goodbye."""
        for actor in list(self.actors.values()):
            actor.request_stop("shutdown")
        deadline = time.monotonic() + STOP_GRACE_S
        for actor in list(self.actors.values()):
            while actor.thread.is_alive() and time.monotonic() < deadline:
                if replies.poll(50):
                    self._forward(sock, replies)
        self._forward(sock, replies)
        if goodbye:
            _send(sock, [w.HOST_BYE])


def _send(sock: zmq.Socket, frames: list[bytes]) -> None:
    """Send without blocking: with the orchestrator out of reach there is nobody to read it, and
    the orchestrator counts this host's actors as crashed once its heartbeats stop."""
    try:
        sock.send_multipart(frames, zmq.NOBLOCK)
    except zmq.ZMQError:
        pass
