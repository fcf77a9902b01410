"""Where drift alerts go: the log and an optional webhook (never raising into the caller)."""

from __future__ import annotations

import logging

from frontdesk.loop.drift.values import Alert

log = logging.getLogger("frontdesk.loop.drift")


def deliver_alerts(events: list[Alert], url: str | None, *, timeout_s: float) -> None:
    """Log every alert transition and POST each to ``url`` (when set); failures are logged, never raised."""
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
        try:
            resp = httpx.post(url, json=body, timeout=timeout_s)
            if not 200 <= resp.status_code < 300:
                log.error("drift webhook %s answered HTTP %s for %s alert: check the receiver",
                          url, resp.status_code, alert.kind)
        except Exception as exc:  # noqa: BLE001 - alert delivery must never break the caller
            log.error("drift webhook %s failed for %s alert (%s: %s): the alert is still logged and in "
                      "the metrics", url, alert.kind, type(exc).__name__, exc)
