"""Who is looking at the console: session cookies, scopes and CSRF tokens.

Signing in exchanges an API key for a random session token in an ``HttpOnly``, ``SameSite=Strict``
cookie scoped to ``/ui``; the key itself is never stored or echoed. The session row (in the store,
see :mod:`frontdesk.store.sessions`) carries the session's CSRF token, which every form sends back
(a hidden field, or the ``X-CSRF-Token`` header for htmx requests); the sign-in form, which has no
session yet, uses a double-submit cookie instead. With auth off (development) every visitor gets a
session named ``dev`` without signing in, and pages show a banner.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request, Response

from frontdesk.config import Scope
from frontdesk.server.auth import hash_key

if TYPE_CHECKING:
    from frontdesk.server.app import ServiceState
    from frontdesk.store.sessions import Sessions

SESSION_COOKIE = "fd_session"
LOGIN_COOKIE = "fd_login_csrf"
COOKIE_PATH = "/ui"
DEV_NAME = "dev"


class ConsoleError(Exception):
    """Raised in a console handler; rendered as an error page (or an error fragment for htmx)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass(slots=True)
class Viewer:
    """The signed-in user of one request."""

    name: str
    scopes: tuple[str, ...]
    csrf: str
    dev: bool = False
    new_token: str | None = None
    """Set when this request created the session (auth off): the response must set the cookie."""

    @property
    def admin(self) -> bool:
        return self.dev or "admin" in self.scopes

    def require(self, scope: Scope, action: str) -> None:
        """Raise a 403 ConsoleError unless the viewer's key has ``scope``."""
        if scope == "admin" and not self.admin:
            raise ConsoleError(403, "Not allowed", f"{action} needs a key with the admin scope; the key "
                               f"'{self.name}' has: {', '.join(self.scopes)}. Sign in with an admin key.")


def secure(request: Request, configured: bool | None) -> bool:
    """Whether cookies get the Secure flag: as configured, else when the request came over HTTPS."""
    if configured is not None:
        return configured
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int | None,
               configured_secure: bool | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=secure(request, configured_secure))


def clear_cookie(response: Response, request: Request, name: str, configured_secure: bool | None) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=secure(request, configured_secure))


def current_viewer(request: Request, state: ServiceState, sessions: Sessions) -> Viewer | None:
    """The viewer of this request, or None when not signed in (auth on).

    The session's key must still be in the key ring, and its scopes are read from there: removing
    a key from the config ends its console sessions at the next request.
    """
    token = request.cookies.get(SESSION_COOKIE)
    session = sessions.get(token)
    keys = state.keys
    if not keys.enabled:
        if session is not None and session.key_sha256 is None:
            return Viewer(DEV_NAME, ("admin",), session.csrf, dev=True)
        token, session = sessions.create(key_name=DEV_NAME, key_sha256=None, ttl_s=state.config.console.session_ttl_s)
        return Viewer(DEV_NAME, ("admin",), session.csrf, dev=True, new_token=token)
    if session is None or session.key_sha256 is None:
        return None
    for key in state.config.auth.keys:
        if hmac.compare_digest(key.sha256, session.key_sha256):
            return Viewer(key.name, tuple(key.scopes), session.csrf)
    return None


def sign_in(state: ServiceState, sessions: Sessions, presented: str) -> tuple[str, Viewer] | None:
    """Check an API key; on success a new session (token, viewer), else None."""
    key = state.keys.find(presented.strip()) if presented else None
    if key is None:
        return None
    token, session = sessions.create(key_name=key.name, key_sha256=hash_key(presented.strip()),
                                     ttl_s=state.config.console.session_ttl_s)
    return token, Viewer(key.name, tuple(key.scopes), session.csrf)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def tokens_match(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def check_origin(request: Request) -> None:
    """Reject a state-changing request whose Origin (when sent) is another site."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc != host.split(",")[0].strip():
        raise ConsoleError(403, "Request refused", "this form was sent from another site (Origin header "
                           "mismatch): open the console directly and try again")


def check_csrf(request: Request, viewer: Viewer, form_token: str | None) -> None:
    """Every state-changing request must carry the session's CSRF token (form field or header)."""
    check_origin(request)
    given = form_token or request.headers.get("x-csrf-token")
    if not tokens_match(viewer.csrf, given):
        raise ConsoleError(403, "Request refused", "the form's security token is missing or out of date "
                           "(CSRF protection): reload the page and submit again")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (no open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target and "\n" not in target:
        return target
    return "/ui/queue"
