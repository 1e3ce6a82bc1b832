"""A task's exception, raised in the caller as its own type and as a :class:`~laneway.errors.RemoteError`.

Ray's approach (``RayTaskError.as_instanceof_cause``): for a task that raised, say,
``ZeroDivisionError``, the future raises an instance of a class made on the fly,
``RemoteError(ZeroDivisionError)``, that subclasses both, so ``except
ZeroDivisionError:`` and ``except RemoteError:`` both catch it. It is built from the
original's pickle recipe (``__reduce__``), as unpickling would build the original, so
``args`` and attributes (``errno``, a custom field) are the original's. Its text is the
original's followed by the remote traceback, and ``__cause__`` is the original rebuilt.

A plain :class:`RemoteError` (original as ``__cause__``) stands in when the type cannot be
subclassed (a metaclass or ``__init_subclass__`` refuses, layouts conflict), cannot be
rebuilt that way, or is a ``BaseException`` that is not an ``Exception``: a task's
``sys.exit()`` must not exit the caller, nor its ``asyncio.CancelledError`` cancel it.
"""

from __future__ import annotations

import functools
import logging

from laneway.errors import RemoteError

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

#: Dual classes kept (one per task exception type seen).
TYPES_KEPT = 256


def remote_error(original: BaseException | None, text: str, type_name: str, tb_text: str) -> RemoteError:
    """The error a future raises for a task that raised ``original`` (None: it could not be rebuilt here).

    Args:
        original: the task's exception as rebuilt in this process, or None.
        text: ``"ZeroDivisionError: division by zero"``, for the plain RemoteError's message.
        type_name: qualified name of the remote exception's type.
        tb_text: the remote traceback.

    Example:
        >>> err = remote_error(KeyError("k"), "KeyError: 'k'", "builtins.KeyError", "Traceback ...")
        >>> isinstance(err, KeyError) and isinstance(err, RemoteError), err.args
        (True, ('k',))
    """
    err: RemoteError | None = None
    if isinstance(original, Exception):
        dual = _dual_type(type(original))  # type: ignore[arg-type]  # exception types are hashable
        if dual is not None:
            try:
                err = _rebuild(dual, original)
            except BaseException:  # user __init__/__setstate__ code: anything may come out
                log.debug("could not rebuild %s as a RemoteError", type_name, exc_info=True)
    if err is None:
        err = RemoteError(f"task raised {text}", type_name, tb_text)
    else:
        err.type_name = type_name
        err.remote_traceback = tb_text
        err._remote_text = text  # type: ignore[attr-defined]
    err.__cause__ = original
    return err


@functools.lru_cache(maxsize=TYPES_KEPT)
def _dual_type(cls: type[BaseException]) -> type[RemoteError] | None:
    """``RemoteError(cls)``: a subclass of ``cls`` and RemoteError that behaves as ``cls``; None if impossible."""

    def __new__(dual: type, *args: Any, **kwargs: Any) -> Any:
        return cls.__new__(dual, *args, **kwargs)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        cls.__init__(self, *args, **kwargs)

    def __str__(self: Any) -> str:
        try:
            text = cls.__str__(self)
        except Exception:
            text = f"<{cls.__qualname__}.__str__ failed>"
        tb = getattr(self, "remote_traceback", "")
        return f"{text}\n\nRemote traceback:\n{tb}" if tb else text

    def __reduce__(self: Any) -> Any:
        # The class is made at run time, so it cannot be pickled by name: rebuild it from the original.
        return remote_error, (self.__cause__, getattr(self, "_remote_text", ""), self.type_name, self.remote_traceback)

    short = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    name = f"RemoteError({short})"
    namespace = {"__new__": __new__, "__init__": __init__, "__str__": __str__, "__reduce__": __reduce__,
                 "__module__": RemoteError.__module__, "__qualname__": name,
                 "__doc__": f"{cls.__qualname__} raised in a worker."}
    try:
        return type(name, (cls, RemoteError), namespace)
    except BaseException:  # final types, metaclass conflicts, a refusing __init_subclass__, layout conflicts
        log.debug("%s cannot be combined with RemoteError", short, exc_info=True)
        return None


def _rebuild(dual: type[RemoteError], original: Exception) -> RemoteError:
    """An instance of ``dual`` made the way unpickling makes ``original``: ``cls(*args)``, then its state."""
    recipe = original.__reduce_ex__(2)
    if not (isinstance(recipe, tuple) and 2 <= len(recipe) <= 3 and recipe[0] is type(original)):
        raise TypeError(f"{type(original).__qualname__} pickles with a custom recipe")
    err = dual(*recipe[1])
    state = recipe[2] if len(recipe) > 2 else None
    if state:
        setstate = getattr(err, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            err.__dict__.update(state)
    return err
