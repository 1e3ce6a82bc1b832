from __future__ import annotations

from typing import Any

import attrs
from laneway.actors import Actor, handler


@attrs.frozen
class Inc:
    by: int = 1


@attrs.frozen
class Get:
    pass


@attrs.frozen
class Crash:
    text: str = "boom"


@attrs.frozen
class Block:
    """Blocks the actor's thread until the event is set."""

    event: Any


@attrs.frozen
class StopSelf:
    pass


class Counter(Actor):
    def __init__(self, start: int = 0, log: list | None = None) -> None:
        self.start = start
        self.log = log if log is not None else []

    def on_start(self) -> None:
        self.n = self.start
        self.log.append(("start", self.name))

    def on_stop(self) -> None:
        self.log.append(("stop", self.name))

    @handler(Inc)
    def _inc(self, msg: Inc) -> int:
        self.n += msg.by
        return self.n

    @handler(Get)
    def _get(self, msg: Get) -> int:
        return self.n

    @handler(Crash)
    def _crash(self, msg: Crash) -> None:
        raise RuntimeError(msg.text)

    @handler(Block)
    def _block(self, msg: Block) -> None:
        msg.event.wait()

    @handler(StopSelf)
    def _stop_self(self, msg: StopSelf) -> None:
        self.stop()


class FailingStart(Actor):
    def on_start(self) -> None:
        raise ValueError("cannot start")


def wait_restarted(sub, child: str, count: int = 1, timeout: float = 10.0) -> list:
    """Consume events until ``count`` restarts of ``child`` were published."""
    seen = []
    while len(seen) < count:
        seen.append(
            sub.wait_for(lambda e: e.key == "supervisor.child.restarted" and e.data["child"] == child, timeout)
        )
    return seen


class Gate:
    """A one-shot gate that works across processes (a file that appears), unlike threading.Event."""

    def __init__(self, path: Any) -> None:
        self.path = str(path)

    def set(self) -> None:
        with open(self.path, "w"):
            pass

    def is_set(self) -> bool:
        import os

        return os.path.exists(self.path)

    def wait(self, timeout: float = 30.0) -> bool:
        from tests.waiting import poll

        return poll(self.is_set, timeout) is not None


class Tally(Counter):
    """A Counter that keeps its count across restarts."""

    def save_state(self) -> int:
        return self.n

    def load_state(self, state: int) -> None:
        self.n = state
