"""Remote actor hosts: ``laneway worker --actors`` processes on loopback TCP with CurveZMQ keys."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time

import attrs
import pytest

from laneway import errors
from laneway.actors import ChildSpec, OneForOne, handler
from laneway.cli import main as cli
from tests.actors.support import Counter, Get, Inc

pytestmark = pytest.mark.multiprocess

@attrs.frozen
class Pid:
    pass


@attrs.frozen
class Sleep:
    seconds: float


class Where(Counter):
    @handler(Pid)
    def _pid(self, msg: Pid) -> int:
        return os.getpid()

    @handler(Sleep)
    def _sleep(self, msg: Sleep) -> None:
        time.sleep(msg.seconds)


@pytest.fixture
def keys(tmp_path):
    directory = tmp_path / "keys"
    assert cli(["keys", str(directory), "--client", "good"]) == 0
    return directory


@pytest.fixture
def actor_hosts(laneway_workers):
    """Starts ``laneway worker --actors`` processes: ``actor_hosts(endpoint, name, *args)``; all killed at the end."""
    return lambda endpoint, name, *args: laneway_workers.start(endpoint, "--actors", "--name", name, *args)


def _good(keys):
    return ("--keys", str(keys), "--key-name", "good")


@pytest.mark.timeout(120)
def test_an_actor_on_a_remote_host_answers_behind_the_same_ref(orch, keys, actor_hosts):
    hosts = orch.accept_actor_hosts("tcp://127.0.0.1:0", keys=keys)
    proc = actor_hosts(hosts.endpoint, "gpu-1", *_good(keys))
    assert hosts.wait_hosts(1, name="gpu-1", timeout=60)
    ref = orch.spawn(Where, name="where", placement="remote", host="gpu-1")
    assert ref.ask(Pid()) == proc.pid != os.getpid()
    for _ in range(3):
        ref.tell(Inc())
    assert ref.ask(Get()) == 3
    assert ref.ask_future(Inc(2)).get(10) == 5
    assert asyncio.run(ref.ask_async(Get(), timeout=10)) == 5
    assert orch.lookup("where") is ref
    (info,) = hosts.hosts()
    assert (info.name, info.pid, info.actors) == ("gpu-1", proc.pid, ("where",))
    with pytest.raises(errors.ActorCrashed, match="boom"):
        from tests.actors.support import Crash

        ref.ask(Crash("boom"))


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_sigkill_of_a_remote_host_fails_asks_dead_letters_tells_and_restarts_elsewhere(orch, keys, actor_hosts):
    hosts = orch.accept_actor_hosts("tcp://127.0.0.1:0", keys=keys, heartbeat_s=0.1, heartbeat_timeout_s=1.0)
    first = actor_hosts(hosts.endpoint, "cpu", *_good(keys))
    assert hosts.wait_hosts(1, timeout=60)
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(max_restarts=3, within_s=30),
                                children=[ChildSpec(Where, name="w", placement="remote")])
    ref = orch.lookup("sup/w")
    assert ref.ask(Pid()) == first.pid
    second = actor_hosts(hosts.endpoint, "cpu", *_good(keys))
    assert hosts.wait_hosts(2, timeout=60)
    with orch.events.subscribe("actor.dead_letter") as letters, \
            orch.events.subscribe("supervisor.child.restarted") as restarts:
        in_flight = ref.ask_future(Sleep(60))
        for _ in range(3):
            ref.tell(Inc())
        os.kill(first.pid, signal.SIGKILL)
        with pytest.raises(errors.ActorProcessDied) as caught:
            in_flight.get(30)
        assert "'cpu'" in str(caught.value) and str(first.pid) in str(caught.value)
        assert caught.value.pid == first.pid
        dead = [letters.wait_for(lambda e: e.key == "actor.dead_letter", 10) for _ in range(3)]
        assert [e.data["message"] for e in dead] == [Inc(), Inc(), Inc()]
        restarts.wait_for(lambda e: e.data["child"] == "w", 30)
    assert ref.ask(Pid()) == second.pid
    assert ref.ask(Get()) == 0  # a fresh incarnation (OTP)
    assert sup.which_children()[0].restarts == 1


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_an_actor_pinned_to_a_host_restarts_there_when_it_comes_back(orch, keys, actor_hosts):
    hosts = orch.accept_actor_hosts("tcp://127.0.0.1:0", keys=keys, heartbeat_s=0.1, heartbeat_timeout_s=1.0,
                                    host_wait_s=60)
    first = actor_hosts(hosts.endpoint, "gpu-1", *_good(keys))
    assert hosts.wait_hosts(1, timeout=60)
    orch.spawn_supervisor("sup", children=[ChildSpec(Where, name="w", placement="remote", host="gpu-1")])
    ref = orch.lookup("sup/w")
    assert ref.ask(Pid()) == first.pid
    with orch.events.subscribe("supervisor.child.restarted") as restarts:
        with orch.events.subscribe("actor.host.lost") as lost:
            os.kill(first.pid, signal.SIGKILL)
            lost.wait_for(lambda e: e.key == "actor.host.lost", 30)
        with pytest.raises(errors.ActorDead):
            ref.tell(Inc())  # between incarnations: refused, not lost silently
        back = actor_hosts(hosts.endpoint, "gpu-1", *_good(keys))
        restarts.wait_for(lambda e: e.data["child"] == "w", 60)
    assert ref.ask(Pid()) == back.pid


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_restarts_that_find_no_host_count_against_intensity_and_the_supervisor_gives_up(orch, keys, actor_hosts):
    hosts = orch.accept_actor_hosts("tcp://127.0.0.1:0", keys=keys, heartbeat_s=0.1, heartbeat_timeout_s=1.0,
                                    host_wait_s=0.2)
    only = actor_hosts(hosts.endpoint, "gpu-1", *_good(keys))
    assert hosts.wait_hosts(1, timeout=60)
    with orch.events.subscribe("supervisor.escalated") as escalated:
        orch.spawn_supervisor("sup", strategy=OneForOne(max_restarts=2, within_s=60),
                              children=[ChildSpec(Where, name="w", placement="remote", host="gpu-1")])
        assert orch.lookup("sup/w").ask(Pid()) == only.pid
        os.kill(only.pid, signal.SIGKILL)
        event = escalated.wait_for(lambda e: e.key == "supervisor.escalated", 30)
    assert "no remote actor host named 'gpu-1'" in event.data["error"]


def test_without_a_suitable_host_a_start_is_a_typed_error_not_a_hang(orch, keys):
    with pytest.raises(errors.ActorStartError, match="accept_actor_hosts"):
        orch.spawn(Where, name="early", placement="remote")
    orch.accept_actor_hosts("tcp://127.0.0.1:0", keys=keys, host_wait_s=0.2)
    with pytest.raises(errors.ActorStartError, match="'nope'"):
        orch.spawn(Where, name="w", placement="remote", host="nope")
    with pytest.raises(errors.ConfigError, match="placement='remote'"):
        orch.spawn(Where, name="w2", placement="process", host="gpu-1")
    with pytest.raises(errors.ConfigError, match="already accepts"):
        orch.accept_actor_hosts("tcp://127.0.0.1:0", keys=keys)


def test_listening_for_actor_hosts_beyond_loopback_needs_keys(orch):
    with pytest.raises(errors.AuthError, match="without keys"):
        orch.accept_actor_hosts("tcp://0.0.0.0:0")


@pytest.mark.timeout(120)
def test_hosts_without_an_authorized_key_are_refused(orch, keys, tmp_path, actor_hosts, caplog):
    other = tmp_path / "other"
    cli(["keys", str(other), "--client", "good"])  # the same name, a key the orchestrator does not know...
    shutil.copy(keys / "server.key", other / "server.key")  # ...that knows the orchestrator's public key
    hosts = orch.accept_actor_hosts("tcp://127.0.0.1:0", keys=keys, host_wait_s=0.5)
    caplog.set_level(logging.WARNING, "laneway.worker._keys")
    wrong = actor_hosts(hosts.endpoint, "intruder", "--keys", str(other), "--key-name", "good",
                        "--handshake-timeout", "3")
    keyless = actor_hosts(hosts.endpoint, "intruder", "--handshake-timeout", "3")
    assert wrong.wait(timeout=60) == 3 and keyless.wait(timeout=60) == 3  # never admitted: they give up
    assert "refused a worker with unknown CurveZMQ key" in caplog.text
    assert hosts.hosts() == []
    with pytest.raises(errors.ActorStartError, match="no remote actor host"):
        orch.spawn(Where, name="w", placement="remote")
