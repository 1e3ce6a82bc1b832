"""The live terminal dashboard: lanes, workers, agents, progress with ETA, alerts.

A :class:`Dashboard` rides on a :class:`~laneway.observe.Monitor`: every poll
hands it a sample, which it shows as a rich ``Live`` screen on a terminal or
as one plain log line on anything else (CI logs, pipes, files), so output
stays readable where cursor movement is not.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from laneway.errors import ConfigError
from laneway.observe._alerts import Alert, AlertKind, AlertLevel
from laneway.observe._metric_records import Counter, Scope
from laneway.observe._monitor import Monitor, MonitorSample

if TYPE_CHECKING:
    from laneway.observe._observed import Observed

log = logging.getLogger(__name__)

_BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}
_LEVEL_STYLE = {AlertLevel.WARNING: "yellow", AlertLevel.CRITICAL: "bold red"}

#: The ETA comes from the rate over this many recent seconds (like rich.progress's
#: speed estimate): the average since the start lags when the rate changes.
ETA_WINDOW_S = 10.0

#: Below this width the screen stacks its tables and drops the less telling columns.
WIDE = 120

# (column, wanted on a narrow screen)
_LANE_COLUMNS = (("lane", True), ("prio", False), ("pending", True), ("active", True), ("max", False),
                 ("done", True), ("failed", True))  # fmt: skip
_WORKER_COLUMNS = (("worker", True), ("pid", True), ("state", True), ("RSS MB", True), ("CPU %", False),
                   ("tasks", True))  # fmt: skip
_AGENT_COLUMNS = (("agent", True), ("role", True), ("busy", True), ("done", True), ("failed", True),
                  ("breaker", True))  # fmt: skip


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def _table(title: str, columns: tuple[str, ...], *, left: int) -> Table:
    """A compact table whose first ``left`` columns are text (left-aligned) and the rest numbers.

    Cells never shrink to an ellipsis: a narrow screen drops columns instead.
    """
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  collapse_padding=True)  # fmt: skip
    for i, col in enumerate(columns):
        justify = "left" if i < left or col in ("state", "breaker") else "right"
        table.add_column(col, justify=justify, no_wrap=True)
    return table


def _pick(columns: tuple[tuple[str, bool], ...], values: tuple[Any, ...], wide: bool) -> tuple[Any, ...]:
    """The values of the columns shown at this width."""
    return tuple(v for (_, narrow), v in zip(columns, values) if wide or narrow)


class Dashboard:
    """Shows what the system does while it runs; use it as a context manager.

    Args:
        orch: the orchestrator to show.
        title: the heading.
        total: units of work expected (for the progress bar and ETA); settable later.
        interval_s: seconds between refreshes (on ``orch.clock``).
        stream: where to write (default stdout).
        live: force the rich live screen (True) or plain lines (False); default: live only on a terminal.
        monitor: an existing monitor to ride on; default: one of its own.

    Example:
        >>> with Dashboard(orch, title="indexing", total=len(files)) as dash:   # doctest: +SKIP
        ...     for f in files:
        ...         index(f)
        ...         dash.advance()
    """

    def __init__(
        self,
        orch: Observed,
        *,
        title: str = "laneway",
        total: int | None = None,
        interval_s: float = 0.5,
        stream: TextIO | None = None,
        live: bool | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self._orch = orch
        self.title = title
        self._lock = threading.Lock()
        self._total = self._check_total(total)
        self._done = 0
        self._status = ""
        self._started_at = orch.clock.now()
        # (clock reading, done) at each advance within the last ETA_WINDOW_S (and one before).
        self._rate_samples: collections.deque[tuple[float, int]] = collections.deque([(self._started_at, 0)])
        self._sample: MonitorSample | None = None
        self._stream = stream if stream is not None else sys.stdout
        self._console = Console(file=self._stream, force_terminal=live if live else None, soft_wrap=False)
        self.live_mode = self._console.is_terminal if live is None else live
        self._live: Live | None = None
        self._showing = False
        self._closed = False
        self._own_monitor = monitor is None
        if monitor is None:
            name = f"dashboard-{id(self):x}"
            monitor = Monitor(orch, interval_s=interval_s, name=name, on_sample=self._on_sample)
        else:
            monitor.add_sample_callback(self._on_sample)
        self._monitor = monitor

    @staticmethod
    def _check_total(total: int | None) -> int | None:
        if total is not None and (not isinstance(total, int) or total < 0):
            raise ConfigError(f"Dashboard total must be None or an int >= 0, got {total!r}")
        return total

    # progress -----------------------------------------------------------------

    def set_total(self, total: int | None) -> None:
        """Change how many units of work are expected."""
        total = self._check_total(total)
        with self._lock:
            self._total = total

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done (thread-safe)."""
        now = self._orch.clock.now()
        with self._lock:
            self._done += n
            samples = self._rate_samples
            samples.append((now, self._done))
            while len(samples) > 2 and samples[1][0] <= now - ETA_WINDOW_S:
                samples.popleft()

    def set_status(self, text: str) -> None:
        """A short phrase shown next to the progress (``"analyzing"``, ``"paused"``)."""
        with self._lock:
            self._status = text

    def progress(self) -> tuple[int, int | None, float, float | None]:
        """``(done, total, elapsed_s, eta_s)``; ``done`` never exceeds ``total``.

        The ETA divides the work left by the rate over the last
        :data:`ETA_WINDOW_S` seconds up to now (a stall raises it at once);
        None while unknown.
        """
        now = self._orch.clock.now()
        with self._lock:
            done, total = self._done, self._total
            first_t, first_done = self._rate_samples[0]
        if total is not None:
            done = min(done, total)
        elapsed = max(0.0, now - self._started_at)
        eta = None
        if total is not None and done >= total:
            eta = 0.0
        elif total is not None and done > first_done and now > first_t:
            eta = (total - done) / ((done - first_done) / (now - first_t))
        return done, total, elapsed, eta

    # rendering ----------------------------------------------------------------

    def _on_sample(self, sample: MonitorSample) -> None:
        # Monitor actor's thread: one render per poll.
        self._sample = sample
        if not self._showing or self._closed:
            return
        if self.live_mode:
            if self._live is not None:
                self._live.update(self.render(), refresh=True)
        else:
            self._print_line()

    def _print_line(self) -> None:
        self._console.print(self.line(), markup=False, highlight=False, crop=False, overflow="ignore")

    def line(self) -> str:
        """The plain-mode line for the latest sample."""
        done, total, elapsed, eta = self.progress()
        parts = [f"[{elapsed:7.1f}s] {self.title}"]
        if total:
            parts.append(f"{done}/{total} ({100 * done / total:.0f}%) eta {_duration(eta)}")
        else:
            parts.append(f"{done} done")
        if self._status:
            parts.append(self._status)
        sample = self._sample
        if sample is not None:
            view = sample.view
            parts.append(f"pending {view.total_pending} active {view.total_active}")
            busy = [ln for ln in view.lanes if ln.pending or ln.active]
            if busy:
                parts.append("lanes " + " ".join(f"{ln.name}={ln.pending}/{ln.active}" for ln in busy))
            if view.workers:
                alive = sum(1 for w in view.workers if w.pid)
                rss = sum(w.rss for w in view.workers) / 2**20
                parts.append(f"workers {alive}/{len(view.workers)} rss {rss:.0f}MB")
            opened = [a.agent_id for a in view.agents if a.breaker != "closed"]
            if opened:
                parts.append("breakers " + ",".join(opened))
            for alert in self._monitor.active_alerts():
                parts.append(f"{alert.level.name} {alert.subject}")
        parts.extend(self._counts())
        return " | ".join(parts)

    def _counts(self) -> list[str]:
        metrics = self._orch.started_metrics()
        if metrics is None:
            return []
        snap = metrics.snapshot()
        retries = sum(snap.total(s, Counter.RETRIED) for s in Scope)
        restarts = sum(snap.restarts.values())
        return [f"retries {retries} restarts {restarts} breaker trips {snap.breaker_opens}"]

    def render(self) -> RenderableType:
        """The live screen for the latest sample, laid out for the width it is drawn at."""
        return _Screen(self)

    def _render(self, width: int) -> RenderableType:
        done, total, elapsed, eta = self.progress()
        elapsed_text = f"  {_duration(elapsed)} elapsed  "
        head = Text.assemble((self.title, "bold"), elapsed_text, (self._status, "cyan"))
        rows: list[RenderableType] = [head]
        if total:
            bar = Table.grid(padding=(0, 1))
            bar.add_row(
                ProgressBar(total=total, completed=done, width=40 if width >= 80 else 20),
                f"{done}/{total} {100 * done / total:3.0f}%",
                f"ETA {_duration(eta)}",
            )
            rows.append(bar)
        sample = self._sample
        if sample is not None:
            rows.extend(self._tables(sample, width))
            for alert in self._monitor.active_alerts():
                rows.append(Text(f"! {_alert_text(alert, sample)}", style=_LEVEL_STYLE.get(alert.level, "")))
        rows.extend(Text(c, style="dim") for c in self._counts())
        return Group(*rows)

    def _tables(self, sample: MonitorSample, width: int) -> list[RenderableType]:
        view = sample.view
        wide = width >= WIDE
        lanes = _table("lanes", _pick(_LANE_COLUMNS, tuple(c for c, _ in _LANE_COLUMNS), wide), left=1)
        for ln in view.lanes:
            values = (ln.name, ln.priority, ln.pending, ln.active, ln.max_concurrent, ln.completed, ln.failed)
            lanes.add_row(*map(str, _pick(_LANE_COLUMNS, values, wide)))
        workers = _table("workers", _pick(_WORKER_COLUMNS, tuple(c for c, _ in _WORKER_COLUMNS), wide), left=1)
        for w in view.workers:
            values = (w.name, w.pid or "-", w.state, f"{w.rss / 2**20:.0f}", f"{w.cpu:.0f}", w.tasks_done)
            workers.add_row(*map(str, _pick(_WORKER_COLUMNS, values, wide)))
        agents = _table("agents", tuple(c for c, _ in _AGENT_COLUMNS), left=2)
        for a in view.agents:
            agents.add_row(
                a.agent_id, a.role, f"{a.in_flight}/{a.max_concurrent}", str(a.completed), str(a.failed),
                Text(a.breaker, style=_BREAKER_STYLE.get(a.breaker, "")),
            )  # fmt: skip
        grid = Table.grid(padding=(0, 2 if wide else 1))
        if wide:
            # Two columns keep the screen short enough for a laptop terminal.
            grid.add_row(lanes, Group(workers, agents) if view.agents else workers)
            return [grid]
        # 80 columns: lanes beside workers (narrow columns), the agents under them.
        grid.add_row(lanes, workers)
        return [grid, agents] if view.agents else [grid]

    # lifecycle ----------------------------------------------------------------

    def start(self) -> Dashboard:
        """Begin showing (the live screen takes over the terminal until :meth:`stop`)."""
        if self.live_mode and self._live is None:
            self._live = Live(self.render(), console=self._console, auto_refresh=False, transient=False)
            self._live.start()
        self._showing = True
        return self

    def stop(self) -> None:
        """Show a last frame and release the terminal; stops the dashboard's own monitor."""
        if self._closed:
            return
        try:
            self._monitor.check()  # the last frame (or line), with the final numbers
        except Exception:
            log.debug("last dashboard poll failed", exc_info=True)
            if self._showing and not self.live_mode:
                self._print_line()
        self._closed = True
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._own_monitor:
            self._monitor.stop()

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Screen:
    """Renders a dashboard at the width of whatever draws it (a Live screen, a recording console)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._dashboard._render(options.max_width)


def _alert_text(alert: Alert, sample: MonitorSample) -> str:
    """An active alert as of this sample: its level and threshold, with the reading the tables show now.

    An alert is raised once, when its level changes; the reading in its message is
    from that moment, so a queue that has since drained would contradict the
    table beside it.
    """
    view = sample.view
    now: float | None = None
    if alert.kind is AlertKind.QUEUE_DEPTH:
        if alert.subject == "pool":
            now = view.pool_queued
        elif alert.subject.startswith("lane:"):
            name = alert.subject[len("lane:") :]
            now = next((ln.pending for ln in view.lanes if ln.name == name), 0)
    if now is None:
        return alert.message
    return f"{alert.subject}: {alert.level.name.lower()}, {now:g} pending now (threshold {alert.threshold:g})"
