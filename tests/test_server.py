"""The HTTP service against a real uvicorn server on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from server_harness import (
    ADMIN_KEY,
    ROUTE_KEY,
    Running,
    free_port,
    wait_until,
    write_config,
)

from frontdesk.server import create_app
from frontdesk.store.store import Store


@pytest.fixture()
def service(saved_model: Path, store_url: str, tmp_path: Path) -> Iterator[Running]:
    running = Running(write_config(tmp_path / "frontdesk.yaml", saved_model, store_url))
    yield running
    running.stop()


def test_route_is_persisted_and_targets_delivered(service: Running, tmp_path: Path) -> None:
    with service.client() as c:
        r = c.post("/v1/route", json={"text": "Where is my parcel? Order 5521 has not moved for a week", "sender": "u1"})
    assert r.status_code == 200, r.text
    body = r.json()
    d = body["decision"]
    assert d["labels"] and body["targets"][0]["parent_id"] == d["id"]
    stored = service.app.state.frontdesk.store.get_decision(d["id"])
    assert stored is not None and stored.labels == d["labels"] and stored.trace
    assert json.loads((tmp_path / "routed.jsonl").read_text().splitlines()[0])["parent_id"] == d["id"]


def test_batch(service: Running) -> None:
    msgs = [{"text": "cancel my subscription please"}, {"text": "I was charged twice"}, {"text": "lawyer!!"}]
    with service.client() as c:
        r = c.post("/v1/route/batch", json={"messages": msgs})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 3 and results[2]["decision"]["labels"] == ["legal_or_complaint"]
        bad = c.post("/v1/route/batch", json={"messages": [{"text": "ok"}, {"text": "   "}]})
        assert bad.status_code == 422 and "messages.1" in bad.json()["error"]["message"]
        big = c.post("/v1/route/batch", json={"messages": [{"text": "hi"}] * 11})
        assert big.status_code == 413 and "max_batch" in big.json()["error"]["message"]
    ids = [x["decision"]["id"] for x in results]
    assert all(service.app.state.frontdesk.store.get_decision(i) for i in ids)


def test_auth_scopes(service: Running) -> None:
    with service.client(None) as c:
        r = c.post("/v1/route", json={"text": "hello"})
        assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
    with service.client("fd_wrong") as c:
        assert c.post("/v1/route", json={"text": "hello"}).status_code == 401
    with service.client(ROUTE_KEY) as c:
        r = c.post("/v1/feedback", json={"decision_id": "x", "labels": ["billing_issue"]})
        assert r.status_code == 403 and "lacks the 'admin' scope" in r.json()["error"]["message"]
        assert c.get("/v1/review").status_code == 403 and c.post("/v1/admin/reload").status_code == 403
    with httpx.Client(base_url=service.url, headers={"X-API-Key": ADMIN_KEY}) as c:
        assert c.post("/v1/route", json={"text": "hello there"}).status_code == 200  # admin implies route
        assert c.get("/v1/review").status_code == 200


def test_bad_inputs_are_4xx_never_500(service: Running) -> None:
    with service.client() as c:
        assert c.post("/v1/route", json={"text": "x" * 30_000}).status_code == 413
        r = c.post("/v1/route", content=b'{"text": "broken', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"
        r = c.post("/v1/route", content=b'{"text": "caf\xe9 \xff"}', headers={"content-type": "application/json"})
        assert r.status_code in (400, 422)
        r = c.post("/v1/route", json={"text": "   "})
        assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
        r = c.post("/v1/route", json={"txt": "typo"})
        assert r.status_code == 422 and "text" in r.json()["error"]["message"]
        assert c.post("/v1/route", json=["not", "an", "object"]).status_code == 422
        r = c.post("/v1/route", content=b'{"text": "\\ud800 lone surrogate"}', headers={"content-type": "application/json"})
        assert r.status_code in (400, 422) and "Unicode" in r.text
        chunks = (b'{"text": "' + b"a" * 10_000 for _ in range(3))
        assert c.post("/v1/route", content=chunks, headers={"content-type": "application/json"}).status_code == 413


def test_feedback_and_review_queue(saved_model: Path, store_url: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "frontdesk.yaml", saved_model, store_url, gates={"linear": {"threshold": 0.999999}})
    svc = Running(path)
    try:
        with svc.client() as c:
            d = c.post("/v1/route", json={"text": "my card payment failed and I am confused"}).json()["decision"]
        assert d["tier"] == "human"
        with svc.client(ADMIN_KEY) as a:
            items = a.get("/v1/review").json()
            assert items["depth"] >= 1 and any(i["decision_id"] == d["id"] for i in items["items"])
            assert items["items"][0]["decision"]["trace"]
            r = a.post(f"/v1/review/{d['id']}", json={"labels": ["billing_issue"], "reviewer": "ana"})
            assert r.status_code == 200 and r.json()["status"] == "resolved"
            assert a.post(f"/v1/review/{d['id']}", json={"labels": ["billing_issue"]}).status_code == 409
            assert a.post("/v1/review/nope", json={"labels": ["billing_issue"]}).status_code == 404
            f = a.post("/v1/feedback", json={"decision_id": d["id"], "labels": ["refund_request"], "actor": "agent-7"})
            assert f.status_code == 200 and f.json()["labels"] == ["refund_request"]
            assert a.post("/v1/feedback", json={"decision_id": "nope", "labels": ["refund_request"]}).status_code == 404
            r = a.post("/v1/feedback", json={"decision_id": d["id"], "labels": ["no_such_label"]})
            assert r.status_code == 422 and "unknown label" in r.json()["error"]["message"]
        fb = svc.app.state.frontdesk.store.feedback(decision_id=d["id"])
        assert [x.source for x in fb] == ["review", "feedback"]
    finally:
        svc.stop()


def test_reload_under_traffic_drops_nothing(service: Running, tmp_path: Path) -> None:
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def traffic() -> None:
        with service.client() as c:
            while not done.is_set():
                r = c.post("/v1/route", json={"text": "where is my parcel, order 881?"})
                count[0] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: count[0] >= 10, what="traffic")
    state = service.state
    path = tmp_path / "frontdesk.yaml"
    data = yaml.safe_load(path.read_text())
    data["gates"] = {"linear": {"threshold": 0.123}}
    path.write_text(yaml.safe_dump(data))
    with service.client(ADMIN_KEY) as a:
        r = a.post("/v1/admin/reload")
        assert r.status_code == 200 and r.json()["gates"]["linear"]["threshold"] == 0.123
        seen = state.reloads
        data["gates"] = {"linear": {"threshold": 0.456}}
        path.write_text(yaml.safe_dump(data))  # the file watcher picks this one up (content hash, not mtime)
        assert state.wait_for_reloads(seen + 1, timeout=20), "file watch did not reload"
        wait_until(lambda: state.pipeline.router.gates["linear"].threshold == 0.456, what="the watcher to apply 0.456")
        assert state.last_reload_error is None
        data["gates"] = {"linear": {"threshold": "not a number"}}
        path.write_text(yaml.safe_dump(data))
        r = a.post("/v1/admin/reload")
        assert r.status_code == 400 and "running one stays" in r.json()["error"]["message"]
    at = count[0]
    wait_until(lambda: count[0] >= at + 10, what="traffic after the reloads")
    done.set()
    for t in threads:
        t.join()
    assert failures == [] and count[0] > 20
    assert state.pipeline.router.gates["linear"].threshold == 0.456


def test_health_metrics_openapi(service: Running) -> None:
    with service.client() as c:
        c.post("/v1/route", json={"text": "I want a refund for my broken blender"})
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and "linear" in ready["tiers"] and "model" not in ready
        metrics = c.get("/metrics").text
        for name in ("frontdesk_requests_total", "frontdesk_tier_latency_seconds_bucket", "frontdesk_review_queue_depth", "frontdesk_drift_unknown_rate",
                     "frontdesk_confidence_sum", "frontdesk_escalations_total", "frontdesk_decisions_total"):
            assert name in metrics
        spec = c.get("/openapi.json").json()
        assert {"/v1/route", "/v1/route/batch", "/v1/feedback", "/v1/review", "/v1/review/{decision_id}", "/v1/admin/reload"} <= set(spec["paths"])
        assert "RouteResponse" in spec["components"]["schemas"]


def test_kill_9_loses_no_acknowledged_decision(saved_model: Path, store_url: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "frontdesk.yaml", saved_model, store_url, sinks=[])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "frontdesk", "serve", "--config", str(path), "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    acked: list[str] = []
    try:
        deadline = time.time() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ROUTE_KEY}"}, timeout=5) as c:
            while True:
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.time() < deadline and proc.poll() is None, "server did not start"
                    time.sleep(0.1)
            stop = threading.Event()

            def pump() -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ROUTE_KEY}"}, timeout=5) as cc:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        try:
                            r = cc.post("/v1/route", json={"text": f"where is my order number {i}?"})
                        except httpx.TransportError:
                            return
                        if r.status_code == 200:
                            acked.append(r.json()["decision"]["id"])

            threads = [threading.Thread(target=pump) for _ in range(4)]
            for t in threads:
                t.start()
            while len(acked) < 150:
                assert time.time() < deadline
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            stop.set()
            for t in threads:
                t.join()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    with Store(store_url) as store:
        missing = [i for i in acked if store.get_decision(i) is None]
    assert len(acked) >= 150 and missing == []


def test_dev_mode_has_no_auth(saved_model: Path, tmp_path: Path) -> None:
    from frontdesk.config import AuthConfig, FrontdeskConfig

    cfg = FrontdeskConfig(model=saved_model, auth=AuthConfig(enabled=False), store=f"sqlite:///{tmp_path / 'dev.db'}")
    app = create_app(cfg)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the dev-mode server to start")
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/route", json={"text": "refund please"})
        assert r.status_code == 200
    finally:
        server.should_exit = True
        thread.join()
        app.state.frontdesk.close()


def _stored(service: Running, decision_id: str) -> bool:
    return service.app.state.frontdesk.store.get_decision(decision_id) is not None


def test_a_rejected_batch_leaves_no_dedup_memory(service: Running) -> None:
    """The hostile probe's repro: a batch refused with 422 must not make its first message a duplicate."""
    first = {"text": "I need to close my account please", "sender": "s1"}
    with service.client() as c:
        bad = c.post("/v1/route/batch", json={"messages": [first, {"text": "   "}]})
        assert bad.status_code == 422
        again = c.post("/v1/route", json=first)
        assert again.status_code == 200, again.text
        d = again.json()["decision"]
        assert d["duplicate_of"] is None and again.json()["targets"], "decided afresh, with its targets"
        assert _stored(service, d["id"])
        dup = c.post("/v1/route", json=first).json()["decision"]  # now it was committed: a true duplicate
    assert dup["duplicate_of"] == d["id"] and _stored(service, dup["id"])


