"""Progress streams: observables of a long task's state, with bounded buffering per subscriber.

A producer calls :meth:`ProgressStream.update` with the fields that changed;
subscribers receive ``delta`` events (only the keys whose value changed), a
full ``snapshot`` every ``snapshot_every`` updates, and one final ``complete``
or ``error``. A subscriber that reads slower than the producer writes never
costs unbounded memory: when its buffer is full, everything buffered is folded
into one snapshot of the current state, so the reader skips intermediate
steps but never sees a wrong state.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
from typing import Any, AsyncIterator, Iterator, Mapping

import attrs

from laneway.core._future import Future
from laneway.errors import ConfigError, LanewayTimeout
from laneway.core._wakeups import LoopWakeups

log = logging.getLogger(__name__)


class ProgressKind(enum.Enum):
    """What a :class:`ProgressEvent` carries."""

    DELTA = "delta"  #: only the keys that changed since the previous update
    SNAPSHOT = "snapshot"  #: the full state
    COMPLETE = "complete"  #: the task finished; ``result`` holds its result
    ERROR = "error"  #: the task failed; ``error`` holds the exception


TERMINAL = frozenset({ProgressKind.COMPLETE, ProgressKind.ERROR})


@attrs.frozen(slots=True)
class ProgressEvent:
    """One event of a progress stream.

    Attributes:
        kind: delta, snapshot, complete or error.
        seq: number of the update this event reflects (1, 2, ...).
        data: the changed keys (delta) or the full state (snapshot, complete, error).
        result: the task's result (complete only).
        error: the task's exception (error only).
        folded: for a snapshot made because the reader fell behind, how many
            buffered events it replaced; 0 otherwise.
    """

    kind: ProgressKind
    seq: int
    data: Mapping[str, Any]
    result: Any = None
    error: BaseException | None = None
    folded: int = 0

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL


@attrs.frozen
class ProgressStatistics:
    """Counters of a :class:`ProgressStream`."""

    updates: int
    subscribers: int
    folded: int  #: events folded into snapshots for slow readers, over all subscribers
    done: bool


def _changed(old: Any, new: Any) -> bool:
    if old is new:
        return False
    try:
        return not bool(old == new)
    except Exception:  # e.g. array-like values whose == is element-wise
        return True


_MISSING = object()


class ProgressSubscription:
    """One reader's bounded buffer of a :class:`ProgressStream`; iterate it sync or async.

    Iteration ends after the terminal event (``complete`` or ``error``), which
    is yielded. Get one from :meth:`ProgressStream.subscribe`.
    """

    def __init__(self, stream: ProgressStream, buffer_size: int) -> None:
        self._stream = stream
        self._size = buffer_size
        self._items: collections.deque[ProgressEvent] = collections.deque()
        self._cond = threading.Condition()
        self._wakeups = LoopWakeups()
        self._finished = False  # the terminal event was read
        self.folded = 0
        self.closed = False

    def _offer(self, event: ProgressEvent, state: Mapping[str, Any] | None) -> None:
        """Queue ``event``; ``state`` is the stream's state after it (for folding)."""
        with self._cond:
            if self.closed:
                return
            if not event.terminal and len(self._items) >= self._size:
                replaced = len(self._items) + 1
                self._items.clear()
                self.folded += replaced
                self._stream._count_folded(replaced)
                event = ProgressEvent(ProgressKind.SNAPSHOT, event.seq, dict(state or {}), folded=replaced)
            self._items.append(event)
            self._cond.notify_all()
            waiters = self._wakeups.take() if self._wakeups else None
        if waiters:
            LoopWakeups.wake(waiters)

    def pending(self) -> int:
        """How many events are buffered now."""
        with self._cond:
            return len(self._items)

    def get(self, timeout: float | None = None) -> ProgressEvent:
        """The next event, waiting up to ``timeout`` seconds.

        Raises:
            LanewayTimeout: nothing arrived in time.
            StopIteration: the terminal event was already read, or the subscription is closed.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._finished or self.closed, timeout):
                raise LanewayTimeout(f"no progress event from {self._stream.name!r} within {timeout}s")
            return self._take()

    def _take(self) -> ProgressEvent:
        if not self._items:
            raise StopIteration
        event = self._items.popleft()
        if event.terminal:
            self._finished = True
        return event

    def __iter__(self) -> Iterator[ProgressEvent]:
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    def __aiter__(self) -> AsyncIterator[ProgressEvent]:
        return self

    async def __anext__(self) -> ProgressEvent:
        while True:
            with self._cond:
                if self._items or self._finished or self.closed:
                    try:
                        return self._take()
                    except StopIteration:
                        raise StopAsyncIteration from None
                fut = self._wakeups.add()
            await fut

    def close(self) -> None:
        """Stop receiving; blocked readers see the end of the stream."""
        self._stream._remove(self)
        with self._cond:
            self.closed = True
            self._items.clear()
            self._cond.notify_all()
            waiters = self._wakeups.take() if self._wakeups else None
        if waiters:
            LoopWakeups.wake(waiters)

    def __enter__(self) -> ProgressSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressStream:
    """An observable of one long task's progress.

    Args:
        name: what the stream reports on (a task or workflow id), used in messages.
        snapshot_every: every N-th update is sent as a full snapshot instead of a delta.
        buffer_size: default bound of each subscriber's buffer, in events.

    Example:
        >>> stream = ProgressStream("crawl", snapshot_every=3)
        >>> sub = stream.subscribe()
        >>> stream.update(pages=1, total=10)
        >>> stream.update(pages=2, total=10)
        >>> stream.complete("done")
        >>> [(e.kind.value, dict(e.data)) for e in sub]
        [('delta', {'pages': 1, 'total': 10}), ('delta', {'pages': 2}), ('complete', {'pages': 2, 'total': 10})]
    """

    def __init__(self, name: str = "", *, snapshot_every: int = 10, buffer_size: int = 100) -> None:
        if not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise ConfigError(f"snapshot_every must be an int >= 1, got {snapshot_every!r}")
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ConfigError(f"buffer_size must be an int >= 1, got {buffer_size!r}")
        self.name = name
        self.snapshot_every = snapshot_every
        self.buffer_size = buffer_size
        self.future: Future[Any] = Future()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self._seq = 0
        self._subs: tuple[ProgressSubscription, ...] = ()
        self._folded = 0
        self._terminal: ProgressEvent | None = None

    def __repr__(self) -> str:
        return f"<ProgressStream {self.name!r} seq={self._seq}{' done' if self.done else ''}>"

    @property
    def done(self) -> bool:
        return self._terminal is not None

    def state(self) -> dict[str, Any]:
        """A copy of the current full state."""
        with self._lock:
            return dict(self._state)

    def update(self, changes: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        """Merge ``changes`` and ``fields`` into the state and notify subscribers.

        Keys whose value did not change are left out of the delta; an update
        that changes nothing sends nothing. Values are kept by reference:
        replace them, never mutate them after passing them in. Updates after
        the stream completed are ignored.
        """
        merged = {**(changes or {}), **fields}
        with self._lock:
            if self._terminal is not None:
                return
            delta = {k: v for k, v in merged.items() if _changed(self._state.get(k, _MISSING), v)}
            if not delta:
                return
            self._state.update(delta)
            self._seq += 1
            if self._seq % self.snapshot_every == 0:
                event = ProgressEvent(ProgressKind.SNAPSHOT, self._seq, dict(self._state))
            else:
                event = ProgressEvent(ProgressKind.DELTA, self._seq, delta)
            # Offer while holding the stream lock so every subscriber sees
            # events in seq order; _offer only touches the subscriber's deque.
            for sub in self._subs:
                sub._offer(event, self._state)

    def complete(self, result: Any = None) -> None:
        """End the stream successfully with ``result`` (first terminal call wins)."""
        self._finish(ProgressKind.COMPLETE, result=result)

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error`` (first terminal call wins)."""
        self._finish(ProgressKind.ERROR, error=error)

    def _finish(self, kind: ProgressKind, *, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._terminal is not None:
                return
            event = self._terminal = ProgressEvent(kind, self._seq, dict(self._state), result=result, error=error)
            for sub in self._subs:
                sub._offer(event, None)
            self._subs = ()  # each keeps its own buffer; nothing more will be offered
        self.future.settle(result=result, error=error)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the terminal event; return the result or raise the error."""
        return self.future.get(timeout)

    def subscribe(self, *, buffer_size: int | None = None) -> ProgressSubscription:
        """A new reader; it first gets a snapshot of the state so far (if any), then live events."""
        size = self.buffer_size if buffer_size is None else buffer_size
        if not isinstance(size, int) or size < 1:
            raise ConfigError(f"buffer_size must be an int >= 1, got {size!r}")
        sub = ProgressSubscription(self, size)
        with self._lock:
            if self._seq:
                sub._offer(ProgressEvent(ProgressKind.SNAPSHOT, self._seq, dict(self._state)), self._state)
            if self._terminal is not None:
                sub._offer(self._terminal, None)
            else:
                self._subs = self._subs + (sub,)
        return sub

    def __iter__(self) -> Iterator[ProgressEvent]:
        with self.subscribe() as sub:
            yield from sub

    async def __aiter__(self) -> AsyncIterator[ProgressEvent]:
        with self.subscribe() as sub:
            async for event in sub:
                yield event

    def _remove(self, sub: ProgressSubscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def _count_folded(self, n: int) -> None:
        self._folded += n  # called under self._lock (from update)

    def statistics(self) -> ProgressStatistics:
        """Counters: updates so far, live subscribers, folded events."""
        with self._lock:
            return ProgressStatistics(self._seq, len(self._subs), self._folded, self._terminal is not None)
