"""Running tasks inside a worker, and the function cache both ends keep in step.

A function's pickled bytes travel to a worker once; after that the pool sends only
its digest. The worker keeps the loaded functions in an LRU of :data:`FN_CACHE_SIZE`
entries (:class:`TaskRunner`); the sending side keeps a :class:`ShipLedger` with the
same size and the same update rule. Because a worker receives its tasks in the order
they were sent, both evict the same digests at the same moments, so the sender always
knows whether the worker still holds a function, without any acknowledgement.
"""

from __future__ import annotations

import collections
import logging
import pickle

from laneway.errors import SerializationError
from laneway.worker import codec as _codec
from laneway.worker import wire
from laneway.worker._outcome import TaskOutcome

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import Any, Callable

log = logging.getLogger(__name__)

#: Functions a worker keeps loaded (and the sender remembers as shipped).
FN_CACHE_SIZE = 256

#: A returned ``str`` or ``bytes`` shorter than this travels as itself in a DONE row (form VALUE).
INLINE_VALUE_MAX = 1024
# Builtin scalars whose pickles refer to no user code (bool is an int subclass, but its own type here).
_SCALAR = frozenset({int, float, bool, type(None), complex})
_SIZED = frozenset({str, bytes})


class ShipLedger:
    """Sender-side mirror of one worker's function cache.

    Example:
        >>> ledger = ShipLedger()
        >>> ledger.to_send(b"d" * 16, b"code")    # first time: send the code
        b'code'
        >>> ledger.to_send(b"d" * 16, b"code")    # then only the digest
        b''
    """

    __slots__ = ("_known", "_size")

    def __init__(self, size: int = FN_CACHE_SIZE) -> None:
        self._known: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._size = size

    def to_send(self, digest: bytes, fn_bytes: bytes) -> bytes:
        """The function bytes to put on the wire for this task: ``fn_bytes`` or ``b""``."""
        known = self._known
        if digest in known:
            known.move_to_end(digest)
            return b""
        known[digest] = None
        if len(known) > self._size:
            known.popitem(last=False)
        return fn_bytes


class _LoadFailed:
    """Stands in the cache for a function whose bytes could not be loaded here."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class TaskRunner:
    """Runs tasks in a worker; never raises, every task ends in a :class:`TaskOutcome`.

    Example:
        >>> from laneway.worker.codec import FunctionPickler, dumps_args, decode_outcome
        >>> d, fn = FunctionPickler().dumps(abs)
        >>> decode_outcome(TaskRunner().run(1, d, fn, dumps_args((-3,), None)))
        3
    """

    def __init__(self, cache_size: int = FN_CACHE_SIZE) -> None:
        self._fns: collections.OrderedDict[bytes, Callable[..., Any]] = collections.OrderedDict()
        self._size = cache_size
        #: The id of the task running now (read by the heartbeat thread), or None.
        self.current: int | None = None
        self.tasks_done = 0

    def function(self, digest: bytes, fn_bytes: bytes | None) -> Callable[..., Any]:
        """The function for ``digest``, loading ``fn_bytes`` when given (same LRU rule as ShipLedger)."""
        fns = self._fns
        if not fn_bytes:
            fn = fns.get(digest)
            if fn is None:
                # Only happens if sender and worker fell out of step: a bug, but reported, not hung.
                return _LoadFailed(SerializationError(f"worker has no function {digest.hex()} cached"))
            fns.move_to_end(digest)
            return fn
        try:
            fn = pickle.loads(fn_bytes)
        except BaseException as exc:  # unpickling runs user code; SystemExit too must not end the worker
            fn = _LoadFailed(SerializationError(
                f"cannot unpickle the task's function in the worker: {_codec.describe(exc)}"))
            fn.error.__cause__ = exc
        fns[digest] = fn
        fns.move_to_end(digest)
        if len(fns) > self._size:
            fns.popitem(last=False)
        return fn

    def run(self, task_id: int, digest: bytes, fn_bytes: bytes | None, args_bytes: bytes,
            buffers: Any = ()) -> TaskOutcome:
        """Run one task and encode what happened (``buffers``: the arguments' out-of-band buffers)."""
        returned, value = self._call(task_id, digest, fn_bytes, args_bytes, buffers)
        return _codec.encode_result(task_id, value) if returned else value

    def run_row(self, task_id: int, digest: bytes, fn_bytes: bytes | None, args_bytes: bytes | tuple,
                buffers: Any = ()) -> tuple[int, bool, int, Any]:
        """Run one task; what happened as a DONE row ``(task_id, ok, form, data)`` (see :mod:`laneway.worker.wire`).

        ``args_bytes`` is the pickled ``(args, kwargs)``, or an inline args tuple (see ``wire.TASKS``).

        A small builtin scalar result is the row's data itself (form ``VALUE``): it rides in
        the DONE message's one pickle instead of a pickle of its own.

        Example:
            >>> from laneway.worker.codec import FunctionPickler, dumps_args
            >>> d, fn = FunctionPickler().dumps(abs)
            >>> TaskRunner().run_row(7, d, fn, dumps_args((-3,), None))
            (7, True, 2, 3)
        """
        returned, value = self._call(task_id, digest, fn_bytes, args_bytes, buffers)
        if returned:
            t = type(value)
            if t in _SCALAR or t in _SIZED and len(value) < INLINE_VALUE_MAX:
                return task_id, True, wire.VALUE, value
            value = _codec.encode_result(task_id, value)
        return task_id, value.ok, wire.PLAIN if value.plain else wire.PICKLED, value.data

    def _call(self, task_id: int, digest: bytes, fn_bytes: bytes | None, args_bytes: bytes | tuple,
              buffers: Any) -> tuple[bool, Any]:
        """``(True, the value returned)``, or ``(False, the error's TaskOutcome)``."""
        fn = self.function(digest, fn_bytes)
        if type(fn) is _LoadFailed:
            return False, _codec.encode_error(task_id, fn.error, _codec.UNPICKLABLE, str(fn.error))
        try:
            if isinstance(args_bytes, tuple):  # inline arguments (see wire.TASKS): the tuple itself
                args, kwargs = args_bytes, None
            else:
                args, kwargs = pickle.loads(args_bytes, buffers=buffers)
        except BaseException as exc:
            text = f"cannot unpickle the task's arguments in the worker: {_codec.describe(exc)}"
            return False, _codec.encode_error(task_id, exc, _codec.UNPICKLABLE, text)
        self.current = task_id
        try:
            value = fn(*args, **kwargs) if kwargs else fn(*args)
        except BaseException as exc:  # SystemExit/KeyboardInterrupt from a task are task failures too
            # Drop this frame so the remote traceback starts in the user's function.
            tb = exc.__traceback__
            return False, _codec.encode_error(task_id, exc.with_traceback(tb.tb_next if tb is not None else None))
        finally:
            self.current = None
            self.tasks_done += 1
        return True, value
