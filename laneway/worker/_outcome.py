"""What a worker reports for one task: the record both sides of the pool agree on."""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class TaskOutcome:
    """What a worker reports for one task.

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
