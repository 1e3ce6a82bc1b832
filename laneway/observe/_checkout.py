"""Where the source checkout's ``examples/`` and ``benchmarks/`` are (for ``laneway demo`` and ``bench``)."""

from __future__ import annotations

import os
from pathlib import Path


def checkout_dir(name: str, env_var: str) -> Path:
    """``$env_var`` if set, else the folder ``name`` next to the ``laneway`` package (an editable install),
    else the one in the current directory (a plain install run from the checkout)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    import laneway

    beside = Path(laneway.__file__).resolve().parent.parent / name
    here = Path.cwd() / name
    return here if not beside.is_dir() and here.is_dir() else beside
