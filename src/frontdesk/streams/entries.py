"""Stream entries → Messages, and the decision id each entry maps to (the idempotency key)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from frontdesk.errors import InputError
from frontdesk.types import Message

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/frontdesk/streams")
ENTRY_FORMAT = ("XADD STREAM * text 'the message' [sender ID] [channel NAME] [metadata '{json object}'] "
                "or XADD STREAM * message '{\"text\": …, \"sender\": …}'")


class MalformedEntry(InputError):
    """A stream entry that can never become a message (no text, not UTF-8, bad JSON): dead-lettered at once."""


def entry_decision_id(namespace: str, entry_id: str) -> str:
    """The id of the decision for entry ``entry_id`` of stream ``namespace``: the same on every delivery
    (a UUID5, 32 hex digits like every decision id), so a redelivered entry finds its stored decision."""
    return uuid.uuid5(_NAMESPACE, f"{namespace}\x1f{entry_id}").hex


def _text(value: bytes | str, field: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEntry(f"field {field!r} is not UTF-8 (byte {exc.start}): send UTF-8 text") from None


def entry_message(fields: Mapping[bytes | str, bytes | str], *, stream: str, entry_id: str) -> Message:
    """The Message an entry carries. Fields: ``text`` (required), ``sender``, ``channel``, ``metadata``
    (a JSON object) — or one ``message`` field holding all of them as JSON. Other fields are ignored.
    The message's metadata records where it came from (``stream``, ``stream_id``)."""
    f = {_text(k, "(field name)"): v for k, v in fields.items()}
    data: dict[str, Any]
    if "message" in f:
        try:
            data = json.loads(_text(f["message"], "message"))
        except json.JSONDecodeError as exc:
            raise MalformedEntry(f"field 'message' is not JSON ({exc.msg} at {exc.pos}): {ENTRY_FORMAT}") from None
        if not isinstance(data, dict):
            raise MalformedEntry(f"field 'message' must be a JSON object, got {type(data).__name__}: {ENTRY_FORMAT}")
    else:
        data = {k: _text(v, k) for k, v in f.items() if k in ("text", "sender", "channel", "metadata")}
        if "metadata" in data:
            try:
                data["metadata"] = json.loads(data["metadata"]) if data["metadata"].strip() else {}
            except json.JSONDecodeError as exc:
                raise MalformedEntry(f"field 'metadata' is not JSON ({exc.msg} at {exc.pos}): send a JSON object") from None
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise MalformedEntry(f"the entry has no text: {ENTRY_FORMAT}")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise MalformedEntry(f"'metadata' must be a JSON object, got {type(metadata).__name__}")
    sender, channel = data.get("sender") or None, data.get("channel") or None
    for name, value in (("sender", sender), ("channel", channel)):
        if value is not None and not isinstance(value, str):
            raise MalformedEntry(f"{name!r} must be a string, got {type(value).__name__}")
    return Message(text=text, sender=sender, channel=channel, metadata={**metadata, "stream": stream, "stream_id": entry_id})
