"""The console's store side, on SQLite and PostgreSQL: migration 0002 and its backfill, the dashboard's
aggregates (checked against the same numbers computed in Python from the decisions), decision search,
undoable reviews and browser sessions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from console_fixtures import LABELS, corpus
from test_store import HEAD
from frontdesk.loop.discovery import candidates_from_store
from frontdesk.loop.drift.signals import is_escalated, is_unknown, primary_confidence
from frontdesk.store import queries
from frontdesk.store.sessions import Sessions
from frontdesk.store.store import Store, StoreError, _stat_columns, _UTCDateTime
from frontdesk.types import Decision, TierTrace

NOW = datetime(2025, 3, 20, 12, 34, 56, tzinfo=timezone.utc)
UNKNOWN = ["oos", "unknown"]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as s:
        yield s


@pytest.fixture
def seeded(store: Store) -> tuple[Store, list[Decision]]:
    decisions = corpus(NOW)
    store.save_decisions(decisions)
    return store, decisions


# -- migration ------------------------------------------------------------------------------------
def test_migration_0002_backfills_rows_written_under_0001(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    decisions = corpus(NOW, n=60)
    engine = sa.create_engine(store_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", "frontdesk.store:migrations")
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        old = sa.table("decisions", sa.column("id"), sa.column("created_at", _UTCDateTime()),
                       sa.column("stored_at", _UTCDateTime()), sa.column("tier"), sa.column("tier_kind"),
                       sa.column("labels", sa.JSON()), sa.column("confidence"), sa.column("escalated"),
                       sa.column("flagged"), sa.column("payload"))
        with engine.begin() as conn:
            conn.execute(sa.insert(old), [{"id": d.id, "created_at": d.created_at, "stored_at": NOW, "tier": d.tier,
                                           "tier_kind": None, "labels": d.labels, "confidence": d.confidence,
                                           "escalated": d.escalated, "flagged": d.flagged,
                                           "payload": d.model_dump_json()} for d in decisions])
    finally:
        engine.dispose()
    with Store(store_url) as s:  # opening migrates 0001 → 0002 (backfill) → … → head
        assert s.revision() == HEAD
        columns = ["created_hour", "label", "n_labels", "primary_confidence", "llm_calls", "cost_usd", "duplicate"]
        with s._read() as conn:
            rows = {r.id: r for r in conn.execute(sa.text(f"SELECT id, {', '.join(columns)} FROM decisions"))}
        for d in decisions:
            want = _stat_columns(d)
            got = {c: getattr(rows[d.id], c) for c in columns}
            got["duplicate"] = bool(got["duplicate"])  # SQLite: 0/1 through a text query
            assert got == pytest.approx(want), d.id
        assert s.get_decision(decisions[0].id) == decisions[0]
        # the rest of the store works on the migrated database
        assert queries.traffic(s, queries.RANGES["24h"], NOW)[1].n == sum(
            1 for d in decisions if d.created_at >= queries.range_start(queries.RANGES["24h"], NOW))


def test_sqlite_aggregates_read_the_covering_index(tmp_path) -> None:  # noqa: ANN001
    with Store(tmp_path / "s.db") as s:
        s.save_decisions(corpus(NOW, n=30))
        with s._read() as conn:
            q = sa.select(sa.text("created_hour, tier, count(*)")).select_from(sa.table("decisions")).where(
                sa.text("created_hour >= 1")).group_by(sa.text("created_hour, tier"))
            plan = " ".join(str(r[-1]) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + str(q.compile(
                compile_kwargs={"literal_binds": True})))))
    assert "COVERING INDEX ix_decisions_hourly" in plan and "TEMP B-TREE" not in plan, plan


# -- the dashboard's aggregates vs Python over the same decisions ----------------------------------
def expected_buckets(decisions: list[Decision], rng: queries.Range, now: datetime) -> list[dict]:
    first = (int(now.timestamp()) // rng.bucket_s - rng.n + 1) * rng.bucket_s
    out = [{"n": 0, "tiers": Counter(), "dup": 0, "esc": 0, "unk": 0, "csum": 0.0, "cn": 0, "llm": 0, "cost": 0.0}
           for _ in range(rng.n)]
    for d in decisions:
        offset = int(d.created_at.timestamp()) - first
        if offset < 0 or offset // rng.bucket_s >= rng.n:
            continue
        b = out[offset // rng.bucket_s]
        b["n"] += 1
        b["tiers"][d.tier] += 1
        b["cost"] += d.cost_usd
        if d.duplicate_of:
            b["dup"] += 1
            continue
        b["esc"] += is_escalated(d)
        b["unk"] += is_unknown(d, UNKNOWN)
        c = primary_confidence(d)
        if c is not None:
            b["csum"] += c
            b["cn"] += 1
        b["llm"] += sum(1 for t in d.trace if t.kind == "llm")
    return out


@pytest.mark.parametrize("name", list(queries.RANGES))
def test_traffic_per_bucket_matches_the_decisions(seeded: tuple[Store, list[Decision]], name: str) -> None:
    store, decisions = seeded
    rng = queries.RANGES[name]
    buckets, total = queries.traffic(store, rng, NOW, unknown_labels=UNKNOWN)
    want = expected_buckets(decisions, rng, NOW)
    assert len(buckets) == rng.n and sum(w["n"] for w in want) == total.n > 0
    for got, exp in zip(buckets, want):
        assert (got.n, dict(got.tiers), got.duplicates, got.escalated, got.unknown, got.confidence_n, got.llm_calls) == (
            exp["n"], {k: v for k, v in exp["tiers"].items()}, exp["dup"], exp["esc"], exp["unk"], exp["cn"], exp["llm"])
        assert got.confidence_sum == pytest.approx(exp["csum"]) and got.cost_usd == pytest.approx(exp["cost"])
    assert buckets[-1].start <= NOW < buckets[-1].start + timedelta(seconds=rng.bucket_s)
    rated = total.n - total.duplicates
    assert total.escalation_rate == pytest.approx(sum(w["esc"] for w in want) / rated)
    assert total.unknown_rate == pytest.approx(sum(w["unk"] for w in want) / rated)


def test_count_human_as_unknown(seeded: tuple[Store, list[Decision]]) -> None:
    store, decisions = seeded
    rng = queries.RANGES["30d"]
    _, total = queries.traffic(store, rng, NOW, unknown_labels=UNKNOWN, count_human_as_unknown=True)
    assert total.unknown == sum(1 for d in decisions if not d.duplicate_of
                                and is_unknown(d, UNKNOWN, count_human_as_unknown=True))


def test_label_volume_counts_every_label(seeded: tuple[Store, list[Decision]]) -> None:
    store, decisions = seeded
    for name in ("1h", "24h", "30d"):
        rng = queries.RANGES[name]
        start = queries.range_start(rng, NOW)
        want = Counter(label for d in decisions if d.created_at >= start for label in d.labels)
        assert queries.label_volume(store, rng, NOW) == dict(want), name


def test_label_recall_uses_the_latest_feedback(seeded: tuple[Store, list[Decision]]) -> None:
    store, decisions = seeded
    linear = [d for d in decisions if d.tier == "linear" and len(d.labels) == 1 and not d.duplicate_of][:6]
    human = next(d for d in decisions if d.tier == "human" and d.labels)
    store.add_feedback(linear[0].id, [linear[0].labels[0]])                  # right
    store.add_feedback(linear[1].id, ["refund_request"])                     # then corrected: the latest counts
    store.add_feedback(linear[1].id, [linear[1].labels[0]])
    store.add_feedback(linear[2].id, ["refund_request", linear[2].labels[0]])  # multi: one hit, one miss
    store.add_feedback(human.id, [human.labels[0]])                          # human review never counts as recalled
    got = queries.label_recall(store, NOW - timedelta(days=1))
    want: dict[str, list[int]] = {}
    for d, true in ((linear[0], [linear[0].labels[0]]), (linear[1], [linear[1].labels[0]]),
                    (linear[2], ["refund_request", linear[2].labels[0]]), (human, [human.labels[0]])):
        for label in dict.fromkeys(true):
            w = want.setdefault(label, [0, 0])
            w[0] += 1
            w[1] += label in d.labels and d.tier != "human"
    assert {k: (v.support, v.hits) for k, v in got.items()} == {k: tuple(v) for k, v in want.items()}


def test_llm_spend_per_day_and_projection(store: Store) -> None:
    now = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)
    costs = {0: 0.5, 1: 1.0, 3: 2.0, 8: 4.0, 25: 8.0, 40: 16.0}  # days ago → cost of one LLM decision
    ds = []
    for days_ago, cost in costs.items():
        ds.append(Decision(text=f"llm {days_ago}", labels=["billing_issue"], confidence=0.9, tier="llm", escalated=True,
                           flagged=False, cost_usd=cost, created_at=now - timedelta(days=days_ago, minutes=5),
                           trace=[TierTrace(tier="llm", kind="llm", verdict="accept", cost_usd=cost)]))
    ds.append(Decision(text="cheap", labels=["billing_issue"], confidence=0.9, tier="linear", escalated=False,
                       flagged=False, created_at=now - timedelta(hours=1)))
    store.save_decisions(ds)
    spend = queries.llm_spend(store, now)
    assert len(spend.days) == 30 and spend.days[-1][0] == datetime(2025, 3, 20, tzinfo=timezone.utc)
    by_day = {d: (n, c) for d, n, c in spend.days}
    for days_ago, cost in costs.items():
        day = (now - timedelta(days=days_ago, minutes=5)).replace(hour=0, minute=0, second=0, microsecond=0)
        if days_ago < 30:
            assert by_day[day] == (1, pytest.approx(cost)), days_ago
    assert sum(n for n, _ in by_day.values()) == 5
    assert spend.month_to_date == pytest.approx(0.5 + 1.0 + 2.0 + 4.0)  # March 1st onwards
    assert spend.daily_rate == pytest.approx((0.5 + 1.0 + 2.0) / 7)     # the last 7 × 24 h
    left = (datetime(2025, 4, 1, tzinfo=timezone.utc) - now).total_seconds() / 86400
    assert spend.projection == pytest.approx(7.5 + (3.5 / 7) * left)


def test_queue_stats_ages_and_sla_breaches(store: Store) -> None:
    now = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)

    def pending(minutes_old: float, *, human: bool, label: str | None) -> Decision:
        return Decision(text=f"{minutes_old} {human} {label}", labels=[label] if label else [], confidence=0.5,
                        tier="human" if human else "linear", escalated=human, flagged=True,
                        created_at=now - timedelta(minutes=minutes_old))

    items = [pending(10, human=True, label="billing_issue"), pending(300, human=True, label=None),   # review SLA 240
             pending(45, human=False, label="refund_request"), pending(20, human=False, label="refund_request"),  # SLA 30
             pending(2000, human=False, label="billing_issue"),  # flagged, no SLA
             pending(90, human=True, label="refund_request")]
    store.save_decisions(items)
    store.resolve_review(items[-1].id, ["refund_request"], reviewer="ana")  # resolved: not counted
    stats = queries.queue_stats(store, now, review_sla_minutes=240, label_sla_minutes={"refund_request": 30,
                                                                                       "billing_issue": None})
    assert stats.depth == 5 and stats.oldest == items[4].created_at
    assert stats.ages == {"< 1 h": 3, "1–4 h": 0, "4–24 h": 1, "≥ 24 h": 1}
    assert stats.overdue == 2  # the 300-minute human item and the 45-minute refund
    assert queries.oldest_pending(store) == items[4].created_at
    assert queries.queue_stats(store, now, review_sla_minutes=None, label_sla_minutes={}).overdue == 0


# -- search, review items, discovery candidates ------------------------------------------------------
def test_search_decisions_by_every_filter(seeded: tuple[Store, list[Decision]]) -> None:
    store, decisions = seeded
    newest_first = sorted(decisions, key=lambda d: (d.created_at, d.id), reverse=True)

    def ids(flt: queries.DecisionFilter, limit: int = 500) -> list[str]:
        hits, _more = queries.search_decisions(store, flt, limit=limit)
        return [h.decision.id for h in hits]

    assert ids(queries.DecisionFilter()) == [d.id for d in newest_first]
    target = decisions[17]
    assert ids(queries.DecisionFilter(id=target.id)) == [target.id]
    assert ids(queries.DecisionFilter(id=target.id[:8])) == [d.id for d in newest_first if d.id.startswith(target.id[:8])]
    assert ids(queries.DecisionFilter(id=target.id[:3])) == []  # short ids must match exactly
    assert ids(queries.DecisionFilter(sender="user2")) == [d.id for d in newest_first if d.message.sender == "user2"]
    second = next(d for d in decisions if len(d.labels) > 1)
    want = [d.id for d in newest_first if second.labels[1] in d.labels]
    assert second.id in want and ids(queries.DecisionFilter(label=second.labels[1])) == want
    assert ids(queries.DecisionFilter(tier="llm")) == [d.id for d in newest_first if d.tier == "llm"]
    since, until = NOW - timedelta(hours=5), NOW - timedelta(hours=2)
    assert ids(queries.DecisionFilter(since=since, until=until)) == [
        d.id for d in newest_first if since <= d.created_at < until]
    store.add_feedback(decisions[3].id, ["billing_issue"])
    store.add_feedback(decisions[9].id, ["refund_request"])
    assert ids(queries.DecisionFilter(reviewed=True)) == [decisions[3].id, decisions[9].id]
    assert len(ids(queries.DecisionFilter(reviewed=False))) == len(decisions) - 2
    both = queries.DecisionFilter(tier="linear", sender="user0", reviewed=False)
    assert ids(both) == [d.id for d in newest_first if d.tier == "linear" and d.message.sender == "user0"
                         and d.id not in (decisions[3].id, decisions[9].id)]
    page1, more = queries.search_decisions(store, queries.DecisionFilter(), limit=50)
    page2, _ = queries.search_decisions(store, queries.DecisionFilter(), limit=50, offset=50)
    assert more and [h.decision.id for h in page1 + page2] == [d.id for d in newest_first[:100]]
    assert {h.decision.id: h.reviewed for h in page1 + page2 if h.reviewed} == {
        i: True for i in (decisions[3].id, decisions[9].id) if i in {d.id for d in newest_first[:100]}}


def test_review_item_and_next_pending(seeded: tuple[Store, list[Decision]]) -> None:
    store, decisions = seeded
    queue = store.review_queue(limit=1000)
    assert len(queue) >= 3
    a, b, c = queue[0], queue[1], queue[2]
    assert store.review_item(b.decision_id) == b
    assert store.review_item("no-such-id") is None
    assert queries.next_pending(store, a.created_at, a.decision_id).decision_id == b.decision_id
    store.resolve_review(b.decision_id, ["billing_issue"], reviewer="ana")
    assert queries.next_pending(store, a.created_at, a.decision_id).decision_id == c.decision_id
    last = queue[-1]
    assert queries.next_pending(store, last.created_at, last.decision_id).decision_id == a.decision_id  # wraps


def test_discovery_candidates_match_the_loop_s_selection(seeded: tuple[Store, list[Decision]]) -> None:
    store, _ = seeded
    for limit in (10, 2000):
        want = [d.id for d in candidates_from_store(store, limit=limit)]
        assert [d.id for d in queries.discovery_candidates(store, limit=limit)] == want


# -- undoable reviews, notes, feedback in bulk ------------------------------------------------------
def test_resolve_records_the_note_and_undo_takes_it_back(seeded: tuple[Store, list[Decision]]) -> None:
    store, _ = seeded
    item = store.review_queue(limit=1)[0]
    done = store.resolve_review(item.decision_id, ["billing_issue"], reviewer="ana", note="customer called")
    assert done.status == "resolved" and done.reviewer == "ana"
    [fb] = store.feedback(decision_id=item.decision_id)
    assert (fb.source, fb.actor, fb.note, fb.labels) == ("review", "ana", "customer called", ["billing_issue"])
    with pytest.raises(StoreError, match="resolved by ana, not ben"):
        store.undo_review(item.decision_id, reviewer="ben", within_s=60)
    back = store.undo_review(item.decision_id, reviewer="ana", within_s=60)
    assert back.status == "pending" and back.reviewer is None and back.labels is None
    assert store.feedback(decision_id=item.decision_id) == []
    assert store.review_item(item.decision_id).status == "pending"
    with pytest.raises(StoreError, match="not resolved"):
        store.undo_review(item.decision_id, reviewer="ana", within_s=60)
    store.resolve_review(item.decision_id, ["refund_request"], reviewer="ana")  # resolvable again
    with pytest.raises(StoreError, match="possible for 0 s only"):
        store.undo_review(item.decision_id, reviewer="ana", within_s=0)
    assert [f.labels for f in store.feedback(decision_id=item.decision_id)] == [["refund_request"]]
    with pytest.raises(StoreError, match="already resolved by ana"):
        store.resolve_review(item.decision_id, ["billing_issue"], reviewer="ben")


def test_add_feedback_many_is_all_or_nothing(seeded: tuple[Store, list[Decision]]) -> None:
    store, decisions = seeded
    ids = [d.id for d in decisions[:4]]
    with pytest.raises(StoreError, match="no decision with id 'nope'"):
        store.add_feedback_many([*ids, "nope"], ["new_intent_x"], actor="ana")
    assert store.feedback() == []
    written = store.add_feedback_many([*ids, ids[0]], ["new_intent_x"], actor="ana", note="cluster 1")
    assert [f.decision_id for f in written] == ids
    assert all(f.labels == ["new_intent_x"] and f.note == "cluster 1" for f in store.feedback())


# -- sessions ---------------------------------------------------------------------------------------
def test_sessions_are_stored_hashed_and_expire(store: Store) -> None:
    sessions = Sessions(store)
    token, session = sessions.create(key_name="ana", key_sha256="a" * 64, ttl_s=600)
    got = sessions.get(token)
    assert got is not None and got.key_name == "ana" and got.csrf == session.csrf and len(session.csrf) >= 32
    with store._read() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT id, csrf FROM console_sessions"))]
    assert token not in str(stored) and len(stored) == 1  # only the token's hash is stored
    assert sessions.get(token + "x") is None and sessions.get(None) is None and sessions.get("x" * 500) is None
    sessions.delete(token)
    assert sessions.get(token) is None
    old, _ = sessions.create(key_name="ana", key_sha256="a" * 64, ttl_s=-1)
    assert sessions.get(old) is None  # expired
    sessions.create(key_name="ben", key_sha256="b" * 64, ttl_s=600)  # purges the expired one
    with store._read() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM console_sessions")) == 1


def test_corpus_covers_every_kind(seeded: tuple[Store, list[Decision]]) -> None:
    """The synthetic corpus the aggregate tests use has every case they are meant to cover."""
    _, decisions = seeded
    assert {d.tier for d in decisions} == {"guardrails", "linear", "llm", "human"}
    assert any(d.duplicate_of for d in decisions) and any(len(d.labels) > 1 for d in decisions)
    assert any(d.tier == "human" and not d.labels for d in decisions) and any(d.labels == ["unknown"] for d in decisions)
    assert any(t.verdict == "error" and t.kind == "llm" for d in decisions for t in d.trace)
    assert set(LABELS) <= {label for d in decisions for label in d.labels}


# -- the dashboard's drift view and review-item urgency ---------------------------------------------
def test_store_drift_windows_and_baselines(store: Store) -> None:
    from frontdesk.loop.drift import DriftConfig
    from frontdesk.server.console.dashboard import store_drift

    decisions = sorted(corpus(NOW, n=240), key=lambda d: (d.created_at, d.id))
    store.save_decisions(decisions)
    since = NOW - timedelta(days=2)
    cfg = DriftConfig(window=100, min_window=50, baseline_size=80, unknown_rate_alert=0.05)
    big = store_drift(store, cfg, since=since, now=NOW, labels=LABELS, primary_tier="linear")
    newest = [d for d in decisions[-100:] if not d.duplicate_of]
    assert big.window == 100 and big.snapshot.n == len(newest)
    assert big.snapshot.unknown_rate == pytest.approx(sum(is_unknown(d, UNKNOWN) for d in newest) / len(newest))
    assert big.snapshot.baseline.n == sum(1 for d in decisions[:80] if not d.duplicate_of)
    assert "unknown_rate" in {a.kind for a in big.alerts}  # 10 % of the corpus is 'unknown' > 5 %
    small = store_drift(store, cfg.model_copy(update={"window": 200, "baseline_size": 200}), since=since, now=NOW,
                        labels=LABELS, primary_tier="linear")  # 240 < 400: halves of 120
    assert small.window == 120 and small.snapshot.baseline.n == sum(1 for d in decisions[:120] if not d.duplicate_of)
    tiny = store_drift(store, cfg.model_copy(update={"window": 200, "baseline_size": 200, "min_window": 150}),
                       since=since, now=NOW, labels=LABELS, primary_tier="linear")
    assert tiny.window == 200 and tiny.snapshot.baseline is None and tiny.baseline_source is None
    empty = store_drift(store, cfg, since=NOW + timedelta(days=1), now=NOW + timedelta(days=2), labels=LABELS,
                        primary_tier="linear")
    assert empty.snapshot is None and empty.window == 0


def test_urgency_follows_the_routing_targets(seeded: tuple[Store, list[Decision]]) -> None:
    from frontdesk.routing.targets import LabelTarget, QueueRoute, TargetsConfig
    from frontdesk.server.console.dashboard import urgency

    store, _ = seeded
    targets = TargetsConfig(labels={"refund_request": LabelTarget(queue=QueueRoute(queue="billing", priority=1,
                                                                                    sla_minutes=30))},
                            review_queue=QueueRoute(queue="human-review", priority=2, sla_minutes=240))
    items = store.review_queue(limit=1000)
    human = next(i for i in items if i.reason == "human")
    u = urgency(targets, human)
    assert (u.queue, u.priority, u.due_at) == ("human-review", 2, human.created_at + timedelta(minutes=240))
    flagged = [i for i in items if i.reason == "flagged"]
    refund = next(i for i in flagged if i.decision.labels[0] == "refund_request")
    assert urgency(targets, refund) == type(u)("billing", 1, refund.created_at + timedelta(minutes=30))
    other = next(i for i in flagged if "refund_request" not in i.decision.labels)
    assert urgency(targets, other) == type(u)("triage", 3, None)  # the default queue has no SLA
