"""The code swarm: α-role agents analyze the Python standard library's source tree.

    laneway demo                       # the whole stdlib, live dashboard on a terminal
    laneway demo --chaos               # SIGKILL pool workers during the run: same result
    laneway demo --chaos --console     # and watch it in the browser at http://127.0.0.1:8642/
    laneway demo --path DIR --files 200 --out report.json

A DAG workflow (``laneway.workflow``) routes each step to agents by role and
capability (``laneway.router``, every agent behind a circuit breaker):

    list ──> read-00 ──> analyze-00 ──> validate-00 ──┐
         ├─> read-01 ──> analyze-01 ──> validate-01 ──┼──> aggregate
         └─> ...                                      ┘
    α1 observers    α5 analyzers     α3 validators      α8 aggregator

Observers list and read the files (threads: I/O). Analyzers send one command
per file to the ``prompt`` lane (``laneway.lanes``); its tool is ``cpu_bound``,
so it runs ``ast`` on the process pool (``laneway.pool``, real worker
processes over ZeroMQ). Validators check every result against what was read;
the aggregator builds the report. Control commands (pause, resume, cancel)
go through the ``control`` lane, which the scheduler serves before the
hundreds of queued prompt commands. With ``--chaos``, worker processes are
SIGKILLed during the run; the pool, lane and workflow retries put every file
through anyway, so the result (and its digest) is identical to a calm run.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import signal
import sys
import sysconfig
import threading
import time
from typing import Any

import attrs
import cloudpickle

from laneway import Orchestrator
from laneway.actors import Backoff, OneForOne
from laneway.cli._args import port, positive
from laneway.cli._waiting import sleep_until
from laneway.cli.swarm import code_analysis as ca
from laneway.lanes import LaneConfig, Priority, RetryPolicy
from laneway.observe import AlertThresholds, Dashboard, Monitor, Scope, Threshold
from laneway.observe import Counter as C
from laneway.router import AlphaRole
from laneway.workflow import TaskDefinition, WorkflowState

# The analysis functions travel to worker processes by value: a worker started by
# hand on another host may run another laneway version (or none of this module).
cloudpickle.register_pickle_by_value(ca)


@attrs.frozen
class SwarmConfig:
    """One run's settings (see ``--help``)."""

    root: str
    files: int | None = None
    shards: int = 16
    workers: int = 2
    chaos: bool = False
    chaos_interval_s: float = 2.0
    seed: int = 7
    live: bool | None = None
    console_port: int | None = None
    console_host: str = "127.0.0.1"
    console_linger_s: float = 0.0


# --- agents --------------------------------------------------------------------


class FilesDone:
    """Counts each file once on the dashboard, however often a retried step analyzes it again."""

    def __init__(self, dash: Dashboard) -> None:
        self._dash = dash
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def add(self, paths: list[str]) -> None:
        with self._lock:
            new = [p for p in paths if p not in self._seen]
            self._seen.update(new)
        if new:
            self._dash.advance(len(new))

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._seen)


def _count_done(done: FilesDone, path: str, future: Any) -> None:
    """A done-callback: count the file once its command succeeded."""
    if not future.cancelled() and future.exception() is None:
        done.add([path])


