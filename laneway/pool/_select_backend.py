"""Which backend a pool runs on: a name users pass (``"zmq"``, ``"ray"``) or a :class:`Backend` they built."""

from __future__ import annotations

from typing import Any

from laneway.errors import ConfigError
from laneway.pool._backend import Backend


def make_backend(spec: str | Backend, **options: Any) -> Backend:
    """The backend named ``spec`` (``"zmq"`` or ``"ray"``) built with ``options``, or ``spec`` itself.

    A backend's sub-package is imported only here, so ``ray`` is imported only when asked for.

    Example:
        >>> make_backend("zmq").name
        'zmq'
    """
    if isinstance(spec, Backend):
        if options:
            raise ConfigError(f"backend options {sorted(options)} given with a backend instance; pass them to it")
        return spec
    if spec == "zmq":
        from laneway.pool.zmq import ZmqBackend

        return ZmqBackend(**options)
    if spec == "ray":
        from laneway.pool.ray import RayBackend

        return RayBackend(**options)
    raise ConfigError(f"backend must be one of ['ray', 'zmq'] or a Backend instance, got {spec!r}")
