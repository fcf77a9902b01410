"""Strict JSON request bodies: what the service accepts, it can store and serialise.

Python's ``json`` module accepts things no other component downstream can handle: lone UTF-16
surrogates (``"\\ud800"``: not encodable as UTF-8, so the store and every response would fail),
``NaN``/``Infinity`` (not JSON), ``1e999`` (infinity), integers of thousands of digits and
nesting deep enough to exhaust a recursion limit. :func:`parse_body` refuses each with a 400 or
422 that says what to send instead; :class:`StrictJSONRoute` runs it (and the media-type check,
415) before FastAPI validates the body against the endpoint's model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from email.message import Message as _MediaType
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from frontdesk.server.errors import ApiError

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays in a request body (the body itself is level 1)."""
MAX_INT = 2**63 - 1
"""Integers in a body must lie within ±MAX_INT (what every database and JSON reader can hold)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
"""Characters no backend stores: lone surrogates (not Unicode text) and U+0000 (PostgreSQL text refuses it)."""


class _BadNumber(ValueError):
    """A JSON number the service cannot store (422)."""


class _NotJSON(ValueError):
    """NaN / Infinity: accepted by Python's json module, but not JSON (400)."""


def _constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not JSON: send a finite number or null")


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _BadNumber(f"the number {text[:40]} is out of range: numbers must be finite (|x| < 1.8e308)")
    return value


def _int(text: str) -> int:
    if len(text) > 20 or abs(value := int(text)) > MAX_INT:
        raise _BadNumber(f"the integer {text[:40]}{'…' if len(text) > 40 else ''} is out of range: integers must lie "
                         f"within ±{MAX_INT} (send larger numbers as strings)")
    return value


def _check_media_type(request: Request) -> None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, "unsupported_media_type", f"Content-Encoding {encoding[:40]!r} is not supported: send the "
                       "body uncompressed with Content-Type: application/json")
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise ApiError(415, "unsupported_media_type", "no Content-Type: send the JSON object with 'Content-Type: "
                       "application/json' (curl: --json '{\"text\": \"…\"}' or -H 'Content-Type: application/json')")
    media = _MediaType()
    media["content-type"] = content_type
    subtype = media.get_content_subtype()
    if media.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {media.get_content_type()!r} is not accepted: send a JSON object with "
                       "'Content-Type: application/json' (curl: -H 'Content-Type: application/json' or --json)")
    charset = media.get_param("charset")
    if isinstance(charset, str) and charset.lower().replace("-", "") not in ("utf8",):
        raise ApiError(415, "unsupported_media_type", f"charset {charset[:40]!r} is not accepted: send UTF-8 JSON")


def parse_body(body: bytes) -> Any:
    """Parse a request body as strict JSON, or raise ApiError (400 not JSON, 422 not storable)."""
    if not body.strip():
        raise ApiError(400, "invalid_json", 'the body is empty: send a JSON object such as {"text": "…"}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid UTF-8 (byte {exc.start}): send UTF-8 JSON") from exc
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _BadNumber as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    except _NotJSON as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, "
                       f"column {exc.colno}") from exc
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", f"the body nests too deeply: at most {MAX_DEPTH} levels") from exc
    check_storable(value)
    return value


def check_storable(value: Any) -> None:
    """Refuse (422) lone surrogates and U+0000 in any string or key, and nesting deeper than MAX_DEPTH."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            if _UNSTORABLE.search(node):
                _unstorable(path, _why(node))
        elif isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                _unstorable(path, f"nests deeper than {MAX_DEPTH} levels: flatten it")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    _unstorable((*path, "<key>"), "a key " + _why(key))
                if isinstance(child, (str, dict, list)):
                    stack.append((child, (*path, key), depth + 1))


def _why(text: str) -> str:
    if _SURROGATE.search(text):
        return ("contains a lone UTF-16 surrogate (e.g. \\ud800), which is not Unicode text: send valid UTF-8 / "
                "properly paired \\u escapes")
    return "contains U+0000 (NUL), which the store cannot hold: remove it"


def _unstorable(path: tuple[Any, ...], problem: str) -> None:
    field = ".".join(str(p) for p in path) or "body"
    raise ApiError(422, "invalid_request", f"{field}: {problem}",
                   [{"field": field, "message": problem, "type": "unstorable_value"}])


class StrictJSONRoute(APIRoute):
    """An APIRoute whose JSON body goes through :func:`parse_body` (and the 415 check) first.

    Route dependencies with a ``check_request(request)`` method (the API-key check) run before the
    body is read, so a client without a valid key gets 401/403 and costs no parsing.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        early = [d.dependency.check_request for d in self.dependencies if hasattr(d.dependency, "check_request")]

        async def strict(request: Request) -> Response:
            for check in early:
                check(request)
            _check_media_type(request)
            request._json = parse_body(await request.body())  # FastAPI's own request.json() returns this
            return await handler(request)

        return strict
