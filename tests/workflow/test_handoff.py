"""Handoff protocol: JSON Schema validation listing every violation, and a lossless round trip."""

import json

import pytest

from laneway.errors import HandoffValidationError
from laneway.workflow import (
    HANDOFF_SCHEMA,
    TaskDefinition,
    create_handoff,
    deserialize_handoff,
    serialize_handoff,
    validate_handoff,
)

from .conftest import WAIT


def test_round_trip_is_lossless():
    h = create_handoff(
        "researcher",
        "writer",
        "Draft a summary of the findings",
        {"sources": ["a", "b"], "depth": {"max": 3}},
        priority=8,
        deadline_s=120.5,
        constraints=["no more than 200 words"],
        artifacts=[{"name": "notes", "uri": "file:///tmp/notes.md", "media_type": "text/markdown"}],
        workflow_id="wf-1",
        task_id="research",
        metadata={"trace": "abc"},
    )
    text = serialize_handoff(h)
    assert json.loads(text)["protocol_version"] == "1.0"
    again = deserialize_handoff(text)
    assert again == h
    assert serialize_handoff(again) == text


def test_every_violation_is_listed_with_its_field():
    with pytest.raises(HandoffValidationError) as info:
        create_handoff(
            "bad id with spaces",
            "",
            "",
            {"ok": 1},
            priority=11,
            deadline_s=-1,
            artifacts=[{"name": "x"}],
        )
    v = info.value.violations
    fields = sorted({x.split(":")[0] for x in v})
    assert fields == ["$.artifacts[0]", "$.deadline_s", "$.priority", "$.source", "$.target", "$.task_description"]
    assert len(v) == 6 and "6 violations" in str(info.value)
    assert any("'uri' is a required property" in x for x in v)


def test_non_json_context_is_a_violation():
    with pytest.raises(HandoffValidationError) as info:
        create_handoff("a", "b", "do it", {"when": object()})
    assert any(x.startswith("$.context: not JSON-serializable") for x in info.value.violations)


def test_deserialize_rejects_bad_json_and_tampered_documents():
    with pytest.raises(HandoffValidationError, match="not valid JSON"):
        deserialize_handoff("{not json")
    doc = json.loads(serialize_handoff(create_handoff("a", "b", "do it")))
    del doc["target"]
    doc["surprise"] = True
    doc["protocol_version"] = "9"
    with pytest.raises(HandoffValidationError) as info:
        deserialize_handoff(json.dumps(doc))
    text = " | ".join(info.value.violations)
    assert "'target' is a required property" in text
    assert "surprise" in text and "protocol_version" in text


def test_validate_handoff_accepts_a_minimal_document_and_the_schema_is_public():
    validate_handoff(json.loads(serialize_handoff(create_handoff("a", "b", "go"))))
    assert "task_description" in HANDOFF_SCHEMA["required"]


def test_task_context_builds_handoffs_tagged_with_its_workflow(engine):
    engine.register_executor("researcher", lambda ctx: serialize_handoff(ctx.handoff("writer", "write it up", {"n": 1})))
    wf = engine.create_workflow([TaskDefinition("research", agent_type="researcher")])
    h = deserialize_handoff(wf.start().wait(WAIT).results["research"])
    assert (h.source, h.target, h.workflow_id, h.task_id, dict(h.context)) == (
        "researcher", "writer", wf.id, "research", {"n": 1}
    )
