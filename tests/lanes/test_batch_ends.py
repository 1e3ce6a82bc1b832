"""The end of a worker's batch: plain completions are counted once per lane, the other runs one by one, nothing lost.

The runs here are held instead of executed (the executors' launch is replaced), and each test
ends them itself, in batches of its choosing, as a worker thread would: one critical section
that records the batch's outcomes, then dispatches. With a manual clock every latency, run
time and rate is known.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from laneway.core import Outbox
from laneway.errors import CommandCancelled
from laneway.lanes import LaneStatus, RetryPolicy, current_token
from laneway.lanes._command import Run
from laneway.lanes._executors import Executors
from laneway.lanes._metrics import InMemoryLaneMetrics, LaneReading

from tests.lanes.support import WAIT, lane, start_lanes


def echo(x: str) -> str:  # registered, never run: the tests end its runs themselves
    return x


class HeldRuns:
    """A manager whose started runs wait here, to be ended by :meth:`end` in batches."""

    def __init__(self, lanes: Any) -> None:
        self.lanes = lanes
        self.core = lanes._core
        self.started: dict[str, Run] = {}
        self.core.executors.launch_locked = lambda run: self.started.__setitem__(run.cmd.id, run)

    def end(self, outcomes: list[tuple[Any, bool, Any]]) -> None:
        """End the runs of ``(handle, ok, value)`` in one batch, then dispatch, as a worker thread does."""
        with self.core.box:
            batch = [(self.started.pop(h.command_id), ok, value) for h, ok, value in outcomes]
            self.core.outcomes.end_runs_locked(batch)
            self.core.dispatch_locked()


def test_a_batch_mixing_lanes_failures_a_retry_a_cancelled_run_and_plain_ones_keeps_every_count(morch, clock):
    lanes = start_lanes(morch, [lane("a", 0, max_concurrency=4, min_concurrency=2),
                                lane("b", 1, max_concurrency=4, min_concurrency=1),
                                lane("c", 2, max_concurrency=4, min_concurrency=1)])
    lanes.tools.register(echo, name="echo")
    held = HeldRuns(lanes)
    core = held.core
    assert core.reserved == 4
    t0 = clock.now()

    def submit(name: str, **kw: Any) -> Any:
        return lanes.submit(name[0], "echo", {"x": name}, command_id=name, **kw)

    a = {n: submit(n) for n in ("a1", "a2", "a3", "a4")}
    b = {"b1": submit("b1"), "b2": submit("b2", retry=RetryPolicy.fixed(1, 0.0)),
         "b3": submit("b3", retry=RetryPolicy.none()), "b4": submit("b4", timeout=1000.0)}
    c = {"c1": submit("c1"), "c2": submit("c2"), "c3": submit("c3", preemptible=True), "c4": submit("c4")}
    clock.advance(1)
    a.update(a5=submit("a5"), a6=submit("a6"))  # lane a is full: these two queue
    assert sorted(held.started) == sorted([*("a1", "a2", "a3", "a4"), *b, *c])
    assert core.running == 12 and core.reserved == 0

    clock.advance(4)
    assert lanes.cancel(c["c1"].command_id, "changed my mind")  # its run goes on, superseded
    a["a2"].future.prepare_wait()  # a caller sleeps on a2 (what LaneManager.call arms)
    # Every kind of end in one batch, lanes interleaved. Lane a's plain runs come in two stretches, the
    # second of two runs that take it from 2 running to none (2 below its minimum of 2); lane c's
    # plain stretch takes it from 2 to none (1 below its minimum of 1).
    held.end([(a["a1"], True, "a1"), (a["a2"], True, "a2"), (b["b1"], True, "b1"), (b["b4"], True, "b4"),
              (a["a3"], True, "a3"), (a["a4"], True, "a4"), (c["c3"], True, "c3"), (c["c1"], True, "late"),
              (c["c2"], True, "c2"), (c["c4"], True, "c4"), (b["b2"], False, ValueError("flaky")),
              (b["b3"], False, KeyError("gone"))])
    # Dispatch after the batch started a5, a6 and b2's second attempt (its retry has no delay).
    assert sorted(held.started) == ["a5", "a6", "b2"]
    assert core.running == 3
    assert a["a2"].future.wait_prepared(WAIT) == "a2"

    clock.advance(2)
    held.end([(a["a5"], True, "a5"), (a["a6"], True, "a6"), (b["b2"], True, "b2")])

    assert lanes.drain(WAIT).drained
    for name, h in {**a, **b, **c}.items():
        if name == "b3":
            with pytest.raises(KeyError):
                h.result(timeout=WAIT)
        elif name == "c1":
            with pytest.raises(CommandCancelled):
                h.result(timeout=WAIT)
        else:
            assert h.result(timeout=WAIT) == name
    assert not core.commands and not held.started
    assert (core.running, core.reserved) == (0, 4)  # every slot kept for a lane below its minimum is back
    assert [letter.work_id for letter in lanes.dead_letters("b")] == ["b3"]
    now = clock.now()
    expected = {  # completed, failed, retried, dead-lettered, cancelled; latencies; idle since
        "a": (6, 0, 0, 0, 0, [5.0, 5.0, 5.0, 5.0, 6.0, 6.0], 7.0),
        "b": (3, 1, 1, 1, 0, [5.0, 5.0, 7.0], 7.0),
        "c": (3, 0, 0, 0, 1, [5.0, 5.0, 5.0], 5.0),
    }
    for name, (completed, failed, retried, dead, cancelled, latencies, idle) in expected.items():
        s = lanes.lane_stats(name)
        assert (s.completed, s.failed, s.retried, s.dead_lettered, s.cancelled) == (completed, failed, retried,
                                                                                     dead, cancelled), name
        assert (s.pending, s.active, s.oldest_queued_age_s) == (0, 0, 0.0), name
        assert s.throughput_per_s == pytest.approx(completed / (now - t0)), name
        assert sorted(core.lanes[name].recorder.latencies.samples()) == latencies, name
        assert lanes.status(name).status is LaneStatus.IDLE, name
        assert core.lanes[name].idle_since == t0 + idle, name
    # The run-time average behind ETAs: lane a's runs took 5 s (a1-a4) then 2 s (a5, a6).
    assert core.lanes["a"].run_ewma == pytest.approx(5.0 + (1 - 0.8 ** 2) * (2.0 - 5.0))


def test_lanes_at_their_caps_hand_the_slots_a_batch_frees_to_their_own_next_commands(morch, clock):
    # Every lane with work at its cap (a burst's case): each lane's ends start its own next commands
    # at once, best first, and the lane never enters the scheduler's priority buckets on the way.
    lanes = start_lanes(morch, [lane("a", 0, max_concurrency=2), lane("b", 1, max_concurrency=2)])
    lanes.tools.register(echo, name="echo")
    held = HeldRuns(lanes)
    core = held.core
    h = {n: lanes.submit(n[0], "echo", {"x": n}, command_id=n) for n in ("a1", "a2", "a3", "a4", "b1", "b2", "b3")}
    assert sorted(held.started) == ["a1", "a2", "b1", "b2"]
    entered: list[str] = []
    touch = core.touch

    def watched(lane_: Any) -> None:
        touch(lane_)
        if lane_.in_turn:
            entered.append(lane_.name)

    core.touch = watched  # type: ignore[method-assign]
    held.end([(h["b1"], True, "b1"), (h["a1"], True, "a1"), (h["a2"], True, "a2")])
    assert sorted(held.started) == ["a3", "a4", "b2", "b3"]
    assert entered == []  # no lane waited in a bucket: each took its freed slots straight away
    assert (core.running, core.lanes["a"].active, core.lanes["b"].active) == (4, 2, 2)
    assert (core.lanes["a"].pending, core.lanes["b"].pending) == (0, 0)
    held.end([(h[n], True, n) for n in ("a3", "a4", "b2", "b3")])
    assert lanes.drain(WAIT).drained
    assert {n: f.result(timeout=WAIT) for n, f in h.items()} == {n: n for n in h}
    assert core.lanes["a"].completed == 4 and core.lanes["b"].completed == 3


def test_a_freed_worker_goes_to_the_best_lane_waiting_for_one_not_back_to_the_lane_that_freed_it(morch, clock):
    # Three workers for two lanes of three slots each: lane a (the better one) has room and work but
    # no worker. A run of lane b that ends frees a worker, and a's next command takes it, not b's.
    lanes = start_lanes(morch, [lane("a", 0, max_concurrency=3), lane("b", 1, max_concurrency=3)], max_workers=3)
    lanes.tools.register(echo, name="echo")
    held = HeldRuns(lanes)
    core = held.core
    h = {n: lanes.submit(n[0], "echo", {"x": n}, command_id=n) for n in ("b1", "b2", "a1", "a2", "b3")}
    assert sorted(held.started) == ["a1", "b1", "b2"] and core.running == 3
    held.end([(h["b1"], True, "b1")])
    assert sorted(held.started) == ["a1", "a2", "b2"]  # b3 still waits: a came first
    held.end([(h["b2"], True, "b2")])
    assert sorted(held.started) == ["a1", "a2", "b3"]  # a has nothing queued now: b's turn
    held.end([(h[n], True, n) for n in ("a1", "a2", "b3")])
    assert lanes.drain(WAIT).drained
    assert {n: f.result(timeout=WAIT) for n, f in h.items()} == {n: n for n in h}


def test_a_lane_filling_its_slots_leaves_the_workers_kept_for_lanes_below_their_minimum(morch, clock):
    # Four workers; lane b keeps two of them (its minimum) while it has nothing to run, lane a one.
    lanes = start_lanes(morch, [lane("a", 0, max_concurrency=4, min_concurrency=1),
                                lane("b", 1, max_concurrency=2, min_concurrency=2)], max_workers=4)
    lanes.tools.register(echo, name="echo")
    held = HeldRuns(lanes)
    core = held.core
    assert core.reserved == 3
    h = {n: lanes.submit(n[0], "echo", {"x": n}, command_id=n) for n in ("a1", "a2", "a3", "a4", "a5")}
    assert sorted(held.started) == ["a1", "a2"]  # its own kept worker and the one nobody keeps
    h.update({n: lanes.submit("b", "echo", {"x": n}, command_id=n) for n in ("b1", "b2")})
    assert sorted(held.started) == ["a1", "a2", "b1", "b2"]  # b's kept workers were free for it
    held.end([(h["a1"], True, "a1"), (h["b1"], True, "b1")])
    assert sorted(held.started) == ["a2", "a3", "b2"]  # b1's worker stays kept for b (below its minimum)
    held.end([(h[n], True, n) for n in ("a2", "a3", "b2")])
    assert sorted(held.started) == ["a4", "a5"]  # as at first: b keeps its two, with nothing queued
    held.end([(h[n], True, n) for n in ("a4", "a5")])
    assert lanes.drain(WAIT).drained
    assert {n: f.result(timeout=WAIT) for n, f in h.items()} == {n: n for n in h}
    assert (core.running, core.reserved) == (0, 3)


class Reported(InMemoryLaneMetrics):
    """The in-memory backend behind a recorder of another type: completions come one call each."""

    def __init__(self) -> None:
        super().__init__()
        self.completions: list[tuple[str, float, float]] = []

    def recorder(self, name: str, now: float) -> Any:
        inner = super().recorder(name, now)
        completions = self.completions

        class Rec:
            def queue_length(self, pending: int) -> None:
                inner.queue_length(pending)

            def completed(self, latency_s: float, now: float) -> None:
                completions.append((name, latency_s, now))
                inner.completed(latency_s, now)

            def read(self, now: float) -> LaneReading:
                return inner.read(now)

        return Rec()


def test_a_batch_reports_each_completion_to_a_backend_of_its_own_in_order(morch, clock):
    metrics = Reported()
    lanes = start_lanes(morch, [lane("a", 0, max_concurrency=4), lane("b", 1, max_concurrency=4)], metrics=metrics)
    lanes.tools.register(echo, name="echo")
    held = HeldRuns(lanes)
    t0 = clock.now()
    handles = []
    for i, name in enumerate(["a", "a", "b", "a", "b"]):
        handles.append(lanes.submit(name, "echo", {"x": str(i)}))
        clock.advance(1)
    held.end([(h, True, str(i)) for i, h in enumerate(handles)])
    assert [h.result(timeout=WAIT) for h in handles] == ["0", "1", "2", "3", "4"]
    end = t0 + 5
    assert metrics.completions == [("a", 5.0, end), ("a", 4.0, end), ("b", 3.0, end), ("a", 2.0, end), ("b", 1.0, end)]
    assert (lanes.lane_stats("a").completed, lanes.lane_stats("b").completed) == (3, 2)
    assert lanes.lane_stats("a").latency_p50_s == 4.0


def test_each_run_of_a_batch_sees_its_own_token_and_no_other_code_sees_one():
    seen: dict[str, Any] = {}

    def tool(tag: str) -> str:
        seen[tag] = current_token()
        return tag

    announced: list[Any] = []
    ended: list[Any] = []
    box = Outbox("test-batch-ends")
    done = threading.Event()

    def end(outcomes: list[tuple[Any, bool, Any]]) -> None:
        ended.extend((run, ok, value, current_token()) for run, ok, value in outcomes)
        done.set()

    ex = Executors(box, end_runs_locked=end, dispatch_locked=lambda: None, finish=lambda run, ok, value: None,
                   launch_failed=lambda run, exc: None, announce=lambda run: announced.append(current_token()),
                   unstart_locked=lambda run: None, pool=lambda: None)
    spec = SimpleNamespace(name="tool", fn=tool, is_async=False, cpu_bound=False, takes_token=False)
    ex._tool_s[spec.name] = 0.0  # fast: one thread takes them all in one batch
    lane_ = SimpleNamespace(config=SimpleNamespace(priority=0), name="lane")
    runs = [Run(SimpleNamespace(id=f"r{i}", spec=spec, params={"tag": f"r{i}"}, lane=lane_, level=2,
                                durable=False), 1, 0.0)  # type: ignore[arg-type]
            for i in range(4)]
    try:
        with box:
            for run in runs:
                ex.launch_locked(run)
        assert done.wait(WAIT)
    finally:
        ex.stop(WAIT)
    assert [(run, ok, value) for run, ok, value, _ in ended] == [(run, True, f"r{i}") for i, run in enumerate(runs)]
    assert all(seen[f"r{i}"] is run for i, run in enumerate(runs))  # each tool saw its own run's token
    assert announced == [None] * 4  # an announcement sees no run's token
    assert [token for *_, token in ended] == [None] * 4  # nor does the thread after its batch
