"""Process placement: what only a process actor can do or suffer (pickling, SIGKILL, groups, dying with the parent)."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import subprocess
import sys
import threading
from typing import Any

import attrs
import psutil
import pytest

from laneway import Orchestrator, errors
from laneway.actors import ChildSpec, OneForOne, Placement, handler
from tests.actors.support import Block, Counter, Crash, Get, Inc, Tally, wait_restarted
from tests.waiting import wait_until

pytestmark = pytest.mark.multiprocess


@attrs.frozen
class Pid:
    pass


@attrs.frozen
class Note:
    sender: int
    n: int


@attrs.frozen
class Notes:
    pass


@attrs.frozen
class Unpicklable:
    pass


@attrs.frozen
class Blob:
    """Reply ``size`` bytes, after waiting for ``gate`` if one is given."""

    size: int
    tag: int
    gate: Any = None


class Recorder(Counter):
    def on_start(self) -> None:
        super().on_start()
        self.notes: list[tuple[int, int]] = []

    @handler(Pid)
    def _pid(self, msg: Pid) -> int:
        return os.getpid()

    @handler(Note)
    def _note(self, msg: Note) -> None:
        self.notes.append((msg.sender, msg.n))

    @handler(Notes)
    def _notes(self, msg: Notes) -> list[tuple[int, int]]:
        return self.notes

    @handler(Unpicklable)
    def _unpicklable(self, msg: Unpicklable) -> object:
        return threading.Lock()

    @handler(Blob)
    def _blob(self, msg: Blob) -> bytes:
        if msg.gate is not None:
            msg.gate.wait()
        return bytes([msg.tag]) * msg.size


def test_placement_is_an_enum_and_strings_are_coerced(orch):
    assert Placement.coerce("process") is Placement.PROCESS
    with pytest.raises(errors.ConfigError, match=r"placement must be one of \['thread', 'process', 'ray', 'remote'\]"):
        orch.spawn(Counter, name="c", placement="gpu")
    with pytest.raises(errors.ConfigError, match="placement must be one of"):
        ChildSpec(Counter, name="c", placement="elsewhere")
    with pytest.raises(errors.ConfigError, match="group='g' needs placement='process'"):
        ChildSpec(Counter, name="c", group="g")
    assert ChildSpec(Counter, name="c", placement="process").placement is Placement.PROCESS


def test_the_actor_runs_in_another_process(orch):
    ref = orch.spawn(Recorder, name="r", placement=Placement.PROCESS)
    pid = ref.ask(Pid(), timeout=10)
    assert pid != os.getpid() and pid == ref._cell.pid
    assert psutil.Process(pid).ppid() == os.getpid()


def test_an_unpicklable_message_fails_at_the_sender(orch):
    ref = orch.spawn(Recorder, name="r", placement="process")
    with pytest.raises(errors.SerializationError, match="a message to r"):
        ref.tell(threading.Lock())
    with pytest.raises(errors.SerializationError):
        ref.ask_future(Block(threading.Event()))
    assert ref.ask(Inc(), timeout=10) == 1  # nothing was sent, the actor is fine


def test_an_unpicklable_reply_is_a_typed_error_at_the_asker(orch):
    ref = orch.spawn(Recorder, name="r", placement="process")
    with pytest.raises(errors.SerializationError, match="reply of r to Unpicklable"):
        ref.ask(Unpicklable(), timeout=10)
    assert ref.ask(Inc(), timeout=10) == 1


def check_each_senders_order(ref: Any, senders: int, each: int, timeout: float) -> None:
    """``senders`` threads tell a :class:`Recorder` ``each`` notes at once; it got them all, each sender's in order."""

    def send(sender: int) -> None:
        for n in range(each):
            ref.tell(Note(sender, n))

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    notes = ref.ask(Notes(), timeout=timeout)
    assert len(notes) == senders * each
    for s in range(senders):
        assert [n for sender, n in notes if sender == s] == list(range(each))


