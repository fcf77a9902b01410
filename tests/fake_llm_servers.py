"""Fake LLM servers for tests: an OpenAI-compatible one and an Anthropic one, over real HTTP on 127.0.0.1.

Both speak the real wire protocol (the official SDKs talk to them unmodified) and are scripted per
request with a queue of behaviours::

    from fake_llm_servers import FakeOpenAIServer, answer, slow, status, hang_up

    with FakeOpenAIServer() as server:                      # free port, a thread, stopped on exit
        server.enqueue(status(429, retry_after=2), slow(5), answer(["billing"], 0.8, "about a bill"))
        provider = OpenAIProvider("gpt-x", base_url=server.base_url)
        ...
        server.requests[0].body["response_format"]           # what the client sent
        server.requests[0].headers["authorization"]

Each request pops the next behaviour; when the queue is empty ``server.default`` answers (a behaviour,
or a callable ``(RecordedRequest) -> Behaviour``; by default ``answer()``, i.e. the first label of the
enum in the request's schema, confidence 0.9). Behaviours:

``answer(labels=None, confidence=0.9, rationale=…, *, token_probs=None, usage=None)``
    a well-formed answer ``{"labels": [...], "confidence": c, "rationale": r}`` (``{"label": …}`` when
    the request's schema has ``label`` rather than ``labels``). OpenAI: ``logprobs`` when asked for, with
    the label's tokens' log-probs summing to ``log(token_probs.get(label, confidence))``.
``slow(seconds, then=None)``  sleep, then behave like ``then`` (default: the default answer).
``status(code, retry_after=None, *, message=None, headers=None)``  an error response in the provider's
    error format (429 → ``Retry-After``; Anthropic 529 is ``overloaded_error``).
``malformed(text=…)``  OpenAI: content that is not JSON. Anthropic: a ``classify`` tool call whose input
    lacks every schema field (``{"text": …}``), the closest the Messages API gets to "not JSON".
``out_of_set(label="refund_request", confidence=0.9)``  valid JSON naming a label outside the enum.
``empty()``  OpenAI: ``content: ""``. Anthropic: ``content: []`` with ``stop_reason: end_turn``.
``no_choices()``  OpenAI: ``choices: []`` (Anthropic: like ``empty()``).
``text_only(text)``  Anthropic: a text block and no tool call (OpenAI: plain content).
``refusal(text=…)``  OpenAI: ``message.refusal`` set, content null. Anthropic: ``stop_reason: refusal``.
``content_filter()``  OpenAI: ``finish_reason: content_filter`` (Anthropic: like ``refusal()``).
``hang_up()``  read the request, close the connection without a response.
``hang(then=None)``  hold the request, sending nothing, until ``server.release()`` (or the server stops), then
    behave like ``then`` (default: ``hang_up()``). ``server.held`` counts requests held right now,
    ``server.wait_for_held(n)`` waits for n of them; requests arriving after ``release()`` pass straight through.
``trickle(interval_s, then=None)``  behave like ``then`` (default: the default answer) but send the whole
    response, status line and headers included, one byte every ``interval_s``: every read a client makes
    gets a byte long before any per-read timeout, so only a wall-clock deadline stops it.
``raw(body, status=200, headers=None)``  send exactly this JSON body (or ``str``/``bytes`` as is).

Server-level switches (constructor keywords or attributes): ``FakeOpenAIServer(json_schema=False)``
rejects ``response_format`` ``json_schema`` with a 400 (like a server without structured outputs);
``unsupported={"max_tokens", "logprobs", "temperature"}`` rejects those parameters with OpenAI's
"Unsupported parameter" 400; ``logprobs=False`` never returns log-probs; ``require_key="…"`` answers
401 to any other key (echoing the wrong key in the message, as real servers partly do — good for
checking that clients redact it).

Every request is recorded in ``server.requests`` (a list of :class:`RecordedRequest`: ``method``,
``path``, ``headers`` with lower-case names, parsed JSON ``body``, ``raw`` bytes, the ``behaviour``
used, and the ``status`` / ``response`` sent), with helpers ``schema``, ``enum``, ``system``, ``user``.
The pytest fixtures ``openai_server`` and ``anthropic_server`` (import them into a test module) give a
started server per test.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# -- behaviours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """One scripted reaction; build it with the functions below rather than directly."""

    kind: str
    labels: tuple[str, ...] | None = None
    confidence: float = 0.9
    rationale: str = "The message matches this label."
    token_probs: Mapping[str, float] | None = None
    usage: tuple[int, int] | None = None
    seconds: float = 0.0
    then: Behaviour | None = None
    code: int = 200
    retry_after: float | str | None = None
    message: str | None = None
    headers: Mapping[str, str] | None = None
    text: str = ""
    body: Any = None


def answer(labels: str | Sequence[str] | None = None, confidence: float = 0.9, rationale: str = "The message matches this label.",
           *, token_probs: Mapping[str, float] | None = None, usage: tuple[int, int] | None = None) -> Behaviour:
    """A well-formed answer; ``labels=None``: the first label of the request schema's enum."""
    labs = (labels,) if isinstance(labels, str) else (tuple(labels) if labels is not None else None)
    return Behaviour("answer", labels=labs, confidence=confidence, rationale=rationale, token_probs=token_probs, usage=usage)


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Sleep ``seconds`` before answering (``then``, or the default behaviour)."""
    return Behaviour("slow", seconds=seconds, then=then)


def status(code: int, retry_after: float | str | None = None, *, message: str | None = None,
           headers: Mapping[str, str] | None = None) -> Behaviour:
    """An HTTP error in the provider's error format; ``retry_after`` becomes the ``Retry-After`` header."""
    return Behaviour("status", code=code, retry_after=retry_after, message=message, headers=headers)


