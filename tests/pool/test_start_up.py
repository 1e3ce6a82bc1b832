"""How a pool starts: its first workers' interpreters start while the pool loads, and the pool loads only what it uses.

Structural checks in fresh interpreters (which modules are loaded, which processes exist when),
never timings: the start-up figures live in ``laneway.cli.benchmarks.pool_paths`` (rows ``start``, ``uss``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

from laneway.pool._results import decode_row
from laneway.worker import FunctionPickler, Spawner, launch, wire

from .conftest import wait_gone, wait_until
from .test_local_replies import bare_worker

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=100,
                         cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


#: What loading the pool must not load: tools it does not use (psutil: only the process-actor monitor
#: and remote workers without /proc read it) and laneway's other subsystems.
POOL_MUST_NOT_LOAD = {"psutil", "rich", "jsonschema", "sqlite3", "_sqlite3", "asyncio", "aiohttp", "ray", "psycopg",
                      "cloudpickle"}
OTHER_SUBSYSTEMS = ("laneway.lanes", "laneway.router", "laneway.breakers", "laneway.workflow", "laneway.observe",
                    "laneway.cluster", "laneway.console", "laneway.cli", "laneway.orchestrator")


@pytest.mark.timeout(120)
def test_importing_the_pool_loads_only_what_a_pool_needs():
    seen = _run("""
        import json, sys
        from laneway.pool import Pool
        print(json.dumps(sorted(sys.modules)))
    """)
    heavy = {m for m in seen if m.split(".")[0] in POOL_MUST_NOT_LOAD}
    assert not heavy, f"`from laneway.pool import Pool` imported {sorted(heavy)}"
    others = {m for m in seen if m.startswith(OTHER_SUBSYSTEMS)}
    assert not others, f"`from laneway.pool import Pool` imported {sorted(others)}"


@pytest.fixture(scope="module")
def started_pool_parent_modules() -> list[str]:
    """The modules a parent has loaded once its pool started and served a task (one child for the tests below)."""
    return _run("""
        import json, sys
        from laneway import Orchestrator
        from tests.pool import tasks
        with Orchestrator(name="parent-imports") as orch:
            pool = orch.start_pool(workers=1)
            assert pool.submit(abs, -42).result(timeout=60) == 42
            assert pool.submit(tasks.inc, 41).result(timeout=60) == 42  # a user's module function
            print(json.dumps(sorted(sys.modules)))
    """)


@pytest.mark.timeout(120)
def test_a_started_pool_loads_no_monitoring_or_other_subsystem_in_the_parent(started_pool_parent_modules):
    # cloudpickle may load here (the pool pickles functions with it); psutil must wait for monitoring.
    seen = started_pool_parent_modules
    heavy = {m for m in seen if m.split(".")[0] in POOL_MUST_NOT_LOAD - {"cloudpickle"}}
    assert not heavy, f"a pool's parent imported {sorted(heavy)} to start and serve a task"
    others = {m for m in seen if m.startswith(OTHER_SUBSYSTEMS[:-1])}
    assert not others, f"a pool's parent imported {sorted(others)}"


@pytest.mark.timeout(120)
def test_a_task_function_a_module_names_loads_neither_cloudpickle_nor_hashlib_in_the_parent(started_pool_parent_modules):
    # abs and tasks.inc pickle by reference with the stdlib pickler, as cloudpickle would; their
    # digests come from _blake2 (hashlib loads OpenSSL).
    heavy = {m for m in started_pool_parent_modules if m.split(".")[0] in ("cloudpickle", "hashlib", "_hashlib")}
    assert not heavy, f"submitting abs and tasks.inc loaded {sorted(heavy)}"


@pytest.mark.timeout(120)
def test_a_pool_of_local_workers_loads_no_zeromq_in_the_parent(started_pool_parent_modules):
    zmq = [m for m in started_pool_parent_modules if m.split(".")[0] == "zmq"]
    assert not zmq, f"a pool of local workers loaded {zmq} to start and serve a task"


@pytest.mark.timeout(120)
def test_a_started_pool_loads_no_broken_process_pool_machinery_in_the_parent(started_pool_parent_modules):
    # PoolDown, WorkerDied and InitializerError are made when first raised: a pool that runs
    # without failures never loads concurrent.futures.process, multiprocessing's connections and queues.
    machinery = {"concurrent.futures.process", "multiprocessing.connection", "multiprocessing.queues"}
    assert not machinery & set(started_pool_parent_modules), sorted(machinery & set(started_pool_parent_modules))


@pytest.mark.timeout(120)
def test_a_pool_worker_loads_no_broken_process_pool_machinery():
    # WorkerDied, InitializerError and PoolDown are BrokenProcessPools, made when the pool's
    # parent side first asks for them: a worker, which raises none of them, never loads
    # concurrent.futures.process (and multiprocessing's connections, queues, tempfile).
    seen = _run("""
        import json, sys
        from laneway import Orchestrator
        from tests.pool.tasks import loaded_modules
        loaded_by_import = "concurrent.futures.process" in sys.modules
        with Orchestrator(name="worker-imports") as orch:
            modules = orch.start_pool(workers=1).submit(loaded_modules).result(timeout=60)
        print(json.dumps({"modules": modules, "loaded_by_import": loaded_by_import}))
    """)
    assert not seen["loaded_by_import"], "`from laneway import Orchestrator` loaded concurrent.futures.process"
    machinery = {"concurrent.futures.process", "multiprocessing.connection", "multiprocessing.queues", "tempfile"}
    assert not machinery & set(seen["modules"]), sorted(machinery & set(seen["modules"]))


def _children_when_loading(modules: tuple[str, ...]) -> dict:
    """Run a pool program; for each of ``modules``, the parent's child pids when it began to load, and the worker's pid."""
    return _run(f"""
        import importlib.abc, json, sys
        import psutil
        seen = {{}}

        class Watch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name in {modules!r} and name not in seen:
                    seen[name] = [p.pid for p in psutil.Process().children()]
                return None

        sys.meta_path.insert(0, Watch())
        from laneway import Orchestrator
        with Orchestrator(name="ahead") as orch:
            pool = orch.start_pool(workers=1)
            assert pool.submit(abs, -42).result(timeout=60) == 42
            seen["worker"] = pool.workers()[0].pid
        print(json.dumps(seen))
    """)


@pytest.mark.timeout(120)
def test_the_first_worker_starts_before_the_pool_loads_and_serves_the_first_task():
    # At the moment the pool's scheduler module starts loading, the first worker's interpreter
    # already runs (a child of this process), and it is the worker that serves the task.
    seen = _children_when_loading(("laneway.pool._scheduler",))
    assert seen.get("laneway.pool._scheduler"), "no worker process was running when the pool's modules began to load"
    assert seen["worker"] in seen["laneway.pool._scheduler"]


@pytest.mark.timeout(120)
def test_the_first_worker_starts_before_the_parent_loads_actors_and_pykka():
    # What an Orchestrator needs before start_pool launches the first worker is only the actor
    # system: actors, supervisors and pykka load with the pool that spawns them, while that
    # worker's interpreter starts up.
    seen = _children_when_loading(("pykka", "laneway.actors._actor", "laneway.actors._supervisor"))
    worker = seen.pop("worker")
    assert sorted(seen) == ["laneway.actors._actor", "laneway.actors._supervisor", "pykka"]
    late = {name: children for name, children in seen.items() if worker not in children}
    assert not late, f"the parent loaded {sorted(late)} before it launched the pool's first worker"


#: What neither an actor system nor a pool needs: the kernel's progress streams, retry policies,
#: cancellation, outbox, loop threads and Ray session, function actors, and (without a store) any store.
NOT_FOR_A_POOL = ("laneway.core._progress", "laneway.core._retry", "laneway.core._cancellation", "laneway.core._outbox",
                  "laneway.core._threads", "laneway.core._ray_session", "laneway.actors._function_actor",
                  "laneway.store", "laneway.store._base", "laneway.store._open", "laneway.store._postgres",
                  "laneway.store._psycopg", "laneway.store._sql")


@pytest.mark.timeout(120)
def test_a_started_pool_loads_none_of_the_features_it_does_not_use(started_pool_parent_modules):
    loaded = sorted(set(NOT_FOR_A_POOL) & set(started_pool_parent_modules))
    assert not loaded, f"an orchestrator that started a pool and served a task loaded {loaded}"


@pytest.mark.timeout(120)
def test_the_features_a_pool_does_not_load_still_import_from_where_they_are_documented():
    seen = _run("""
        import json
        from laneway.core import (CancellationToken, LoopThread, Outbox, ProgressStream, RetryKind, RetryPolicy,
                                  acquire_ray, current_token)
        from laneway.actors import Actor, FunctionRef, LoopThread as ActorsLoopThread, Supervisor, function_actor
        from laneway.store import POSTGRES_EXTRA, PostgresStore, import_psycopg
        import laneway.core, laneway.actors, laneway.store
        missing = [f"{m.__name__}.{name}" for m in (laneway.core, laneway.actors, laneway.store)
                   for name in m.__all__ if not hasattr(m, name)]
        print(json.dumps({"missing": missing, "same": ActorsLoopThread is LoopThread,
                          "retry": RetryPolicy.exponential(2).delay_before(1)}))
    """)
    assert seen == {"missing": [], "same": True, "retry": 0.1}


@contextlib.contextmanager
def launched_ahead(name: str, count: int) -> Iterator[tuple[Spawner, Callable[[], set[int]]]]:
    """A Spawner that launched ``count`` interpreters ahead, and what returns the pids of this
    test's children; closed at the end, when nothing the test started may be left (a child of an
    earlier test may still be on its way out, so only new ones count)."""
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    sp = Spawner(name)
    try:
        sp.launch_ahead(count, lambda: os._exit)
        yield sp, lambda: {p.pid for p in me.children()} - before
    finally:
        sp.close()
    assert not {p.pid for p in me.children()} - before


@pytest.mark.timeout(60)
def test_an_interpreter_launched_ahead_runs_what_spawn_gives_it():
    with launched_ahead("ahead", 2) as (sp, started):
        ahead = wait_until(lambda: new if len(new := started()) == 2 else None, what="two interpreters launched ahead")
        proc = sp.spawn(os._exit, (4,), name="w1")
        assert proc.pid in ahead
        proc.join(30)
        assert proc.exitcode == 4
        proc.close()
        other = psutil.Process((ahead - {proc.pid}).pop())
    # The one never used was told so, and has exited (status collected: no zombie left).
    assert not other.is_running()


@pytest.mark.timeout(60)
def test_launch_ahead_returns_once_the_interpreters_run():
    # Started, not ready: the caller's next steps overlap their start-up instead of delaying it.
    with launched_ahead("ahead-started", 2) as (_, started):
        assert len(started()) == 2


@pytest.mark.timeout(60)
def test_an_interpreter_launched_ahead_imports_its_preload_before_it_has_a_target(tmp_path, monkeypatch):
    mark = tmp_path / "preloaded"
    monkeypatch.setenv("LANEWAY_TEST_PRELOADED", str(mark))
    proc = launch(preload=("tests.pool.preloaded",))
    try:
        assert wait_until(mark.exists, what="the preloaded module's import, with no target sent")
        assert mark.read_text() == str(proc.pid)
    finally:
        proc.dismiss()
        proc.join(30)
        proc.close()
    assert proc.exitcode == 0


@pytest.mark.timeout(60)
def test_a_preload_that_fails_to_import_leaves_the_target_to_run():
    proc = launch(preload=("tests.pool.no_such_module",))
    proc.load(os._exit)
    proc.give((6,), name="preload-failed")
    proc.join(30)
    assert proc.exitcode == 6
    proc.close()


@pytest.mark.timeout(60)
def test_spawn_starts_a_fresh_process_when_the_one_launched_ahead_died():
    with launched_ahead("ahead-died", 1) as (sp, started):
        (pid,) = wait_until(started, what="an interpreter launched ahead")
        ahead = psutil.Process(pid)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: ahead.status() == psutil.STATUS_ZOMBIE, what="the kill")
        proc = sp.spawn(os._exit, (5,), name="w1")
        assert proc.pid != pid
        proc.join(30)
        assert proc.exitcode == 5
        proc.close()


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_an_interpreter_waiting_for_its_orders_dies_with_its_parent():
    script = textwrap.dedent("""
        import os, sys, threading
        from laneway.worker import launch
        proc = launch()  # waits for its target: only the orders pipe ties it to this process
        print(proc.pid, flush=True)
        threading.Event().wait()
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid = int(owner.stdout.readline())
        assert not wait_gone({pid}, 0.01) == set()
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        assert wait_gone({pid}, 15) == set(), "an interpreter launched ahead outlived its SIGKILLed parent"
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()


