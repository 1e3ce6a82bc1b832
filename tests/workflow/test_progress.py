"""Progress streams: deltas, periodic snapshots, bounded buffering for slow readers, sync and async readers."""

import asyncio
import threading
import tracemalloc

import pytest

from laneway.errors import ConfigError, LanewayTimeout, WorkflowError
from laneway.observe import ProgressKind, ProgressStream
from laneway.workflow import TaskDefinition

from .conftest import WAIT, Gate


def replay(events):
    """Rebuild the state a reader sees from the events it got."""
    state = {}
    for e in events:
        if e.kind is ProgressKind.DELTA:
            state.update(e.data)
        else:
            state = dict(e.data)
    return state


def test_deltas_carry_only_changes_and_every_nth_update_is_a_snapshot():
    stream = ProgressStream("t", snapshot_every=3)
    sub = stream.subscribe()
    stream.update(done=1, total=10, phase="fetch")
    stream.update(done=2, total=10, phase="fetch")
    stream.update(done=2, total=10, phase="fetch")  # no change: nothing sent, not counted
    stream.update(phase="parse")
    stream.update(done=3)
    stream.complete("result")
    events = list(sub)
    assert [(e.kind.value, e.seq, dict(e.data)) for e in events] == [
        ("delta", 1, {"done": 1, "total": 10, "phase": "fetch"}),
        ("delta", 2, {"done": 2}),
        ("snapshot", 3, {"done": 2, "total": 10, "phase": "parse"}),
        ("delta", 4, {"done": 3}),
        ("complete", 4, {"done": 3, "total": 10, "phase": "parse"}),
    ]
    assert events[-1].result == "result" and stream.result(1) == "result"
    with pytest.raises(StopIteration):
        sub.get(timeout=1)


def test_late_subscriber_starts_with_a_snapshot_and_error_ends_the_stream():
    stream = ProgressStream("t")
    stream.update(a=1)
    stream.update(b=2)
    sub = stream.subscribe()
    stream.fail(RuntimeError("broke"))
    events = list(sub)
    assert [e.kind for e in events] == [ProgressKind.SNAPSHOT, ProgressKind.ERROR]
    assert dict(events[0].data) == {"a": 1, "b": 2} and str(events[1].error) == "broke"
    with pytest.raises(RuntimeError, match="broke"):
        stream.result(1)
    after = list(stream.subscribe())  # subscribing after the end still gets the ending
    assert [e.kind for e in after] == [ProgressKind.SNAPSHOT, ProgressKind.ERROR]


def test_slow_subscriber_gets_folded_snapshots_and_bounded_memory():
    stream = ProgressStream("t", snapshot_every=1000, buffer_size=8)
    slow = stream.subscribe()
    fast = stream.subscribe(buffer_size=100_000)
    got = []
    step = threading.Event()
    go = threading.Event()
    finished = threading.Event()

    def slow_reader():  # reads one event, then waits for the producer to move on a lot
        for event in slow:
            got.append(event)
            step.set()
            if not finished.is_set():
                go.wait(WAIT)
                go.clear()

    reader = threading.Thread(target=slow_reader)
    reader.start()
    for i in range(1, 2001):
        stream.update(n=i, parity=i % 2)
        assert slow.pending() <= 8, "the slow subscriber's buffer must stay bounded"
        if i % 250 == 0:  # let the slow reader take one event per 250 updates
            assert step.wait(WAIT)
            step.clear()
            go.set()
    stream.complete("done")
    finished.set()
    go.set()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert got[-1].kind is ProgressKind.COMPLETE
    assert replay(got) == {"n": 2000, "parity": 0}, "folding must never show a wrong state"
    folds = [e for e in got if e.kind is ProgressKind.SNAPSHOT and e.folded]
    assert folds and slow.folded > 1500
    assert len(got) < 100
    fast_events = list(fast)
    assert len(fast_events) == 2001 and fast.folded == 0, "a fast subscriber sees every delta"
    assert stream.statistics().folded == slow.folded


def test_unread_subscription_memory_stays_flat():
    stream = ProgressStream("t", buffer_size=50)
    sub = stream.subscribe()
    for i in range(2_000):
        stream.update(n=i, payload="x" * 100)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(2_000, 50_000):
            stream.update(n=i, payload="x" * 100)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert sub.pending() <= 50
    assert grown < 200_000, f"memory grew by {grown} bytes for 48k unread updates"


def test_async_for_reads_the_stream():
    stream = ProgressStream("t", snapshot_every=100)

    async def main():
        loop = asyncio.get_running_loop()

        def produce():
            for i in range(5):
                stream.update(i=i)
            stream.complete(42)

        events = []
        producer = loop.run_in_executor(None, produce)
        async for event in stream:
            events.append(event)
        await producer
        return events

    events = asyncio.run(main())
    assert events[-1].kind is ProgressKind.COMPLETE and events[-1].result == 42
    assert replay(events) == {"i": 4}


def test_get_times_out_with_a_typed_error_and_bad_config_is_rejected():
    stream = ProgressStream("quiet")
    with pytest.raises(LanewayTimeout, match="quiet"):
        stream.subscribe().get(timeout=0.01)
    with pytest.raises(ConfigError):
        ProgressStream(snapshot_every=0)
    with pytest.raises(ConfigError):
        stream.subscribe(buffer_size=0)


def test_submit_returns_an_observable_of_the_task_progress(engine):
    gate = Gate()

    def crawl(ctx):
        for page in range(1, 4):
            ctx.progress.report(page=page, of=3)
        gate(ctx)
        return "crawled"

    engine.register_executor("crawler", crawl)
    stream = engine.submit(TaskDefinition("crawl", agent_type="crawler"))
    sub = stream.subscribe()
    gate.wait_entered(1)
    gate.open()
    events = list(sub)
    assert events[-1].kind is ProgressKind.COMPLETE and events[-1].result == "crawled"
    assert replay(events) == {"state": "completed", "attempts": 1, "page": 3, "of": 3}
    assert stream.result(WAIT) == "crawled"


def test_submitted_task_failure_ends_with_an_error_event(engine):
    def broken(ctx):
        raise ValueError("no pages")

    engine.register_executor("broken", broken)
    stream = engine.submit(TaskDefinition("t", agent_type="broken"))
    with pytest.raises(WorkflowError, match="no pages"):
        stream.result(WAIT)
    assert list(stream)[-1].kind is ProgressKind.ERROR


def test_workflow_stream_reports_each_task_under_its_id(engine):
    engine.register_executor("ok", lambda ctx: ctx.progress.report(pct=100) or ctx.task_id)
    wf = engine.create_workflow(
        [TaskDefinition("a", agent_type="ok"), TaskDefinition("b", agent_type="ok", dependencies=["a"])]
    )
    sub = wf.progress.subscribe()
    wf.start()
    events = list(sub)
    assert events[0].kind is ProgressKind.SNAPSHOT, "a subscriber starts from the whole workflow"
    assert events[0].data == {t: {"state": "pending", "attempts": 0} for t in ("a", "b")}
    assert events[-1].kind is ProgressKind.COMPLETE and events[-1].result == {"a": "a", "b": "b"}
    assert replay(events) == {
        "a": {"state": "completed", "attempts": 1, "pct": 100},
        "b": {"state": "completed", "attempts": 1, "pct": 100},
    }
