"""laneway.pool (see its issue)."""

__all__: list[str] = []
