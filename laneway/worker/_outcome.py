"""What a worker reports for one task: the record both sides of the pool agree on."""

from __future__ import annotations

from typing import NamedTuple


class TaskOutcome(NamedTuple):
    """What a worker reports for one task.

    A frozen record like laneway's others, but a ``NamedTuple`` rather than an ``attrs``
    class: worker processes import this module, and ``attrs`` would add a few MB and
    milliseconds of start-up to every one of them.

    Attributes:
        task_id: the :attr:`TaskWire.task_id` it answers.
        ok: True if the function returned; ``data`` is then its pickled result.
        data: the pickled result, or a pickled error record (see ``_codec``).
        plain: ``data`` is a stdlib pickle of a builtin scalar (int, str, bytes, ...), whose
            unpickling runs no user code, so the pool may decode it on its I/O thread.
    """

    task_id: int
    ok: bool
    data: bytes
    plain: bool = False
