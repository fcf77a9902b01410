"""Pure-ASGI middleware (no per-request task or body copy): request context and the body guard.

:class:`RequestContext` (outermost) gives each request an id (the client's ``X-Request-ID`` when
it is sane, else a new one; echoed in the response), counts it in the metrics, writes one access
log line (method, path, status, latency, id — never a body) and turns any unexpected exception
into a JSON 500 *without* re-raising: the server then keeps the keep-alive connection usable for
the client's next request (a re-raised error makes uvicorn drop the connection).

:class:`BodyGuard` enforces ``server.max_body_bytes`` (413, also for chunked bodies) and
``server.read_timeout_s`` (408): a client that announces more bytes than it sends, or sends them
too slowly, cannot hold a request open for ever.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from frontdesk.server.errors import ApiError, error_bytes
from frontdesk.server.metrics import Metrics

log = logging.getLogger("frontdesk.server")
access_log = logging.getLogger("frontdesk.access")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


def _printable(text: str, limit: int = 200) -> str:
    """A path for a log line: control characters escaped, length capped."""
    return text[:limit].encode("unicode_escape").decode("ascii")


async def send_error(send: Callable, status: int, kind: str, message: str, *, details: Any = None,
                     request_id: str | None = None, close: bool = False) -> None:
    """Answer with the JSON error body from pure-ASGI code."""
    body = error_bytes(kind, message, details, request_id)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Request id, metrics, access log and the last-resort 500 (see the module docstring)."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        rid = next((v.decode() for k, v in scope.get("headers", []) if k == b"x-request-id" and _REQUEST_ID.match(v)), None)
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = 0

        async def tagged(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        except ApiError as exc:  # raised outside a route (a body read by no route): still the JSON body
            if status == 0:
                await send_error(tagged, exc.status, exc.kind, exc.message, details=exc.details, request_id=rid,
                                 close=bool(exc.headers and exc.headers.get("Connection") == "close"))
        except Exception:
            log.exception("unexpected error in %s %s (request id %s)", scope.get("method"), _printable(scope.get("path", "")), rid)
            if status == 0:
                status = 500
                await send_error(tagged, 500, "internal", f"internal error: logged with request id {rid}; retry, and "
                                 "report the id if it persists", request_id=rid)
        finally:
            if status == 0:
                status = 499  # the client went away before an answer
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_latency.labels(endpoint).observe(elapsed)
            access_log.info("%s %s %d %.1fms id=%s", scope.get("method"), _printable(scope.get("path", "")), status,
                            elapsed * 1e3, rid)


class _ReadTimeout(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, "request_timeout", f"the request body did not arrive within {seconds:g} s: send the whole "
                         "body promptly (is Content-Length larger than the body?)", headers={"Connection": "close"})


class _TooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"request body over {limit} bytes: send less per request "
                         "(split a batch, shorten the text)", {"limit_bytes": limit}, headers={"Connection": "close"})


class BodyGuard:
    """Body size limit and body read deadline (see the module docstring)."""

    def __init__(self, app: Callable, get_limit: Callable[[], int], get_timeout: Callable[[], float]) -> None:
        self.app, self.get_limit, self.get_timeout = app, get_limit, get_timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, timeout = self.get_limit(), self.get_timeout()
        rid = scope.get("state", {}).get("request_id")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                exc = _TooLarge(limit)
                return await send_error(send, 413, exc.kind, exc.message, details=exc.details, request_id=rid, close=True)
        deadline = asyncio.get_running_loop().time() + timeout
        seen, done = 0, False

        async def guarded() -> dict:
            nonlocal seen, done
            if done:  # the body is complete: later receives wait for a disconnect, with no deadline
                return await receive()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except TimeoutError:
                raise _ReadTimeout(timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        await self.app(scope, guarded, send)
