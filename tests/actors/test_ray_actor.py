"""Ray placement: what only a Ray-placed actor can suffer (its Ray worker killed), options, order."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from laneway import errors
from laneway.actors import ChildSpec, OneForOne
from tests.actors.support import Block, Counter, Get, Inc, wait_restarted
from tests.actors.test_process_actor import Note, Notes, Pid, Recorder

pytestmark = [pytest.mark.ray, pytest.mark.multiprocess]


@pytest.fixture(autouse=True)
def _ray(ray_module):
    return ray_module


def test_ray_options_need_ray_placement(orch):
    with pytest.raises(errors.ConfigError, match="ray_options need placement='ray'"):
        ChildSpec(Counter, name="c", ray_options={"num_cpus": 1})
    ref = orch.spawn(Recorder, name="r", placement="ray", ray_options={"num_cpus": 0})
    assert ref.ask(Pid(), timeout=30) not in (0, os.getpid())


def test_messages_from_each_sender_arrive_in_order(orch):
    ref = orch.spawn(Recorder, name="r", placement="ray")

    def send(sender: int) -> None:
        for n in range(100):
            ref.tell(Note(sender, n))

    threads = [threading.Thread(target=send, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    notes = ref.ask(Notes(), timeout=60)
    for s in range(3):
        assert [n for sender, n in notes if sender == s] == list(range(100))


def test_a_killed_ray_actor_fails_its_asks_and_is_restarted_fresh(orch, gates):
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(), children=[ChildSpec(Recorder, name="r", placement="ray")])
    r = sup.child("r")
    r.tell(Inc(5))
    pid = r.ask(Pid(), timeout=30)
    in_flight = r.ask_future(Block(gates()))  # never released: in flight when the process dies
    with orch.events.subscribe("supervisor") as sub:
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(errors.ActorProcessDied) as info:
            in_flight.get(timeout=30)
        assert info.value.pid == pid
        wait_restarted(sub, "r")
    assert r.ask(Pid(), timeout=30) != pid
    assert r.ask(Get(), timeout=30) == 0
