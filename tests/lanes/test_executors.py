"""The executors' thread pool: ready runs best first, batches of fast runs, blocked batches handed back."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from laneway.core import Outbox
from laneway.lanes._command import Run
from laneway.lanes import _executors as executors
from laneway.lanes._executors import Executors

from tests.lanes.support import WAIT, lane, start_lanes
from tests.waiting import wait_until


class Harness:
    """Executors with recording callbacks and runs of stand-in commands (only what the sync path reads)."""

    def __init__(self, fn: Callable[..., Any], announce: Callable[[Any], None] = lambda run: None) -> None:
        self.box = Outbox("test-executors")
        self.ended: list[str] = []
        self.dispatches = 0
        self.unstarted: list[Any] = []  # runs handed back to their lane's queue
        self.cond = threading.Condition()
        self.ex = Executors(self.box, end_runs_locked=self._end, dispatch_locked=self._dispatch,
                            finish=lambda run, ok, value: None, launch_failed=lambda run, exc: None,
                            announce=announce, unstart_locked=self.unstarted.append, pool=lambda: None)
        self.spec = SimpleNamespace(name="tool", fn=fn, is_async=False, cpu_bound=False, takes_token=False)

    def fast(self) -> None:
        # As if the tool's recent runs took no time (what a few warm-up runs would show).
        self.ex._tool_s[self.spec.name] = 0.0

    def run(self, tag: str, lane_priority: int, level: int = 2) -> Any:
        lane = SimpleNamespace(config=SimpleNamespace(priority=lane_priority), name=f"lane{lane_priority}")
        cmd = SimpleNamespace(id=tag, spec=self.spec, params={"tag": tag}, lane=lane, level=level,
                              future=SimpleNamespace(wait_gate=None))
        return Run(cmd, 1, 0.0)  # type: ignore[arg-type]  # a stand-in command

    def _end(self, outcomes: list[tuple[Any, bool, Any]]) -> None:
        with self.cond:
            for _, ok, value in outcomes:
                assert ok, value
                self.ended.append(value)
            self.cond.notify_all()

    def wait_ended(self, tags: list[str]) -> list[str]:
        """The ended tags once they are ``tags`` (in any order), or what ended by the deadline."""
        with self.cond:
            self.cond.wait_for(lambda: sorted(self.ended) == sorted(tags), WAIT)
            return list(self.ended)

    def _dispatch(self) -> None:
        self.dispatches += 1

    def launch(self, runs: list[Any]) -> None:
        """Launch ``runs`` in one critical section: none can be taken before the last is ready."""
        with self.box:
            for run in runs:
                self.ex.launch_locked(run)

    def close(self) -> None:
        self.ex.stop(WAIT)


@pytest.fixture
def started() -> Any:
    made: list[Harness] = []
    yield made
    for h in made:
        h.close()


def test_a_thread_takes_the_ready_runs_best_priority_first(started):
    order: list[str] = []
    h = Harness(lambda tag: order.append(tag) or tag)
    started.append(h)
    h.fast()
    # Launched worst first: lane priority decides, then the command's level, then arrival.
    h.launch([h.run("lane5", 5), h.run("lane3-normal", 3), h.run("lane0-normal", 0), h.run("lane3-high", 3, level=1),
              h.run("lane0-critical", 0, level=0), h.run("lane3-normal-2", 3)])
    h.wait_ended(["lane5", "lane3-normal", "lane0-normal", "lane3-high", "lane0-critical", "lane3-normal-2"])
    assert order == ["lane0-critical", "lane0-normal", "lane3-high", "lane3-normal", "lane3-normal-2", "lane5"]


def test_a_thread_ends_a_batch_of_fast_runs_in_one_critical_section(started):
    h = Harness(lambda tag: tag)
    started.append(h)
    h.fast()
    tags = [f"r{i}" for i in range(8)]
    h.launch([h.run(tag, 2) for tag in tags])
    assert sorted(h.wait_ended(tags)) == sorted(tags)
    # One thread took all eight (fast, launched together) and recorded their ends together:
    # one dispatch for the batch, not one per run.
    assert h.dispatches == 1
    assert h.ex.thread_count == 1


def test_runs_batched_behind_a_blocked_fast_tool_go_to_another_thread(started):
    gate = threading.Event()

    def tool(tag: str) -> str:
        if tag == "blocks":
            assert gate.wait(WAIT)
        return tag

    h = Harness(tool)
    started.append(h)
    h.fast()
    h.launch([h.run("blocks", 0, level=0), h.run("a", 0), h.run("b", 0)])
    # The thread that took all three is stuck in the first: the fallback hands the other two
    # back, and a helper runs them while it is still blocked.
    assert sorted(h.wait_ended(["a", "b"])) == ["a", "b"]
    gate.set()
    assert sorted(h.wait_ended(["a", "b", "blocks"])) == ["a", "b", "blocks"]


def test_a_run_whose_announcement_fails_still_runs_and_so_do_the_runs_after_it(started, caplog):
    def announce(run: Any) -> None:
        if run.cmd.id == "a":
            raise OSError("store is read-only")

    h = Harness(lambda tag: tag, announce)
    started.append(h)
    h.fast()
    h.launch([h.run("a", 0), h.run("b", 0)])
    assert sorted(h.wait_ended(["a", "b"])) == ["a", "b"]
    assert "announcing command a failed" in caplog.text


class Dispatching(Harness):
    """A harness whose dispatch (run by the thread that just ended a batch) launches the next runs."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__(fn)
        self.next: list[Any] = []
        self.fail_dispatch = False

    def _dispatch(self) -> None:
        super()._dispatch()
        runs, self.next = self.next, []
        for run in runs:
            self.ex.launch_locked(run)
        if runs and self.fail_dispatch:
            raise RuntimeError("dispatch failed after starting runs")


