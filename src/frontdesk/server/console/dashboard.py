"""The dashboard's numbers, all read from the store (so every replica shows the same), plus the SLA
of review items from the routing targets in the config."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from frontdesk.loop.drift import Baseline, DriftConfig, DriftMonitor
from frontdesk.loop.drift.values import Alert, DriftSnapshot
from frontdesk.store import queries
from frontdesk.store.store import ReviewItem, Store
from frontdesk.routing.targets import QueueRoute, TargetsConfig
from frontdesk.server.console import charts

if TYPE_CHECKING:
    from frontdesk.cascade.router import Router


# -- review item priority and SLA ------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class Urgency:
    """A review item's queue, priority (1 = most urgent) and due time (None = no SLA)."""

    queue: str
    priority: int
    due_at: datetime | None


def route_of(targets: TargetsConfig, reason: str, label: str | None) -> QueueRoute:
    """Where a review item's decision was routed: the review queue when no model was confident
    (``reason == "human"``), else the queue of its label (the default queue when it has none)."""
    if reason == "human" or label is None:
        return targets.review_queue
    return targets.target_for(label).queue or targets.default_queue


def urgency(targets: TargetsConfig, item: ReviewItem) -> Urgency:
    """The most urgent route among the decision's labels (made more urgent by its urgency and sentiment
    signals, as :func:`~frontdesk.routing.targets.fan_out` does), and its due time."""
    labels = item.decision.labels or [None]
    routes = [targets.signals.adjust(route_of(targets, item.reason, label), item.decision)
              for label in (labels if item.reason != "human" else labels[:1])]
    best = min(routes, key=lambda r: (r.priority, r.sla_minutes or 10**9))
    slas = [r.sla_minutes for r in routes if r.sla_minutes]
    due = item.created_at + timedelta(minutes=min(slas)) if slas else None
    return Urgency(queue=best.queue, priority=best.priority, due_at=due)


def sla_minutes_by_label(targets: TargetsConfig, labels: list[str]) -> dict[str | None, int | None]:
    """The SLA of a flagged (or requires_human) review item by its first label (for the SLA-breach count)."""
    return {label: route_of(targets, "flagged", label).sla_minutes for label in labels}


# -- drift from the store --------------------------------------------------------------------------
@dataclass(slots=True)
class DriftView:
    """The drift monitor run over the latest window of stored decisions against a baseline taken at
    the start of the selected range."""

    snapshot: DriftSnapshot | None
    alerts: list[Alert]
    window: int
    baseline_source: str | None


def store_drift(store: Store, config: DriftConfig, *, since: datetime, now: datetime, labels: list[str],
                primary_tier: str | None) -> DriftView:
    """Replay the newest decisions of ``[since, now]`` through a :class:`DriftMonitor` whose baseline is
    the oldest decisions of that span; the alerts firing at the end are the dashboard's drift alerts.

    With enough decisions the window is the newest ``window`` and the baseline the first
    ``baseline_size`` of the span; when the span holds fewer than both together (then those two reads
    hold all of it) it is split in halves, older = baseline, if each half has ``min_window``
    decisions; with fewer still there is only a window and no baseline (the baseline-relative alerts
    cannot fire)."""
    size = config.window or 500
    base_size = config.baseline_size or size
    until = now + timedelta(seconds=1)
    window = queries.latest_decisions(store, limit=size, after=since, before=until)
    if not window:
        return DriftView(None, [], 0, None)
    oldest = queries.latest_decisions(store, limit=base_size, after=since, before=until, oldest_first=True)
    seen = {d.id for d in window}
    if len(seen | {d.id for d in oldest}) < size + base_size:  # the span holds no more than these: all of it
        every = sorted({d.id: d for d in oldest + window}.values(), key=lambda d: (d.created_at, d.id))
        half = len(every) // 2
        if half >= config.min_window:
            oldest, window = every[:half], every[half:]
        else:
            oldest, window = [], every[-size:]
    baseline = None
    if oldest:
        baseline = Baseline.from_decisions(oldest, config, primary_tier=primary_tier,
                                           source=f"the first {len(oldest)} decisions since {since:%Y-%m-%d %H:%M} UTC")
    at = [now.timestamp()]
    monitor = DriftMonitor(config.model_copy(update={"webhook_url": None}), baseline=baseline, labels=labels,
                           primary_tier=primary_tier, clock=lambda: at[0], notify=False)
    for d in window:
        monitor.observe(d, at=d.created_at.timestamp())
    monitor.check()
    return DriftView(monitor.snapshot(), monitor.active_alerts(), len(window), baseline.source if baseline else None)


