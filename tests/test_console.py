"""The console over real HTTP (uvicorn on loopback, httpx as the browser): sign-in and sessions, CSRF,
scopes, resolve / undo / re-route / label-a-cluster, error pages that leak nothing, the security
headers, vendored assets only, and the queue-age metric. The browser itself is in test_console_browser.py."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from console_fixtures import ADMIN, ADMIN2, ROUTE, Service, console_config, sign_in

HUMAN = {"linear": {"threshold": 0.999999}}  # every message goes to human review
MESSAGES = ["my card payment failed and I am confused", "where is my parcel, it has been two weeks",
            "I want my money back for the broken kettle", "how do I change my password",
            "please cancel my subscription today", "the app crashes when I open settings"]


@pytest.fixture()
def service(saved_model: Path, tmp_path: Path) -> Iterator[Service]:
    svc = Service(console_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 'store.db'}",
                                 gates=HUMAN))
    svc.route(MESSAGES, sender="alice@example.com", channel="email")
    yield svc
    svc.stop()


def browser(svc: Service) -> httpx.Client:
    return httpx.Client(base_url=svc.url, timeout=30, follow_redirects=False)


def pending_ids(svc: Service) -> list[str]:
    return [i.decision_id for i in svc.store.review_queue(limit=1000)]


# -- sign-in and sessions -------------------------------------------------------------------------
def test_sign_in_sets_a_strict_httponly_session_and_sign_out_ends_it(service: Service) -> None:
    with browser(service) as c:
        r = c.get("/ui/queue")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fqueue"
        page = c.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        bad = c.post("/ui/login", data={"key": "fd_wrong_key_123", "csrf": token, "next": "/ui/queue"})
        assert bad.status_code == 401 and "not valid" in bad.text and "fd_wrong_key_123" not in bad.text
        csrf = sign_in(c, ADMIN)
        cookie = next(h for h in c.cookies.jar if h.name == "fd_session")
        raw = [v for k, v in service_login_headers(service, ADMIN) if k == "set-cookie" and v.startswith("fd_session=")][0]
        assert "HttpOnly" in raw and "SameSite=strict" in raw and "Path=/ui" in raw
        assert ADMIN not in raw and cookie.value != ADMIN
        for path in ("/ui/queue", "/ui/decisions", "/ui/dashboard", "/ui/discover"):
            r = c.get(path)
            assert r.status_code == 200 and "ana · admin" in r.text and ADMIN not in r.text, path
        assert c.post("/ui/logout", data={"csrf": csrf}).headers["location"] == "/ui/login"
        stolen = cookie.value
    with httpx.Client(base_url=service.url, cookies={"fd_session": stolen}) as c:  # the old cookie is dead
        assert c.get("/ui/queue", follow_redirects=False).status_code == 303


def service_login_headers(svc: Service, key: str) -> list[tuple[str, str]]:
    with browser(svc) as c:
        page = c.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        return c.post("/ui/login", data={"key": key, "csrf": token, "next": "/ui/queue"}).headers.multi_items()


def test_sign_in_redirects_only_inside_the_console(service: Service) -> None:
    with browser(service) as c:
        page = c.get("/ui/login?next=https://evil.example/x")
        assert 'value="/ui/queue"' in page.text and "evil.example" not in page.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = c.post("/ui/login", data={"key": ADMIN, "csrf": token, "next": "//evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/queue"


def test_removing_a_key_from_the_config_ends_its_sessions(service: Service) -> None:
    with browser(service) as c:
        sign_in(c, ADMIN2)
        assert c.get("/ui/queue").status_code == 200
        state = service.app.state.frontdesk
        cfg = state.config.model_copy(update={"auth": state.config.auth.model_copy(
            update={"keys": [k for k in state.config.auth.keys if k.name != "ben"]})})
        from frontdesk.server.auth import KeyRing

        state.config, state.keys = cfg, KeyRing(cfg.auth)
        assert c.get("/ui/queue").status_code == 303


def test_dev_mode_shows_a_banner_and_still_checks_csrf(saved_model: Path, tmp_path: Path) -> None:
    svc = Service(console_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}",
                                 auth=False, gates=HUMAN))
    try:
        svc.route(MESSAGES[:2])
        with browser(svc) as c:
            r = c.get("/ui/queue")
            assert r.status_code == 200 and "Authentication is off" in r.text and "dev · admin" in r.text
            assert c.get("/ui/login").status_code == 303
            item = pending_ids(svc)[0]
            refused = c.post(f"/ui/queue/{item}/resolve", data={"label": "billing_issue"})
            assert refused.status_code == 403 and "security token" in refused.text
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/ui/queue").text).group(1)
            ok = c.post(f"/ui/queue/{item}/resolve", data={"label": "billing_issue", "csrf": csrf})
            assert ok.status_code == 303 and svc.store.review_queue(limit=10)[0].decision_id != item
            assert svc.store.feedback(decision_id=item)[0].actor == "dev"
    finally:
        svc.stop()


# -- CSRF and scopes ------------------------------------------------------------------------------
def test_every_form_is_csrf_protected(service: Service) -> None:
    item = pending_ids(service)[0]
    with browser(service) as c:
        csrf = sign_in(c, ADMIN)
        posts = [(f"/ui/queue/{item}/resolve", {"label": "billing_issue"}), (f"/ui/queue/{item}/undo", {}),
                 (f"/ui/decisions/{item}/reroute", {"label": "billing_issue"}),
                 ("/ui/discover/label", {"ids": item, "label": "billing_issue"}), ("/ui/logout", {})]
        for path, data in posts:
            for token in (None, "wrong", csrf[:-1]):
                r = c.post(path, data=data | ({"csrf": token} if token else {}))
                assert r.status_code == 403 and "security token" in r.text, (path, token)
            r = c.post(path, data=data | {"csrf": csrf}, headers={"Origin": "https://evil.example"})
            assert r.status_code == 403 and "another site" in r.text, path
        assert pending_ids(service)[0] == item and service.store.feedback() == []
        assert c.get("/ui/queue").status_code == 200  # still signed in: the logout was refused too
        # the sign-in form has its own (double-submit) token
        r = c.post("/ui/login", data={"key": ADMIN, "csrf": "made-up", "next": "/ui/queue"})
        assert r.status_code == 403 and "security token" in r.text


def test_a_route_key_reads_but_cannot_change_anything(service: Service) -> None:
    item = pending_ids(service)[0]
    with browser(service) as c:
        csrf = sign_in(c, ROUTE)
        q = c.get("/ui/queue")
        assert q.status_code == 200 and "web · read-only" in q.text and 'id="resolve"' not in q.text
        assert "route scope" in q.text
        for path, data in [(f"/ui/queue/{item}/resolve", {"label": "billing_issue"}),
                           (f"/ui/decisions/{item}/reroute", {"label": "billing_issue"}),
                           ("/ui/discover/label", {"ids": item, "label": "billing_issue"})]:
            r = c.post(path, data=data | {"csrf": csrf})
            assert r.status_code == 403 and "<title>Not allowed" in r.text and "admin scope" in r.text, path
        assert c.get(f"/ui/decisions/{item}").status_code == 200 and c.get("/ui/dashboard").status_code == 200
    assert pending_ids(service)[0] == item and service.store.feedback() == []


# -- resolve, undo, re-route, label a cluster -----------------------------------------------------
def test_resolve_undo_and_the_undo_window(service: Service, tmp_path: Path) -> None:
    first, second = pending_ids(service)[:2]
    with browser(service) as c:
        csrf = sign_in(c, ADMIN)
        r = c.post(f"/ui/queue/{first}/resolve", data={"label": ["billing_issue", "refund_request"], "note": "two asks",
                                                       "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == f"/ui/queue?resolved={first}&item={second}"
        page = c.get(r.headers["location"])
        assert 'id="undo-slot"' in page.text and f"/ui/queue/{first}/undo" in page.text
        [fb] = service.store.feedback(decision_id=first)
        assert (fb.labels, fb.actor, fb.note, fb.source) == (["billing_issue", "refund_request"], "ana", "two asks", "review")
        # htmx: the next item's panel, the row removed, the depth and the undo slot out of band
        r = c.post(f"/ui/queue/{second}/resolve", data={"oos": "1", "csrf": csrf}, headers={"HX-Request": "true"})
        assert r.status_code == 200 and f'id="row-{second}" hx-swap-oob="delete"' in r.text
        assert 'id="depth" class="count" hx-swap-oob="true">4<' in r.text and 'id="undo-slot"' in r.text
        assert service.store.feedback(decision_id=second)[0].labels == ["unknown"]
        r = c.post(f"/ui/queue/{second}/undo", data={"csrf": csrf}, headers={"HX-Request": "true"})
        assert r.status_code == 204 and r.headers["hx-redirect"] == f"/ui/queue?item={second}&undone=1"
        assert second in pending_ids(service) and service.store.feedback(decision_id=second) == []
    with browser(service) as other:  # another reviewer cannot undo ana's resolution
        csrf2 = sign_in(other, ADMIN2)
        r = other.post(f"/ui/queue/{first}/undo", data={"csrf": csrf2})
        assert r.status_code == 409 and "resolved by ana, not ben" in r.text
    state = service.app.state.frontdesk
    state.config = state.config.model_copy(update={"console": state.config.console.model_copy(update={"undo_window_s": 0})})
    with browser(service) as c:
        csrf = sign_in(c, ADMIN)
        r = c.post(f"/ui/queue/{first}/undo", data={"csrf": csrf})
        assert r.status_code == 409 and "possible for 0 s only" in r.text
    assert first not in pending_ids(service)


def test_resolve_validates_labels_and_new_intents(service: Service) -> None:
    item = pending_ids(service)[0]
    with browser(service) as c:
        csrf = sign_in(c, ADMIN)
        for data, status, text in [({}, 422, "pick at least one label"),
                                   ({"label": "no_such_label"}, 422, "is not a label of this model"),
                                   ({"search_label": "<b>x</b>"}, 422, "&lt;b&gt;x&lt;/b&gt; is not a label"),
                                   ({"new_intent": "bad name!"}, 422, "a new intent&#39;s name")]:
            r = c.post(f"/ui/queue/{item}/resolve", data=data | {"csrf": csrf})
            assert r.status_code == status and text in r.text, data
        r = c.post(f"/ui/queue/{item}/resolve", data={"new_intent": "  gift cards ", "search_label": "refund_request",
                                                      "csrf": csrf})
        assert r.status_code == 303
    assert service.store.feedback(decision_id=item)[0].labels == ["refund_request", "gift_cards"]


def test_second_reviewer_gets_already_resolved_not_a_crash(service: Service) -> None:
    item = pending_ids(service)[0]
    with browser(service) as a, browser(service) as b:
        ca, cb = sign_in(a, ADMIN), sign_in(b, ADMIN2)
        results: dict[str, httpx.Response] = {}
        barrier = threading.Barrier(2)

        def go(name: str, client: httpx.Client, csrf: str) -> None:
            barrier.wait()
            results[name] = client.post(f"/ui/queue/{item}/resolve", data={"label": "billing_issue", "csrf": csrf},
                                        headers={"HX-Request": "true"})

        threads = [threading.Thread(target=go, args=("ana", a, ca)), threading.Thread(target=go, args=("ben", b, cb))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], {k: (v.status_code, v.text[:300]) for k, v in results.items()}
    winner = next(k for k, r in results.items() if r.status_code == 200)
    loser = results["ben" if winner == "ana" else "ana"]
    assert f"already resolved by {winner}" in loser.text and "Traceback" not in loser.text
    assert len(service.store.feedback(decision_id=item)) == 1


def test_search_and_reroute(service: Service) -> None:
    ids = [d["id"] for d in service.route(["hello, my parcel is lost"], sender="bob@example.com")]
    with browser(service) as c:
        csrf = sign_in(c, ADMIN)
        r = c.get("/ui/decisions", params={"sender": "bob@example.com"})
        assert r.status_code == 200 and r.text.count('<tr data-id="') == 1 and ids[0][:8] in r.text
        assert c.get("/ui/decisions", params={"id": ids[0]}).headers["location"] == f"/ui/decisions/{ids[0]}"
        assert 'id="no-results"' in c.get("/ui/decisions", params={"sender": "nobody"}).text
        bad = c.get("/ui/decisions", params={"since": "yesterday-ish"})
        assert bad.status_code == 422 and "not a date and time" in bad.text
        r = c.post(f"/ui/decisions/{ids[0]}/reroute", data={"label": "shipping_status", "note": "lost parcel", "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == f"/ui/decisions/{ids[0]}?rerouted=1"
        page = c.get(r.headers["location"])
        assert 'id="rerouted"' in page.text and "lost parcel" in page.text and "shipping_status" in page.text
    [fb] = service.store.feedback(decision_id=ids[0])  # it was waiting for review: the re-route resolved it
    assert (fb.labels, fb.source, fb.actor, fb.note) == (["shipping_status"], "review", "ana", "lost parcel")
    assert ids[0] not in pending_ids(service)
    with browser(service) as c:  # once resolved, a further re-route is plain feedback
        csrf = sign_in(c, ADMIN2)
        assert c.post(f"/ui/decisions/{ids[0]}/reroute", data={"label": "refund_request", "csrf": csrf}).status_code == 303
    assert [(f.source, f.actor) for f in service.store.feedback(decision_id=ids[0])] == [("review", "ana"), ("feedback", "ben")]


def test_label_a_cluster_writes_feedback_for_the_chosen_messages(service: Service) -> None:
    texts = [f"do you sell gift cards for {x}?" for x in ("birthdays", "christmas", "weddings", "teachers", "my mum",
                                                           "friends", "colleagues")]
    service.route(texts)
    with browser(service) as c:
        csrf = sign_in(c, ADMIN)
        page = c.get("/ui/discover", params={"range": "1h", "min_size": "3"})
        assert page.status_code == 200 and 'class="card cluster"' in page.text
        ids = re.findall(r'name="ids" value="([0-9a-f]+)" checked', page.text)
        gift = [i for i in ids if "gift cards" in service.store.get_decision(i).text]
        assert len(gift) >= 5
        r = c.post("/ui/discover/label", data={"ids": gift[:4], "new_intent": "gift_cards", "csrf": csrf, "range": "1h",
                                               "min_size": "3"})
        assert r.status_code == 303 and "labelled=4" in r.headers["location"]
        assert 'id="labelled"' in c.get(r.headers["location"]).text
        r = c.post("/ui/discover/label", data={"ids": ["nope"], "label": "billing_issue", "csrf": csrf})
        assert r.status_code == 422 and "nothing was written" in r.text
    fb = service.store.feedback()
    assert sorted(f.decision_id for f in fb) == sorted(gift[:4]) and all(f.labels == ["gift_cards"] for f in fb)


# -- errors, headers, assets, metrics --------------------------------------------------------------
def test_errors_are_pages_that_leak_nothing(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    with browser(service) as c:
        sign_in(c, ADMIN)
        for path, status in [("/ui/decisions/nope", 404), ("/ui/dashboard?range=2y", 422), ("/ui/queue?page=abc", 200),
                             ("/ui/discover?range=<script>", 422), ("/ui/queue/item/nope", 303)]:
            r = c.get(path)
            assert r.status_code == status, (path, r.text[:500])
            body = r.text.split("</head>")[-1]
            assert "Traceback" not in body and "<script>" not in body, path

        def boom(*_: Any, **__: Any) -> None:
            raise RuntimeError(f"database password hunter2 and key {ADMIN}")

        monkeypatch.setattr(service.store, "review_depth", boom)
        r = c.get("/ui/queue")
        assert r.status_code == 500 and "error reference" in r.text
        for secret in ("hunter2", ADMIN, "RuntimeError", "Traceback", 'File "'):
            assert secret not in r.text
        ref = re.search(r"error reference ([0-9a-f]{8})", r.text)
        assert ref is not None


def test_pages_send_security_headers_and_load_only_vendored_assets(service: Service) -> None:
    with browser(service) as c:
        sign_in(c, ADMIN)
        for path in ("/ui/login", "/ui/queue", "/ui/decisions", "/ui/dashboard", "/ui/discover"):
            r = c.get(path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
            assert float(r.headers["server-timing"].split("dur=")[1]) >= 0
            urls = re.findall(r'(?:src|href|action)="([^"]*)"', r.text)
            assert urls and all(u.startswith(("/", "#", "data:")) for u in urls), [u for u in urls if not u.startswith("/")]
            assert "<script>" not in r.text and " on" + "click=" not in r.text  # no inline scripts or handlers
        for asset in ("htmx.min.js", "console.js", "console.css"):
            r = c.get(f"/ui/static/{asset}")
            assert r.status_code == 200 and len(r.content) > 1000, asset


def test_vendored_htmx_is_the_recorded_version() -> None:
    static = Path(__file__).parents[1] / "src" / "frontdesk" / "server" / "console" / "static"
    notice = (static / "NOTICE.md").read_text()
    digest = hashlib.sha256((static / "htmx.min.js").read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in notice and "| 2.0.11 |" in notice
    assert (static / "htmx.LICENSE.txt").read_text().startswith("Zero-Clause BSD")
    assert 'version:"2.0.11"' in (static / "htmx.min.js").read_text() or "2.0.11" in (static / "htmx.min.js").read_text()


def test_queue_is_paginated_oldest_first(service: Service) -> None:
    service.route([f"unsure message number {i}" for i in range(120)])
    depth = service.store.review_depth()
    with browser(service) as c:
        sign_in(c, ADMIN)
        order = [i.decision_id for i in service.store.review_queue(limit=1000)]
        last = -(-depth // 50)
        page = c.get("/ui/queue", params={"page": str(last)})
        shown = re.findall(r'<li id="row-([0-9a-f]+)"', page.text)
        assert shown == order[(last - 1) * 50:] and f"page {last} of {last}" in page.text
        first = re.findall(r'<li id="row-([0-9a-f]+)"', c.get("/ui/queue").text)
        assert first == order[:50]
        assert c.get("/ui/queue", params={"page": "999"}).status_code == 200  # clamped to the last page


def test_metrics_expose_the_review_queue_age(service: Service) -> None:
    with service.api() as c:
        text = c.get("/metrics").text
    age = float(re.search(r"^frontdesk_review_queue_oldest_age_seconds (\S+)$", text, re.M).group(1))
    assert age > 0 and "# TYPE frontdesk_llm_errors_total counter" in text


def test_nul_characters_are_refused_not_a_500(saved_model: Path, store_url: str, tmp_path: Path) -> None:
    """PostgreSQL text cannot hold U+0000: the console refuses it in addresses and forms (both backends)."""
    svc = Service(console_config(tmp_path / "frontdesk.yaml", saved_model, store_url, gates=HUMAN))
    try:
        svc.route(MESSAGES[:1])
        item = pending_ids(svc)[0]
        with browser(svc) as c:
            csrf = sign_in(c, ADMIN)
            for path in ("/ui/decisions?sender=a%00b", "/ui/decisions/ab%00cd", "/ui/queue?item=%00"):
                r = c.get(path)
                assert r.status_code == 400 and "NUL" in r.text, path
            r = c.post(f"/ui/queue/{item}/resolve", data={"label": "billing_issue", "note": "a\x00b", "csrf": csrf})
            assert r.status_code == 422 and "NUL" in r.text
            assert c.post(f"/ui/queue/{item}/resolve", data={"label": "billing_issue", "note": "ok", "csrf": csrf}
                          ).status_code == 303
    finally:
        svc.stop()


def test_held_actions_need_a_verdict_and_a_released_one_cannot_be_undone(saved_model: Path, tmp_path: Path) -> None:
    """A requires_human decision holds its label's action: the console's resolve asks approve / reject
    (as the API does), approving runs it once, and the undo of that resolution is refused."""
    from test_actions import Receiver

    receiver = Receiver()
    path = console_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}",
                          actions={"hook": {"webhook": receiver.url, "backoff_s": 0}},
                          labels={"legal_or_complaint": {"action": "hook"}})
    svc = Service(path)
    try:
        [d] = svc.route(["I will sue you, my lawyer has the papers ready"], sender="bo")
        assert d["requires_human"] and [a["status"] for a in d["actions"]] == ["held"]
        with browser(svc) as c:
            csrf = sign_in(c, ADMIN)
            page = c.get("/ui/queue", params={"item": d["id"]})
            assert 'id="held-actions"' in page.text and 'value="approve"' in page.text and "requires_human" in page.text
            form = {"label": "legal_or_complaint", "csrf": csrf}
            r = c.post(f"/ui/queue/{d['id']}/resolve", data=form)
            assert r.status_code == 422 and "Approve or reject" in r.text and receiver.calls == []
            assert c.post(f"/ui/queue/{d['id']}/resolve", data=form | {"action": "maybe"}).status_code == 422
            r = c.post(f"/ui/queue/{d['id']}/resolve", data=form | {"action": "approve", "note": "checked"})
            assert r.status_code == 303 and len(receiver.calls) == 1 and receiver.calls[0]["body"]["approved_by"] == "ana"
            r = c.post(f"/ui/queue/{d['id']}/undo", data={"csrf": csrf})
            assert r.status_code == 409 and "cannot be undone" in r.text
            assert 'data-status="done"' in c.get(f"/ui/decisions/{d['id']}").text
        assert svc.store.feedback(decision_id=d["id"])[0].note == "checked"
        assert svc.store.review_item(d["id"]).status == "resolved"
    finally:
        svc.stop()
        receiver.close()
