"""Starting a worker interpreter without ``site`` (``python -S``) when that changes nothing the worker could see.

``site`` costs a worker ~14 ms of its ~60 ms start here, ~11.6 ms of it in the one ``.pth``
line of laneway's own editable install (``pip install -e .``, the README's set-up): its finder
imports pathlib, urllib.parse, importlib.util, fnmatch and re to map one name, ``laneway``, to
one directory. A worker's start is the critical path of a pool's first result, so the parent
decides, at each launch, whether a site-less start is equivalent, and if so starts the worker
with ``-S`` plus :func:`site_less_setup`'s code, which the worker runs once ``sys.path`` is the
parent's (before spawn's preparation imports the program's main module):

- what ``site.main()`` sets besides ``sys.path`` (which spawn's preparation sets anyway):
  ``sys.prefix`` and ``sys.exec_prefix`` (a venv's), ``site``'s own globals (``PREFIXES``,
  ``ENABLE_USER_SITE``, ``USER_SITE``, ``USER_BASE``), the builtins ``exit``, ``quit``,
  ``help``, ``copyright``, ``credits``, ``license``, and ``sys.__interactivehook__``;
- the ``.pth`` files' code, each file only if it is one of :data:`RUN_IN_WORKER` (setuptools'
  ``distutils-precedence.pth``, run by ``site.addpackage`` as ``site`` would), and in place of
  laneway's editable-install finder a finder of a few lines for the same name and directory,
  appended at the end of ``sys.meta_path`` as that one is;
- the worker's own children (a task that uses ``multiprocessing``) start with ``site`` again:
  the worker's ``-S`` is not passed down with the interpreter flags.

The start is site-less only if everything ``site`` did in the parent is reproduced that way:
the parent ran ``site`` itself (no ``-S``); every ``.pth`` file in the directories ``site``
processed (the site-packages of ``site.PREFIXES``, the user site if enabled) either holds only
path lines (``sys.path`` comes from the parent) or is one of the two above, laneway's editable
finder mapping ``laneway`` alone, with no namespace packages; no ``sitecustomize`` or
``usercustomize`` module is loaded or findable; no ``COVERAGE_PROCESS_START`` (coverage's
subprocess hook runs from a ``.pth`` or ``sitecustomize``). Otherwise, say a package installed
with ``pip install -e`` of its own (its finder is a ``.pth`` line), coverage, or
``sitecustomize``, the worker starts with ``site`` as every ``spawn`` child does. What still
differs in a site-less worker is ``sys.flags.no_site`` (1) and ``'site'``'s ``main()`` never
having run (``site`` itself is imported).

``LANEWAY_WORKER_SITE=always`` in the parent's environment starts every worker with ``site``;
``auto`` (or unset) decides as above.
"""

from __future__ import annotations

import functools
import os
import sys

from laneway.errors import ConfigError

#: The parent's environment variable that chooses how workers start: ``auto`` (the default) or ``always`` (with site).
SITE_ENV = "LANEWAY_WORKER_SITE"
SITE_MODES = ("auto", "always")

#: ``.pth`` files whose code a site-less worker runs itself (through ``site.addpackage``, as ``site`` does):
#: small and known. setuptools' shim puts its own ``distutils`` ahead of the standard library's.
RUN_IN_WORKER = ("distutils-precedence.pth",)

_PACKAGE = __name__.partition(".")[0]

#: laneway's own editable install: a ``.pth`` file whose one line imports and installs its finder module.
_EDITABLE_PTH = f"__editable__.{_PACKAGE}-"

#: What the worker runs, ``{...}`` filled from the parent: ``site.main()``'s work without its ``.pth`` scan.
_SETUP = """\
import sys
sys.prefix, sys.exec_prefix = {prefix!r}, {exec_prefix!r}
import site
site.PREFIXES[:] = {prefixes!r}
site.ENABLE_USER_SITE, site.USER_SITE, site.USER_BASE = {enable_user_site!r}, {user_site!r}, {user_base!r}
site.setquit()
site.setcopyright()
site.sethelper()
if not sys.flags.isolated:
    site.enablerlcompleter()
for kind, where, name in {pth!r}:
    if kind == "run":
        site.addpackage(where, name, None)
        continue
    from _frozen_importlib_external import PathFinder, spec_from_file_location

    class LanewayEditableFinder:  # setuptools' finder for one name: the package, then its children there
        @staticmethod
        def find_spec(fullname, path=None, target=None, _root=where, _name=name):
            if fullname == _name:
                init = _root + "/__init__.py"
                return spec_from_file_location(fullname, init) if __import__("os").path.exists(init) else None
            if fullname.rpartition(".")[0] == _name:
                return PathFinder.find_spec(fullname, [_root])
            return None

    sys.meta_path.append(LanewayEditableFinder)
import subprocess
from multiprocessing import util

def _flags_with_site(_flags=subprocess._args_from_interpreter_flags):
    args = _flags()
    if "-S" in args:
        args.remove("-S")
    return args

subprocess._args_from_interpreter_flags = util._args_from_interpreter_flags = _flags_with_site
"""


