"""Snapshots as JSON, encoded once per tick and section by section, with the sections that changed.

A page that saw the previous tick gets only what changed since (a ``delta``
event it merges into what it has); a page that missed one, or just opened,
gets the whole snapshot. A section equal to the previous tick's (compared as
Python data, which is much cheaper than encoding it) reuses its text, so a
quiet section, such as a hundred dead letters with their tracebacks, is
neither encoded nor sent again.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(data: Any) -> str:
    """Compact JSON; what JSON cannot hold is shown as its ``str``."""
    return json.dumps(data, default=str, separators=(",", ":"))


class SnapshotEncoder:
    """Encodes successive snapshots (dicts with the same top-level sections) of one sampler.

    Not thread-safe: one thread (the console's monitor) encodes every tick.

    Example:
        >>> enc = SnapshotEncoder()
        >>> enc.encode({"ts": 1, "letters": [1, 2]})
        ('{"ts":1,"letters":[1,2]}', '{"ts":1,"letters":[1,2]}')
        >>> enc.encode({"ts": 2, "letters": [1, 2]})
        ('{"ts":2,"letters":[1,2]}', '{"ts":2}')
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[Any, str]] = {}

    def encode(self, snapshot: dict[str, Any]) -> tuple[str, str]:
        """(the whole snapshot, the sections that changed since the previous call) as JSON objects.

        The second is the whole snapshot too when the sections themselves changed.
        """
        last, sections, changed = self._last, {}, []
        for key, value in snapshot.items():
            previous = last.get(key)
            if previous is not None and previous[0] == value:
                text = previous[1]
            else:
                text = f"{dumps(key)}:{dumps(value)}"
                changed.append(text)
            sections[key] = (value, text)
        self._last = sections
        whole = "{" + ",".join(text for _, text in sections.values()) + "}"
        if sections.keys() != last.keys():
            return whole, whole
        return whole, "{" + ",".join(changed) + "}"
