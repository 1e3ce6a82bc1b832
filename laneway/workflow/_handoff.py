"""The handoff protocol: one agent passes a piece of work, with its context, to another.

A handoff is a JSON document validated against :data:`HANDOFF_SCHEMA` (JSON
Schema 2020-12, checked with the ``jsonschema`` package) when it is created
and again when it is read back, so a malformed message from another process
or service is rejected with every violation listed, not just the first.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Mapping, Sequence

import attrs
import jsonschema

from laneway.errors import HandoffValidationError

PROTOCOL_VERSION = "1.0"

_ID = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[A-Za-z0-9_.:@/-]*$"}
_OPTIONAL_ID = {**_ID, "type": ["string", "null"]}  # string keywords do not apply to null

HANDOFF_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "laneway handoff",
    "type": "object",
    "additionalProperties": False,
    "required": ["protocol_version", "handoff_id", "source", "target", "task_description", "context", "created_at"],
    "properties": {
        "protocol_version": {"const": PROTOCOL_VERSION},
        "handoff_id": _ID,
        "source": _ID,
        "target": _ID,
        "task_description": {"type": "string", "minLength": 1, "maxLength": 20_000},
        "context": {"type": "object"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 10},
        "deadline_s": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "constraints": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "artifacts": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "uri"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "uri": {"type": "string", "minLength": 1},
                    "media_type": {"type": "string"},
                },
            },
        },
        "workflow_id": _OPTIONAL_ID,
        "task_id": _OPTIONAL_ID,
        "created_at": {"type": "number", "minimum": 0},
        "metadata": {"type": "object"},
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(HANDOFF_SCHEMA)


@attrs.frozen
class Handoff:
    """A validated handoff message; build one with :func:`create_handoff`.

    Attributes:
        handoff_id: unique id of the message.
        source: the agent handing the work off.
        target: the agent (or role) receiving it.
        task_description: what the target should do, in words.
        context: what the target needs to know (JSON object).
        priority: 0 (lowest) to 10.
        deadline_s: seconds the target has, or None.
        constraints: rules the target must respect.
        artifacts: files or resources, each ``{"name", "uri", "media_type"?}``.
        workflow_id: the workflow this work belongs to, if any.
        task_id: the workflow task handing off, if any.
        created_at: wall-clock seconds since the epoch (for humans and audit).
        metadata: free-form extra fields (JSON object).
    """

    handoff_id: str
    source: str
    target: str
    task_description: str
    context: Mapping[str, Any]
    priority: int = 5
    deadline_s: float | None = None
    constraints: tuple[str, ...] = ()
    artifacts: tuple[Mapping[str, str], ...] = ()
    workflow_id: str | None = None
    task_id: str | None = None
    created_at: float = 0.0
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``protocol_version`` included)."""
        doc = attrs.asdict(self, recurse=False)
        doc["constraints"] = list(self.constraints)
        doc["artifacts"] = [dict(a) for a in self.artifacts]
        doc["context"] = dict(self.context)
        doc["metadata"] = dict(self.metadata)
        return {"protocol_version": PROTOCOL_VERSION, **doc}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Handoff:
        """Validate ``doc`` and build the handoff.

        Raises:
            HandoffValidationError: listing every violation.
        """
        validate_handoff(doc)
        fields = {k: v for k, v in doc.items() if k != "protocol_version"}
        fields["constraints"] = tuple(fields.get("constraints", ()))
        fields["artifacts"] = tuple(fields.get("artifacts", ()))
        return cls(**fields)


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"${path}"


def handoff_violations(doc: Any) -> list[str]:
    """Every schema violation of ``doc``, as ``"$.field: message"`` texts, sorted by field path."""
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    violations = [f"{_where(e)}: {e.message}" for e in errors]
    if isinstance(doc, Mapping):
        for field in ("context", "metadata"):
            try:
                json.dumps(doc.get(field), allow_nan=False)
            except (TypeError, ValueError) as exc:
                violations.append(f"$.{field}: not JSON-serializable ({exc})")
    return violations


def validate_handoff(doc: Any) -> None:
    """Check a handoff document against :data:`HANDOFF_SCHEMA`.

    Raises:
        HandoffValidationError: with ``violations`` listing every problem.
    """
    violations = handoff_violations(doc)
    if violations:
        raise HandoffValidationError(
            f"invalid handoff ({len(violations)} violation{'s' * (len(violations) > 1)}): " + "; ".join(violations),
            tuple(violations),
        )


def create_handoff(
    source: str,
    target: str,
    task_description: str,
    context: Mapping[str, Any] | None = None,
    *,
    priority: int = 5,
    deadline_s: float | None = None,
    constraints: Sequence[str] = (),
    artifacts: Sequence[Mapping[str, str]] = (),
    workflow_id: str | None = None,
    task_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    handoff_id: str | None = None,
) -> Handoff:
    """Build and validate a handoff from ``source`` to ``target``.

    Raises:
        HandoffValidationError: listing every violation (bad ids, empty
            description, priority out of 0..10, non-JSON context, ...).

    Example:
        >>> h = create_handoff("researcher", "writer", "Draft the summary", {"sources": 3})
        >>> deserialize_handoff(serialize_handoff(h)) == h
        True
    """
    doc = {
        "protocol_version": PROTOCOL_VERSION,
        "handoff_id": handoff_id if handoff_id is not None else f"ho-{uuid.uuid4().hex}",
        "source": source,
        "target": target,
        "task_description": task_description,
        "context": {} if context is None else context,
        "priority": priority,
        "deadline_s": deadline_s,
        "constraints": list(constraints) if not isinstance(constraints, str) else constraints,
        "artifacts": [dict(a) if isinstance(a, Mapping) else a for a in artifacts],
        "workflow_id": workflow_id,
        "task_id": task_id,
        "created_at": time.time(),
        "metadata": {} if metadata is None else metadata,
    }
    return Handoff.from_dict(doc)


def serialize_handoff(handoff: Handoff) -> str:
    """The handoff as a JSON text (keys sorted, so equal handoffs serialize equally)."""
    return json.dumps(handoff.to_dict(), sort_keys=True, allow_nan=False)


def deserialize_handoff(text: str | bytes) -> Handoff:
    """Parse and validate a JSON handoff.

    Raises:
        HandoffValidationError: the text is not JSON, or the document violates the schema.
    """
    try:
        doc = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise HandoffValidationError(f"handoff is not valid JSON: {exc}", (f"$: not valid JSON ({exc})",)) from None
    return Handoff.from_dict(doc)
