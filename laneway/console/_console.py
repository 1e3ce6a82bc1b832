"""The console object: ``orch.console.start(port=...)`` serves the page; ``stop()`` ends it."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

import attrs

from laneway.console._security import Guard, is_loopback, new_token
from laneway.errors import ConfigError, ConsoleError

if TYPE_CHECKING:
    from laneway.console._target import ConsoleTarget

log = logging.getLogger(__name__)

DEFAULT_PORT = 8642
#: Fastest sampling allowed: the console must stay cheap while a page is open.
MIN_INTERVAL_S = 0.2


@attrs.frozen
class ConsoleStatistics:
    """Counters of a :class:`Console`.

    Attributes:
        running: whether it serves now.
        url: where (without the token), "" when stopped.
        clients: live pages connected now.
        snapshots: readings of the system taken so far.
        operations: operations run (succeeded or failed).
        refused: requests refused by the security checks.
    """

    running: bool
    url: str
    clients: int
    snapshots: int
    operations: int
    refused: int


class Console:
    """A web console for one system: live views of lanes, workers, agents, workflows, dead letters,
    alerts and events, and operations on them. Reach it as ``orch.console``.

    The server stack (aiohttp) is the ``laneway[console]`` extra; it is imported
    only by :meth:`start`. Sampling runs on a monitor actor at ``interval_s`` on
    the system's clock and only reads the system while a page is connected.

    Args:
        target: the system (an :class:`~laneway.Orchestrator`).
        interval_s: seconds between live updates (>= 0.2).

    Example:
        >>> with Orchestrator() as orch:                                    # doctest: +SKIP
        ...     console = orch.console.start(port=8642)
        ...     print(console.url)                  # http://127.0.0.1:8642/
        ...     run_the_work(orch)
    """

    def __init__(self, target: ConsoleTarget, *, interval_s: float = 0.5) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) or interval_s < MIN_INTERVAL_S:
            raise ConfigError(f"console interval_s must be a number >= {MIN_INTERVAL_S}, got {interval_s!r}")
        self._target = target
        self.interval_s = float(interval_s)
        self._lock = threading.Lock()
        self._server: Any = None
        self._token: str | None = None
        self._host = ""
        self._port = 0
        target.on_shutdown("console", self._on_shutdown)

    # lifecycle ------------------------------------------------------------------------------

    def start(self, port: int = DEFAULT_PORT, *, host: str = "127.0.0.1", token: str | None = None,
              timeout: float = 10.0) -> Console:
        """Serve the console on ``host:port`` (port 0 picks a free one); returns self.

        Bound to a loopback address with no token, the page may view and operate
        without one (only the machine's own users reach it). On any other
        address a token is required for every request: give one, or one is
        generated and printed with the URL to open (``http://host:port/#token=...``).

        Args:
            port: TCP port, 0..65535.
            host: the address to bind (default loopback only).
            token: the token requests must carry (at least 16 characters); None: none on loopback,
                a generated one elsewhere.
            timeout: seconds to wait for the server to listen.

        Raises:
            ConfigError: a bad port, host or token.
            ConsoleError: the console is already running, the extra is not installed, or the address
                cannot be bound.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"console port must be an int in 0..65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"console host must be a non-empty address, got {host!r}")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigError("console token must be a string of at least 16 characters (or None to generate one)")
        try:
            from laneway.console._server import ConsoleServer
        except ImportError as exc:
            raise ConsoleError(
                f"the web console needs the console extra: pip install 'laneway[console]' ({exc})"
            ) from exc
        loopback = is_loopback(host)
        generated = token is None and not loopback
        if generated:
            token = new_token()
        with self._lock:
            if self._server is not None:
                raise ConsoleError(f"the console of {self._target.name} already serves at {self.url}")
            server = ConsoleServer(self._target, Guard(loopback, token), interval_s=self.interval_s)
            self._port = server.start(host, port, timeout)
            self._server, self._token, self._host = server, token, host
        log.info("laneway console of %s at %s", self._target.name, self._plain_url())
        if generated:
            print(f"laneway console (token generated; keep it secret): {self.url}", file=sys.stderr, flush=True)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (pages lose their connection); a no-op when not running. Also done at shutdown."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop(timeout)

    def _on_shutdown(self, timeout: float) -> None:
        self.stop(timeout)

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # where and how ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port it listens on (the chosen one when started with port 0)."""
        return self._port

    @property
    def token(self) -> str | None:
        """The token requests must carry, or None (loopback without a token)."""
        return self._token

    def _plain_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"http://{host}:{self._port}/"

    @property
    def url(self) -> str:
        """The page's address, with ``#token=...`` when a token is needed ("" when not running).

        The token rides in the fragment, which browsers never send to a server or put in logs.
        """
        if self._server is None:
            return ""
        return self._plain_url() + (f"#token={self._token}" if self._token else "")

    def statistics(self) -> ConsoleStatistics:
        server = self._server
        if server is None:
            return ConsoleStatistics(False, "", 0, 0, 0, 0)
        return ConsoleStatistics(True, self._plain_url(), server.clients, server.sampler.snapshots,
                                 server.operations, server.refused)
