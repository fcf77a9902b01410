"""Read-side queries for the console: decision search, one review item, and the dashboard's aggregates.

Every aggregate runs in SQL over the columns and indexes of revision 0002 (see
``migrations/versions/0002_console.py``), on SQLite and PostgreSQL alike, so the numbers are the
same whichever replica serves the page and cost time in proportion to the rows in the range, read
from an index rather than from the JSON payloads:

* time series group on ``created_hour`` (UTC epoch hours) and ``tier`` — the covering index
  ``ix_decisions_hourly`` streams them in order; ranges under a day group 5-minute buckets of
  ``created_at`` instead (few rows);
* per-label volume walks the distinct labels of ``ix_decisions_label_created_at`` and counts each one's
  range, plus the further labels of multi-label decisions (``ix_decisions_multilabel_created_at``);
* LLM calls and cost per hour read the partial index ``ix_decisions_llm_hour`` (LLM rows only);
* the review queue's depth, age buckets and SLA breaches are one ``GROUP BY`` over the pending items.

Rates follow the drift monitor's definitions (:mod:`frontdesk.loop.drift.signals`): repeats of an
earlier decision (``duplicate``) count as traffic but not in the rates; *escalated* means answered
past the first model tier or sent to human review; *unknown* means the first label is an unknown
label, or human review without a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from frontdesk.errors import ConfigError
from frontdesk.store.store import ReviewItem, Store, _decisions, _feedback, _reviews, _utc, _UTCDateTime
from frontdesk.types import Decision

HOUR = 3600


# -- decision search ----------------------------------------------------------------------------
@dataclass(slots=True)
class DecisionFilter:
    """What to search decisions by; every field is optional (None = any)."""

    id: str | None = None
    sender: str | None = None
    label: str | None = None
    tier: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None
    """True: has feedback or a resolved review; False: has neither."""


@dataclass(slots=True)
class DecisionHit:
    decision: Decision
    reviewed: bool


def search_decisions(store: Store, flt: DecisionFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[DecisionHit], bool]:
    """Decisions matching ``flt``, newest first: (one page of hits, whether there are more).

    An ``id`` matches exactly or as a prefix of at least 6 characters; ``label`` matches any of a
    decision's labels — the first label through the ``(label, created_at)`` index, further labels of
    multi-label decisions through their partial index; the two ordered streams are merged here.
    """
    if limit < 1 or offset < 0:
        raise ConfigError(f"limit must be ≥ 1 and offset ≥ 0, got {limit}, {offset}", field="limit")
    d = _decisions
    has_feedback = sa.exists().where(_feedback.c.decision_id == d.c.id)
    q = sa.select(d.c.payload, d.c.created_at, d.c.id, has_feedback.label("reviewed"))
    if flt.id:
        ident = flt.id.strip()
        q = q.where(d.c.id.startswith(ident, autoescape=True) if len(ident) >= 6 else d.c.id == ident)
    if flt.sender:
        q = q.where(d.c.sender == flt.sender)
    if flt.tier:
        q = q.where(d.c.tier == flt.tier)
    if flt.since is not None:
        q = q.where(d.c.created_at >= flt.since)
    if flt.until is not None:
        q = q.where(d.c.created_at < flt.until)
    if flt.reviewed is not None:
        q = q.where(has_feedback if flt.reviewed else ~has_feedback)
    queries_ = [q]
    if flt.label:
        queries_ = [q.where(d.c.label == flt.label),
                    q.where(d.c.n_labels > 1, d.c.label != flt.label, _has_further_label(store, flt.label))]
    wanted = offset + limit + 1
    rows = []
    with store._read() as conn:
        for one in queries_:
            rows += conn.execute(one.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(wanted)).all()
    rows.sort(key=lambda r: (_utc(r.created_at), r.id), reverse=True)
    page = rows[offset:offset + limit + 1]
    hits = [DecisionHit(Decision.model_validate_json(r.payload), bool(r.reviewed)) for r in page[:limit]]
    return hits, len(page) > limit


def _has_further_label(store: Store, label: str) -> sa.ColumnElement[bool]:
    """The decision's labels (a JSON array) hold ``label``."""
    d = _decisions
    if store.backend == "postgresql":
        return sa.type_coerce(d.c.labels, postgresql.JSONB).contains([label])
    each = sa.func.json_each(d.c.labels).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == label))


