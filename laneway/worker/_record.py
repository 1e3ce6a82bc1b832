"""Records in ``typing.NamedTuple``'s class syntax, made without importing ``typing``.

Worker processes import the modules that define their records (:class:`~laneway.worker.TaskOutcome`,
:class:`~laneway.worker.WorkerConfig`), and ``typing`` would cost each of them ~3 ms of start-up.
A module defines its records on :class:`Record`, which mypy is told is ``typing.NamedTuple``
(so every record keeps its typed constructor and fields)::

    TYPE_CHECKING = False  # True to mypy
    if TYPE_CHECKING:
        from typing import NamedTuple as Record
    else:
        from laneway.worker._record import Record

At run time the class body becomes a :func:`collections.namedtuple`, as ``typing.NamedTuple`` makes
it: the annotated names are the fields, in order, their values the defaults; the docstring,
methods and properties are copied onto it.

Example:
    >>> class Point(Record):
    ...     x: int
    ...     y: int = 0
    >>> Point(1), Point(1, 2)._replace(y=3)
    (Point(x=1, y=0), Point(x=1, y=3))
"""

from __future__ import annotations

import collections

# What the class statement puts in every namespace; the named tuple sets its own.
_OWN = frozenset({"__module__", "__qualname__", "__annotations__", "__slots__", "__dict__", "__weakref__"})


class _RecordMeta(type):
    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, object]) -> type:
        if not bases:  # Record itself
            return super().__new__(mcls, name, bases, ns)
        annotations = ns.get("__annotations__", {})
        assert isinstance(annotations, dict)
        fields = list(annotations)
        defaults = [ns[f] for f in fields if f in ns]
        if any(f in ns for f in fields[: len(fields) - len(defaults)]):
            raise TypeError(f"record {name}: a field without a default follows one with a default")
        # mypy checks namedtuple() calls as class definitions: with literals only
        cls = collections.namedtuple(name, fields, defaults=defaults, module=str(ns.get("__module__")))  # type: ignore[misc]
        for key, value in ns.items():
            if key not in _OWN and key not in annotations:
                setattr(cls, key, value)
        cls.__qualname__ = str(ns.get("__qualname__", name))
        cls.__annotations__ = annotations
        return cls


class Record(metaclass=_RecordMeta):
    """Base of a record written as a ``typing.NamedTuple`` is (see the module's docstring)."""
