"""Starting a worker interpreter: ``multiprocessing``'s ``spawn``, without its resource tracker.

``multiprocessing`` starts its resource-tracker process (one more interpreter) with
the first ``spawn`` child; on a busy machine it competes with the pool's first worker
for the CPU while that one starts, for semaphores and shared memory laneway never
creates. :func:`start_process` starts the child the way ``spawn`` does (a fresh
interpreter with the parent's flags, the pipe and sentinel of
``multiprocessing.popen_spawn_posix``) and keeps ``spawn``'s contract: the child
applies :func:`multiprocessing.spawn.get_preparation_data` with
:func:`multiprocessing.spawn.prepare` (``sys.path``, the working directory, the
program's main module imported as ``__mp_main__``) before it loads its target, and a
program that starts a pool at import time fails in the child as it would under
``spawn``. A task that uses ``multiprocessing`` itself still gets a tracker on demand.

Unlike ``spawn``, the child starts without ``site`` (``python -S``) when that changes nothing
it could see, and sets itself what ``site`` would have: see :mod:`laneway.worker._site` for
when, what it does instead, and ``LANEWAY_WORKER_SITE=always`` to start every child with it.
"""

from __future__ import annotations

import os
import pickle
import signal
import weakref
from typing import Any, Callable

from laneway.worker._site import site_less_setup

#: What the child's ``python -c`` runs, ``{fd}`` being the pipe it reads its orders from: the
#: preparation data, the modules to import while it waits for its target (the target's own, sent
#: at launch so that the child imports it alongside the parent rather than after it; one that fails
#: is left for the target's unpickling to report), then the target, then ``(args, name)``. Nothing but the standard library until
#: ``prepare()`` has given it the parent's ``sys.path``: ``-c`` puts the working directory first,
#: where another laneway (a checkout) may be. While ``_inheriting`` is set, as in
#: ``multiprocessing.spawn._main``, starting a process raises the "not finished its bootstrapping
#: phase" error, so a main module that starts a pool without the ``__main__`` guard fails here
#: instead of starting workers of its own, recursively. A child launched ahead (:func:`launch`)
#: waits at each read; if the parent closes the pipe instead (the child was not needed, or the
#: parent died), it exits quietly. Then, as
#: multiprocessing's children do, it gives up stdin so as never to compete with the parent for its input.
_PROGRAM = """\
import os, pickle, sys
from multiprocessing import process, spawn
with open({fd}, "rb") as orders:
    process.current_process()._inheriting = True
    try:
        try:
            prep = pickle.load(orders)
{setup}            spawn.prepare(prep)
            for module in pickle.load(orders):
                try:
                    __import__(module)
                except Exception:
                    pass
            target = pickle.load(orders)
            args, name = pickle.load(orders)
        except EOFError:  # the parent did not need this interpreter after all, or is gone
            os._exit(0)
        process.current_process().name = name
    finally:
        del process.current_process()._inheriting
if sys.stdin is not None:
    try:
        sys.stdin.close()
        sys.stdin = open(os.devnull)
    except (OSError, ValueError):
        pass
target(*args)
"""

#: What a worker started without ``site`` runs before spawn's preparation (which imports the program's
#: main module): the code :func:`~laneway.worker._site.site_less_setup` gives, with ``sys.path`` the
#: parent's already. Should it fail, the worker runs ``site`` after all, as a worker with site would have.
_SITE_LESS = """\
            sys.path = list(prep["sys_path"])
            try:
                exec({code!r}, {{"__name__": "__laneway_site__"}})
            except Exception:
                import site, traceback
                traceback.print_exc()
                site.main()
"""