def register_agents(orch: Orchestrator, cfg: SwarmConfig, dash: Dashboard, done: FilesDone) -> None:
    """Observers, analyzers, validators and an aggregator; the tools they call through lanes."""
    lanes = orch.lanes
    lanes.tools.register(
        ca.analyze_source, name="code.analyze", cpu_bound=True, preemptible=True,
        description="Parse one Python file with ast: functions, classes, complexity",
    )  # fmt: skip
    engine = orch.workflows
    for verb in ("pause", "resume", "cancel"):
        lanes.tools.register(
            getattr(engine, verb), name=f"workflow.{verb}", category="control",
            parameters={"workflow_id": str}, description=f"{verb.capitalize()} a workflow",
        )  # fmt: skip

    def observe(payload: Any, ctx: Any) -> Any:
        if payload["step"] == "list":
            return ca.list_python_files(cfg.root, cfg.files)
        files = ctx.dependency_results["list"]
        return ca.read_sources(cfg.root, ca.part(files, payload["shard"], cfg.shards))

    def analyze(payload: Any, ctx: Any) -> list[dict[str, Any]]:
        read = ctx.dependency_results[f"read-{payload['shard']:02d}"]
        handles = []
        for item in read:
            if item["text"] is not None:
                params = {"path": item["path"], "text": item["text"], "sha256": item["sha256"]}
                handle = lanes.submit("prompt", "code.analyze", params, caller=ctx.task_id, preemptible=True)
                handle.future.add_done_callback(functools.partial(_count_done, done, item["path"]))
                handles.append(handle)
        ctx.cancel_token.add_callback(lambda reason: [h.cancel(reason) for h in handles])
        unreadable = [i for i in read if i["text"] is None]
        done.add([i["path"] for i in unreadable])
        return ca.analyze_batch(unreadable) + [h.result(timeout=600) for h in handles]

    def validate(payload: Any, ctx: Any) -> dict[str, Any]:
        k = payload["shard"]
        deps = ctx.dependency_results
        return ca.validate_batch(deps[f"analyze-{k:02d}"], deps[f"read-{k:02d}"])

    def aggregate(payload: Any, ctx: Any) -> dict[str, Any]:
        results, problems = [], []
        for _, checked in sorted(ctx.dependency_results.items()):
            results.extend(checked["results"])
            problems.extend(checked["problems"])
        return ca.aggregate(results, problems, payload["label"])

    agents = [
        ("observer-1", AlphaRole.OBSERVER, {"fs.list", "fs.read"}, 2, observe),
        ("observer-2", AlphaRole.OBSERVER, {"fs.read"}, 2, observe),
        ("analyzer-1", AlphaRole.ANALYZER, {"code.analyze"}, 2, analyze),
        ("analyzer-2", AlphaRole.ANALYZER, {"code.analyze"}, 2, analyze),
        ("validator-1", AlphaRole.VALIDATOR, {"code.validate"}, 2, validate),
        ("validator-2", AlphaRole.VALIDATOR, {"code.validate"}, 2, validate),
        ("aggregator", AlphaRole.AGGREGATOR, {"report.aggregate"}, 1, aggregate),
    ]
    for agent_id, role, caps, limit, handler in agents:
        orch.register_agent(agent_id, role, caps, limit, handler)


def build_tasks(cfg: SwarmConfig, label: str) -> list[TaskDefinition]:
    """The DAG: list, then per shard read -> analyze -> validate, then aggregate."""
    retry = RetryPolicy.fixed(3, 0.05)

    def step(task_id: str, role: str, capability: str, deps: list[str], payload: dict[str, Any]) -> TaskDefinition:
        return TaskDefinition(task_id, agent_type=role, capabilities=(capability,), dependencies=deps,
                              payload=payload, retry_policy=retry)  # fmt: skip

    tasks = [step("list", "observer", "fs.list", [], {"step": "list"})]
    for k in range(cfg.shards):
        read, analyze, validate = f"read-{k:02d}", f"analyze-{k:02d}", f"validate-{k:02d}"
        tasks += [
            step(read, "observer", "fs.read", ["list"], {"step": "read", "shard": k}),
            step(analyze, "analyzer", "code.analyze", [read], {"shard": k}),
            step(validate, "validator", "code.validate", [read, analyze], {"shard": k}),
        ]
    validated = [f"validate-{k:02d}" for k in range(cfg.shards)]
    tasks.append(step("aggregate", "aggregator", "report.aggregate", validated, {"label": label}))
    return tasks


# --- chaos and control ------------------------------------------------------------------


_FOLLOW_UP_S = 0.25  # how soon Chaos kills again while no kill has cut work short


