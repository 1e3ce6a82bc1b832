"""``laneway keys DIR``: create CurveZMQ keys for a pool and its remote workers.

Example:
    $ laneway keys ~/laneway-keys --client gpu1 --client gpu2
"""

from __future__ import annotations

import argparse

HELP = "create CurveZMQ keys for a pool listening beyond loopback and for its workers"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="directory to write the keys to (created, mode 0700)")
    parser.add_argument("--client", action="append", metavar="NAME",
                        help="a worker key pair to create (repeatable); default: one named 'client'")
    parser.add_argument("--force", action="store_true",
                        help="replace client key pairs that already exist (their workers are locked out)")


def run(args: argparse.Namespace) -> int:
    from laneway.worker import create_keys

    names = args.client or ["client"]
    for path in create_keys(args.dir, names, overwrite=args.force):
        print(path)
    print(f"pool host keeps:  {args.dir}/server.key_secret and {args.dir}/authorized/")
    print(f"each worker gets: {args.dir}/server.key and its own NAME.key_secret "
          f"(`laneway worker --connect tcp://HOST:PORT --keys DIR --key-name NAME`)")
    return 0
