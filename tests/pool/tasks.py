"""Task functions for pool tests (importable, so workers load them by reference)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

from tests.waiting import poll


def inc(x):
    return x + 1


def add(a, b=0, *, c=0):
    return a + b + c


def pid(_=None):
    return os.getpid()


def boom(text="boom"):
    raise ValueError(text)


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def hang():
    threading.Event().wait()  # forever: only the task timeout ends it


def segfault():
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def exit_hard(code=3):
    os._exit(code)


def kill_self(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)


def wait_for_file(path, value=None, limit=60.0):
    """Block until ``path`` exists (a test's signal to go on), then return ``value``."""
    if poll(lambda: os.path.exists(path), limit) is None:
        raise TimeoutError(path)
    return value


def unpicklable_result():
    import threading

    return threading.Lock()


def grow_memory(mb):
    global _hog
    _hog = bytearray(mb * 2**20)
    return os.getpid()


def cpu(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def div(a, b=1):
    return a / b


def echo(*args, **kwargs):
    return args, kwargs


def exit_task(code=3):
    raise SystemExit(code)


def record(path, gate=None, value=None):
    """Wait for ``gate`` (a path) if given, then create ``path``: proof that this call ran."""
    if gate is not None:
        wait_for_file(gate)
    open(path, "w").close()
    return value


# --- initializers -----------------------------------------------------------------

_initialized: list = []


def init_worker(tag):
    _initialized.append(tag)


def read_init(_=None):
    return os.getpid(), list(_initialized)


def bad_init(text):
    raise ValueError(text)


# --- results that cannot be rebuilt in the pool's process ------------------------------


def _explode_on_load(kind):
    raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}.get(kind, ValueError)(kind)


class ExplodesOnLoad:
    """Pickles fine in the worker; unpickling it (in the pool's process) raises ``kind``."""

    def __init__(self, kind):
        self.kind = kind

    def __reduce__(self):
        return _explode_on_load, (self.kind,)


def result_that_explodes_on_load(kind="ValueError"):
    return ExplodesOnLoad(kind)


class Blob:
    """A result a test can hold a weak reference to."""

    def __init__(self, n):
        self.n = n


def make_blob(n=0):
    return Blob(n)


# --- large payloads ------------------------------------------------------------------


def describe_payload(data, gate=None, **kwargs):
    """Wait for ``gate`` if given; ``(type name, length, last byte, sorted kwargs described)``."""
    if gate is not None:
        wait_for_file(gate)
    view = memoryview(data).cast("B")
    return (type(data).__name__, view.nbytes, view[-1] if view.nbytes else None,
            tuple(sorted((k, describe_payload(v)) for k, v in kwargs.items())))


def die_once_then_size(marker, data):
    """SIGKILL this worker the first time (``marker`` does not exist yet), then return ``len(data)``."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return len(data), data[-1]


def loaded_modules():
    """The modules the worker running this has imported (``tests/test_structure.py``)."""
    import sys

    return sorted(sys.modules)


def main_module_file():
    """The file of the main module this worker imported as ``__mp_main__`` (None if none)."""
    import sys

    return getattr(sys.modules.get("__mp_main__"), "__file__", None)
