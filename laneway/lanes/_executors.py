"""Where runs execute: sync tools on worker threads, async tools on one event loop, cpu_bound on the pool.

Worker threads pull: a thread that finishes a run takes the scheduler's
outbox once, records the outcome and takes its next run in the same critical
section. Threads start lazily, never one per queued command, and are woken
sparingly, because in CPython every extra runnable thread costs GIL hand-offs
(64 threads serving no-op tools do a quarter of the work of one):

* at most one woken thread is on its way to the ready queue at any time;
* while a thread runs a tool that is usually fast (under ``_FAST_S``), no
  helper is woken for the rest of the ready queue, because that thread will
  be back for it in microseconds; a real-time fallback wakes a helper anyway
  if it is not back within ``_FALLBACK_S`` (a usually fast tool that blocked).
  A thread that is merely waiting for the GIL (another thread holds it for a
  switch interval, 5 ms, a long while next to ``_FALLBACK_S``) is not blocked:
  the fallback counts a thread as blocked only when it finds it inside a tool,
  in the same run, at checks a switch interval apart. Else every burst of
  fast runs beside a busy submitter woke helpers it did not need, and more
  threads took turns with the GIL.

The ready queue is ordered by priority (the lane's, then the command's), so a
thread always takes the best ready run. A thread whose next run is a usually
fast tool takes the next few ready fast runs with it (up to ``_BATCH``, still
best first) and records all their ends in one critical section: the lock is
taken once per batch, not once per run, and a batch lasts microseconds, so the
runs behind it wait no longer than they would behind one thread serving them
one by one.

Fast runs are pulled, not pushed. A thread that records its batch dispatches in
the same critical section, and the fast runs that dispatch starts go straight
into its next batch; while a thread runs a batch of them, the fast runs that
would only wait for it stay queued in their lanes, not started
(:meth:`Executors.fast_room_locked`), and it takes the best of them when it is
back. So a run is started when a thread takes it: it does not hold its lane's
slot while it waits, nor pass through the ready queue's heap. The fallback,
armed whenever runs are held back, starts them for a helper if that thread
blocked. And as a batch runs one run after another, a lane's runs in it can
share one slot (a chain, see ``LaneCore.fill_lane_locked``): a lane with two
slots still fills a batch.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
import sys
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from laneway.core import LoopThread, MonotonicClock
from laneway.errors import CommandCancelled, Preempted, SystemShutdown
from laneway.core import current_token_var, set_current_token

from laneway.lanes._command import Run

if TYPE_CHECKING:
    from laneway.core import Outbox
    from laneway.lanes._tools import ToolSpec

log = logging.getLogger(__name__)

_FAST_S = 100e-6  # a tool whose recent runs took less than this is "fast"
_FALLBACK_S = 0.002  # how long the ready queue may wait on a fast tool before a helper is woken anyway
_EWMA_ALPHA = 0.2
_SAMPLE_CAP_S = 2.5 * _FAST_S  # the most one stretch of runs counts for in a tool's average (see _timed)
_BATCH = 16  # fast ready runs one thread takes per critical section at most


class _Worker:
    """An idle thread waits on its own locked ``gate``; releasing it wakes the thread.

    A Condition would be notified under the outbox lock, and the woken thread would
    at once block again on that lock. A gate is released under the lock only when the
    thread's batch is filled already (it runs that without the lock), else by an effect.
    """

    __slots__ = ("gate", "woken", "batch", "done", "ident", "seen", "current")

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.woken = False
        # The runs this thread took and has not started: it pops them one by one, and the
        # fallback pops the rest back to the ready queue if a run blocks; each pop is atomic.
        self.batch: collections.deque[Run] = collections.deque()
        # How the runs it took ended, ``(run, ok, value)`` each, until recorded: by this thread once its
        # batch is over, or by the fallback if the thread blocks in a later run (each popped atomically).
        self.done: collections.deque[tuple[Run, bool, Any]] = collections.deque()
        self.ident = threading.get_ident()  # made by the thread itself
        # The run the fallback found this thread in, and since when (see Executors._stuck_locked).
        self.seen: tuple[tuple[float, int], float] | None = None
        self.current: Run | None = None  # the run of its batch it took last (the one it is in, while in one)


def _cancelled_error(run: Run) -> CommandCancelled:
    token = run.token
    return (Preempted if token.preempted else CommandCancelled)(token.reason or "cancelled")


class Executors:
    """Runs commands for the lanes' scheduler, through the narrow callbacks it is given.

    Args:
        box: the scheduler's outbox (a finishing thread records its outcome and takes
            its next run in one critical section under it; effects go on it).
        end_runs_locked: ``(outcomes)``, inside ``box``: record how runs ended, ``(run, ok, value)``
            each; one that fails to be recorded does not keep the others from ending.
        dispatch_locked: ``()``, inside ``box``: start what can start now.
        finish: ``(run, ok, value)``, without the lock: end a run from another thread.
        launch_failed: ``(run, error)``, without the lock: no executor could take the run.
        announce: ``(run)``: a run is about to execute (persist its attempt, publish).
        unstart_locked: ``(run)``, inside ``box``: a run that holds no slot (:attr:`Run.slot`, a chain's)
            was handed back before it executed: queue its command again.
        pool: returns the process pool for ``cpu_bound`` tools.
        announcing: ``()``: is anyone told when a run starts? Asked once per batch; when it
            is False, ``announce`` is called only for durable commands (None: for every run).
    """

    def __init__(self, box: Outbox, *, end_runs_locked: Callable[[list[tuple[Run, bool, Any]]], None],
                 dispatch_locked: Callable[[], None], finish: Callable[[Run, bool, Any], None],
                 launch_failed: Callable[[Run, BaseException], None], announce: Callable[[Run], None],
                 unstart_locked: Callable[[Run], None], pool: Callable[[], Any],
                 announcing: Callable[[], bool] | None = None) -> None:
        self._box = box
        self._lock = box.lock
        self._end_runs_locked = end_runs_locked
        self._dispatch_locked = dispatch_locked
        self._finish = finish
        self._launch_failed = launch_failed
        self._announce = announce
        self._unstart_locked = unstart_locked
        self._announcing = announcing
        self._get_pool = pool
        # Started sync runs waiting for a thread: (lane priority, command level, arrival, run), best first.
        self._ready: list[tuple[int, int, int, Run]] = []
        self._arrivals = itertools.count()
        self._idle: list[_Worker] = []
        self._threads = 0
        self._pulling = 0  # threads woken (or spawned) and not yet at the ready queue
        self._early: _Worker | None = None  # woken by wake_early, no run handed to it yet (counted in _pulling)
        self._fast: dict[_Worker, float] = {}  # threads inside a usually-fast tool, and since when
        self._tool_s: dict[str, float] = {}  # moving average of each tool's real run time
        self._fallback: MonotonicClock | None = None
        self._fallback_armed = False
        self._stopping = False
        #: Fast runs wait in their lanes for a thread in a fast batch, whose return (or the fallback,
        #: armed) dispatches again: a submit need not (read without a call on every submit).
        self.holding = False
        self._releasing = False  # the fallback dispatches for helpers: nothing waits for a thread
        # While a worker thread dispatches after its batch (and nothing was ready before): that
        # thread's batch, which the runs it starts go straight into (see launch_locked).
        self._sink: collections.deque[Run] | None = None
        self._async = LoopThread("laneway-lanes-async")  # started by the first async tool

    @property
    def thread_count(self) -> int:
        return self._threads

    def wake_early(self) -> None:
        """A caller is about to submit a sync run it will block on, at a lane with room: wake an idle
        thread now (without the scheduler's lock held, or not at all), and :meth:`launch_locked` hands
        it the run.

        A thread takes tens of µs to come up from an idle CPU; woken here, that overlaps the rest
        of the submit (a few µs of the caller's), not only its last steps. The thread cannot run
        before the caller lets go of the GIL, which it does to sleep on the result, by then handed.
        A thread woken for a run that did not come (queued behind others, refused, or handed while
        the thread was already up) finds itself still early in its next critical section and
        serves the ready queue or goes back to idle: nothing is lost, only the head start.
        """
        lock = self._lock
        if not lock.acquire(False):
            return  # busy scheduler: the wake at launch will do
        try:
            if self._ready or not self._idle or self._fast or self._pulling or self._stopping:
                return
            worker = self._idle.pop()
            worker.woken = True
            self._early = worker
            self._pulling += 1  # on its way: nobody else wakes a thread for the ready queue meanwhile
        finally:
            lock.release()
        worker.gate.release()

    def launch_locked(self, run: Run) -> None:
        """Hand a started run to its executor (called inside the scheduler's outbox)."""
        spec = run.cmd.spec
        sink = self._sink
        if sink is not None:
            # A worker thread dispatching after its batch: dispatch starts the best runs first, and
            # nothing was ready before, so while they are fast sync runs they go straight into that
            # thread's next batch (what _take_locked would do, without the ready heap). The first
            # other run closes the sink: it and every run after it queue behind the ones taken.
            if (not spec.is_async and not spec.cpu_bound and len(sink) < _BATCH
                    and self._tool_s.get(spec.name, 1.0) < _FAST_S):
                sink.append(run)
                return
            self._sink = None
        if spec.is_async:
            self._box.add(partial(self._start_async, run))
        elif spec.cpu_bound:
            self._box.add(partial(self._start_pool, run))
        elif self._early is not None and not self._ready:
            # The thread wake_early woke for this run (or, if another came first, for the best one).
            worker = self._early
            self._early = None
            self._pulling -= 1
            worker.batch.append(run)
            if self._tool_s.get(spec.name, 1.0) < _FAST_S:
                self._fast[worker] = time.perf_counter()
        elif not self._ready and self._idle and not self._fast and not self._pulling and not self._stopping:
            # Nothing ready, nobody on the way and a thread idle: this run is the best one, and
            # it goes straight to that thread (what _wake_locked would do, without the heap).
            worker = self._idle.pop()
            worker.woken = True
            worker.batch.append(run)
            if self._tool_s.get(spec.name, 1.0) < _FAST_S:
                self._fast[worker] = time.perf_counter()
            if run.cmd.future.wait_gate is not None and not self._box.queued:
                # A caller is about to sleep on this run's result (LaneManager.call): the thread is woken
                # now, not after the lock, as it takes tens of µs to come up from an idle CPU while the
                # caller finishes; it runs the batch without the lock. Nothing queued is overtaken.
                worker.gate.release()
            else:
                self._box.add(worker.gate.release)
        else:
            cmd = run.cmd
            heapq.heappush(self._ready, (cmd.lane.config.priority, cmd.level, next(self._arrivals), run))
            # Not when a thread in a fast tool is back soon and the fallback watches it: _wake_locked
            # would wake nobody then (two frames less per run queued behind a burst's fast batches).
            if not self._pulling and not (self._fast and self._fallback_armed):
                self._wake_locked()

    def fast_room_locked(self, spec: ToolSpec | None) -> int | None:
        """How many runs of tool ``spec`` to start now, if they are fast sync runs that would only wait
        for a thread otherwise; None: no limit (not such runs, or a thread is woken or spawned for them).

        A thread that is dispatching after its batch takes what its next batch has room for. While
        a thread runs a batch of fast runs, no helper is woken for the runs after them (see the module
        docstring): 0 then, and the fallback is armed; those runs are started as a thread takes them,
        instead of being started to wait in the ready queue. Started, a run holds its lane's slot,
        and costs a trip through the ready queue's heap and a second look when taken.
        """
        # The tool's average first: a tool that never ran is not fast, and its spec is not read further.
        if (spec is None or self._tool_s.get(spec.name, 1.0) >= _FAST_S or spec.is_async or spec.cpu_bound
                or self._stopping or self._releasing):
            return None
        sink = self._sink
        if sink is not None:
            room = _BATCH - len(sink)
        elif self._fast:
            room = 0
        else:
            return None
        if not room:
            self.holding = True
            self._arm_fallback_locked()
        return room

    def chain_room_locked(self, run: Run) -> int:
        """How many runs of ``run``'s tool the batch that ``run`` went into takes right after it (0: none,
        or ``run`` is not the last in a worker thread's batch being filled by its dispatch)."""
        sink = self._sink
        return _BATCH - len(sink) if sink and sink[-1] is run else 0

    def chain_locked(self, runs: list[Run]) -> None:
        """Put ``runs`` in the batch being filled, after the run :meth:`chain_room_locked` was asked about
        (and no more than it said)."""
        assert self._sink is not None
        self._sink.extend(runs)

    def _push_ready(self, run: Run) -> None:
        cmd = run.cmd
        heapq.heappush(self._ready, (cmd.lane.config.priority, cmd.level, next(self._arrivals), run))

    # shared by every executor -------------------------------------------------

    def _run_batch(self, worker: _Worker) -> None:
        """Run the sync tools of ``worker``'s batch in turn (without the lock): ``(run, ok, value)`` each,
        into ``worker.done``.

        Consecutive runs of one tool are timed together, and the tool's moving average of real run
        time (what makes it "fast") moves once for them, by their mean: one clock reading per stretch,
        not per run. The time an announcement takes (an event, or a store write for a durable run)
        is left out of the stretch's: a tool's time is its own.
        """
        append = worker.done.append
        batch = worker.batch
        perf_counter, token_var, announce = time.perf_counter, current_token_var, self._announce
        # Asked once per batch, not per run: a listener added meanwhile hears from the next batch on.
        everyone = self._announcing is None or self._announcing()
        timed: Any = None  # the spec of the stretch being timed, since ``began``, ``count`` runs so far
        began, count = 0.0, 0
        while batch:
            try:
                run = batch.popleft()  # atomic: the fallback may take the rest back meanwhile
            except IndexError:
                break
            worker.current = run
            cmd = run.cmd
            spec = cmd.spec
            if everyone or cmd.durable:
                announced = perf_counter()
                try:
                    announce(run)
                except Exception:  # persisting the attempt or publishing failed: the run still runs
                    log.exception("lanes: announcing command %s failed", cmd.id)
                began += perf_counter() - announced  # not the tool's time (see above)
            if spec is not timed:
                if count:
                    self._timed(timed.name, count, perf_counter() - began)
                    count = 0
                timed, began = spec, perf_counter()
            count += 1
            if run._cancelled:  # a Run is its own token; the field, not the property: one call less per run
                append((run, False, _cancelled_error(run)))
                continue
            mark = token_var.set(run)  # the ContextVar itself, not the helper: one call less per run
            try:
                append((run, True, spec.fn(**({**cmd.params, "cancel_token": run} if spec.takes_token else cmd.params))))
            except Exception as exc:
                append((run, False, exc))
            finally:
                token_var.reset(mark)
        if count:
            self._timed(timed.name, count, perf_counter() - began)
        worker.current = None  # it would keep the run's command, and its result, alive until the next batch

    def _timed(self, name: str, count: int, seconds: float) -> None:
        """``count`` runs of tool ``name`` took ``seconds`` in all: its moving average moves once, toward
        their mean, by at most what a mean of ``_SAMPLE_CAP_S`` moves it.

        A thread that waits for the GIL mid-stretch (another thread holds it up to a switch interval,
        5 ms) adds that wait to the stretch. Counted once per run, or in full, one such wait made a
        no-op tool look slow for a while, and each run of a slow tool wakes a thread of its own: a
        burst then spread over a dozen threads taking turns with the GIL. Two such waits in a row
        leave a tool of a few µs fast (50 µs, then 90 µs), and one that turned slow is found so by
        its third run (122 µs); meanwhile the fallback hands on what a thread's batch holds behind it.

        Without the lock: a dict item is set atomically, and two threads' updates racing only skew
        an estimate that is a hint, never a limit.
        """
        tool_s = self._tool_s
        took = seconds / count
        prev = tool_s.get(name)
        tool_s[name] = took if prev is None else prev + _EWMA_ALPHA * (min(took, _SAMPLE_CAP_S) - prev)

    # threads ------------------------------------------------------------------

    def _wake_locked(self, stuck: bool = False) -> None:
        if not self._ready or self._pulling or self._stopping:
            return
        if self._fast and not stuck:
            # A thread in a fast tool is back for the ready queue soon; wake no helper unless
            # (found by the fallback timer, ``stuck``) one of them is blocked in its tool.
            self._arm_fallback_locked()
            return
        if self._idle:
            # Handed its runs here, as a ThreadPoolExecutor hands a work item: the woken thread
            # starts on them at once, without a critical section of its own first.
            worker = self._idle.pop()
            worker.woken = True
            self._take_locked(worker)
            self._box.add(worker.gate.release)
        else:
            self._pulling += 1
            self._threads += 1
            self._box.add(self._spawn)

    def _arm_fallback_locked(self) -> None:
        if not self._fallback_armed:
            self._fallback_armed = True
            if self._fallback is None:
                self._fallback = MonotonicClock()
            self._fallback.call_later(_FALLBACK_S, self._fallback_due)

    def _fallback_due(self) -> None:
        with self._box:
            self._fallback_armed = False
            held = self.holding  # runs wait in their lanes for a thread in a fast batch: look again later
            self.holding = False
            now = time.perf_counter()
            frames: dict[int, Any] | None = None
            waiting = False  # a thread in a fast tool to check again later
            stuck = False
            finished: list[tuple[Run, bool, Any]] = []  # what blocked threads ran before their blocked run
            for worker, since in self._fast.items():
                batch = worker.batch
                if now - since <= _FALLBACK_S:
                    waiting = waiting or held or bool(batch)
                    continue
                if frames is None:
                    frames = sys._current_frames()
                if not self._stuck_locked(worker, since, now, frames.get(worker.ident)):
                    waiting = True
                    continue
                stuck = True
                # Its tool blocked: the runs it took and has not started go back (popped from the
                # end it does not take from, then queued again in their order).
                back = []
                while True:
                    try:
                        back.append(batch.pop())
                    except IndexError:
                        break
                self._hand_back_locked(worker.current, back[::-1])
                # The runs it finished before are recorded below, not when the blocked one returns: their
                # callers get their results, their slots are free, and their timeouts cannot fire.
                while True:
                    try:
                        finished.append(worker.done.popleft())
                    except IndexError:
                        break
                seen = worker.seen
                if back and seen is not None:  # the same run still: the next check need not wait again
                    worker.seen = ((since, 0), seen[1])
            frames = None  # frames hold their locals: drop them before anything else runs
            if stuck or (held and not waiting):
                # Commands handed back, and those that waited for a thread now blocked (or no longer
                # in a fast batch, and so not dispatching for them), start for helpers.
                self._releasing = True
                try:
                    if finished:  # after the loop over _fast: recording them may start runs, which changes it
                        self._end_runs_locked(finished)
                    self._dispatch_locked()
                finally:
                    self._releasing = False
            if waiting:
                self._arm_fallback_locked()
                self.holding = held and not stuck
            self._wake_locked(stuck)

    def _hand_back_locked(self, current: Run | None, back: list[Run]) -> None:
        """Runs a blocked thread held behind ``current`` (the run it is in), in batch order, go to other
        threads: each that holds a slot through the ready queue; a chain's (:attr:`Run.slot`) back to
        its lane's queue, as they share one slot. If ``current`` is in a chain that goes on in ``back``,
        the chain's slot stays with ``current`` (which still runs on it) and its last run goes back too.
        """
        owed = current is not None and current.slot == 0
        for run in back:
            if run.slot == 0:
                self._unstart_locked(run)
            elif owed and current is not None and run.cmd.lane is current.cmd.lane:  # the end of current's chain
                owed = False
                current.slot = 1
                self._unstart_locked(run)
            else:
                self._push_ready(run)

    @staticmethod
    def _stuck_locked(worker: _Worker, since: float, now: float, frame: Any) -> bool:
        """Is ``worker``, in its fast batch since ``since`` for longer than ``_FALLBACK_S``, blocked in a tool?

        Only if the fallback finds it inside a tool (below _run_batch's frame, not in it) at checks
        a switch interval apart, in the same run: a thread between runs, recording its batch or
        waiting for the lock is on its way, and one that waits for the GIL has it within a switch
        interval (its request makes the holder let go) and moves on.
        """
        top = frame
        while frame is not None and frame.f_code is not _RUN_BATCH_CODE:
            frame = frame.f_back
        if frame is None or top is frame:  # not in _run_batch, or in it between runs
            worker.seen = None
            return False
        run = (since, len(worker.batch))  # the same batch, and no run popped since: the same run
        seen = worker.seen
        if seen is None or seen[0] != run:
            worker.seen = (run, now)
            return False
        return now - seen[1] >= sys.getswitchinterval()

    def _take_locked(self, worker: _Worker) -> bool:
        """Put the best ready run in ``worker.batch``, and the next fast ones if it is fast; False if none.

        Wakes a helper if due; arms the fallback while the batch holds more than one run.
        """
        ready = self._ready
        if not ready:
            return False
        run = heapq.heappop(ready)[3]
        batch = worker.batch
        batch.append(run)
        tool_s = self._tool_s
        if tool_s.get(run.cmd.spec.name, 1.0) < _FAST_S:
            while ready and len(batch) < _BATCH and tool_s.get(ready[0][3].cmd.spec.name, 1.0) < _FAST_S:
                batch.append(heapq.heappop(ready)[3])
            self._hold_fast_locked(worker)
        if ready:
            self._wake_locked()
        return True

    def _hold_fast_locked(self, worker: _Worker) -> None:
        """``worker`` is about to run a batch of fast runs: no helper is woken for the ready queue
        while it does, and the fallback hands back the rest of a batch that blocks."""
        self._fast[worker] = time.perf_counter()
        if len(worker.batch) > 1:
            self._arm_fallback_locked()

    def _spawn(self) -> None:
        try:
            threading.Thread(target=self._work, name=f"laneway-lane-{self._threads}", daemon=True).start()
        except Exception as exc:  # "can't start new thread": the runs waiting for it must not hang
            self._spawn_failed(exc)

    def _spawn_failed(self, exc: BaseException) -> None:
        log.error("lanes: could not start a worker thread: %r", exc)
        with self._box:
            self._threads -= 1
            self._pulling -= 1
            if self._threads:
                # The running threads take the ready runs when they finish theirs.
                if self._idle:
                    self._wake_locked()
                return
            stranded = [entry[3] for entry in self._ready]
            self._ready.clear()
        for run in stranded:
            self._launch_failed(run, exc)

    def _work(self) -> None:
        box, lock = self._box, self._lock
        end_runs_locked, dispatch_locked = self._end_runs_locked, self._dispatch_locked
        run_batch, fast = self._run_batch, self._fast
        ready, idle = self._ready, self._idle  # never rebound
        worker = _Worker()
        done = worker.done
        with box:
            self._pulling -= 1
            took = self._take_locked(worker)
            if not took and not self._park_locked(worker):
                return
        while True:
            if not took:
                # Parked in the same critical section that found no work, so that after its outbox
                # ran (settling the last result, which wakes that caller) this thread goes straight
                # to sleep: the woken caller finds the GIL free.
                worker.gate.acquire()  # released once: by a wake (woken, its runs in its batch) or by stop
                if not worker.woken:
                    with box:
                        self._threads -= 1  # stopped
                    return
                worker.woken = False
                took = True
            run_batch(worker)
            took = False
            try:
                # The outbox's bare-lock protocol (see Outbox): two Python frames less per batch
                # than ``with box:``; nothing below enters the outbox itself.
                if not lock.acquire(False):
                    box.acquire_contended()
                try:
                    self.holding = False  # this thread dispatches (and holds runs back again if it must)
                    if self._early is worker:  # woken by wake_early, and no run came: no longer on its way
                        self._early = None
                        self._pulling -= 1
                    fast.pop(worker, None)
                    outcomes = list(done)  # what the fallback did not record already
                    done.clear()
                    self._pulling += 1  # this thread takes the next ready run itself: no need to wake one
                    try:
                        if not ready and not self._stopping:
                            self._sink = worker.batch
                        try:
                            end_runs_locked(outcomes)  # first: it wakes the callers that wait on these runs
                            dispatch_locked()
                        finally:
                            self._sink = None
                    finally:
                        self._pulling -= 1
                    # _take_locked and _park_locked's common cases inline (a frame each per batch).
                    if worker.batch:  # filled by dispatch through the sink
                        took = True
                        self._hold_fast_locked(worker)
                        if ready:  # runs the sink did not take: a helper for them, if due
                            self._wake_locked()
                    else:
                        took = self._take_locked(worker) if ready else False
                    if not took:
                        if self._stopping:
                            self._threads -= 1
                            return
                        idle.append(worker)
                finally:
                    if box.queued:
                        box.release_and_run()
                    else:
                        lock.release()
            except Exception:
                # The outbox ran what was queued; keep the thread serving.
                log.exception("lanes: dispatching after a run failed")
                with box:
                    # Runs the sink put in the batch before the failure are this thread's to run.
                    took = bool(worker.batch) or self._take_locked(worker)
                    if not took and not self._park_locked(worker):
                        return

    def _park_locked(self, worker: _Worker) -> bool:
        """Put ``worker`` on the idle list; False (and the thread is counted out) when stopping."""
        if self._stopping:
            self._threads -= 1
            return False
        self._idle.append(worker)
        return True

    # the event loop for async tools ----------------------------------------------

    def _start_async(self, run: Run) -> None:
        try:
            loop = self._async.get()
        except SystemShutdown:  # the manager is closing
            self._finish(run, False, CommandCancelled("lane manager closed before the command started"))
            return
        except Exception as exc:  # the loop's thread could not start
            self._launch_failed(run, exc)
            return
        try:
            loop.call_soon_threadsafe(self._create_task, loop, run)
        except RuntimeError:  # the loop is closed: the manager is closing
            self._finish(run, False, CommandCancelled("lane manager closed before the command started"))

    def _create_task(self, loop: asyncio.AbstractEventLoop, run: Run) -> None:
        task = loop.create_task(self._run_async(run))
        run.task = task
        run.token.add_callback(lambda _reason: loop.call_soon_threadsafe(task.cancel))

    async def _run_async(self, run: Run) -> None:
        cmd = run.cmd
        spec = cmd.spec
        self._announce(run)
        ok: bool
        value: Any
        if run.token.cancelled:
            ok, value = False, _cancelled_error(run)
        else:
            kwargs = {**cmd.params, "cancel_token": run.token} if spec.takes_token else cmd.params
            set_current_token(run.token)  # the task runs in its own context copy
            try:
                ok, value = True, await spec.fn(**kwargs)
            except asyncio.CancelledError:
                ok, value = False, _cancelled_error(run)
            except Exception as exc:
                ok, value = False, exc
        self._finish(run, ok, value)

    # the process pool -------------------------------------------------------------

    def _start_pool(self, run: Run) -> None:
        cmd = run.cmd
        self._announce(run)
        try:
            # Never block the dispatching thread (it may be the event loop or the timer thread):
            # a full pool queue fails this attempt with PoolFull, and the retry policy decides.
            # The pool itself re-runs the task when a worker dies under it (its default attempts).
            fut = self._get_pool().run_cpu_bound(cmd.spec.fn, (), cmd.params, timeout=cmd.timeout, block=False)
        except Exception as exc:
            self._finish(run, False, exc)
            return
        run.token.add_callback(lambda _reason: fut.force_cancel())  # even while a worker runs it
        fut.add_done_callback(partial(self._pool_done, run))

    def _pool_done(self, run: Run, fut: Any) -> None:
        if fut.cancelled():
            self._finish(run, False, _cancelled_error(run))
            return
        error = fut.exception()
        self._finish(run, error is None, fut.result() if error is None else error)

    # shutdown ---------------------------------------------------------------------------

    def stop(self, timeout: float) -> None:
        """Let idle threads exit and stop the event loop; busy threads are daemons and are abandoned."""
        with self._lock:
            self._stopping = True
            self.holding = False
            for w in self._idle:
                w.gate.release()
            self._idle.clear()
        if self._fallback is not None:
            self._fallback.close()
        self._async.close(timeout)


_RUN_BATCH_CODE = Executors._run_batch.__code__  # a thread inside a tool has this frame below the tool's
