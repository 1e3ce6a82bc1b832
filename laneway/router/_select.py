"""The routing decision: agents indexed by capability and role, and the strategies that pick one.

Everything here is owned by the router actor's thread and needs no locks.
The index keeps one set of agents per capability, one per role, and the set
of agents eligible right now (under their limit, breaker admitting), so a
decision is a few C-level set intersections plus one pass over the survivors,
not a scan of every agent.
"""

from __future__ import annotations

import itertools
import logging
import operator
import random
from typing import Any, Callable

from laneway.actors import ActorRef
from laneway.breakers import BreakerState, CircuitBreaker
from laneway.router._records import AgentInfo, RoutingStrategy
from laneway.router._roles import AlphaRole

log = logging.getLogger(__name__)

_LATENCY_ALPHA = 0.2  # weight of the newest sample in the latency moving average
_MIN_LATENCY_S = 1e-6


class AgentSlot:
    """One registered agent as the router sees it: definition, breaker and live counters."""

    __slots__ = (
        "agent_id", "role", "capabilities", "max_concurrent", "weight", "seq", "invoker", "breaker", "breaker_ref",
        "in_flight", "completed", "failed", "rejected", "latency_sum", "latency_n", "ewma", "last_pick", "rank",
        "removed", "down", "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        agent_id: str,
        role: AlphaRole,
        capabilities: frozenset[str],
        max_concurrent: int,
        *,
        weight: float = 1.0,
        seq: int = 0,
        invoker: Any = None,
        breaker: CircuitBreaker | None = None,
        breaker_ref: ActorRef | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.role = role
        self.capabilities = capabilities
        self.max_concurrent = max_concurrent
        self.weight = weight
        self.seq = seq
        self.invoker = invoker
        self.breaker = breaker if breaker is not None else CircuitBreaker(agent_id)
        self.breaker_ref = breaker_ref
        self.in_flight = 0
        self.completed = 0
        self.failed = 0
        self.rejected = 0
        self.latency_sum = 0.0
        self.latency_n = 0
        self.ewma: float | None = None
        self.last_pick = 0
        self.rank: tuple[float, int] = (0.0, 0)
        self.removed = False
        self.down = False  # its breaker actor is not running (restarting, or its supervisor gave up)

    def __repr__(self) -> str:
        return f"<AgentSlot {self.agent_id} {self.in_flight}/{self.max_concurrent} {self.breaker.state.value}>"

    def eligible(self) -> bool:
        """Under its limit and its breaker would admit a call (half-open: only when nothing is out)."""
        if self.down:
            return False
        state = self.breaker.state
        if state is BreakerState.CLOSED:
            return self.in_flight < self.max_concurrent
        if state is BreakerState.HALF_OPEN:
            return self.in_flight == 0 and self.breaker.admits()
        return False

    def update_rank(self) -> None:
        self.rank = (self.in_flight / self.max_concurrent, self.last_pick)

    def observe_latency(self, latency_s: float) -> None:
        self.latency_sum += latency_s
        self.latency_n += 1
        self.ewma = latency_s if self.ewma is None else self.ewma + _LATENCY_ALPHA * (latency_s - self.ewma)

    def info(self) -> AgentInfo:
        return AgentInfo(
            agent_id=self.agent_id,
            role=self.role,
            capabilities=self.capabilities,
            max_concurrent=self.max_concurrent,
            in_flight=self.in_flight,
            load=self.in_flight / self.max_concurrent,
            completed=self.completed,
            failed=self.failed,
            rejected=self.rejected,
            breaker=self.breaker.state,
            mean_latency_s=self.latency_sum / self.latency_n if self.latency_n else None,
            cpu_bound=bool(getattr(self.invoker, "cpu_bound", False)),
            weight=self.weight,
        )


class AgentIndex:
    """Agents by capability and role, plus the set eligible now.

    Example:
        >>> index = AgentIndex()
        >>> index.add(AgentSlot("a", AlphaRole.ANALYZER, frozenset({"sql", "py"}), 2))
        >>> index.add(AgentSlot("b", AlphaRole.EXECUTOR, frozenset({"py"}), 1))
        >>> sorted(s.agent_id for s in index.eligible(frozenset({"py"}), None))
        ['a', 'b']
        >>> pick(RoutingStrategy.LEAST_BUSY, index.eligible(frozenset({"sql"}), None)).agent_id
        'a'
    """

    def __init__(self) -> None:
        self.slots: dict[str, AgentSlot] = {}
        self._by_cap: dict[str, set[AgentSlot]] = {}
        self._by_role: dict[AlphaRole, set[AgentSlot]] = {}
        self._free: set[AgentSlot] = set()
        self._picks = itertools.count(1)

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, slot: AgentSlot) -> None:
        self.slots[slot.agent_id] = slot
        for cap in slot.capabilities:
            self._by_cap.setdefault(cap, set()).add(slot)
        self._by_role.setdefault(slot.role, set()).add(slot)
        self.refresh(slot)

    def remove(self, slot: AgentSlot) -> None:
        slot.removed = True
        self.slots.pop(slot.agent_id, None)
        for cap in slot.capabilities:
            members = self._by_cap.get(cap)
            if members is not None:
                members.discard(slot)
                if not members:
                    del self._by_cap[cap]
        self._by_role.get(slot.role, set()).discard(slot)
        self._free.discard(slot)

    def refresh(self, slot: AgentSlot) -> None:
        """Re-evaluate one agent's eligibility after its load or breaker changed."""
        if not slot.removed and slot.eligible():
            self._free.add(slot)
        else:
            self._free.discard(slot)

    def note_pick(self, slot: AgentSlot) -> None:
        slot.last_pick = next(self._picks)
        slot.update_rank()

    def _sets(self, capabilities: frozenset[str], role: AlphaRole | None) -> list[set[AgentSlot]] | None:
        sets = []
        for cap in capabilities:
            members = self._by_cap.get(cap)
            if not members:
                return None
            sets.append(members)
        if role is not None:
            members = self._by_role.get(role)
            if not members:
                return None
            sets.append(members)
        return sets

    def has_capable(self, capabilities: frozenset[str], role: AlphaRole | None) -> bool:
        """Whether any agent, eligible or not, has all ``capabilities`` (and the role)."""
        sets = self._sets(capabilities, role)
        if sets is None:
            return False
        if not sets:
            return bool(self.slots)
        sets.sort(key=len)
        return bool(sets[0].intersection(*sets[1:]))

    def eligible(self, capabilities: frozenset[str], role: AlphaRole | None) -> set[AgentSlot]:
        """Agents eligible now that have all ``capabilities`` and, if given, the role (a new set)."""
        sets = self._sets(capabilities, role)
        if sets is None:
            return set()
        sets.append(self._free)
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:])


