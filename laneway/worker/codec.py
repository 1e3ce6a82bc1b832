"""How functions, arguments, results and exceptions cross a process boundary.

Pickling happens at submit time in the caller's thread, so a function or argument
that cannot travel fails there with :class:`~laneway.errors.SerializationError`
rather than somewhere in a worker. Functions are pickled with cloudpickle (lambdas
and closures travel by value) and identified by a digest of their bytes, so each
worker receives a function's code once and afterwards only its digest.

Unpickling runs user code (``__reduce__``, ``__setstate__``), which may raise anything,
``SystemExit`` included. Nothing here lets that escape into a worker's loop or the
pool's results thread: it becomes the one task's error.

A worker needs neither cloudpickle nor hashlib to start (they cost it megabytes and
milliseconds): a function that came by value imports cloudpickle as it unpickles (the
pickle names cloudpickle's helpers), and results and errors go with the stdlib pickler
when it can, cloudpickle being imported only for what the stdlib pickler refuses. The
pool's side spares its tasks both imports where it can: a function cloudpickle would send
by name (a module's function, ``abs``, ``math.sqrt``; not a lambda, a closure or the main
script's) pickles by reference with the stdlib pickler, to the same bytes, and digests come
from ``_blake2``, the module behind ``hashlib.blake2b``, without ``hashlib`` (which loads
OpenSSL's hashes too).
"""

from __future__ import annotations

import functools
import logging
import pickle
import sys
import traceback
import types
import weakref

from laneway.errors import SerializationError
from laneway.worker._outcome import TaskOutcome
from laneway.worker._remote import remote_error

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import Any, Callable

log = logging.getLogger(__name__)


