"""The endpoints: route, batch, feedback, review queue, reload, health, readiness, metrics.

Every route request is answered only after its decision is committed to the store (then the
targets are delivered): an acknowledged decision survives a crash. A request holds the pipeline
it started with until it has answered, so a reload never changes or closes it mid-request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool

from frontdesk.errors import FrontdeskError, InputError
from frontdesk.pipeline import Pipeline, Routed, Uncommitted
from frontdesk.server import review_actions
from frontdesk.server.auth import RequireKey
from frontdesk.server.body import StrictJSONRoute
from frontdesk.server.errors import ApiError, ErrorResponse, error_json, request_id_of
from frontdesk.server.models import (
    BatchRequest,
    BatchResponse,
    Feedback,
    FeedbackRequest,
    Health,
    Ready,
    ReloadResponse,
    ResolveRequest,
    ReviewItem,
    ReviewList,
    RouteRequest,
    RouteResponse,
)
from frontdesk.server.state import ServiceState
from frontdesk.store.store import StoreError
from frontdesk.types import Message

log = logging.getLogger("frontdesk.server")

_DESCRIPTIONS = {
    400: "the body is not JSON (or not UTF-8, or empty)", 401: "no or an unknown API key", 403: "the key lacks the scope",
    404: "no such decision", 408: "the body did not arrive within server.read_timeout_s", 409: "not pending review",
    413: "body over server.max_body_bytes, or a batch over server.max_batch", 415: "not Content-Type: application/json",
    422: "a field is invalid (details name it)", 500: "unexpected error (logged with the request id)",
    503: "the store is unavailable (locked or unreachable): nothing was stored, retry",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for these error statuses, all with the one error body."""
    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}


_BODY_ERRORS = (400, 401, 403, 408, 413, 415, 422, 500)


