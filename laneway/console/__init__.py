"""The web console: see and steer a running system in a browser.

``orch.console.start(port=8642)`` serves a page with live views (lanes with
their latency percentiles and throughput over time, pool workers, agents and
their breakers, workflows drawn as DAGs with their versions, dead letters with
their tracebacks, alerts, and the event stream with a key filter) and
operations (pause/resume a lane, set its max concurrency, cancel a command,
resubmit or purge a dead letter, pause/resume/cancel/roll back a workflow,
trip/reset a breaker). Each operation is a POST that calls the owning
subsystem's public API and is published as a ``console.operation`` event.

The server stack is the ``laneway[console]`` extra (aiohttp), loaded only when
the console starts; live updates are server-sent events; the page is one HTML
file with no build step.

Security: it binds ``127.0.0.1`` by default, where the page works without a
token. Any other address needs a token for every request (given, or generated
and printed); operations also need the ``X-Laneway-Token`` header and a
same-origin request. See :mod:`laneway.console._security` for the rules.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="doc") as orch:                      # doctest: +SKIP
    ...     console = orch.console.start(port=0)
    ...     console.url.startswith("http://127.0.0.1:")
    True
"""

from laneway.console._console import DEFAULT_PORT, Console, ConsoleStatistics
from laneway.console._ops import OPERATIONS, OperationSpec, run_operation
from laneway.console._security import TOKEN_HEADER, is_loopback
from laneway.console._target import ConsoleTarget

__all__ = [
    "DEFAULT_PORT",
    "OPERATIONS",
    "TOKEN_HEADER",
    "Console",
    "ConsoleStatistics",
    "ConsoleTarget",
    "OperationSpec",
    "is_loopback",
    "run_operation",
]