def reviewed_ids(store: Store, ids: Sequence[str]) -> set[str]:
    """Which of these decisions already have feedback (or a resolved review)."""
    out: set[str] = set()
    with store._read() as conn:
        for i in range(0, len(ids), 500):
            out.update(conn.scalars(sa.select(_feedback.c.decision_id).where(_feedback.c.decision_id.in_(ids[i:i + 500]))))
    return out


def discovery_candidates(store: Store, *, since: datetime | None = None, limit: int = 2000,
                         unknown_labels: Sequence[str] = ("oos", "unknown")) -> list[Decision]:
    """The most recent ``limit`` decisions the model could not place (oldest first), filtered in SQL:
    unknown, escalated, sent to human review or flagged; repeats left out. The same selection as
    :func:`frontdesk.loop.discovery.candidates_from_store` without reading every decision."""
    d = _decisions
    q = (sa.select(d.c.payload)
         .where(d.c.duplicate.is_(False),
                sa.or_(d.c.label.in_(list(unknown_labels)), d.c.escalated.is_(True), d.c.flagged.is_(True),
                       d.c.tier == "human"))
         .order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit))
    if since is not None:
        q = q.where(d.c.created_at >= since)
    with store._read() as conn:
        payloads = conn.scalars(q).all()
    return [Decision.model_validate_json(p) for p in reversed(payloads)]


# -- dashboard aggregates -------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class Range:
    """A dashboard time range: ``n`` buckets of ``bucket_s`` seconds, the last one holding ``now``."""

    name: str
    seconds: int
    bucket_s: int

    @property
    def n(self) -> int:
        return self.seconds // self.bucket_s


RANGES: dict[str, Range] = {r.name: r for r in (Range("1h", HOUR, 300), Range("24h", 24 * HOUR, HOUR),
                                                 Range("7d", 7 * 24 * HOUR, 6 * HOUR), Range("30d", 30 * 24 * HOUR, 24 * HOUR))}


@dataclass(slots=True)
class Bucket:
    """Totals over one time bucket (or the whole range)."""

    start: datetime
    n: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    escalated: int = 0
    unknown: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0
    llm_calls: int = 0
    cost_usd: float = 0.0

    @property
    def rated(self) -> int:
        """Decisions the rates are over (repeats left out)."""
        return self.n - self.duplicates

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.rated if self.rated else None

    @property
    def unknown_rate(self) -> float | None:
        return self.unknown / self.rated if self.rated else None

    @property
    def confidence_mean(self) -> float | None:
        return self.confidence_sum / self.confidence_n if self.confidence_n else None


