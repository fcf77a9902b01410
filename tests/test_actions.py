"""Actions (classify → extract → act) against real parts: a webhook receiver on loopback, the real store
(SQLite and PostgreSQL) as the idempotency ledger, entry points from a package on sys.path, and the
real HTTP service for held actions released through the review API — end to end with a fake LLM."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fake_llm_servers import FakeOpenAIServer

from frontdesk import ConfigError, Decision, Message, Router
from frontdesk.config import STARTER, parse_config
from frontdesk.pipeline import Pipeline
from frontdesk.routing.actions import ActionCall, ActionRunner, ActionSpec, get_action, register_action, unregister_action
from frontdesk.server import create_app, hash_key
from frontdesk.store.store import Store
from frontdesk.types import ActionResult

ADMIN_KEY = "fd_admin_actions_key"


class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST; answers from a script of status codes (then 200)."""

    def __init__(self, script: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.script = list(script or [])
        self.delay_s = delay_s
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                time.sleep(outer.delay_s)
                with outer.lock:
                    outer.calls.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": json.loads(body)})
                    code = outer.script.pop(0) if outer.script else 200
                data = json.dumps({"ticket": f"T-{len(outer.calls)}"} if code == 200 else {"error": "no"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def decision(**kw: Any) -> Decision:
    base = {"text": "refund me <EMAIL_1>", "labels": ["refund_request"], "confidence": 0.9, "tier": "linear",
            "escalated": False, "flagged": False, "fields": {"emails": ["<EMAIL_1>"]}}
    return Decision(**{**base, **kw})


def runner(url: str, **spec: Any) -> ActionRunner:
    return ActionRunner({"refund_request": "open_refund"}, {"open_refund": ActionSpec(webhook=url, backoff_s=0.0, **spec)})


# -- planning -----------------------------------------------------------------------------------
def test_plan_runs_only_accepted_decisions(receiver: Receiver) -> None:
    r = runner(receiver.url)
    assert [a.status for a in r.plan(decision())] == ["pending"]
    human = r.plan(decision(tier="human", flagged=True))
    assert [a.status for a in human] == ["skipped"] and "on_review: hold" in human[0].reason
    assert [a.status for a in r.plan(decision(flagged=True))] == ["skipped"]
    assert [a.status for a in runner(receiver.url, on_review="hold").plan(decision(tier="human", flagged=True))] == ["held"]
    held = r.plan(decision(requires_human=True), requires_human_reason="very negative sentiment (-0.90)")
    assert [a.status for a in held] == ["held"] and "very negative" in held[0].reason
    assert r.plan(decision(labels=["billing_issue"])) == []  # no action for this label
    assert [a.status for a in r.plan(decision(duplicate_of="x"))] == ["skipped"]


# -- idempotency --------------------------------------------------------------------------------
def test_webhook_action_fires_once_under_retries(receiver: Receiver, store_url: str) -> None:
    receiver.script = [503]  # the first attempt fails: the webhook machinery retries with the same key
    r = runner(receiver.url)
    d = decision()
    d = d.model_copy(update={"actions": r.plan(d)})
    with Store(store_url) as store:
        store.save_decision(d)
        first = r.run(d, store)
        again = r.run(d, store)  # a retried request / a second worker: nothing fires twice
        stored = store.get_decision(d.id)
    assert [a.status for a in first] == ["done"] and first[0].result == {"status": 200, "body": {"ticket": "T-2"}}
    assert again == first and stored is not None and stored.actions == first
    assert len(receiver.calls) == 2 and first[0].attempts == 1  # one claim, two HTTP attempts (503, then 200)
    keys = {c["headers"]["idempotency-key"] for c in receiver.calls}
    assert keys == {f"{d.id}:open_refund"}
    body = receiver.calls[-1]["body"]
    assert body["decision_id"] == d.id and body["fields"] == {"emails": ["<EMAIL_1>"]} and body["pii"] is None


def test_concurrent_runners_fire_once(store_url: str) -> None:
    slow = Receiver(delay_s=0.2)
    try:
        r = runner(slow.url)
        d = decision()
        d = d.model_copy(update={"actions": r.plan(d)})
        with Store(store_url) as store:
            store.save_decision(d)
            results: list[Any] = []
            threads = [threading.Thread(target=lambda: results.append(r.run(d, store))) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            final = store.actions_of(d.id)
    finally:
        slow.close()
    assert len(results) == 6 and len(slow.calls) == 1 and final[0].status == "done" and final[0].attempts == 1


def test_failed_action_is_recorded_not_raised(receiver: Receiver) -> None:
    receiver.script = [400]
    r = runner(receiver.url)
    p_decision = decision()
    p_decision = p_decision.model_copy(update={"actions": r.plan(p_decision)})
    from frontdesk.routing.actions import MemoryLedger

    out = r.run(p_decision, MemoryLedger())
    assert out[0].status == "failed" and "rejected target" in (out[0].error or "") and len(receiver.calls) == 1


# -- Python actions: register_action and entry points -------------------------------------------
def test_registered_python_action_gets_the_fields_and_its_result_is_stored(saved_model: Path, tmp_path: Path) -> None:
    seen: list[ActionCall] = []

    def open_ticket(call: ActionCall) -> dict[str, Any]:
        seen.append(call)
        return {"ticket": "PY-1", "amounts": call.fields.get("amounts")}

    register_action("open_ticket_test", open_ticket)
    try:
        data = yaml.safe_load(STARTER) | {"model": str(saved_model), "sinks": [], "extract": {"store_pii": True},
                                          "gates": {"linear": {"threshold": 0.0, "min_margin": 0.0}},
                                          "labels": {"billing_issue": {"action": "open_ticket_test"}}}
        p = Pipeline(Router.load(saved_model), parse_config(data))
        out = p.route(Message(text="I was charged £12.99 twice, mail me at ana@example.org",
                              metadata={"sent_at": "2026-03-06T09:14:00+00:00"}))
        p.run_actions(out)  # a retry: the in-memory ledger remembers it ran
        p.close()
    finally:
        unregister_action("open_ticket_test")
    d = out.decision
    assert d.labels == ["billing_issue"] and [a.status for a in d.actions] == ["done"]
    assert d.actions[0].result == {"ticket": "PY-1", "amounts": [{"value": "12.99", "currency": "GBP"}]}
    assert len(seen) == 1 and seen[0].fields["emails"] == ["ana@example.org"]  # in-process, store_pii: the originals
    assert seen[0].text.count("<EMAIL_1>") == 1 and seen[0].pii == {"<EMAIL_1>": "ana@example.org"}


def test_entry_point_actions_are_found_and_unknown_names_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site"
    (pkg / "fd_ep_actions-1.0.dist-info").mkdir(parents=True)
    (pkg / "fd_ep_actions-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fd-ep-actions\nVersion: 1.0\n")
    (pkg / "fd_ep_actions-1.0.dist-info" / "entry_points.txt").write_text("[frontdesk.actions]\nep_echo = fd_ep_actions:echo\n")
    (pkg / "fd_ep_actions.py").write_text("def echo(call):\n    return {'echo': call.label}\n")
    monkeypatch.syspath_prepend(str(pkg))
    func = get_action("ep_echo")
    assert func(ActionCall(id="d:ep_echo", action="ep_echo", label="x", decision_id="d", labels=["x"], text="t")) == {"echo": "x"}
    assert parse_config({"model": ".", "labels": {"a": {"action": "ep_echo"}}}).labels["a"].action == "ep_echo"
    unregister_action("ep_echo")
    monkeypatch.delitem(sys.modules, "fd_ep_actions", raising=False)
    with pytest.raises(ConfigError, match="unknown action 'nope'"):
        ActionRunner({"a": "nope"})


# -- the service: held actions released through the review API, end to end ----------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, config: Path) -> None:
        self.app = create_app(config, watch=False)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=free_port(), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.config.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.frontdesk.close()


def test_end_to_end_fields_masked_llm_action_once_and_held_action_approved(
        saved_model: Path, store_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """message → decision with fields; the LLM prompt is masked; the LLM's (flagged) decision and its retried
    duplicate run no action; a requires_human decision's action waits until a reviewer approves it over HTTP."""
    with FakeOpenAIServer() as llm:
        data = yaml.safe_load(STARTER)
        data.update(
            model=str(saved_model), store=store_url, sinks=[],
            auth={"enabled": True, "keys": [{"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]}]},
            gates={"linear": {"threshold": 1.0}},  # every message reaches the LLM tier
            llm={"provider": "openai", "model": "gpt-4o-mini", "base_url": llm.base_url, "retries": 0, "cache_ttl_s": 0},
            actions={"hook": {"webhook": receiver.url, "backoff_s": 0}},
        )
        labels = yaml.safe_load((saved_model / "frontdesk.json").read_text())["labels"]
        data["labels"] = {label: {"action": "hook"} for label in labels}
        path = tmp_path / "frontdesk.yaml"
        path.write_text(yaml.safe_dump(data))
        svc = Service(path)
        try:
            with svc.client() as c:
                msg = {"text": "I was charged €40 twice on 3/4, card 4111 1111 1111 1111, mail ana@example.org",
                       "sender": "ana", "metadata": {"sent_at": "2026-03-06T09:14:00+00:00"}}
                first = c.post("/v1/route", json=msg)
                retry = c.post("/v1/route", json=msg)  # the client did not see the answer and sends it again
                assert first.status_code == retry.status_code == 200, first.text
                d, d2 = first.json()["decision"], retry.json()["decision"]
                assert d["tier"] == "llm" and d["fields"]["amounts"] == [{"value": "40.00", "currency": "EUR"}]
                assert d["fields"]["emails"] == ["<EMAIL_1>"] and d["fields"]["cards"] == ["**** **** **** 1111"]
                # no acceptance policy fitted for this LLM: the safe default keeps the classifier's label, flagged,
                # and a flagged decision's action is skipped (on_review: skip, the default), saying why
                assert d["flagged"] and [a["status"] for a in d["actions"]] == ["skipped"]
                assert "on_review: hold" in d["actions"][0]["reason"]
                assert d2["duplicate_of"] == d["id"] and [a["status"] for a in d2["actions"]] == ["skipped"]
                assert receiver.calls == []
                prompt = llm.requests[0].raw.decode()
                assert "ana@example.org" not in prompt and "4111" not in prompt and "<EMAIL_1>" in llm.requests[0].user

                # a legal threat fires the guardrail → requires_human → the action is held, not run
                held = c.post("/v1/route", json={"text": "I will sue you, my lawyer has the papers ready", "sender": "bo"})
                h = held.json()["decision"]
                assert h["requires_human"] and [a["status"] for a in h["actions"]] == ["held"], (h["tier"], h["reason"], h["actions"])
                assert receiver.calls == []
                queue = c.get("/v1/review").json()["items"]
                item = next(i for i in queue if i["decision_id"] == h["id"])
                assert item["reason"] == "requires_human" and item["decision"]["actions"][0]["status"] == "held"
                missing = c.post(f"/v1/review/{h['id']}", json={"labels": h["labels"]})
                assert missing.status_code == 422 and "approve" in missing.json()["error"]["message"]
                ok = c.post(f"/v1/review/{h['id']}", json={"labels": h["labels"], "reviewer": "ana", "action": "approve"})
                assert ok.status_code == 200, ok.text
                assert [a["status"] for a in ok.json()["decision"]["actions"]] == ["done"]
                assert len(receiver.calls) == 1 and receiver.calls[0]["body"]["approved_by"] == "ana"
                assert receiver.calls[0]["body"]["decision_id"] == h["id"]
                again = c.post(f"/v1/review/{h['id']}", json={"labels": h["labels"], "action": "approve"})
                assert again.status_code == 409 and len(receiver.calls) == 1  # approving twice runs nothing twice

                # rejected: never runs
                r = c.post("/v1/route", json={"text": "this is a formal complaint, my solicitor will contact you",
                                               "sender": "cy"}).json()["decision"]
                assert [a["status"] for a in r["actions"]] == ["held"], [(t["tier"], t.get("role"), t["verdict"], t["labels"], t["reason"][:80]) for t in r["trace"]]
                no = c.post(f"/v1/review/{r['id']}", json={"labels": r["labels"], "action": "reject"})
                assert no.status_code == 200 and [a["status"] for a in no.json()["decision"]["actions"]] == ["rejected"]
                assert len(receiver.calls) == 1
                stored = svc.app.state.frontdesk.store.get_decision(r["id"])
                assert stored is not None and stored.actions[0].status == "rejected"

                metrics = c.get("/metrics").text
                assert 'frontdesk_actions_total{action="hook",status="done"}' in metrics
                assert 'frontdesk_actions_total{action="hook",status="held"} 2.0' in metrics
                assert "frontdesk_urgency_total{" in metrics and "frontdesk_sentiment_total{" in metrics
                assert "frontdesk_requires_human_total 2.0" in metrics
                assert 'frontdesk_fields_extracted_total{field="amounts"}' in metrics
        finally:
            svc.stop()


def test_review_without_held_actions_works_as_before(saved_model: Path, store_url: str, tmp_path: Path) -> None:
    data = yaml.safe_load(STARTER)
    data.update(model=str(saved_model), store=store_url, sinks=[], gates={"linear": {"threshold": 1.0}},
                auth={"enabled": True, "keys": [{"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]}]})
    path = tmp_path / "frontdesk.yaml"
    path.write_text(yaml.safe_dump(data))
    svc = Service(path)
    try:
        with svc.client() as c:
            d = c.post("/v1/route", json={"text": "my card payment failed"}).json()["decision"]
            assert d["tier"] == "human" and d["actions"] == []
            r = c.post(f"/v1/review/{d['id']}", json={"labels": ["billing_issue"], "action": "approve"})
            assert r.status_code == 200 and r.json()["status"] == "resolved"
            assert c.post(f"/v1/review/{d['id']}", json={"labels": ["billing_issue"]}).status_code == 409
    finally:
        svc.stop()


def test_reviewer_relabel_runs_the_new_labels_action(receiver: Receiver, store_url: str) -> None:
    r = ActionRunner({"refund_request": "refund", "billing_issue": "bill"},
                     {"refund": ActionSpec(webhook=receiver.url, on_review="hold"),
                      "bill": ActionSpec(webhook=receiver.url + "/bill", on_review="hold")})
    d = decision(tier="human", flagged=True)
    d = d.model_copy(update={"actions": r.plan(d)})
    assert [a.status for a in d.actions] == ["held"]
    with Store(store_url) as store:
        store.save_decision(d)
        out = r.review(d, store, approve=True, labels=["billing_issue"], reviewer="ana")
    assert {a.name: a.status for a in out} == {"refund": "cancelled", "bill": "done"}
    assert [c["path"] for c in receiver.calls] == ["/hook/bill"]


def test_memory_ledger_matches_the_store(receiver: Receiver) -> None:
    from frontdesk.routing.actions import MemoryLedger

    ledger = MemoryLedger()
    ledger.record_actions("d1", [ActionResult(name="a", status="pending")])
    assert ledger.claim_action("d1", "a", lease_s=60) and not ledger.claim_action("d1", "a", lease_s=60)
    assert ledger.claim_action("d1", "a", lease_s=0)  # a claim older than the lease is taken again (crashed worker)
    ledger.finish_action("d1", "a", "done", result=1)
    assert not ledger.claim_action("d1", "a", lease_s=0) and ledger.actions_of("d1")[0].attempts == 2


def test_upgrade_from_the_first_schema_keeps_old_decisions(store_url: str) -> None:
    """A database written before the actions migration: old decisions load, new ones can require a human."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", "frontdesk.store:migrations")
    old = {"id": "old1", "text": "hi", "labels": ["billing_issue"], "confidence": 0.2, "tier": "human", "escalated": True,
           "flagged": True, "reason": "", "truncated": False, "trace": [], "cost_usd": 0.0, "latency_ms": 1.0,
           "created_at": "2025-01-01T00:00:00+00:00"}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(sa.text("INSERT INTO decisions (id, created_at, stored_at, tier, labels, confidence, escalated, flagged, "
                             "payload) VALUES ('old1', :t, :t, 'human', '[\"billing_issue\"]', 0.2, true, true, :p)"),
                     {"t": "2025-01-01 00:00:00", "p": json.dumps(old)})
        conn.execute(sa.text("INSERT INTO review_items (decision_id, status, reason, created_at) "
                             "VALUES ('old1', 'pending', 'human', :t)"), {"t": "2025-01-01 00:00:00"})
    engine.dispose()
    with Store(store_url) as store:
        loaded = store.get_decision("old1")
        assert loaded is not None and loaded.actions == [] and loaded.fields == {} and loaded.sentiment is None
        assert [i.decision_id for i in store.review_queue()] == ["old1"]
        new = decision(requires_human=True, actions=[ActionResult(name="open_refund", status="held")])
        store.save_decision(new)
        assert {i.decision_id: i.reason for i in store.review_queue()}[new.id] == "requires_human"
        assert store.actions_of(new.id)[0].status == "held"


def test_actions_left_pending_by_a_crash_are_resumed_once(receiver: Receiver, store_url: str) -> None:
    r = runner(receiver.url)
    d = decision()
    d = d.model_copy(update={"actions": r.plan(d)})
    with Store(store_url) as store:
        store.save_decision(d)  # committed, then the process died before running the action
        assert store.unfinished_actions(older_than_s=3600) == []  # too recent: a live worker may be on it
        assert r.resume(store, older_than_s=0) == 1 and len(receiver.calls) == 1
        assert r.resume(store, older_than_s=0) == 0 and len(receiver.calls) == 1
        assert store.get_decision(d.id).actions[0].status == "done"