def test_messages_from_each_sender_arrive_in_order(orch):
    check_each_senders_order(orch.spawn(Recorder, name="r", placement="process"), senders=4, each=300, timeout=30)


@pytest.mark.parametrize("size", [10, 300_000], ids=["datagram", "too-big-for-a-datagram"])
def test_replies_of_any_size_reach_the_asker_and_late_ones_are_not_taken_for_the_next(orch, gates, size):
    ref = orch.spawn(Recorder, name="r", placement="process")
    assert ref.ask(Blob(size, 1), timeout=10) == b"\x01" * size
    gate = gates()
    with pytest.raises(errors.AskTimeout):
        ref.ask(Blob(size, 2, gate), timeout=0.2)
    gate.set()  # its reply comes now, late, to the same thread's sockets
    assert ref.ask(Blob(size, 3), timeout=10) == b"\x03" * size
    assert ref.ask(Blob(10, 4), timeout=10) == b"\x04" * 10


def test_a_blocking_ask_in_flight_fails_when_the_process_dies(orch, gates):
    ref = orch.spawn(Recorder, name="r", placement="process")
    pid = ref.ask(Pid(), timeout=10)
    ref.tell(Block(gates()))  # never opened: the ask below waits in the mailbox
    outcome: list[BaseException] = []
    asking = threading.Thread(target=lambda: _capture(outcome, ref.ask, Get(), timeout=30))
    asking.start()
    wait_until(lambda: ref._cell._asks, what="the ask to be sent")
    os.kill(pid, signal.SIGKILL)
    asking.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], errors.ActorProcessDied), outcome
    assert outcome[0].pid == pid


def _capture(into: list, fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except BaseException as exc:
        into.append(exc)


def test_sigkill_fails_asks_in_flight_naming_pid_and_signal_and_dead_letters_tells(orch, gates):
    ref = orch.spawn(Recorder, name="r", placement="process")
    pid = ref.ask(Pid(), timeout=10)
    gate = gates()
    ref.tell(Block(gate))  # the actor is busy, so what follows stays queued
    asks = [ref.ask_future(Get()) for _ in range(5)]
    with orch.events.subscribe(("actor.dead_letter", "actor.crashed")) as sub:
        ref.tell(Inc(7))
        os.kill(pid, signal.SIGKILL)
        for fut in asks:
            with pytest.raises(errors.ActorProcessDied) as info:
                fut.get(timeout=10)
            assert isinstance(info.value, errors.ActorCrashed)
            assert info.value.pid == pid and info.value.reason == "killed by SIGKILL"
            assert f"pid {pid}" in str(info.value) and "SIGKILL" in str(info.value)
        letters = [sub.wait_for(lambda e: e.key == "actor.dead_letter", 10) for _ in range(2)]
        crashed = sub.wait_for(lambda e: e.key == "actor.crashed", 10)
    assert [e.data["message"] for e in letters] == [Block(gate), Inc(7)]
    assert "SIGKILL" in crashed.data["error"]
    with pytest.raises(errors.ActorDead):
        ref.tell(Inc())


def test_a_killed_host_keeps_its_exit_status_for_the_watcher_whatever_else_starts_processes(orch):
    # multiprocessing reaps the finished children it tracks whenever any thread starts a
    # process (or calls active_children()): a host reaped there took its exit status along,
    # and under load its SIGKILL was reported as "ended".
    ref = orch.spawn(Recorder, name="r", placement="process")
    cell = ref._cell
    pidfd = os.pidfd_open(cell.pid)
    try:
        with cell.host.hosts.lock:  # the watcher cannot take the dead host out of its table meanwhile
            os.kill(cell.pid, signal.SIGKILL)
            assert select.select([pidfd], [], [], 30)[0], "the host did not die"
            multiprocessing.active_children()  # what every Process.start() in the program runs first
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # ChildProcessError if reaped
            assert info is not None and info.si_status == signal.SIGKILL
        assert cell.exited.wait(30)
    finally:
        os.close(pidfd)
    assert cell.exit.error.reason == "killed by SIGKILL"


def test_a_supervisor_restarts_a_killed_process_actor_in_a_new_process_behind_the_same_ref(orch):
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(), children=[ChildSpec(Recorder, name="r", placement="process")])
    r = sup.child("r")
    r.tell(Inc(5))
    first = r.ask(Pid(), timeout=10)
    with orch.events.subscribe("supervisor") as sub:
        os.kill(first, signal.SIGKILL)
        wait_restarted(sub, "r")
    second = r.ask(Pid(), timeout=10)
    assert second != first and sup.child("r") is r and r.incarnation == 2
    assert r.ask(Get(), timeout=10) == 0  # fresh state (OTP)
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(first).status()


