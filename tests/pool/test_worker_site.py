"""Workers start without ``site`` only when that changes nothing they could see (``laneway.worker._site``).

Each test runs a program in a venv of its own, built here: its site-packages holds a path-only
``.pth`` to the test interpreter's packages (laneway's dependencies) and an editable install of
this checkout's laneway the way setuptools writes one (a ``.pth`` line installing a meta-path
finder), so laneway imports only through that finder, as after ``pip install -e .``. The program
is a script outside the checkout whose task reports how its worker started.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from laneway.errors import ConfigError
from laneway.worker._site import SITE_ENV, site_less_setup

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[2]

EDITABLE_FINDER = """\
import sys
from importlib.machinery import PathFinder
from importlib.util import spec_from_file_location

MAPPING = {"laneway": %r}
NAMESPACES = {}


class _EditableFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname in MAPPING:
            return spec_from_file_location(fullname, MAPPING[fullname] + "/__init__.py")
        parent, _, _ = fullname.rpartition(".")
        if parent in MAPPING:
            return PathFinder.find_spec(fullname, path=[MAPPING[parent]])
        return None


def install():
    if not any(finder == _EditableFinder for finder in sys.meta_path):
        sys.meta_path.append(_EditableFinder)
"""

#: A finder only ``site`` installs (from a ``.pth`` line or ``sitecustomize``): it alone resolves ``only_via_site``.
USER_HOOK = """\
import sys
from importlib.machinery import ModuleSpec


class _Loader:
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.VALUE = "from the finder site installed"


class _Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        return ModuleSpec(name, _Loader()) if name == "only_via_site" else None


def install():
    sys.meta_path.append(_Finder)
"""

PROBE = """\
import builtins
import sys


def report():
    try:
        import only_via_site
        hooked = only_via_site.VALUE
    except ImportError:
        hooked = None
    return {"no_site": sys.flags.no_site, "prefix": sys.prefix, "laneway": sys.modules["laneway"].__file__,
            "exit": repr(getattr(builtins, "exit", None)), "hooked": hooked}


def grandchild():
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(report).result(60)
"""

PROGRAM = """\
import json
import sys

import probe
from laneway import Orchestrator

if __name__ == "__main__":
    task = getattr(probe, sys.argv[1])
    with Orchestrator(name="site") as orch:
        worker = orch.start_pool(workers=1).submit(task).result(timeout=90)
    print(json.dumps({"worker": worker, "parent": probe.report()}))
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv with laneway installed editable from this checkout (and nothing else running code at start-up)."""
    home = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(home / "env")], check=True, timeout=120)
    python = home / "env" / "bin" / "python"
    packages = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                   capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    deps = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    (packages / "deps.pth").write_text("".join(f"{p}\n" for p in deps))
    (packages / "__editable__.laneway-0.1.0.pth").write_text(
        "import __editable___laneway_0_1_0_finder; __editable___laneway_0_1_0_finder.install()\n")
    (packages / "__editable___laneway_0_1_0_finder.py").write_text(EDITABLE_FINDER % str(ROOT / "laneway"))
    (home / "prog").mkdir()
    (home / "prog" / "prog.py").write_text(PROGRAM)
    (home / "prog" / "probe.py").write_text(PROBE)
    return home


def _run(venv: Path, task: str = "report", *, extra_pth: str = "", sitecustomize: bool = False,
         env: dict[str, str] | None = None) -> dict:
    packages = Path(subprocess.run([str(venv / "env" / "bin" / "python"), "-c",
                                    "import site; print(site.getsitepackages()[0])"],
                                   capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    hook_files = [packages / "user_hook.py", packages / "user-hook.pth", packages / "sitecustomize.py"]
    try:
        if extra_pth or sitecustomize:
            hook_files[0].write_text(USER_HOOK)
        if extra_pth:
            hook_files[1].write_text(extra_pth)
        if sitecustomize:
            hook_files[2].write_text("import user_hook\nuser_hook.install()\n")
        run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", SITE_ENV, "COVERAGE_PROCESS_START")}
        run_env.update(env or {})
        out = subprocess.run([str(venv / "env" / "bin" / "python"), str(venv / "prog" / "prog.py"), task],
                             capture_output=True, text=True, timeout=150, cwd=venv, env=run_env)
    finally:
        for f in hook_files:
            f.unlink(missing_ok=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(200)
def test_a_worker_of_a_plain_parent_starts_without_site_and_sees_what_site_would_have_given_it(venv):
    seen = _run(venv)
    worker, parent = seen["worker"], seen["parent"]
    assert parent["no_site"] == 0
    assert worker["no_site"] == 1
    # What site gave the parent, the worker has: laneway through the editable finder, the venv's prefix, exit().
    assert worker["laneway"] == parent["laneway"] == str(ROOT / "laneway" / "__init__.py")
    assert worker["prefix"] == parent["prefix"] == str(venv / "env")
    assert worker["exit"] == parent["exit"] != "None"


@pytest.mark.timeout(200)
@pytest.mark.parametrize("how", ["pth", "sitecustomize"])
def test_a_worker_starts_with_site_when_site_ran_code_in_the_parent_that_laneway_does_not_know(venv, how):
    # Passes on code that always starts workers with site, too: the worker must import what the hook resolves.
    seen = _run(venv, extra_pth="import user_hook; user_hook.install()\n" if how == "pth" else "",
                sitecustomize=how == "sitecustomize")
    worker, parent = seen["worker"], seen["parent"]
    assert parent["hooked"] == worker["hooked"] == "from the finder site installed"
    assert worker["no_site"] == 0
    assert worker["laneway"] == parent["laneway"]


@pytest.mark.timeout(200)
@pytest.mark.parametrize("env", [{SITE_ENV: "always"}, {"COVERAGE_PROCESS_START": "/nonexistent/.coveragerc"}],
                         ids=["always", "coverage"])
def test_a_worker_starts_with_site_when_asked_to_or_when_coverage_follows_subprocesses(venv, env):
    assert _run(venv, env=env)["worker"]["no_site"] == 0


@pytest.mark.timeout(200)
def test_a_site_less_workers_own_spawn_children_start_with_site(venv):
    # The worker's -S is not passed down: its child imports laneway (the main module does) through the
    # editable finder, which only site installs there.
    seen = _run(venv, "grandchild")
    assert seen["worker"]["no_site"] == 0
    assert seen["worker"]["laneway"] == seen["parent"]["laneway"]


@pytest.mark.timeout(30)
def test_an_unknown_worker_site_mode_is_a_config_error_naming_the_accepted_ones(monkeypatch):
    monkeypatch.setenv(SITE_ENV, "never")
    with pytest.raises(ConfigError, match="auto, always"):
        site_less_setup(sys.executable)


@pytest.mark.timeout(30)
def test_workers_of_another_interpreter_start_with_its_site():
    # multiprocessing.set_executable(): what this process's site did says nothing about that one's.
    assert site_less_setup(sys.executable + "-other") is None
