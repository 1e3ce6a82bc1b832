"""laneway.store (see its issue)."""

__all__: list[str] = []
