"""Pending commands in a store, so queued work survives a crash of the whole process.

A command is written before ``submit`` returns and deleted when it reaches a
final state, so a process killed with SIGKILL leaves exactly its unfinished
commands behind; the next manager on the same store queues them again. Tools
are stored by registered name (and defining module, imported on recovery),
never as pickled code. Runs in progress at the crash are re-run once more,
counted as an attempt.
"""

from __future__ import annotations

import logging
import pickle
import threading
from typing import TYPE_CHECKING, Any

import cloudpickle

from laneway.lanes._records import CommandState

if TYPE_CHECKING:
    from laneway.actors import DeadLetter, DeadLetterQueue
    from laneway.lanes._command import Command
    from laneway.store import Store

log = logging.getLogger(__name__)

NAMESPACE = "lanes.pending"
_LIVE = (CommandState.QUEUED, CommandState.RUNNING, CommandState.RETRY_WAIT)


class PendingStore:
    """Reads and writes the ``lanes.pending`` namespace of a :class:`~laneway.store.Store`."""

    def __init__(self, store: Store, *, shares_dead_letters: bool) -> None:
        self.store = store
        # True when the orchestrator's dead-letter queue writes to this same store,
        # so moving a command there can be one transaction.
        self._atomic = shares_dead_letters
        # Writes of one command come from different threads (the run's thread records the
        # attempt, whoever ends it deletes it); this lock orders a late attempt record after
        # the delete, where it sees the final state and writes nothing.
        self._io = threading.Lock()

    def save(self, cmd: Command) -> None:
        """Write (or overwrite) the command's record; raises StoreError or a pickling error."""
        blob = cloudpickle.dumps(cmd.payload())
        with self._io:
            self.store.put(NAMESPACE, cmd.id, blob)

    def record_attempt(self, cmd: Command) -> None:
        """Rewrite the record with the new attempt count, unless the command already ended."""
        try:
            blob = cloudpickle.dumps(cmd.payload())
            with self._io:
                if cmd.state in _LIVE:
                    self.store.put(NAMESPACE, cmd.id, blob)
        except Exception:
            # Not fatal: after a crash the run would count one attempt fewer.
            log.exception("could not record the attempt of command %s in the store", cmd.id)

    def delete(self, command_id: str) -> None:
        try:
            with self._io:
                self.store.delete(NAMESPACE, command_id)
        except Exception:
            # The command already finished; at worst it runs again after a restart.
            log.exception("could not delete finished command %s from the store", command_id)

    def load(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Every stored record, oldest first; None for a record that cannot be read."""
        out: list[tuple[str, dict[str, Any] | None]] = []
        for key, blob in self.store.items(NAMESPACE):
            try:
                out.append((key, pickle.loads(blob)))
            except Exception:
                log.exception("unreadable pending command %s in the store", key)
                out.append((key, None))
        return out

    def move_to_dead_letters(self, dlq: DeadLetterQueue, cmd: Command, source: str, reason: str,
                             error: BaseException | str) -> DeadLetter:
        """Dead-letter the command and drop its pending record, atomically when the DLQ shares the store."""
        if self._atomic:
            with self._io, self.store.transaction():
                letter = dlq.put(source, reason, attempts=cmd.attempts, error=error, work_id=cmd.id, payload=cmd.payload())
                self.store.delete(NAMESPACE, cmd.id)
            return letter
        letter = dlq.put(source, reason, attempts=cmd.attempts, error=error, work_id=cmd.id, payload=cmd.payload())
        self.delete(cmd.id)
        return letter
