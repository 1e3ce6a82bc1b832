"""``laneway bench``: run the benchmark scripts (:mod:`laneway.cli.benchmarks`), each in its own Python process.

Every benchmark is a standalone script that measures laneway against its
baselines in the same run and prints its own table; this command finds them,
runs the chosen ones one after another (never concurrently: they would skew
each other), streams their output and ends with a summary of exit codes and
durations.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HELP = "run the benchmarks (laneway/cli/benchmarks/*.py), each in its own process"

#: The scripts that ship with laneway.
BENCHMARKS_DIR = Path(__file__).resolve().parent / "benchmarks"


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("names", nargs="*", metavar="NAME", help="benchmarks to run, by file stem (default: all)")
    add("--list", action="store_true", help="list the benchmarks and exit")
    add("--dir", type=Path, default=None, help="where the scripts are (default: the ones shipped in laneway/cli/benchmarks/)")
    add("--timeout", type=float, default=900.0, help="seconds each script may run (default 900)")
    add(
        "--arg", dest="script_args", action="append", default=[], metavar="ARG",
        help="an argument for every script (repeat it: --arg=--quick)",
    )  # fmt: skip


def discover(directory: Path) -> dict[str, Path]:
    """Benchmark scripts by stem, sorted; files starting with ``_`` are helpers, not benchmarks."""
    if not directory.is_dir():
        return {}
    return {p.stem: p for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")}


def run(args: argparse.Namespace) -> int:
    directory = args.dir or BENCHMARKS_DIR
    found = discover(directory)
    if not found:
        print(f"no benchmarks in {directory}", file=sys.stderr)
        return 2
    if args.list:
        for name, path in found.items():
            print(f"{name:28s} {_summary(path)}")
        return 0
    unknown = [n for n in args.names if n not in found]
    if unknown:
        print(f"unknown benchmarks {unknown}; known: {sorted(found)}", file=sys.stderr)
        return 2
    chosen = args.names or list(found)
    results = []
    for name in chosen:
        print(f"\n=== {name} ({found[name]}) ===", flush=True)
        start = time.perf_counter()
        try:
            command = [sys.executable, str(found[name]), *args.script_args]
            code = subprocess.run(command, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            code = None
        results.append((name, code, time.perf_counter() - start))
    print("\n=== summary ===")
    for name, code, elapsed in results:
        status = "ok" if code == 0 else "timed out" if code is None else f"exit {code}"
        print(f"{name:28s} {status:10s} {elapsed:7.1f}s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


def _summary(path: Path) -> str:
    """The first line of the script's docstring."""
    import ast

    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc else ""
