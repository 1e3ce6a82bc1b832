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
