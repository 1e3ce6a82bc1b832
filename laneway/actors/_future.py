"""The one future type laneway hands out: blocking ``get`` and non-blocking ``await``."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Generator, Generic, TypeVar

from laneway.errors import AskTimeout, LanewayTimeout

T = TypeVar("T")


class Future(concurrent.futures.Future, Generic[T]):  # type: ignore[type-arg]
    """A result that arrives later, from another thread or process.

    It is a :class:`concurrent.futures.Future`, so ``concurrent.futures.wait``
    and ``asyncio.wrap_future`` accept it, plus:

    * :meth:`get` blocks with a typed timeout error;
    * ``await future`` suspends only the awaiting task, never the event loop
      (pykka's own futures block the loop when awaited).

    Example:
        >>> f = Future()
        >>> f.set_result(3)
        >>> f.get(timeout=1)
        3
    """

    # What the future waits for, used only to word a timeout error.
    _what: str = "result"
    _timeout_error: type[LanewayTimeout] = AskTimeout

    def get(self, timeout: float | None = None) -> T:
        """The result, waiting up to ``timeout`` seconds (None: forever).

        Raises:
            AskTimeout: (or the subclass set by the producer) no result in time.
            Exception: whatever the work raised.
        """
        try:
            return self.result(timeout)
        except concurrent.futures.TimeoutError:
            if self.done():  # the work itself raised a TimeoutError
                raise
            raise self._timeout_error(f"no {self._what} within {timeout}s") from None

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()

    def settle(self, result: Any = None, error: BaseException | None = None) -> bool:
        """Set the result or error unless already set; True if this call set it.

        Producers race (a reply and a death notice); the first one wins.
        """
        try:
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(result)
            return True
        except concurrent.futures.InvalidStateError:
            return False


def resolved(value: T) -> Future[T]:
    """A future already holding ``value``."""
    f: Future[T] = Future()
    f.set_result(value)
    return f
