"""The console's HTTP API against a real server: views, operations as events, and the security rules."""

from __future__ import annotations

import pytest

from laneway.console import OPERATIONS, TOKEN_HEADER, Console, is_loopback
from laneway.errors import ConfigError, ConsoleError, ConsoleOperationError
from laneway.lanes import RetryPolicy

from tests.waiting import wait_until

from .conftest import http, post_op


def test_state_shows_the_started_subsystems_and_never_starts_others(orch, lanes):
    console = orch.console.start(port=0)
    assert lanes.call("query", "add", {"a": 2, "b": 3}, wait_timeout=10) == 5
    status, state = http(console.url + "api/state")
    assert status == 200
    query = next(lane for lane in state["lanes"] if lane["name"] == "query")
    assert query["completed"] == 1 and query["p50"] is not None
    assert state["started"] == {"lanes": True, "pool": False, "router": False, "workflows": False}
    assert orch.started_pool() is None and orch.started_router() is None and orch.started_workflows() is None


def test_loopback_without_token_operates_and_each_operation_is_an_event(orch, lanes):
    console = orch.console.start(port=0)
    assert console.token is None
    with orch.events.subscribe("console.operation") as sub:
        assert post_op(console.url, "lane.pause", {"lane": "query"}) == (200, {"ok": True, "op": "lane.pause",
                                                                               "result": None})
        event = sub.get(timeout=10)
    assert lanes.lane_stats("query").paused
    assert (event.key, event.data["op"], event.data["args"], event.data["ok"]) == (
        "console.operation", "lane.pause", {"lane": "query"}, True)
    assert post_op(console.url, "lane.set_max_concurrency", {"lane": "query", "n": 3})[0] == 200
    assert lanes.lane_config("query").max_concurrency == 3
    assert post_op(console.url, "lane.resume", {"lane": "query"})[0] == 200
    assert not lanes.lane_stats("query").paused


def test_refused_operations_say_why_and_are_published_too(orch, lanes):
    console = orch.console.start(port=0)
    with orch.events.subscribe("console.operation") as sub:
        status, body = post_op(console.url, "lane.explode", {"lane": "query"})
        assert status == 400 and "known:" in body["error"] and "lane.pause" in body["error"]
        status, body = post_op(console.url, "lane.set_max_concurrency", {"lane": "query", "n": "many"})
        assert status == 400 and "n must be a non-empty int" in body["error"]
        status, body = post_op(console.url, "lane.pause", {"lane": "nope"})
        assert status == 404 and "nope" in body["error"]
        status, body = post_op(console.url, "lane.set_max_concurrency", {"lane": "query", "n": 0})
        assert status == 409 and "max concurrency" in body["error"]
        failed = [sub.get(timeout=10) for _ in range(3)]
    assert [e.data["ok"] for e in failed] == [False, False, False]


def test_an_operation_without_the_header_is_refused_even_on_loopback(orch, lanes):
    console = orch.console.start(port=0)
    status, body = http(console.url + "api/op/lane.pause", method="POST", body={"lane": "query"},
                        headers={"Content-Type": "application/json"})
    assert status == 403 and TOKEN_HEADER in body["error"]
    assert not lanes.lane_stats("query").paused


@pytest.mark.parametrize("headers, why", [
    ({"Origin": "http://evil.example"}, "cross-site"),
    ({"Sec-Fetch-Site": "cross-site"}, "cross-site"),
    ({"Content-Type": "text/plain"}, "JSON"),
    ({"Host": "evil.example"}, "not a loopback name"),
])
def test_cross_site_and_rebinding_requests_are_refused(orch, lanes, headers, why):
    console = orch.console.start(port=0)
    status, body = post_op(console.url, "lane.pause", {"lane": "query"}, headers=headers)
    assert status in (403, 415) and why in body["error"]
    assert not lanes.lane_stats("query").paused
    assert console.statistics().refused == 1


def test_a_given_token_is_required_for_everything_under_api(orch, lanes):
    secret = "s3cret-token-for-tests-0123456789"
    console = orch.console.start(port=0, token=secret)
    base = console.url.split("#")[0]
    assert console.url.endswith("#token=" + secret)
    assert http(base + "api/state")[0] == 401
    assert http(base + "api/state", headers={TOKEN_HEADER: "wrong-token-wrong-token"})[0] == 401
    assert http(base + "api/stream")[0] == 401
    assert post_op(base, "lane.pause", {"lane": "query"})[0] == 401
    assert post_op(base, "lane.pause", {"lane": "query"}, token="wrong-token-wrong-token")[0] == 401
    assert not lanes.lane_stats("query").paused
    assert http(base + "api/state", headers={TOKEN_HEADER: secret})[0] == 200
    assert post_op(base, "lane.pause", {"lane": "query"}, token=secret)[0] == 200
    assert lanes.lane_stats("query").paused
    # The page itself holds no data: it loads, then asks for the token.
    status, page = http(base)
    assert status == 200 and "laneway console" in page


