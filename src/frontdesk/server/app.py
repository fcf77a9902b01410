"""The FastAPI application: route, batch, feedback, review queue, health, metrics, reload.

Every route request is answered only after its decision is committed to the store (then the
targets are delivered): an acknowledged decision survives a crash. Reloads swap the whole
pipeline object at once, so in-flight requests finish on the old one and none fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from frontdesk import __version__
from frontdesk.config import FrontdeskConfig, Scope, load_config
from frontdesk.errors import ConfigError, FrontdeskError, InputError, ModelError
from frontdesk.loop.drift import DriftMonitor
from frontdesk.pipeline import Pipeline, Routed, Uncommitted
from frontdesk.store.store import Feedback, ReviewItem, Store, StoreError
from frontdesk.routing.targets import RoutedTarget
from frontdesk.types import Decision, Message
from frontdesk.server.auth import KeyRing
from frontdesk.server.commit import GroupCommitter
from frontdesk.server.metrics import Metrics

log = logging.getLogger("frontdesk.server")


# -- request / response models ------------------------------------------------------------------
class RouteRequest(BaseModel):
    """One message to route."""

    text: str = Field(description="the message text (longer than the router's max_chars → truncated)")
    sender: str | None = Field(None, description="sender id: enables dedup within the window")
    channel: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class BatchRequest(BaseModel):
    messages: list[RouteRequest] = Field(min_length=1)


class RouteResponse(BaseModel):
    decision: Decision
    targets: list[RoutedTarget]
    delivery_errors: list[str] = Field(default_factory=list)


class BatchResponse(BaseModel):
    results: list[RouteResponse]


class FeedbackRequest(BaseModel):
    """A human re-route or confirmation: the correct labels of a decision."""

    decision_id: str
    labels: list[str] = Field(min_length=1)
    actor: str | None = None
    note: str | None = None


class ResolveRequest(BaseModel):
    labels: list[str] = Field(min_length=1)
    reviewer: str | None = None


class ReviewList(BaseModel):
    items: list[ReviewItem]
    depth: int


class ErrorBody(BaseModel):
    type: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def _error(status: int, kind: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "details": details}}, status_code=status)


class ApiError(Exception):
    """Raised inside handlers; rendered as the JSON error body."""

    def __init__(self, status: int, kind: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.details = status, kind, message, details


# -- state ------------------------------------------------------------------------------------
class ServiceState:
    """The swappable pipeline and key ring, the store and the metrics of one app."""

    def __init__(self, config: FrontdeskConfig, *, config_path: Path | None, store: Store | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.shared = _shared_state(config)
        self.pipeline = Pipeline.from_config(config, shared=self.shared)
        self.keys = KeyRing(config.auth)
        self.store = store or Store(config.store, synchronous=config.store_sync.upper())  # type: ignore[arg-type]
        self.committer = GroupCommitter(self.store)
        self.metrics = Metrics(self.store.review_depth)
        self.monitor = DriftMonitor.from_router(self.pipeline.router, config.drift)
        self.monitor.register(self.metrics.registry)
        self.monitor.start(15.0)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._mtime = config_path.stat().st_mtime if config_path else None
        self.digest = _file_digest(config_path)
        self.feed, self.follower = _follow_shared(self)

    def reload(self) -> FrontdeskConfig:
        """Re-read the config and swap in a new pipeline; on any error the old one stays."""
        if self.config_path is None:
            raise ConfigError("this service was started without a config file: nothing to reload", field="reload")
        with self._reload_lock:
            try:
                digest = _file_digest(self.config_path)
                config = load_config(self.config_path)
                try:
                    pipeline = Pipeline.from_config(config, shared=self.shared)
                except ModelError:  # a `frontdesk promote` swapping the directory mid-read: read again
                    time.sleep(0.2)
                    pipeline = Pipeline.from_config(config, shared=self.shared)
            except FrontdeskError:
                self.metrics.reloads.labels("error").inc()
                raise
            if config.store != self.config.store or config.shared != self.config.shared:
                log.warning("store or shared settings changed in %s: restart the service to use them", self.config_path)
            model_changed = pipeline.router.labels != self.pipeline.router.labels or config.model != self.config.model
            self.pipeline, self.keys, self.config, self.digest = pipeline, KeyRing(config.auth), config, digest
            if model_changed:
                self.monitor.reset(labels=pipeline.router.labels, primary_tier=pipeline.router.primary.name)
            self.monitor.use_model_target(pipeline.router)  # a promoted model may carry another guarantee
            self.metrics.reloads.labels("ok").inc()
            log.info("reloaded %s", self.config_path)
            return config

    def watch(self) -> None:
        """Poll the config file's mtime and reload on change (runs in a daemon thread)."""
        while not self._stop.wait(self.config.server.watch_interval_s):
            try:
                mtime = self.config_path.stat().st_mtime  # type: ignore[union-attr]
            except OSError:
                continue
            if mtime != self._mtime:
                self._mtime = mtime
                try:
                    self.reload()
                except FrontdeskError as exc:
                    log.error("config change not applied, keeping the running config: %s", exc)
                else:
                    self.announce(force=False)

    def announce(self, *, force: bool) -> int | None:
        """Tell the other replicas (shared state) that this one reloaded; they reload too (see frontdesk.shared)."""
        if self.follower is None or self.digest is None:
            return None
        return self.follower.announce(self.digest, force=force)

    def observe(self, decision: Decision) -> None:
        """A committed decision for the drift window: the shared one when configured, else this process's."""
        if self.feed is not None:
            self.feed.publish(decision)
        else:
            self.monitor.observe(decision)

    def close(self) -> None:
        self._stop.set()
        for part in (self.follower, self.feed):
            if part is not None:
                part.close()
        self.monitor.close()
        self.committer.close()
        self.pipeline.close()
        self.store.close()
        if self.shared is not None:
            self.shared.close()