class _ImportOnFirstUse:
    """Stands for a module until an attribute of it is first read, then imports it and puts the
    module in its place in this module's globals, so later calls look it up directly."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        module = importlib.import_module(self._name)
        globals()[self._name] = module
        return getattr(module, attr)


if TYPE_CHECKING:
    import cloudpickle
else:
    cloudpickle = _ImportOnFirstUse("cloudpickle")

PROTOCOL = pickle.HIGHEST_PROTOCOL

# Types whose pickles never refer to user code, so the stdlib pickler (10x faster
# than cloudpickle for small payloads) produces bytes any worker can load.
PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex})

# Error record kinds (first item of the pickled error tuple).
RAISED = "raised"  #: the function raised
UNPICKLABLE = "unpicklable"  #: the result (or the function/arguments on arrival) could not be (un)pickled


def digest(data: bytes) -> bytes:
    """The 16-byte digest that names a pickled function."""
    return _blake2b()(data, digest_size=16).digest()


@functools.cache  # resolved once, on the first digest: a worker that never makes one never loads it
def _blake2b() -> Callable[..., Any]:
    try:
        from _blake2 import blake2b  # what hashlib.blake2b is, on CPython
    except ImportError:  # another interpreter, or a CPython built without it
        from hashlib import blake2b
    return blake2b


def _by_reference(fn: Callable[..., Any]) -> bool:
    """Would cloudpickle send ``fn`` by name? Then the stdlib pickler writes the same bytes.

    cloudpickle's rule: a builtin function of a module (``abs``, ``math.sqrt``), or a function
    that its module (imported, not ``__main__``) names under its qualified name, unless that
    module was registered with cloudpickle to travel by value. A worker imports the module either
    way; only lambdas, closures, nested functions and the main script's travel by value.
    """
    if type(fn) is types.BuiltinFunctionType:
        return type(fn.__self__) is types.ModuleType
    if type(fn) is not types.FunctionType:
        return False
    module_name = fn.__module__
    if module_name is None or module_name == "__main__":
        return False
    found: Any = sys.modules.get(module_name)
    if found is None:
        return False
    for part in fn.__qualname__.split("."):  # "<locals>" is no attribute: a nested function is not named
        found = getattr(found, part, None)
    if found is not fn:
        return False
    if "cloudpickle" in sys.modules:  # only then can a module have been registered to go by value
        registered = sys.modules["cloudpickle"].list_registry_pickle_by_value()
        parts = module_name.split(".")
        if any(".".join(parts[:i]) in registered for i in range(1, len(parts) + 1)):
            return False
    return True


class FunctionPickler:
    """Pickles callables, remembering the bytes of plain functions.

    A module-level function or closure-free lambda is pickled once per pool; its
    code and the globals it uses are captured then (as Ray does for remote
    functions). Closures, bound methods and callable objects carry state that may
    change, so they are pickled on every submit (the digest still spares the wire).

    Example:
        >>> fp = FunctionPickler()
        >>> d, data = fp.dumps(len)
        >>> len(d)
        16
    """

    def __init__(self) -> None:
        # Keyed by id(), each entry holding a weak reference to check the id still names the same
        # function: a lookup costs a dict get and a call, where a WeakKeyDictionary builds a
        # weak reference per lookup (a third of a tiny task's submit). The reference's callback
        # drops the entry when the function goes, so a reused id never finds stale bytes.
        self._memo: dict[int, tuple[weakref.ref[Callable[..., Any]], tuple[bytes, bytes]]] = {}

    def dumps(self, fn: Callable[..., Any]) -> tuple[bytes, bytes]:
        """``(digest, pickled bytes)`` of ``fn``; raises SerializationError if it cannot travel."""
        found = self._memo.get(id(fn))
        if found is not None and found[0]() is fn:
            return found[1]
        if not callable(fn):
            raise SerializationError(f"pool tasks need a callable, got {type(fn).__name__}: {fn!r}")
        cacheable = type(fn) is types.FunctionType and fn.__closure__ is None
        try:
            data = pickle.dumps(fn, PROTOCOL) if _by_reference(fn) else cloudpickle.dumps(fn, protocol=PROTOCOL)
        except Exception as exc:
            raise SerializationError(f"cannot pickle function {_name(fn)} for a worker process: {exc!r}") from exc
        entry = (digest(data), data)
        if cacheable:
            key = id(fn)
            memo = self._memo

            def forget(ref: weakref.ref[Callable[..., Any]]) -> None:
                if memo.get(key, (None,))[0] is ref:
                    del memo[key]

            memo[key] = (weakref.ref(fn, forget), entry)
        return entry


#: Buffers at least this big travel out of band: as their own zero-copy ZeroMQ frames, never
#: copied into a pickle (smaller ones cost more as frames than as bytes in the pickle).
OOB_MIN = 64 * 1024


class _BytesOOB:
    """Stands for a large ``bytes`` argument while pickling: the stdlib pickler writes ``bytes``
    in band whatever the protocol, so this reduces it to a :class:`pickle.PickleBuffer` that
    the buffer callback keeps out of band; it unpickles as ``bytes`` again."""

    __slots__ = ("b",)

    def __init__(self, b: bytes) -> None:
        self.b = b

    def __reduce__(self) -> tuple:
        return bytes, (pickle.PickleBuffer(self.b),)


_PLAIN_OOB = PLAIN | {_BytesOOB}
_SMALL_SCALAR = frozenset({int, float, bool, type(None), complex})
_SMALL_SIZED = frozenset({str, bytes})  # in band below OOB_MIN


def dumps_args_oob(args: tuple, kwargs: dict | None) -> tuple[bytes, tuple[bytes, ...], int]:
    """Pickle ``(args, kwargs)`` with protocol 5, large buffers out of band.

    Returns ``(pickle, buffers, owned)``: ``pickle.loads(data, buffers=buffers)`` rebuilds
    the arguments. A large ``bytes`` argument (immutable) is a buffer by reference, never
    copied; other large buffers (``bytearray``, ``memoryview``, numpy arrays: mutable, so
    the caller may change them after submit) are copied once. ``owned`` counts the bytes
    this call allocated (the pickle and those copies): what queueing the task costs beyond
    the caller's own objects. Raises SerializationError naming what failed.
    """
    if not kwargs:
        for a in args:  # the common case first: a few small scalars, one stdlib pickle, no buffers
            t = type(a)
            if t not in _SMALL_SCALAR and (t not in _SMALL_SIZED or len(a) >= OOB_MIN):
                break
        else:
            data = pickle.dumps((args, None), 5)
            return data, (), len(data)
    if any(type(a) is bytes and len(a) >= OOB_MIN for a in args):
        args = tuple(_BytesOOB(a) if type(a) is bytes and len(a) >= OOB_MIN else a for a in args)
    if kwargs and any(type(v) is bytes and len(v) >= OOB_MIN for v in kwargs.values()):
        kwargs = {k: _BytesOOB(v) if type(v) is bytes and len(v) >= OOB_MIN else v for k, v in kwargs.items()}
    bufs: list[bytes] = []
    owned = 0

    def keep(pb: pickle.PickleBuffer) -> bool:
        nonlocal owned
        raw = pb.raw()
        if raw.nbytes < OOB_MIN:
            return True  # in band
        obj = raw.obj
        if type(obj) is bytes and len(obj) == raw.nbytes:
            bufs.append(obj)
        else:
            bufs.append(raw.tobytes())
            owned += raw.nbytes
        return False

    if not kwargs and all(type(a) in _PLAIN_OOB for a in args):
        data = pickle.dumps((args, None), 5, buffer_callback=keep)
    else:
        try:
            data = cloudpickle.dumps((args, kwargs or None), protocol=5, buffer_callback=keep)
        except Exception as exc:
            bad = _first_unpicklable(args, kwargs)
            raise SerializationError(f"cannot pickle argument {bad} for a worker process: {exc!r}") from exc
    return data, tuple(bufs), owned + len(data)


#: A ``str`` or ``bytes`` argument shorter than this may travel inline (see :func:`inlinable`).
INLINE_ARG_MAX = 1024


def inlinable(args: tuple) -> bool:
    """May these positional arguments travel as themselves inside a task message (no pickle of their own)?

    Yes for builtin scalars and short ``str``/``bytes``: their pickles refer to no user code,
    and a tiny task then costs no pickling here and no unpickling in the worker.

    Example:
        >>> inlinable((1, 2.5, "s", None)), inlinable(([1],))
        (True, False)
    """
    for a in args:
        t = type(a)
        if t not in _SMALL_SCALAR and (t not in _SMALL_SIZED or len(a) >= INLINE_ARG_MAX):
            return False
    return True


def dumps_args(args: tuple, kwargs: dict | None) -> bytes:
    """Pickle ``(args, kwargs)``; raises SerializationError naming what failed."""
    if not kwargs and all(type(a) in PLAIN for a in args):
        return pickle.dumps((args, None), PROTOCOL)
    try:
        return cloudpickle.dumps((args, kwargs or None), protocol=PROTOCOL)
    except Exception as exc:
        bad = _first_unpicklable(args, kwargs)
        raise SerializationError(f"cannot pickle argument {bad} for a worker process: {exc!r}") from exc


def _first_unpicklable(args: tuple, kwargs: dict | None) -> str:
    for i, a in enumerate(args):
        if type(a) is _BytesOOB:
            continue
        if not _picklable(a):
            return f"#{i} ({type(a).__name__})"
    for k, v in (kwargs or {}).items():
        if not _picklable(v):
            return f"{k}= ({type(v).__name__})"
    return "(unknown)"


def _picklable(value: Any) -> bool:
    try:
        cloudpickle.dumps(value, protocol=PROTOCOL)
    except Exception:
        return False
    return True


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# --- worker side --------------------------------------------------------------


def encode_result(task_id: int, value: Any) -> TaskOutcome:
    """The outcome for a returned value (an error outcome if the value cannot be pickled)."""
    if type(value) in PLAIN:
        return TaskOutcome(task_id, True, pickle.dumps(value, PROTOCOL), True)
    try:
        return TaskOutcome(task_id, True, _dumps_any(value))
    except BaseException as exc:  # a __reduce__ may raise anything; the worker lives on
        text = f"the task's result ({type(value).__name__}) cannot be pickled back to the pool: {describe(exc)}"
        return TaskOutcome(task_id, False, error_record(exc, UNPICKLABLE, text))


def encode_error(task_id: int, exc: BaseException, kind: str = RAISED, message: str | None = None) -> TaskOutcome:
    """The outcome for an exception, with the remote traceback text."""
    return TaskOutcome(task_id, False, error_record(exc, kind, message))


def error_record(exc: BaseException, kind: str = RAISED, message: str | None = None) -> bytes:
    """The pickled record of an exception raised in a worker (decoded by :func:`decode_error`); never raises."""
    try:
        tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:
        tb_text = f"{type(exc).__qualname__} (its traceback could not be formatted)\n"
    try:
        exc_bytes = _dumps_any(exc)
        pickle.loads(exc_bytes)  # some exceptions pickle but cannot be rebuilt
    except BaseException:
        exc_bytes = b""
    type_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    text = message if message is not None else describe(exc)
    return pickle.dumps((kind, type_name, text, tb_text, exc_bytes), PROTOCOL)


def _dumps_any(value: Any) -> bytes:
    """The stdlib pickle of ``value``, or cloudpickle's when the stdlib pickler refuses it (lambdas,
    local classes, objects of classes that came by value). The stdlib pickler writes a class or
    function by reference only after checking that the name finds that very object here."""
    try:
        return pickle.dumps(value, PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=PROTOCOL)


def describe(exc: BaseException) -> str:
    """``"Type: message"``, even when the exception's ``__str__`` raises."""
    try:
        return f"{type(exc).__qualname__}: {exc}"
    except BaseException:  # a __str__ that raises
        return f"{type(exc).__qualname__} (its message could not be read)"