def test_a_failed_commit_leaves_no_dedup_memory(service: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """Store unavailable → 503, not acknowledged; the retry is processed normally, never 'duplicate of' a ghost."""
    from frontdesk.store.store import StoreError

    store = service.app.state.frontdesk.store
    real = store.save_decisions
    failures = [1, 1]  # the group commit retries a failed batch job by job: fail both attempts

    def flaky(decisions):  # the first commit fails the way a locked or unreachable database does
        if failures:
            failures.pop()
            raise StoreError("database is locked")
        return real(decisions)

    monkeypatch.setattr(store, "save_decisions", flaky)
    msg = {"text": "my card was charged twice for one coffee", "sender": "s2"}
    with service.client() as c:
        r = c.post("/v1/route", json=msg)
        assert r.status_code == 503 and r.json()["error"]["type"] == "store_unavailable"
        retry = c.post("/v1/route", json=msg)
    assert retry.status_code == 200, retry.text
    d = retry.json()["decision"]
    assert d["duplicate_of"] is None and _stored(service, d["id"])


def test_copies_in_one_batch_commit_together(service: Running) -> None:
    msg = {"text": "Where is my parcel? Order 8812", "sender": "s3"}
    with service.client() as c:
        r = c.post("/v1/route/batch", json={"messages": [msg, msg]})
    assert r.status_code == 200, r.text
    first, second = (x["decision"] for x in r.json()["results"])
    assert first["duplicate_of"] is None and second["duplicate_of"] == first["id"]
    assert _stored(service, first["id"]) and _stored(service, second["id"])


def test_concurrent_copies_are_decided_once(service: Running) -> None:
    """Single flight: copies sent at the same moment get one decision and duplicates of it, all stored."""
    msg = {"text": "please send me a new card, mine is broken", "sender": "s4"}
    barrier = threading.Barrier(6)
    out: list[dict] = []

    def send() -> None:
        with service.client() as c:
            barrier.wait()
            r = c.post("/v1/route", json=msg)
            assert r.status_code == 200, r.text
            out.append(r.json()["decision"])

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    originals = [d for d in out if d["duplicate_of"] is None]
    assert len(out) == 6 and len(originals) == 1
    assert all(d["duplicate_of"] == originals[0]["id"] for d in out if d is not originals[0])
    assert all(_stored(service, d["id"]) for d in out)


def test_nul_and_surrogates_are_refused_before_any_backend_sees_them(service: Running) -> None:
    """PostgreSQL cannot store U+0000 in a text column: every string field is checked up front (422), on both backends."""
    with service.client(ADMIN_KEY) as c:
        d = c.post("/v1/route", json={"text": "where is my parcel?"}).json()["decision"]
        for body in ({"text": "hi there", "sender": "a\u0000b"}, {"text": "hi there", "channel": "\u0000"},
                     {"text": "hi \u0000 there"}, {"text": "hi there", "metadata": {"k": "\u0000"}}):
            r = c.post("/v1/route", json=body)
            assert r.status_code == 422 and "U+0000" in r.json()["error"]["message"], r.text
        r = c.post("/v1/feedback", json={"decision_id": d["id"], "labels": d["labels"] or ["billing_issue"], "note": "x\u0000"})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "note", r.text
        assert c.post("/v1/route", json={"text": "where is my parcel? \u200b"}).status_code == 200