def range_start(rng: Range, now: datetime) -> datetime:
    """The start of the first bucket of ``rng`` ending at ``now`` (bucket edges are UTC epoch multiples)."""
    epoch = int(_utc(now).timestamp())
    return datetime.fromtimestamp((epoch // rng.bucket_s - rng.n + 1) * rng.bucket_s, timezone.utc)


def _bucket(store: Store, column: Any, size_s: int) -> Any:
    """The epoch-aligned bucket number (seconds since the epoch // ``size_s``) of a timestamp column."""
    if store.backend == "sqlite":
        return sa.cast(sa.func.strftime("%s", column), sa.Integer) / size_s  # integer division
    return sa.cast(sa.func.floor(sa.extract("epoch", column) / size_s), sa.BigInteger)


PAID = sa.or_(_decisions.c.llm_calls > 0, _decisions.c.cost_usd > 0)
"""The condition of the partial index ``ix_decisions_llm_hour``: rows that called an LLM or cost money."""


def traffic(store: Store, rng: Range, now: datetime, *, unknown_labels: Sequence[str] = ("oos", "unknown"),
            count_human_as_unknown: bool = False) -> tuple[list[Bucket], Bucket]:
    """Per-bucket totals (decisions per tier, repeats, escalations, unknowns, primary confidence, LLM
    calls and cost) over ``rng`` ending at ``now``, and their sum over the range.

    One ``GROUP BY (bucket, tier, duplicate)`` with plain sums — the per-row work is what bounds a
    30-day range, so the tier-dependent parts of "escalated" and "unknown" are applied per group in
    Python — plus, for whole-hour buckets, the LLM calls and cost from the partial index of paid rows.
    """
    start = range_start(rng, now)
    d = _decisions
    unknown = list(unknown_labels)
    cols = [sa.func.count(), sa.func.sum(sa.cast(d.c.escalated, sa.Integer)),
            sa.func.sum(sa.cast(d.c.label.in_(unknown), sa.Integer)) if unknown else sa.literal(0),
            sa.func.count(d.c.label), sa.func.sum(d.c.primary_confidence), sa.func.count(d.c.primary_confidence)]
    hourly = rng.bucket_s % HOUR == 0
    hour0 = int(start.timestamp()) // HOUR
    if hourly:  # whole hours: stream the covering index in (created_hour, tier, duplicate) order
        key, size = d.c.created_hour, HOUR
        q = sa.select(key, d.c.tier, d.c.duplicate, *cols).where(key >= hour0)
        paid = (sa.select(key, sa.func.sum(d.c.llm_calls), sa.func.sum(d.c.cost_usd))
                .where(PAID, key >= hour0).group_by(key))
    else:  # under an hour per bucket: the range is short, group an expression over its few rows
        key, size = _bucket(store, d.c.created_at, rng.bucket_s).label("bucket"), rng.bucket_s
        q = sa.select(key, d.c.tier, d.c.duplicate, *cols, sa.func.sum(d.c.llm_calls), sa.func.sum(d.c.cost_usd)
                      ).where(d.c.created_at >= start)
        paid = None
    q = q.group_by(key, d.c.tier, d.c.duplicate)
    with store._read() as conn:
        rows = conn.execute(q).all()
        spent = conn.execute(paid).all() if paid is not None else [(r[0], r[9], r[10]) for r in rows]
    first = int(start.timestamp())
    buckets = [Bucket(start=datetime.fromtimestamp(first + i * rng.bucket_s, timezone.utc)) for i in range(rng.n)]
    total = Bucket(start=start)

    def index(k: Any) -> int | None:
        i = (int(k) * size - first) // rng.bucket_s
        return i if 0 <= i < rng.n else None  # None: stamped in the future (a writer's clock ahead of ours)

    for k, tier, duplicate, n, esc, unk, labelled, csum, cn, *_ in rows:
        i = index(k)
        if i is None:
            continue
        n = int(n)
        human = tier == "human"
        values = ((n, 0, 0, 0.0, 0) if duplicate else
                  (0, n if human else int(esc or 0),
                   (n if count_human_as_unknown else int(unk or 0) + n - int(labelled)) if human else int(unk or 0),
                   float(csum or 0.0), int(cn)))
        for b in (buckets[i], total):
            b.n += n
            b.tiers[tier] = b.tiers.get(tier, 0) + n
            b.duplicates += values[0]
            b.escalated += values[1]
            b.unknown += values[2]
            b.confidence_sum += values[3]
            b.confidence_n += values[4]
    for k, calls, cost in spent:
        i = index(k)
        if i is not None:
            for b in (buckets[i], total):
                b.llm_calls += int(calls or 0)
                b.cost_usd += float(cost or 0.0)
    return buckets, total


_LABELS = """
WITH RECURSIVE walk(label) AS (
    SELECT min(label) FROM decisions WHERE label IS NOT NULL
    UNION ALL
    SELECT (SELECT min(d.label) FROM decisions d WHERE d.label > walk.label) FROM walk WHERE walk.label IS NOT NULL
)
SELECT label, (SELECT count(*) FROM decisions d WHERE d.label = walk.label AND d.created_at >= :start) AS n
FROM walk WHERE label IS NOT NULL
"""
"""Per-label counts without reading every row: walk the distinct labels of ``(label, created_at)`` one index
seek at a time (a loose index scan; neither backend plans one by itself without statistics), then count
each label's range of that index."""
_MORE_LABELS = {
    "sqlite": "SELECT j.value, count(*) FROM decisions, json_each(decisions.labels) AS j "
              "WHERE decisions.n_labels > 1 AND decisions.created_at >= :start AND j.key > 0 GROUP BY j.value",
    "postgresql": "SELECT e.value, count(*) FROM decisions, jsonb_array_elements_text(decisions.labels) "
                  "WITH ORDINALITY AS e(value, n) WHERE decisions.n_labels > 1 AND decisions.created_at >= :start "
                  "AND e.n > 1 GROUP BY e.value",
}
"""The second and further labels of multi-label decisions (the partial index ``ix_decisions_multilabel_created_at``)."""


def label_volume(store: Store, rng: Range, now: datetime) -> dict[str, int]:
    """Decisions per label over the range (every label of a multi-label decision counts; repeats count)."""
    start = range_start(rng, now)
    param = sa.bindparam("start", type_=_UTCDateTime())
    out: dict[str, int] = {}
    with store._read() as conn:
        for query in (_LABELS, _MORE_LABELS[store.backend]):
            for label, n in conn.execute(sa.text(query).bindparams(param), {"start": start}):
                if n:
                    out[label] = out.get(label, 0) + int(n)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(slots=True)
class Recall:
    support: int
    hits: int

    @property
    def recall(self) -> float:
        return self.hits / self.support if self.support else 0.0


def label_recall(store: Store, since: datetime) -> dict[str, Recall]:
    """Per-label recall from the latest feedback of each decision given since ``since``: of the
    decisions whose true labels include L, the share a model tier (not human review) answered with L."""
    f, d = _feedback, _decisions
    latest = sa.select(sa.func.max(f.c.id)).where(f.c.created_at >= since).group_by(f.c.decision_id).scalar_subquery()
    q = (sa.select(f.c.labels, d.c.labels.label("predicted"), d.c.tier).join(d, d.c.id == f.c.decision_id)
         .where(f.c.id.in_(latest)))
    out: dict[str, Recall] = {}
    with store._read() as conn:
        for true, predicted, tier in conn.execute(q):
            got = set(predicted or ()) if tier != "human" else set()
            for label in dict.fromkeys(true):
                r = out.setdefault(label, Recall(0, 0))
                r.support += 1
                r.hits += label in got
    return dict(sorted(out.items()))


@dataclass(slots=True)
class LLMSpend:
    """LLM calls and cost per UTC day, and the month's projected cost."""

    days: list[tuple[datetime, int, float]]
    """(day, calls, cost) for each of the last ``n`` days, oldest first."""
    month_to_date: float
    daily_rate: float
    """mean cost per day over the last 7 days (7 × 24 hours up to now)."""
    projection: float
    """month_to_date + daily_rate × the days left in the month."""


def llm_spend(store: Store, now: datetime, *, days: int = 30) -> LLMSpend:
    """LLM calls and cost per day for the last ``days`` UTC days and the monthly projection."""
    now = _utc(now)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - timedelta(days=days - 1)
    month_start = today.replace(day=1)
    week_ago = now - timedelta(days=7)
    since_hour = int(min(first_day, month_start, week_ago).timestamp()) // HOUR
    d = _decisions
    q = (sa.select(d.c.created_hour, sa.func.sum(d.c.llm_calls), sa.func.sum(d.c.cost_usd))
         .where(PAID, d.c.created_hour >= since_hour).group_by(d.c.created_hour))
    with store._read() as conn:
        rows = conn.execute(q).all()
    per_day: dict[int, list[float]] = {}
    mtd = week = 0.0
    week_hour = int(week_ago.timestamp()) / HOUR
    for hour, calls, cost in rows:
        hour_start = datetime.fromtimestamp(int(hour) * HOUR, timezone.utc)
        if hour_start > now:
            continue
        cost = float(cost or 0.0)
        day = per_day.setdefault(int(hour) // 24, [0, 0.0])
        day[0] += int(calls or 0)
        day[1] += cost
        if hour_start >= month_start:
            mtd += cost
        if int(hour) + 1 > week_hour:  # the hour overlaps the last 7 × 24 h
            week += cost
    out = []
    for i in range(days):
        day = first_day + timedelta(days=i)
        calls, cost = per_day.get(int(day.timestamp()) // 86400, [0, 0.0])
        out.append((day, int(calls), float(cost)))
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    rate = week / 7.0
    return LLMSpend(days=out, month_to_date=mtd, daily_rate=rate,
                    projection=mtd + rate * (next_month - now).total_seconds() / 86400)


# -- review queue ---------------------------------------------------------------------------------
AGE_EDGES: tuple[tuple[str, float], ...] = (("< 1 h", 1.0), ("1–4 h", 4.0), ("4–24 h", 24.0), ("≥ 24 h", float("inf")))


@dataclass(slots=True)
class QueueStats:
    depth: int
    oldest: datetime | None
    ages: dict[str, int]
    """pending items per age bucket (AGE_EDGES)."""
    overdue: int
    """pending items past their SLA."""


def queue_stats(store: Store, now: datetime, *, review_sla_minutes: int | None,
                label_sla_minutes: Mapping[str | None, int | None]) -> QueueStats:
    """Depth, oldest item, age buckets and SLA breaches of the pending review items, in one query.

    ``review_sla_minutes``: the SLA of items a model sent to human review (``reason == "human"``);
    ``label_sla_minutes``: the SLA of the other items (flagged, requires_human) by their first label
    (missing = no SLA). Per-message SLA caps from urgency signals are not applied here.
    """
    now = _utc(now)
    r, d = _reviews, _decisions
    ages = []
    lower = None
    for name, upper in AGE_EDGES:
        cond = [] if upper == float("inf") else [r.c.created_at > now - timedelta(hours=upper)]
        if lower is not None:
            cond.append(r.c.created_at <= now - timedelta(hours=lower))
        ages.append(sa.func.sum(sa.case((sa.and_(*cond) if cond else sa.true(), 1), else_=0)).label(name))
        lower = upper
    breach: list[Any] = []
    if review_sla_minutes is not None:
        breach.append((sa.and_(r.c.reason == "human", r.c.created_at < now - timedelta(minutes=review_sla_minutes)), 1))
    by_sla: dict[int, list[str]] = {}
    for label, minutes in label_sla_minutes.items():
        if minutes is not None and label is not None:
            by_sla.setdefault(minutes, []).append(label)
    for minutes, labels in sorted(by_sla.items()):
        breach.append((sa.and_(r.c.reason != "human", d.c.label.in_(labels),
                               r.c.created_at < now - timedelta(minutes=minutes)), 1))
    overdue = sa.func.sum(sa.case(*breach, else_=0)) if breach else sa.literal(0)
    q = (sa.select(sa.func.count(), sa.func.min(r.c.created_at), overdue, *ages)
         .select_from(r.join(d, d.c.id == r.c.decision_id)).where(r.c.status == "pending"))
    with store._read() as conn:
        row = conn.execute(q).one()
    oldest = row[1]
    if isinstance(oldest, str):  # SQLite: an aggregate loses the column type
        oldest = datetime.fromisoformat(oldest)
    return QueueStats(depth=int(row[0]), oldest=None if oldest is None else _utc(oldest), overdue=int(row[2] or 0),
                      ages={name: int(v or 0) for (name, _), v in zip(AGE_EDGES, row[3:])})


def latest_decisions(store: Store, *, limit: int, before: datetime | None = None,
                     after: datetime | None = None, oldest_first: bool = False) -> list[Decision]:
    """The ``limit`` newest decisions (created before ``before`` and at or after ``after``), returned
    oldest first when ``oldest_first`` — or the oldest ``limit`` of that span when ``oldest_first``."""
    d = _decisions
    order = (d.c.created_at, d.c.id) if oldest_first else (d.c.created_at.desc(), d.c.id.desc())
    q = sa.select(d.c.payload).order_by(*order).limit(limit)
    if before is not None:
        q = q.where(d.c.created_at < before)
    if after is not None:
        q = q.where(d.c.created_at >= after)
    with store._read() as conn:
        payloads: Iterable[str] = conn.scalars(q).all()
    out = [Decision.model_validate_json(p) for p in payloads]
    return out if oldest_first else out[::-1]


def next_pending(store: Store, created_at: datetime, decision_id: str) -> ReviewItem | None:
    """The pending review item after ``(created_at, decision_id)`` in queue order (oldest first);
    when there is none, the first pending item; None when the queue is empty."""
    r = _reviews
    base = (sa.select(r, _decisions.c.payload).join(_decisions, _decisions.c.id == r.c.decision_id)
            .where(r.c.status == "pending").order_by(r.c.created_at, r.c.decision_id).limit(1))
    after = sa.or_(r.c.created_at > created_at, sa.and_(r.c.created_at == created_at, r.c.decision_id > decision_id))
    with store._read() as conn:
        row = conn.execute(base.where(after)).first() or conn.execute(base).first()
    return None if row is None else store._review_item(row._mapping, row.payload)


def oldest_pending(store: Store) -> datetime | None:
    """When the oldest pending review item was created (None when the queue is empty)."""
    with store._read() as conn:
        oldest = conn.scalar(sa.select(sa.func.min(_reviews.c.created_at)).where(_reviews.c.status == "pending"))
    if isinstance(oldest, str):  # SQLite: an aggregate loses the column type
        oldest = datetime.fromisoformat(oldest)
    return None if oldest is None else _utc(oldest)
