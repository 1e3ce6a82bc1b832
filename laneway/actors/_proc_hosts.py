"""Host processes for process-placed actors, started and watched from the parent.

:class:`ProcessHosts` (one per actor system) starts host processes (``spawn``,
from one long-lived thread, since ``PR_SET_PDEATHSIG`` follows the forking
thread), and one watcher thread reads every child's replies and polls a pidfd
per host, so a host's death is seen at once.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.process
import os
import queue
import shutil
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable

import zmq

from laneway.actors import _proc_wire as w
from laneway.actors._actor import Exit
from laneway.actors._proc_cell import START_TIMEOUT_S, ProcessCell, ReplySocket
from laneway.actors._proc_host import HostConfig, host_entry
from laneway.core import Future
from laneway.errors import ActorStartError, SystemShutdown

if TYPE_CHECKING:
    from laneway.actors._actor import ActorRef

log = logging.getLogger(__name__)

_CTX = multiprocessing.get_context("spawn")

_SPARE = object()  # a request to the spawner thread: start a spare host


def start_host_process(target: Any, args: tuple, name: str) -> Any:
    """Start a host process (``spawn``) that no one but its :class:`_Host` reaps.

    multiprocessing reaps every finished child it tracks whenever any thread of the
    program starts a process or calls ``active_children()``. A host reaped there took
    its exit status with it: the watcher, racing that thread, found the pidfd empty
    and ``exitcode`` not stored yet, and reported a SIGKILL as "ended". Untracked, a
    host stays a zombie until the watcher has read its status and joins it.
    """
    proc = _CTX.Process(target=target, args=args, name=name, daemon=True)
    proc.start()
    # A host is killed with its system (ProcessHosts.close) or its parent (PR_SET_PDEATHSIG),
    # so multiprocessing's exit-time sweep of the children it tracks is not needed for it.
    tracked = getattr(multiprocessing.process, "_children", None)  # CPython's set of them, private
    if tracked is not None:
        tracked.discard(proc)
    return proc


def exit_code_of(pidfd: int) -> int | None:
    """The exit status of the exited process behind ``pidfd`` (minus the signal that killed it), unreaped.

    ``None`` if it has not exited, was reaped already, or the platform has no ``waitid`` on pidfds.

    Example:
        >>> import subprocess, sys, signal, select
        >>> p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        >>> fd = os.pidfd_open(p.pid)
        >>> os.kill(p.pid, signal.SIGKILL)
        >>> _ = select.select([fd], [], [], 10)
        >>> exit_code_of(fd)
        -9
        >>> p.wait(), os.close(fd)
        (-9, None)
    """
    try:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (AttributeError, OSError):
        return None
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


class _Host:
    """One host process and the cells it runs."""

    def __init__(self, hosts: ProcessHosts, number: int, group: str | None) -> None:
        self.hosts = hosts
        self.number = number
        self.group = group
        self.control = f"ipc://{hosts.dir}/h{number}"
        self.proc: Any = None
        self.pid = 0
        self.pidfd = -1
        self.cells: set[ProcessCell] = set()
        self.dead = False
        self.ready = threading.Event()  # set once started (or failed to start)
        self._lock = threading.Lock()
        self._ctl: zmq.Socket | None = None

    def launch_args(self) -> tuple[Any, tuple, str]:
        cfg = HostConfig(self.control, self.hosts.replies, os.getpid())
        return host_entry, (cfg,), f"laneway-actors-{self.group or self.number}"

    def attach(self, proc: Any) -> None:
        """Take the started process: watch it, connect its control socket, mark the host ready."""
        self.proc = proc
        self.pid = proc.pid
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self.pidfd = -1  # multiprocessing's sentinel pipe also turns readable on exit
        ctl = self.hosts.ctx.socket(zmq.DEALER)
        ctl.setsockopt(zmq.LINGER, 0)
        ctl.setsockopt(zmq.RECONNECT_IVL, 10)  # connect before the host binds: retry soon
        ctl.connect(self.control)
        self._ctl = ctl

    @property
    def fd(self) -> int:
        return self.pidfd if self.pidfd >= 0 else self.proc.sentinel

    def send_control(self, *frames: bytes) -> None:
        with self._lock:
            if self._ctl is not None and not self.dead:
                self._ctl.send_multipart(frames)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass

    def actor_ended(self, cell: ProcessCell) -> None:
        with self.hosts.lock:
            self.cells.discard(cell)
            idle = not self.cells and self.group is None
        if idle:
            self.send_control(w.QUIT)

    def reaped(self) -> str:
        # Read how it ended from the pidfd first (without reaping): the join below can give up on a
        # loaded machine, and "ended" then would hide the SIGKILL or status the caller must see.
        code = exit_code_of(self.pidfd) if self.pidfd >= 0 else None
        self.proc.join(timeout=5)
        if self.proc.exitcode is not None:
            code = self.proc.exitcode
        with self._lock:
            self.dead = True
            ctl, self._ctl = self._ctl, None
        if ctl is not None:
            ctl.close(linger=0)
        if self.pidfd >= 0:
            os.close(self.pidfd)
        return w.describe_exit(code)


class ProcessHosts:
    """Host processes for one actor system's process actors, their replies and their deaths.

    Args:
        name: the system's name (thread and process names).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self._gone = threading.Condition(self.lock)  # notified as the watcher reaps hosts
        self.ctx = zmq.Context()
        self.dir = tempfile.mkdtemp(prefix="laneway-actors-")  # mode 0700: only this user can connect
        self.replies = f"ipc://{self.dir}/replies"
        self._pull = self.ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.RCVHWM, 0)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.bind(self.replies)
        self._wake_r, self._wake_w = os.pipe()
        self._hosts: dict[int, _Host] = {}
        self._groups: dict[str, _Host] = {}
        self._spare: _Host | None = None
        self._local = threading.local()
        self._reaping = 0  # hosts out of the table whose reaping is under way
        self._cells: dict[bytes, ProcessCell] = {}
        self._numbers = itertools.count(1)
        self._keys = itertools.count(1)
        self._closed = False
        self._spawns: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._spawner = threading.Thread(target=self._spawn_loop, name=f"laneway-actor-spawner:{name}", daemon=True)
        self._spawner.start()
        self._watcher = threading.Thread(target=self._watch, name=f"laneway-actor-watcher:{name}", daemon=True)
        self._watcher.start()

    def reply_socket(self) -> ReplySocket:
        """This thread's socket for the replies to its blocking asks (made on first use)."""
        mine = getattr(self._local, "reply", None)
        if mine is None:
            with self.lock:
                if self._closed:
                    raise SystemShutdown(f"process hosts of {self.name} are closed")
                number = next(self._numbers)
            mine = self._local.reply = ReplySocket(self.ctx, f"{self.dir}/t{number}")
        return mine

    # starting ------------------------------------------------------------------

    def start_cell(self, ref: ActorRef, factory: Any, args: tuple, kwargs: dict, on_exit: Callable[[Any, Exit], None],
                   group: str | None, state: bytes | None, *, saves_state: bool = False) -> ProcessCell:
        """Start one incarnation of ``ref``'s actor in a host process and wait until its ``on_start`` finished.

        Raises:
            ActorStartError: the spec cannot be pickled, the host did not come up, or the actor failed to start.
        """
        number = next(self._keys)
        key = f"{ref.name}#{number}".encode()
        endpoint = f"ipc://{self.dir}/a{key.decode().replace('/', '.')}"
        try:
            spec = w.dumps((factory, args, kwargs, ref.name, endpoint, state), f"the actor spec of {ref.name}")
        except Exception as exc:
            raise ActorStartError(f"{ref.name}: {exc}") from exc
        host = self._host_for(group)
        cell = ProcessCell(ref, host, key, on_exit, seq_base=number << 32)
        cell.saves_state = saves_state
        with self.lock:
            if host.dead:
                raise ActorStartError(f"{ref.name}: its host process (pid {host.pid}) is gone")
            host.cells.add(cell)
            self._cells[key] = cell
        # Connected before the child binds: what senders tell it meanwhile queues in order.
        cell.connect(self.ctx, endpoint)
        ref._cell = cell
        ref.incarnation += 1
        host.send_control(w.START, key, spec)
        if not cell.settled.wait(START_TIMEOUT_S):
            host.kill()
            cell.settled.wait(10)
        if not cell.started:
            cell.exited.wait(10)
            cause = cell.start_error or (cell.exit.error if cell.exit is not None else None)
            raise ActorStartError(f"{ref.name} failed to start in process {host.pid}: {cause!r}") from cause
        ref.orchestrator.events.publish("actor.started", ref.name, pid=host.pid)
        return cell

    def _host_for(self, group: str | None) -> _Host:
        with self.lock:
            if self._closed:
                raise SystemShutdown(f"process hosts of {self.name} are closed")
            found = self._groups.get(group) if group is not None else self._spare
            fresh = found is None or found.dead
            if found is None or found.dead:
                host = _Host(self, next(self._numbers), group)
                if group is not None:
                    self._groups[group] = host
            else:
                host = found
                if group is None:
                    self._spare = None
        if group is None:
            self._spawns.put(_SPARE)  # a warm host for the next actor (or restart) of its own
        if fresh:
            target, args, name = host.launch_args()
            try:
                self._launch(host, self.spawn(target, args, name))
            except Exception as exc:
                with self.lock:
                    host.dead = True
                host.ready.set()
                raise ActorStartError(f"could not start an actor host process: {exc!r}") from exc
        if not host.ready.wait(START_TIMEOUT_S) or host.dead:
            raise ActorStartError(f"the actor host process {host.pid or '(not started)'} is not available")
        return host

    def _launch(self, host: _Host, proc: Any) -> None:
        host.attach(proc)
        with self.lock:
            self._hosts[host.fd] = host
        host.ready.set()
        os.write(self._wake_w, b"h")

    def spawn(self, target: Any, args: tuple, name: str) -> Any:
        done: Future[Any] = Future()
        self._spawns.put((target, args, name, done))
        return done.get(START_TIMEOUT_S)

    def _spawn_loop(self) -> None:
        while True:
            item = self._spawns.get()
            if item is None:
                return
            if item is _SPARE:
                self._make_spare()
                continue
            target, args, name, done = item
            try:
                proc = start_host_process(target, args, name)
            except BaseException as exc:
                done.settle(error=exc)
            else:
                done.settle(proc)

    def _make_spare(self) -> None:
        # Starting an interpreter takes a good part of a second; a host started ahead
        # makes the next spawn, and above all the next restart, take milliseconds.
        with self.lock:
            if self._closed or (self._spare is not None and not self._spare.dead):
                return
            host = self._spare = _Host(self, next(self._numbers), None)
        target, args, name = host.launch_args()
        try:
            self._launch(host, start_host_process(target, args, name))
        except Exception:
            log.exception("could not start a spare actor host process")
            with self.lock:
                host.dead = True
                if self._spare is host:
                    self._spare = None
            host.ready.set()

    # watching --------------------------------------------------------------------

    def _watch(self) -> None:
        poller = zmq.Poller()
        poller.register(self._pull, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        watched: set[int] = set()
        while True:
            with self.lock:
                current = dict(self._hosts)
                closed = self._closed and not current
            for fd in current.keys() - watched:
                poller.register(fd, zmq.POLLIN)
                watched.add(fd)
            if closed:
                return
            ready = dict(poller.poll(500))
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if self._pull in ready:
                self._read_replies()
            for fd in [fd for fd in watched if fd in ready]:
                self._read_replies()  # what the host said before it died comes first
                poller.unregister(fd)
                watched.discard(fd)
                with self.lock:  # dead first, so start_cell puts no cell in it after we looked
                    # Out of the table before reaped() closes the pidfd: a new host may get its number.
                    host = self._hosts.pop(fd)
                    host.dead = True
                    cells = list(host.cells)
                    self._reaping += 1
                reason = host.reaped()
                with self.lock:
                    self._reaping -= 1
                    self._gone.notify_all()
                for cell in cells:
                    try:
                        cell.host_died(reason)
                    except Exception:
                        log.exception("reporting the death of %s failed", cell.lw_ref.name)

    def _read_replies(self) -> None:
        pull = self._pull
        while True:
            try:
                frames = pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            cell = self._cells.get(frames[0])
            if cell is None:
                continue
            body = frames[1]
            if body[:1] in (w.EXITED, w.START_FAILED):
                self._cells.pop(frames[0], None)
            try:
                cell.on_frame(body)
            except Exception:
                log.exception("handling a frame from %s failed", cell.lw_ref.name)

    # closing ---------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Quit every host (killing those that do not go within ``timeout``), then the threads."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
        self._spawns.put(None)  # first, so no spare starts behind our back
        self._spawner.join(5)
        with self.lock:
            hosts = list(self._hosts.values())
        for host in hosts:
            host.send_control(w.QUIT)
        with self.lock:  # the watcher reaps each host as its pidfd turns readable
            if not self._gone.wait_for(lambda: not self._hosts and not self._reaping, timeout):
                for host in self._hosts.values():
                    log.error("actor host process %d did not quit within %.1fs; killing it", host.pid, timeout)
                    host.kill()
                self._gone.wait_for(lambda: not self._hosts and not self._reaping, 5.0)
        os.write(self._wake_w, b"c")
        self._watcher.join(timeout + 5)
        self._pull.close(linger=0)
        self.ctx.destroy(linger=0)
        os.close(self._wake_r)
        os.close(self._wake_w)
        shutil.rmtree(self.dir, ignore_errors=True)
