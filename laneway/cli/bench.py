"""``laneway bench``: run the benchmark scripts (:mod:`laneway.cli.benchmarks`), each in its own Python process.

Every benchmark is a standalone script that measures laneway against its
baselines in the same run and prints its own table; this command finds them,
runs the chosen ones one after another (never concurrently: they would skew
each other), streams their output and ends with a summary of exit codes and
durations.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    add("--json", dest="json_out", type=Path, default=None, metavar="FILE",
        help="also write every result to FILE as JSON: the machine (CPU, load), each script's exit, time and "
             "output, and its own JSON report where the script has --json")


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
    if args.json_out is not None:
        try:
            args.json_out.write_text("")  # refuse an unwritable path before a long run, not after
        except OSError as exc:
            print(f"cannot write --json {args.json_out}: {exc}", file=sys.stderr)
            return 2
    document: dict[str, Any] = {"machine": _machine(), "benchmarks": []}
    results = []
    for name in chosen:
        print(f"\n=== {name} ({found[name]}) ===", flush=True)
        start = time.perf_counter()
        command = [sys.executable, str(found[name]), *args.script_args]
        record: dict[str, Any] = {"name": name}
        try:
            if args.json_out is None:
                code: int | None = subprocess.run(command, timeout=args.timeout).returncode
            else:
                code = _run_recorded(command, found[name], args.timeout, record)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.perf_counter() - start
        results.append((name, code, elapsed))
        record.update(exit=code, seconds=round(elapsed, 1))
        document["benchmarks"].append(record)
    if args.json_out is not None:
        document["machine"]["load_average_end"] = _load()
        args.json_out.write_text(json.dumps(document, indent=1))
        print(f"results written to {args.json_out}")
    print("\n=== summary ===")
    for name, code, elapsed in results:
        status = "ok" if code == 0 else "timed out" if code is None else f"exit {code}"
        print(f"{name:28s} {status:10s} {elapsed:7.1f}s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


def _run_recorded(command: list[str], script: Path, timeout: float, record: dict[str, Any]) -> int:
    """Run one script, echo its output, keep it in ``record`` (with its own JSON report if it has ``--json``)."""
    if "--json" in _help(script):
        proc = subprocess.run([*command, "--json"], timeout=timeout, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        record["output"] = proc.stderr
        try:
            record["report"] = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            record["output"] += proc.stdout
    else:
        proc = subprocess.run(command, timeout=timeout, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(proc.stdout)
        record["output"] = proc.stdout
    return proc.returncode


def _help(script: Path) -> str:
    try:
        return subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                              timeout=60).stdout
    except subprocess.TimeoutExpired:
        return ""


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _machine() -> dict[str, Any]:
    """What a published figure must state: when, on what CPU, under what load."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_start": _load(),
    }


def _summary(path: Path) -> str:
    """The first line of the script's docstring."""
    import ast

    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc else ""