def malformed(text: str = "Sure! The customer seems to want help with their card.") -> Behaviour:
    return Behaviour("malformed", text=text)


def out_of_set(label: str = "refund_request", confidence: float = 0.9) -> Behaviour:
    return Behaviour("answer", labels=(label,), confidence=confidence, rationale="Out of the candidate set.")


def empty() -> Behaviour:
    return Behaviour("empty")


def no_choices() -> Behaviour:
    return Behaviour("no_choices")


def text_only(text: str = "The customer wants a refund.") -> Behaviour:
    return Behaviour("text_only", text=text)


def refusal(text: str = "I'm sorry, but I can't help with that.") -> Behaviour:
    return Behaviour("refusal", text=text)


def content_filter() -> Behaviour:
    return Behaviour("content_filter")


def hang_up() -> Behaviour:
    return Behaviour("hang_up")


def raw(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Behaviour:
    return Behaviour("raw", body=body, code=status, headers=headers)


def hang(then: Behaviour | None = None) -> Behaviour:
    """Hold the request until ``server.release()``; then ``then`` (default: close without a response)."""
    return Behaviour("hang", then=then)


def trickle(interval_s: float, then: Behaviour | None = None) -> Behaviour:
    """Send ``then``'s response (default: the default answer) one byte every ``interval_s`` seconds."""
    return Behaviour("trickle", seconds=interval_s, then=then)


# -- recorded requests --------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    behaviour: Behaviour | None = None
    status: int | None = None  # None: no response was sent (hang-up, client gone)
    response: Any = None
    received_at: float = field(default_factory=time.monotonic)
    held: bool = False  # held by hang() at some point
    released_at: float | None = None  # when a hang() let it go (None: still held, or never held)
    sent_bytes: int = 0  # bytes of the response written so far (trickle)
    finished: bool = False  # the whole response was written
    client_gone: bool = False  # the client closed the connection before the response was complete

    @property
    def schema(self) -> dict[str, Any] | None:
        """The answer schema the client sent (response_format json_schema, the tool's input_schema, or
        a JSON schema embedded in the system prompt)."""
        return _request_schema(self.body)

    @property
    def enum(self) -> list[str] | None:
        return _find_enum(self.schema)

    @property
    def system(self) -> str:
        return _system_text(self.body)

    @property
    def user(self) -> str:
        return _user_text(self.body)


def _find_enum(node: Any) -> list[str] | None:
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            return [str(x) for x in node["enum"]]
        for value in node.values():
            found = _find_enum(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_enum(value)
            if found is not None:
                return found
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _system_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    if "system" in body:
        return _text_of(body["system"])
    return "\n".join(_text_of(m.get("content")) for m in body.get("messages", []) if m.get("role") in ("system", "developer"))


def _user_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    return "\n".join(_text_of(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user")


def _embedded_schema(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict) and _find_enum(obj) is not None:
            return obj
    return None


def _request_schema(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return None
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        return (rf.get("json_schema") or {}).get("schema")
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and "input_schema" in tool:
            return tool["input_schema"]
    return _embedded_schema(_system_text(body))


def _answer_object(schema: Any, labels: Sequence[str], confidence: float, rationale: str) -> dict[str, Any]:
    props = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(props, dict) and "label" in props and "labels" not in props:
        return {"label": labels[0] if labels else None, "confidence": confidence, "rationale": rationale}
    return {"labels": list(labels), "confidence": confidence, "rationale": rationale}


_TOKEN = re.compile(r"\w{1,4}|\s+|[^\w\s]", re.S)


def _count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


# -- the servers --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real APIs (the SDKs pool connections)
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr access logs
        pass

    trickle_s: float = 0.0

    def setup(self) -> None:
        super().setup()
        self.trickle_s = 0.0
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        data = self.rfile.read(length) if length else b""
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = None
        rec = RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, data, body)
        fake = self.server.fake
        fake._record(rec)
        try:
            fake._handle(self, rec)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)
            rec.client_gone = True

    # used by the fakes
    def send_json(self, rec: RecordedRequest, code: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        if isinstance(payload, bytes):
            data, ctype = payload, "application/octet-stream"
        elif isinstance(payload, str):
            data, ctype = payload.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(payload).encode("utf-8"), "application/json"
        rec.status, rec.response = code, payload
        if self.trickle_s > 0:
            self._trickle(rec, code, ctype, data, headers)
            return
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        rec.sent_bytes, rec.finished = len(data), True

    def _trickle(self, rec: RecordedRequest, code: int, ctype: str, data: bytes, headers: Mapping[str, str] | None) -> None:
        lines = [f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}", f"Content-Type: {ctype}", f"Content-Length: {len(data)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        whole = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data
        stopping = self.server.fake._stopping
        for i in range(len(whole)):
            self.wfile.write(whole[i:i + 1])
            self.wfile.flush()
            rec.sent_bytes = i + 1
            if stopping.wait(self.trickle_s):
                self.close_connection = True
                return
        rec.finished = True

    def hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: _FakeServer


class _FakeServer:
    """Common machinery: a ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread."""

    api_path: str = ""

    def __init__(self, *, default: Behaviour | Callable[[RecordedRequest], Behaviour] | None = None,
                 require_key: str | None = None) -> None:
        self.default = default
        self.require_key = require_key
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._held = 0
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> _FakeServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes slow() sleepers
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``"""
        return f"http://127.0.0.1:{self.port}"

    # scripting
    def enqueue(self, *behaviours: Behaviour) -> _FakeServer:
        """Append behaviours; each request takes the next one (then ``default``)."""
        with self._lock:
            self._queue.extend(behaviours)
        return self

    def clear(self) -> None:
        """Forget queued behaviours and recorded requests."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def release(self) -> None:
        """Let every request held by ``hang()`` go on (and any later one pass straight through)."""
        self._released.set()

    @property
    def held(self) -> int:
        """Requests held by ``hang()`` right now."""
        with self._lock:
            return self._held

    def wait_for_held(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``n`` requests are held at once (TimeoutError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while self.held < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.held} requests held, expected {n}")
            time.sleep(0.01)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.01)
        raise TimeoutError(f"{len(self.requests)} requests received, expected {n}")

    # internals
    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _next(self, rec: RecordedRequest) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        d = self.default
        if callable(d) and not isinstance(d, Behaviour):
            return d(rec)
        return d or answer()

    def _labels(self, b: Behaviour, rec: RecordedRequest) -> tuple[str, ...]:
        if b.labels is not None:
            return b.labels
        enum = rec.enum
        return (enum[0],) if enum else ("unknown",)

    def _handle(self, h: _Handler, rec: RecordedRequest) -> None:
        if rec.method != "POST" or rec.path.split("?")[0].rstrip("/") != self.api_path:
            rec.behaviour = None
            self._error(h, rec, 404, f"Unknown request URL: {rec.method} {rec.path}")
            return
        if self.require_key is not None:
            sent = self._sent_key(rec)
            if sent != self.require_key:
                self._error(h, rec, 401, f"Incorrect API key provided: {sent}.")  # real servers echo (part of) it
                return
        refusal_reason = self._reject(rec)
        if refusal_reason is not None:
            self._error(h, rec, 400, refusal_reason)
            return
        b = self._next(rec)
        rec.behaviour = b
        while b.kind in ("slow", "hang", "trickle"):
            if b.kind == "slow":
                if self._stopping.wait(b.seconds):
                    h.hang_up()
                    return
                b = b.then or self._default_after_slow(rec)
            elif b.kind == "hang":
                if not self._hold(rec):
                    h.hang_up()
                    return
                b = b.then or hang_up()
            else:
                h.trickle_s = b.seconds
                b = b.then or self._default_after_slow(rec)
        if b.kind == "hang_up":
            h.hang_up()
        elif b.kind == "status":
            headers = dict(b.headers or {})
            if b.retry_after is not None:
                headers["Retry-After"] = str(b.retry_after)
            self._error(h, rec, b.code, b.message, headers)
        elif b.kind == "raw":
            h.send_json(rec, b.code, b.body, b.headers)
        else:
            self._respond(h, rec, b)

    def _hold(self, rec: RecordedRequest) -> bool:
        """Block until released (True) or the server stops (False)."""
        if self._released.is_set():
            return True
        with self._lock:
            self._held += 1
        rec.held = True
        try:
            while not self._released.wait(0.02):
                if self._stopping.is_set():
                    return False
        finally:
            with self._lock:
                self._held -= 1
        rec.released_at = time.monotonic()
        return True

    def _default_after_slow(self, rec: RecordedRequest) -> Behaviour:
        d = self.default
        b = d(rec) if callable(d) and not isinstance(d, Behaviour) else (d or answer())
        return answer() if b.kind in ("slow", "hang", "trickle") else b

    # per protocol
    def _sent_key(self, rec: RecordedRequest) -> str | None:
        raise NotImplementedError

    def _reject(self, rec: RecordedRequest) -> str | None:
        return None

    def _error(self, h: _Handler, rec: RecordedRequest, code: int, message: str | None,
               headers: Mapping[str, str] | None = None) -> None:
        raise NotImplementedError

    def _respond(self, h: _Handler, rec: RecordedRequest, b: Behaviour) -> None:
        raise NotImplementedError


_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_denied",
                       404: "invalid_request_error", 429: "rate_limit_exceeded"}
_DEFAULT_MESSAGES = {400: "Bad request.", 401: "Unauthorized.", 403: "Forbidden.", 404: "Not found.",
                     408: "Request timed out.", 429: "Rate limit reached. Please try again later.",
                     500: "The server had an error while processing your request.", 502: "Bad gateway.",
                     503: "The engine is currently overloaded, please try again later.", 529: "Overloaded"}


class FakeOpenAIServer(_FakeServer):
    """``POST /v1/chat/completions``; clients use ``base_url`` (``http://127.0.0.1:<port>/v1``)."""

    api_path = "/v1/chat/completions"

    def __init__(self, *, default: Behaviour | Callable[[RecordedRequest], Behaviour] | None = None,
                 require_key: str | None = None, json_schema: bool = True, unsupported: Iterable[str] = (),
                 logprobs: bool = True) -> None:
        super().__init__(default=default, require_key=require_key)
        self.json_schema = json_schema
        self.unsupported = set(unsupported)
        self.logprobs = logprobs

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _sent_key(self, rec: RecordedRequest) -> str | None:
        auth = rec.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def _reject(self, rec: RecordedRequest) -> str | None:
        body = rec.body if isinstance(rec.body, dict) else {}
        rf = body.get("response_format")
        if not self.json_schema and isinstance(rf, dict) and rf.get("type") == "json_schema":
            return "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
        for param in sorted(self.unsupported):
            if param in body:
                hint = " Use 'max_completion_tokens' instead." if param == "max_tokens" else ""
                return f"Unsupported parameter: '{param}' is not supported with this model.{hint}"
        return None

    def _error(self, h: _Handler, rec: RecordedRequest, code: int, message: str | None,
               headers: Mapping[str, str] | None = None) -> None:
        msg = message or _DEFAULT_MESSAGES.get(code, f"HTTP {code}")
        payload = {"error": {"message": msg, "type": _OPENAI_ERROR_TYPES.get(code, "server_error" if code >= 500 else "invalid_request_error"),
                             "param": None, "code": None}}
        h.send_json(rec, code, payload, {"x-request-id": f"req_{uuid.uuid4().hex[:16]}", **(headers or {})})

    def _respond(self, h: _Handler, rec: RecordedRequest, b: Behaviour) -> None:
        body = rec.body if isinstance(rec.body, dict) else {}
        want_logprobs = bool(body.get("logprobs")) and self.logprobs
        content: str | None
        finish = "stop"
        refusal_text = None
        token_logprobs: list[dict[str, Any]] | None = None
        if b.kind == "answer":
            labels = self._labels(b, rec)
            content = json.dumps(_answer_object(rec.schema, labels, b.confidence, b.rationale), ensure_ascii=False)
            if want_logprobs:
                probs = {lab: (b.token_probs or {}).get(lab, b.confidence) for lab in labels}
                token_logprobs = _logprobs_for(content, probs, int(body.get("top_logprobs") or 0))
        elif b.kind in ("malformed", "text_only"):
            content = b.text
            if want_logprobs:
                token_logprobs = _logprobs_for(content, {}, int(body.get("top_logprobs") or 0))
        elif b.kind == "empty":
            content = ""
        elif b.kind == "refusal":
            content, refusal_text = None, b.text
        elif b.kind == "content_filter":
            content, finish = None, "content_filter"
        elif b.kind == "no_choices":
            content = None
        else:
            raise ValueError(f"unknown behaviour {b.kind!r}")
        prompt_tokens = _count_tokens(_system_text(body) + "\n" + _user_text(body))
        completion_tokens = len(_TOKEN.findall(content or refusal_text or ""))
        if b.usage is not None:
            prompt_tokens, completion_tokens = b.usage
        choices = [] if b.kind == "no_choices" else [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal_text, "annotations": []},
            "logprobs": {"content": token_logprobs, "refusal": None} if token_logprobs is not None else None,
            "finish_reason": finish,
        }]
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        h.send_json(rec, 200, payload, {"x-request-id": f"req_{uuid.uuid4().hex[:16]}"})


def _logprobs_for(content: str, label_probs: Mapping[str, float], top_n: int) -> list[dict[str, Any]]:
    """OpenAI ``logprobs.content``: ≤4-character word pieces and single punctuation tokens; the tokens of
    each label's value string get log-probs summing to ``log(p)``; every other token gets -0.0001."""
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(content)]
    lp = [-0.0001] * len(tokens)
    key = content.find('"labels"')
    if key < 0:
        key = content.find('"label"')
    for label, p in label_probs.items():
        q = json.dumps(label, ensure_ascii=False)
        at = content.find(q, max(key, 0))
        if at < 0:
            continue
        s, e = at + 1, at + len(q) - 1
        inside = [i for i, (a, z, _) in enumerate(tokens) if a >= s and z <= e]
        if not inside:
            continue
        per = math.log(max(p, 1e-12)) / len(inside)
        for i in inside:
            lp[i] = per
    out = []
    for (_, _, tok), value in zip(tokens, lp):
        bs = list(tok.encode("utf-8"))
        top = [{"token": tok, "logprob": value, "bytes": bs}]
        top += [{"token": f"alt{k}", "logprob": value - 3.0 * k, "bytes": list(f"alt{k}".encode())} for k in range(1, top_n)]
        out.append({"token": tok, "logprob": value, "bytes": bs, "top_logprobs": top[:top_n]})
    return out


_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                          403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                          429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


class FakeAnthropicServer(_FakeServer):
    """``POST /v1/messages``; clients use ``base_url`` (``http://127.0.0.1:<port>``; the SDK adds /v1)."""

    api_path = "/v1/messages"

    @property
    def base_url(self) -> str:
        return self.url

    def _sent_key(self, rec: RecordedRequest) -> str | None:
        # older SDKs send ``x-api-key``; current ones ``Authorization: Bearer <key>``
        if "x-api-key" in rec.headers:
            return rec.headers["x-api-key"]
        auth = rec.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def sent_key(self, rec: RecordedRequest | None = None) -> str | None:
        """The API key a request carried (either header)."""
        return self._sent_key(rec or self.last)

    def _error(self, h: _Handler, rec: RecordedRequest, code: int, message: str | None,
               headers: Mapping[str, str] | None = None) -> None:
        etype = _ANTHROPIC_ERROR_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
        msg = message or _DEFAULT_MESSAGES.get(code, f"HTTP {code}")
        rid = f"req_{uuid.uuid4().hex[:24]}"
        payload = {"type": "error", "error": {"type": etype, "message": msg}, "request_id": rid}
        h.send_json(rec, code, payload, {"request-id": rid, **(headers or {})})

    def _respond(self, h: _Handler, rec: RecordedRequest, b: Behaviour) -> None:
        body = rec.body if isinstance(rec.body, dict) else {}
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        tool_name = tools[0].get("name", "classify") if tools else None
        stop, content, stop_details = "end_turn", [], None
        if b.kind in ("answer", "malformed"):
            if b.kind == "answer":
                obj = _answer_object(rec.schema, self._labels(b, rec), b.confidence, b.rationale)
            else:
                obj = {"text": b.text}
            if tool_name:
                content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool_name, "input": obj}]
                stop = "tool_use"
            else:
                content = [{"type": "text", "text": json.dumps(obj, ensure_ascii=False) if b.kind == "answer" else b.text}]
        elif b.kind == "text_only":
            content = [{"type": "text", "text": b.text}]
        elif b.kind in ("empty", "no_choices"):
            content = []
        elif b.kind in ("refusal", "content_filter"):
            stop = "refusal"
            stop_details = {"type": "refusal", "category": None, "explanation": b.text or "The request was declined."}
        else:
            raise ValueError(f"unknown behaviour {b.kind!r}")
        out_text = json.dumps(content)
        input_tokens = _count_tokens(_system_text(body) + "\n" + _user_text(body) + json.dumps(tools))
        output_tokens = _count_tokens(out_text) if content else 0
        if b.usage is not None:
            input_tokens, output_tokens = b.usage
        payload = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake-model"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "stop_details": stop_details,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"},
        }
        h.send_json(rec, 200, payload, {"request-id": f"req_{uuid.uuid4().hex[:24]}"})


# -- pytest fixtures (import them into a test module: ``from fake_llm_servers import openai_server``) --


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server
