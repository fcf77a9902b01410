"""The FastAPI application: wiring of state, routes, error bodies, middleware and lifecycle.

The parts live by job: :mod:`~frontdesk.server.state` (pipeline slot, reload, watcher),
:mod:`~frontdesk.server.routes` (endpoints), :mod:`~frontdesk.server.body` (strict JSON bodies),
:mod:`~frontdesk.server.errors` (the one error body), :mod:`~frontdesk.server.middleware`
(request id, access log, last-resort 500, body limit and read deadline). The app's lifespan
starts the commit writer, drift checker and config watcher, and on shutdown (SIGTERM: uvicorn
first answers the requests in flight) stops them, commits what is queued and closes the store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from frontdesk import __version__
from frontdesk.config import FrontdeskConfig, load_config
from frontdesk.errors import ConfigError
from frontdesk.server import errors
from frontdesk.server.console import mount_console
from frontdesk.server.middleware import BodyGuard, RequestContext
from frontdesk.server.routes import build_routes, docs_routes
from frontdesk.server.state import ServiceState
from frontdesk.store.store import Store

log = logging.getLogger("frontdesk.server")

AUTH_OFF_WARNING = "AUTH IS DISABLED: every client may route, give feedback, read the review queue and reload. Development only."
NO_KEYS_WARNING = ("auth is enabled but auth.keys is empty: every request will get 401. Create a key with "
                   "`frontdesk keys create --name ops --scope admin` and add the entry it prints under auth.keys")


def create_app(config: FrontdeskConfig | str | Path, *, store: Store | None = None, watch: bool | None = None) -> FastAPI:
    """Build the service for ``config`` (a FrontdeskConfig or a path to frontdesk.yaml).

    The model is loaded and the store opened here (errors surface before the server binds);
    threads start with the app's lifespan (uvicorn, ``TestClient`` as a context manager).
    """
    path = None if isinstance(config, FrontdeskConfig) else Path(config)
    cfg = load_config(path) if path is not None else config  # type: ignore[arg-type]
    state = ServiceState(cfg, config_path=path, store=store, watch=watch)
    if not cfg.auth.enabled:
        log.warning(AUTH_OFF_WARNING)
    elif not cfg.auth.keys:
        log.warning(NO_KEYS_WARNING)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.close)  # after the last request: flush the commit queue, close the store

    app = FastAPI(title="frontdesk", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  description="Hybrid intent classification and routing: route messages, give feedback, work the review "
                  "queue. Every error has the body {\"error\": {type, message, details, request_id}}.")
    app.state.frontdesk = state
    errors.install(app)
    app.include_router(build_routes(state))
    app.include_router(docs_routes(state, app))
    mount_console(app, state)  # the browser console under /ui
    app.add_middleware(BodyGuard, get_limit=lambda: state.config.server.max_body_bytes,
                       get_timeout=lambda: state.config.server.read_timeout_s)
    app.add_middleware(RequestContext, metrics=state.metrics)  # outermost: sees every request and every error
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` / several workers: the config path is in $FRONTDESK_CONFIG."""
    path = os.environ.get("FRONTDESK_CONFIG")
    if not path:
        raise ConfigError("set FRONTDESK_CONFIG to the path of frontdesk.yaml", field="FRONTDESK_CONFIG")
    return create_app(path)
