"""``laneway worker``: join a pool from this host as a remote worker, or host actors for an orchestrator.

With ``--actors`` the worker connects to an orchestrator's actor-host endpoint
(``orch.accept_actor_hosts(...)``) instead of a pool, and runs the actors spawned
there with ``placement="remote"`` (and ``host=NAME``, the ``--name`` given here).

Example:
    $ laneway worker --connect tcp://pool-host:5555 --keys ~/laneway-keys
    $ laneway worker --actors --connect tcp://orch-host:5556 --keys ~/laneway-keys --name gpu-1
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from laneway.cli._args import positive

if TYPE_CHECKING:
    from laneway.worker import CurveClient

HELP = "run a worker that joins a pool listening on tcp (remote hosts), or hosts actors (--actors)"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", required=True, metavar="tcp://HOST:PORT", help="the pool's endpoint")
    parser.add_argument("--keys", metavar="DIR", help="directory with server.key and this worker's key pair")
    parser.add_argument("--key-name", default="client", metavar="NAME",
                        help="which key pair in DIR to use (NAME.key_secret); default: client")
    parser.add_argument("--heartbeat", type=positive(float), default=0.5, metavar="S", help="seconds between heartbeats")
    parser.add_argument("--pool-timeout", type=positive(float), default=10.0, metavar="S",
                        help="rejoin after hearing nothing from the pool this long")
    parser.add_argument("--actors", action="store_true",
                        help="host actors for the orchestrator at --connect (orch.accept_actor_hosts) instead of "
                             "running pool tasks")
    parser.add_argument("--name", metavar="NAME",
                        help="with --actors: the host name actors are placed by (host=NAME); default: this "
                             "machine's host name")
    parser.add_argument("--handshake-timeout", type=positive(float), default=30.0, metavar="S",
                        help="exit (status 3) if the pool has not answered this long after connecting: "
                             "a refused or missing key, a wrong server key, no pool there (default 30)")


def run(args: argparse.Namespace) -> int:
    from laneway.worker import WorkerConfig, run_worker as serve

    if urlsplit(args.connect).scheme != "tcp" or not urlsplit(args.connect).port:
        raise SystemExit(f"laneway worker: --connect needs tcp://HOST:PORT, got {args.connect!r}")
    curve = None
    if args.keys:
        from laneway.worker import load_client

        curve = load_client(args.keys, args.key_name)
    if args.actors:
        return _host_actors(args, curve)
    cfg = WorkerConfig(endpoint=args.connect, heartbeat_s=args.heartbeat, curve=curve,
                       pool_timeout_s=args.pool_timeout, handshake_timeout_s=args.handshake_timeout)
    log.warning("laneway worker joining %s (%s)", args.connect, "CurveZMQ" if curve else "no keys")
    return serve(cfg)


def _host_actors(args: argparse.Namespace, curve: CurveClient | None) -> int:
    import socket

    from laneway.actors import ActorHostConfig, run_actor_host

    name = args.name or socket.gethostname()
    cfg = ActorHostConfig(endpoint=args.connect, name=name, curve=curve,
                          heartbeat_s=args.heartbeat, parent_timeout_s=args.pool_timeout,
                          handshake_timeout_s=args.handshake_timeout)
    log.warning("laneway actor host %s joining %s (%s)", name, args.connect, "CurveZMQ" if curve else "no keys")
    return run_actor_host(cfg)