@pytest.mark.timeout(60)
def test_a_launched_interpreter_dismissed_before_its_arguments_exits_quietly():
    proc = launch()
    proc.load(os._exit)
    proc.dismiss()
    proc.join(30)
    assert proc.exitcode == 0
    proc.close()


@pytest.mark.timeout(120)
def test_the_worker_module_a_local_worker_preloads_does_not_load_zeromq():
    seen = _run("""
        import json, sys
        from multiprocessing import process, spawn
        import laneway.worker._process
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "zmq")))
    """)
    assert seen == [], f"a worker's module loaded {seen} before its first task"


@pytest.mark.timeout(120)
def test_the_worker_module_loads_no_typing():
    # ~3 ms of every worker's start: its modules name typing's types for mypy only.
    seen = _run("""
        import json, sys
        from multiprocessing import process, spawn
        import laneway.worker._process
        print(json.dumps("typing" in sys.modules))
    """)
    assert seen is False, "a worker's module loaded typing"


@pytest.mark.timeout(60)
def test_a_local_worker_says_hello_beats_runs_batches_and_stops_without_connecting_over_zeromq(tmp_path):
    with bare_worker(tmp_path, heartbeat_s=0.05) as w:
        data = w.replies.recv(1024)
        assert data[: wire.REPLY_TOKEN + 1] == w.token + wire.REPLY_HELLO
        assert json.loads(data[wire.REPLY_TOKEN + 1:])[2] == w.token.hex()
        beat = w.replies.recv(1024)
        assert beat[: wire.REPLY_TOKEN + 1] == w.token + wire.REPLY_BEAT

        digest, fn_bytes = FunctionPickler().dumps(abs)
        for seq in (1, 2):
            w.out.sendto(seq.to_bytes(wire.SEQ_BYTES, "big") + pickle.dumps([(seq, digest, fn_bytes, (-seq,), 0)]),
                         w.task_path)
        # the STOP datagram follows the tasks sent before it: they run first
        w.out.sendto(wire.STOP_SEQ.to_bytes(wire.SEQ_BYTES, "big"), w.task_path)
        rows = pickle.loads(w.recv_reply()[wire.REPLY_TOKEN + 1:])[0]
        rows += pickle.loads(w.recv_reply()[wire.REPLY_TOKEN + 1:])[0]
        assert [decode_row(row) for row in rows] == [(True, 1), (True, 2)]
        w.worker.join(30)
        assert not w.worker.is_alive()
        # Never asked to, it never connected (a DEALER sends its HELLO before it closes, lingering).
        assert not w.router.poll(0), "the worker connected over ZeroMQ without being asked"


