"""laneway.workflow (see its issue)."""

__all__: list[str] = []