def _file_digest(path: Path | None) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    except OSError:
        return None


def _shared_state(config: FrontdeskConfig) -> Any:
    if config.shared is None:
        return None
    from frontdesk.shared import SharedState

    return SharedState(config.shared)


def _follow_shared(state: ServiceState) -> tuple[Any, Any]:
    """Start following the shared drift window and the config version key (when configured)."""
    shared, cfg = state.shared, state.config.shared
    if shared is None or cfg is None:
        return None, None
    from frontdesk.shared import VersionWatcher

    feed = follower = None
    if cfg.drift:
        feed = shared.drift_feed(state.pipeline.router)
        feed.follow(state.monitor, backfill=state.config.drift.window or 1000)
    if cfg.reload and state.config_path is not None:
        follower = VersionWatcher(shared.versions(), state.reload, lambda: state.digest, replica=shared.replica,
                                  interval_s=cfg.watch_interval_s)
        follower.start()
    return feed, follower


# -- request metrics (pure ASGI: no per-request task or body copy) -------------------------------
class RequestMetrics:
    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def recording(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - t0)


# -- body size limit (pure ASGI, so it also covers chunked bodies) ------------------------------
class BodyLimit:
    def __init__(self, app: Callable, get_limit: Callable[[], int]) -> None:
        self.app, self.get_limit = app, get_limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.get_limit()
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return await _send_413(send, limit)
        seen = 0
        too_large = False

        async def limited() -> dict:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request" and not too_large:
                seen += len(message.get("body", b""))
                if seen > limit:  # stop reading; the app sees an end of body, its answer is replaced by 413
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded(message: dict) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await _send_413(send, limit)

        await self.app(scope, limited, guarded)