@pytest.mark.timeout(60)
def test_a_local_worker_connects_over_zeromq_when_the_pool_asks(tmp_path):
    with bare_worker(tmp_path) as w:
        assert w.replies.recv(1024)[wire.REPLY_TOKEN: wire.REPLY_TOKEN + 1] == wire.REPLY_HELLO
        w.out.sendto(wire.CONNECT_SEQ.to_bytes(wire.SEQ_BYTES, "big"), w.task_path)
        ident = w.hello()
        # it runs what came over ZeroMQ, and later CONNECT datagrams change nothing
        w.out.sendto(wire.CONNECT_SEQ.to_bytes(wire.SEQ_BYTES, "big"), w.task_path)
        digest, fn_bytes = FunctionPickler().dumps(abs)
        w.router.send_multipart([ident, wire.SEQ_TASKS, (1).to_bytes(wire.SEQ_BYTES, "big"),
                                 pickle.dumps([(1, digest, fn_bytes, (-3,), 0)])])
        assert [decode_row(row) for row in pickle.loads(w.recv_reply()[wire.REPLY_TOKEN + 1:])[0]] == [(True, 3)]
        w.router.send_multipart([ident, wire.STOP])
        w.worker.join(30)
        assert not w.worker.is_alive()


@pytest.mark.timeout(120)
def test_what_only_zeromq_carries_waits_for_a_local_worker_to_connect(orch):
    # A first task whose argument is too large for a datagram, sent before the worker connected
    # over ZeroMQ, is kept and sent once it has; so is the STOP of a pool closed at once.
    from . import tasks

    pool = orch.start_pool(workers=1)
    big = bytes(range(256)) * 1024
    assert pool.submit(tasks.echo, big).get(60) == ((big,), {})
    other = orch.__class__(name="closed-at-once")
    try:
        with other.events.subscribe("pool.worker.lost") as lost:
            other.start_pool(workers=1).wait_ready(timeout=60)
            other.shutdown()
            event = lost.get(timeout=30)
    finally:
        other.shutdown()
    assert "SIGKILL" not in str(event), event  # it stopped when told, not killed for want of a STOP
    stats = pool.statistics()
    assert (stats.completed, stats.retried) == (1, 0)


