"""The pool on Ray: each worker a Ray actor, with laneway's own retries, timeouts and supervision.

One local Ray (2 CPUs) serves the whole module; each test starts its own pool on it.
The pool suite's own tests run here again on Ray (Thespian's idea: one suite over
every system base): their bodies are imported from ``test_processes``,
``test_executor`` and ``test_chaos`` and get ``backend="ray"`` from the fixture below; where Ray knows
less than a local parent (it reports "ray actor died", not the signal or exit
code), the shared test asks for what Ray can tell, and where the test's 2-CPU Ray
cannot hold three 1-CPU actors it runs with two. Left out are the two long kill-loops
(2,000 tasks with repeated kills; kills during a 3,000-task submit burst), which take
minutes on a busy 2-core Ray; their Ray form, SIGKILLing actor processes under load,
is further down.
"""

from __future__ import annotations

import collections
import math
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra: pip install 'laneway[ray]'")

from laneway import Orchestrator  # noqa: E402
from laneway.errors import ConfigError, WorkerDied  # noqa: E402
from laneway.lanes import ToolRegistry, tool  # noqa: E402
from laneway.pool import WorkerState  # noqa: E402

from . import tasks  # noqa: E402
from .conftest import wait_until  # noqa: E402
from .test_chaos import (  # noqa: E402,F401
    test_supervisor_that_gives_up_dead_letters_what_is_left,
    test_kill_every_worker_at_once,
)
from .test_executor import (  # noqa: E402,F401
    test_a_failing_initializer_fails_the_pool_start_with_an_error_naming_it,
    test_a_result_that_cannot_be_unpickled_here_fails_its_future_and_never_stalls_the_pool,
    test_a_settled_task_s_result_is_referenced_only_by_its_future,
    test_a_with_block_waits_for_the_submitted_tasks_then_stops_the_workers,
    test_asyncio_run_in_executor_runs_on_the_pool,
    test_closing_the_map_iterator_cancels_the_calls_no_worker_has,
    test_map_gives_what_process_pool_executor_map_gives,
    test_map_sends_chunksize_calls_per_task_and_reads_its_input_lazily,
    test_task_errors_are_raised_as_their_own_type_with_the_remote_traceback,
    test_the_initializer_runs_once_in_each_worker_and_again_in_a_replacement,
)
from .test_processes import (  # noqa: E402,F401
    test_a_hanging_task_times_out_and_its_worker_is_replaced,
    test_a_stopped_worker_misses_heartbeats_and_is_killed,
    test_cpu_bound_tasks_run_in_parallel_across_workers,
    test_done_callbacks_run_off_the_io_thread_and_may_submit_into_a_full_queue,
    test_worker_statistics_report_pid_state_tasks_rss_and_cpu,
    test_a_task_that_kills_its_worker_is_dead_lettered_after_its_attempts,
    test_sigkill_is_detected_at_once_and_the_task_retried_on_another_worker,
    test_exceptions_come_back_with_the_remote_traceback,
    test_results_kwargs_lambdas_and_closures_run_in_other_processes,
    test_unpicklable_function_argument_or_result_is_a_serialization_error,
    test_workers_above_the_memory_limit_are_recycled,
    test_workers_are_recycled_after_max_tasks,
)

pytestmark = [pytest.mark.ray, pytest.mark.multiprocess]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def orch(ray_session):
    o = Orchestrator(name="ray-test", ask_timeout=60)
    yield o
    o.shutdown(timeout=15)


@pytest.fixture
def backend(ray_session):
    """Overrides the pool suite's parametrized backend: everything here runs on Ray."""
    return "ray"


@pytest.fixture
def pool(orch):
    p = orch.start_pool(backend="ray", workers=2, heartbeat_s=0.2)
    assert p.wait_ready(2, timeout=60), p.workers()
    return p


def ready_workers(pool):
    return [w for w in pool.workers() if w.state in (WorkerState.IDLE, WorkerState.BUSY)]


