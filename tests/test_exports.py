"""Every public name imports from where the docs say, and carries a docstring (trio's test_exports idea)."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

SUBPACKAGES = [
    "laneway",
    "laneway.core",
    "laneway.actors",
    "laneway.pool",
    "laneway.router",
    "laneway.breakers",
    "laneway.lanes",
    "laneway.workflow",
    "laneway.cluster",
    "laneway.store",
    "laneway.observe",
]


@pytest.mark.parametrize("modname", SUBPACKAGES)
def test_public_names_import_and_are_documented(modname):
    module = importlib.import_module(modname)
    assert module.__doc__, f"{modname} has no module docstring"
    names = getattr(module, "__all__", None)
    assert names is not None, f"{modname} has no __all__"
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{modname}.{name} has no docstring"


def test_every_error_derives_from_the_root():
    from laneway import errors

    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__:
            # Terminated is a SystemExit so that `except Exception` cannot swallow a SIGTERM.
            assert issubclass(obj, errors.LanewayError) or obj is errors.Terminated, name


def test_importing_laneway_starts_nothing_and_never_imports_ray():
    code = (
        "import sys, threading, laneway, laneway.pool, laneway.lanes, laneway.router, laneway.workflow;"
        "assert 'ray' not in sys.modules, 'ray imported';"
        "assert threading.active_count() == 1, threading.enumerate()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_dir_lists_the_names_a_package_loads_on_first_use_without_loading_them():
    # laneway.core, .actors and .store serve part of their names lazily (PEP 562): dir() (a REPL's
    # completion, help()) must still show them, and must not load them to do so.
    code = (
        "import sys, laneway, laneway.core, laneway.actors, laneway.store, laneway.worker\n"
        "for m in (laneway, laneway.core, laneway.actors, laneway.store, laneway.worker):\n"
        "    missing = set(m.__all__) - set(dir(m))\n"
        "    assert not missing, (m.__name__, missing)\n"
        "loaded = {'laneway.core._retry', 'laneway.core._progress', 'laneway.actors._supervisor',\n"
        "          'laneway.store._postgres'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
