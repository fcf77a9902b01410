"""Where drift alerts go: the log and an optional webhook (retried like every outbound call, never
raising into the caller)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from frontdesk.common.retry import RetryPolicy, call_with_retries, parse_retry_after
from frontdesk.loop.drift.values import Alert

log = logging.getLogger("frontdesk.loop.drift")

#: the drift webhook's retries: connection errors, timeouts, 429 and 5xx, a few seconds at most
WEBHOOK_RETRY = RetryPolicy(retries=2, backoff_s=0.5, max_backoff_s=4.0, max_retry_after_s=10.0)


class _Transient(Exception):
    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.retry_after = retry_after


def deliver_alerts(events: list[Alert], url: str | None, *, timeout_s: float, policy: RetryPolicy = WEBHOOK_RETRY,
                   sleep: Callable[[float], None] = time.sleep) -> None:
    """Log every alert transition and POST each to ``url`` (when set), retrying transient failures
    (:data:`WEBHOOK_RETRY`, within ``timeout_s × (retries + 1)`` plus the waits); failures are logged, never raised."""
    for alert in events:
        log.warning("drift alert %s %s: %s", alert.kind, alert.state, alert.message)
    if url is None:
        return
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx ships with the server extra
        log.error("drift webhook %s not called: pip install httpx", url)
        return
    for alert in events:
        body = {"source": "frontdesk", "type": "drift_alert", "alert": alert.model_dump(mode="json")}

        def post() -> int:
            try:
                resp = httpx.post(url, json=body, timeout=timeout_s)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Transient(f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")))
            return resp.status_code

        try:
            status, attempts = call_with_retries(post, policy, retryable=lambda e: isinstance(e, _Transient),
                                                 retry_after=lambda e: getattr(e, "retry_after", None), sleep=sleep)
            if not 200 <= status < 300:
                log.error("drift webhook %s answered HTTP %s for %s alert: check the receiver", url, status, alert.kind)
        except Exception as exc:  # noqa: BLE001 - alert delivery must never break the caller
            log.error("drift webhook %s failed for %s alert after %s attempt(s) (%s: %s): the alert is still logged and in "
                      "the metrics", url, alert.kind, getattr(exc, "attempts", 1), type(exc).__name__, exc)
