"""Shared parts of the console tests: a real service on loopback, sign-in over HTTP, a synthetic corpus."""

from __future__ import annotations

import re
import socket
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from frontdesk.config import STARTER
from frontdesk.server import create_app, hash_key
from frontdesk.store.store import Store
from frontdesk.types import Decision, LabelScore, Message, TierTrace

ADMIN, ADMIN2, ROUTE = "fd_console_admin_key", "fd_console_other_admin", "fd_console_route_key"
KEYS = [{"name": "ana", "sha256": hash_key(ADMIN), "scopes": ["admin"]},
        {"name": "ben", "sha256": hash_key(ADMIN2), "scopes": ["admin"]},
        {"name": "web", "sha256": hash_key(ROUTE), "scopes": ["route"]}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_config(path: Path, model: Path, store_url: str, *, auth: bool = True, llm_url: str | None = None,
                   **overrides: Any) -> Path:
    """frontdesk.yaml for a console test: three keys (ana, ben: admin; web: route), an SLA on the review
    queue and on refund_request, and optionally an LLM tier on a fake OpenAI-compatible server."""
    data = yaml.safe_load(STARTER)
    data.update(model=str(model), store=store_url, sinks=[])
    data["auth"] = {"enabled": auth, "keys": KEYS if auth else []}
    data["server"] = {"watch_config": False}
    data["targets"]["review_queue"] = {"queue": "human-review", "priority": 2, "sla_minutes": 240}
    data["labels"] = {"refund_request": {"queue": "billing", "priority": 1, "sla_minutes": 30}}
    if llm_url:
        data["llm"] = {"provider": "openai", "model": "gpt-4o-mini", "base_url": llm_url, "api_key_env": "FD_CONSOLE_LLM_KEY",
                       "retries": 0, "timeout_s": 5, "cache_ttl_s": 0, "price_input_per_1m": 0.15,
                       "price_output_per_1m": 0.6}
    data.update(overrides)
    path.write_text(yaml.safe_dump(data))
    return path


class Service:
    """The frontdesk service (API + console) under uvicorn in a thread, on a free loopback port."""

    def __init__(self, config_path: Path) -> None:
        self.app = create_app(config_path)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Store:
        return self.app.state.frontdesk.store

    def api(self, key: str = ADMIN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def route(self, texts: list[str], **fields: Any) -> list[dict[str, Any]]:
        """Route texts through the real API; their decisions."""
        with self.api() as c:
            out = []
            for t in texts:
                r = c.post("/v1/route", json={"text": t, **fields})
                assert r.status_code == 200, r.text
                out.append(r.json()["decision"])
            return out

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.frontdesk.close()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')
META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def sign_in(client: httpx.Client, key: str) -> str:
    """Sign ``client`` in to the console with ``key`` (cookies kept in the client); the session's CSRF token."""
    page = client.get("/ui/login")
    assert page.status_code == 200, page.text
    r = client.post("/ui/login", data={"key": key, "csrf": CSRF.search(page.text).group(1), "next": "/ui/queue"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/queue", r.text
    queue = client.get("/ui/queue")
    assert queue.status_code == 200, queue.text
    return META_CSRF.search(queue.text).group(1)


# -- a synthetic corpus with every kind of decision, at known times ---------------------------------
LABELS = ["billing_issue", "refund_request", "shipping_status", "account_access", "change_plan"]


def _trace(kind: str, label: str | None, conf: float, i: int) -> list[TierTrace]:
    top = [LabelScore(label=label or "billing_issue", score=conf), LabelScore(label=LABELS[(i + 1) % 5], score=(1 - conf) / 2)]
    if kind == "rules":
        return [TierTrace(tier="guardrails", kind="rules", verdict="accept", labels=[label], confidence=1.0, top=top[:1])]
    first = TierTrace(tier="linear", kind="linear", verdict="accept" if kind == "linear" else "escalate",
                      labels=[label] if label else [], confidence=conf, top=top, reason=f"confidence {conf:.2f}")
    if kind == "linear":
        return [first]
    llm = TierTrace(tier="llm", kind="llm", verdict="accept", labels=[label] if label else [], confidence=0.8,
                    cost_usd=0.002, tokens={"input": 900, "output": 30}, rationale="matches the label", top=top[:1])
    if kind == "llm":
        return [first, llm]
    if kind == "llm_error":
        return [first, llm.model_copy(update={"verdict": "error", "cost_usd": 0.0, "rationale": None, "reason": "timeout"}),
                TierTrace(tier="human", kind="human", verdict="review", labels=[label] if label else [])]
    return [first, TierTrace(tier="human", kind="human", verdict="review", labels=[label] if label else [])]


def corpus(now: datetime, n: int = 240) -> list[Decision]:
    """``n`` decisions, one every 7 minutes back from ``now`` (so about 28 hours): rules, linear,
    LLM-answered (with cost), LLM errors sent to human review, human review with and without a best
    guess, the unknown label, multi-label decisions, flagged ones and repeats of earlier ones."""
    out: list[Decision] = []
    for i in range(n):
        at = now - timedelta(minutes=7 * i + 1, seconds=i % 60)
        label = LABELS[i % 5]
        kind = ["linear", "linear", "llm", "linear", "human", "rules", "linear", "llm_error", "linear", "unknown"][i % 10]
        conf = 0.35 + (i * 37 % 60) / 100
        labels = [label]
        if kind == "unknown":
            labels, kind = ["unknown"], "linear"
        if i % 11 == 3 and kind == "linear":
            labels = [label, LABELS[(i + 2) % 5]]
        if kind == "human" and i % 20 == 4:
            labels = []  # no tier produced a guess
        tier = {"rules": "guardrails", "linear": "linear", "llm": "llm", "llm_error": "human", "human": "human"}[kind]
        trace = _trace(kind, labels[0] if labels else None, conf, i)
        cost = sum(t.cost_usd for t in trace)
        flagged = tier == "human" or (kind == "linear" and i % 13 == 0)
        d = Decision(text=f"message {i}: about {label}", labels=labels, confidence=conf, tier=tier,
                     escalated=tier not in ("linear", "guardrails"), flagged=flagged, trace=trace, cost_usd=cost,
                     created_at=at, message=Message(text=f"message {i}", sender=f"user{i % 6}", channel="chat"))
        if i % 17 == 5 and out:  # a repeat of the previous decision (dedup window)
            prev = out[-1]
            d = prev.model_copy(update={"id": f"dup{i:05d}", "duplicate_of": prev.id, "created_at": at, "cost_usd": 0.0})
        out.append(d)
    return out
