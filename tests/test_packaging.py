"""The wheel carries everything ``laneway demo`` and ``laneway bench`` need, and the license."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_wheel_ships_the_cli_the_demo_and_the_benchmarks(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = tmp_path.glob("laneway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "laneway/cli/__init__.py",
        "laneway/cli/demo.py",
        "laneway/cli/bench.py",
        "laneway/cli/worker.py",
        "laneway/cli/keys.py",
        "laneway/cli/swarm/code_swarm.py",
        "laneway/cli/swarm/code_analysis.py",
    }
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "laneway" / "cli" / "benchmarks").glob("*.py")}
    assert len(shipped) >= 6
    assert expected | shipped <= names, sorted((expected | shipped) - names)
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "laneway = laneway.cli:main" in entry_points
