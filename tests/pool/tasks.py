"""Task functions for pool tests (importable, so workers load them by reference)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time


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
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
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
