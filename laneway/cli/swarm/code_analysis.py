"""Pure functions of the code-swarm example: list, read, analyze, validate and aggregate Python files.

Nothing here knows about laneway: each function takes plain data and returns
plain data (dicts, lists, strings), so the analyzers can ship to worker
processes with cloudpickle and every result is deterministic for the same
files. ``code_swarm.py`` wires them to agents, lanes, the pool and a workflow.

Cyclomatic complexity follows McCabe as radon counts it: 1 per function, plus
1 per ``if``/``elif``, conditional expression, ``for``/``while`` loop,
``except`` clause, ``assert``, ``case`` (except a bare ``case _``),
comprehension loop and its ``if`` filters, and per extra operand of
``and``/``or``. A nested function or class is measured on its own and does not
add to its parent.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import tokenize
from typing import Any, Iterable

SKIP_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages"})
TOP_N = 10


# --- observers: list and read ----------------------------------------------


def list_python_files(root: str, limit: int | None = None) -> list[str]:
    """Relative paths of the ``.py`` files under ``root``, sorted; the first ``limit`` when given."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if name.endswith(".py"):
                found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    found.sort()
    return found[:limit] if limit is not None else found


def read_source(root: str, rel: str) -> dict[str, Any]:
    """One file's text, decoded as Python does (PEP 263 coding cookie, BOM); or the reason it cannot be read."""
    path = os.path.join(root, rel)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        text = raw.decode(encoding)
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return {"path": rel, "text": None, "error": f"{type(exc).__name__}: {exc}", "sha256": ""}
    return {"path": rel, "text": text, "error": None, "sha256": hashlib.sha256(raw).hexdigest()}


def read_sources(root: str, rels: Iterable[str]) -> list[dict[str, Any]]:
    """:func:`read_source` for several files, in order."""
    return [read_source(root, rel) for rel in rels]


# --- analyzers: ast on the process pool --------------------------------------


class _Complexity(ast.NodeVisitor):
    """McCabe complexity of one function body, not descending into nested defs or classes."""

    def __init__(self) -> None:
        self.value = 1

    def _nested(self, node: ast.AST) -> None:
        return None

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _nested

    def _branch(self, node: ast.AST) -> None:
        self.value += 1
        self.generic_visit(node)

    visit_If = visit_IfExp = visit_For = visit_AsyncFor = visit_While = visit_Assert = _branch
    visit_ExceptHandler = _branch

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.value += len(node.values) - 1
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.value += 1 + len(node.ifs)
        self.generic_visit(node)

    def visit_match_case(self, node: ast.match_case) -> None:
        wildcard = isinstance(node.pattern, ast.MatchAs) and node.pattern.pattern is None and node.guard is None
        self.value += 0 if wildcard else 1
        self.generic_visit(node)


