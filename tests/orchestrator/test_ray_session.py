"""One count of laneway's Ray connection: a Ray pool that stops first leaves Ray to the Ray-placed actors still running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.multiprocess, pytest.mark.timeout(240)]

SCRIPT = """
from laneway import Orchestrator
from tests.actors.test_process_actor import Pid, Recorder

with Orchestrator(name="ray-shared", handle_signals=False) as orch:
    pool = orch.start_pool(backend="ray", workers=1, num_cpus=2)   # laneway starts Ray here
    assert pool.submit(abs, -7).result(120) == 7
    ref = orch.spawn(Recorder, name="r", placement="ray")
    first = ref.ask(Pid(), timeout=120)
    pool.shutdown()                                                # the pool is done with Ray...
    assert ref.ask(Pid(), timeout=120) == first                    # ...the actor is not
    report = orch.shutdown()
    assert report.clean, report
import ray
assert not ray.is_initialized()                                    # the last user shut it down
print("ok")
"""


def test_a_ray_pool_that_stops_first_leaves_ray_to_the_ray_actors():
    pytest.importorskip("ray")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "local"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=220)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-4000:]
