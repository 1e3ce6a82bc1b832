import threading

import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock

WAIT = 30  # generous: the machine is shared and slow


@pytest.fixture
def orch(tmp_path):
    o = Orchestrator(name="wf-test", store=tmp_path / "state.db")
    yield o
    o.shutdown(timeout=5)


@pytest.fixture
def engine(orch):
    return orch.workflows


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def manual_engine(tmp_path, clock):
    o = Orchestrator(name="wf-manual", store=tmp_path / "state.db", clock=clock)
    yield o.workflows
    o.shutdown(timeout=5)


class Gate:
    """Lets a test hold executors inside their call and release them one by one, without sleeping."""

    def __init__(self):
        self._cond = threading.Condition()
        self.entered: list[str] = []
        self._open: set[str] = set()
        self.all_open = False

    def __call__(self, ctx):
        ctx.cancel_token.add_callback(lambda _reason: self.wake())
        with self._cond:
            self.entered.append(ctx.task_id)
            self._cond.notify_all()
            ok = self._cond.wait_for(
                lambda: self.all_open or ctx.task_id in self._open or ctx.cancel_token.cancelled, WAIT
            )
        assert ok, f"gate for {ctx.task_id} never opened"
        ctx.cancel_token.raise_if_cancelled()
        return ctx.task_id

    def wait_entered(self, n, timeout=WAIT):
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.entered) >= n, timeout), self.entered

    def open(self, *task_ids):
        with self._cond:
            if task_ids:
                self._open.update(task_ids)
            else:
                self.all_open = True
            self._cond.notify_all()

    def wake(self):
        with self._cond:
            self._cond.notify_all()
