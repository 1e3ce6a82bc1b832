"""The package type-checks: mypy (configured in pyproject.toml: every public function annotated) reports no error."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mypy_reports_no_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy_cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    # Exit status 1 means "errors found"; anything above means mypy itself failed.
    assert proc.returncode == 0, f"mypy exit {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


def test_the_package_ships_its_type_marker():
    assert (ROOT / "laneway" / "py.typed").is_file()
