"""``laneway serve``: run this host as one node of a cluster sharing a PostgreSQL database.

What the node serves comes from an app module the user names with ``--app
MODULE[:FUNCTION]``. The module is imported (so its ``@tool`` functions
register in the default registry), then ``FUNCTION(orch)`` (default
``setup``, if the module defines it) is called with the node's Orchestrator
before the node joins: it registers tools (``orch.lanes.tools.register``),
agents (``orch.register_agent``), lanes and the like, and may return a mapping
of workflow executors by agent type; a module-level ``EXECUTORS`` mapping is
used too. Then the node joins and serves until SIGTERM or Ctrl-C, when it
finishes or hands back what it runs and leaves.

Example:
    $ laneway serve --store postgresql://app@db/app --node worker-1 --app myapp.nodes
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import threading
from typing import Any, Mapping

from laneway.cli._args import positive
from laneway.cli._waiting import sleep_until
from laneway.errors import ConfigError

HELP = "run a cluster node: claim and run durable commands and workflows from a PostgreSQL store"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, metavar="postgresql://...", help="the database the nodes share")
    parser.add_argument("--node", required=True, metavar="NAME", help="this node's name, unique among live nodes")
    parser.add_argument("--app", required=True, metavar="MODULE[:FUNCTION]",
                        help="what the node serves: a module to import and a setup function called with the "
                             "Orchestrator (default: setup, if defined)")
    parser.add_argument("--lease", type=positive(float), default=3.0, metavar="S",
                        help="lease length; a dead node's work is adopted about this long after it died (default 3)")
    parser.add_argument("--poll", type=positive(float), default=5.0, metavar="S",
                        help="fallback poll when no notification arrives (default 5)")
    parser.add_argument("--max-inflight", type=positive(int), default=64, metavar="N",
                        help="commands claimed and running here at once, at most (default 64)")
    parser.add_argument("--max-workflows", type=positive(int), default=16, metavar="N",
                        help="workflows running here at once, at most (default 16)")


def load_app(spec: str) -> tuple[Any, str | None]:
    """Import ``MODULE[:FUNCTION]``; returns the module and the function name (None: ``setup`` if defined)."""
    module_name, _, function = spec.partition(":")
    if not module_name:
        raise ConfigError(f"--app needs MODULE or MODULE:FUNCTION, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from exc
    if function and not callable(getattr(module, function, None)):
        raise ConfigError(f"--app {spec!r}: module {module_name!r} has no function {function!r}")
    return module, function or None


def run(args: argparse.Namespace) -> int:
    from laneway import Orchestrator

    module, function = load_app(args.app)
    setup = getattr(module, function or "setup", None)
    executors: dict[str, Any] = dict(getattr(module, "EXECUTORS", {}) or {})
    stop = threading.Event()
    with Orchestrator(f"node-{args.node}", store=args.store, node=args.node) as orch:
        if callable(setup):
            returned = setup(orch)
            if isinstance(returned, Mapping):
                executors.update(returned)
        node = orch.start_cluster(executors=executors, lease_s=args.lease, poll_s=args.poll,
                                  max_inflight=args.max_inflight, max_workflows=args.max_workflows)
        print(f"laneway serve: node {node.node} joined (epoch {node.epoch}); serving until SIGTERM or Ctrl-C",
              flush=True)
        try:
            while not sleep_until(stop, 60.0):  # a Ctrl-C or SIGTERM is seen at once, not at the next minute
                log.info("%s", node.statistics())
        except KeyboardInterrupt:
            print("laneway serve: stopping", file=sys.stderr)
        finally:
            orch.shutdown()
            stats = node.statistics()
            print(f"laneway serve: node {stats.node} left: claimed={stats.claimed} committed={stats.committed} "
                  f"fenced={stats.fenced} workflows={stats.workflows_claimed} lease_losses={stats.lease_losses}",
                  flush=True)
    return 0