class ChildProcess:
    """A started child interpreter: the part of :class:`multiprocessing.Process` the pool uses.

    Attributes:
        pid: the child's process id.
        sentinel: a file descriptor that turns readable when the child exits.
    """

    def __init__(self, pid: int, sentinel: int, orders: int = -1) -> None:
        self.pid = pid
        self.sentinel = sentinel
        self._exitcode: int | None = None
        # [sentinel, the write end of a launched child's orders until it has its arguments], -1 once closed
        self._fds = [sentinel, orders]
        self._close = weakref.finalize(self, _close_fds, self._fds)
        self._loaded = orders < 0  # a child from start_process has everything; one from launch() waits

    @property
    def waiting(self) -> bool:
        """True while a child from :func:`launch` still waits for its orders (:meth:`load`, :meth:`give`)."""
        return self._fds[1] >= 0

    def load(self, target: Callable[..., Any]) -> None:
        """Send a child launched without a target its target: it imports the target's module, then waits for :meth:`give`.

        Raises:
            OSError: the child is gone (``BrokenPipeError``), or has its target already.
        """
        fd = self._fds[1]
        if fd < 0 or self._loaded:
            raise OSError(f"process {self.pid} has its target already")
        self._loaded = True
        _write_all(fd, pickle.dumps(target, pickle.HIGHEST_PROTOCOL))

    def give(self, args: tuple, *, name: str) -> None:
        """Send a launched child its arguments (it then runs ``target(*args)`` as process ``name``).

        Raises:
            OSError: the child is gone (``BrokenPipeError``), has no target yet (:meth:`load`),
                or was already given its arguments.
        """
        fd = self._fds[1]
        if fd < 0 or not self._loaded:
            raise OSError(f"process {self.pid} has its arguments already, or no target yet")
        self._fds[1] = -1
        # The child reads as it goes: a write past the pipe's buffer waits for that.
        with open(fd, "wb") as pipe:
            pipe.write(pickle.dumps((args, name), pickle.HIGHEST_PROTOCOL))

    def dismiss(self) -> None:
        """Tell a launched child that still waits for its arguments that it is not needed: it exits with status 0."""
        fd = self._fds[1]
        if fd >= 0:
            self._fds[1] = -1
            os.close(fd)

    @property
    def exitcode(self) -> int | None:
        """The exit code (``-N``: killed by signal N), None while it runs or if its status was collected elsewhere."""
        return self._poll(blocking=False)

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: no limit) for the child to exit, and collect its status."""
        if self._exitcode is None:
            from multiprocessing.connection import wait

            if timeout is not None and not wait([self.sentinel], timeout):
                return
            self._poll(blocking=True)

    def close(self) -> None:
        """Release the sentinel (after the child exited), and the orders pipe of a child never given its arguments."""
        self._close()

    def _poll(self, blocking: bool) -> int | None:
        if self._exitcode is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if blocking else os.WNOHANG)
            except ChildProcessError:  # collected by someone else (an os.wait() call in this process)
                return None
            if pid == self.pid:
                self._exitcode = os.waitstatus_to_exitcode(status)
        return self._exitcode


def _close_fds(fds: list[int]) -> None:
    for i, fd in enumerate(fds):
        if fd >= 0:
            fds[i] = -1
            os.close(fd)


def launch(target: Callable[..., Any] | None = None, *, name: str = "laneway-child",
           preload: tuple[str, ...] = ()) -> ChildProcess:
    """Start a fresh interpreter as a ``spawn`` child would, and let it wait for its orders.

    The child starts up and applies ``spawn``'s preparation data (``sys.path``, the main
    module); it imports the ``preload`` modules, then ``target``'s module (``target`` given
    here or later with :meth:`ChildProcess.load`) and waits for :meth:`ChildProcess.give`,
    which sends it ``args`` and the process name, to run ``target(*args)``. So a caller can
    start the interpreter first and decide later what it runs, while the child's start-up
    overlaps its own work (importing the target's module, say): naming that module in
    ``preload`` has the child import it at the same time, not once the target comes. A child whose orders pipe is closed
    before it got its arguments (:meth:`ChildProcess.dismiss`, or this process dying) exits
    quietly with status 0.

    Raises:
        OSError: the child cannot be started.
        RuntimeError: this process is itself a child still importing its main module
            (``spawn``'s "bootstrapping phase" error: a program without the ``__main__`` guard).

    Example:
        >>> proc = launch()
        >>> proc.load(os._exit)
        >>> proc.give((5,), name="doc")
        >>> proc.join(30); proc.exitcode
        5
        >>> proc.close()
    """
    from multiprocessing import spawn, util

    prep = spawn.get_preparation_data(name)
    main_path = prep.get("init_main_from_path")
    if main_path is not None and not os.path.isfile(main_path):
        # A program read from standard input (``python -``, ``__file__`` "<stdin>") or a script since
        # deleted: nothing to import again. The child starts as under ``python -c`` (no main module),
        # where spawn's preparation would end it with FileNotFoundError; the program's own functions
        # travel by value anyway.
        del prep["init_main_from_path"]
    # An AuthenticationString pickles only inside multiprocessing's own spawn; the child's
    # prepare() wraps the bytes again.
    prep["authkey"] = bytes(prep["authkey"])
    orders = pickle.dumps(prep, pickle.HIGHEST_PROTOCOL) + pickle.dumps(tuple(preload), pickle.HIGHEST_PROTOCOL)
    parent_r, child_w = os.pipe()  # the sentinel: the child holds child_w until it exits
    child_r, parent_w = os.pipe()  # the orders
    try:
        # The parent's interpreter flags (-B, -X, -W, ...), as multiprocessing passes them.
        exe = spawn.get_executable()
        flags = util._args_from_interpreter_flags()  # type: ignore[attr-defined]
        setup = site_less_setup(exe)
        if setup is not None:
            flags.append("-S")
        program = _PROGRAM.format(fd=child_r, setup="" if setup is None else _SITE_LESS.format(code=setup))
        pid = util.spawnv_passfds(os.fsencode(exe), [exe, *flags, "-c", program], (child_r, child_w))
    except BaseException:
        os.close(parent_r)
        os.close(parent_w)
        raise
    finally:
        os.close(child_r)
        os.close(child_w)
    proc = ChildProcess(pid, parent_r, parent_w)
    try:
        _write_all(parent_w, orders)  # a blocking write: past the pipe's buffer it waits for the child to read
        if target is not None:
            proc.load(target)
    except BaseException:
        _kill(proc)
        raise
    return proc


def _kill(proc: ChildProcess) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    proc.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def start_process(target: Callable[..., Any], args: tuple, *, name: str) -> ChildProcess:
    """Start a fresh interpreter running ``target(*args)`` as a ``spawn`` child would (see the module's docstring).

    ``target`` and ``args`` are pickled; ``name`` becomes the child's
    ``multiprocessing.current_process().name``. Raises OSError if the child cannot be started.

    Example:
        >>> proc = start_process(os._exit, (3,), name="doc")
        >>> proc.join(30); proc.exitcode
        3
        >>> proc.close()
    """
    proc = launch(target, name=name)
    try:
        proc.give(args, name=name)
    except BaseException:
        _kill(proc)
        raise
    return proc
