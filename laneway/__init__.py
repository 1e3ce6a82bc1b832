"""laneway: an actor-model runtime for orchestrating AI agents and their tools.

Start with :class:`Orchestrator`; everything else hangs off it.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="demo") as orch:
    ...     pass
"""

import logging

from laneway import errors
from laneway.actors import Orchestrator

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["Orchestrator", "errors"]
__version__ = "0.1.0"
