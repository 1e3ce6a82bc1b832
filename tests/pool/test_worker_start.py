"""How worker processes start: ``spawn``'s contract (sys.path, the main module) without its resource tracker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from laneway.worker import start_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_workers_import_the_programs_main_module_and_laneway_from_where_the_pool_did(tmp_path):
    # The working directory holds another "laneway": `python -c` puts it first on a child's
    # sys.path, so a worker that imported laneway before taking the pool's sys.path would get it.
    (tmp_path / "laneway").mkdir()
    (tmp_path / "laneway" / "__init__.py").write_text("raise ImportError('the laneway in the working directory')\n")
    (tmp_path / "prog").mkdir()
    prog = tmp_path / "prog" / "prog.py"
    prog.write_text(textwrap.dedent("""
        from laneway import Orchestrator
        from tests.pool.tasks import main_module_file

        if __name__ == "__main__":
            with Orchestrator(name="main-module") as orch:
                print(orch.start_pool(workers=1).submit(main_module_file).result(timeout=30))
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True, timeout=100, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == str(prog)


@pytest.mark.timeout(60)
def test_a_started_process_reports_its_exit_code_or_the_signal_that_killed_it():
    proc = start_process(os._exit, (7,), name="exits")
    proc.join(30)
    assert proc.exitcode == 7
    proc.close()
    proc = start_process(time.sleep, (60,), name="sleeps")
    proc.join(0.01)
    assert proc.exitcode is None  # still running: join gave up, nothing collected
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    proc.close()


@pytest.mark.timeout(180)
def test_a_program_without_the_main_guard_gets_pool_down_not_a_future_that_waits_for_ever(tmp_path):
    # Each worker imports the main module (spawn's rule), which starts a pool of its own, fails and
    # dies: no worker ever reaches its handshake, so the pool must give up and fail the task.
    prog = tmp_path / "unguarded.py"
    prog.write_text(textwrap.dedent("""
        from laneway import Orchestrator

        with Orchestrator(name="unguarded") as orch:
            print("RESULT", orch.start_pool(workers=1).submit(abs, -42).result(100))
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True, timeout=150, env=env,
                         cwd=tmp_path)
    last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
    assert out.returncode != 0 and "RESULT" not in out.stdout, (out.stdout[-2000:], out.stderr[-3000:])
    # The parent's own traceback comes last: PoolDown naming the cause, not a TimeoutError.
    assert last.startswith("laneway.errors.PoolDown") and "before their handshake" in last and "__main__" in last, last


@pytest.mark.timeout(120)
def test_a_program_read_from_standard_input_runs_its_own_functions_on_the_pool(tmp_path):
    # `python - <<EOF` (a CI step, a heredoc): the main module's file is "<stdin>", which a worker
    # cannot import again. The worker starts as under `python -c`; the function travels by value.
    program = textwrap.dedent("""
        import os
        from laneway import Orchestrator

        def double_pid(x):
            return 2 * x, os.getpid()

        if __name__ == "__main__":
            with Orchestrator(name="stdin-program") as orch:
                value, pid = orch.start_pool(workers=1).submit(double_pid, 21).result(timeout=60)
                print("RESULT", value, pid != os.getpid())
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-"], input=program, capture_output=True, text=True, timeout=100,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "RESULT 42 True"  # run in another process
