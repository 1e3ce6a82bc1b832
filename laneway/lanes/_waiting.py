"""Waiting for a command's result, and withdrawing it when its caller gives up."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from laneway.errors import ConfigError, LanewayTimeout
from laneway.lanes._config import GiveUp

if TYPE_CHECKING:
    from laneway.lanes._records import CommandHandle

#: ``(command_id, reason, future)``: cancel the command if it is still the one behind ``future``.
Withdraw = Callable[[str, str, Any], bool]


def check_give_up(on_give_up: GiveUp) -> None:
    if on_give_up is not GiveUp.WITHDRAW and not isinstance(on_give_up, GiveUp):
        raise ConfigError(f"on_give_up must be a GiveUp (WITHDRAW or KEEP), got {on_give_up!r}")


def _give_up(withdraw: Withdraw, handle: CommandHandle, reason: str) -> None:
    withdraw(handle.command_id, f"withdrawn: {reason}", handle.future)


def gave_up_on(command_id: str, future: Any, limit: float, on_give_up: GiveUp, withdraw: Withdraw) -> None:
    """No result came within ``limit`` s: withdraw the command unless told to keep it."""
    if on_give_up is GiveUp.WITHDRAW:
        withdraw(command_id, f"withdrawn: the caller stopped waiting after {limit}s", future)


async def await_result(handle: CommandHandle, limit: float, on_give_up: GiveUp, withdraw: Withdraw) -> Any:
    """Block-free form of ``LaneManager.call``'s wait; the caller also gives up when its task is cancelled."""
    wrapped = asyncio.wrap_future(handle.future)

    def abandon(reason: str) -> None:
        # Nobody reads the wrapper's CommandCancelled: retrieve it so asyncio does not log it as lost.
        wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())
        _give_up(withdraw, handle, reason)

    try:
        done, _ = await asyncio.wait((wrapped,), timeout=limit)
    except asyncio.CancelledError:
        if on_give_up is GiveUp.WITHDRAW:
            abandon("the awaiting task was cancelled")
        raise
    if not done:
        if on_give_up is GiveUp.WITHDRAW:
            abandon(f"the caller stopped waiting after {limit}s")
        raise LanewayTimeout(f"no result of command {handle.command_id} within {limit}s")
    return wrapped.result()