@pytest.mark.timeout(120)
def test_a_pool_of_local_workers_given_tasks_one_at_a_time_never_loads_zeromq():
    # Neither the parent (its ROUTER is bound when a local worker first needs it, or is kept
    # busy) nor the workers (they connect when asked), from the start to a graceful shutdown:
    # the workers stop on a STOP datagram, reported as a stop, not a kill.
    seen = _run("""
        import json, sys
        from laneway import Orchestrator
        from tests.pool.tasks import loaded_modules

        with Orchestrator(name="no-zeromq") as orch:
            pool = orch.start_pool(workers=2)
            assert pool.wait_ready(timeout=60)  # both said HELLO: a stop now is a STOP, not a kill
            assert [pool.submit(abs, -i).result(timeout=60) for i in range(100)] == list(range(100))
            idle = pool.submit(loaded_modules).result(timeout=60)
            with orch.events.subscribe("pool.worker.lost") as lost:
                orch.shutdown()
                gone = [str(lost.get(timeout=30)) for _ in range(2)]
        print(json.dumps({"parent": sorted(sys.modules), "worker": idle, "gone": gone}))
    """)
    assert not [m for m in seen["parent"] if m.split(".")[0] == "zmq"], "the pool's parent loaded ZeroMQ"
    assert not [m for m in seen["worker"] if m.split(".")[0] == "zmq"], "a worker loaded ZeroMQ"
    assert not [g for g in seen["gone"] if "SIGKILL" in g], seen["gone"]


@pytest.mark.timeout(120)
def test_a_pool_that_listens_for_remote_workers_binds_its_router_at_once(orch):
    from laneway.pool.zmq import ZmqBackend

    backend = ZmqBackend(listen="tcp://127.0.0.1:0")
    pool = orch.start_pool(workers=1, backend=backend)
    assert backend.endpoint.startswith("tcp://127.0.0.1:") and not backend.endpoint.endswith(":0")
    assert pool.submit(abs, -5).result(timeout=60) == 5
