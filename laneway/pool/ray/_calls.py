"""The Ray backend's batch calls: what one carries to the actor, and what a failed one says.

A call carries one batch of tasks as :data:`~laneway.pool.ray._actor.WireTask` tuples
(:func:`batch_rows`); a call that failed because its actor died is worded for
``worker_lost`` reasons and dead letters by :func:`describe_actor_error`.
"""

from __future__ import annotations

import re
from typing import Any

from laneway.pool._backend import TaskRow
from laneway.worker import ShipLedger


class Call:
    """One batch call in flight: its batch number, and Ray's answer once it came (under ``Replies.lock``)."""

    __slots__ = ("seq", "answer", "arrived")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.answer: Any = None  # the pickled WireAnswer, or the RayError the call failed with
        self.arrived = False


def batch_rows(rows: list[TaskRow], ledger: ShipLedger) -> list[tuple[int, bytes, bytes, bytes | tuple]]:
    """One call's tasks as :data:`~laneway.pool.ray._actor.WireTask` tuples, each function's bytes shipped once.

    A run of tasks of one function asks the ledger once: the rest of the run would only
    move the same digest to the same end of its LRU. No buffers: the backend is not
    ``out_of_band``, so every task's arguments are in band.

    Example:
        >>> ledger = ShipLedger()
        >>> batch_rows([(1, b"d", b"code", (1,), ()), (2, b"d", b"code", (2,), ())], ledger)
        [(1, b'd', b'code', (1,)), (2, b'd', b'', (2,))]
        >>> batch_rows([(3, b"d", b"code", (3,), ())], ledger)
        [(3, b'd', b'', (3,))]
    """
    to_send = ledger.to_send
    batch = []
    last = None
    for tid, digest, fn_bytes, args, _ in rows:
        if digest != last:
            batch.append((tid, digest, to_send(digest, fn_bytes), args))
            last = digest
        else:
            batch.append((tid, digest, b"", args))
    return batch


def describe_actor_error(exc: BaseException) -> str:
    """Short text for why a Ray actor call failed, for ``worker_lost`` reasons and dead letters.

    Example:
        >>> describe_actor_error(RuntimeError("The actor died because its node has died. Node Id: 1404b2439104"))
        'its node has died (node 1404b243)'
        >>> describe_actor_error(RuntimeError("boom\\nmore"))
        'RuntimeError: boom'
    """
    text = " ".join(str(exc).split())
    cause = _CAUSE.search(text)
    if cause is None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    extra = []
    if detail := _DETAIL.search(text):
        extra.append(detail.group(1))
    if node := _NODE.search(text):
        extra.append(f"node {node.group(1)}")
    return cause.group(1) + (f" ({'; '.join(extra)})" if extra else "")


# Ray words an actor's death as "... is dead because <cause>. ... Worker exit detail: <detail>. ... Node Id: <id>".
_CAUSE = re.compile(r"(?:is dead|died) because (.+?)\.(?:\s|$)")
_DETAIL = re.compile(r"Worker exit detail: (.+?)\.(?:\s|$)")
_NODE = re.compile(r"Node Id: ([0-9a-f]{8})")
