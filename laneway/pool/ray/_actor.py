"""Inside a Ray actor: one laneway pool worker, running its batches in order.

The backend turns :class:`RayWorker` into a Ray actor class with restarts and
retries switched off (laneway's supervisor owns restart policy). It is an
*asyncio* actor so that ``beat`` answers while a long task runs; the tasks
themselves run one at a time on a single executor thread, and every batch
carries a sequence number that the actor serves strictly in order, because Ray
does not promise submission order for asyncio actors. The order matters twice:
the pool infers the running task from it, and the function cache
(:class:`~laneway.worker.TaskRunner`) must evict in step with the
sender's :class:`~laneway.worker.ShipLedger`.

This module imports ray: only Ray worker processes and the backend's ``open``
import it, never a plain ``import laneway``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import time
from typing import AsyncIterator

import psutil
import ray

from laneway.worker import TaskRunner

log = logging.getLogger(__name__)

#: While running a batch, the actor streams outcomes back at least this often.
FLUSH_S = 0.001

#: ``(task_id, digest, fn_bytes_or_empty, args_bytes)``, as the backend sends it.
WireTask = tuple[int, bytes, bytes, bytes]
#: ``(task_id, ok, data)``, the fields of a :class:`~laneway.pool.TaskOutcome`.
WireOutcome = tuple[int, bool, bytes]


class RayWorker:
    """The body of one laneway worker actor (the backend wraps it with ``ray.remote``)."""

    def __init__(self) -> None:
        self._runner = TaskRunner()
        # One thread: tasks run one at a time, in order, off the actor's event loop.
        self._tasks = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="laneway-task")
        self._next_seq = 0
        self._turn: asyncio.Condition | None = None
        self._stop: asyncio.Event | None = None
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)

    async def hello(self) -> tuple[int, str, str]:
        """``(pid, host, node id)``: the actor is up and can take tasks."""
        return os.getpid(), socket.gethostname(), ray.get_runtime_context().get_node_id()

    async def beat(self, period: float) -> tuple[int, float]:
        """Answer after ``period`` seconds with ``(rss bytes, cpu percent)``.

        The backend always keeps one ``beat`` outstanding: it is how an idle actor's
        death is noticed (the call fails) and how a hung one is (the answer is late).
        """
        try:
            await asyncio.wait_for(self._stopping().wait(), period)
        except asyncio.TimeoutError:
            pass
        try:
            return self._proc.memory_info().rss, self._proc.cpu_percent(None)
        except Exception:  # psutil can fail in odd containers; liveness matters, numbers do not
            return 0, 0.0

    async def run(self, seq: int, tasks: list[WireTask]) -> AsyncIterator[list[WireOutcome]]:
        """Run batch ``seq`` once every earlier batch is done, yielding outcomes as they come."""
        async for chunk in self._chunks(seq, tasks):
            yield chunk

    async def run_all(self, seq: int, tasks: list[WireTask]) -> list[WireOutcome]:
        """Like :meth:`run`, answering once at the end (for Ray Client, which cannot stream)."""
        return [outcome async for chunk in self._chunks(seq, tasks) for outcome in chunk]

    async def _chunks(self, seq: int, tasks: list[WireTask]) -> AsyncIterator[list[WireOutcome]]:
        await self._wait_turn(seq)
        try:
            loop = asyncio.get_running_loop()
            start = 0
            while start < len(tasks):
                chunk, start = await loop.run_in_executor(self._tasks, self._run_chunk, tasks, start)
                yield chunk
        finally:
            await self._end_turn()

    async def stop(self, seq: int) -> None:
        """Exit once batches before ``seq`` are done (a graceful stop)."""
        await self._wait_turn(seq)
        self._tasks.shutdown(wait=True)
        self._stopping().set()  # the outstanding beat answers now, so the actor can exit at once
        ray.actor.exit_actor()

    def _stopping(self) -> asyncio.Event:
        if self._stop is None:
            self._stop = asyncio.Event()  # created on the actor's loop
        return self._stop

    def _run_chunk(self, tasks: list[WireTask], start: int) -> tuple[list[WireOutcome], int]:
        run = self._runner.run
        out: list[WireOutcome] = []
        began = time.monotonic()
        i = start
        while i < len(tasks):
            task_id, digest, fn_bytes, args_bytes = tasks[i]
            i += 1
            o = run(task_id, digest, fn_bytes or None, args_bytes)
            out.append((o.task_id, o.ok, o.data))
            if time.monotonic() - began > FLUSH_S:
                break
        return out, i

    async def _wait_turn(self, seq: int) -> None:
        if self._turn is None:
            self._turn = asyncio.Condition()  # created on the actor's loop
        async with self._turn:
            await self._turn.wait_for(lambda: self._next_seq == seq)

    async def _end_turn(self) -> None:
        assert self._turn is not None
        async with self._turn:
            self._next_seq += 1
            self._turn.notify_all()

