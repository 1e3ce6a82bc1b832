"""Helpers for lane tests: a recorder of tool runs with a gate that holds them."""

from __future__ import annotations

import threading
from typing import Any, Callable

from laneway import Orchestrator
from laneway.lanes import LaneConfig, LaneManager, ToolRegistry

WAIT = 20.0  # generous: the machine is shared and slow


def lane(name: str, priority: int = 0, max_concurrency: int = 1, **kw: Any) -> LaneConfig:
    return LaneConfig(name, priority=priority, max_concurrency=max_concurrency, **kw)


class Recorder:
    """Tools that record when they start and end, and can be held at a gate until released."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.started: list[str] = []
        self.ended: list[str] = []
        self.active = 0
        self.max_active = 0
        self.released: set[str] = set()
        self.all_released = False

    def release(self, *tags: str) -> None:
        with self.cond:
            self.released.update(tags)
            self.cond.notify_all()

    def release_all(self) -> None:
        with self.cond:
            self.all_released = True
            self.cond.notify_all()

    def _enter(self, tag: str) -> None:
        with self.cond:
            self.started.append(tag)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.cond.notify_all()

    def _exit(self, tag: str) -> None:
        with self.cond:
            self.active -= 1
            self.ended.append(tag)
            self.cond.notify_all()

    def held(self) -> Callable[..., str]:
        """A tool ``held(tag)`` that waits until its tag (or everything) is released, then returns the tag."""

        def held(tag: str) -> str:
            self._enter(tag)
            try:
                with self.cond:
                    self.cond.wait_for(lambda: self.all_released or tag in self.released, WAIT)
                return tag
            finally:
                self._exit(tag)

        return held

    def quick(self) -> Callable[..., str]:
        """A tool ``quick(tag)`` that records its run and returns at once."""

        def quick(tag: str) -> str:
            self._enter(tag)
            self._exit(tag)
            return tag

        return quick

    def wait_started(self, n: int, timeout: float = WAIT) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.started) >= n, timeout), f"only {self.started} started"
            return list(self.started)

    def wait_ended(self, n: int, timeout: float = WAIT) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.ended) >= n, timeout), f"only {self.ended} ended"
            return list(self.ended)


def start_lanes(orch: Orchestrator, lanes: Any = None, **kw: Any) -> LaneManager:
    """A manager with its own empty tool registry and (unless given) no store."""
    kw.setdefault("store", None)
    kw.setdefault("tools", ToolRegistry())
    return orch.start_lanes(lanes=lanes, **kw)