class Chaos:
    """SIGKILLs a random busy pool worker every ``interval_s`` until stopped.

    A demo driver, not a runtime part. Only workers with tasks in flight are
    picked; the first kill comes as soon as the analysis is under way, the next
    ones ``interval_s`` apart. A kill can land just after the worker finished
    its task (the result already on its way), and then cuts nothing short: until
    one kill has made the pool retry a task, the next one comes soon, so a short
    run still shows the recovery it is there to show.
    """

    def __init__(self, orch: Orchestrator, interval_s: float, seed: int) -> None:
        self._orch = orch
        self._interval = interval_s
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self.kills: list[int] = []  # pids killed, in order
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> Chaos:
        self._thread.start()
        return self

    def _run(self) -> None:
        pool = self._orch.pool
        retried = pool.statistics().retried  # before the first kill
        cut = False  # has a kill cut work short (the pool retried a task since)?
        delay = 0.0
        while not self._stop.wait(delay):
            pids = sorted(w.pid for w in pool.workers() if w.pid and w.in_flight)
            if not pids:
                delay = 0.05  # nothing busy yet: look again soon
                continue
            if self.kills and not cut:
                cut = pool.statistics().retried > retried
                if cut:  # the earlier kill did it: the next one at the interval
                    delay = max(0.0, self._interval - _FOLLOW_UP_S)
                    continue
            pid = self._rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills.append(pid)
            except ProcessLookupError:
                pass
            # Time for the pool to see the death and retry the task, then look again.
            delay = self._interval if cut else min(self._interval, _FOLLOW_UP_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def control(orch: Orchestrator, verb: str, workflow_id: str) -> Any:
    """A control command (pause, resume, cancel) through the control lane, ahead of all prompt work."""
    return orch.lanes.submit("control", f"workflow.{verb}", {"workflow_id": workflow_id}, priority=Priority.CRITICAL)


def pause_and_resume(orch: Orchestrator, workflow_id: str) -> dict[str, Any]:
    """Pause the workflow while prompt work is queued, then resume it; how fast did the pause get through?"""
    queued = orch.lanes.lane_stats("prompt").pending
    t0 = time.perf_counter()
    control(orch, "pause", workflow_id).result(timeout=60)
    paused_in = time.perf_counter() - t0
    control(orch, "resume", workflow_id).result(timeout=60)
    return {"prompt_queued_at_pause": queued, "pause_latency_ms": round(paused_in * 1000, 2)}


# --- the run ---------------------------------------------------------------------------


def start_subsystems(orch: Orchestrator, cfg: SwarmConfig, total: int) -> None:
    """The pool, the lanes (a wider prompt lane) and metrics, configured for this run."""
    orch.metrics
    # Chaos may kill a worker several times a second: allow far more restarts than the
    # pool's default intensity (10 in 10 s) before its supervisor gives up, and keep the
    # restart backoff short (a worker takes about a second to start anyway).
    backoff = Backoff(initial_s=0.05, max_s=0.25, jitter=0.1)
    orch.start_pool(workers=cfg.workers, supervision=OneForOne(100, 10.0, backoff=backoff), stop_timeout_s=2.0)
    # Two commands per worker keep both busy; pressure (a quarter of the files queued) starts the control demo.
    prompt = LaneConfig("prompt", priority=5, min_concurrency=1, max_concurrency=2 * cfg.workers,
                        retry=RetryPolicy.fixed(5, 0.05), pressure_threshold=max(1, min(100, total // 4)))  # fmt: skip
    orch.start_lanes(extra_lanes=[prompt])


def drive(orch: Orchestrator, wf: Any, dash: Dashboard, chaos: Chaos | None) -> tuple[Any, dict[str, Any]]:
    """Start the workflow, pause/resume it once under prompt-lane pressure, wait for its end."""
    wake = threading.Event()  # prompt-lane pressure, or the workflow ended first
    ended = threading.Event()
    orch.events.add_listener(lambda e: wake.set(), lambda e: e.key == "queue.lane.pressure" and e.source == "prompt")
    dash.set_status("running" + (" with chaos" if chaos else ""))
    wf.start()

    def on_end(_: Any) -> None:
        ended.set()
        wake.set()

    wf.future.add_done_callback(on_end)
    if chaos:
        chaos.start()
    paused: dict[str, Any] = {}
    try:
        sleep_until(wake, 3600)
        if not wf.future.done() and wf.status().state is WorkflowState.RUNNING:
            paused = pause_and_resume(orch, wf.id)
        sleep_until(ended, 3600)
        status = wf.wait(timeout=60)
    except KeyboardInterrupt:
        # Ctrl-C is a control command too: cancel through the control lane, keep what finished.
        dash.set_status("cancelling")
        control(orch, "cancel", wf.id)
        status = wf.wait(timeout=60)
    finally:
        if chaos:
            chaos.stop()
    dash.set_status(status.state.value)
    return status, paused


def run_swarm(cfg: SwarmConfig, label: str, stream: Any = None) -> dict[str, Any]:
    """Run the swarm once; returns the report (``result`` is deterministic, ``run`` is not)."""
    started = time.perf_counter()
    total = len(ca.list_python_files(cfg.root, cfg.files))
    with Orchestrator(name="code-swarm", shutdown_timeout=10.0) as orch:
        start_subsystems(orch, cfg, total)
        if cfg.console_port is not None:
            open_console(orch, cfg)
        # The demo queues every file on the prompt lane at once, on purpose: a deep
        # prompt queue is the plan, not a warning. Other lanes keep the defaults.
        thresholds = AlertThresholds(subjects={"lane:prompt": Threshold()})
        monitor = Monitor(orch, interval_s=0.5, name="swarm-monitor", thresholds=thresholds)
        dash = Dashboard(orch, title=f"code swarm: {label}", total=total, monitor=monitor, live=cfg.live, stream=stream)
        done = FilesDone(dash)
        register_agents(orch, cfg, dash, done)
        wf = orch.workflows.create_workflow(build_tasks(cfg, label), name="code-swarm", max_parallel_tasks=8)
        chaos = Chaos(orch, cfg.chaos_interval_s, cfg.seed) if cfg.chaos else None
        with dash:
            status, paused = drive(orch, wf, dash, chaos)
        elapsed = time.perf_counter() - started
        result = status.results.get("aggregate")
        run = run_record(orch, label, status.state.value, elapsed, total, done.count, result, cfg, chaos)
        run["control"] = paused
        if cfg.console_port is not None and cfg.console_linger_s > 0:
            print(f"the run ended; the console stays open {cfg.console_linger_s:g}s (Ctrl-C ends it)", file=sys.stderr)
            sleep_until(threading.Event(), cfg.console_linger_s)
    return {"result": result, "run": run}


def open_console(orch: Orchestrator, cfg: SwarmConfig) -> None:
    """Serve the web console for the run (token from ``LANEWAY_CONSOLE_TOKEN``, else generated off loopback)."""
    assert cfg.console_port is not None
    console = orch.console.start(port=cfg.console_port, host=cfg.console_host,
                                 token=os.environ.get("LANEWAY_CONSOLE_TOKEN") or None)
    if console.token is None or os.environ.get("LANEWAY_CONSOLE_TOKEN"):
        print(f"laneway console: {console.url.split('#')[0]}", file=sys.stderr, flush=True)


def run_record(orch: Orchestrator, label: str, state: str, elapsed: float, total: int, analyzed: int, result: Any,
               cfg: SwarmConfig, chaos: Chaos | None) -> dict[str, Any]:  # fmt: skip
    """The run's figures: timing, throughput, retries, restarts, breaker trips, dead letters."""
    snap = orch.metrics.snapshot()
    pool = orch.pool.statistics()
    letters: dict[str, int] = {}
    for letter in orch.dead_letters.list():
        family = letter.source.split(":", 1)[0]
        letters[family] = letters.get(family, 0) + 1
    return {
        "tree": label,
        "state": state,
        "elapsed_s": round(elapsed, 2),
        "files_total": total,
        "files_analyzed": analyzed,  # fewer than files_total when the run was cancelled
        "files_per_s": round(analyzed / elapsed, 1),
        "lines_per_s": round((result or {}).get("lines", 0) / elapsed),
        "workers": cfg.workers,
        "chaos_kills": len(chaos.kills) if chaos else 0,
        "retries": {**{s.value: snap.total(s, C.RETRIED) for s in Scope}, "pool": pool.retried},
        "worker_restarts": pool.restarts,
        "worker_deaths": pool.worker_deaths,
        "breaker_trips": snap.breaker_opens,
        "dead_letters": sum(letters.values()),
        "dead_letters_by_source": dict(sorted(letters.items())),
        "prompt_latency": attrs.asdict(snap.lanes["prompt"].latency) if "prompt" in snap.lanes else {},
    }


# --- output ------------------------------------------------------------------------------


def summary(report: dict[str, Any]) -> str:
    """The human summary printed at the end."""
    r, run = report["result"] or {}, report["run"]
    letters = f" {run['dead_letters_by_source']}" if run["dead_letters"] else ""
    lines = [f"code swarm over {run['tree']}: {run['state']} in {run['elapsed_s']} s"]
    if r:
        lines += [
            # Lines stay under 80 columns: the summary is read on a laptop terminal too.
            f"  files {r.get('files', 0)}, lines {r.get('lines', 0):,}, classes {r.get('classes', 0):,}, "
            f"functions {r.get('functions', 0):,}",
            f"  mean complexity {r.get('mean_complexity', 0)}, unparseable files {len(r.get('unparseable', []))}, "
            f"validation problems {len(r.get('validation_problems', []))}",
            "  most complex functions:",
            *(f"    {f['complexity']:4d}  {f['file']}:{f['line']} {f['name']}" for f in r.get("most_complex", [])[:5]),
            "  longest functions:",
            *(f"    {f['length']:4d} lines  {f['file']}:{f['line']} {f['name']}" for f in r.get("longest", [])[:3]),
        ]
    else:  # cancelled or failed: no aggregate, so say how far the run got
        lines.append(f"  files analyzed {run['files_analyzed']} of {run['files_total']}; no result (the run was {run['state']})")
    lines += [
        f"  throughput {run['files_per_s']} files/s, {run['lines_per_s']:,} lines/s on {run['workers']} workers",
        f"  retries {sum(run['retries'].values())} {run['retries']}",
        f"  worker restarts {run['worker_restarts']}, worker deaths {run['worker_deaths']}, "
        f"chaos kills {run['chaos_kills']}",
        f"  breaker trips {run['breaker_trips']}, dead letters {run['dead_letters']}{letters}",
    ]
    if run["state"] == "completed" and set(run["dead_letters_by_source"]) == {"pool"}:
        lines.append("  (pool dead letters are attempts that died with their worker; the prompt lane ran each again)")
    if run["control"]:
        c = run["control"]
        lines.append(f"  control lane: pause took {c['pause_latency_ms']} ms "
                     f"with {c['prompt_queued_at_pause']} prompt commands queued")  # fmt: skip
    lines.append(f"  result digest {r.get('digest', '-')}")
    return "\n".join(lines)


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The options of ``laneway demo`` (and of ``python examples/code_swarm.py`` in a checkout)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--path", help="source tree to analyze (default: this Python's standard library)")
    add("--files", type=positive(int), help="analyze only the first N files (sorted by path)")
    add("--workers", type=positive(int), default=2, help="pool worker processes (default 2)")
    add("--shards", type=positive(int), default=16, help="read/analyze/validate steps in the DAG (default 16)")
    add("--chaos", action="store_true", help="SIGKILL busy pool workers during the run; the result must not change")
    add("--chaos-interval", type=positive(float), default=2.0, help="seconds between kills with --chaos (default 2)")
    add("--seed", type=int, default=7, help="seed of the chaos victim picks")
    add("--out", help="write the JSON report here")
    add("--log-level", default="error", choices=["debug", "info", "warning", "error"],
        help="laneway's log level (default error: chaos causes many expected warnings; alerts show anyway)")  # fmt: skip
    add("--console", nargs="?", const=8642, type=port, metavar="PORT",
        help="serve the web console during the run (default port 8642; 0 picks a free one)")
    add("--console-host", default="127.0.0.1",
        help="address the console binds (default 127.0.0.1; any other needs a token: LANEWAY_CONSOLE_TOKEN, "
             "or one is generated and printed)")  # fmt: skip
    add("--console-linger", type=positive(float), default=None, metavar="SECONDS",
        help="keep the console open this long after the run ends")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--live", dest="live", action="store_true", default=None, help="force the live dashboard")
    view.add_argument("--plain", dest="live", action="store_false", help="plain log lines, not the live dashboard")
    return p


def _check_writable(path: str) -> str | None:
    """Why ``path`` cannot take the report, or None; checked before the run so a long run's result is not lost."""
    existed = os.path.exists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        return f"{exc.strerror or exc}"
    if not existed:
        os.unlink(path)  # the probe leaves nothing behind if the run never gets to write
    return None


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the demo from the command line; returns the exit status (0: the workflow completed)."""
    p = parser(prog)
    args = p.parse_args(argv)
    if args.out and (problem := _check_writable(args.out)):
        p.error(f"--out {args.out}: cannot write the report there: {problem}")
    logging.getLogger("laneway").setLevel(args.log_level.upper())
    root = args.path or sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(root):
        print(f"no such directory: {root}", file=sys.stderr)
        return 2
    if args.path is None:
        label = "Python {}.{} stdlib".format(*sys.version_info[:2])
    else:
        label = os.path.basename(os.path.normpath(root))
    if args.console is None and (args.console_linger or args.console_host != "127.0.0.1"):
        p.error("--console-host and --console-linger go with --console")
    cfg = SwarmConfig(root, args.files, args.shards, args.workers, args.chaos,
                      args.chaos_interval, args.seed, args.live, args.console, args.console_host,
                      args.console_linger or 0.0)  # fmt: skip
    report = run_swarm(cfg, label)
    print(summary(report))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print(f"report written to {args.out}")
    return 0 if report["run"]["state"] == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
