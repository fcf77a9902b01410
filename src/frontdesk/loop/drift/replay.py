"""Replaying a store through a drift monitor (the CLI's ``frontdesk drift``)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from frontdesk.errors import ConfigError
from frontdesk.loop.drift.config import DriftConfig
from frontdesk.loop.drift.monitor import DriftMonitor
from frontdesk.loop.drift.values import Alert, Baseline, DriftReport

if TYPE_CHECKING:
    from frontdesk.store.store import Store


class _ReplayClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drift_report(store: Store, *, since: datetime | None = None, until: datetime | None = None,
                 config: DriftConfig | None = None, baseline: Baseline | None = None,
                 labels: Sequence[str] | None = None, primary_tier: str | None = None,
                 check_every: int = 1) -> DriftReport:
    """Replay the stored decisions (``since <= created_at < until``) and their feedback, in time order,
    through a :class:`DriftMonitor` checked every ``check_every`` decisions; the report holds the final
    snapshot, every alert transition and the alerts still firing. Nothing is logged or POSTed (the
    alerts are history). Without ``baseline`` the first ``baseline_size`` replayed decisions are it."""
    if check_every < 1:
        raise ConfigError(f"check_every must be ≥ 1, got {check_every}", field="check_every")
    clock = _ReplayClock()
    monitor = DriftMonitor(config, baseline=baseline, labels=labels, primary_tier=primary_tier, clock=clock, notify=False)
    decisions = store.decisions(since=since, until=until)
    by_id = {d.id: d for d in decisions}
    feedback = [f for f in store.feedback(since=since)
                if f.decision_id in by_id and (until is None or f.created_at < _aware(until))]
    events: Iterable[tuple[float, int, int, Any]] = heapq.merge(
        ((d.created_at.timestamp(), 0, i, d) for i, d in enumerate(decisions)),
        ((f.created_at.timestamp(), 1, i, f) for i, f in enumerate(feedback)),
    )
    alerts: list[Alert] = []
    clock.t = time.time() if not decisions else decisions[0].created_at.timestamp()
    seen = 0
    unchecked = False  # events since the last check (feedback after the last decision included)
    for ts, kind, _i, item in events:
        clock.t = max(clock.t, ts)
        unchecked = True
        if kind == 0:
            monitor.observe(item, at=ts)
            seen += 1
            if seen % check_every == 0:
                alerts.extend(monitor.check())
                unchecked = False
        else:
            monitor.observe_feedback(by_id[item.decision_id], item.labels)
    if decisions and unchecked:
        alerts.extend(monitor.check())
    return DriftReport(snapshot=monitor.snapshot(), alerts=alerts, active=monitor.active_alerts(),
                       decisions=len(decisions), feedback=len(feedback), since=since)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
