"""``Pool.map``: :meth:`concurrent.futures.Executor.map`, lazy over its input, with chunks.

As in ``ProcessPoolExecutor.map``: results come in input order; a call that raised
raises when its result is reached (after the results before it); ``timeout`` counts
from the call to ``map`` and raises :class:`TimeoutError`; closing the iterator (or
leaving a ``for`` loop early) cancels the calls no worker has yet. ``chunksize`` calls
travel as one task (one message, one result) and run one after another in a worker.

Unlike it, the input is read lazily: at most ``buffersize`` tasks (chunks) are in
flight, so an endless iterator works and memory stays bounded. The first
``buffersize`` are submitted at the call; whenever taking results has halved them,
the next ones are submitted in one burst (tasks then reach workers in batches, and
their results are mostly ready when taken: as fast as submitting all at once).
"""

from __future__ import annotations

import collections
import itertools
import pickle
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from laneway.errors import ConfigError, PoolFull
from laneway.worker import codec as _codec

if TYPE_CHECKING:
    from laneway.pool._future import TaskFuture
    from laneway.pool._options import TaskOptions
    from laneway.pool._pool import Pool


class ChunkCall:
    """Calls ``fn`` once per argument tuple, in a worker, as one pool task (``map``'s chunks).

    Returns ``(results, error)``: ``error`` is None, or the error record of the call that
    raised (the calls after it do not run), so the caller gets the results before it first.

    Example:
        >>> ChunkCall(divmod)((7, 2), (9, 4))
        ([(3, 1), (2, 1)], None)
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *calls: tuple) -> tuple[list[Any], bytes | None]:
        fn = self.fn
        out: list[Any] = []
        for args in calls:
            try:
                out.append(fn(*args))
            except BaseException as exc:  # as the worker's runner does: SystemExit is a task failure too
                tb = exc.__traceback__
                return out, _codec.error_record(exc.with_traceback(tb.tb_next if tb is not None else None))
        return out, None


def map_calls(pool: Pool, options: TaskOptions, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
              timeout: float | None, chunksize: int, buffersize: int | None) -> Iterator[Any]:
    """``fn(*args)`` for each ``args`` of ``zip(*iterables)`` on ``pool``; see :meth:`Pool.map`."""
    end = None if timeout is None else time.monotonic() + timeout
    if type(chunksize) is not int or chunksize < 1:
        raise ConfigError(f"chunksize must be an int >= 1, got {chunksize!r}")
    if buffersize is None:
        buffersize = max(256, 2 * max(1, pool.max_workers) * pool._core.window)
    elif type(buffersize) is not int or buffersize < 1:
        raise ConfigError(f"buffersize must be an int >= 1 or None, got {buffersize!r}")
    args_iter = zip(*iterables)
    chunked = chunksize > 1
    calls: Iterator[tuple]
    dumps: Callable[[Any], bytes]
    if chunked:
        calls = iter(lambda: tuple(itertools.islice(args_iter, chunksize)), ())
        digest, fn_bytes = pool._pickler.dumps(ChunkCall(fn))  # once per map: every chunk ships its digest only
        dumps = _dumps_chunk
    else:
        calls = args_iter
        digest, fn_bytes = pool._pickler.dumps(fn)
        dumps = _dumps_call
    label = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    pending: collections.deque[TaskFuture] = collections.deque()

    def submit_next() -> bool:
        args = next(calls, None)
        if args is None:
            return False
        wait = options.queue_timeout if end is None else max(0.0, end - time.monotonic())
        try:
            pending.append(pool._submit_parts((digest, fn_bytes, dumps(args)), label, options, wait))
        except PoolFull:
            if end is None:
                raise
            raise TimeoutError(f"the pool's queue stayed full past map's {timeout}s timeout") from None
        return True

    def refill() -> None:
        # In bursts (from half full to full), so tasks reach the workers in batches, and the
        # results of a burst are mostly ready by the time the caller takes them.
        if len(pending) <= buffersize // 2:
            while len(pending) < buffersize and submit_next():
                pass

    refill()
    return _results(pending, refill, end, chunked)


def _results(pending: collections.deque[TaskFuture], refill: Callable[[], None], end: float | None,
             chunked: bool) -> Iterator[Any]:
    try:
        while pending:
            fut = pending.popleft()
            try:
                value = fut.result(None if end is None else end - time.monotonic())
            finally:
                fut.cancel()  # as concurrent.futures does: a result given up on (timeout) is not run
            del fut
            refill()  # keep work in flight while the caller works on this result
            # The generator lets go of each result once given out, so it holds none while it waits.
            if chunked:
                values, error = value
                del value
                yield from values
                del values
                if error is not None:
                    raise _codec.decode_error(error)
            else:
                yield value
                del value
    finally:
        for fut in pending:
            fut.cancel()


def _dumps_call(args: tuple) -> bytes:
    return _codec.dumps_args(args, None)


def _dumps_chunk(chunk: tuple[tuple, ...]) -> bytes:
    plain = _codec.PLAIN
    if all(type(a) in plain for args in chunk for a in args):
        return pickle.dumps((chunk, None), _codec.PROTOCOL)
    return _codec.dumps_args(chunk, None)
