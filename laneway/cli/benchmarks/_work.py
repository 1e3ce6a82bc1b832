"""The work the pool benchmarks give every runner: importable, so each runner pickles it by reference."""

from __future__ import annotations

import time


def inc(x: int) -> int:
    """The tiny task."""
    return x + 1


def spin(n: int) -> int:
    """Pure-Python CPU work (holds the GIL): ``n`` multiply-adds."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def calibrate_spin(target_s: float = 0.020) -> int:
    """The ``n`` for which :func:`spin` takes about ``target_s`` seconds on this machine now."""
    n = 100_000
    while True:
        start = time.perf_counter()
        spin(n)
        took = time.perf_counter() - start
        if took > 0.005:
            return max(1, int(n * target_s / took))
        n *= 2
