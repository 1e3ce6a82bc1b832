"""A lane's queue: round-robin across callers, priority levels then FIFO inside one caller.

Not thread-safe: the lane manager's scheduler lock guards it. Removal and
re-prioritisation are lazy (stale entries are skipped when they come up), so
cancel and deadline boosts are O(1) and O(log n).

Inside one caller, each level is a FIFO deque: commands arrive in submission
order (their ``seq`` only grows), so appending keeps each deque sorted and the
head is the oldest, with no heap and no comparisons on the hot path. An entry
that arrives out of order (a deadline boost moves a command to a better level;
a preempted command is queued again with its old ``seq``) goes to a small heap
of its own instead, and a pop takes whichever of the two heads is older.

Nearly always, though, a lane's queue holds the commands of one caller at one
level, pushed in ``seq`` order (a burst of the default caller's NORMAL
commands). While that holds the queue is a single deque, the "run": push is an
append and pop a popleft, without the caller turns and the per-level counts.
The first push that breaks it (another caller, another level, an older
``seq``) or a promotion moves the run into the general structure, exactly as
that structure would hold it, and everything goes as before until the queue
empties; the next push starts a run again.
"""

from __future__ import annotations

import collections
import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from laneway.lanes._command import Command
    from laneway.lanes._tools import ToolSpec

_LEVELS = 5
_heappush, _heappop = heapq.heappush, heapq.heappop


class _CallerQueue:
    __slots__ = ("fifo", "late", "live", "per_level")

    def __init__(self) -> None:
        self.fifo: list[collections.deque[Command]] = [collections.deque() for _ in range(_LEVELS)]
        self.late: list[tuple[int, int, Command]] = []  # (level, seq, command) that came out of order
        self.live = 0
        self.per_level = [0] * _LEVELS

    def add(self, level: int, cmd: Command) -> None:
        fifo = self.fifo[level]
        if not fifo or fifo[-1].seq < cmd.seq:
            fifo.append(cmd)
        else:
            _heappush(self.late, (level, cmd.seq, cmd))

    def take(self) -> Command | None:
        """Remove and return the best live entry (None if there is none: then ``live`` is 0)."""
        late = self.late
        head: Command | None
        while late:  # drop stale heads: what follows compares live entries only
            level, seq, head = late[0]
            if head.queued and head.level == level and head.seq == seq:
                break
            _heappop(late)
        for level, count in enumerate(self.per_level):
            if not count:
                continue
            fifo = self.fifo[level]
            while fifo:
                head = fifo[0]
                if head.queued and head.level == level:
                    break
                fifo.popleft()  # stale: cancelled or moved to a better level
            else:
                head = None
            if late and late[0][0] == level and (head is None or late[0][1] < head.seq):
                return _heappop(late)[2]
            if head is not None:
                return fifo.popleft()
            # Counted but not found (a command marked not queued without a discard): look further.
        return None

    def clear(self) -> None:
        for fifo in self.fifo:
            fifo.clear()
        self.late.clear()
        self.live = 0
        if any(self.per_level):
            self.per_level[:] = [0] * _LEVELS


