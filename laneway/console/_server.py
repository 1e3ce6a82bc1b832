"""The console's HTTP server: aiohttp on its own event-loop thread, server-sent events for live updates.

This module is the only one that imports aiohttp (the ``console`` extra); the
console imports it in :meth:`Console.start`, so ``import laneway`` and the
orchestrator never load the server stack.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.resources
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from laneway.console._encoding import SnapshotEncoder, dumps as _dumps
from laneway.console._ops import OPERATIONS, run_operation
from laneway.console._sampler import Sampler
from laneway.console._security import Guard
from laneway.core import LoopThread
from laneway.errors import ConsoleError, ConsoleOperationError, LanewayError
from laneway.observe import Monitor, MonitorSample

if TYPE_CHECKING:
    from laneway.console._target import ConsoleTarget

log = logging.getLogger(__name__)

#: Seconds an operation or a one-off read may take before the request fails (the subsystems' own
#: calls time out sooner; this bounds the request whatever happens).
CALL_TIMEOUT_S = 30.0
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S = 15.0
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
}


class ConsoleServer:
    """Serves one system's console; :meth:`start` and :meth:`stop` are called by :class:`Console`."""

    def __init__(self, target: ConsoleTarget, guard: Guard, *, interval_s: float) -> None:
        self._target = target
        self._guard = guard
        self._interval_s = interval_s
        self._page = importlib.resources.files("laneway.console").joinpath("page.html").read_bytes()
        self._thread = LoopThread(f"console-{target.name}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._calls = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="console-call")
        self._monitor: Monitor | None = None
        self.sampler: Sampler = Sampler(target, self._active_alerts)
        self.clients = 0
        self.operations = 0
        self.refused = 0
        self._encoder = SnapshotEncoder()  # the monitor's thread only
        # Loop-thread state: the newest snapshot (number, whole JSON, JSON of what changed since
        # number - 1, when on the system's clock) and the event its waiters sleep on.
        self._latest: tuple[int, str, str, float] = (0, "", "", 0.0)
        self._changed: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None

    # lifecycle (caller's thread) ----------------------------------------------------------

    def start(self, host: str, port: int, timeout: float) -> int:
        """Listen on ``host:port``; returns the port bound."""
        self._loop = loop = self._thread.get()
        try:
            bound = asyncio.run_coroutine_threadsafe(self._listen(host, port), loop).result(timeout)
        except OSError as exc:
            self._teardown(timeout)
            raise ConsoleError(f"the console cannot listen on {host}:{port}: {exc}") from exc
        except concurrent.futures.TimeoutError as exc:
            self._teardown(timeout)
            raise ConsoleError(f"the console did not start listening on {host}:{port} within {timeout}s") from exc
        self._monitor = Monitor(self._target, interval_s=self._interval_s, on_sample=self._on_sample,
                                source=self.sampler.monitor_view, name=f"console-monitor-{id(self):x}")  # a restarted console gets a new one
        return bound

    def stop(self, timeout: float) -> None:
        if self._monitor is not None:
            self._monitor.stop(timeout)
            self._monitor = None
        loop = self._loop
        if loop is not None and self._runner is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._close(timeout), loop).result(timeout + 1)
            except Exception:
                log.warning("console: the server did not close within %ss", timeout, exc_info=True)
        self._teardown(timeout)

    def _teardown(self, timeout: float) -> None:
        self.sampler.close()
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._thread.close(timeout)

    async def _listen(self, host: str, port: int) -> int:
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._guard_api], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_get("/api/operations", self._operations)
        app.router.add_get("/api/workflows/{workflow_id}/history", self._history)
        app.router.add_post("/api/op/{op}", self._operation)
        self._runner = runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or ()
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def _close(self, timeout: float) -> None:
        assert self._closing is not None and self._runner is not None
        self._closing.set()
        await asyncio.wait_for(self._runner.cleanup(), timeout)

    # sampling (the monitor's thread) -----------------------------------------------------------

    def _active_alerts(self) -> list[Any]:
        monitor = self._monitor
        return monitor.active_alerts() if monitor is not None else []

    def _on_sample(self, sample: MonitorSample) -> None:
        # Nobody watching: read nothing more than the monitor already did.
        if self.clients == 0 or self._loop is None:
            return
        at = self._target.clock.now()
        whole, delta = self._encoder.encode(self.sampler.snapshot(tick=True))
        self._loop.call_soon_threadsafe(self._publish, whole, delta, at)

    def _publish(self, whole: str, delta: str, at: float) -> None:
        self._latest = (self._latest[0] + 1, whole, delta, at)
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()

    # handlers (the loop's thread) ---------------------------------------------------------------

    @web.middleware
    async def _guard_api(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            refusal = self._guard.check(request.method, request.scheme, request.headers)
            if refusal is not None:
                self.refused += 1
                log.warning("console refused %s %s from %s: %s", request.method, request.path, request.remote,
                            refusal.reason)
                return web.json_response({"error": refusal.reason}, status=refusal.status, headers=_SECURITY_HEADERS)
        response = await handler(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    async def _call(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._calls, fn, *args), CALL_TIMEOUT_S)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _state(self, request: web.Request) -> web.Response:
        snap = await self._call(self.sampler.snapshot)
        return web.Response(text=_dumps(snap), content_type="application/json")

    async def _operations(self, request: web.Request) -> web.Response:
        return web.json_response({name: {"args": {k: v.__name__ for k, v in spec.args.items()}, "doc": spec.doc}
                                  for name, spec in OPERATIONS.items()})

    async def _history(self, request: web.Request) -> web.Response:
        engine = self._target.started_workflows()
        if engine is None:
            return web.json_response({"error": "workflows are not started"}, status=404)
        wid = request.match_info["workflow_id"]
        try:
            versions = await self._call(engine.history, wid)
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response([
            {"version": v.version, "ts": v.ts, "state": str(v.state.value), "note": v.note,
             "tasks": {k: str(s.value) for k, s in v.tasks.items()}}
            for v in versions
        ])

    async def _operation(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        try:
            args = await request.json()
        except ValueError:
            return web.json_response({"error": "the body must be a JSON object of the operation's arguments"},
                                     status=400)
        self.operations += 1
        try:
            result = await self._call(run_operation, self._target, op, args)
        except ConsoleOperationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except LanewayError as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=409)
        except asyncio.TimeoutError:
            return web.json_response({"error": f"operation {op} did not finish within {CALL_TIMEOUT_S}s"},
                                     status=504)
        return web.json_response({"ok": True, "op": op, "result": result})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        prefix = request.query.get("events", "")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_SECURITY_HEADERS})
        await response.prepare(request)
        assert self._closing is not None
        self.clients += 1
        unwatch = self.sampler.watch(prefix)
        try:
            # The first picture at once, then the monitor's ticks. Pages that open (or change their
            # filter) in quick succession share the newest picture instead of each reading the system.
            number, first, _, at = self._latest
            # held: the tick whose picture the page holds exactly (None after a one-off read), so
            # the next tick may send only what changed since.
            held: int | None = number
            if not first or self._target.clock.now() - at > self._interval_s:
                first, held = _dumps(await self._call(self.sampler.snapshot)), None
            await response.write(f"event: snapshot\ndata: {first}\n\n".encode())
            seen_snapshot, seen_event = (self._latest[0] if held is None else held), 0
            while not self._closing.is_set():
                seen_event, events = self.sampler.events_since(seen_event, prefix)
                if events:
                    await response.write(f"event: events\ndata: {_dumps(events)}\n\n".encode())
                number, whole, delta, _ = self._latest
                if number != seen_snapshot and whole:
                    if held is not None and number == held + 1:
                        await response.write(f"event: delta\ndata: {delta}\n\n".encode())
                    else:
                        await response.write(f"event: snapshot\ndata: {whole}\n\n".encode())
                    seen_snapshot = held = number
                assert self._changed is not None
                waiters = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(self._closing.wait())]
                done, pending = await asyncio.wait(waiters, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                for w in pending:
                    w.cancel()
                if not done:
                    await response.write(b": keep-alive\n\n")
        except ConnectionError:
            pass  # the page went away
        finally:
            unwatch()
            self.clients -= 1
        return response

