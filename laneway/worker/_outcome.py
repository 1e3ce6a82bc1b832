"""What a worker reports for one task: the record both sides of the pool agree on."""

from __future__ import annotations

from collections import namedtuple


class TaskOutcome(namedtuple("TaskOutcome", ["task_id", "ok", "data", "plain"], defaults=[False])):
    """What a worker reports for one task.

    A frozen record like laneway's others, but a named tuple rather than an ``attrs``
    class: worker processes import this module, and ``attrs`` would add a few MB and
    milliseconds of start-up to every one of them (``typing.NamedTuple``, ~3 ms: the
    annotations below are mypy's view of the fields).

    Attributes:
        task_id: the :attr:`TaskWire.task_id` it answers.
        ok: True if the function returned; ``data`` is then its pickled result.
        data: the pickled result, or a pickled error record (see ``_codec``).
        plain: ``data`` is a stdlib pickle of a builtin scalar (int, str, bytes, ...), whose
            unpickling runs no user code, so the pool may decode it on its I/O thread.
    """

    __slots__ = ()
    task_id: int
    ok: bool
    data: bytes
    plain: bool
