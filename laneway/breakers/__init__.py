"""laneway.breakers (see its issue)."""

__all__: list[str] = []
