"""The system-wide dead-letter queue: where work that cannot run ends, with its reason."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback as _tb
import uuid
from typing import TYPE_CHECKING, Any, Callable

import attrs

from laneway.errors import ConfigError, LanewayError

if TYPE_CHECKING:
    from laneway.core._events import EventBus
    from laneway.store import Store

log = logging.getLogger(__name__)

_NAMESPACE = "dead_letters"

#: Default most letters kept (in memory and in the store). Letters are small
#: records, so 10,000 keeps hours of a bad outage for an operator to inspect
#: while bounding the memory and store a dead-letter storm can take.
DEFAULT_DEAD_LETTER_CAPACITY = 10_000


@attrs.frozen
class DeadLetter:
    """One piece of work that ended without a result.

    Attributes:
        id: unique id of the letter.
        source: the component that gave up on it, e.g. ``"pool"`` or ``"lane:prompt"``.
        reason: why, in words (``"worker pid 1234 killed by SIGKILL"``).
        attempts: how many times it was tried.
        error: ``repr`` of the last error, if any.
        work_id: the id the component knew the work by (task or command id).
        payload: what is needed to re-submit it (component-specific).
        ts: wall-clock time it was dead-lettered (for humans).
        traceback: the last error's traceback as text: the worker's own for a remote
            error, else the local one ("" when there was none).
    """

    id: str
    source: str
    reason: str
    attempts: int = 0
    error: str = ""
    work_id: str = ""
    payload: Any = None
    ts: float = 0.0
    traceback: str = ""


#: Most characters of a traceback kept in a letter (a deep recursion must not bloat the store).
_TRACEBACK_MAX = 20_000


def _traceback_text(error: BaseException | str | None) -> str:
    if not isinstance(error, BaseException):
        return ""
    text = getattr(error, "remote_traceback", "") or ""
    if not text and error.__traceback__ is not None:
        text = "".join(_tb.format_exception(error))
    return text if len(text) <= _TRACEBACK_MAX else "...\n" + text[-_TRACEBACK_MAX:]


class DeadLetterQueue:
    """Letters from every component, optionally persisted in a store, at most ``capacity`` of them.

    Components that can run a letter again register a resubmitter for their
    source; :meth:`resubmit` removes the letter and hands its payload back.
    When the queue is full, a new letter evicts the oldest one (from memory
    and the store together), which is logged and published as
    ``dead_letter.evicted`` (``letter_id``, ``work_id``, ``reason``,
    ``evicted_by``), so nothing leaves silently.

    Args:
        store: where letters persist (they are read back on construction); None keeps them in memory.
        events: the bus ``dead_letter.added`` / ``dead_letter.evicted`` go to.
        capacity: most letters kept, an int >= 1 (default :data:`DEFAULT_DEAD_LETTER_CAPACITY`, 10,000).

    Raises:
        ConfigError: ``capacity`` is not an int >= 1.

    Example:
        >>> dlq = DeadLetterQueue(capacity=2)
        >>> letter = dlq.put("pool", "worker pid 7 killed by SIGKILL", attempts=3)
        >>> [l.reason for l in dlq.list("pool")]
        ['worker pid 7 killed by SIGKILL']
    """

    def __init__(
        self, store: Store | None = None, events: EventBus | None = None, *, capacity: int = DEFAULT_DEAD_LETTER_CAPACITY
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"dead-letter capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._store = store
        self._events = events
        self._lock = threading.Lock()
        self._letters: dict[str, DeadLetter] = {}
        self._resubmitters: dict[str, Callable[[DeadLetter], Any]] = {}
        if store is not None:
            # cloudpickle only where letters are stored: without a store, importing it would only slow start-up.
            import cloudpickle

            for _, blob in store.items(_NAMESPACE):
                try:
                    letter = cloudpickle.loads(blob)
                except Exception:
                    log.exception("unreadable dead letter in store; kept in the store untouched")
                    continue
                self._letters[letter.id] = letter
            # A store written with a larger capacity: keep the newest.
            with self._lock:
                evicted = self._evict_locked(0, None)
            self._announce_evicted(evicted, None)

    def _evict_locked(self, room: int, new: DeadLetter | None, blob: bytes = b"") -> list[DeadLetter]:
        """Drop the oldest letters so ``room`` more fit; store and memory change together (lock held)."""
        excess = len(self._letters) + room - self.capacity
        victims = list(itertools.islice(self._letters.values(), max(0, excess)))
        if self._store is not None and (victims or new is not None):
            with self._store.transaction():
                if new is not None:
                    self._store.put(_NAMESPACE, new.id, blob)
                for victim in victims:
                    self._store.delete(_NAMESPACE, victim.id)
        for victim in victims:
            del self._letters[victim.id]
        if new is not None:
            self._letters[new.id] = new
        return victims

    def _announce_evicted(self, victims: list[DeadLetter], by: DeadLetter | None) -> None:
        for victim in victims:
            log.warning(
                "dead-letter queue full (capacity %d): evicted %s from %s (%s)",
                self.capacity, victim.id, victim.source, victim.reason,
            )  # fmt: skip
            if self._events is not None:
                self._events.publish(
                    "dead_letter.evicted", victim.source, letter_id=victim.id, work_id=victim.work_id,
                    reason=victim.reason, evicted_by=None if by is None else by.id,
                )  # fmt: skip

    def put(
        self,
        source: str,
        reason: str,
        *,
        attempts: int = 0,
        error: BaseException | str | None = None,
        work_id: str = "",
        payload: Any = None,
    ) -> DeadLetter:
        """Record a letter (persisting it when a store is set) and publish ``dead_letter.added``.

        A full queue first evicts its oldest letter (see the class docs).
        """
        letter = DeadLetter(
            id=f"dl-{uuid.uuid4().hex[:12]}",
            source=source,
            reason=reason,
            attempts=attempts,
            error=error if isinstance(error, str) else ("" if error is None else repr(error)),
            work_id=work_id,
            payload=payload,
            ts=time.time(),
            traceback=_traceback_text(error),
        )
        blob = b""
        if self._store is not None:
            import cloudpickle

            try:
                blob = cloudpickle.dumps(letter)
            except Exception:
                letter = attrs.evolve(letter, payload=repr(payload))
                blob = cloudpickle.dumps(letter)
        with self._lock:
            evicted = self._evict_locked(1, letter, blob)
        self._announce_evicted(evicted, letter)
        log.warning("dead letter from %s: %s (%s)", source, reason, work_id)
        if self._events is not None:
            self._events.publish(
                "dead_letter.added", source, letter_id=letter.id, work_id=work_id, reason=reason, attempts=attempts
            )
        return letter

    def list(self, source: str | None = None) -> list[DeadLetter]:
        """Letters, oldest first; only those of ``source`` when given (a prefix ending in ':' matches a family)."""
        with self._lock:
            letters = list(self._letters.values())
        if source is None:
            return letters
        if source.endswith(":"):
            return [x for x in letters if x.source.startswith(source)]
        return [x for x in letters if x.source == source]

    def get(self, letter_id: str) -> DeadLetter:
        with self._lock:
            try:
                return self._letters[letter_id]
            except KeyError:
                raise LookupError(f"no dead letter {letter_id!r}") from None

    def remove(self, letter_id: str) -> DeadLetter:
        """Delete a letter and return it."""
        with self._lock:
            letter = self._letters.pop(letter_id, None)
        if letter is None:
            raise LookupError(f"no dead letter {letter_id!r}")
        if self._store is not None:
            self._store.delete(_NAMESPACE, letter_id)
        return letter

    def register_resubmitter(self, source_prefix: str, fn: Callable[[DeadLetter], Any]) -> None:
        """Let letters whose source starts with ``source_prefix`` be re-submitted through ``fn``."""
        with self._lock:
            self._resubmitters[source_prefix] = fn

    def resubmit(self, letter_id: str) -> Any:
        """Remove the letter and run it again through its component; returns what the component returns."""
        letter = self.get(letter_id)
        with self._lock:
            fn = next(
                (f for p, f in sorted(self._resubmitters.items(), key=lambda x: -len(x[0])) if letter.source.startswith(p)),
                None,
            )
        if fn is None:
            raise ConfigError(f"dead letter {letter_id} from {letter.source!r} has no component that can resubmit it")
        self.remove(letter_id)
        try:
            return fn(letter)
        except LanewayError:
            self._restore(letter)
            raise

    def _restore(self, letter: DeadLetter) -> None:
        blob = b""
        if self._store is not None:
            import cloudpickle

            blob = cloudpickle.dumps(letter)
        with self._lock:
            evicted = self._evict_locked(1, letter, blob)
        self._announce_evicted(evicted, letter)

    def __len__(self) -> int:
        with self._lock:
            return len(self._letters)
