"""The console in a real browser (headless Chromium driven by selenium): it loads, stays live, and operates.

Screenshots of the views land in .screenshots/console/ (gitignored).
"""

from __future__ import annotations

import threading

import pytest

from laneway.lanes import RetryPolicy
from laneway.workflow import TaskDefinition, TaskState, WorkflowState

from tests.waiting import wait_until as poll_until  # wait_until here is selenium's

from .conftest import SHOTS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

WAIT_S = 30


def wait_until(driver, condition, what):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=f"the page did not show {what} within {WAIT_S}s"
    )


def text_of(driver, css):
    from selenium.webdriver.common.by import By

    return lambda d: (els := d.find_elements(By.CSS_SELECTOR, css)) and els[0].text


def click(driver, css):
    """Click what the page shows; the page re-renders a section when its data changes, so retry a stale element."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt(d):
        try:
            els = d.find_elements(By.CSS_SELECTOR, css)
            if not els or not els[0].is_displayed():
                return False
            els[0].click()
            return True
        except StaleElementReferenceException:
            return False

    wait_until(driver, attempt, f"a clickable {css}")


def open_console(driver, url):
    driver.get(url)
    wait_until(driver, lambda d: d.find_element("id", "conn").text == "live", "a live connection")


def test_the_page_loads_and_live_counts_change_while_commands_run(orch, lanes, gate, browser):
    console = orch.console.start(port=0)
    open_console(browser, console.url)
    assert browser.title == "laneway console"
    completed = "#lane-query td.completed"
    wait_until(browser, lambda d: text_of(d, completed)(d) == "0", "lane query with 0 done")
    held = [lanes.submit("query", "held", {}) for _ in range(3)]
    wait_until(browser, lambda d: text_of(d, "#lane-query td.active")(d) == "3", "3 commands running")
    handles = [lanes.submit("query", "add", {"a": i, "b": 1}) for i in range(40)]
    for h in handles:
        h.result(timeout=WAIT_S)
    wait_until(browser, lambda d: text_of(d, completed)(d) == "40", "40 commands done")
    browser.find_element("id", "lanes-card").screenshot(str(SHOTS / "lanes.png"))
    gate.set()
    for h in held:
        h.result(timeout=WAIT_S)
    wait_until(browser, lambda d: text_of(d, completed)(d) == "43", "43 commands done")
    # The event view leaves out per-command success events (thousands a second under load) unless
    # its key filter asks for them; asked, they stream, and the filter narrows the view.
    orch.events.publish("test.marker", "the test")
    wait_until(browser, lambda d: "test.marker" in d.find_element("id", "events").text, "other events")
    assert "queue.command.completed" not in browser.find_element("id", "events").text
    browser.find_element("id", "event-filter").send_keys("queue.command.completed")

    def completions_shown(d):
        lanes.submit("query", "add", {"a": 0, "b": 1}).result(timeout=WAIT_S)  # until the page follows them
        return "queue.command.completed" in d.find_element("id", "events").text

    wait_until(browser, completions_shown, "completed events once the filter asks")
    assert "test.marker" not in browser.find_element("id", "events").text
    browser.save_screenshot(str(SHOTS / "overview.png"))


def test_a_dead_letter_is_resubmitted_from_the_page_and_then_completes(orch, lanes, browser):
    broken = threading.Event()
    broken.set()

    def flaky(x):
        if broken.is_set():
            raise RuntimeError(f"upstream unavailable for {x}")
        return x * 2

    lanes.tools.register(flaky, name="flaky")
    handle = lanes.submit("query", "flaky", {"x": 21}, retry=RetryPolicy.none())
    with pytest.raises(RuntimeError):
        handle.result(timeout=WAIT_S)
    (letter,) = orch.dead_letters.list()
    console = orch.console.start(port=0)
    open_console(browser, console.url)
    wait_until(browser, lambda d: text_of(d, "#letters-count")(d) == "1", "one dead letter")
    card = browser.find_element("id", "letters-card")
    assert "upstream unavailable for 21" in card.text and "1 attempts" in card.text
    click(browser, f"#dl-{letter.id} details summary")  # the traceback opens
    wait_until(browser, lambda d: "Traceback" in d.find_element("id", "letters").text, "the traceback")
    card.screenshot(str(SHOTS / "dead_letters.png"))
    broken.clear()
    with orch.events.subscribe("queue.command.completed") as done:
        click(browser, f'#dl-{letter.id} button[data-op="dead_letter.resubmit"]')
        event = done.wait_for(lambda e: e.data.get("command_id") == letter.work_id, timeout=WAIT_S)
    assert event.data["command_id"] == handle.command_id
    wait_until(browser, lambda d: text_of(d, "#letters-count")(d) == "0", "no dead letters left")
    assert len(orch.dead_letters) == 0


def test_a_workflow_is_paused_and_resumed_from_the_page(orch, browser):
    engine = orch.start_workflows()
    release = threading.Event()

    def step(ctx):
        if ctx.task_id == "fetch":
            assert release.wait(WAIT_S), "the test never released fetch"
        return ctx.task_id

    engine.register_executor("step", step)
    wf = engine.create_workflow([
        TaskDefinition("fetch", agent_type="step"),
        TaskDefinition("parse", agent_type="step", dependencies=["fetch"]),
        TaskDefinition("index", agent_type="step", dependencies=["parse"]),
        TaskDefinition("summarise", agent_type="step", dependencies=["parse"]),
    ], workflow_id="wf-docs", name="ingest docs").start()
    try:
        console = orch.console.start(port=0)
        open_console(browser, console.url)
        wait_until(browser, lambda d: d.find_elements("css selector", '#wf-wf-docs g.task[data-task="fetch"]'
                                                                      '[data-state="running"]'), "fetch running")
        click(browser, '#wf-wf-docs button[data-op="workflow.pause"]')
        poll_until(lambda: wf.status().state is WorkflowState.PAUSED, WAIT_S, what="the pause")
        release.set()
        poll_until(lambda: wf.status().tasks["fetch"].state is TaskState.COMPLETED, WAIT_S, what="fetch to finish")
        wait_until(browser, lambda d: d.find_elements("css selector", '#wf-wf-docs[data-state="paused"] '
                                                                      'g.task[data-task="fetch"][data-state="completed"]'),
                   "the paused workflow with fetch completed")
        assert wf.status().tasks["parse"].state is TaskState.PENDING  # paused: nothing new started
        click(browser, '#wf-wf-docs button[data-history="wf-docs"]')
        wait_until(browser, lambda d: d.find_elements("css selector", "#wf-wf-docs table tr"), "the history")
        browser.find_element("id", "workflows-card").screenshot(str(SHOTS / "workflow_paused.png"))
        click(browser, '#wf-wf-docs button[data-op="workflow.resume"]')
        assert wf.wait(timeout=WAIT_S).state is WorkflowState.COMPLETED
        wait_until(browser, lambda d: d.find_elements("css selector", '#wf-wf-docs[data-state="completed"]'),
                   "the completed workflow")
    finally:
        release.set()


def test_a_request_without_the_token_is_refused(orch, lanes, browser):
    secret = "browser-test-token-0123456789abcdef"
    console = orch.console.start(port=0, token=secret)
    open_console(browser, console.url)  # the token rides in the fragment...
    assert "#token" not in browser.current_url  # ...and leaves the address bar at once
    assert browser.execute_script("return sessionStorage.getItem('laneway-console-token')") == secret
    fetch = """
        const [path, headers, done] = arguments;
        fetch(path, {method: "POST", headers: headers, body: JSON.stringify({lane: "query"})})
          .then((r) => done(r.status), (e) => done(String(e)));
    """
    assert browser.execute_async_script(fetch, "/api/op/lane.pause", {"Content-Type": "application/json"}) == 401
    assert browser.execute_async_script(
        fetch, "/api/op/lane.pause", {"Content-Type": "application/json", "X-Laneway-Token": "not-the-token-at-all"}
    ) == 401
    assert not lanes.lane_stats("query").paused
    # The page itself, holding the token, operates.
    click(browser, '#lane-query button[data-op="lane.pause"]')
    poll_until(lambda: lanes.lane_stats("query").paused, WAIT_S, what="the pause from the page")
    wait_until(browser, lambda d: "paused" in text_of(d, "#lane-query td")(d), "the lane shown paused")
    assert console.statistics().refused == 2
