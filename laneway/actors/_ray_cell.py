"""Ray placement: a laneway actor inside a Ray actor, behind the same ActorRef.

The Ray actor is a synchronous one whose default concurrency group has one
thread, so Ray runs its calls one at a time in the order the driver sent them,
and a sender's messages arrive in order. Messages travel in batches: a message
goes out at once in a call of its own while fewer than :data:`MAX_CALLS` calls
are in flight, and the messages sent meanwhile wait to leave together in the
next call (:meth:`_RayHostImpl.handle`), when one returns. So a lone ask costs
one Ray call, and a burst of tells costs a few calls, not one each. A call
answers with the replies to the asks it carried and the last message handled.
A second concurrency group ("control") serves stop requests and a long poll,
``wait_news``, by which the parent learns of dead letters, saved states,
acknowledgements and the end of the actor. If the Ray actor's process dies,
its calls fail with ``RayActorError``; the cell turns that into the actor's
crash (:class:`~laneway.errors.ActorProcessDied`), which the supervisor handles
as any other.

Ray is joined on first use: if the program has not called ``ray.init``, the
system starts a local instance (``num_cpus`` = the machine's) and shuts it
down when it shuts down itself; a connection the program opened is left alone.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import threading
from typing import TYPE_CHECKING, Any, Callable

import cloudpickle

from laneway.actors import _proc_wire as w
from laneway.actors._actor import Exit, ExitKind, announce_exit, publish_dead_letter, why_dead
from laneway.core import Future, acquire_ray
from laneway.errors import ActorCrashed, ActorDead, ActorProcessDied, ActorStartError, ConfigError, SerializationError

if TYPE_CHECKING:
    from laneway.actors._actor import ActorRef

log = logging.getLogger(__name__)

_cloud_dumps = cloudpickle.dumps

#: The Ray actor reports its handled count at least this often while busy with tells.
ACK_EVERY = 256
#: Batch calls in flight per Ray-placed actor; messages sent meanwhile leave together in the next one.
MAX_CALLS = 2
#: Most messages in one batch call (a longer backlog leaves in several).
MAX_BATCH = 512

#: A message on the wire: ``(ask, seq, pickled message)``; a batch is a pickled list of them.
WireMessage = tuple[bool, int, bytes]


class _RayHostImpl:
    """The body of the Ray actor (decorated with ``ray.remote`` on first use)."""

    def __init__(self, spec: bytes) -> None:
        self.spec = spec
        self.instance: Any = None
        self.lw_ref: Any = None
        self.ended: str | None = None  # the exit kind once over
        self.why = ""  # and why, for the messages it turns away
        self.stop_kind: str | None = None
        self.error = b""
        self.last = 0
        self.unacked = 0
        self.news: list[tuple[str, int, bytes]] = []
        self.cond = threading.Condition()
        self.next = 1  # the seq of the next message; Ray runs the default group's calls in send order

    def start(self) -> tuple[bool, int, bytes]:
        from laneway.actors._actor import Actor
        from laneway.actors._proc_host import _LocalRef

        try:
            factory, args, kwargs, name, state = pickle.loads(self.spec)
            self.lw_ref = _LocalRef(name)
            instance = factory(*args, **kwargs)
            if not isinstance(instance, Actor):
                raise TypeError(f"{factory!r} returned {type(instance).__name__}, not an Actor")
            instance._cell = self
            instance.on_start()
            if state is not None:
                instance.load_state(pickle.loads(state))
        except Exception as exc:
            return False, os.getpid(), w.dump_error(exc)
        self.instance = instance
        self.saves = type(instance).save_state is not Actor.save_state
        self.state_out: bytes | None = None  # saved since the batch began (handle returns it)
        return True, os.getpid(), b""

    def stop_request(self, kind: str) -> None:
        """(control group) Stop after the current message."""
        self.request_stop(kind)

    def request_stop(self, kind: Any) -> None:
        # Also what Actor.stop() calls, with an Exit, from inside a handler.
        self.stop_kind = getattr(getattr(kind, "kind", None), "value", kind)

    def handle(self, batch: bytes) -> bytes:
        """Run a batch of messages (a pickled ``list[WireMessage]``), in order, after every earlier batch.

        One bytes argument and one bytes result (Ray serializes each argument apart, which
        costs more than the messages): the answer is a pickled ``(replies, last handled seq,
        state)``, with a ``(seq, status, data)`` reply for each ask of the batch and the state
        the actor saved last in it (None if it saved none).
        """
        replies = []
        for ask, seq, payload in pickle.loads(batch):
            self._check_turn(seq)
            status, data, _ = self._handle(seq, ask, payload)  # user code: one at a time
            if ask:
                replies.append((seq, status, data))
        # The state saved after the batch's last message rides with its replies: the parent keeps
        # it before it settles them, so an ask never returns ahead of the state it left behind.
        state, self.state_out = self.state_out, None
        return pickle.dumps((replies, self.last, state), w.PROTOCOL)

    def _check_turn(self, seq: int) -> None:
        if seq != self.next:  # Ray broke its promise of order: fail loudly, never run out of order
            raise RuntimeError(f"message {seq} arrived when {self.next} was due")
        self.next = seq + 1

    def _handle(self, seq: int, ask: bool, payload: Any) -> tuple[bytes, bytes, int]:
        if self.ended is not None or self.stop_kind is not None:
            self._end(self.stop_kind or "normal", None)
            return b"-", self.why.encode(), self.last
        instance = self.instance
        status, data = w.OK, b""
        try:
            msg = pickle.loads(payload)
            result = instance._dispatch(msg)
        except Exception as exc:
            if isinstance(exc, instance.reply_errors) or isinstance(exc, pickle.UnpicklingError):
                self.last = seq
                if ask:
                    return w.REFUSED, w.dump_error(exc), seq
                self._post("letter", seq, repr(exc).encode())
                return w.OK, b"", seq
            log.warning("%s crashed: %r", self.lw_ref.name, exc, exc_info=exc)
            self.last = seq
            self._end("crash", exc)
            return w.CRASHED, w.dump_error(exc), self.last
        self.last = seq
        if self.saves:
            try:
                self.state_out = w.dumps(instance.save_state(), f"the state {self.lw_ref.name} saved")
            except Exception as exc:
                log.warning("%s: save_state failed: %r", self.lw_ref.name, exc)
        if ask:
            try:
                data = w.dumps(result, f"the reply of {self.lw_ref.name} to {type(msg).__qualname__}")
            except Exception as exc:
                status, data = w.REFUSED, w.dump_error(exc)
        else:
            self.unacked += 1
            if self.unacked >= ACK_EVERY:
                self._post("ack", seq, b"")
        if self.stop_kind is not None:  # the handler called self.stop()
            self._end(self.stop_kind, None)
        return status, data, seq

    def finish(self, seq: int) -> None:
        """Sent after a stop request, behind the messages already sent: end the actor if not yet."""
        self._check_turn(seq)
        self._end(self.stop_kind or "normal", None)

    def _end(self, kind: str, error: BaseException | None) -> None:
        if self.ended is not None:
            return
        self.ended = kind
        self.why = f"crashed: {error!r}" if error is not None else kind
        try:
            self.instance.on_stop()
        except Exception:
            log.exception("%s: on_stop raised", self.lw_ref.name)
        self._post("exit", self.last, (kind + "\n").encode() + (w.dump_error(error) if error else b""))

    def _post(self, kind: str, seq: int, data: bytes) -> None:
        with self.cond:
            self.unacked = 0
            self.news.append((kind, seq, data))
            self.cond.notify_all()

    def wait_news(self) -> list[tuple[str, int, bytes]]:
        """The long poll (control group): what happened since the last call; waits up to 30 s for something."""
        with self.cond:
            self.cond.wait_for(lambda: self.news, timeout=30)
            news, self.news = self.news, []
        return news


_remote_class: Any = None
_ray_lock = threading.Lock()


def _host_class() -> Any:
    global _remote_class
    import ray

    with _ray_lock:
        if _remote_class is None:
            impl = type("LanewayRayActor", (_RayHostImpl,), {"__module__": __name__})
            for name in ("stop_request", "wait_news"):
                setattr(impl, name, ray.method(concurrency_group="control")(getattr(_RayHostImpl, name)))
            # Ray's stubs list ray.remote's keywords without concurrency_groups, which it accepts.
            _remote_class = ray.remote(concurrency_groups={"control": 2})(impl)  # type: ignore[call-overload]
        return _remote_class


class RayCell:
    """One incarnation of a Ray-placed actor, seen from the parent (the same surface as a thread cell)."""

    def __init__(self, ref: ActorRef, on_exit: Callable[[Any, Exit], None]) -> None:
        self.lw_ref = ref
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._actor: Any = None
        self._seq = 0
        self._asks: dict[int, tuple[Future[Any], Any]] = {}
        self._tells: collections.deque[tuple[int, Any]] = collections.deque()
        self._outbox: list[WireMessage] = []  # messages waiting for a free call, in seq order
        self._calls = 0  # batch calls in flight
        self._closed = False
        self.pid = 0
        self.exit: Exit | None = None
        self.started = False
        self.settled = threading.Event()
        self.exited = threading.Event()
        self.actor_stopped = threading.Event()

    def start(self, factory: Any, args: tuple, kwargs: dict, state: bytes | None, options: dict[str, Any]) -> None:
        import ray

        name = self.lw_ref.name
        try:
            spec = w.dumps_by_value((factory, args, kwargs, name, state), f"the actor spec of {name}")
        except SerializationError as exc:
            raise ActorStartError(f"{name}: {exc}") from exc
        try:
            self._actor = _host_class().options(**options).remote(spec)
            ok, self.pid, error = ray.get(self._actor.start.remote(), timeout=120)
        except Exception as exc:
            self._kill()
            raise ActorStartError(f"{name} failed to start as a Ray actor: {exc!r}") from exc
        if not ok:
            self._kill()
            cause = w.load_error(error)
            self.exit = Exit(ExitKind.CRASH, cause)
            self.actor_stopped.set()
            self.settled.set()
            self.exited.set()
            raise ActorStartError(f"{name} failed to start: {cause!r}") from cause
        self.started = True
        self.settled.set()
        self._poll_news()

    # sending ---------------------------------------------------------------------

    def deliver(self, message: Any) -> None:
        from laneway.actors._actor import _Ask

        ask = type(message) is _Ask
        body = message.message if ask else message
        try:
            data = _cloud_dumps(body, w.PROTOCOL)
        except Exception:  # worded by the slow path
            data = w.dumps_by_value(body, f"a message to {self.lw_ref.name} ({type(body).__qualname__})")
        with self._lock:
            if self._closed:
                raise ActorDead(f"{self.lw_ref.name} is not running ({self._why_dead()})")
            self._seq = seq = self._seq + 1
            self._outbox.append((ask, seq, data))
            if ask:
                self._asks[seq] = (message.future, body)
            else:
                self._tells.append((seq, body))
            sent = self._send_locked() if self._calls < MAX_CALLS else None
        if sent is not None:
            self._watch(*sent)

    def _send_locked(self) -> tuple[Any, list[int]] | None:
        """Send the next batch of the outbox (under ``_lock``, which keeps calls in seq order)."""
        batch = self._outbox[:MAX_BATCH]
        del self._outbox[:MAX_BATCH]
        try:
            ref = self._actor.handle.remote(pickle.dumps(batch, w.PROTOCOL))
        except Exception as exc:  # Ray cannot even take the call: the actor is as good as dead
            self._ended(Exit(ExitKind.CRASH, self._died_error(exc)), None, died=True)
            return None
        self._calls += 1
        return ref, [seq for ask, seq, _ in batch if ask]

    def _watch(self, ref: Any, asks: list[int]) -> None:
        ref.future().add_done_callback(lambda f: self._replied(asks, f))

    def _replied(self, asks: list[int], f: Any) -> None:
        """A batch call returned (on Ray's callback thread): settle its asks, send what waits."""
        try:
            replies, last, state = pickle.loads(f.result())
        except Exception as exc:  # the Ray actor is gone
            died = self._died_error(exc)
            with self._lock:
                self._calls -= 1
                entries = [e for e in (self._asks.pop(s, None) for s in asks) if e is not None]
            for fut, _ in entries:
                fut.settle(error=died)
            self._ended(Exit(ExitKind.CRASH, died), None, died=True)
            return
        if state is not None:  # before the replies are settled (see handle)
            self.lw_ref.orchestrator._save_actor_state(self.lw_ref.name, state)
        self._acked(last)
        sends = []
        with self._lock:
            self._calls -= 1
            while self._outbox and self._calls < MAX_CALLS and not self._closed:
                sent = self._send_locked()
                if sent is not None:
                    sends.append(sent)
            answered = [(self._asks.pop(seq, None), status, data) for seq, status, data in replies]
            last_reply = self._closed and not self._asks
        for sent in sends:
            self._watch(*sent)
        if last_reply:  # the actor ended and this was the last reply it owed
            threading.Thread(target=self._kill, daemon=True).start()  # ray.kill would deadlock on this thread
        for entry, status, data in answered:
            if entry is not None:
                self._settle(entry, status, data)

    def _settle(self, entry: tuple[Future[Any], Any], status: bytes, data: bytes) -> None:
        fut, msg = entry
        if status == w.OK:
            try:
                fut.settle(pickle.loads(data))
            except Exception as exc:
                fut.settle(error=SerializationError(f"the reply of {self.lw_ref.name} cannot be unpickled here: {exc!r}"))
        elif status == w.REFUSED:
            fut.settle(error=w.load_error(data))
        elif status == w.CRASHED:
            cause = w.load_error(data)
            err = ActorCrashed(f"{self.lw_ref.name} crashed handling {type(msg).__qualname__}: {cause!r}", cause)
            err.__cause__ = cause
            fut.settle(error=err)
        else:
            fut.settle(error=ActorDead(f"{self.lw_ref.name} ended ({bytes(data).decode()}) before handling the message"))

    def request_stop(self, exit: Exit) -> None:
        sends = []
        with self._lock:
            if self._closed or self._actor is None:
                return
            self._actor.stop_request.remote(exit.kind.value)
            while self._outbox:  # what was sent before the stop goes before the finish
                sent = self._send_locked()
                if sent is not None:
                    sends.append(sent)
            self._seq = seq = self._seq + 1
            self._actor.finish.remote(seq)
        for sent in sends:
            self._watch(*sent)

    def kill(self) -> None:
        self._kill()

    def _kill_when_replied(self) -> None:
        # The Ray actor goes once every reply it owes has arrived (killing it sooner would
        # turn those replies into ActorDiedErrors); _replied kills it after the last one.
        with self._lock:
            done = not self._asks
        if done:
            self._kill()

    def _kill(self) -> None:
        if self._actor is not None:
            import ray

            try:
                ray.kill(self._actor, no_restart=True)
            except Exception:
                pass

    def _why_dead(self) -> str:
        return why_dead(self.exit, not_yet="stopping")

    # news from the actor ------------------------------------------------------------

    def _poll_news(self) -> None:
        self._actor.wait_news.remote().future().add_done_callback(self._news)

    def _news(self, f: Any) -> None:
        try:
            items = f.result()
        except Exception as exc:
            self._ended(Exit(ExitKind.CRASH, self._died_error(exc)), None, died=True)
            return
        for kind, seq, data in items:
            if kind == "ack":
                self._acked(seq)
            elif kind == "letter":
                with self._lock:
                    msg = next((m for s, m in self._tells if s == seq), None)
                self._dead_letter(msg, data.decode())
            elif kind == "exit":
                text, _, error = data.partition(b"\n")
                self._ended(Exit(ExitKind(text.decode()), w.load_error(error) if error else None), seq)
                return
        self._poll_news()

    def _died_error(self, exc: BaseException) -> ActorProcessDied:
        reason = f"died ({type(exc).__name__})"
        return ActorProcessDied(f"{self.lw_ref.name}: its Ray actor process (pid {self.pid}) {reason}", pid=self.pid,
                                reason=reason)

    def _acked(self, seq: int) -> None:
        with self._lock:
            tells = self._tells
            while tells and tells[0][0] <= seq:
                tells.popleft()

    def _ended(self, exit: Exit, last: int | None, died: bool = False) -> None:
        # Called from Ray's callback thread, where ray.kill (and so our cleanup) would deadlock.
        threading.Thread(target=self._end_now, args=(exit, last, died), name=f"laneway-ray-end:{self.lw_ref.name}",
                         daemon=True).start()

    def _end_now(self, exit: Exit, last: int | None, died: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.exit = exit
            self.actor_stopped.set()
            self._outbox.clear()  # never sent: its asks and tells are settled with the others below
            # Asks the actor handled have their replies on the way (by another path than
            # this news): leave those to _replied.
            asks = sorted((s, e) for s, e in self._asks.items() if died or last is None or s > last)
            for s, _ in asks:
                del self._asks[s]
            tells = [m for s, m in self._tells if last is None or s > last]
            self._tells.clear()
        reason = self._why_dead()
        for _, (fut, _msg) in asks:
            if died:
                err = exit.error
                fut.settle(error=ActorProcessDied(str(err), pid=self.pid, reason=getattr(err, "reason", "")))
            else:
                fut.settle(error=ActorDead(f"{self.lw_ref.name} ended ({reason}) before handling the message"))
        for msg in tells:
            self._dead_letter(msg, reason)
        self._kill_when_replied()
        announce_exit(self.lw_ref, exit, self.started, lambda e: self._on_exit(self, e))
        self.exited.set()

    def _dead_letter(self, msg: Any, reason: str) -> None:
        publish_dead_letter(self.lw_ref, msg, reason)


def ensure_ray() -> bool:
    """Join Ray (starting a local instance if the program has not); True if this call counts as a user
    that must later call :func:`laneway.core.release_ray`."""
    try:
        import ray  # noqa: F401  - only to say what to install
    except ImportError:
        raise ConfigError("placement='ray' needs Ray: pip install 'laneway[ray]'") from None
    return acquire_ray(None, None, {"log_to_driver": False})