def complexity(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Cyclomatic complexity of one function (see the module docstring for what counts)."""
    counter = _Complexity()
    for stmt in fn.body:
        counter.visit(stmt)
    return counter.value


def _functions(tree: ast.AST) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name, in source order."""
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    out = []
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((name, child))
                stack.append((f"{name}.<locals>.", child))
            elif isinstance(child, ast.ClassDef):
                stack.append((f"{prefix}{child.name}.", child))
            else:
                stack.append((prefix, child))
    out.sort(key=lambda item: (item[1].lineno, item[1].col_offset))
    return out


def analyze_source(path: str, text: str, sha256: str = "") -> dict[str, Any]:
    """Parse one file with :mod:`ast`: lines, classes, functions with complexity and length.

    Example:
        >>> r = analyze_source("m.py", "def f(x):\\n    if x and x > 1:\\n        return 1\\n    return 0\\n")
        >>> r["functions"][0]
        {'name': 'f', 'line': 1, 'length': 4, 'complexity': 3}
    """
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    result: dict[str, Any] = {"path": path, "sha256": sha256, "lines": lines}
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        result.update(error=f"{type(exc).__name__}: {getattr(exc, 'msg', exc)} (line {line})", classes=0, functions=[])
        return result
    functions = [
        {"name": name, "line": fn.lineno, "length": (fn.end_lineno or fn.lineno) - fn.lineno + 1, "complexity": complexity(fn)}
        for name, fn in _functions(tree)
    ]
    result.update(error=None, classes=sum(isinstance(n, ast.ClassDef) for n in ast.walk(tree)), functions=functions)
    return result


def analyze_batch(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`analyze_source` over read files (unreadable ones pass through with their error)."""
    out = []
    for item in items:
        if item["text"] is None:
            out.append({"path": item["path"], "sha256": "", "lines": 0, "error": item["error"], "classes": 0, "functions": []})
        else:
            out.append(analyze_source(item["path"], item["text"], item["sha256"]))
    return out


# --- validators ----------------------------------------------------------------


def validate_result(result: dict[str, Any], expected_sha256: str | None = None) -> list[str]:
    """Problems with one analysis result (empty when it is sound)."""
    problems = []
    path = result.get("path", "?")
    if expected_sha256 is not None and result.get("sha256") != expected_sha256:
        problems.append(f"{path}: analyzed content does not match what was read")
    if not isinstance(result.get("lines"), int) or result["lines"] < 0:
        problems.append(f"{path}: bad line count {result.get('lines')!r}")
    for fn in result.get("functions", []):
        if fn["complexity"] < 1 or fn["length"] < 1 or not 1 <= fn["line"] <= max(1, result["lines"]):
            problems.append(f"{path}: implausible function record {fn!r}")
    if result.get("error") is None and result.get("lines", 0) and result.get("classes", -1) < 0:
        problems.append(f"{path}: bad class count")
    return problems


def validate_batch(results: list[dict[str, Any]], read: list[dict[str, Any]]) -> dict[str, Any]:
    """Check a batch against what the observers read: same files, same content, sound records."""
    problems = []
    expected = {r["path"]: r["sha256"] for r in read}
    got = [r["path"] for r in results]
    if sorted(got) != sorted(expected):
        problems.append(f"batch covers {len(got)} files, {len(expected)} were read")
    for r in results:
        problems.extend(validate_result(r, expected.get(r["path"])))
    return {"results": results, "problems": problems}


# --- aggregator ------------------------------------------------------------------


def aggregate(results: list[dict[str, Any]], problems: list[str], root_label: str) -> dict[str, Any]:
    """The deterministic part of the report: totals, top functions, per-package figures, a digest."""
    results = sorted(results, key=lambda r: r["path"])
    functions = [{"file": r["path"], **fn} for r in results for fn in r["functions"]]
    by_complexity = sorted(functions, key=lambda f: (-f["complexity"], f["file"], f["line"]))
    by_length = sorted(functions, key=lambda f: (-f["length"], f["file"], f["line"]))
    packages: dict[str, dict[str, int]] = {}
    for r in results:
        top = r["path"].split("/", 1)[0] if "/" in r["path"] else "(top level)"
        p = packages.setdefault(top, {"files": 0, "lines": 0, "functions": 0})
        p["files"] += 1
        p["lines"] += r["lines"]
        p["functions"] += len(r["functions"])
    result = {
        "root": root_label,
        "files": len(results),
        "lines": sum(r["lines"] for r in results),
        "classes": sum(r["classes"] for r in results),
        "functions": len(functions),
        "mean_complexity": round(sum(f["complexity"] for f in functions) / len(functions), 3) if functions else 0.0,
        "unparseable": [{"file": r["path"], "error": r["error"]} for r in results if r["error"]],
        "most_complex": by_complexity[:TOP_N],
        "longest": by_length[:TOP_N],
        "packages": dict(sorted(packages.items(), key=lambda kv: (-kv[1]["lines"], kv[0]))[:TOP_N]),
        "validation_problems": sorted(problems),
    }
    result["digest"] = digest(result)
    return result


def digest(result: dict[str, Any]) -> str:
    """sha256 of the result's canonical JSON (without its own digest): equal digests, equal results."""
    body = {k: v for k, v in result.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def part(items: list[Any], index: int, count: int) -> list[Any]:
    """The ``index``-th of ``count`` contiguous, near-equal parts of ``items`` (some may be empty)."""
    n = len(items)
    return items[index * n // count : (index + 1) * n // count]