def test_a_non_loopback_address_gets_a_generated_token(orch, lanes, capfd):
    # Bound to every interface, but only ever reached through loopback.
    console = orch.console.start(port=0, host="0.0.0.0")
    assert console.token and len(console.token) >= 32
    assert console.token in capfd.readouterr().err
    base = f"http://127.0.0.1:{console.port}/"
    assert http(base + "api/state")[0] == 401
    assert http(base + "api/state", headers={TOKEN_HEADER: console.token})[0] == 200


def test_start_checks_its_arguments_and_refuses_a_second_start(orch):
    with pytest.raises(ConfigError, match="port"):
        orch.console.start(port=70000)
    with pytest.raises(ConfigError, match="at least 16"):
        orch.console.start(port=0, token="short")
    console = orch.console.start(port=0)
    with pytest.raises(ConsoleError, match="already serves"):
        orch.console.start(port=0)
    with pytest.raises(ConsoleError, match="cannot listen"):
        Console(orch).start(port=console.port)
    console.stop()
    assert console.url == "" and not console.running
    again = orch.console.start(port=0)
    assert http(again.url + "api/state")[0] == 200


def test_shutdown_stops_the_console_with_a_page_connected(lanes, orch):
    import urllib.request

    console = orch.console.start(port=0)
    stream = urllib.request.urlopen(console.url + "api/stream", timeout=10)
    assert stream.readline() == b"event: snapshot\n"
    orch.shutdown()
    assert not console.running
    stream.close()


def test_dead_letters_show_reason_attempts_and_traceback_and_can_be_purged(orch, lanes):
    def broken():
        raise RuntimeError("the tool broke")

    lanes.tools.register(broken, name="broken")
    handle = lanes.submit("query", "broken", {}, retry=RetryPolicy.none())
    with pytest.raises(RuntimeError):
        handle.result(timeout=10)
    console = orch.console.start(port=0)
    letters = http(console.url + "api/state")[1]["dead_letters"]
    assert letters["total"] == 1
    (letter,) = letters["items"]
    assert letter["attempts"] == 1 and "the tool broke" in letter["error"]
    assert "Traceback" in letter["traceback"] and "in broken" in letter["traceback"]
    assert post_op(console.url, "dead_letter.purge", {"letter_id": letter["id"]})[0] == 200
    assert len(orch.dead_letters) == 0
    assert post_op(console.url, "dead_letter.purge", {"letter_id": letter["id"]})[0] == 404


def test_breakers_trip_and_reset_from_the_console(orch):
    orch.register_agent("upper", "executor", {"text"}, 2, str.upper)
    console = orch.console.start(port=0)
    assert post_op(console.url, "breaker.trip", {"agent_id": "upper"}) == (
        200, {"ok": True, "op": "breaker.trip", "result": "open"})
    agents = http(console.url + "api/state")[1]["agents"]
    assert agents[0]["breaker"] == "open" and agents[0]["role"].endswith("executor")
    assert post_op(console.url, "breaker.reset", {"agent_id": "upper"})[1]["result"] == "closed"
    assert post_op(console.url, "breaker.trip", {"agent_id": "ghost"})[0] == 404


def test_every_operation_names_its_arguments():
    assert set(OPERATIONS) == {
        "lane.pause", "lane.resume", "lane.set_max_concurrency", "command.cancel", "dead_letter.resubmit",
        "dead_letter.purge", "workflow.pause", "workflow.resume", "workflow.cancel", "workflow.rollback",
        "breaker.trip", "breaker.reset",
    }
    assert issubclass(ConsoleOperationError, ValueError)


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("10.0.0.1", False), ("example.org", False), ("", False),
])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


def test_events_are_followed_only_while_a_page_watches_and_per_command_ones_only_when_asked(orch, lanes):
    import urllib.request

    console = orch.console.start(port=0)
    bus = orch.events
    assert not bus.wants("queue.lane.idle") and not bus.wants("queue.command.completed")
    page = urllib.request.urlopen(console.url + "api/stream", timeout=10)
    assert page.readline() == b"event: snapshot\n"
    assert bus.wants("queue.lane.idle") and bus.wants("queue.command.failed")
    assert not bus.wants("queue.command.completed") and not bus.wants("queue.command.started")
    filtered = urllib.request.urlopen(console.url + "api/stream?events=queue.command.completed", timeout=10)
    assert filtered.readline() == b"event: snapshot\n"
    assert bus.wants("queue.command.completed") and not bus.wants("queue.command.started")
    filtered.close()
    page.close()
    # The server notices a page has gone at its next write (the next snapshot tick).
    def stopped_following() -> bool:
        lanes.call("query", "add", {"a": 1, "b": 1}, wait_timeout=10)  # something to write: a tick's events
        return not (bus.wants("queue.lane.idle") or bus.wants("queue.command.completed"))

    wait_until(stopped_following, 20, what="the console to stop following events after its pages closed")
    assert console.statistics().clients == 0
