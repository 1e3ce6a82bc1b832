"""The system-wide dead-letter queue: where work that cannot run ends, with its reason."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

import attrs
import cloudpickle

from laneway.errors import ConfigError, LanewayError

if TYPE_CHECKING:
    from laneway.core._events import EventBus
    from laneway.store import Store

log = logging.getLogger(__name__)

_NAMESPACE = "dead_letters"


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
    """

    id: str
    source: str
    reason: str
    attempts: int = 0
    error: str = ""
    work_id: str = ""
    payload: Any = None
    ts: float = 0.0


class DeadLetterQueue:
    """Letters from every component, optionally persisted in a store.

    Components that can run a letter again register a resubmitter for their
    source; :meth:`resubmit` removes the letter and hands its payload back.

    Example:
        >>> dlq = DeadLetterQueue()
        >>> letter = dlq.put("pool", "worker pid 7 killed by SIGKILL", attempts=3)
        >>> [l.reason for l in dlq.list("pool")]
        ['worker pid 7 killed by SIGKILL']
    """

    def __init__(self, store: Store | None = None, events: EventBus | None = None) -> None:
        self._store = store
        self._events = events
        self._lock = threading.Lock()
        self._letters: dict[str, DeadLetter] = {}
        self._resubmitters: dict[str, Callable[[DeadLetter], Any]] = {}
        if store is not None:
            for _, blob in store.items(_NAMESPACE):
                try:
                    letter = cloudpickle.loads(blob)
                except Exception:
                    log.exception("unreadable dead letter in store; kept in the store untouched")
                    continue
                self._letters[letter.id] = letter

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
        """Record a letter (persisting it first when a store is set) and publish ``dead_letter.added``."""
        letter = DeadLetter(
            id=f"dl-{uuid.uuid4().hex[:12]}",
            source=source,
            reason=reason,
            attempts=attempts,
            error=error if isinstance(error, str) else ("" if error is None else repr(error)),
            work_id=work_id,
            payload=payload,
            ts=time.time(),
        )
        if self._store is not None:
            try:
                blob = cloudpickle.dumps(letter)
            except Exception:
                letter = attrs.evolve(letter, payload=repr(payload))
                blob = cloudpickle.dumps(letter)
            self._store.put(_NAMESPACE, letter.id, blob)
        with self._lock:
            self._letters[letter.id] = letter
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
        with self._lock:
            self._letters[letter.id] = letter
        if self._store is not None:
            self._store.put(_NAMESPACE, letter.id, cloudpickle.dumps(letter))

    def __len__(self) -> int:
        with self._lock:
            return len(self._letters)