# --- pool side ----------------------------------------------------------------


def decode(outcome: TaskOutcome) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, error)`` for a worker's outcome; never raises.

    The error is :func:`decode_error`'s for a task that raised, or a
    :class:`~laneway.errors.SerializationError` (original as ``__cause__``) when the result
    cannot be unpickled here, whatever its unpickling raised, ``SystemExit`` included.
    """
    if not outcome.ok:
        return False, decode_error(outcome.data)
    try:
        return True, pickle.loads(outcome.data)
    except BaseException as exc:
        err = SerializationError(f"the task's result cannot be unpickled in the pool's process: {describe(exc)}")
        err.__cause__ = exc
        return False, err


def decode_outcome(outcome: TaskOutcome) -> Any:
    """The task's result, or raise what the worker reported.

    Raises:
        RemoteError: the function raised: also an instance of the task's own exception type
            where possible (see ``_remote``); ``__cause__`` is the original exception when it
            could be rebuilt here, ``remote_traceback`` its traceback text.
        SerializationError: the result, function or arguments could not be (un)pickled.
    """
    ok, value = decode(outcome)
    if ok:
        return value
    raise value


def decode_error(data: bytes) -> Exception:
    """Rebuild the exception a worker reported (see :func:`~laneway.worker._remote.remote_error`); never raises."""
    try:
        kind, type_name, text, tb_text, exc_bytes = pickle.loads(data)
    except BaseException as exc:  # not an error record: a worker of another version, or a bug
        err = SerializationError(f"the worker's error report cannot be read: {describe(exc)}")
        err.__cause__ = exc
        return err
    original: BaseException | None = None
    if exc_bytes:
        try:
            original = pickle.loads(exc_bytes)
        except BaseException:
            log.debug("could not rebuild remote %s", type_name, exc_info=True)
    if kind == UNPICKLABLE:
        err = SerializationError(f"{text}\n\nRemote traceback:\n{tb_text}")
        err.__cause__ = original
        return err
    return remote_error(original, text, type_name, tb_text)
