"""The console's pages: sign-in, review queue, decision search and page, dashboard, discovery.

Every handler reads its query string and form fields itself (no FastAPI validation errors in JSON);
whatever goes wrong becomes an HTML error page — or, for an htmx request, an error fragment — that
says what to do, never a stack trace, never a key (see :class:`ConsoleRoute`).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from frontdesk.server import review_actions
from frontdesk.server.console import auth
from frontdesk.server.console.auth import ConsoleError, Viewer
from frontdesk.server.console.dashboard import build as build_dashboard
from frontdesk.server.console.dashboard import charts_of, urgency
from frontdesk.server.console.render import Renderer
from frontdesk.store import queries
from frontdesk.store.sessions import Sessions
from frontdesk.store.store import ReviewItem, StoreError
from frontdesk.types import Decision

if TYPE_CHECKING:
    from frontdesk.server.app import ServiceState

log = logging.getLogger("frontdesk.server.console")

_SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                "object-src 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
NEW_INTENT = re.compile(r"^[\w][\w.\-]{0,63}$")


class _SignIn(Exception):
    """Not signed in: send the browser to the sign-in page."""


class ConsoleRoute(APIRoute):
    """Turns every failure of a console handler into a page, and adds the security headers and a
    ``Server-Timing`` header (the handler's time, for the benchmark)."""

    renderer: Renderer | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        renderer = self.renderer

        async def run(request: Request) -> Response:
            t0 = time.perf_counter()
            try:
                if "\x00" in request.url.path or any("\x00" in v for v in request.query_params.values()):
                    raise ConsoleError(400, "Bad request", "the address holds a NUL character (U+0000): remove it")
                response = await handler(request)
            except _SignIn:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                url = "/ui/login?" + urlencode({"next": target})
                if request.headers.get("hx-request"):
                    response = Response(status_code=401, headers={"HX-Redirect": url})
                else:
                    response = RedirectResponse(url, status_code=303)
            except ConsoleError as exc:
                response = renderer.error(request, exc.status, exc.title, exc.message)  # type: ignore[union-attr]
            except StoreError as exc:
                log.error("console: store error: %s", exc)
                response = renderer.error(request, 503, "Store unavailable",  # type: ignore[union-attr]
                                          "the database could not do this; nothing was changed. Try again in a "
                                          "moment (the server log has the details).")
            except Exception:  # noqa: BLE001 - the page must not show a traceback
                ref = secrets.token_hex(4)
                log.exception("console: unexpected error (ref %s)", ref)
                response = renderer.error(request, 500, "Something went wrong",  # type: ignore[union-attr]
                                          f"the server could not show this page (error reference {ref}; the details "
                                          "are in the server log). Nothing was changed.")
            for name, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers["server-timing"] = f"app;dur={(time.perf_counter() - t0) * 1e3:.1f}"
            return response

        return run


# -- small parsers --------------------------------------------------------------------------------
def _int(value: str | None, default: int, *, lo: int = 1, hi: int = 10**9) -> int:
    try:
        return min(max(int(value), lo), hi) if value not in (None, "") else default  # type: ignore[arg-type]
    except ValueError:
        return default


def _when(value: str | None, name: str) -> datetime | None:
    """A ``datetime-local`` (or ISO 8601) field; naive times are UTC."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ConsoleError(422, "Bad search", f"{name}: {value[:40]!r} is not a date and time (use YYYY-MM-DDTHH:MM, "
                           "UTC)") from exc
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def candidates(decision: Decision, limit: int = 9) -> list[tuple[str, float]]:
    """The labels worth offering a reviewer, best first: every label a tier scored (its highest
    probability) and the decision's own labels."""
    best: dict[str, float] = {}
    for entry in decision.trace:
        for s in entry.top:
            best[s.label] = max(best.get(s.label, 0.0), s.score)
        for label in entry.labels:
            best.setdefault(label, entry.confidence or 0.0)
    for label in decision.labels:
        best.setdefault(label, decision.confidence)
    return sorted(best.items(), key=lambda kv: -kv[1])[:limit]


def build_router(state: ServiceState, renderer: Renderer) -> APIRouter:
    """The console's routes, bound to the service state (its store, key ring, config, pipeline)."""
    route_class = type("BoundConsoleRoute", (ConsoleRoute,), {"renderer": renderer})
    router = APIRouter(prefix="/ui", route_class=route_class, include_in_schema=False)
    sessions = Sessions(state.store)

    def viewer(request: Request) -> Viewer:
        v = auth.current_viewer(request, state, sessions)
        if v is None:
            raise _SignIn()
        request.state.viewer = v
        return v

    def known_labels() -> list[str]:
        router_ = state.pipeline.router
        names = set(router_.labels) | {lb for t in router_.tiers for lb in (t.labels_ or ())}
        names |= set(state.config.labels) | {unknown_label()}
        return sorted(names)

    def unknown_label() -> str:
        return state.pipeline.router.unknown_label or "unknown"

    def page(request: Request, template: str, v: Viewer, *, status: int = 200, **context: Any) -> HTMLResponse:
        response = renderer.page(request, template, v, status=status, **context)
        if v.new_token:
            auth.set_cookie(response, request, auth.SESSION_COOKIE, v.new_token,
                            max_age=state.config.console.session_ttl_s, configured_secure=state.config.console.secure_cookies)
        return response

    async def form_of(request: Request, v: Viewer) -> FormData:
        form = await request.form()
        auth.check_csrf(request, v, form.get("csrf"))  # type: ignore[arg-type]
        if any(isinstance(value, str) and "\x00" in value for _, value in form.multi_items()):
            raise ConsoleError(422, "Bad input", "a field holds a NUL character (U+0000), which cannot be stored: "
                               "remove it and submit again")
        return form

    def chosen_labels(form: FormData) -> list[str]:
        """The labels a resolve / re-route / cluster form asks for: ticked ones, the searched one, the unknown
        label for 'out of scope' and a new intent's name — validated, in that order, without repeats."""
        known = set(known_labels())
        picked = [str(x) for x in form.getlist("label") if str(x).strip()]
        search = str(form.get("search_label") or "").strip()
        if search:
            picked.append(search)
        if form.get("oos"):
            picked.append(unknown_label())
        unknown = sorted(set(picked) - known)
        if unknown:
            raise ConsoleError(422, "Unknown label", f"{', '.join(unknown)[:200]} is not a label of this model: pick "
                               "one from the list, or name a new intent in the 'new intent' field")
        new = " ".join(str(form.get("new_intent") or "").split()).replace(" ", "_")
        if new:
            if not NEW_INTENT.match(new):
                raise ConsoleError(422, "Bad intent name", "a new intent's name is 1–64 letters, digits, '_', '-' or "
                                   "'.', starting with a letter or digit")
            picked.append(new)
        labels = list(dict.fromkeys(picked))
        if not labels:
            raise ConsoleError(422, "No label chosen", "pick at least one label (1–9, the search box, 'out of scope' or "
                               "a new intent)")
        return labels

    def note_of(form: FormData) -> str | None:
        note = str(form.get("note") or "").strip()
        return note[:2000] or None

    # -- sign-in ---------------------------------------------------------------------------------
    @router.get("/", response_class=HTMLResponse)
    def home() -> Response:
        return RedirectResponse("/ui/queue", status_code=303)

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        if not state.keys.enabled:
            return RedirectResponse(auth.safe_next(request.query_params.get("next")), status_code=303)
        token = auth.new_login_token()
        response = renderer.login(request, token=token, next_url=auth.safe_next(request.query_params.get("next")))
        auth.set_cookie(response, request, auth.LOGIN_COOKIE, token, max_age=3600,
                        configured_secure=state.config.console.secure_cookies)
        return response

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        auth.check_origin(request)
        form = await request.form()
        next_url = auth.safe_next(str(form.get("next") or ""))
        if not auth.tokens_match(request.cookies.get(auth.LOGIN_COOKIE), str(form.get("csrf") or "")):
            raise ConsoleError(403, "Request refused", "the sign-in form's security token is missing or out of date "
                               "(CSRF protection): reload the sign-in page and try again")
        done = auth.sign_in(state, sessions, str(form.get("key") or ""))
        if done is None:
            token = auth.new_login_token()
            response = renderer.login(request, token=token, next_url=next_url, status=401,
                                      error="That key is not valid for this service: check it and try again.")
            auth.set_cookie(response, request, auth.LOGIN_COOKIE, token, max_age=3600,
                            configured_secure=state.config.console.secure_cookies)
            return response
        session_token, v = done
        log.info("console: %s signed in", v.name)
        response = RedirectResponse(next_url, status_code=303)
        auth.set_cookie(response, request, auth.SESSION_COOKIE, session_token,
                        max_age=state.config.console.session_ttl_s, configured_secure=state.config.console.secure_cookies)
        auth.clear_cookie(response, request, auth.LOGIN_COOKIE, state.config.console.secure_cookies)
        return response

    @router.post("/logout", response_class=HTMLResponse)
    async def logout(request: Request) -> Response:
        v = viewer(request)
        await form_of(request, v)
        sessions.delete(request.cookies.get(auth.SESSION_COOKIE))
        response = RedirectResponse("/ui/login" if state.keys.enabled else "/ui/queue", status_code=303)
        auth.clear_cookie(response, request, auth.SESSION_COOKIE, state.config.console.secure_cookies)
        return response

    # -- review queue ----------------------------------------------------------------------------
    def item_context(item: ReviewItem, v: Viewer) -> dict[str, Any]:
        item = state.store.review_item(item.decision_id) or item  # with the actions as they stand now
        return {"item": item, "urgency": urgency(state.config.targets_config(), item),
                "candidates": candidates(item.decision), "all_labels": known_labels(),
                "unknown_label": unknown_label()}

    def undo_context(decision_id: str | None, v: Viewer) -> dict[str, Any] | None:
        if not decision_id:
            return None
        done = state.store.review_item(decision_id)
        if done is None or done.status != "resolved" or done.reviewer != v.name or done.resolved_at is None:
            return None
        until = done.resolved_at + timedelta(seconds=state.config.console.undo_window_s)
        if until <= datetime.now(timezone.utc):
            return None
        return {"item": done, "until": until}

    @router.get("/queue", response_class=HTMLResponse)
    def queue(request: Request) -> Response:
        v = viewer(request)
        size = state.config.console.page_size
        depth = state.store.review_depth()
        pages = max(1, -(-depth // size))
        number = _int(request.query_params.get("page"), 1, hi=pages)
        items = state.store.review_queue(limit=size, offset=(number - 1) * size)
        wanted = request.query_params.get("item")
        selected = next((i for i in items if i.decision_id == wanted), None)
        if selected is None and wanted:
            selected = state.store.review_item(wanted)
        if selected is None and items:
            selected = items[0]
        targets = state.config.targets_config()
        rows = [(i, urgency(targets, i)) for i in items]
        return page(request, "queue.html", v, rows=rows, depth=depth, page_number=number, pages=pages,
                    selected=item_context(selected, v) if selected else None,
                    undo=undo_context(request.query_params.get("resolved"), v))

    @router.get("/queue/item/{decision_id}", response_class=HTMLResponse)
    def queue_item(request: Request, decision_id: str) -> Response:
        v = viewer(request)
        if not _is_htmx(request):
            return RedirectResponse("/ui/queue?" + urlencode({"item": decision_id}), status_code=303)
        item = state.store.review_item(decision_id)
        if item is None:
            raise ConsoleError(404, "Not in the queue", f"decision {decision_id[:40]!r} has no review item")
        return page(request, "_item.html", v, **item_context(item, v))

    def settle(decision: Decision, labels: list[str], v: Viewer, form: FormData) -> ReviewItem:
        """Resolve a decision's review item — through the review actions, so that held actions get the
        reviewer's verdict (``action``: approve or reject) exactly as over the API."""
        verdict = str(form.get("action") or "") or None
        if verdict not in (None, "approve", "reject"):
            raise ConsoleError(422, "Bad action", "the held action's verdict is 'approve' or 'reject'")
        try:
            return review_actions.resolve_review(state.store, state.pipeline, decision, labels, reviewer=v.name,
                                                 action=verdict, note=note_of(form), metrics=state.metrics)  # type: ignore[arg-type]
        except review_actions.ReviewActionError as exc:
            current = state.store.review_item(decision.id)
            if exc.status == 409 and current is not None and current.status == "resolved":
                when = f"{current.resolved_at:%H:%M:%S} UTC" if current.resolved_at else "earlier"
                raise ConsoleError(409, "Already resolved", f"already resolved by {current.reviewer or 'someone'} at "
                                   f"{when} as {', '.join(current.labels or [])}: nothing was changed. Move on to "
                                   "the next item (j).") from exc
            if exc.kind == "action_required":
                raise ConsoleError(422, "Approve or reject the held action", f"{exc} — in the form: 'run the held "
                                   "action' or 'never run it'") from exc
            raise ConsoleError(exc.status, "Cannot resolve", str(exc)) from exc

    async def labelling(request: Request, decision_id: str, what: str) -> tuple[Viewer, FormData, list[str], Decision]:
        """An admin's labelling form for a stored decision: (viewer, form, chosen labels, decision), else ConsoleError."""
        v = viewer(request)
        form = await form_of(request, v)
        v.require("admin", what)
        labels = chosen_labels(form)
        decision = state.store.get_decision(decision_id)
        if decision is None:
            raise ConsoleError(404, "No such decision", f"no decision {decision_id[:40]!r}: it may have been deleted")
        return v, form, labels, decision

    @router.post("/queue/{decision_id}/resolve", response_class=HTMLResponse)
    async def resolve(request: Request, decision_id: str) -> Response:
        v, form, labels, decision = await labelling(request, decision_id, "Resolving a review item")
        item = settle(decision, labels, v, form)
        state.monitor.observe_feedback(decision, labels)
        log.info("console: %s resolved %s as %s", v.name, decision_id, labels)
        nxt = queries.next_pending(state.store, item.created_at, item.decision_id)
        if not _is_htmx(request):
            target = {"resolved": decision_id} | ({"item": nxt.decision_id} if nxt else {})
            return RedirectResponse("/ui/queue?" + urlencode(target), status_code=303)
        return page(request, "_resolved.html", v, done=item, depth=state.store.review_depth(),
                    until=item.resolved_at + timedelta(seconds=state.config.console.undo_window_s),  # type: ignore[operator]
                    selected=item_context(nxt, v) if nxt else None)

    @router.post("/queue/{decision_id}/undo", response_class=HTMLResponse)
    async def undo(request: Request, decision_id: str) -> Response:
        v = viewer(request)
        await form_of(request, v)
        v.require("admin", "Undoing a resolution")
        done = state.store.review_item(decision_id)
        if done is not None and done.resolved_at is not None:
            released = [a for a in done.decision.actions
                        if a.status != "held" and a.updated_at is not None and a.updated_at >= done.resolved_at]
            if released:
                raise ConsoleError(409, "Cannot undo", f"this resolution gave the held action(s) "
                                   f"{', '.join(a.name + ' (' + a.status + ')' for a in released)} their verdict: "
                                   "it cannot be undone; correct the labels with a re-route (feedback)")
        try:
            state.store.undo_review(decision_id, reviewer=v.name, within_s=state.config.console.undo_window_s)
        except StoreError as exc:
            raise ConsoleError(409, "Cannot undo", str(exc)) from exc
        log.info("console: %s undid the resolution of %s", v.name, decision_id)
        url = "/ui/queue?" + urlencode({"item": decision_id, "undone": "1"})
        if _is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    # -- decisions -------------------------------------------------------------------------------
    @router.get("/decisions", response_class=HTMLResponse)
    def decisions(request: Request) -> Response:
        v = viewer(request)
        qp = request.query_params
        reviewed = {"yes": True, "no": False}.get(qp.get("reviewed", ""))
        flt = queries.DecisionFilter(id=qp.get("id") or None, sender=qp.get("sender") or None,
                                     label=qp.get("label") or None, tier=qp.get("tier") or None,
                                     since=_when(qp.get("since"), "from"), until=_when(qp.get("until"), "until"),
                                     reviewed=reviewed)
        number = _int(qp.get("page"), 1, hi=10_000)
        size = state.config.console.page_size
        searched = any(qp.get(k) for k in ("id", "sender", "label", "tier", "since", "until", "reviewed"))
        hits, more = queries.search_decisions(state.store, flt, limit=size, offset=(number - 1) * size)
        if flt.id and len(hits) == 1 and number == 1 and hits[0].decision.id == flt.id.strip():
            return RedirectResponse(f"/ui/decisions/{quote(hits[0].decision.id)}", status_code=303)
        args = {k: qp.get(k) for k in ("id", "sender", "label", "tier", "since", "until", "reviewed") if qp.get(k)}
        tiers = [t.name for t in state.pipeline.router.tiers] + ["human"]
        return page(request, "decisions.html", v, hits=hits, more=more, page_number=number, query=args,
                    searched=searched, tiers=tiers, all_labels=known_labels(),
                    prev_url="/ui/decisions?" + urlencode(args | {"page": number - 1}) if number > 1 else None,
                    next_url="/ui/decisions?" + urlencode(args | {"page": number + 1}) if more else None)

    @router.get("/decisions/{decision_id}", response_class=HTMLResponse)
    def decision_page(request: Request, decision_id: str) -> Response:
        v = viewer(request)
        decision = state.store.get_decision(decision_id)
        if decision is None:
            raise ConsoleError(404, "No such decision", f"no decision {decision_id[:40]!r}: check the id, or search")
        feedback = state.store.feedback(decision_id=decision_id)
        item = state.store.review_item(decision_id)
        return page(request, "decision.html", v, decision=decision, feedback=feedback, item=item,
                    urgency=urgency(state.config.targets_config(), item) if item else None,
                    candidates=candidates(decision), all_labels=known_labels(), unknown_label=unknown_label(),
                    rerouted=request.query_params.get("rerouted") == "1")

    @router.post("/decisions/{decision_id}/reroute", response_class=HTMLResponse)
    async def reroute(request: Request, decision_id: str) -> Response:
        v, form, labels, decision = await labelling(request, decision_id, "Re-routing a decision")
        item = state.store.review_item(decision_id)
        if item is not None and item.status == "pending":  # it waits for a human: this is its resolution
            settle(decision, labels, v, form)
        else:
            try:
                state.store.add_feedback(decision_id, labels, source="feedback", actor=v.name, note=note_of(form))
            except StoreError as exc:
                raise ConsoleError(409, "Cannot re-route", str(exc)) from exc
        state.monitor.observe_feedback(decision, labels)
        log.info("console: %s re-routed %s to %s", v.name, decision_id, labels)
        return RedirectResponse(f"/ui/decisions/{quote(decision_id)}?rerouted=1", status_code=303)

    # -- dashboard -------------------------------------------------------------------------------
    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request) -> Response:
        v = viewer(request)
        name = request.query_params.get("range", "24h")
        rng = queries.RANGES.get(name)
        if rng is None:
            raise ConsoleError(422, "Unknown range", f"range must be one of {', '.join(queries.RANGES)}")
        board = build_dashboard(state.store, rng=rng, now=datetime.now(timezone.utc), router=state.pipeline.router,
                                drift=state.monitor.config, targets=state.config.targets_config())
        return page(request, "dashboard.html", v, board=board, ranges=list(queries.RANGES), **charts_of(board))

    # -- discovery -------------------------------------------------------------------------------
    @router.get("/discover", response_class=HTMLResponse)
    def discover_page(request: Request) -> Response:
        from frontdesk.loop.discovery import discover

        v = viewer(request)
        qp = request.query_params
        name = qp.get("range", "7d")
        rng = queries.RANGES.get(name)
        if rng is None:
            raise ConsoleError(422, "Unknown range", f"range must be one of {', '.join(queries.RANGES)}")
        min_size = _int(qp.get("min_size"), 5, lo=2, hi=1000)
        limit = _int(qp.get("limit"), 1000, lo=10, hi=5000)
        since = datetime.now(timezone.utc) - timedelta(seconds=rng.seconds)
        pool = queries.discovery_candidates(state.store, since=since, limit=limit,
                                            unknown_labels=state.monitor.config.unknown_labels)
        clusters = discover(pool, min_cluster_size=min_size, top=10, rank="novelty") if pool else []
        by_id = {d.id: d for d in pool}
        labelled = queries.reviewed_ids(state.store, [i for c in clusters for i in c.decision_ids])
        return page(request, "discover.html", v, clusters=clusters, by_id=by_id, labelled=labelled, pool=len(pool),
                    range_name=name, ranges=list(queries.RANGES), min_size=min_size, limit=limit,
                    all_labels=known_labels(), unknown_label=unknown_label(),
                    done=_int(qp.get("labelled"), 0, lo=0))

    @router.post("/discover/label", response_class=HTMLResponse)
    async def label_cluster(request: Request) -> Response:
        v = viewer(request)
        form = await form_of(request, v)
        v.require("admin", "Labelling a cluster")
        labels = chosen_labels(form)
        ids = [str(x) for x in form.getlist("ids")][:5000]
        if not ids:
            raise ConsoleError(422, "No message chosen", "tick at least one message of the cluster to label")
        try:
            written = state.store.add_feedback_many(ids, labels, source="feedback", actor=v.name, note=note_of(form))
        except StoreError as exc:
            raise ConsoleError(422, "Cannot label", f"{exc} — nothing was written") from exc
        for fb in written:
            decision = state.store.get_decision(fb.decision_id)
            if decision is not None:
                state.monitor.observe_feedback(decision, labels)
        log.info("console: %s labelled %d clustered messages as %s", v.name, len(written), labels)
        back = {"range": str(form.get("range") or "7d"), "min_size": str(form.get("min_size") or "5"),
                "labelled": str(len(written))}
        return RedirectResponse("/ui/discover?" + urlencode(back), status_code=303)

    return router


__all__ = ["ConsoleRoute", "build_router", "candidates"]
