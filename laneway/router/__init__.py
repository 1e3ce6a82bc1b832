"""laneway.router (see its issue)."""

__all__: list[str] = []
