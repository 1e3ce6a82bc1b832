"""laneway.lanes (see its issue)."""

__all__: list[str] = []