def site_less_setup(executable: str | bytes) -> str | None:
    """The code a worker started with ``-S`` runs to stand for the ``site`` this process ran; None: start it with site.

    ``executable`` is the worker's interpreter: another than this one (``multiprocessing.set_executable``)
    has a ``site`` of its own, so its workers start with it.

    Raises:
        ConfigError: :data:`SITE_ENV` holds something other than ``auto`` or ``always``.
    """
    mode = os.environ.get(SITE_ENV, "") or "auto"
    if mode not in SITE_MODES:
        raise ConfigError(f"{SITE_ENV}={mode!r}: accepted values are {', '.join(SITE_MODES)}")
    if (mode == "always" or sys.flags.no_site or "site" not in sys.modules or os.fsdecode(executable) != sys.executable
            or os.environ.get("COVERAGE_PROCESS_START")):
        return None
    import site

    for name in ("sitecustomize", "usercustomize"):
        if name in sys.modules or _findable(name):
            return None
    dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
    if site.ENABLE_USER_SITE and site.USER_SITE and os.path.isdir(site.USER_SITE):
        dirs.insert(0, site.USER_SITE)  # site processes the user site first
    try:
        stamps = tuple((d, os.stat(d).st_mtime_ns) for d in dirs)
        pth = _pth_actions(stamps)
    except OSError:
        return None
    if pth is None:
        return None
    return _SETUP.format(prefix=sys.prefix, exec_prefix=sys.exec_prefix, prefixes=list(site.PREFIXES),
                         enable_user_site=site.ENABLE_USER_SITE, user_site=site.USER_SITE, user_base=site.USER_BASE,
                         pth=pth)


def _findable(name: str) -> bool:
    from importlib.machinery import PathFinder

    try:
        return PathFinder.find_spec(name) is not None
    except (ImportError, ValueError):
        return True  # unsure: start with site


@functools.lru_cache(maxsize=8)
def _pth_actions(stamps: tuple[tuple[str, int], ...]) -> list[tuple[str, str, str]] | None:
    """What a site-less worker does for the ``.pth`` files in these directories, in ``site``'s order; None: it cannot.

    Cached by each directory's modification time, which adding or removing a file changes.
    """
    actions: list[tuple[str, str, str]] = []
    for sitedir, _ in stamps:
        for name in sorted(n for n in os.listdir(sitedir) if n.endswith(".pth")):
            code = _code_lines(os.path.join(sitedir, name))
            if not code:
                continue
            if name in RUN_IN_WORKER:
                actions.append(("run", sitedir, name))
            elif name.startswith(_EDITABLE_PTH) and (root := _editable_root(code)) is not None:
                actions.append(("finder", root, _PACKAGE))
            else:
                return None
    return actions


def _code_lines(path: str) -> list[str]:
    """The lines of a ``.pth`` file that ``site`` executes (those starting with ``import``)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.startswith(("import ", "import\t"))]


def _editable_root(code: list[str]) -> str | None:
    """The directory laneway's editable-install finder maps ``laneway`` to, if installing it is all these lines do."""
    # setuptools writes "import __editable___<name>_<version>_finder; __editable___<name>_<version>_finder.install()"
    parts = [p.strip() for p in code[0].removeprefix("import ").split(";") if p.strip()] if len(code) == 1 else []
    ok = len(parts) == 2 and parts[0].startswith(f"__editable___{_PACKAGE}_") and parts[0].isidentifier() \
        and parts[1] == f"{parts[0]}.install()"
    module = sys.modules.get(parts[0]) if ok else None
    mapping = getattr(module, "MAPPING", None)
    if isinstance(mapping, dict) and set(mapping) == {_PACKAGE} and isinstance(mapping[_PACKAGE], str) \
            and getattr(module, "NAMESPACES", None) == {}:
        return mapping[_PACKAGE]
    return None
