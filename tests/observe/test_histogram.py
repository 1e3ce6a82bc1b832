"""Percentile math on known data, and the histogram's two views."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laneway.errors import ConfigError
from laneway.observe import LatencyHistogram, LatencySummary, percentile


def test_percentiles_of_one_to_one_hundred():
    values = list(range(1, 101))
    assert percentile(values, 0.0) == 1
    assert percentile(values, 1.0) == 100
    assert percentile(values, 0.5) == 50.5
    assert percentile(values, 0.9) == pytest.approx(90.1)
    assert percentile(values, 0.95) == pytest.approx(95.05)
    assert percentile(values, 0.99) == pytest.approx(99.01)


def test_percentile_of_small_sets():
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1, 2], 0.5) == 1.5
    assert percentile([1, 2, 3, 4], 0.25) == 1.75


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=300), st.integers(1, 99))
def test_percentile_matches_statistics_inclusive_quantiles(values, pct):
    # statistics.quantiles(method="inclusive") is the same linear interpolation (numpy's default).
    values.sort()
    expected = statistics.quantiles(values, n=100, method="inclusive")[pct - 1]
    assert percentile(values, pct / 100) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_percentile_rejects_bad_q(q):
    with pytest.raises(ConfigError, match="within"):
        percentile([1, 2, 3], q)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ConfigError, match="no values"):
        percentile([], 0.5)


def test_summary_on_shuffled_known_data():
    h = LatencyHistogram(window=1000)
    samples = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1 s
    random.Random(7).shuffle(samples)
    for s in samples:
        h.record(s)
    summary = h.summary()
    assert summary.count == 1000
    assert summary.min_s == 0.001 and summary.max_s == 1.0
    assert summary.mean_s == pytest.approx(0.5005)
    assert summary.p50_s == pytest.approx(0.5005)
    assert summary.p90_s == pytest.approx(0.9001)
    assert summary.p95_s == pytest.approx(0.95005)
    assert summary.p99_s == pytest.approx(0.99001)


def test_percentiles_follow_the_recent_window_but_counts_cover_everything():
    h = LatencyHistogram(window=10)
    for _ in range(90):
        h.record(5.0)  # an old slow phase
    for _ in range(10):
        h.record(0.001)
    summary = h.summary()
    assert summary.count == 100
    assert summary.max_s == 5.0
    assert summary.p99_s == pytest.approx(0.001)


def test_buckets_are_cumulative_with_inclusive_upper_bounds():
    h = LatencyHistogram(buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 3.0, -0.2):
        h.record(v)
    assert h.buckets() == [(0.1, 3), (1.0, 5), (math.inf, 6)]


def test_empty_summary_is_zero():
    assert LatencyHistogram().summary() == LatencySummary()
    assert LatencySummary().mean_s == 0.0


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"buckets": ()}, {"buckets": (1.0, 0.5)}])
def test_bad_histogram_config(kwargs):
    with pytest.raises(ConfigError):
        LatencyHistogram(**kwargs)