def test_runs_started_by_a_dispatch_that_then_fails_still_run(started, caplog):
    h = Dispatching(lambda tag: tag)
    started.append(h)
    h.fast()
    h.fail_dispatch = True
    h.next = [h.run("a", 0), h.run("b", 0)]
    h.launch([h.run("first", 0)])
    # The runs the failed dispatch had started are held by nobody else: the thread runs them.
    assert sorted(h.wait_ended(["first", "a", "b"])) == ["a", "b", "first"]
    assert "dispatching after a run failed" in caplog.text


def _one_idle_thread(h: Harness) -> None:
    """Start the harness's first thread with one run and wait until it is idle again."""
    h.launch([h.run("warm", 2)])
    assert h.wait_ended(["warm"]) == ["warm"]
    wait_until(lambda: h.ex._idle, WAIT, "the thread to go idle")


def test_a_thread_woken_early_is_handed_the_run_launched_next(started):
    h = Harness(lambda tag: tag)
    started.append(h)
    h.fast()
    _one_idle_thread(h)
    h.ex.wake_early()  # what a submit that will wait on its result does before it builds the command
    assert not h.ex._idle  # the thread is on its way already
    with h.box:
        h.ex.launch_locked(h.run("call", 2))
        assert not h.ex._ready  # handed to the woken thread, not queued for one
    assert h.wait_ended(["warm", "call"]) == ["warm", "call"]
    assert h.ex.thread_count == 1


def test_a_thread_woken_early_for_a_run_that_never_comes_serves_the_next_ones(started):
    h = Harness(lambda tag: tag)  # a tool not known to be fast: no fallback timer watches its runs
    started.append(h)
    _one_idle_thread(h)
    # The submit that woke it was refused (or its command was queued behind others): no run comes.
    h.ex.wake_early()
    wait_until(lambda: h.ex._idle, WAIT, "the thread woken early to go idle again")
    # It is idle, no longer early: the next run wakes it (handed to a thread still counted as early,
    # it would wait in a sleeping thread's batch for good).
    h.launch([h.run("a", 2)])
    assert h.wait_ended(["warm", "a"]) == ["warm", "a"]
    assert h.ex.thread_count == 1


def test_calls_that_wake_a_thread_early_get_their_results_while_a_burst_fills_the_lane(orch):
    lanes = start_lanes(orch, [lane("query", max_concurrency=2)])
    lanes.tools.register(lambda value: value, name="echo")
    results: list[int] = []
    handles = [lanes.submit("query", "echo", {"value": i}) for i in range(200)]
    # Each call finds the lane busy or free at random: early wakes that a queued command turns
    # into nothing must not strand the runs behind them.
    for i in range(50):
        results.append(lanes.call("query", "echo", {"value": 1000 + i}, wait_timeout=WAIT))
    assert results == [1000 + i for i in range(50)]
    assert [h.result(timeout=WAIT) for h in handles] == list(range(200))


