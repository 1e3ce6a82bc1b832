"""Fixtures for the console tests: a real orchestrator, a started console, and headless Chromium."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from laneway import Orchestrator
from laneway.lanes import ToolRegistry

pytest.importorskip("aiohttp", reason="the console extra (aiohttp) is not installed: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
#: Where the browser tests save their screenshots (gitignored).
SHOTS = ROOT / ".screenshots" / "console"


@pytest.fixture
def orch():
    o = Orchestrator(name="console-test", shutdown_timeout=5.0, handle_signals=False)
    yield o
    o.shutdown()


@pytest.fixture
def gate():
    """Tools wait on it, so commands stay running until the test lets them go."""
    g = threading.Event()
    yield g
    g.set()


@pytest.fixture
def lanes(orch, gate):
    lanes = orch.start_lanes(tools=ToolRegistry())
    lanes.tools.register(lambda a, b: a + b, name="add")
    lanes.tools.register(lambda: gate.wait(30), name="held")
    return lanes


def http(url, *, method="GET", body=None, headers=None, timeout=10):
    """(status, decoded JSON or text) of one request; HTTP errors are answers, not exceptions."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def post_op(base, op, args, *, token="none", headers=None):
    h = {"Content-Type": "application/json", "X-Laneway-Token": token}
    h.update(headers or {})
    return http(base + "api/op/" + op, method="POST", body=args, headers=h)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium from Debian's packages, driven by selenium; skipped with the reason when absent."""
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # No network here: without these, Chromium keeps trying to reach its services.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
