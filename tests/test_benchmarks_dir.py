"""The checkout's ``benchmarks/`` runs every benchmark script that ships in ``laneway.cli.benchmarks``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "laneway" / "cli" / "benchmarks"
CHECKOUT = ROOT / "benchmarks"


def _scripts(folder: Path) -> set[str]:
    """The stems of the runnable scripts in ``folder`` (modules with a ``main``)."""
    return {p.stem for p in folder.glob("*.py") if "def main(" in p.read_text() or "import main" in p.read_text()}


def test_every_shipped_script_has_a_checkout_entry() -> None:
    assert _scripts(SHIPPED), "no benchmark scripts found"
    assert _scripts(CHECKOUT) == _scripts(SHIPPED)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(_scripts(SHIPPED)))
def test_checkout_entry_runs_the_shipped_script(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(CHECKOUT / f"{name}.py"), "--help"],
        capture_output=True, text=True, timeout=100, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
