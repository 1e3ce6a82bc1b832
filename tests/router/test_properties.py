"""Property tests: never route to an agent lacking a capability, in another role, or over its limit."""

from __future__ import annotations

import random
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laneway import Orchestrator
from laneway.actors import ManualClock
from laneway.breakers import BreakerConfig, BreakerState, CircuitBreaker
from laneway.errors import NoCapableAgent
from laneway.lanes import RetryPolicy
from laneway.router import AgentIndex, AgentSlot, AlphaRole, RoutingStrategy, pick

CAPS = ["sql", "py", "web", "pdf", "gpu", "ocr"]
ROLES = [AlphaRole.ANALYZER, AlphaRole.EXECUTOR, AlphaRole.VALIDATOR]

agent_specs = st.lists(
    st.tuples(
        st.frozensets(st.sampled_from(CAPS), max_size=4),
        st.sampled_from(ROLES),
        st.integers(1, 3),  # max_concurrent
        st.integers(0, 3),  # in flight (capped at max below)
        st.sampled_from(list(BreakerState)),
    ),
    max_size=12,
)
requirements = st.tuples(st.frozensets(st.sampled_from(CAPS), max_size=3), st.one_of(st.none(), st.sampled_from(ROLES)))


def build(specs, clock):
    index = AgentIndex()
    for n, (caps, role, limit, in_flight, state) in enumerate(specs):
        breaker = CircuitBreaker(f"a{n}", BreakerConfig(reset_timeout_s=1), clock=clock)
        if state is not BreakerState.CLOSED:
            breaker.trip()
        slot = AgentSlot(f"a{n}", role, caps, limit, seq=n, breaker=breaker)
        slot.in_flight = min(in_flight, limit)
        slot.update_rank()
        index.add(slot)
    clock.advance(1)
    for slot, spec in zip(index.slots.values(), specs):
        if spec[4] is BreakerState.HALF_OPEN:
            slot.breaker.tick()
        index.refresh(slot)
    return index


def naive(index, caps, role):
    """The obvious linear scan the index must agree with."""
    out = set()
    for slot in index.slots.values():
        state = slot.breaker.state
        under = slot.in_flight < slot.max_concurrent if state is BreakerState.CLOSED else slot.in_flight == 0
        if caps <= slot.capabilities and (role is None or slot.role is role) and state is not BreakerState.OPEN and under:
            out.add(slot)
    return out


@settings(max_examples=300, deadline=None)
@given(agent_specs, requirements, st.sampled_from(list(RoutingStrategy)), st.integers(0, 2**32))
def test_the_index_agrees_with_a_linear_scan_and_every_pick_is_valid(specs, requirement, strategy, seed):
    caps, role = requirement
    index = build(specs, ManualClock())
    eligible = index.eligible(caps, role)
    assert eligible == naive(index, caps, role)
    assert index.has_capable(caps, role) == any(
        caps <= s.capabilities and (role is None or s.role is role) for s in index.slots.values()
    )
    if eligible:
        chosen = pick(strategy, eligible, random.Random(seed))
        assert caps <= chosen.capabilities
        assert role is None or chosen.role is role
        assert chosen.in_flight < chosen.max_concurrent
        assert chosen.breaker.state is not BreakerState.OPEN


class Recorder:
    """Wraps every agent's handler: checks capability, role and concurrency from inside the agent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.violations: list[str] = []
        self.release = threading.Event()
        self.entered = threading.Condition(self.lock)
        self.count = 0

    def handler(self, agent_id, caps, role, limit):
        def run(payload):
            need, wanted_role = payload
            with self.lock:
                self.count += 1
                self.entered.notify_all()
                self.active[agent_id] = self.active.get(agent_id, 0) + 1
                if self.active[agent_id] > limit:
                    self.violations.append(f"{agent_id} ran {self.active[agent_id]} > {limit}")
                if not need <= caps:
                    self.violations.append(f"{agent_id} lacks {sorted(need - caps)}")
                if wanted_role is not None and wanted_role is not role:
                    self.violations.append(f"{agent_id} is not {wanted_role}")
            try:
                assert self.release.wait(20)
            finally:
                with self.lock:
                    self.active[agent_id] -= 1
            return agent_id

        return run


live_agents = st.lists(
    st.tuples(st.frozensets(st.sampled_from(CAPS[:4]), min_size=1, max_size=3), st.sampled_from(ROLES), st.integers(1, 3)),
    min_size=1,
    max_size=5,
)
live_tasks = st.lists(
    st.tuples(st.frozensets(st.sampled_from(CAPS[:4]), max_size=2), st.one_of(st.none(), st.sampled_from(ROLES))),
    min_size=1,
    max_size=20,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(live_agents, live_tasks, st.sampled_from(list(RoutingStrategy)))
def test_a_live_router_never_breaks_capability_role_or_limits(agents, tasks, strategy):
    recorder = Recorder()
    with Orchestrator(name="prop", ask_timeout=20) as orch:
        router = orch.start_router(strategy=strategy, seed=1)
        for n, (caps, role, limit) in enumerate(agents):
            router.register_agent(f"a{n}", role, caps, limit, recorder.handler(f"a{n}", caps, role, limit))
        futures = [(need, role, router.submit((need, role), capabilities=need, role=role, retry=RetryPolicy.none())) for need, role in tasks]
        # Everyone that can run is now blocked inside a handler; the rest wait in the router.
        # (agents() is answered after every submit was routed: one mailbox, in order.)
        infos = router.agents()
        for info in infos:
            assert info.in_flight <= info.max_concurrent
        with recorder.lock:
            dispatched = sum(i.in_flight for i in infos)
            assert recorder.entered.wait_for(lambda: recorder.count >= dispatched, 20)
        recorder.release.set()
        for need, role, fut in futures:
            capable = [f"a{n}" for n, (caps, r, _) in enumerate(agents) if need <= caps and (role is None or r is role)]
            if capable:
                assert fut.get(20) in capable
            else:
                assert isinstance(fut.exception(20), NoCapableAgent)
    assert recorder.violations == []
