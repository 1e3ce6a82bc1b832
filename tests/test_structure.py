"""The package's structure holds: layers run one way, no import cycle, no reach into another package's privates,
and the light entry points stay light. These read the import graph (grimp, from import-linter) and run fresh
interpreters; they fail when a change breaks the rule, not when the machine is slow (no timings)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("laneway", exclude_type_checking_imports=True, cache_dir=None)


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_layers_contract_is_kept():
    """The import-linter contract in pyproject.toml (the layers drawn in laneway's docstring)."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter, in the test extra) is not installed"
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and "KEPT" in out.stdout


def test_no_import_cycles_at_run_time(graph):
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert not cycles, f"import cycles (module -> imported, which imports it back): {cycles}"


def test_no_package_imports_another_packages_private_modules():
    # Type-checking imports count too: a private name in a signature is reach-in all the same.
    full = grimp.build_graph("laneway", cache_dir=None)
    bad = []
    for module in sorted(full.modules):
        for imported in full.find_modules_directly_imported_by(module):
            private = any(p.startswith("_") and not p.startswith("__") for p in imported.split(".")[1:])
            if private and _package(module) != _package(imported):
                bad.append(f"{module} -> {imported}")
    assert not bad, "imports of another package's private modules:\n" + "\n".join(bad)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "; import sys; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_import_laneway_loads_no_subsystem():
    loaded = _modules_after("import laneway")
    heavy = {m for m in loaded if m.split(".")[0] in {"pykka", "zmq", "rich", "cloudpickle", "psutil", "ray"}}
    assert not heavy, f"`import laneway` imported {sorted(heavy)}"
    assert not {m for m in loaded if m.startswith("laneway.") and m != "laneway.errors"}


def test_the_orchestrator_does_not_load_the_console_or_its_server_stack():
    # `orch.console` imports the console on first use; the server stack (aiohttp) loads only when it starts.
    loaded = _modules_after("from laneway import Orchestrator; Orchestrator")
    assert "laneway.orchestrator" in loaded
    stack = {m for m in loaded if m.split(".")[0] in {"aiohttp", "selenium"} or m.startswith("laneway.console")}
    assert not stack, f"importing the Orchestrator imported {sorted(stack)}"


#: What a pool worker must not load to start and serve a task: it would cost every worker
#: megabytes and milliseconds (the idle-USS and start-up rows of the pool_paths benchmark).
#: cloudpickle loads only when a task's function or argument came by value; laneway's
#: other subsystems never.
WORKER_MUST_NOT_LOAD = {"attr", "attrs", "cloudpickle", "hashlib", "psutil", "pykka", "asyncio", "sqlite3", "uuid",
                        "rich", "ray", "aiohttp"}


@pytest.mark.timeout(120)
def test_a_pool_worker_loads_only_what_it_uses_and_the_pool_starts_no_other_process():
    # A fresh interpreter whose main module is `-c` (nothing for workers to import), and a
    # task imported by reference, so that what the worker holds is laneway's doing.
    code = textwrap.dedent("""
        import json, psutil
        from laneway import Orchestrator
        from tests.pool.tasks import loaded_modules
        with Orchestrator(name="imports") as orch:
            pool = orch.start_pool(workers=1)
            modules = pool.submit(loaded_modules).result(timeout=60)
            children = [p.pid for p in psutil.Process().children()]
            print(json.dumps({"modules": modules, "children": children, "workers": [w.pid for w in pool.workers()]}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    modules = set(seen["modules"])
    heavy = {m for m in modules if m.split(".")[0] in WORKER_MUST_NOT_LOAD}
    assert not heavy, f"a pool worker imported {sorted(heavy)}"
    own = {m for m in modules if m.startswith("laneway.")} - {"laneway.errors", "laneway.worker"}
    assert all(m.startswith("laneway.worker.") for m in own), f"a pool worker imported {sorted(own)}"
    assert "laneway.worker._keys" not in own  # CurveZMQ key files: remote workers only
    # multiprocessing's spawn would have started its resource-tracker process too.
    assert sorted(seen["children"]) == sorted(seen["workers"])
