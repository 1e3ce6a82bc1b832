"""The Ray pool backend: workers are Ray actors (``Pool(orch, backend="ray")``, needs ``laneway[ray]``).

``ray`` itself is imported only when a backend starts, so importing this package is cheap.
"""

from laneway.pool.ray._backend import RayBackend

__all__ = ["RayBackend"]
