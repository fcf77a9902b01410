"""The browser console under ``/ui``: review queue, decision search, dashboard, new-intent discovery.

Server-rendered (Jinja2) pages with a vendored htmx and a small script for the keyboard flow; every
asset ships in the package (``static/``), nothing is loaded from elsewhere. Mounted on the service
by :func:`mount_console` (``create_app`` does it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

if TYPE_CHECKING:
    from frontdesk.server.app import ServiceState


def mount_console(app: FastAPI, state: ServiceState) -> None:
    """Add the console's pages and static files to ``app`` (unless ``console.enabled`` is false), and
    the review-queue age gauge to the service's metrics."""
    from frontdesk.store import queries

    def oldest_age() -> float:
        oldest = queries.oldest_pending(state.store)
        return 0.0 if oldest is None else (datetime.now(timezone.utc) - oldest).total_seconds()

    state.metrics.review_age.set_function(oldest_age)
    if not state.config.console.enabled:
        return
    from frontdesk.server.console.render import STATIC, Renderer
    from frontdesk.server.console.routes import build_router

    app.include_router(build_router(state, Renderer()))
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")


__all__ = ["mount_console"]
