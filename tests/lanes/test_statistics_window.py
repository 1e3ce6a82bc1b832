"""Reading lane statistics stays cheap while a console or monitor reads them several times a second."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laneway.lanes import InMemoryLaneMetrics
from laneway.lanes._metrics import prepare_readings
from laneway.lanes._window import Latencies, Throughput
from tests.lanes.support import WAIT, lane, start_lanes


class Probe(float):
    """A latency that counts the comparisons a sort makes, and runs ``on_compare`` at the first one."""

    compares = 0
    on_compare = None

    def __lt__(self, other: object) -> bool:
        Probe.compares += 1
        hook, Probe.on_compare = Probe.on_compare, None
        if hook is not None:
            hook()
        return float(self) < float(other)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _reset_probe():
    Probe.compares, Probe.on_compare = 0, None
    yield
    Probe.on_compare = None


def test_an_unchanged_window_is_not_sorted_again_and_a_new_sample_is_seen():
    rec = InMemoryLaneMetrics().recorder("work", now=0.0)
    for i in range(64):
        rec.completed(Probe((i * 37) % 64 / 100), now=1.0)
    first = rec.read(1.0)
    assert Probe.compares > 0 and (first.latency_p50_s, first.latency_p99_s) == (0.31, 0.63)
    Probe.compares = 0
    prepare_readings([rec], now=2.0)

    def percentiles(reading):
        return tuple(getattr(reading, f"latency_p{q}_s") for q in (50, 90, 95, 99))

    assert percentiles(rec.read(2.0)) == percentiles(rec.read(3.0)) == percentiles(first)
    assert Probe.compares == 0
    rec.completed(Probe(9.0), now=3.0)
    again = rec.read(3.0)
    assert (again.latency_p50_s, again.latency_p99_s) == (0.32, 9.0) and Probe.compares > 0


def test_a_window_copy_is_the_samples_oldest_first_and_a_reset_forgets_the_sorted_ones():
    window = Latencies(size=3)
    assert window.samples() == ()
    for x in (5.0, 1.0, 3.0, 4.0):
        window.record(x)
    assert window.samples() == (1.0, 3.0, 4.0) and window.percentiles(50, 90) == (3.0, 4.0)
    rec = InMemoryLaneMetrics().recorder("work", now=0.0)
    rec.completed(2.0, now=1.0)
    assert rec.read(1.0).latency_p50_s == 2.0
    rec.reset()
    assert rec.read(1.0).latency_p50_s is None


def test_a_prepared_reading_serves_only_the_same_thread_and_clock_reading():
    rec = InMemoryLaneMetrics().recorder("work", now=0.0)
    rec.completed(1.0, now=1.0)
    prepare_readings([rec], now=2.0)
    rec.completed(3.0, now=2.0)
    with concurrent.futures.ThreadPoolExecutor(1) as other:
        # Another thread's read is its own, exact one.
        assert other.submit(rec.read, 2.0).result(WAIT).latency_p99_s == 3.0
    prepare_readings([rec], now=2.0)
    rec.completed(5.0, now=2.0)
    assert rec.read(3.0).latency_p99_s == 5.0  # another clock reading: not the prepared one
    prepare_readings([rec], now=4.0)
    assert rec.read(4.0).latency_p99_s == 5.0  # the prepared one, of the whole window
    rec.completed(0.5, now=4.0)
    assert rec.read(4.0).latency_p99_s == 5.0 and rec.read(4.0).latency_p50_s == 1.0  # used once only


@pytest.mark.timeout(60)
def test_statistics_sorts_latency_windows_without_holding_the_lanes_lock(orch):
    metrics = InMemoryLaneMetrics()
    lanes = start_lanes(orch, [lane("work")], metrics=metrics)
    lanes.call("work", lambda: None, wait_timeout=WAIT)  # a real latency first
    recorder = lanes._core.lanes["work"].recorder
    for i in range(100):
        recorder.completed(Probe(i / 1000), now=1.0)
    other_reads: list[bool] = []

    def read_status_from_another_thread() -> None:
        # Another thread needs the lanes' lock; a sort holding it would leave it waiting.
        done = threading.Event()
        threading.Thread(target=lambda: (lanes.status(), done.set()), daemon=True).start()
        other_reads.append(done.wait(5.0))

    Probe.on_compare = read_status_from_another_thread
    stats = lanes.statistics()
    assert other_reads == [True], "the latency window was sorted under the lanes' lock"
    assert stats.lanes[0].latency_p99_s == pytest.approx(0.098)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=60),
       read_after=st.floats(min_value=0.0, max_value=90.0))
def test_throughput_counts_exactly_the_completions_of_its_window(steps, read_after):
    # Against the definition: completions in whole seconds after int(now) - span, over the window's age.
    span = 20.0
    window = Throughput(None, span_s=span)
    now, times = 1000.0, []
    for step in steps:
        now += step
        window.record(now)
        times.append(now)
    read = now + read_after
    cutoff = int(read) - span
    expected = sum(1 for t in times if int(t) > cutoff) / max(1.0, min(span, read - times[0]))
    assert window.rate(read) == pytest.approx(expected)
