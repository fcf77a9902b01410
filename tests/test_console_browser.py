"""The console in a real browser: Playwright driving Debian's Chromium against the real service on loopback
(an LLM tier on a fake OpenAI-compatible server, so review items carry real traces with rationale and cost).

Sign in, resolve three items with the keyboard and undo one, search a decision and re-route it, the
dashboard's numbers against the store, the XSS corpus (no dialog, no request, wrapped text), CSRF
rejection, two browsers racing on one item, and a route-scope key. The tests take a screenshot of each
page; with ``FRONTDESK_SCREENSHOTS=docs/screenshots`` they are written there (the README shows them).

Chromium and Playwright are required: missing, these tests fail and say what to install — unless
``FRONTDESK_BROWSER_TESTS=optional``, when they are skipped with that reason (CI never sets it).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from console_fixtures import ADMIN, ADMIN2, ROUTE, Service, console_config, corpus
from fake_llm_servers import FakeOpenAIServer, answer
from frontdesk.loop.drift.signals import is_escalated, is_unknown, primary_confidence

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MESSAGES = ["my card payment failed and I am confused", "where is my parcel, it has been two weeks",
            "I want my money back for the broken kettle", "how do I change my password",
            "please cancel my subscription today", "the app crashes when I open settings"]
LONG = "A" * 6000
XSS = ['<script>window.__xss = 1; alert("script")</script> refund please',
       '<img src="x" onerror="window.__xss = 2; alert(\'img\')"> where is my parcel',
       '<a href="javascript:alert(3)">click me</a> and also javascript:window.__xss=3 in plain text',
       '"><svg onload="window.__xss=4;alert(4)"></svg><iframe src="javascript:alert(5)"></iframe>',
       "{{ 7*7 }} ${7*7} <style>body{display:none}</style>", LONG]
EVIL_RATIONALE = '<img src="http://evil.invalid/r.png" onerror="window.__xss=6;alert(6)">the customer wants X'


def chromium_or_fail() -> str:
    """The Chromium binary for the tests; fails (or, with FRONTDESK_BROWSER_TESTS=optional, skips) saying
    what is missing."""
    path = os.environ.get("FRONTDESK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright Python package is missing: pip install -c constraints.txt -e '.[dev]'"
    if problem is None and not os.access(path, os.X_OK):
        problem = (f"no Chromium at {path}: apt-get install -y chromium (Debian's package; `.ci/run` does it), or "
                   "point FRONTDESK_CHROMIUM at a Chromium binary")
    if problem:
        if os.environ.get("FRONTDESK_BROWSER_TESTS") == "optional":
            pytest.skip(f"BROWSER TESTS SKIPPED because FRONTDESK_BROWSER_TESTS=optional: {problem}")
        pytest.fail(f"the console's browser tests need Chromium and Playwright: {problem}. (To skip them on a "
                    "machine without a browser, set FRONTDESK_BROWSER_TESTS=optional; CI must run them.)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_or_fail()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:  # launch() gives Chromium a fresh temporary profile, deleted on close
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("FRONTDESK_SCREENSHOTS")
    out = Path(target) if target else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture()
def llm() -> Iterator[FakeOpenAIServer]:
    # unsure answers (confidence 0.5 < the LLM gate threshold 0.9 set below): every message ends in human review, with a trace
    with FakeOpenAIServer(default=answer(None, 0.5, "The customer describes a payment problem.")) as server:
        yield server


@pytest.fixture()
def live(saved_model: Path, tmp_path: Path, llm: FakeOpenAIServer) -> Iterator[Service]:
    svc = Service(console_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 'store.db'}",
                                 llm_url=llm.base_url, gates={"linear": {"threshold": 0.999999}, "llm": {"threshold": 0.9}}))
    svc.route(MESSAGES, sender="alice@example.com", channel="email")
    yield svc
    svc.stop()


class Watch:
    """What a page did that it must not: dialogs, requests off the console, console errors (CSP violations)."""

    def __init__(self, page: Any, origin: str) -> None:
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.origins = {origin}
        page.on("dialog", self._dialog)
        page.on("request", self._request)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request: Any) -> None:
        url = request.url
        parts = urlsplit(url)
        if url.startswith("data:"):
            return
        if f"{parts.scheme}://{parts.netloc}" not in self.origins or not parts.path.startswith("/ui/") or \
                parts.path.rstrip("/").endswith(("/x", "/r.png")):
            self.foreign.append(url)

    def clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.foreign == [], self.foreign
        assert [e for e in self.errors if "status of 4" not in e] == [], self.errors


def open_page(browser: Any, svc: Service) -> tuple[Any, Any, Watch]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page, Watch(page, svc.url)


def sign_in(page: Any, svc: Service, key: str, *, shot: Path | None = None) -> None:
    page.goto(svc.url + "/ui/queue")
    assert "/ui/login" in page.url
    page.fill("#key", key)
    if shot is not None:
        page.fill("#key", "")  # the screenshot never shows a key
        page.screenshot(path=str(shot))
        page.fill("#key", key)
    page.click("#sign-in")
    page.wait_for_url("**/ui/queue")
    assert key not in page.content()


def shown_item(page: Any) -> str:
    return page.get_attribute("#item", "data-id")


def wait_item_change(page: Any, old: str) -> str:
    page.wait_for_function("old => { const el = document.getElementById('item'); return el && el.dataset.id !== old }",
                           arg=old)
    return shown_item(page)


# -- the keyboard flow ----------------------------------------------------------------------------
def test_keyboard_resolves_three_items_and_undoes_the_last(browser: Any, live: Service, shots: Path) -> None:
    context, page, watch = open_page(browser, live)
    try:
        sign_in(page, live, ADMIN, shot=shots / "login.png")
        order = [i.decision_id for i in live.store.review_queue(limit=100)]
        assert shown_item(page) == order[0]
        assert page.locator("#item .trace li.tier").count() >= 2  # linear and the LLM
        assert page.locator("#item .rationale").last.inner_text().endswith("payment problem.")
        page.screenshot(path=str(shots / "queue.png"), full_page=True)

        page.keyboard.press("j")
        assert wait_item_change(page, order[0]) == order[1]
        page.keyboard.press("k")
        assert wait_item_change(page, order[1]) == order[0]

        # 1: the first candidate, Enter
        first_label = page.get_attribute("#cand-1", "value")
        page.keyboard.press("1")
        assert page.is_checked("#cand-1")
        page.keyboard.press("Enter")
        assert wait_item_change(page, order[0]) == order[1]
        assert page.locator(f"#row-{order[0]}").count() == 0 and page.inner_text("#depth") == str(len(order) - 1)

        # 2: search a label with /, Enter adds it, Esc leaves the field, Enter resolves
        page.keyboard.press("/")
        page.keyboard.type("refund_request")
        page.keyboard.press("Enter")
        page.wait_for_selector("#picked .chip")
        page.keyboard.press("Escape")
        page.keyboard.press("Enter")
        assert wait_item_change(page, order[1]) == order[2]

        # 3: two candidates (a multi-intent message), Enter, then u within the undo window
        picked = [page.get_attribute("#cand-1", "value"), page.get_attribute("#cand-2", "value")]
        page.keyboard.press("1")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        assert wait_item_change(page, order[2]) == order[3]
        page.wait_for_selector("#undo-slot:not([hidden])")
        assert live.store.feedback(decision_id=order[2])[0].labels == picked
        page.keyboard.press("u")
        page.wait_for_url("**undone=1**")
        assert shown_item(page) == order[2]

        store = live.store
        a, b, c = (store.feedback(decision_id=i) for i in order[:3])
        assert [(f.labels, f.actor, f.source) for f in a] == [([first_label], "ana", "review")]
        assert [(f.labels, f.actor) for f in b] == [(["refund_request"], "ana")]
        assert c == [] and order[2] in [i.decision_id for i in store.review_queue(limit=100)]
        assert store.review_depth() == len(order) - 2
        watch.clean()
    finally:
        context.close()


# -- search and re-route ----------------------------------------------------------------------------
def test_search_a_decision_and_reroute_it(browser: Any, live: Service, shots: Path) -> None:
    [d] = live.route(["hello, my parcel never arrived"], sender="carol@example.com", channel="chat")
    context, page, watch = open_page(browser, live)
    try:
        sign_in(page, live, ADMIN)
        page.click("nav >> text=Decisions")
        page.fill("input[name=sender]", "carol@example.com")
        page.click("#search-button")
        page.wait_for_selector("#results")
        assert page.locator("#results tbody tr").count() == 1
        page.screenshot(path=str(shots / "decisions.png"), full_page=True)
        page.click(f"#results a[href='/ui/decisions/{d['id']}']")
        page.wait_for_selector("#decision")
        assert page.inner_text("#message-text") == "hello, my parcel never arrived"
        page.fill("#label-search", "shipping_status")
        page.press("#label-search", "Enter")  # adds the label as a chip
        page.wait_for_selector("#picked .chip")
        page.fill("#note", "courier confirmed")
        page.click("#reroute-button")
        page.wait_for_selector("#rerouted")
        assert "shipping_status" in page.inner_text("#feedback") and "courier confirmed" in page.inner_text("#feedback")
        page.screenshot(path=str(shots / "decision.png"), full_page=True)
        [fb] = live.store.feedback(decision_id=d["id"])
        assert (fb.labels, fb.actor, fb.note) == (["shipping_status"], "ana", "courier confirmed")
        watch.clean()
    finally:
        context.close()


# -- the dashboard against the store ---------------------------------------------------------------
def test_dashboard_numbers_match_the_store(browser: Any, live: Service, shots: Path) -> None:
    now = datetime.now(timezone.utc)
    live.store.save_decisions(corpus(now, n=300))
    some = [d for d in live.store.decisions() if d.tier == "linear"][:4]
    for d in some:
        live.store.add_feedback(d.id, ["billing_issue"], actor="ana")
    context, page, watch = open_page(browser, live)
    try:
        sign_in(page, live, ADMIN)
        page.goto(live.url + "/ui/dashboard?range=24h")
        page.wait_for_selector("#kpis")
        page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
        since = datetime.fromisoformat(page.get_attribute("#range", "data-since"))
        kpi = {el.get_attribute("data-kpi"): el.get_attribute("data-value") for el in page.query_selector_all(".kpi")}
        unknown = live.app.state.frontdesk.monitor.config.unknown_labels
        window = [d for d in live.store.decisions() if d.created_at >= since]
        fresh = [d for d in window if not d.duplicate_of]
        confs = [c for c in (primary_confidence(d) for d in fresh) if c is not None]
        assert int(kpi["decisions"]) == len(window) > 200
        assert float(kpi["escalation_rate"]) == pytest.approx(sum(map(is_escalated, fresh)) / len(fresh))
        assert float(kpi["unknown_rate"]) == pytest.approx(sum(is_unknown(d, unknown) for d in fresh) / len(fresh))
        assert float(kpi["confidence_mean"]) == pytest.approx(sum(confs) / len(confs))
        assert int(kpi["llm_calls"]) == sum(1 for d in fresh for t in d.trace if t.kind == "llm")
        assert float(kpi["llm_cost"]) == pytest.approx(sum(d.cost_usd for d in window))
        assert int(kpi["review_depth"]) == live.store.review_depth()
        tiers = {el.get_attribute("data-tier"): int(el.inner_text()) for el in page.query_selector_all("[data-tier]")}
        assert tiers == dict(Counter(d.tier for d in window))
        volume = {el.get_attribute("data-label"): int(el.get_attribute("data-volume"))
                  for el in page.query_selector_all("tr[data-label]") if int(el.get_attribute("data-volume"))}
        assert volume == dict(Counter(label for d in window for label in d.labels))
        support = {el.get_attribute("data-label"): int(el.get_attribute("data-support"))
                   for el in page.query_selector_all("tr[data-label]") if int(el.get_attribute("data-support"))}
        assert support == {"billing_issue": 4}
        bars = sum(float(r.get_attribute("data-value")) for r in page.query_selector_all("#traffic rect[data-value]"))
        assert bars == len(window)
        for rng in ("1h", "7d", "30d"):
            page.click(f".ranges a:text-is('{rng}')")
            page.wait_for_url(f"**range={rng}")
            assert page.locator("svg.chart").count() == 5 and page.locator("#kpis .kpi").count() == 9
        watch.clean()
    finally:
        context.close()


# -- untrusted text ----------------------------------------------------------------------------------
def test_xss_corpus_renders_escaped_and_wrapped(browser: Any, live: Service, llm: FakeOpenAIServer) -> None:
    llm.default = answer(None, 0.5, EVIL_RATIONALE)
    hostile = live.route(XSS, sender='<script>alert("sender")</script>@example.com', channel="<b>web</b>")
    context, page, watch = open_page(browser, live)
    try:
        sign_in(page, live, ADMIN)
        checks = ("() => ({xss: window.__xss === undefined ? null : window.__xss,"
                  " inline: document.querySelectorAll('body script').length,"
                  " imgs: document.querySelectorAll('main img, main iframe, main svg:not(.chart):not(.meter)').length,"
                  " js: document.querySelectorAll('[href^=\"javascript:\" i], [src^=\"javascript:\" i]').length,"
                  " handlers: [...document.querySelectorAll('main *')].filter(e => [...e.attributes].some("
                  "   a => a.name.startsWith('on'))).length,"
                  " overflow: [...document.querySelectorAll('pre.text, .snippet, td')].filter("
                  "   e => e.scrollWidth > e.clientWidth + 1).length,"
                  " pageWide: document.documentElement.scrollWidth > window.innerWidth + 1})")
        urls = [f"/ui/queue?item={d['id']}" for d in hostile] + [f"/ui/decisions/{d['id']}" for d in hostile]
        urls += ["/ui/decisions?sender=" + "%3Cscript%3Ealert(%22sender%22)%3C%2Fscript%3E%40example.com",
                 "/ui/decisions", "/ui/discover?range=1h&min_size=2"]
        for url in urls:
            page.goto(live.url + url)
            page.wait_for_load_state("networkidle")
            got = page.evaluate(checks)
            assert got == {"xss": None, "inline": 0, "imgs": 0, "js": 0, "handlers": 0, "overflow": 0,
                           "pageWide": False}, (url, got)
        page.goto(live.url + f"/ui/decisions/{hostile[0]['id']}")
        body = page.inner_text("main")
        assert '<script>window.__xss = 1; alert("script")</script>' in body  # shown as text, not run
        assert '<script>alert("sender")</script>@example.com' in body
        page.goto(live.url + f"/ui/decisions/{hostile[-1]['id']}")
        box = page.eval_on_selector("#message-text", "e => [e.scrollWidth, e.clientWidth, e.scrollHeight]")
        assert box[0] <= box[1] + 1 and box[2] > 100  # the long string wraps onto many lines
        page.goto(live.url + f"/ui/queue?item={hostile[1]['id']}")
        assert "onerror" in page.locator("#item .rationale").last.inner_text()  # the LLM rationale, as text
        watch.clean()
    finally:
        context.close()


# -- CSRF, races, scopes ----------------------------------------------------------------------------
def test_csrf_is_rejected_in_the_browser(browser: Any, live: Service) -> None:
    context, page, watch = open_page(browser, live)
    try:
        sign_in(page, live, ADMIN)
        item = shown_item(page)
        token = page.get_attribute("meta[name=csrf-token]", "content")
        page.evaluate("() => { document.querySelector('meta[name=csrf-token]').content = 'forged';"
                      " document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged') }")
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        page.wait_for_selector("#detail #error[data-status='403']")
        assert "security token" in page.inner_text("#detail")
        # a form on another site, even with the right token: the Strict cookie is not sent / Origin is refused
        evil = context.new_page()
        Watch(evil, live.url)
        evil.set_content(f'<form id="f" method="post" action="{live.url}/ui/queue/{item}/resolve">'
                         f'<input name="label" value="billing_issue"><input name="csrf" value="{token}"></form>')
        with evil.expect_navigation():
            evil.evaluate("document.getElementById('f').submit()")
        assert "/ui/login" in evil.url or "Request refused" in evil.content()
        assert live.store.feedback(decision_id=item) == [] and live.store.review_queue(limit=1)[0].decision_id == item
        assert watch.dialogs == []
    finally:
        context.close()


def test_two_browsers_on_one_item(browser: Any, live: Service) -> None:
    (ctx_a, a, watch_a), (ctx_b, b, watch_b) = open_page(browser, live), open_page(browser, live)
    try:
        sign_in(a, live, ADMIN)
        sign_in(b, live, ADMIN2)
        item = shown_item(a)
        assert shown_item(b) == item
        a.keyboard.press("1")
        a.keyboard.press("Enter")
        wait_item_change(a, item)
        b.keyboard.press("1")
        b.keyboard.press("Enter")
        b.wait_for_selector("#detail #error[data-status='409']")
        message = b.inner_text("#detail #error")
        assert "already resolved by ana" in message and "nothing was changed" in message
        b.keyboard.press("j")  # the page still works: move on
        b.wait_for_selector("#item")
        assert len(live.store.feedback(decision_id=item)) == 1
        watch_a.clean()
        assert watch_b.dialogs == [] and watch_b.foreign == []
    finally:
        ctx_a.close()
        ctx_b.close()


def test_a_route_key_gets_a_403_page(browser: Any, live: Service, shots: Path) -> None:
    context, page, watch = open_page(browser, live)
    try:
        sign_in(page, live, ROUTE)
        assert page.locator("#resolve").count() == 0 and "route scope" in page.inner_text("#item .readonly")
        item = shown_item(page)
        with page.expect_navigation() as nav:
            page.evaluate("""id => { const f = document.createElement('form'); f.method = 'post';
                f.action = '/ui/queue/' + id + '/resolve';
                for (const [k, v] of [['label', 'billing_issue'],
                                      ['csrf', document.querySelector('meta[name=csrf-token]').content]]) {
                    const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }
                document.body.appendChild(f); f.submit(); }""", item)
        assert nav.value.status == 403
        assert page.title().startswith("Not allowed") and "admin scope" in page.inner_text("#error")
        page.screenshot(path=str(shots / "forbidden.png"))
        assert live.store.feedback() == []
        assert watch.dialogs == []
    finally:
        context.close()


def test_discover_page_labels_a_cluster(browser: Any, live: Service, shots: Path) -> None:
    gift = [f"do you sell gift cards for {x}?" for x in ("birthdays", "christmas", "weddings", "teachers", "my mum",
                                                         "friends", "colleagues")]
    live.route(gift)
    live.route([f"can I pay in {x} instalments?" for x in ("three", "four", "six", "ten", "twelve")])
    context, page, watch = open_page(browser, live)
    try:
        sign_in(page, live, ADMIN)
        page.goto(live.url + "/ui/discover?range=1h&min_size=3")
        cluster = page.locator("section.cluster", has_text="gift cards").first
        cluster.locator("input[name=new_intent]").fill("gift_cards")
        page.screenshot(path=str(shots / "discover.png"), full_page=True)
        members = cluster.locator("input[name=ids]")
        chosen = [members.nth(i).get_attribute("value") for i in range(members.count())
                  if "gift cards" in live.store.get_decision(members.nth(i).get_attribute("value")).text]
        for i in range(members.count()):
            if members.nth(i).get_attribute("value") not in chosen:
                members.nth(i).uncheck()
        cluster.locator("button[type=submit]").click()
        page.wait_for_selector("#labelled")
        labelled = {f.decision_id: f.labels for f in live.store.feedback()}
        assert set(labelled) == set(chosen) and len(chosen) >= 5 and all(v == ["gift_cards"] for v in labelled.values())
        watch.clean()
    finally:
        context.close()


def test_missing_browser_fails_loudly_unless_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTDESK_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("FRONTDESK_BROWSER_TESTS", raising=False)
    with pytest.raises(pytest.fail.Exception, match="no Chromium at /nonexistent/chromium: apt-get install -y chromium"):
        chromium_or_fail()
    monkeypatch.setenv("FRONTDESK_BROWSER_TESTS", "optional")
    with pytest.raises(pytest.skip.Exception, match="BROWSER TESTS SKIPPED"):
        chromium_or_fail()


def test_sessions_survive_a_second_replica(browser: Any, live: Service, saved_model: Path, tmp_path: Path) -> None:
    """Two replicas on one database: a sign-in on one is valid on the other, both show the same queue."""
    config = tmp_path / "frontdesk.yaml"  # the live service's config: same store, same keys
    other = Service(config)
    context, page, watch = open_page(browser, live)
    try:
        watch.origins.add(other.url)
        sign_in(page, live, ADMIN)
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        page.wait_for_selector("#undo-slot:not([hidden])")
        page.goto(other.url + "/ui/dashboard?range=1h")  # cookies are per host, not per port: the same browser
        assert "ana · admin" in page.inner_text("header")
        assert page.get_attribute(".kpi[data-kpi=review_depth]", "data-value") == str(live.store.review_depth())
        page.goto(other.url + "/ui/queue")
        assert page.locator("#queue-list li").count() == live.store.review_depth()
        watch.clean()
    finally:
        context.close()
        other.stop()