class FairQueue:
    """Queued commands of one lane.

    Callers take turns (one heavy caller cannot starve the others); inside
    one caller's queue the lower level (higher priority) goes first, and
    equal levels go in submission order.
    """

    __slots__ = ("_callers", "size", "_spare", "_run", "_run_caller", "_run_level")

    def __init__(self) -> None:
        # Insertion order is the round-robin order: the first caller is served next.
        self._callers: dict[str, _CallerQueue] = {}
        self.size = 0  # live commands queued (read by the scheduler's hot path without a call)
        # Emptied caller queues for reuse: a caller's queue empties and comes back all the time
        # when a lane keeps up with its callers. Bounded, so many one-off callers leave no trail.
        self._spare: list[_CallerQueue] = []
        # The run (see the module docstring): used while _callers is empty. Besides the size
        # live commands of _run_caller at _run_level it may hold stale (discarded) entries.
        self._run: collections.deque[Command] = collections.deque()
        self._run_caller = ""
        self._run_level = -1  # -1 while the general structure is in use: no push matches the run

    def __len__(self) -> int:
        return self.size

    def push(self, cmd: Command) -> int:
        """Queue ``cmd`` (its ``level`` and ``seq`` set); returns what :meth:`estimate` said just before."""
        size = self.size
        if not size:  # empty: a new run
            run = self._run
            if run:
                run.clear()  # what is left is stale
            run.append(cmd)
            self._run_caller = cmd.caller
            self._run_level = cmd.level
            self.size = 1
            return 0
        if cmd.caller == self._run_caller and cmd.level == self._run_level:
            run = self._run
            if run[-1].seq < cmd.seq:
                run.append(cmd)
                self.size = size + 1
                return size  # every queued command is this caller's at this level: all go first
        callers = self._callers
        if not callers:
            self._to_general()
        level = cmd.level
        cq = callers.get(cmd.caller)
        if cq is None:
            ahead = 0
            others = len(callers)
            cq = callers[cmd.caller] = self._spare.pop() if self._spare else _CallerQueue()
        else:
            per_level = cq.per_level
            ahead = per_level[0] + per_level[1] + per_level[2] if level == 2 else sum(per_level[: level + 1])
            others = len(callers) - 1
        if others:  # estimate's round-robin share of the other callers
            ahead += sum(min(q.live, ahead + 1) for q in callers.values() if q is not cq)
        fifo = cq.fifo[level]  # _CallerQueue.add, inline (every queued command comes through here)
        if not fifo or fifo[-1].seq < cmd.seq:
            fifo.append(cmd)
        else:
            _heappush(cq.late, (level, cmd.seq, cmd))
        cq.live += 1
        cq.per_level[level] += 1
        self.size += 1
        return ahead

    def estimate(self, caller: str, level: int) -> int:
        """How many queued commands would go before a new one of ``caller`` at ``level``."""
        if not self.size:
            return 0
        if not self._callers:  # the run: one caller at one level
            if caller != self._run_caller:
                return 1  # one turn of that caller
            return self.size if level >= self._run_level else 0
        own = self._callers.get(caller)
        # Same-caller commands at an equal or better level, plus one turn of
        # every other caller per own command ahead (round-robin), capped by
        # what that caller has queued.
        ahead = sum(own.per_level[: level + 1]) if own is not None else 0
        if own is not None and len(self._callers) == 1:
            return ahead
        others = sum(min(cq.live, ahead + 1) for cq in self._callers.values() if cq is not own)
        return ahead + others

    def pop(self) -> Command | None:
        """Take the next command: the first caller in turn, its best command; None if empty."""
        callers = self._callers
        if not callers:  # the run (or nothing)
            run, level = self._run, self._run_level
            while run:
                head = run.popleft()
                if head.queued and head.level == level:  # else stale: discarded
                    self.size -= 1
                    return head
            # Counted but not found (a command marked not queued without a discard): empty now,
            # and push's fast path may rely on a non-empty run when size is not 0.
            self.size = 0
            return None
        while callers:
            caller, cq = next(iter(callers.items()))
            cmd = cq.take()
            if cmd is not None:
                cq.live -= 1
                cq.per_level[cmd.level] -= 1
                self.size -= 1
            else:
                cq.live = 0
            if not cq.live:
                del callers[caller]
                self._retire(cq)
            elif len(callers) > 1:
                del callers[caller]
                callers[caller] = cq  # to the back of the round
            if cmd is not None:
                return cmd
        return None

    def pop_many(self, limit: int) -> list[Command]:
        """Take up to ``limit`` commands in :meth:`pop`'s order, marked not queued; a parallel group's
        placeholder (``batch`` set) ends the list, as the lane turns to group mode after it."""
        taken: list[Command] = []
        if not self._callers:  # the run: pop's loop, once for all of them
            run, level = self._run, self._run_level
            while run and len(taken) < limit:
                head = run.popleft()
                if head.queued and head.level == level:  # else stale: discarded
                    head.queued = False
                    taken.append(head)
                    if head.batch is not None:
                        break
            # An emptied run holds nothing live: see pop for a command marked not queued without a discard.
            self.size = self.size - len(taken) if run else 0
            return taken
        while len(taken) < limit:
            cmd = self.pop()
            if cmd is None:
                break
            cmd.queued = False
            taken.append(cmd)
            if cmd.batch is not None:
                break
        return taken

    def head_spec(self) -> ToolSpec | None:
        """The tool of the command :meth:`pop` takes next, if the queue is a run (None: empty, or not a run)."""
        if self._callers:
            return None
        run, level = self._run, self._run_level
        while run:
            head = run[0]
            if head.queued and head.level == level:
                return head.spec
            run.popleft()  # stale: discarded
        return None

    def pop_chain(self, limit: int, spec: ToolSpec) -> list[Command]:
        """Take up to ``limit`` commands of tool ``spec`` from the head of the run, marked not queued, while
        they are plain (not preemptible, no deadline, not a group's placeholder); none outside a run.

        What :meth:`pop_many` would take next, as long as it stays so: the queue of a lane that
        chains runs (see ``LaneCore.fill_lane_locked``) holds one caller's commands at one level.
        """
        taken: list[Command] = []
        if self._callers:
            return taken
        run, level = self._run, self._run_level
        while run and len(taken) < limit:
            head = run[0]
            if not (head.queued and head.level == level):
                run.popleft()  # stale: discarded
                continue
            if head.spec is not spec or head.preemptible or head.deadline_s is not None or head.batch is not None:
                break
            run.popleft()
            head.queued = False
            taken.append(head)
        # An emptied run holds nothing live (see pop).
        self.size = self.size - len(taken) if run else 0
        return taken

    def _to_general(self) -> None:
        """Move the run into the general structure as if it had always been there: its caller's queue."""
        cq = self._spare.pop() if self._spare else _CallerQueue()
        level = self._run_level
        cq.fifo[level], self._run = self._run, cq.fifo[level]  # an emptied queue's FIFOs are empty
        cq.live = cq.per_level[level] = self.size
        self._callers[self._run_caller] = cq
        self._run_level = -1

    def _retire(self, cq: _CallerQueue) -> None:
        """Keep an emptied caller queue for reuse; what is left in it is stale."""
        if len(self._spare) < 8:
            cq.clear()
            self._spare.append(cq)

    def discard(self, cmd: Command) -> None:
        """Account for ``cmd`` leaving the queue other than by :meth:`pop` (call before marking it not queued)."""
        if not self._callers:  # the run: its entry stays, skipped as stale when it comes up
            if self.size and cmd.caller == self._run_caller:
                self.size -= 1
            return
        cq = self._callers.get(cmd.caller)
        if cq is None:
            return
        cq.live -= 1
        cq.per_level[cmd.level] -= 1
        self.size -= 1
        if cq.live == 0:
            del self._callers[cmd.caller]
            self._retire(cq)

    def promote(self, cmd: Command, level: int) -> None:
        """Move a queued command to ``level`` (keeps its submission order within the new level)."""
        if not self._callers:
            self._to_general()
        cq = self._callers[cmd.caller]
        cq.per_level[cmd.level] -= 1
        cq.per_level[level] += 1
        cmd.level = level
        cq.add(level, cmd)
