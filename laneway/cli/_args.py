"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse
from typing import Any, Callable


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind(text)``, refused unless it is > 0.

    Example:
        >>> positive(int)("3")
        3
        >>> positive(float)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be > 0, got 0
    """

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def port(text: str) -> int:
    """An argparse ``type``: a TCP port, 0..65535 (0: the system picks a free one).

    Example:
        >>> port("8642")
        8642
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {text}")
    return value
