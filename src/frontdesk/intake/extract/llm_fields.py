"""LLM extraction of a label's complex fields, in the same call as the label answer (never a second one).

``labels.<label>.extract_schema`` is a JSON Schema (``type: object``) of what the label needs, e.g.
for ``billing_dispute``: amount, date, merchant, requested outcome. When a message escalates to the
LLM tier, the answer schema gains an optional ``fields`` object with one entry per candidate label
that has a schema (:func:`extend_answer_schema`); the model fills the entry of the label it chooses.
:func:`validate_fields` then checks that entry against the chosen label's schema, property by
property: a value that breaks the schema is dropped with a reason (it goes into the trace), a value
the model left out or set to null is simply absent — nothing is ever invented or repaired.

Provider schemas are made strict-mode friendly (:func:`strict_schema`): every object lists all its
properties as required, optional ones become nullable, and no additional properties are allowed —
what OpenAI's ``strict: true`` structured outputs and llama.cpp grammars both accept.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

FIELDS_KEY = "fields"
INSTRUCTION = (
    "Also extract the fields of the label you choose: fill \"fields\".<label> with the values stated in the "
    "message, following its schema; use null for anything the message does not state. Never guess or invent a "
    "value. Placeholders such as <EMAIL_1> stand for masked personal data: copy them as they are."
)


def check_schema(schema: Any) -> None:
    """Raise ValueError (saying what to fix) unless ``schema`` is a valid JSON Schema of an object with properties."""
    if not isinstance(schema, Mapping):
        raise ValueError("extract_schema must be a mapping (a JSON Schema with type: object)")
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping) or not schema["properties"]:
        raise ValueError("extract_schema must have type: object and at least one entry under properties")
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top)"
        raise ValueError(f"extract_schema is not a valid JSON Schema at {where}: {exc.message}") from None


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    kind = node.get("type")
    if isinstance(kind, str):
        return {**node, "type": [kind, "null"]} if kind != "null" else node
    if isinstance(kind, list):
        return node if "null" in kind else {**node, "type": [*kind, "null"]}
    return {"anyOf": [node, {"type": "null"}]}


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in strict form: every property required, optional ones nullable, no extras."""
    node = copy.deepcopy(dict(schema))
    if node.get("type") == "object" and isinstance(node.get("properties"), dict):
        required = set(node.get("required") or [])
        props = {}
        for name, sub in node["properties"].items():
            sub = strict_schema(sub) if isinstance(sub, Mapping) else sub
            props[name] = sub if name in required else _nullable(sub)
        node["properties"] = props
        node["required"] = list(props)
        node["additionalProperties"] = False
    elif node.get("type") == "array" and isinstance(node.get("items"), Mapping):
        node["items"] = strict_schema(node["items"])
    return node


def fields_schema(candidates: Sequence[str], schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ``fields`` part of the answer schema for these candidates (None when none has a schema)."""
    with_schema = [c for c in candidates if c in schemas]
    if not with_schema:
        return None
    return {
        "type": "object",
        "properties": {c: _nullable(strict_schema(schemas[c])) for c in with_schema},
        "required": with_schema,
        "additionalProperties": False,
    }


def extend_answer_schema(answer: Mapping[str, Any], candidates: Sequence[str],
                         schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``answer`` (the label answer's schema) with a ``fields`` property for the candidates' schemas."""
    part = fields_schema(candidates, schemas)
    if part is None:
        return dict(answer)
    out = copy.deepcopy(dict(answer))
    out.setdefault("properties", {})[FIELDS_KEY] = part
    required = list(out.get("required") or [])
    out["required"] = [*required, FIELDS_KEY] if FIELDS_KEY not in required else required
    return out


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    return validator_for(schema)(schema)


def validate_fields(answer_text: str, label: str | None, schemas: Mapping[str, Mapping[str, Any]]
                    ) -> tuple[dict[str, Any], list[str]]:
    """The valid fields of the chosen ``label`` in the model's raw answer, and one reason per dropped value.

    A property is kept only when its value validates against the label's own schema for that
    property; unknown properties and invalid values are dropped (with the reason), nulls are absent.
    """
    schema = schemas.get(label or "")
    if schema is None:
        return {}, []
    try:
        data = json.loads(answer_text)
    except (TypeError, ValueError):
        return {}, ["fields: the answer is not JSON"]
    raw = data.get(FIELDS_KEY) if isinstance(data, dict) else None
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [f"fields: expected an object, got {type(raw).__name__}"]
    entry = raw.get(label)
    if entry is None:
        return {}, []
    if not isinstance(entry, dict):
        return {}, [f"fields.{label}: expected an object, got {type(entry).__name__}"]
    props: Mapping[str, Any] = schema.get("properties", {})
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in entry.items():
        if value is None:
            continue
        sub = props.get(name)
        if sub is None:
            dropped.append(f"fields.{label}.{name}: not in the label's schema (dropped)")
            continue
        errors = sorted(_validator(json.dumps(sub, sort_keys=True)).iter_errors(value), key=lambda e: list(e.path))
        if errors:
            dropped.append(f"fields.{label}.{name}: {errors[0].message[:200]} (dropped)")
            continue
        kept[name] = value
    missing = [n for n in schema.get("required", []) if n not in kept]
    if missing:
        dropped.append(f"fields.{label}: required {missing} not given (left empty, not invented)")
    return kept, dropped
