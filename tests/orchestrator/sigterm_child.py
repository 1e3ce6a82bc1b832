"""A program that runs inside ``with Orchestrator(...)`` until a test sends it SIGTERM.

argv: store path, log path, mode ("queued": durable commands wait in a paused lane;
"stuck": a running command ignores its cancellation, so shutdown takes long).
It prints the pool's workers' pids and endpoint, then "ready", and waits.
"""

from __future__ import annotations

import json
import sys
import threading

import tests.lanes.durable_tools  # noqa: F401  - registers durable_echo by name, for the next process
from laneway import Orchestrator
from laneway.lanes import LaneConfig, ToolRegistry, default_registry


def _square(x: int) -> int:
    return x * x


if __name__ == "__main__":
    store, log, mode = sys.argv[1:4]
    with Orchestrator(name="sigterm", store=store, shutdown_timeout=30 if mode == "stuck" else 2) as orch:
        orch.events.add_listener(lambda e: print("signal", e.data["signal"], flush=True), "system.signal")
        pool = orch.start_pool(workers=2)
        assert pool.wait_ready(2, timeout=60) and pool.submit(_square, 7).result(timeout=60) == 49
        tools = ToolRegistry(parent=default_registry)
        release = threading.Event()
        tools.register(lambda: release.wait(600), name="stuck")
        lanes = orch.start_lanes(lanes=[LaneConfig("work", priority=1, max_concurrency=1)], tools=tools)
        if mode == "queued":
            lanes.pause("work")
            for i in range(5):
                lanes.submit("work", "durable_echo", {"tag": f"t{i}", "log": log})
        else:
            lanes.submit("work", "stuck", {})
        print(json.dumps({"pids": [w.pid for w in pool.workers()], "endpoint": pool.endpoint}), flush=True)
        print("ready", flush=True)
        threading.Event().wait()  # until a signal unwinds the block
