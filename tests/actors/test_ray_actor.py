"""Ray placement: what only a Ray-placed actor can suffer (its Ray worker killed), options, order."""

from __future__ import annotations

import os
import signal

import attrs
import pytest

from laneway import errors
from laneway.actors import ChildSpec, OneForOne, handler
from tests.actors.support import Block, Counter, Get, Inc, wait_restarted
from tests.actors.test_process_actor import Note, Notes, Pid, Recorder, check_each_senders_order

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
    check_each_senders_order(orch.spawn(Recorder, name="r", placement="ray"), senders=3, each=100, timeout=60)


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


@attrs.frozen
class RayCall:
    """Asks for the id of the Ray call the message arrived in."""


class CallRecorder(Recorder):
    @handler(RayCall)
    def _call(self, msg: RayCall) -> str:
        import ray

        return ray.get_runtime_context().get_task_id()


def test_tells_sent_while_calls_are_in_flight_travel_together_in_order(orch, gates):
    ref = orch.spawn(CallRecorder, name="r", placement="ray")
    gate = gates()
    blocked = ref.ask_future(Block(gate))  # holds one call in the actor
    calls = [ref.ask_future(RayCall())]  # a second call, in flight behind it
    for n in range(200):
        ref.tell(Note(0, n))
    calls += [ref.ask_future(RayCall()) for _ in range(3)]
    gate.set()
    blocked.get(timeout=30)
    ids = [f.get(timeout=30) for f in calls]
    # The 200 tells and the last asks waited for a free call and left in one batch, not one call each.
    assert ids[1] == ids[2] == ids[3] != ids[0]
    assert ref.ask(Notes(), timeout=30) == [(0, n) for n in range(200)]
    assert ref.ask(RayCall(), timeout=30) not in ids  # a lone ask goes at once, in a call of its own
