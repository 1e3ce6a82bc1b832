"""The tool registry: @tool specs, declared and inferred parameters, checks before anything runs."""

from __future__ import annotations

import pytest

from laneway.errors import ConfigError, ToolNotFound, ToolParameterError
from laneway.lanes import Priority, ToolParam, ToolRegistry, default_registry, tool
from tests.lanes.support import lane, start_lanes


def test_decorator_records_every_option_and_returns_the_function():
    reg = ToolRegistry()

    @tool(
        name="web.search",
        description="Search the web",
        parameters=[{"name": "q", "type": "string", "description": "query"}, ToolParam("limit", int, required=False)],
        capabilities=["web", "search"],
        category="retrieval",
        parallel_allowed=True,
        timeout=12.5,
        priority=Priority.HIGH,
        registry=reg,
    )
    def search(q, limit=10):
        return [q] * limit

    spec = reg.get("web.search")
    assert search("x", 2) == ["x", "x"]  # still a plain function
    assert search.__laneway_tool__ is spec
    assert (spec.description, spec.category, spec.capabilities) == ("Search the web", "retrieval", frozenset({"web", "search"}))
    assert (spec.parallel_allowed, spec.timeout, spec.priority, spec.cpu_bound) == (True, 12.5, Priority.HIGH, False)
    assert [(p.name, p.required) for p in spec.parameters] == [("q", True), ("limit", False)]
    assert spec.schema()["parameters"]["required"] == ["q"]
    assert reg.specs(capability="web") == [spec] and reg.specs(category="other") == []


def test_bare_decorator_infers_parameters_and_registers_in_the_default_registry():
    @tool
    def lanes_test_bare_tool(city: str, days: int = 3, cancel_token=None) -> str:
        """Weather forecast."""
        return city

    try:
        spec = default_registry.get("lanes_test_bare_tool")
        assert spec.description == "Weather forecast."
        assert [(p.name, p.type, p.required) for p in spec.parameters] == [("city", str, True), ("days", int, False)]
        assert spec.takes_token and not spec.is_async and not spec.parallel_allowed
    finally:
        default_registry.unregister("lanes_test_bare_tool")


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "missing required parameter 'a'"),
        ({"a": 1}, "missing required parameter 'b'"),
        ({"a": "1", "b": 2}, "parameter 'a' must be int"),
        ({"a": True, "b": 2}, "parameter 'a' must be int"),  # bool is not an int to a caller
        ({"a": 1, "b": 2, "c": 3}, "unknown parameter 'c'"),
        ({"a": 1, "b": 2, "ratio": "x"}, "parameter 'ratio' must be number"),
    ],
)
def test_bad_parameters_fail_typed_before_anything_runs(orch, params, message):
    lanes = start_lanes(orch, [lane("work")])
    ran = []

    def add(a: int, b: int, ratio: float = 1.0) -> float:
        ran.append(1)
        return (a + b) * ratio

    lanes.tools.register(add, parameters={"a": int, "b": int, "ratio": {"type": "number", "required": False}})
    with pytest.raises(ToolParameterError, match=message):
        lanes.submit("work", "add", params)
    assert lanes.lane_stats("work").pending == 0 and not ran
    assert lanes.submit("work", "add", {"a": 1, "b": 2, "ratio": 2}).result(timeout=20) == 6  # int for a float is fine


def test_unknown_tool_and_name_collisions(orch):
    lanes = start_lanes(orch, [lane("work")])
    with pytest.raises(ToolNotFound):
        lanes.submit("work", "nope")
    lanes.tools.register(lambda: 1, name="one")
    with pytest.raises(ConfigError, match="already taken"):
        lanes.tools.register(lambda: 2, name="one")


def test_bad_declarations_are_config_errors():
    reg = ToolRegistry()
    with pytest.raises(ConfigError, match="unknown type name"):
        reg.register(lambda q: q, name="t", parameters=[{"name": "q", "type": "strng"}])

    async def fetch(url: str) -> str:
        return url

    with pytest.raises(ConfigError, match="cannot be cpu_bound"):
        reg.register(fetch, cpu_bound=True)
    with pytest.raises(ConfigError, match="priority must be a Priority"):
        reg.register(lambda: 1, name="p", priority="high")


def test_a_managers_registry_falls_back_to_its_parent_and_imports_defining_modules():
    parent = ToolRegistry()
    parent.register(lambda: "from parent", name="shared")
    child = ToolRegistry(parent=parent)
    assert child.get("shared").fn() == "from parent"
    assert "shared" in child and child.names() == ["shared"]
    with pytest.raises(ToolNotFound):
        child.resolve("durable_echo")
    # resolve() imports the module a persisted command names, whose @tool registers the tool.
    spec = ToolRegistry(parent=default_registry).resolve("durable_echo", "tests.lanes.durable_tools")
    assert spec.module == "tests.lanes.durable_tools"


def test_inferred_parameters_of_a_kwargs_function_accept_extra_keys():
    reg = ToolRegistry()
    spec = reg.register(lambda a, **rest: (a, rest), name="open")
    spec.validate({"a": 1, "anything": 2})
    with pytest.raises(ToolParameterError, match="missing required parameter 'a'"):
        spec.validate({"anything": 2})
    declared = reg.register(lambda a, **rest: a, name="closed", parameters=[{"name": "a"}])
    with pytest.raises(ToolParameterError, match="unknown parameter"):
        declared.validate({"a": 1, "anything": 2})


def test_find_looks_only_in_the_registry_itself():
    parent = ToolRegistry()
    parent.register(lambda: 1, name="inherited")
    child = ToolRegistry(parent=parent)
    spec = child.register(lambda: 2, name="own")
    assert child.find("own") is spec
    assert child.find("inherited") is None and child.get("inherited").name == "inherited"
    assert child.find("missing") is None
