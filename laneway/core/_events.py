"""The system's event stream: small records, prefix filters, sync and async readers.

Every component publishes to the orchestrator's :class:`EventBus` under a
dotted key (``actor.crashed``, ``queue.command.completed``,
``agent.circuit.state``). Publishing is cheap when nobody listens to the key,
so hot paths can publish unconditionally.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Iterator, Mapping

import attrs

from laneway.core._wakeups import LoopWakeups
from laneway.errors import ConfigError

log = logging.getLogger(__name__)

@attrs.frozen(slots=True)
class Event:
    """One thing that happened.

    Attributes:
        key: dotted event key, e.g. ``"actor.crashed"``.
        source: name of what published it (an actor's name, a lane, an agent id).
        data: event-specific fields.
        ts: monotonic time of publication.
    """

    key: str
    source: str
    data: Mapping[str, Any] = attrs.field(factory=dict)
    ts: float = 0.0


_new_event = object.__new__
_set_key, _set_source, _set_data, _set_ts = (Event.__dict__[name].__set__ for name in ("key", "source", "data", "ts"))


class _KeyOnly:
    """A filter that looks only at the key, so the bus may resolve it once per distinct key.

    ``prefixes`` None matches every key; ``exclude`` keys (exact or dotted prefixes) never match.
    """

    __slots__ = ("dotted", "everything", "ex_dotted", "ex_exact", "exact")

    def __init__(self, prefixes: tuple[str, ...] | None, exclude: tuple[str, ...] = ()) -> None:
        self.everything = prefixes is None
        self.exact = frozenset(prefixes or ())
        self.dotted = tuple(p + "." for p in prefixes or ())
        self.ex_exact = frozenset(exclude)
        self.ex_dotted = tuple(p + "." for p in exclude)

    def matches_key(self, k: str) -> bool:
        if k in self.ex_exact or k.startswith(self.ex_dotted):
            return False
        return self.everything or k in self.exact or k.startswith(self.dotted)

    def __call__(self, e: Event) -> bool:
        return self.matches_key(e.key)


def _make_predicate(filter: Any, exclude: Any = ()) -> Callable[[Event], bool]:
    """Turn a filter spec into a predicate.

    A string matches the key exactly or as a dotted prefix (``"queue"`` matches
    ``"queue.command.started"``); an iterable of strings matches any of them;
    a callable is used as is; None matches everything. ``exclude`` (keys or
    dotted prefixes, with a key filter or None only) removes keys from the match.
    """
    excluded = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    if excluded and (callable(filter) or not all(isinstance(x, str) and x for x in excluded)):
        raise ConfigError(f"exclude takes non-empty event keys or dotted prefixes, with a key filter or None "
                          f"(not a predicate); got exclude={exclude!r} with filter={filter!r}")
    if filter is None:
        return _KeyOnly(None, excluded) if excluded else _ALL
    if callable(filter):
        return filter
    return _KeyOnly((filter,) if isinstance(filter, str) else tuple(filter), excluded)


def _all(e: Event) -> bool:
    return True


_ALL: Callable[[Event], bool] = _all
#: More distinct keys than this are matched per event instead of cached (keys are meant to be a small set).
_ROUTE_CACHE_MAX = 4096


class Subscription:
    """A bounded queue of events matching a filter, readable sync or async.

    When a slow reader lets the queue fill, the oldest events are dropped and
    counted in :attr:`dropped` (and logged once), so memory stays bounded.

    Example:
        >>> bus = EventBus()
        >>> with bus.subscribe("actor") as sub:
        ...     bus.publish("actor.started", "counter")
        ...     sub.get(timeout=1).key
        'actor.started'
    """

    def __init__(self, bus: EventBus, predicate: Callable[[Event], bool], maxsize: int) -> None:
        self._bus = bus
        self._match = predicate
        self._maxsize = maxsize
        self._items: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._wakeups = LoopWakeups()
        self.dropped = 0
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self._match(event):
            self._put(event)

    def _put(self, event: Event) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("event subscription full (%d); dropping oldest events", self._maxsize)
            self._items.append(event)
            self._cond.notify()
            waiters = self._wakeups.take() if self._wakeups else None
        if waiters:
            LoopWakeups.wake(waiters)

    def get(self, timeout: float | None = None) -> Event:
        """Next event, blocking up to ``timeout`` seconds; raises ``TimeoutError``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self.closed, timeout):
                raise TimeoutError(f"no event within {timeout}s")
            if not self._items:
                raise StopIteration
            return self._items.popleft()

    def get_nowait(self) -> Event | None:
        """Next event if one is queued, else None."""
        with self._cond:
            return self._items.popleft() if self._items else None

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """Consume events until one satisfies ``predicate``; raises ``TimeoutError`` at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event within {timeout}s")
            event = self.get(timeout=left)
            if predicate(event):
                return event

    def drain(self) -> list[Event]:
        """Everything queued now, without waiting."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if self.closed:
                    raise StopAsyncIteration
                fut = self._wakeups.add()
            await fut

    def close(self) -> None:
        """Stop receiving; blocked readers see the end of the stream."""
        self._bus._remove(self)
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            waiters = self._wakeups.take() if self._wakeups else None
        if waiters:
            LoopWakeups.wake(waiters)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Publish/subscribe hub for one orchestrator.

    Listeners (callbacks) run in the publisher's thread and must be quick;
    their exceptions are logged, never propagated into the runtime.
    Subscriptions queue events for a reader in another thread or task.

    Example:
        >>> bus = EventBus()
        >>> seen = []
        >>> remove = bus.add_listener(seen.append, "queue")
        >>> bus.publish("queue.lane.idle", "prompt")
        >>> [e.key for e in seen]
        ['queue.lane.idle']
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._now = clock
        self._lock = threading.Lock()
        # Copy-on-write tuples: publish reads them without taking the lock.
        self._subs: tuple[Subscription, ...] = ()
        self._listeners: tuple[tuple[Callable[[Event], bool], Callable[[Event], None]], ...] = ()
        # Per key, who gets its events: filters on the key alone are resolved once per key,
        # so a publish pays neither their predicates nor, when no one wants the key, an Event.
        # Replaced (never mutated) whenever subscribers change.
        self._routes: dict[str, tuple[tuple[Callable[[Event], bool] | None, Callable[[Event], None]], ...]] = {}
        #: True when anyone listens; hot paths may skip building event data (or asking
        #: :meth:`wants`) otherwise. An attribute, kept up to date by (un)subscribing: no call to read it.
        self.active = False

    def _changed_locked(self) -> None:
        """Subscribers or listeners changed (under ``_lock``): forget the routes, update :attr:`active`."""
        self._routes = {}
        self.active = bool(self._subs or self._listeners)

    def wants(self, key: str) -> bool:
        """True when some subscriber or listener would get an event with this key.

        Finer than :attr:`active`: a hot path checks its own key before building
        the event's data, so a listener on other keys costs it nothing.
        """
        if not (self._subs or self._listeners):
            return False
        routes = self._routes
        route = routes.get(key)
        if route is None:
            route = self._route(routes, key)
        return bool(route)

    def publish(self, key: str, source: str, **data: Any) -> None:
        """Publish an event to every matching subscription and listener."""
        if self._subs or self._listeners:
            self.publish_dict(key, source, data)

    def publish_dict(self, key: str, source: str, data: dict[str, Any]) -> None:
        """Like :meth:`publish` with the fields as a dict the event takes over (not copied).

        For hot paths that build the fields anyway: it saves packing them as
        keywords. The caller must not change ``data`` afterwards.
        """
        routes = self._routes
        route = routes.get(key)
        if route is None:
            route = self._route(routes, key)
        if not route:
            return
        # Event(key, source, data, ts) without the frozen class's __init__ (a setattr call per
        # field): the slots set directly, as that __init__ would; three events per lane command.
        event = _new_event(Event)
        _set_key(event, key)
        _set_source(event, source)
        _set_data(event, data)
        _set_ts(event, self._now())
        for match, fn in route:
            try:
                # A user's filter or listener that raises is logged: publishing never fails its publisher.
                if match is None or match(event):
                    fn(event)
            except Exception:
                log.exception("event listener %r raised on %s", fn, key)

    def _route(self, routes: dict[str, Any], key: str) -> tuple[tuple[Callable[[Event], bool] | None, Callable[[Event], None]], ...]:
        # ``routes`` was read before the subscribers: were they replaced in between, this
        # entry lands in a dict already discarded, never a stale one in the current dict.
        subs, listeners = self._subs, self._listeners
        out: list[tuple[Callable[[Event], bool] | None, Callable[[Event], None]]] = []
        for match, fn in [(s._match, s._put) for s in subs] + list(listeners):
            if match is _ALL:
                out.append((None, fn))
            elif isinstance(match, _KeyOnly):
                if match.matches_key(key):
                    out.append((None, fn))
            else:
                out.append((match, fn))
        route = tuple(out)
        if len(routes) < _ROUTE_CACHE_MAX:
            routes[key] = route
        return route

    def subscribe(self, filter: Any = None, *, maxsize: int = 10_000) -> Subscription:
        """Queue matching events for a reader; close the subscription when done.

        Args:
            filter: a key or dotted prefix, several of them, a predicate, or None for all.
            maxsize: bound of the queue; the oldest events are dropped past it.
        """
        sub = Subscription(self, _make_predicate(filter), maxsize)
        with self._lock:
            self._subs = self._subs + (sub,)
            self._changed_locked()
        return sub

    def add_listener(self, fn: Callable[[Event], None], filter: Any = None, *,
                     exclude: Any = ()) -> Callable[[], None]:
        """Call ``fn(event)`` for each matching event; returns a function that removes it.

        Args:
            fn: called in the publisher's thread; must be quick.
            filter: a key or dotted prefix, several of them, a predicate, or None for all.
            exclude: keys or dotted prefixes never passed to ``fn`` (with a key filter or None).
                Resolved per key like the filter, so publishers of those keys skip building events.

        Raises:
            ConfigError: ``exclude`` with a predicate filter, or not made of non-empty strings.
        """
        entry = (_make_predicate(filter, exclude), fn)
        with self._lock:
            self._listeners = self._listeners + (entry,)
            self._changed_locked()

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not entry)
                self._changed_locked()

        return remove

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
            self._changed_locked()