async def _send_413(send: Callable, limit: int) -> None:
    body = json.dumps({"error": {"type": "payload_too_large", "message": f"request body over {limit} bytes: send less per request"}}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


# -- the app ------------------------------------------------------------------------------------
def create_app(config: FrontdeskConfig | str | Path, *, store: Store | None = None, watch: bool | None = None) -> FastAPI:
    """Build the service for ``config`` (a FrontdeskConfig or a path to frontdesk.yaml)."""
    path = None if isinstance(config, FrontdeskConfig) else Path(config)
    cfg = load_config(path) if path is not None else config  # type: ignore[arg-type]
    state = ServiceState(cfg, config_path=path, store=store)
    if not cfg.auth.enabled:
        log.warning("AUTH IS DISABLED: every client may route, give feedback and reload. Development only.")

    app = FastAPI(title="frontdesk", version=__version__,
                  description="Hybrid intent classification and routing: route messages, give feedback, work the review queue.")
    app.state.frontdesk = state
    responses = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                 422: {"model": ErrorResponse}}

    def require(scope: Scope) -> Callable[..., None]:
        async def check(authorization: Annotated[str | None, Header()] = None,
                  x_api_key: Annotated[str | None, Header()] = None) -> None:
            keys = state.keys
            if not keys.enabled:
                return
            presented = x_api_key
            if authorization and authorization.lower().startswith("bearer "):
                presented = authorization[7:].strip()
            if not presented:
                raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
            key = keys.find(presented)
            if key is None:
                raise ApiError(401, "unauthorized", "invalid API key")
            if not keys.allows(key, scope):
                raise ApiError(403, "forbidden", f"key '{key.name}' lacks the '{scope}' scope (has: {', '.join(key.scopes)})")
        return check

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") in ("json_invalid", "json_type") for e in errors):
            return _error(400, "invalid_json", "the body is not valid JSON (UTF-8): send a JSON object", _plain(errors))
        where = "; ".join(".".join(str(x) for x in e.get("loc", ())[1:]) + ": " + str(e.get("msg")) for e in errors)
        return _error(422, "invalid_request", where, _plain(errors))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - last resort
        log.exception("unexpected error")
        return _error(500, "internal", f"{type(exc).__name__}: {exc}")

    def _message(req: RouteRequest) -> Message:
        return Message(text=req.text, sender=req.sender, channel=req.channel, metadata=req.metadata)

    async def _commit(results: list[Routed]) -> None:
        try:
            await asyncio.wrap_future(state.committer.submit([r.decision for r in results]))
        except StoreError as exc:
            raise ApiError(503, "store_unavailable", f"decision not stored, retry: {exc}") from exc

    async def _respond(results: list[Routed], pipeline: Pipeline) -> list[str]:
        """Deliver the targets (after the commit) and build each result's JSON text."""
        if pipeline.sinks and any(r.targets for r in results):
            for r in results:
                r.delivery_errors = await run_in_threadpool(pipeline.deliver, r.targets)
        out = []
        for r in results:
            state.metrics.observe(r.decision)
            state.observe(r.decision)
            targets = ",".join(t.model_dump_json() for t in r.targets)
            out.append(f'{{"decision":{r.decision.model_dump_json()},"targets":[{targets}],'
                       f'"delivery_errors":{json.dumps(r.delivery_errors)}}}')
        return out

    @app.post("/v1/route", response_model=RouteResponse, responses=responses, dependencies=[Depends(require("route"))])
    async def route(req: RouteRequest) -> Response:
        """Route one message. Answered after the decision is committed; targets delivered after that."""
        pipeline = state.pipeline  # one object for the whole request, even across a reload
        with pipeline.uncommitted() as batch:  # dedup remembers the decision only once it is committed
            try:
                routed = await run_in_threadpool(batch.decide, _message(req))
            except InputError as exc:
                raise ApiError(422, "invalid_message", str(exc)) from exc
            await _commit([routed])
            batch.committed()
        return Response((await _respond([routed], pipeline))[0], media_type="application/json")

    @app.post("/v1/route/batch", response_model=BatchResponse, responses=responses, dependencies=[Depends(require("route"))])
    async def route_batch(req: BatchRequest) -> Response:
        """Route several messages; all decisions are committed in one transaction."""
        pipeline = state.pipeline
        if len(req.messages) > state.config.server.max_batch:
            raise ApiError(413, "batch_too_large", f"{len(req.messages)} messages > max_batch {state.config.server.max_batch}: split the batch")

        def decide_all(batch: Uncommitted) -> list[Routed]:
            results = []
            for i, m in enumerate(req.messages):
                try:
                    results.append(batch.decide(_message(m)))
                except InputError as exc:
                    raise ApiError(422, "invalid_message", f"messages.{i}: {exc}") from exc
            return results

        with pipeline.uncommitted() as batch:  # all or nothing: a bad message releases the others' claims
            results = await run_in_threadpool(decide_all, batch)
            await _commit(results)
            batch.committed()
        return Response('{"results":[' + ",".join(await _respond(results, pipeline)) + "]}", media_type="application/json")

    def _check_labels(labels: list[str]) -> None:
        router = state.pipeline.router
        known = set(router.labels) | set(router.tiers[0].labels_)
        unknown = sorted(set(labels) - known)
        if unknown:
            raise ApiError(422, "unknown_label", f"unknown label(s) {unknown}; known: {', '.join(sorted(known))}")

    @app.post("/v1/feedback", response_model=Feedback, responses=responses | {404: {"model": ErrorResponse}},
              dependencies=[Depends(require("admin"))])
    def feedback(req: FeedbackRequest) -> Feedback:
        """Record the correct labels of a decision (a human re-route or a confirmation)."""
        _check_labels(req.labels)
        decision = state.store.get_decision(req.decision_id)
        if decision is None:
            raise ApiError(404, "not_found", f"no decision {req.decision_id!r}")
        fb = state.store.add_feedback(req.decision_id, req.labels, actor=req.actor, note=req.note)
        state.monitor.observe_feedback(decision, req.labels)
        return fb

    @app.get("/v1/review", response_model=ReviewList, responses=responses, dependencies=[Depends(require("admin"))])
    def review_list(status: Literal["pending", "resolved"] = "pending", limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    offset: Annotated[int, Query(ge=0)] = 0) -> ReviewList:
        """The human-review queue, oldest first, each item with its decision and trace."""
        return ReviewList(items=state.store.review_queue(status=status, limit=limit, offset=offset), depth=state.store.review_depth())

    @app.post("/v1/review/{decision_id}", response_model=ReviewItem,
              responses=responses | {404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
              dependencies=[Depends(require("admin"))])
    def review_resolve(decision_id: str, req: ResolveRequest) -> ReviewItem:
        """Resolve a review item with the correct labels (recorded as feedback too)."""
        _check_labels(req.labels)
        decision = state.store.get_decision(decision_id)
        if decision is None:
            raise ApiError(404, "not_found", f"no decision {decision_id!r}")
        try:
            item = state.store.resolve_review(decision_id, req.labels, reviewer=req.reviewer)
        except StoreError as exc:
            raise ApiError(409, "conflict", str(exc)) from exc
        state.monitor.observe_feedback(decision, req.labels)
        return item

    @app.post("/v1/admin/reload", responses=responses | {400: {"model": ErrorResponse}}, dependencies=[Depends(require("admin"))])
    def reload() -> dict[str, Any]:
        """Re-read frontdesk.yaml: thresholds, rules, routes and keys change without a restart."""
        try:
            cfg = state.reload()
        except FrontdeskError as exc:
            raise ApiError(400, "invalid_config", f"config not applied, the running one stays: {exc}") from exc
        version = state.announce(force=True)  # every other replica reloads too (shared state)
        return {"status": "reloaded", "gates": {n: g.model_dump() for n, g in state.pipeline.router.gates.items()},
                "labels": len(cfg.labels), "version": version}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    def readyz() -> Response:
        """Readiness: the model is loaded and the store answers."""
        try:
            depth = state.store.review_depth()
        except Exception as exc:  # noqa: BLE001
            return _error(503, "not_ready", f"store unavailable: {exc}")
        body: dict[str, Any] = {"status": "ready", "model": str(state.config.model), "review_depth": depth,
                                "tiers": [t.name for t in state.pipeline.router.tiers]}
        if state.shared is not None:  # degraded, not unready: each replica carries on alone without Redis
            body["shared"] = {"redis": "ok" if state.shared.ping() else "unreachable",
                              "config_version": state.follower.seen if state.follower is not None else None,
                              "config_digest": state.digest}
        return JSONResponse(body)

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, get_limit=lambda: state.config.server.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    do_watch = cfg.server.watch_config if watch is None else watch
    if do_watch and path is not None:
        threading.Thread(target=state.watch, name="frontdesk-config-watch", daemon=True).start()
    return app


def _plain(errors: list[dict]) -> list[dict]:
    """Validation errors without unserialisable context objects."""
    return [{k: (v if isinstance(v, (str, int, float, list, type(None))) else str(v)) for k, v in e.items() if k != "ctx"} for e in errors]


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` / several workers: the config path is in $FRONTDESK_CONFIG."""
    import os

    path = os.environ.get("FRONTDESK_CONFIG")
    if not path:
        raise ConfigError("set FRONTDESK_CONFIG to the path of frontdesk.yaml", field="FRONTDESK_CONFIG")
    return create_app(path)
