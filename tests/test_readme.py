"""Every ```python block of README.md runs, each as its own script in a fresh interpreter.

A README that lies is a bug. A value shown in a comment after an expression
(``counter.ask(Get(), timeout=5)   # 2``), or on the comment line right under
it, is checked: the line becomes ``assert (expression) == (value)`` when the
comment starts with a Python literal. Blocks run as scripts (``__name__ == "__main__"``),
because blocks that start worker processes keep that code under the guard, as
the README tells users to. A block that cannot run on one machine says so in an
HTML comment right above it, ``<!-- not run: REASON -->``, and is skipped with
that reason.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->\s*$")


@attrs.frozen
class Block:
    """One python block: the line its code starts on, the code, and why it is not run (if it is not)."""

    line: int
    code: str
    not_run: str | None


def python_blocks(text: str) -> list[Block]:
    """The README's python blocks, in order."""
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = _NOT_RUN.search(before)
        line = text.count("\n", 0, match.start(1)) + 1
        blocks.append(Block(line, match.group(1), reason.group(1) if reason else None))
    return blocks


def _literal(comment: str) -> str | None:
    """The longest leading piece of a comment (cut at two spaces) that is a Python literal."""
    pieces = re.split(r"\s{2,}", comment.strip())
    for n in range(len(pieces), 0, -1):
        candidate = "  ".join(pieces[:n])
        try:
            ast.literal_eval(candidate)
        except (ValueError, SyntaxError):
            continue
        return candidate
    return None


def _expression(code: str) -> bool:
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return False
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)


def with_checked_outputs(code: str) -> str:
    """Turn ``expression  # value`` lines (value a literal, on the line or the next comment line) into asserts."""
    lines = code.split("\n")
    out = []
    for i, line in enumerate(lines):
        indent = line[: len(line) - len(line.lstrip())]
        body, sep, comment = line.partition("  #")
        value = _literal(comment) if sep else None
        if value is None and not sep and i + 1 < len(lines) and lines[i + 1].strip().startswith("#"):
            value = _literal(lines[i + 1].strip()[1:])
        if value is not None and _expression(body):
            expr = body.strip()
            out.append(f"{indent}_got = ({expr}); assert _got == ({value}), ({expr!r}, _got)")
        else:
            out.append(line)
    return "\n".join(out)


def test_outputs_in_comments_become_asserts():
    code = "x = 1\nx + 1        # 2\n[x]\n# [1]  a note\nprint(x)  # prints 1\n"
    checked = with_checked_outputs(code)
    assert "assert _got == (2)" in checked and "assert _got == ([1])" in checked
    assert "print(x)  # prints 1" in checked
    exec(compile(checked, "<readme>", "exec"), {})
    with pytest.raises(AssertionError):
        exec(compile(with_checked_outputs("1 + 1  # 3\n"), "<readme>", "exec"), {})


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.multiprocess
@pytest.mark.timeout(180)
@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs(block, tmp_path):
    if block.not_run:
        pytest.skip(block.not_run)
    script = tmp_path / f"readme_{block.line}.py"
    script.write_text(with_checked_outputs(block.code), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=170, cwd=tmp_path, env=env
    )  # fmt: skip
    assert out.returncode == 0, f"README.md line {block.line} failed:\n{out.stdout}\n{out.stderr}"
