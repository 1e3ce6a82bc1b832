"""What a worker reports for one task: the record both sides of the pool agree on."""

from __future__ import annotations

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    from laneway.worker._record import Record


class TaskOutcome(Record):
    """What a worker reports for one task.

    A frozen record like laneway's others, but a named tuple rather than an ``attrs``
    class: worker processes import this module, and ``attrs`` would add a few MB and
    milliseconds of start-up to every one of them (and ``typing``, ~3 ms: see
    :mod:`laneway.worker._record`).

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
