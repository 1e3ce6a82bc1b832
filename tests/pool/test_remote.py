"""Remote ZeroMQ workers: CurveZMQ keys, refusal of strangers, and the remote worker lifecycle."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import signal

import pytest

from laneway.cli import main as cli
from laneway.errors import AuthError, ConfigError
from laneway.pool import WorkerState

from . import tasks
from .conftest import wait_until

pytestmark = pytest.mark.multiprocess

@pytest.fixture
def remote_workers(laneway_workers):
    """Starts ``laneway worker`` processes: ``remote_workers(endpoint, *args)``; all killed at the end."""
    return laneway_workers.start


def test_keys_command_writes_the_server_and_client_pairs(tmp_path, capsys):
    assert cli(["keys", str(tmp_path / "k"), "--client", "gpu1", "--client", "gpu2"]) == 0
    names = {p.relative_to(tmp_path / "k").as_posix() for p in (tmp_path / "k").rglob("*") if p.is_file()}
    assert names == {"server.key", "server.key_secret", "gpu1.key", "gpu1.key_secret", "gpu2.key",
                     "gpu2.key_secret", "authorized/gpu1.key", "authorized/gpu2.key"}
    assert oct((tmp_path / "k" / "gpu1.key_secret").stat().st_mode & 0o777) == "0o600"
    assert "server.key_secret" in capsys.readouterr().out


@pytest.mark.parametrize("listen", ["tcp://0.0.0.0:0", "tcp://10.1.2.3:5555"])
def test_listening_beyond_loopback_without_keys_refuses_to_start(orch, listen):
    with pytest.raises(AuthError, match="without keys"):
        orch.start_pool(workers=0, listen=listen)


def test_bad_listen_and_missing_key_files_are_typed_errors(orch, tmp_path):
    with pytest.raises(ConfigError, match="tcp:// or ipc://"):
        orch.start_pool(workers=0, listen="udp://127.0.0.1:1")
    with pytest.raises(AuthError, match="laneway keys"):
        orch.start_pool(workers=0, listen="tcp://0.0.0.0:0", keys=tmp_path / "empty")


def test_only_the_worker_with_an_authorized_key_joins_and_gets_tasks(orch, tmp_path, remote_workers, caplog):
    keys, other = tmp_path / "keys", tmp_path / "other"
    cli(["keys", str(keys), "--client", "good"])
    cli(["keys", str(other), "--client", "good"])  # same name, different (unknown) key...
    shutil.copy(keys / "server.key", other / "server.key")  # ...that knows the pool's public key
    pool = orch.start_pool(workers=0, listen="tcp://127.0.0.1:0", keys=keys)
    caplog.set_level(logging.WARNING, "laneway.worker._keys")
    remote_workers(pool.endpoint, "--keys", str(other), "--key-name", "good")  # the wrong key
    remote_workers(pool.endpoint)  # no key
    wait_until(lambda: "refused a worker with unknown CurveZMQ key" in caplog.text, what="the wrong key's attempt")
    good = remote_workers(pool.endpoint, "--keys", str(keys), "--key-name", "good")
    assert pool.wait_ready(1, timeout=60)
    pids = {f.get(60) for f in [pool.submit(tasks.pid) for _ in range(200)]}
    assert pids == {good.pid}
    (joined,) = pool.workers()
    assert joined.pid == good.pid and joined.remote and joined.tasks_done == 200
    assert pool.statistics().workers == 1


@pytest.mark.timeout(120)
def test_a_worker_the_pool_never_admits_logs_why_and_exits(orch, tmp_path, remote_workers, laneway_workers):
    keys, other = tmp_path / "keys", tmp_path / "other"
    cli(["keys", str(keys), "--client", "good"])
    cli(["keys", str(other), "--client", "good"])
    shutil.copy(keys / "server.key", other / "server.key")
    pool = orch.start_pool(workers=0, listen="tcp://127.0.0.1:0", keys=keys)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        nothing = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    started = [
        (remote_workers(pool.endpoint, "--keys", str(other), "--key-name", "good", "--handshake-timeout", "3"),
         "the pool refused this worker's key"),
        (remote_workers(pool.endpoint, "--handshake-timeout", "3"), "the security handshake failed"),
        (remote_workers(nothing, "--handshake-timeout", "1"), "nothing answered"),
    ]  # fmt: skip
    for proc, why in started:
        assert proc.wait(timeout=60) == 3
        text = laneway_workers.log(proc)
        assert "no answer from the pool" in text and why in text, text
    assert pool.statistics().workers == 0


def test_keys_refuses_to_replace_a_client_pair_without_force(tmp_path, capsys):
    keys = tmp_path / "k"
    assert cli(["keys", str(keys), "--client", "gpu1"]) == 0
    secret = (keys / "gpu1.key_secret").read_bytes()
    assert cli(["keys", str(keys), "--client", "gpu1"]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (keys / "gpu1.key_secret").read_bytes() == secret
    assert cli(["keys", str(keys), "--client", "gpu2"]) == 0  # a new name is fine
    assert cli(["keys", str(keys), "--client", "gpu1", "--force"]) == 0
    assert (keys / "gpu1.key_secret").read_bytes() != secret


def remote_holding_a_task(orch, go, remote_workers):
    """A pool with one local and one remote worker, four tasks blocked on ``go``, one held remotely."""
    pool = orch.start_pool(workers=1, listen="tcp://127.0.0.1:0", heartbeat_s=0.1, heartbeat_timeout_s=1.0)
    remote = remote_workers(pool.endpoint)
    assert pool.wait_ready(2, timeout=60)
    futs = [pool.submit(tasks.wait_for_file, str(go), i) for i in range(4)]
    holder = wait_until(lambda: next((w for w in pool.workers() if w.remote and w.current_task), None),
                        what="the remote worker to hold a task")
    return pool, remote, futs, holder


@pytest.mark.chaos
def test_a_dead_remote_worker_is_reported_gone_not_restarted_and_may_rejoin(orch, tmp_path, remote_workers):
    go = tmp_path / "go"
    pool, remote, futs, holder = remote_holding_a_task(orch, go, remote_workers)
    with orch.events.subscribe("pool.worker.lost") as sub:
        os.kill(remote.pid, signal.SIGKILL)
        lost = sub.get(timeout=30)
    assert lost.data["reason"] == "no heartbeat for 1.0s" and lost.data["pid"] == holder.pid
    go.touch()
    assert [f.get(60) for f in futs] == [0, 1, 2, 3]  # its task was retried on the local worker
    states = {w.worker_id: w.state for w in pool.workers()}
    assert states[holder.worker_id] is WorkerState.GONE and len(states) == 2
    stats = pool.statistics()
    assert (stats.workers, stats.retried, stats.restarts) == (1, 1, 0)
    again = remote_workers(pool.endpoint)
    assert pool.wait_ready(2, timeout=60)
    assert again.pid in {f.get(60) for f in [pool.submit(tasks.pid) for _ in range(40)]}


@pytest.mark.chaos
def test_a_remote_worker_cut_off_for_a_while_rejoins_under_a_new_identity(orch, tmp_path, remote_workers):
    go = tmp_path / "go"
    pool, remote, futs, holder = remote_holding_a_task(orch, go, remote_workers)
    with orch.events.subscribe("pool.worker") as sub:
        os.kill(remote.pid, signal.SIGSTOP)  # a network partition, as far as the pool can tell
        sub.wait_for(lambda e: e.key == "pool.worker.lost", 30)
        go.touch()
        assert [f.get(60) for f in futs] == [0, 1, 2, 3]
        os.kill(remote.pid, signal.SIGCONT)
        joined = sub.wait_for(lambda e: e.key == "pool.worker.joined", 60)
    assert joined.data["pid"] == remote.pid and joined.data["worker_id"] != holder.worker_id
    # What it finished while cut off arrived late: counted, never delivered twice.
    wait_until(lambda: pool.statistics().late_results >= 1, what="the late result to be counted")
    assert remote.pid in {f.get(60) for f in [pool.submit(tasks.pid) for _ in range(40)]}


@pytest.mark.timeout(120)
def test_sigterm_stops_a_remote_worker_gracefully_and_its_work_goes_elsewhere(orch, remote_workers, laneway_workers):
    pool = orch.start_pool(workers=0, listen="tcp://127.0.0.1:0")
    proc = remote_workers(pool.endpoint)
    assert pool.wait_ready(1, timeout=60)
    assert {f.get(60) for f in [pool.submit(tasks.pid) for _ in range(20)]} == {proc.pid}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0  # not -SIGTERM: it left in order
    assert "SIGTERM; finished the tasks it had, leaving the pool" in laneway_workers.log(proc)


@pytest.mark.timeout(60)
def test_a_worker_whose_done_is_a_bare_list_of_rows_still_settles_its_tasks(orch):
    """A worker from before DONE said how long its tasks took (see wire.DONE) sends the rows alone:
    the pool settles them, and times the tasks by the gaps between results."""
    import json
    import pickle

    import zmq

    from laneway.worker import TaskRunner, wire

    pool = orch.start_pool(workers=0, listen="tcp://127.0.0.1:0")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"older-worker")
    sock.connect(pool.endpoint)
    try:
        sock.send_multipart([wire.HELLO, json.dumps([os.getpid(), "older", ""]).encode()])
        assert pool.wait_ready(1, timeout=30)
        futs = [pool.submit(tasks.inc, i) for i in range(6)]
        runner, ran = TaskRunner(), 0
        while ran < len(futs):
            assert sock.poll(30_000), "no tasks came"
            frames = sock.recv_multipart()
            if frames[0] != wire.TASKS:
                continue  # pings
            rows = [runner.run_row(tid, digest, fn or None, args) for tid, digest, fn, args, _ in pickle.loads(frames[1])]
            ran += len(rows)
            sock.send_multipart([wire.DONE, pickle.dumps(rows)])
        assert [f.get(30) for f in futs] == list(range(1, 7))
    finally:
        sock.close(linger=0)
        ctx.term()
