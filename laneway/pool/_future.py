"""The future of one pool task: cheap to make and to settle while nobody waits (see ``LazyFuture``)."""

from __future__ import annotations

from typing import Any

from laneway.core import LazyFuture
from laneway.errors import LanewayTimeout


class TaskFuture(LazyFuture[Any]):
    """A pool task's :class:`~laneway.actors.Future`."""

    _timeout_error = LanewayTimeout

    def __init__(self, task_id: int, label: str) -> None:
        super().__init__()
        self._task = (task_id, label)

    @property
    def _what(self) -> str:  # type: ignore[override]
        # A string per task only when a timeout error needs it; a caller may still name it.
        what = self.__dict__.get("_what_text")
        return what if what is not None else "result of pool task %d (%s)" % self._task

    @_what.setter
    def _what(self, text: str) -> None:
        self.__dict__["_what_text"] = text