_BY_RANK: Callable[[AgentSlot], Any] = operator.attrgetter("rank")
_BY_LAST_PICK: Callable[[AgentSlot], Any] = operator.attrgetter("last_pick")


def pick(strategy: RoutingStrategy, candidates: set[AgentSlot], rng: random.Random | None = None) -> AgentSlot:
    """Choose one of ``candidates`` (non-empty) by ``strategy``."""
    if strategy is RoutingStrategy.LEAST_BUSY:
        return min(candidates, key=_BY_RANK)
    if strategy is RoutingStrategy.ROUND_ROBIN:
        return min(candidates, key=_BY_LAST_PICK)
    rng = rng or random.Random()
    population = list(candidates)
    if len(population) == 1:
        return population[0]
    if strategy is RoutingStrategy.RANDOM:
        if all(s.weight == population[0].weight for s in population):
            return rng.choice(population)
        return rng.choices(population, weights=[s.weight for s in population])[0]
    known = [s.ewma for s in population if s.ewma is not None]
    # Agents without samples yet are assumed average, so they get tried and measured.
    assumed = sum(known) / len(known) if known else 1.0
    weights = [s.weight / max(s.ewma if s.ewma is not None else assumed, _MIN_LATENCY_S) for s in population]
    return rng.choices(population, weights=weights)[0]