def test_a_tools_run_time_average_leaves_out_the_announcements_before_its_runs(started, monkeypatch):
    # The announcement (publishing, or persisting a durable attempt) is not the tool's time: a slow
    # one must not make an instant tool look slow, which would stop its runs from being batched.
    monkeypatch.setattr(executors, "_FALLBACK_S", 60.0)  # one thread runs the whole batch, slow as it is
    slow_announce = threading.Event()

    def announce(run: Any) -> None:
        slow_announce.wait(0.05)  # the work under test: an announcement that takes 50 ms

    h = Harness(lambda tag: tag, announce=announce)
    started.append(h)
    h.fast()
    tags = [f"r{i}" for i in range(4)]
    h.launch([h.run(tag, 2) for tag in tags])
    assert sorted(h.wait_ended(tags)) == sorted(tags)
    assert h.ex.thread_count == 1
    assert h.ex._tool_s[h.spec.name] < 0.01  # 4 runs behind 50 ms announcements each: the tool's own time only


# --- a thread that waits for the GIL is not a slow or blocked tool --------------------------------


def test_stretches_slowed_by_waits_for_the_gil_leave_a_fast_tool_fast_and_a_slow_tool_is_found_by_its_third_run():
    ex = Harness(lambda tag: tag).ex
    ex._tool_s["noop"] = 2e-6
    # Sixteen runs (or two) that took 5 ms in all: another thread held the GIL for a switch interval.
    ex._timed("noop", 16, 0.005)
    ex._timed("noop", 2, 0.005)
    assert ex._tool_s["noop"] < executors._FAST_S
    ex._tool_s["io"] = 2e-6
    for _ in range(3):  # a tool that turned slow: a run or two may be flukes, three are not
        ex._timed("io", 1, 0.050)
    assert ex._tool_s["io"] >= executors._FAST_S


@pytest.mark.timeout(120)
def test_a_burst_of_fast_commands_beside_a_thread_that_holds_the_gil_runs_on_few_threads(orch):
    # Each time the busy thread takes the GIL from a worker mid-batch (every switch interval), that
    # batch takes 5 ms. Counted as the tool's time, it made the no-op tool look slow, each slow run
    # woke a thread of its own, and a burst spread over a dozen threads; found in its tool by the
    # fallback, a thread waiting for the GIL was handed help it did not need.
    lanes = orch.start_lanes()
    lanes.tools.register(lambda x: x, name="noop")
    for i in range(50):  # the tool is known to be fast
        assert lanes.call("query", "noop", {"x": i}) == i
    stop = threading.Event()

    def busy() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    hog = threading.Thread(target=busy, daemon=True)
    hog.start()
    try:
        names = ["system", "control", "query", "session", "skill", "prompt"]
        for _ in range(3):
            handles = [lanes.submit(names[i % 6], "noop", {"x": i}) for i in range(3000)]
            assert [h.result(timeout=WAIT) for h in handles] == list(range(3000))
    finally:
        stop.set()
        hog.join(WAIT)
    assert lanes.statistics().threads <= 2


def test_the_fallback_finds_a_thread_blocked_in_its_tool_and_not_one_that_waits_to_record_its_batch(started):
    gate = threading.Event()
    h = Harness(lambda tag: gate.wait(WAIT) and tag if tag == "blocks" else tag)
    started.append(h)
    h.fast()
    # One thread takes all three and blocks in the first: found in its tool, in the same run, at
    # checks a switch interval apart, it is stuck (and the fallback would hand on the other two).
    with h.box:
        h.ex.launch_locked(h.run("blocks", 0))
        h.ex.launch_locked(h.run("a", 0))
        h.ex.launch_locked(h.run("b", 0))
        h.ex._fallback_armed = True  # this test checks by hand: the timer must not hand the runs on first
    worker, since = wait_until(lambda: next(iter(h.ex._fast.items()), None), what="a thread in its fast batch")
    wait_until(lambda: len(worker.batch) == 2, what="the thread inside its first run")
    switch = sys.getswitchinterval()

    def found(now: float) -> bool:
        return h.ex._stuck_locked(worker, since, now, sys._current_frames().get(worker.ident))

    assert not found(10.0)  # once may be a thread that waits for the GIL
    assert not found(10.0 + switch / 2)
    assert found(10.0 + switch)
    # The same thread done with its tool and waiting for the lock to record its batch is on its way.
    with h.box:
        gate.set()
        wait_until(lambda: "_run_batch" not in {f.f_code.co_name for f in frames_of(worker.ident)},
                   what="the thread out of its batch")
        assert not found(20.0) and not found(20.0 + switch) and not found(30.0)
    assert sorted(h.wait_ended(["blocks", "a", "b"])) == ["a", "b", "blocks"]


def frames_of(ident: int) -> list[Any]:
    frame, frames = sys._current_frames().get(ident), []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames
