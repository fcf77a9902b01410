"""A hostile client cannot break the service (#13): every bad input is a 4xx with the one error body,
no body leaks a stack or a path, a 500 keeps the keep-alive connection, the store being locked is a
503 whose retry is processed normally, slow bodies time out, long bodies cost bounded CPU and storage."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from server_harness import ADMIN_KEY, ROUTE_KEY, Running, wait_until, write_config

from frontdesk.config import STARTER
from frontdesk.pipeline import Pipeline

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def service(saved_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("svc")
    running = Running(write_config(tmp / "frontdesk.yaml", saved_model, f"sqlite:///{tmp / 'store.db'}"))
    yield running
    running.stop()


def error_of(body: bytes) -> dict:
    """The error object of a response body, checked for the one shape and for leaks."""
    payload = json.loads(body)
    assert set(payload) == {"error"}, payload
    err = payload["error"]
    assert set(err) == {"type", "message", "details", "request_id"} and err["message"] and err["request_id"]
    text = body.decode()
    assert "Traceback" not in text and "/tmp/" not in text and ".py" not in text and "'body'" not in text, text
    return err


HOSTILE = [  # (case, raw body, extra headers, status, error type, words the message must contain)
    ("lone surrogate in sender", b'{"text": "hi there", "sender": "\\ud800"}', {}, 422, "invalid_request", "sender"),
    ("lone surrogate in channel", b'{"text": "hi there", "channel": "\\udfff"}', {}, 422, "invalid_request", "channel"),
    ("lone surrogate in text", b'{"text": "hi \\ud800 there"}', {}, 422, "invalid_request", "surrogate"),
    ("lone surrogate in a metadata value", b'{"text": "hi", "metadata": {"k": ["\\ud800"]}}', {}, 422, "invalid_request", "metadata.k.0"),
    ("lone surrogate in a metadata key", b'{"text": "hi", "metadata": {"\\ud800": 1}}', {}, 422, "invalid_request", "key"),
    ("metadata nested 300 levels", b'{"text": "hi", "metadata": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}", {}, 422,
     "invalid_request", "deeper than 32"),
    ("arrays nested 5000 levels", b'{"text": "hi", "metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}", {}, 400, "invalid_json", "nests"),
    ("NaN in a wrong-typed field", b'{"text": NaN}', {}, 400, "invalid_json", "NaN"),
    ("Infinity in metadata", b'{"text": "hi", "metadata": {"x": -Infinity}}', {}, 400, "invalid_json", "Infinity"),
    ("1e999 in a wrong-typed field", b'{"text": 1e999}', {}, 422, "invalid_request", "finite"),
    ("a 5000-digit integer", b'{"text": "hi", "metadata": {"n": ' + b"9" * 5000 + b"}}", {}, 422, "invalid_request", "integer"),
    ("not UTF-8", b'{"text": "caf\xe9"}', {}, 400, "invalid_json", "UTF-8"),
    ("truncated JSON", b'{"text": "broken', {}, 400, "invalid_json", "line 1"),
    ("empty body", b"", {}, 400, "invalid_json", "empty"),
    ("a JSON array", b'["not", "an", "object"]', {}, 422, "invalid_request", "body"),
    ("unknown field", b'{"text": "hello", "txt": "typo"}', {}, 422, "invalid_request", "txt"),
    ("wrong type", b'{"text": 123}', {}, 422, "invalid_request", "text"),
    ("empty text", b'{"text": ""}', {}, 422, "invalid_request", "text"),
    ("whitespace text", b'{"text": "   \\n"}', {}, 422, "invalid_message", "empty"),
    ("text/plain", b'{"text": "hello"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type", "application/json"),
    ("a form (curl -d)", b"text=hello", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type",
     "Content-Type"),
    ("no content type", b'{"text": "hello"}', {"Content-Type": ""}, 415, "unsupported_media_type", "Content-Type"),
    ("gzip body", b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"}, 415, "unsupported_media_type", "uncompressed"),
    ("latin-1 charset", b'{"text": "hello"}', {"Content-Type": "application/json; charset=latin-1"}, 415,
     "unsupported_media_type", "UTF-8"),
]


@pytest.mark.parametrize(("case", "body", "headers", "status", "kind", "needle"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_body_is_a_4xx_and_the_connection_stays_usable(service: Running, case: str, body: bytes, headers: dict,
                                                               status: int, kind: str, needle: str) -> None:
    with service.keep_alive() as conn:
        hdrs = {**JSON, **headers}
        if hdrs.get("Content-Type") == "":
            del hdrs["Content-Type"]
        got, _, data = conn.request("POST", "/v1/route", body, hdrs)
        assert got == status, data
        err = error_of(data)
        assert err["type"] == kind and needle in err["message"], err
        ok, _, data = conn.request("POST", "/v1/route", json_body={"text": "where is my parcel?"})
        assert ok == 200 and conn.reconnects == 0, (ok, data)


@pytest.mark.parametrize("field", ["note", "actor", "decision_id"])
def test_surrogates_in_feedback_and_review_fields_are_422(service: Running, field: str) -> None:
    body = {"decision_id": "abc", "labels": ["billing_issue"], field: "\ud800"}
    raw = json.dumps(body).encode()  # json.dumps escapes the lone surrogate as \ud800
    with service.keep_alive() as conn:
        status, _, data = conn.request("POST", "/v1/feedback", raw, JSON)
        assert status == 422 and field in error_of(data)["message"]
        status, _, data = conn.request("POST", "/v1/review/abc", b'{"labels": ["billing_issue"], "reviewer": "\\udc00"}', JSON)
        assert status == 422 and "reviewer" in error_of(data)["message"]
        assert conn.request("GET", "/healthz")[0] == 200 and conn.reconnects == 0


def test_validation_details_name_fields_without_echoing_input(service: Running) -> None:
    with service.keep_alive() as conn:
        status, _, data = conn.request("POST", "/v1/route/batch", json_body={"messages": [{"text": "ok"}, {"text": 5, "sender": ["x"]}]})
    err = error_of(data)
    assert status == 422
    fields = {d["field"] for d in err["details"]}
    assert fields == {"messages.1.text", "messages.1.sender"}
    assert all(set(d) == {"field", "message", "type"} for d in err["details"])


@pytest.mark.parametrize(("method", "path", "status", "needle"), [
    ("GET", "/nope", 404, "/docs"),
    ("GET", "/v1/route", 405, "POST"),
    ("DELETE", "/v1/review", 405, "GET"),
    ("GET", "/v1/review?offset=9223372036854775808", 422, "query.offset"),
    ("GET", "/v1/review?limit=0", 422, "query.limit"),
    ("GET", "/v1/review?status=done", 422, "query.status"),
])
def test_framework_errors_use_the_error_body(service: Running, method: str, path: str, status: int, needle: str) -> None:
    with service.keep_alive() as conn:
        got, _, data = conn.request(method, path)
        assert got == status and needle in error_of(data)["message"]
        assert conn.request("GET", "/healthz")[0] == 200 and conn.reconnects == 0


def test_413_has_details_and_the_limit(service: Running) -> None:
    with service.keep_alive() as conn:
        status, headers, data = conn.request("POST", "/v1/route", json_body={"text": "x" * 30_000})
    err = error_of(data)
    assert status == 413 and err["details"] == {"limit_bytes": 20_000} and headers["connection"] == "close"
    with service.keep_alive() as conn:
        status, _, data = conn.request("POST", "/v1/route/batch", json_body={"messages": [{"text": "hi"}] * 11})
        assert status == 413 and error_of(data)["details"] == {"max_batch": 10}


def test_an_unexpected_error_is_a_500_without_leaks_and_keeps_the_connection(
        service: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail in /srv/frontdesk/secret.py line 3")

    with service.keep_alive() as conn:
        monkeypatch.setattr(Pipeline, "_classify", boom)
        with caplog.at_level(logging.ERROR, logger="frontdesk.server"):
            status, headers, data = conn.request("POST", "/v1/route", json_body={"text": "a message that fails"},
                                                 headers={"X-Request-ID": "probe-500"})
        monkeypatch.undo()
        err = error_of(data)
        assert status == 500 and err["type"] == "internal" and "secret" not in data.decode()
        assert err["request_id"] == "probe-500" == headers["x-request-id"] and "probe-500" in err["message"]
        assert any("probe-500" in r.getMessage() and r.exc_info for r in caplog.records), "the error is logged with its id"
        status, _, data = conn.request("POST", "/v1/route", json_body={"text": "a message that works"})
        assert status == 200 and conn.reconnects == 0, "a 500 must not close the keep-alive connection"


def test_request_id_and_access_log(service: Running, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="frontdesk.access"), service.keep_alive() as conn:
        _, headers, _ = conn.request("POST", "/v1/route", json_body={"text": "where is my parcel?"}, headers={"X-Request-ID": "abc-123"})
        assert headers["x-request-id"] == "abc-123"
        _, headers, _ = conn.request("GET", "/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        generated = headers["x-request-id"]
        assert generated != "bad id\twith spaces" and len(generated) == 32

        def lines() -> list[str]:  # the line is written just after the answer is sent
            return [r.getMessage() for r in caplog.records if r.name == "frontdesk.access"]

        wait_until(lambda: any(f"id={generated}" in line for line in lines()), what="the access log line")
    assert any(line.startswith("POST /v1/route 200 ") and "id=abc-123" in line for line in lines()), lines()
    assert any(line.startswith("GET /healthz 200 ") and f"id={generated}" in line for line in lines()), lines()
    assert not any("parcel" in line for line in lines()), "the access log never holds message texts"


def test_review_conflict_names_the_http_endpoint(service: Running) -> None:
    """Never queued, or resolved twice: either way the 409 says what to call instead, in HTTP terms."""
    with service.client() as c:
        d = c.post("/v1/route", json={"text": "I want to sue you, I am calling my lawyer"}).json()["decision"]
    with service.keep_alive() as conn:
        status, _, data = conn.request("POST", f"/v1/review/{d['id']}", json_body={"labels": ["billing_issue"], "action": "approve"})
        if status == 200:  # it went to review (e.g. requires_human): resolving it again is the conflict
            status, _, data = conn.request("POST", f"/v1/review/{d['id']}", json_body={"labels": ["billing_issue"]})
    err = error_of(data)
    assert status == 409 and "POST /v1/feedback" in err["message"] and "add_feedback" not in err["message"], err


def test_feedback_labels_must_be_distinct_and_known(service: Running) -> None:
    with service.keep_alive() as conn:
        status, _, data = conn.request("POST", "/v1/feedback", json_body={"decision_id": "x", "labels": ["billing_issue", "billing_issue"]})
        assert status == 422 and "repeat" in error_of(data)["message"]
        status, _, data = conn.request("POST", "/v1/feedback", json_body={"decision_id": "x", "labels": ["nope"]})
        assert status == 422 and error_of(data)["type"] == "unknown_label"


def test_response_does_not_repeat_the_text_in_targets(service: Running, tmp_path: Path) -> None:
    text = "Where is my parcel? " * 400
    with service.client() as c:
        body = c.post("/v1/route", json={"text": text}).json()
    assert body["decision"]["text"] == text.strip() or body["decision"]["text"].startswith("Where is my parcel?")
    assert body["targets"] and all("text" not in t for t in body["targets"])


def test_starter_config_has_no_whole_text_stdout_sink_and_hints_at_keys() -> None:
    data = yaml.safe_load(STARTER)
    assert data["sinks"] == [] and "frontdesk keys create" in STARTER and "redact=true" in STARTER
    assert data["auth"]["protect_metrics"] is False and data["server"]["read_timeout_s"] == 30


def test_a_body_that_never_completes_gets_408(saved_model: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}")
    data = yaml.safe_load(cfg.read_text())
    data["server"]["read_timeout_s"] = 0.5
    cfg.write_text(yaml.safe_dump(data))
    svc = Running(cfg)
    try:
        with socket.create_connection(("127.0.0.1", svc.port), timeout=20) as s:
            s.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + ROUTE_KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"text\": ")
            reply = b""
            while chunk := s.recv(65536):  # the server answers, then closes: recv returns b"" (the deadline is the socket timeout)
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and error_of(body)["type"] == "request_timeout"
        with svc.client() as c:  # the server is fine afterwards
            assert c.post("/v1/route", json={"text": "where is my parcel?"}).status_code == 200
    finally:
        svc.stop()


def test_store_locked_is_503_and_the_retry_is_processed(saved_model: Path, tmp_path: Path) -> None:
    """A real SQLite write lock held by another connection; a short busy timeout; then the lock goes away."""
    db = tmp_path / "store.db"
    svc = Running(write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{db}", store_busy_timeout_s=0.2))
    try:
        msg = {"text": "my card was charged twice for one coffee", "sender": "s9"}
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # holds the write lock
        try:
            with svc.keep_alive(ADMIN_KEY) as conn:
                status, headers, data = conn.request("POST", "/v1/route", json_body=msg)
                err = error_of(data)
                assert status == 503 and err["type"] == "store_unavailable" and headers["retry-after"] == "1"
                assert "store.db" not in data.decode()
                status, _, data = conn.request("GET", "/v1/review")
                assert status == 200, data  # readers are not blocked by a writer in WAL mode
        finally:
            locker.rollback()
            locker.close()
        with svc.client() as c:
            retry = c.post("/v1/route", json=msg)
        assert retry.status_code == 200, retry.text
        d = retry.json()["decision"]
        assert d["duplicate_of"] is None and svc.state.store.get_decision(d["id"]) is not None
    finally:
        svc.stop()


def test_metrics_and_docs_can_require_a_key(service: Running, tmp_path_factory: pytest.TempPathFactory) -> None:
    state = service.state
    path = state.config_path
    original = path.read_text()
    with service.keep_alive(None) as anon:
        assert anon.request("GET", "/metrics")[0] == 200 and anon.request("GET", "/openapi.json")[0] == 200
        data = yaml.safe_load(original)
        data["auth"].update(protect_metrics=True, protect_docs=True)
        try:
            path.write_text(yaml.safe_dump(data))
            with service.client(ADMIN_KEY) as a:
                assert a.post("/v1/admin/reload").status_code == 200
            for p in ("/metrics", "/openapi.json", "/docs", "/redoc"):
                status, headers, body = anon.request("GET", p)
                assert status == 401 and error_of(body)["type"] == "unauthorized" and headers["www-authenticate"] == "Bearer"
            with service.client(ROUTE_KEY) as c:
                assert c.get("/metrics").status_code == 200 and c.get("/openapi.json").status_code == 200
            assert anon.request("GET", "/healthz")[0] == 200 and anon.request("GET", "/readyz")[0] == 200
        finally:
            path.write_text(original)
            with service.client(ADMIN_KEY) as a:
                assert a.post("/v1/admin/reload").status_code == 200


def test_long_bodies_are_cut_before_any_preprocessing(saved_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MB body: preprocessing reads only max_chars characters; the decision and what is stored stay small."""
    from frontdesk.intake import preprocessor

    seen: list[int] = []
    real = preprocessor.html_to_text
    monkeypatch.setattr(preprocessor, "html_to_text", lambda t: (seen.append(len(t)), real(t))[1])
    cfg = write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}",
                       sinks=[f"jsonl://{tmp_path / 'routed.jsonl'}?redact=true"])
    data = yaml.safe_load(cfg.read_text())
    data["server"]["max_body_bytes"] = 2_000_000
    data["router"]["max_chars"] = 2_000
    cfg.write_text(yaml.safe_dump(data))
    svc = Running(cfg)
    try:
        text = "<p>My parcel for order 5521 has not arrived, where is it?</p>\n" * 16_000  # ~1 MB of HTML
        with svc.client() as c:
            r = c.post("/v1/route", json={"text": text, "sender": "big"})
        assert r.status_code == 200, r.text
        d = r.json()["decision"]
        assert d["truncated"] and "first 2000 characters" in d["reason"]
        assert seen and max(seen) <= 2_000, "preprocessing ran over more than max_chars characters"
        assert len(d["text"]) <= 2_000 and len(d["message"]["text"]) <= 2_000 and len(d["original_text"]) <= 2_000
        stored = svc.state.store.get_decision(d["id"])
        assert stored is not None and len(stored.model_dump_json()) < 20_000
        line = json.loads((tmp_path / "routed.jsonl").read_text().splitlines()[0])
        assert line["text"].startswith("[redacted: ") and "parcel" not in line["text"] and line["parent_id"] == d["id"]
    finally:
        svc.stop()


def test_sink_redact_parameter(tmp_path: Path) -> None:
    from frontdesk.errors import ConfigError
    from frontdesk.routing.sinks import JsonlSink, RedactedSink, StdoutSink, WebhookSink, sink_from_url

    assert isinstance(sink_from_url("stdout"), StdoutSink)
    redacted = sink_from_url("stdout?redact=true")
    assert isinstance(redacted, RedactedSink) and isinstance(redacted.inner, StdoutSink)
    hook = sink_from_url("https://hooks.example.com/x?token=abc&redact=1")
    assert isinstance(hook, RedactedSink) and isinstance(hook.inner, WebhookSink)
    assert hook.inner.url == "https://hooks.example.com/x?token=abc"  # other parameters stay
    hook.close()
    plain = sink_from_url(f"jsonl://{tmp_path / 'a.jsonl'}?redact=false")
    assert isinstance(plain, JsonlSink)
    plain.close()
    with pytest.raises(ConfigError, match="redact=true or redact=false"):
        sink_from_url("stdout?redact=maybe")