# -- the whole dashboard ---------------------------------------------------------------------------
@dataclass(slots=True)
class LabelRow:
    label: str
    volume: int
    share: float
    support: int = 0
    recall: float | None = None


@dataclass(slots=True)
class Dashboard:
    range: queries.Range
    now: datetime
    since: datetime
    buckets: list[queries.Bucket]
    total: queries.Bucket
    tiers: list[str]
    spend: queries.LLMSpend
    queue: queries.QueueStats
    labels: list[LabelRow]
    drift: DriftView
    timings_ms: dict[str, float] = field(default_factory=dict)


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="frontdesk-dashboard")
"""The dashboard's queries are independent: they run side by side, each on its own pooled connection."""


def build(store: Store, *, rng: queries.Range, now: datetime, router: Router, drift: DriftConfig,
          targets: TargetsConfig) -> Dashboard:
    """Every number on the dashboard for ``rng`` ending at ``now`` (``timings_ms``: each query's time)."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        def run() -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] = (time.perf_counter() - t0) * 1e3
        return _POOL.submit(run)

    since = queries.range_start(rng, now)
    label_names = sorted(set(router.labels) | {lb for t in router.tiers for lb in (t.labels_ or ())})
    jobs = {
        "traffic": timed("traffic", queries.traffic, store, rng, now, unknown_labels=drift.unknown_labels,
                         count_human_as_unknown=drift.count_human_as_unknown),
        "labels": timed("labels", queries.label_volume, store, rng, now),
        "drift": timed("drift", store_drift, store, drift, since=since, now=now, labels=list(router.labels),
                       primary_tier=router.primary.name),
        "llm": timed("llm", queries.llm_spend, store, now),
        "queue": timed("queue", queries.queue_stats, store, now, review_sla_minutes=targets.review_queue.sla_minutes,
                       label_sla_minutes=sla_minutes_by_label(targets, label_names)),
        "recall": timed("recall", queries.label_recall, store, since),
    }
    done = {name: job.result() for name, job in jobs.items()}
    buckets, total = done["traffic"]
    order = [t.name for t in router.tiers] + ["human"]
    tiers = [t for t in order if t in total.tiers] + sorted(set(total.tiers) - set(order))
    volume = done["labels"]
    n_labels = sum(volume.values()) or 1
    rows = {label: LabelRow(label, n, n / n_labels) for label, n in volume.items()}
    for label, r in done["recall"].items():
        row = rows.setdefault(label, LabelRow(label, 0, 0.0))
        row.support, row.recall = r.support, r.recall
    return Dashboard(range=rng, now=now, since=since, buckets=buckets, total=total, tiers=tiers, spend=done["llm"],
                     queue=done["queue"], labels=sorted(rows.values(), key=lambda r: (-r.volume, -r.support, r.label)),
                     drift=done["drift"], timings_ms=timings)


TIME_FORMATS = {"1h": "%H:%M", "24h": "%H:%M", "7d": "%m-%d %Hh", "30d": "%m-%d"}


def charts_of(board: Dashboard) -> dict[str, Markup]:
    """The dashboard's SVG charts: traffic per tier, escalation and unknown rates, mean tier-1
    confidence per bucket, LLM calls and cost per day."""
    fmt = TIME_FORMATS.get(board.range.name, "%m-%d %H:%M")
    starts = [b.start for b in board.buckets]
    traffic = charts.stacked_bars(starts, {t: [b.tiers.get(t, 0) for b in board.buckets] for t in board.tiers},
                                  label="decisions per tier", time_fmt=fmt)
    rates = charts.lines(starts, {"escalated": [b.escalation_rate for b in board.buckets],
                                  "unknown": [b.unknown_rate for b in board.buckets]},
                         label="escalation and unknown rate", time_fmt=fmt, percent=True,
                         top=max([0.05, *(v for b in board.buckets for v in (b.escalation_rate, b.unknown_rate)
                                          if v is not None)]))
    confidence = charts.lines(starts, {"confidence": [b.confidence_mean for b in board.buckets]},
                              label="mean tier-1 confidence", time_fmt=fmt, top=1.0)
    days = [d for d, _calls, _cost in board.spend.days]
    cost = charts.stacked_bars(days, {"cost (USD)": [round(c, 6) for _d, _n, c in board.spend.days]},
                               label="LLM cost per day (USD)", time_fmt="%m-%d", unit=" USD")
    calls = charts.stacked_bars(days, {"calls": [n for _d, n, _c in board.spend.days]},
                                label="LLM calls per day", time_fmt="%m-%d")
    return {"traffic_chart": traffic, "rates_chart": rates, "confidence_chart": confidence,
            "cost_chart": Markup('<p class="caption">cost (USD)</p>') + cost + Markup('<p class="caption">calls</p>') + calls}