def test_actors_of_a_group_share_a_process_and_others_get_their_own(orch):
    a = orch.spawn(Recorder, name="a", placement="process", group="g")
    b = orch.spawn(Recorder, name="b", placement="process", group="g")
    c = orch.spawn(Recorder, name="c", placement="process")
    pa, pb, pc = (ref.ask(Pid(), timeout=10) for ref in (a, b, c))
    assert pa == pb != pc
    # one actor of the group crashing leaves the other running
    with pytest.raises(errors.ActorCrashed):
        a.ask(Crash(), timeout=10)
    assert b.ask(Inc(), timeout=10) == 1
    # the group's process dying is the crash of every actor in it
    with orch.events.subscribe("actor.crashed") as sub:
        os.kill(pb, signal.SIGKILL)
        sub.wait_for(lambda e: e.source == "b", 10)
    assert not b.is_alive() and c.is_alive()


def test_a_stop_that_does_not_finish_in_time_kills_the_process(orch, gates):
    sup = orch.spawn_supervisor(
        "sup", children=[ChildSpec(Recorder, name="stuck", placement="process", shutdown_s=0.2)]
    )
    stuck = sup.child("stuck")
    pid = stuck.ask(Pid(), timeout=10)
    stuck.tell(Block(gates()))  # never set
    report = orch.shutdown(timeout=5)
    assert report.clean
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(pid).status()


def test_state_hooks_resume_a_restarted_actor(orch, placement):
    sup = orch.spawn_supervisor(
        "sup", strategy=OneForOne(), children=[ChildSpec(Tally, name="t", placement=placement)]
    )
    t = sup.child("t")
    assert t.ask(Inc(3), timeout=10) == 3
    with orch.events.subscribe("supervisor") as sub:
        t.tell(Crash())
        wait_restarted(sub, "t")
    assert t.ask(Inc(1), timeout=10) == 4


def test_saved_state_survives_the_orchestrator_in_the_store(tmp_path, placement):
    path = str(tmp_path / "state.db")
    with Orchestrator(name="one", store=path) as orch:
        assert orch.spawn(Tally, name="t", placement=placement).ask(Inc(5), timeout=10) == 5
    with Orchestrator(name="two", store=path) as orch:
        assert orch.spawn(Tally, name="t", placement=placement).ask(Get(), timeout=10) == 5


_ORPHAN = """
import sys, time
from laneway import Orchestrator
from tests.actors.test_process_actor import Pid, Recorder
if __name__ == "__main__":
    orch = Orchestrator(name="orphan")
    ref = orch.spawn(Recorder, name="r", placement="process")
    print(ref.ask(Pid(), timeout=30), flush=True)
    time.sleep(60)
"""


@pytest.mark.chaos
def test_actor_processes_die_with_their_parent(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        child = int(parent.stdout.readline())
        proc = psutil.Process(child)
        parent.kill()
        parent.wait(10)
        proc.wait(timeout=10)  # raises psutil.TimeoutExpired if it outlives its parent
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()