def inc(x):
    return x + 1


def exit_process(code):
    os._exit(code)


def exit_once(marker: str):
    """Kill the worker the first time (marker absent), succeed on the retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died once")
        os._exit(1)
    return f"survived in {os.getpid()}"


def my_pid(_=None):
    return os.getpid()


def slow_square(i):
    time.sleep(0.02)
    return i * i


# --- statistics ----------------------------------------------------------------------------


def test_worker_statistics_name_actor_processes_and_node(pool):
    futures = [pool.submit(my_pid) for _ in range(40)]
    ran_in = {f.get(timeout=60) for f in futures}

    def beating():
        ws = ready_workers(pool)
        return len(ws) == 2 and all(w.rss > 0 and w.cpu >= 0 for w in ws) and ws

    workers = wait_until(beating, what="heartbeats with memory use")
    pids = {w.pid for w in workers}
    assert ran_in <= pids and os.getpid() not in pids
    driver_node = ray.get_runtime_context().get_node_id()
    for w in workers:
        assert psutil.Process(w.pid).cmdline()[0].startswith("ray::"), "pid is not a Ray worker process"
        assert (w.node, w.host, w.remote) == (driver_node, socket.gethostname(), False)
    wait_until(lambda: sum(w.tasks_done for w in pool.workers()) == 40, what="tasks_done to add up")
    assert pool.backend.describe()["address"] == "local"


# --- failures: timeouts, deaths, retries, dead letters -----------------------------------


def test_dead_actor_is_retried_then_dead_lettered_with_the_reason(pool, orch, tmp_path):
    assert pool.options(attempts=2).submit(exit_once, str(tmp_path / "marker")).get(timeout=90).startswith("survived")
    with pytest.raises(WorkerDied) as info:
        pool.options(attempts=2).submit(exit_process, 3).get(timeout=90)
    assert "ray actor died" in info.value.reason and "2 attempt" in str(info.value)
    (letter,) = orch.dead_letters.list("pool")
    assert letter.attempts == 2 and "ray actor died" in letter.reason
    stats = pool.statistics()
    assert stats.retried == 2 and stats.worker_deaths == 3 and stats.dead_lettered == 1
    wait_until(lambda: len(ready_workers(pool)) == 2, timeout=60, what="restarted workers")
    assert pool.submit(inc, 41).get(timeout=60) == 42


def test_ray_kill_from_outside_is_a_worker_failure(pool):
    (victim, _) = ready_workers(pool)
    handle = next(s.handle for s in pool.backend._slots.values() if s.wid == victim.worker_id)
    ray.kill(handle)
    wait_until(lambda: victim.worker_id not in {w.worker_id for w in pool.workers()}, what="the death to be seen")
    wait_until(lambda: len(ready_workers(pool)) == 2, timeout=60, what="the replacement worker")
    assert pool.statistics().worker_deaths == 1


def test_shutdown_stops_every_actor_process(orch):
    pool = orch.start_pool(backend="ray", workers=2)
    assert pool.wait_ready(2, timeout=60)
    pids = [w.pid for w in pool.workers()]
    assert pool.submit(inc, 1).get(timeout=60) == 2
    pool.shutdown(timeout=10)
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=30)
    assert not alive, f"actor processes outlived the pool: {alive}"
    assert pool.statistics().worker_deaths == 0, "graceful stops are not deaths"


@pytest.mark.chaos
def test_chaos_sigkill_actor_processes_under_load_accounts_for_every_task(pool, orch):
    n = 300
    # Even tasks may not be retried, so kills under them must end in the dead-letter queue.
    futures = [pool.options(attempts=1 if i % 2 == 0 else 3).submit(slow_square, i) for i in range(n)]
    kills = 0
    for target in (40, 100, 160, 220):
        wait_until(lambda: pool.statistics().completed >= target, timeout=90, what=f"{target} tasks done")
        busy = wait_until(lambda: [w for w in pool.workers() if w.state is WorkerState.BUSY and w.pid],
                          timeout=60, what="a busy worker")
        os.kill(busy[0].pid, signal.SIGKILL)
        kills += 1
    ok = died = 0
    for i, fut in enumerate(futures):
        try:
            assert fut.get(timeout=120) == i * i
            ok += 1
        except WorkerDied as exc:
            assert "ray actor died" in exc.reason
            died += 1
    letters = orch.dead_letters.list("pool")
    assert ok + died == n and len(letters) == died
    assert all("ray actor died" in letter.reason for letter in letters)
    stats = pool.statistics()
    assert stats.worker_deaths == kills and stats.completed == ok and stats.dead_lettered == died
    wait_until(lambda: len(ready_workers(pool)) == 2, timeout=60, what="restarted workers")
    assert pool.submit(inc, 1).get(timeout=60) == 2


# --- the rest of laneway runs unchanged on Ray ----------------------------------------------


def test_router_and_lanes_run_cpu_bound_work_on_ray_actors(orch):
    pool = orch.start_pool(backend="ray", workers=2)
    assert pool.wait_ready(2, timeout=60)
    actor_pids = {w.pid for w in pool.workers()}
    orch.register_agent("crunch", "optimizer", {"math"}, 2, math.factorial, cpu_bound=True)
    orch.register_agent("where", "executor", {"pid"}, 2, my_pid, cpu_bound=True)
    assert orch.router.run(10, capabilities="math", timeout=60) == 3628800
    assert orch.router.run("x", capabilities="pid", timeout=60) in actor_pids
    registry = ToolRegistry()
    tool(registry=registry, name="where", cpu_bound=True)(my_pid)
    lanes = orch.start_lanes(tools=registry)
    assert lanes.call("query", "where", {}, wait_timeout=60) in actor_pids
    assert pool.statistics().completed >= 3


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("options, match", [
    ({"actor_options": {"max_restarts": 3}}, "max_restarts"),
    ({"actor_options": {"max_task_retries": -1}}, "max_task_retries"),
    ({"address": "auto", "num_cpus": 2}, "num_cpus"),
    ({"heartbeat_s": 0}, "heartbeat_s"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"max_calls_per_worker": 2.5}, "max_calls_per_worker must be an int >= 1"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_ray_options_are_config_errors(orch, options, match):
    with pytest.raises(ConfigError, match=match):
        orch.start_pool(backend="ray", workers=1, **options)


# --- batching ---------------------------------------------------------------------------------


def wait_for_file(path):
    return tasks.wait_for_file(path, "opened")


def ray_call_id(_=None):
    return ray.get_runtime_context().get_task_id()


@pytest.mark.parametrize("options, batch, calls", [({}, 16, 4), ({"batch_size": 4, "max_calls_per_worker": 3}, 4, 3)])
def test_a_worker_holds_one_batch_more_than_its_calls_carry_and_each_call_carries_one_batch(orch, tmp_path, options,
                                                                                           batch, calls, monkeypatch):
    # The window is the backend's alone here: a loaded machine that stalls the actor mid-batch makes
    # its tasks look slow, and the pool would then (rightly) prefetch less than a full window.
    from laneway.pool import _dispatch, _window

    monkeypatch.setattr(_window, "FAST_TASK_S", 60.0)
    monkeypatch.setattr(_window, "PREFETCH_S", 3600.0)
    # And every submit sends: once the worker held FED_WINDOW tasks (the blocker and one more, if the
    # I/O thread sent before the rest were submitted), tiny submits would rightly wait for the next
    # result, which the blocker holds back (test_scheduling covers that rule).
    monkeypatch.setattr(_dispatch, "FED_WINDOW", 10**9)
    pool = orch.start_pool(backend="ray", workers=1, **options)
    assert pool.wait_ready(1, timeout=60)
    assert [f.get(timeout=60) for f in [pool.submit(inc, i) for i in range(300)]] == list(range(1, 301))
    gate = str(tmp_path / "gate")
    blocker = pool.submit(wait_for_file, gate)
    first = pool.submit(ray_call_id)
    wait_until(lambda: pool.workers()[0].in_flight == 2, what="the blocker and one more task in flight")
    futures = [first] + [pool.submit(ray_call_id) for _ in range(3 * batch * calls - 1)]
    # The default window is the backend's: every call in flight full, and the next batch ready to go.
    held = batch * (calls + 1)
    wait_until(lambda: pool.workers()[0].in_flight == held, what=f"{held} tasks in flight")
    open(gate, "w").close()
    assert blocker.get(timeout=60) == "opened"
    per_call = collections.Counter(f.get(timeout=60) for f in futures)
    assert max(per_call.values()) == batch and sum(per_call.values()) == len(futures)


def test_a_batch_that_runs_long_reports_each_task_as_it_ends(orch, tmp_path):
    pool = orch.start_pool(backend="ray", workers=1)
    assert pool.wait_ready(1, timeout=60)
    gate = str(tmp_path / "gate")
    first, blocked, last = pool.submit(inc, 1), pool.submit(wait_for_file, gate), pool.submit(inc, 3)
    assert first.get(timeout=60) == 2  # answered while the rest of its batch still runs
    assert not blocked.done() and not last.done()
    open(gate, "w").close()
    assert (blocked.get(timeout=60), last.get(timeout=60)) == ("opened", 4)


def test_a_tiny_task_costs_no_pickle_of_its_own_at_either_end(orch, monkeypatch):
    from laneway.worker import codec

    pool = orch.start_pool(backend="ray", workers=1)
    assert pool.wait_ready(1, timeout=60)

    def no_pickle(*args, **kwargs):
        raise AssertionError("a tiny task's arguments or result went through a pickle of its own")

    # Small scalar arguments ride as themselves in the call's one pickle, and so do small results.
    monkeypatch.setattr(codec, "dumps_args", no_pickle)
    monkeypatch.setattr(codec, "decode", no_pickle)
    futures = [pool.submit(inc, i) for i in range(100)] + [pool.submit(str, "x" * 10)]
    # (On a wire that decodes each result, the future never settles: a timeout, not a hang.)
    assert [f.get(timeout=30) for f in futures] == list(range(1, 101)) + ["x" * 10]
    monkeypatch.undo()
    # Anything else still travels as a pickle of its own, both ways.
    assert pool.submit(sorted, [3, 1, 2]).get(timeout=60) == [1, 2, 3]


def test_each_answer_says_how_long_the_actor_spent_on_its_tasks(orch, monkeypatch):
    pool = orch.start_pool(backend="ray", workers=1)
    assert pool.wait_ready(1, timeout=60)
    hub, seen = pool._core, []
    report = hub.results_rows

    def recorded(worker_id, rows, busy_s=None):
        seen.append((len(rows), busy_s))
        report(worker_id, rows, busy_s)

    monkeypatch.setattr(hub, "results_rows", recorded)
    assert [f.get(timeout=60) for f in [pool.submit(inc, i) for i in range(50)]] == list(range(1, 51))
    assert seen and all(busy is not None and busy >= 0 for _, busy in seen)
    seen.clear()
    # 20 ms tasks: the first answers after one task, the rest come by the long poll; each says its time.
    assert [f.get(timeout=60) for f in [pool.submit(slow_square, i) for i in range(3)]] == [0, 1, 4]
    assert sum(n for n, _ in seen) == 3
    assert all(busy >= 0.02 * n for n, busy in seen), seen  # time.sleep(0.02) sleeps at least that long


def test_answers_that_cross_slowly_do_not_shrink_the_window_of_a_worker_whose_tasks_are_fast(orch, monkeypatch):
    from laneway.pool.ray import _backend

    pool = orch.start_pool(backend="ray", workers=1)
    assert pool.wait_ready(1, timeout=60)
    arrived = _backend.RayBackend._arrived

    def late(self, slot, call, answer):
        time.sleep(0.01)  # a slow crossing (a loaded driver, a far node): the gaps between results grow
        arrived(self, slot, call, answer)

    monkeypatch.setattr(_backend.RayBackend, "_arrived", late)
    per_call = collections.Counter(f.get(timeout=60) for f in [pool.submit(ray_call_id) for _ in range(300)])
    # Timed by the gaps, each task would look 10 ms long and the worker keep a window of 2 (calls of
    # 1-2 tasks); by the actor's own busy time they are fast, and later calls carry whole batches.
    assert sum(per_call.values()) == 300 and max(per_call.values()) > 2, per_call


def test_a_ready_batch_leaves_before_the_outcomes_of_the_call_it_replaces_are_reported(orch, monkeypatch):
    pool = orch.start_pool(backend="ray", workers=1, batch_size=4, max_calls_per_worker=2)
    assert pool.wait_ready(1, timeout=60)
    backend, hub, unanswered = pool.backend, pool._core, []
    report = hub.results_rows

    def recorded(worker_id, rows, busy_s=None):
        # On the loop thread, which alone touches the slots: the calls still waiting for their answer.
        unanswered.append(sum(not call.arrived for call in backend._slots[worker_id].calls))
        report(worker_id, rows, busy_s)

    monkeypatch.setattr(hub, "results_rows", recorded)
    assert [f.get(timeout=60) for f in [pool.submit(inc, i) for i in range(400)]] == list(range(1, 401))
    # Reported only after the next batch left, the answered call's place is taken again: both calls in flight.
    assert max(unanswered) == 2, unanswered


# --- answers: taken by the thread that waits for them ----------------------------------------


def test_answers_are_taken_by_the_thread_waiting_in_ray_wait_not_handed_over_from_ray_s_callback_thread(
        orch, monkeypatch):
    import threading

    from laneway.pool.ray import _backend

    pool = orch.start_pool(backend="ray", workers=1)
    assert pool.wait_ready(1, timeout=60)
    takers: collections.Counter[str] = collections.Counter()
    arrived = _backend.RayBackend._arrived

    def recorded(self, slot, call, answer):
        takers[threading.current_thread().name.partition(":")[0]] += 1
        arrived(self, slot, call, answer)

    monkeypatch.setattr(_backend.RayBackend, "_arrived", recorded)
    assert [f.get(timeout=60) for f in [pool.submit(inc, i) for i in range(2000)]] == list(range(1, 2001))
    # A completion callback runs on Ray's own I/O thread, which then waits for the GIL (moving no Ray
    # traffic meanwhile) and hands the answer to the loop: a second hop before the next batch can leave.
    # Only a call sent while the reply thread already waited on others comes that way (see the next test).
    assert takers["laneway-ray-replies"] > sum(takers.values()) / 2, takers


def test_a_call_sent_while_the_reply_thread_waits_on_a_long_one_is_answered_without_waiting_for_it(
        orch, monkeypatch, tmp_path):
    from laneway.pool.ray import _replies

    monkeypatch.setattr(_replies, "WAIT_S", 600.0)  # the reply thread's wait now ends only with an answer
    pool = orch.start_pool(backend="ray", workers=2, assignment="least_busy")
    assert pool.wait_ready(2, timeout=60)
    gate = str(tmp_path / "gate")
    long = pool.submit(wait_for_file, gate)
    wait_until(lambda: long.running() and pool.backend._replies._waiting, what="the reply thread to wait on the call")
    quick = pool.submit(inc, 1)  # to the other worker; not among the calls the reply thread waits on
    assert quick.get(timeout=60) == 2
    assert not long.done()
    open(gate, "w").close()
    assert long.get(timeout=60) == "opened"
