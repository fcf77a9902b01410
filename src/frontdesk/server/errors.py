"""One error body for every failure the service answers: ``{"error": {type, message, details, request_id}}``.

Framework errors (404, 405, malformed requests) are rendered in the same shape as the service's
own. Bodies never carry a stack trace, a file path or an echo of the client's input: validation
details name the field (``messages.0.text``), the problem and its type, nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse


class ErrorDetail(BaseModel):
    """One problem with a request: where (a dotted field path), what, and its machine-readable type."""

    field: str = Field(description="dotted path into the body (messages.0.text), or 'query.limit', 'path.decision_id'")
    message: str
    type: str


class ErrorBody(BaseModel):
    type: str = Field(description="machine-readable kind: invalid_json, invalid_request, unauthorized, …")
    message: str = Field(description="what went wrong and what to do next")
    details: list[ErrorDetail] | dict[str, Any] | None = None
    request_id: str | None = Field(None, description="the X-Request-ID of this request (also in the access log)")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """Raised anywhere in a request; rendered as the JSON error body with ``status``."""

    def __init__(self, status: int, kind: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.details, self.headers = status, kind, message, details, headers


def error_json(status: int, kind: str, message: str, details: Any = None, request_id: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    """The error response (``details`` must be plain JSON)."""
    body = {"error": {"type": kind, "message": message, "details": details, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_bytes(kind: str, message: str, details: Any = None, request_id: str | None = None) -> bytes:
    """The error body as bytes, for pure-ASGI middleware that answers without the framework."""
    body = {"error": {"type": kind, "message": message, "details": details, "request_id": request_id}}
    return json.dumps(body).encode()


def request_id_of(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "messages", 0, "text")`` → ``messages.0.text``; query/path/header keep their prefix."""
    if not loc:
        return "body"
    head, rest = str(loc[0]), [str(x) for x in loc[1:]]
    if head == "body":
        return ".".join(rest) or "body"
    return ".".join([head, *rest])


def validation_details(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as plain ErrorDetail dicts: field, message, type — never the input."""
    out = []
    for e in errors:
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": _field(tuple(e.get("loc", ()))), "message": msg, "type": str(e.get("type", "invalid"))})
    return out


_STATUS_KIND = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                406: "not_acceptable", 408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type",
                422: "invalid_request", 429: "too_many_requests", 500: "internal", 503: "unavailable"}


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one body shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_json(exc.status, exc.kind, exc.message, exc.details, request_id_of(request), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        if any(d["type"] in ("json_invalid", "json_type") for d in details):  # only when the strict parser is bypassed
            return error_json(400, "invalid_json", "the body is not valid JSON: send a JSON object", None, request_id_of(request))
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:10])
        if len(details) > 10:
            message += f"; … {len(details) - 10} more (see details)"
        return error_json(422, "invalid_request", message, details[:100], request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        path = request.url.path[:200]
        kind = _STATUS_KIND.get(status, "error")
        if status == 404:
            message = f"no endpoint at {path!r}: the endpoints are listed at /docs (OpenAPI: /openapi.json)"
        elif status == 405:
            allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow") or ""
            message = f"{request.method} is not allowed on {path!r}" + (f": use {allowed}" if allowed else "")
        else:
            message = exc.detail if isinstance(exc.detail, str) else kind.replace("_", " ")
        return error_json(status, kind, message, None, request_id_of(request), dict(exc.headers or {}) or None)
