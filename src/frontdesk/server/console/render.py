"""Jinja2 rendering of the console's pages: autoescaping on, strict undefined, a few formatting filters."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from frontdesk import __version__
from frontdesk.server.console import charts

if TYPE_CHECKING:
    from frontdesk.server.console.auth import Viewer

HERE = Path(__file__).parent
STATIC = HERE / "static"


def _ago(value: datetime | None, now: datetime | None = None) -> str:
    """'3 min', '2 h 5 min', '4 d' — how long ago ``value`` was."""
    if value is None:
        return "—"
    s = int(((now or datetime.now(timezone.utc)) - value).total_seconds())
    return _span(s)


def _span(seconds: float) -> str:
    s = int(abs(seconds))
    if s < 60:
        text = f"{s} s"
    elif s < 3600:
        text = f"{s // 60} min"
    elif s < 86400:
        text = f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 // 60 else "")
    else:
        text = f"{s // 86400} d" + (f" {s % 86400 // 3600} h" if s % 86400 // 3600 else "")
    return text if seconds >= 0 else f"-{text}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _utc(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "—" if value is None else value.astimezone(timezone.utc).strftime(fmt) + " UTC"


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(timezone.utc).isoformat()


class Renderer:
    """Renders templates into HTML responses; holds no per-request state."""

    def __init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(ago=_ago, span=_span, pct=_pct, usd=_usd, num=_num, utc=_utc, iso=_iso)
        self.env.globals.update(charts=charts, version=__version__, static=self._static_url())

    @staticmethod
    def _static_url() -> dict[str, str]:
        """Static asset URLs with a content hash (cache-busting across releases)."""
        out = {}
        for name in ("htmx.min.js", "console.js", "console.css"):
            digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]
            out[name] = f"/ui/static/{name}?v={digest}"
        return out

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def page(self, request: Request, template: str, viewer: Viewer | None, *, status: int = 200,
             **context: Any) -> HTMLResponse:
        context.setdefault("now", datetime.now(timezone.utc))
        html = self.render(template, request=request, viewer=viewer, path=request.url.path,
                           htmx=request.headers.get("hx-request") == "true", **context)
        return HTMLResponse(html, status_code=status)

    def login(self, request: Request, *, token: str, next_url: str, status: int = 200,
              error: str | None = None) -> HTMLResponse:
        return self.page(request, "login.html", None, status=status, login_csrf=token, next_url=next_url, error=error)

    def error(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        viewer = getattr(request.state, "viewer", None)
        template = "_error.html" if request.headers.get("hx-request") == "true" else "error.html"
        return self.page(request, template, viewer, status=status, status_code=status, title=title, message=message)
