"""laneway's own task options, kept apart from the task's arguments.

``pool.submit(fn, *args, **kwargs)`` passes every keyword to ``fn``, as
:meth:`concurrent.futures.Executor.submit` does; laneway's options (timeout,
attempts, ...) go through :meth:`Pool.options <laneway.pool.Pool.options>`, which
returns a :class:`TaskSubmitter`: the pool with those options bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import attrs

from laneway.errors import ConfigError

if TYPE_CHECKING:
    from laneway.pool._future import TaskFuture
    from laneway.pool._pool import Pool


@attrs.frozen
class TaskOptions:
    """How the pool runs a task, apart from its arguments.

    Attributes:
        timeout: seconds the task may run once started; past it its worker is killed and
            replaced and the future fails with :class:`~laneway.errors.TaskTimeout`
            (never retried). None: no limit.
        attempts: runs allowed when workers die under the task (not when it raises). The last
            failure is :class:`~laneway.errors.WorkerDied` (a ``BrokenProcessPool``). Use 1 for
            tasks that must not run twice.
        queue_timeout: seconds ``submit`` waits for room in a full queue before raising
            :class:`~laneway.errors.PoolFull` (None: until there is room).
        dead_letter: put a task whose attempts ran out in the dead-letter queue; pass False
            when the caller owns the outcome (it retries and dead-letters itself).

    Raises:
        ConfigError: a value out of range (also a ``ValueError``).

    Example:
        >>> TaskOptions(timeout=5, attempts=1)
        TaskOptions(timeout=5, attempts=1, queue_timeout=None, dead_letter=True)
    """

    timeout: float | None = None
    attempts: int = 3
    queue_timeout: float | None = None
    dead_letter: bool = True

    def __attrs_post_init__(self) -> None:
        if self.timeout is not None and (isinstance(self.timeout, bool) or not self.timeout > 0):
            raise ConfigError(f"timeout must be > 0 or None, got {self.timeout!r}")
        if type(self.attempts) is not int or self.attempts < 1:
            raise ConfigError(f"attempts must be an int >= 1, got {self.attempts!r}")
        if self.queue_timeout is not None and (isinstance(self.queue_timeout, bool) or not self.queue_timeout >= 0):
            raise ConfigError(f"queue_timeout must be >= 0 or None, got {self.queue_timeout!r}")
        if not isinstance(self.dead_letter, bool):
            raise ConfigError(f"dead_letter must be a bool, got {self.dead_letter!r}")


@attrs.frozen(eq=False)
class TaskSubmitter:
    """A pool with :class:`TaskOptions` bound; made by :meth:`Pool.options <laneway.pool.Pool.options>`.

    Example:
        >>> quick = pool.options(timeout=5, attempts=1)                    # doctest: +SKIP
        >>> quick.submit(pow, 2, 10).result(timeout=30)                    # doctest: +SKIP
        1024
        >>> list(quick.map(pow, [2, 3], [5, 2]))                            # doctest: +SKIP
        [32, 9]
    """

    pool: Pool
    task_options: TaskOptions

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """:meth:`Pool.submit <laneway.pool.Pool.submit>` with these options."""
        return self.pool._submit(fn, args, kwargs, self.task_options, True)

    def submit_nowait(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """:meth:`Pool.submit_nowait <laneway.pool.Pool.submit_nowait>` with these options."""
        return self.pool._submit(fn, args, kwargs, self.task_options, False)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Iterator[Any]:
        """:meth:`Pool.map <laneway.pool.Pool.map>` with these options (for every chunk)."""
        from laneway.pool._map import map_calls

        return map_calls(self.pool, self.task_options, fn, iterables, timeout, chunksize, buffersize)

    def options(self, **changes: Any) -> TaskSubmitter:
        """The same pool with these options changed by ``changes``."""
        return TaskSubmitter(self.pool, evolve(self.task_options, changes))


def evolve(options: TaskOptions, changes: dict[str, Any]) -> TaskOptions:
    """``options`` with ``changes``; an unknown name is a ConfigError naming the known ones."""
    unknown = sorted(set(changes) - {a.name for a in attrs.fields(TaskOptions)})
    if unknown:
        known = [a.name for a in attrs.fields(TaskOptions)]
        raise ConfigError(f"unknown task option(s) {unknown}; the options are {known} "
                          "(the task's own keyword arguments go to submit)")
    return attrs.evolve(options, **changes)