def build_routes(state: ServiceState) -> APIRouter:
    """The API's routes over ``state``."""
    api = APIRouter(route_class=StrictJSONRoute)
    route_key = RequireKey(lambda: state.keys, "route")
    admin_key = RequireKey(lambda: state.keys, "admin")
    any_key = RequireKey(lambda: state.keys, None)

    @contextmanager
    def store_call() -> Iterator[None]:
        """StoreError from a database problem → 503 (the detail, which names the database, goes to the log only)."""
        try:
            yield
        except StoreError as exc:
            if isinstance(exc.__cause__, (OperationalError, InterfaceError)):
                log.warning("store unavailable: %s", exc)
                raise ApiError(503, "store_unavailable", "the store is unavailable (locked or unreachable): nothing was "
                               "stored; retry shortly", headers={"Retry-After": "1"}) from exc
            raise

    def message_of(req: Any) -> Message:
        return Message(text=req.text, sender=req.sender, channel=req.channel, metadata=req.metadata)

    async def commit(results: list[Routed]) -> None:
        try:
            await asyncio.wrap_future(state.committer.submit([r.decision for r in results]))
        except StoreError as exc:
            log.warning("commit failed, answering 503: %s", exc)
            raise ApiError(503, "store_unavailable", "the decision was not stored (the store is locked, unreachable or "
                           "shutting down): retry — the retry is decided afresh", headers={"Retry-After": "1"}) from exc

    async def respond(results: list[Routed], pipeline: Pipeline) -> list[str]:
        """Run the actions and deliver the targets (after the commit); build each result's JSON text (targets
        without text)."""
        if any(r.decision.actions for r in results):
            await run_in_threadpool(review_actions.run_actions, results, pipeline, state.store)
        if pipeline.sinks and any(r.targets for r in results):
            for r in results:
                r.delivery_errors = await run_in_threadpool(pipeline.deliver, r.targets)
        out = []
        for r in results:
            state.metrics.observe(r.decision)
            state.observe(r.decision)
            targets = ",".join(t.model_dump_json(exclude={"text"}) for t in r.targets)
            out.append(f'{{"decision":{r.decision.model_dump_json()},"targets":[{targets}],'
                       f'"delivery_errors":{json.dumps(r.delivery_errors)}}}')
        return out

    @api.post("/v1/route", response_model=RouteResponse, responses=responses(*_BODY_ERRORS, 503),
              dependencies=[Depends(route_key)])
    async def route(req: RouteRequest) -> Response:
        """Route one message. Answered after the decision is committed; targets delivered after that."""
        with state.slot.use() as pipeline, pipeline.uncommitted() as batch:  # dedup remembers only committed decisions
            try:
                routed = await run_in_threadpool(batch.decide, message_of(req))
            except InputError as exc:
                raise ApiError(422, "invalid_message", str(exc)) from exc
            await commit([routed])
            batch.committed()
            body = (await respond([routed], pipeline))[0]
        return Response(body, media_type="application/json")

    @api.post("/v1/route/batch", response_model=BatchResponse, responses=responses(*_BODY_ERRORS, 503),
              dependencies=[Depends(route_key)])
    async def route_batch(req: BatchRequest) -> Response:
        """Route several messages; all decisions are committed in one transaction (all or nothing)."""
        limit = state.config.server.max_batch
        if len(req.messages) > limit:
            raise ApiError(413, "batch_too_large", f"{len(req.messages)} messages > max_batch {limit}: split the batch",
                           {"max_batch": limit})

        def decide_all(batch: Uncommitted) -> list[Routed]:
            results = []
            for i, m in enumerate(req.messages):
                try:
                    results.append(batch.decide(message_of(m)))
                except InputError as exc:
                    raise ApiError(422, "invalid_message", f"messages.{i}: {exc}") from exc
            return results

        with state.slot.use() as pipeline, pipeline.uncommitted() as batch:  # a bad message releases the others' claims
            results = await run_in_threadpool(decide_all, batch)
            await commit(results)
            batch.committed()
            bodies = await respond(results, pipeline)
        return Response('{"results":[' + ",".join(bodies) + "]}", media_type="application/json")

    def check_labels(labels: list[str]) -> None:
        router = state.pipeline.router
        known = set(router.known_labels)
        unknown = sorted(set(labels) - known)
        if unknown:
            shown = ", ".join(sorted(known)[:50]) + (" …" if len(known) > 50 else "")
            raise ApiError(422, "unknown_label", f"unknown label(s) {[u[:60] for u in unknown[:10]]}; known: {shown}")

    @api.post("/v1/feedback", response_model=Feedback, responses=responses(*_BODY_ERRORS, 404, 503),
              dependencies=[Depends(admin_key)])
    def feedback(req: FeedbackRequest) -> Feedback:
        """Record the correct labels of a decision (a human re-route or a confirmation)."""
        check_labels(req.labels)
        with store_call():
            decision = state.store.get_decision(req.decision_id)
            if decision is None:
                raise ApiError(404, "not_found", f"no decision {req.decision_id!r}: check the id (decision.id of a route answer)")
            fb = state.store.add_feedback(req.decision_id, req.labels, actor=req.actor, note=req.note)
        state.monitor.observe_feedback(decision, req.labels)
        return fb

    @api.get("/v1/review", response_model=ReviewList, responses=responses(401, 403, 422, 500, 503),
             dependencies=[Depends(admin_key)])
    def review_list(status: Literal["pending", "resolved"] = "pending",
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> ReviewList:
        """The human-review queue, oldest first, each item with its decision and trace."""
        with store_call():
            return ReviewList(items=state.store.review_queue(status=status, limit=limit, offset=offset),
                              depth=state.store.review_depth())

    @api.post("/v1/review/{decision_id}", response_model=ReviewItem,
              responses=responses(*_BODY_ERRORS, 404, 409, 503), dependencies=[Depends(admin_key)])
    def review_resolve(decision_id: Annotated[str, PathParam(max_length=256)], req: ResolveRequest) -> ReviewItem:
        """Resolve a review item with the correct labels (recorded as feedback too)."""
        check_labels(req.labels)
        with store_call():
            decision = state.store.get_decision(decision_id)
            if decision is None:
                raise ApiError(404, "not_found", f"no decision {decision_id!r}: check the id")
            try:  # resolves the item and gives held actions the reviewer's verdict
                with state.slot.use() as pipeline:
                    item = review_actions.resolve_review(state.store, pipeline, decision, req.labels,
                                                         reviewer=req.reviewer, action=req.action, metrics=state.metrics)
            except review_actions.ReviewActionError as exc:
                cause = exc.__cause__
                if isinstance(cause, StoreError) and isinstance(cause.__cause__, (OperationalError, InterfaceError)):
                    raise cause from None  # a database problem: 503 (store_call), not a conflict
                message = str(exc).replace("use add_feedback", "POST /v1/feedback").replace("add_feedback", "POST /v1/feedback")
                raise ApiError(exc.status, exc.kind, message) from exc
        state.monitor.observe_feedback(decision, req.labels)
        return item

    def scrub(text: str) -> str:
        """A reload error without the server's directories (the file names stay)."""
        if state.config_path is not None:
            for root in {str(state.config_path.resolve().parent), str(state.config_path.parent)}:
                if root not in ("", "."):
                    text = text.replace(root + os.sep, "")
        return text

    @api.post("/v1/admin/reload", response_model=ReloadResponse, responses=responses(400, 401, 403, 500),
              dependencies=[Depends(admin_key)])
    def reload() -> ReloadResponse:
        """Re-read frontdesk.yaml: thresholds, rules, routes and keys change without a restart."""
        try:
            cfg = state.reload()
        except FrontdeskError as exc:
            raise ApiError(400, "invalid_config", f"config not applied, the running one stays: {scrub(str(exc))}") from exc
        version = state.announce(force=True)  # every other replica reloads too (shared state)
        return ReloadResponse(status="reloaded", labels=len(cfg.labels), version=version,
                              gates={n: g.model_dump() for n, g in state.pipeline.router.gates.items()})

    @api.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @api.get("/readyz", response_model=Ready, responses=responses(503))
    def readyz(request: Request) -> Any:
        """Readiness: the model is loaded and the store answers."""
        try:
            depth = state.store.review_depth()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readiness check: store unavailable: %s", exc)
            return error_json(503, "not_ready", "the store is unavailable: not ready", request_id=request_id_of(request))
        router = state.pipeline.router
        return Ready(status="ready", review_depth=depth, tiers=[t.name for t in router.tiers], labels=len(router.labels),
                     shared=state.shared_status())

    async def metrics_guard(request: Request) -> None:
        if state.config.auth.protect_metrics:
            any_key.check_request(request)

    @api.get("/metrics", responses=responses(401, 403) | {200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
             dependencies=[Depends(metrics_guard)], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics (needs a key when auth.protect_metrics is on)."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return api


def docs_routes(state: ServiceState, app: Any) -> APIRouter:
    """/openapi.json, /docs and /redoc, behind a key when auth.protect_docs is on (checked per request)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    any_key = RequireKey(lambda: state.keys, None)

    async def guard(request: Request) -> None:
        if state.config.auth.protect_docs:
            any_key.check_request(request)

    docs = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)

    @docs.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @docs.get("/docs")
    async def swagger() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="frontdesk API")

    @docs.get("/redoc")
    async def redoc() -> Response:
        return get_redoc_html(openapi_url="/openapi.json", title="frontdesk API")

    return docs
