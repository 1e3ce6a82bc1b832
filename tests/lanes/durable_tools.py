"""Tools for the persistence tests: defined at module level, so a new process finds them by name."""

from __future__ import annotations

import os

from laneway.lanes import tool


@tool(description="Append the tag to a log file, one line per run")
def durable_echo(tag: str, log: str) -> str:
    # O_APPEND writes of one short line are atomic, so concurrent runs never interleave.
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)
    return tag


@tool(description="Always fails")
def durable_fail(tag: str) -> str:
    raise RuntimeError(f"{tag} cannot work")
