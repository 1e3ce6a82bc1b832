"""What the two sides of a process actor say to each other, and how values cross.

Frames (ZeroMQ messages; ``seq`` is an 8-byte big-endian counter per actor
incarnation, assigned by the parent under the cell's send lock, so the child
sees each sender's messages in the order it sent them):

* parent → actor socket, one frame: ``kind (TELL|ASK) + seq + payload``, or
  ``ASK_DIRECT + seq + path length (1 byte) + path + payload`` for a blocking
  ``ask``, whose reply goes to that path, a Unix datagram socket of the asking
  thread (a reply over :data:`DGRAM_MAX` goes to its ZeroMQ socket beside it,
  announced by a ``BIG_REPLY`` datagram); and
  from the host's other threads ``WAKE``, so an idle actor looks at a stop request
* parent → host control: ``[START, key, spec]``, ``[STOP, key, exit kind]``, ``[QUIT]``
* child → parent reply socket, two frames: ``[key, kind + status + seq + payload]``
  where kind is STARTED, START_FAILED (payload: the error), REPLY (status OK,
  REFUSED or CRASHED; payload: value or error), LETTER (payload: why), ACK
  (every tell up to seq was handled; a REPLY acknowledges too), STATE (payload:
  the saved state) or EXITED (status: the exit kind; payload: the error).

Remote actor hosts (``laneway worker --actors``) carry the same frames over one
CurveZMQ connection, the host a DEALER, the parent a ROUTER (which adds the
host's identity in front):

* host → parent: ``[HOST_HELLO, json [name, pid, hostname]]``, ``[HOST_BEAT]``,
  ``[HOST_FRAME, key, body]`` (a child → parent body as above), ``[HOST_BYE]``
* parent → host: ``[HOST_WELCOME]``, ``[HOST_PING]``, ``[START, key, spec]``,
  ``[STOP, key, exit kind]``, ``[HOST_MAIL, key, kind + seq + payload]``,
  ``[HOST_REJOIN]`` (the parent no longer knows this host: stop its actors, join again)

A hello is JSON, so nothing executable is read from a peer before it is admitted.

Values go with the stdlib pickler when it can (several times faster than
cloudpickle on small messages) and fall back to cloudpickle for lambdas,
closures and classes defined in functions; either loads with ``pickle.loads``.
"""

from __future__ import annotations

import pickle
import signal
from typing import Any

import cloudpickle

from laneway.errors import SerializationError

TELL = b"T"
ASK = b"A"
ASK_DIRECT = b"D"  #: an ask whose reply goes to the asking thread's own socket
WAKE = b"W"  #: no message: the actor looks whether it was asked to stop
BIG_REPLY = b"Z"  #: a direct reply too big for a datagram follows on the asker's ZeroMQ socket

#: Direct replies up to this size travel as one datagram; bigger ones through ZeroMQ.
DGRAM_MAX = 60_000


def big_reply_endpoint(path: bytes) -> str:
    """The ZeroMQ endpoint, next to an asking thread's datagram socket ``path``, for its big replies."""
    return f"ipc://{path.decode()}.z"
START = b"S"
STOP = b"P"
QUIT = b"Q"
STARTED = b"U"
START_FAILED = b"F"
REPLY = b"R"
LETTER = b"L"
ACK = b"K"
EXITED = b"X"
STATE = b"V"

HOST_HELLO = b"AH"
HOST_BEAT = b"AB"
HOST_FRAME = b"AF"
HOST_BYE = b"AX"
HOST_WELCOME = b"AW"
HOST_PING = b"AP"
HOST_MAIL = b"AM"
HOST_REJOIN = b"AR"


def remote_mailbox(key: bytes) -> str:
    """The in-process endpoint of one actor's mailbox inside a remote host."""
    return f"inproc://laneway-actor/{key.decode()}"


#: Reply statuses: a value, an error the sender caused (``reply_errors``), a crash.
OK = b"1"
REFUSED = b"0"
CRASHED = b"C"

PROTOCOL = pickle.HIGHEST_PROTOCOL

NO_SEQ = bytes(8)

#: Exit kinds as EXITED statuses, and back.
EXIT_CODES = {"normal": b"n", "shutdown": b"s", "crash": b"c"}
EXIT_KINDS = {v: k for k, v in EXIT_CODES.items()}


def dumps(value: Any, what: str) -> bytes:
    """Pickle ``value``; raise :class:`SerializationError` naming ``what`` if it cannot travel."""
    try:
        return pickle.dumps(value, PROTOCOL)
    except Exception:
        pass
    try:
        return cloudpickle.dumps(value, PROTOCOL)
    except Exception as exc:
        raise SerializationError(f"{what} cannot be pickled for another process: {exc!r}") from exc


def dumps_by_value(value: Any, what: str) -> bytes:
    """Pickle ``value`` with cloudpickle only: classes of ``__main__`` travel by value, for processes
    that do not import the program's main module (Ray workers)."""
    try:
        return cloudpickle.dumps(value, PROTOCOL)
    except Exception as exc:
        raise SerializationError(f"{what} cannot be pickled for another process: {exc!r}") from exc


def dump_error(exc: BaseException) -> bytes:
    """Pickle an exception; one that cannot travel goes as a RuntimeError carrying its repr."""
    try:
        data = cloudpickle.dumps(exc, PROTOCOL)
        pickle.loads(data)  # some exceptions pickle but fail to load (required __init__ args)
        return data
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(exc).__qualname__}: {exc}"), PROTOCOL)


def load_error(data: bytes | memoryview) -> BaseException:
    try:
        exc = pickle.loads(data)
    except Exception as load_exc:  # a class the parent cannot import
        return RuntimeError(f"an error that could not be unpickled here: {load_exc!r}")
    return exc if isinstance(exc, BaseException) else RuntimeError(repr(exc))


def describe_exit(exitcode: int | None) -> str:
    """``"killed by SIGKILL"``, ``"exited with status 3"``: how a process ended, for error messages."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"
