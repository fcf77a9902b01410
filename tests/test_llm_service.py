"""A hanging LLM cannot hold the HTTP service: a real uvicorn server, a real SQLite store, and a fake
OpenAI server (real wire protocol) that holds every request until the test releases it.

The checks are structural, not timed: while 50 escalations are stuck on (or refused by) the LLM tier,
confident messages are all answered *before* any held LLM request is released; then every
escalation ends in a persisted human-review decision whose trace says why and how long it took.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from waiting import wait_until
from fake_llm_servers import FakeOpenAIServer, hang

from frontdesk import Router
from frontdesk.server import create_app, hash_key
from frontdesk.store.store import Store

KEY = "fd_llm_service_test_key"
CONCURRENCY, WAITING, ESCALATIONS = 4, 4, 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split(router: Router, n_escalating: int) -> tuple[list[str], list[str]]:
    """Messages tier 1 accepts (confident) and messages it escalates (they go to the LLM tier)."""
    texts = sorted({t for ts in router.examples.values() for t in ts})
    confident = [d.text for d in router.route_batch(texts) if d.tier == "linear" and not d.flagged]
    candidates = [f"zq{i} blorptastic wibbly {i * 7919} fnord grommet" for i in range(n_escalating * 2)]
    escalating = [d.text for d in router.route_batch(candidates) if d.tier == "human"][:n_escalating]
    return confident, escalating


@pytest.fixture()
def service(saved_model: Path, tmp_path: Path) -> Iterator[tuple[str, FakeOpenAIServer, str]]:
    with FakeOpenAIServer(default=hang()) as llm:
        store_url = f"sqlite:///{tmp_path / 'service.db'}"
        config = {
            "model": str(saved_model), "store": store_url, "sinks": [], "rules": [],
            "preprocess": {"dedup_window_s": 0}, "server": {"watch_config": False},
            "auth": {"enabled": True, "keys": [{"name": "t", "sha256": hash_key(KEY), "scopes": ["route"]}]},
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "base_url": llm.base_url, "deadline_s": 300,
                    "retries": 0, "max_concurrency": CONCURRENCY, "max_waiting": WAITING, "breaker_timeouts": 100,
                    "breaker_failures": 100},
        }
        path = tmp_path / "frontdesk.yaml"
        path.write_text(yaml.safe_dump(config))
        app = create_app(path)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_until(lambda: server.started, timeout=30)
        try:
            yield f"http://127.0.0.1:{port}", llm, store_url
        finally:
            llm.release()
            server.should_exit = True
            thread.join(timeout=30)
            app.state.frontdesk.close()


def test_confident_requests_are_answered_while_50_escalations_hang(
    service: tuple[str, FakeOpenAIServer, str], router: Router
) -> None:
    url, llm, store_url = service
    confident, escalating = split(router, ESCALATIONS)
    assert len(escalating) == ESCALATIONS and len(confident) >= 10
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300, limits=httpx.Limits(max_connections=100)) as client, \
            ThreadPoolExecutor(ESCALATIONS) as pool:
        escalations: list[Future[httpx.Response]] = [
            pool.submit(client.post, "/v1/route", json={"text": t, "sender": f"esc-{i}"}) for i, t in enumerate(escalating)]
        # the LLM tier holds CONCURRENCY calls at the server and queues WAITING; the others are refused at once
        llm.wait_for_held(CONCURRENCY, timeout=60)
        wait_until(lambda: sum(f.done() for f in escalations) == ESCALATIONS - CONCURRENCY - WAITING, timeout=60)
        answered = []
        for i, text in enumerate(confident):
            r = client.post("/v1/route", json={"text": text, "sender": f"ok-{i}"})
            assert r.status_code == 200
            answered.append(r.json()["decision"])
        # every confident message was answered while the LLM still held every escalation it received
        assert all(d["tier"] == "linear" for d in answered)
        assert llm.held == CONCURRENCY and len(llm.requests) == CONCURRENCY
        assert all(rec.released_at is None and rec.status is None for rec in llm.requests)
        assert sum(not f.done() for f in escalations) == CONCURRENCY + WAITING
        llm.release()  # held calls end (the server hangs up); the queued ones then reach it and end the same way
        responses = [f.result(timeout=120) for f in escalations]
    assert all(r.status_code == 200 for r in responses)
    decisions = [r.json()["decision"] for r in responses]
    with Store(store_url) as store:
        stored = [store.get_decision(d["id"]) for d in decisions]
    assert all(s is not None and s.tier == "human" and s.flagged for s in stored)
    reasons = [s.trace[1].reason for s in stored]
    busy = [r for r in reasons if r.startswith("busy: LLM tier busy")]
    failed = [r for r in reasons if r.startswith("connection:")]
    assert len(busy) == ESCALATIONS - CONCURRENCY - WAITING and len(failed) == CONCURRENCY + WAITING
    assert all(s.trace[1].verdict == "error" and s.trace[1].latency_ms > 0 and s.trace[1].reason in s.reason for s in stored)
    assert all("[no call made," in r for r in busy) and all("[1 attempt," in r for r in failed)
    assert len(llm.requests) == CONCURRENCY + WAITING  # refused escalations never reached the LLM
