"""The durable store: every decision, every piece of feedback and the human-review queue.

``Store("sqlite:///frontdesk.db")`` (the default, embedded) or
``Store("postgresql+psycopg://user:pw@host/db")`` (shared, via psycopg 3). Opening a store runs the
schema migrations (Alembic, ``frontdesk/migrations``) up to the newest revision, under a lock so
that any number of processes may open the same database at once.

Every write method commits before it returns: a decision counts as acknowledged only once
``save_decision`` has returned, and then it survives the writing process being killed (``kill -9``).
On SQLite the database runs in WAL mode with ``synchronous=FULL`` by default, so the WAL is
fsync'ed at each commit and an acknowledged write also survives an OS crash or power loss;
``synchronous="NORMAL"`` is faster and still survives any *process* crash, but the last commits
before an OS crash may be lost. On PostgreSQL a commit returns after the server has flushed its
WAL (``synchronous_commit=on``, the server default).

Each decision is stored verbatim (its ``model_dump_json()``, so ``get_decision`` returns an equal
Decision, trace included) next to the columns queries filter on: ``created_at``, ``tier``, the
answering tier's ``kind``, ``labels``, ``confidence``, ``escalated``, ``flagged``, ``language``,
``sender``, ``channel``. Decisions are immutable: saving the same decision again is a no-op,
saving a *different* decision under an existing id is an error. A decision that needs a human
(``tier == "human"``, ``flagged`` or ``requires_human``) also gets a pending review item, in the same
transaction, and so do the decision's planned actions (the ``actions`` table). Actions change state
after the decision is stored (run, approved, failed): :meth:`Store.get_decision` and the other
readers return ``Decision.actions`` as the ``actions`` table has them now. The store is also the
:class:`~frontdesk.routing.actions.ActionLedger` of the service (claim → run → finish, at most once).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, NoSuchModuleError, OperationalError

from frontdesk.common.textkey import text_key
from frontdesk.errors import ConfigError, FrontdeskError
from frontdesk.types import ActionResult, ActionStatus, Decision, TierTrace

DEFAULT_URL = "sqlite:///frontdesk.db"
SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for another writer's lock before giving up."""
_PG_MIGRATION_LOCK = 0x66726F6E74  # advisory-lock key ("front"): serialises concurrent migrators
_CHUNK = 500  # ids per IN (...) clause
_ALEMBIC_LOCK = threading.Lock()
"""Alembic keeps its migration context in module globals: one migration run per process at a time."""

ReviewStatus = Literal["pending", "resolved"]
ReviewReason = Literal["human", "flagged", "requires_human"]


class StoreError(FrontdeskError):
    """The store cannot do what was asked: an unknown decision, a review resolved twice, a database
    that cannot be opened or written. ``decision_id`` names the decision concerned, when there is one.

    A write that raises StoreError was not committed: nothing of it is stored.
    """

    def __init__(self, message: str, *, decision_id: str | None = None) -> None:
        super().__init__(message)
        self.decision_id = decision_id


class Feedback(BaseModel):
    """Corrected labels for one decision, from a user (``source="feedback"``) or a reviewer (``"review"``)."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="store-assigned, increasing in insertion order")
    decision_id: str
    labels: list[str]
    source: str = "feedback"
    actor: str | None = Field(None, description="who gave it (user id, reviewer name)")
    note: str | None = None
    created_at: datetime


class ReviewItem(BaseModel):
    """A decision waiting for (or given) a human's labels. ``labels`` and ``reviewer`` are set once resolved."""

    model_config = ConfigDict(frozen=True)

    decision_id: str
    status: ReviewStatus
    reason: ReviewReason = Field(description="'human': no tier was confident; 'flagged': accepted in the review band; "
                                 "'requires_human': a policy (sentiment, guardrail) wants a person before any action")
    created_at: datetime = Field(description="the decision's created_at (the queue is oldest first)")
    resolved_at: datetime | None = None
    reviewer: str | None = None
    labels: list[str] | None = None
    decision: Decision


# -- schema (mirrors migrations/versions; the migrations are what create it) -----------------------
class _UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps in UTC on every backend; naive datetimes are taken to be UTC.

    SQLite has no time-zone type, so values are converted to UTC before writing (their text then
    sorts chronologically) and marked UTC when read back; PostgreSQL keeps ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _utc(value)


_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_meta = sa.MetaData()
_decisions = sa.Table(
    "decisions", _meta,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("created_at", _UTCDateTime(), nullable=False),
    sa.Column("stored_at", _UTCDateTime(), nullable=False),
    sa.Column("tier", sa.String(), nullable=False),
    sa.Column("tier_kind", sa.String()),
    sa.Column("labels", _JSON, nullable=False),
    sa.Column("confidence", sa.Float(), nullable=False),
    sa.Column("escalated", sa.Boolean(), nullable=False),
    sa.Column("flagged", sa.Boolean(), nullable=False),
    sa.Column("language", sa.String()),
    sa.Column("sender", sa.String()),
    sa.Column("channel", sa.String()),
    sa.Column("payload", sa.Text(), nullable=False),
    # aggregate columns (revision 0002): what the console's dashboard sums, see _stat_columns
    sa.Column("created_hour", sa.Integer()),
    sa.Column("label", sa.String()),
    sa.Column("n_labels", sa.Integer(), nullable=False),
    sa.Column("primary_confidence", sa.Float()),
    sa.Column("llm_calls", sa.Integer(), nullable=False),
    sa.Column("cost_usd", sa.Float(), nullable=False),
    sa.Column("duplicate", sa.Boolean(), nullable=False),
)
_feedback = sa.Table(
    "feedback", _meta,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.String(), sa.ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("labels", _JSON, nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("actor", sa.String()),
    sa.Column("note", sa.Text()),
    sa.Column("created_at", _UTCDateTime(), nullable=False),
)
_reviews = sa.Table(
    "review_items", _meta,
    sa.Column("decision_id", sa.String(), sa.ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("created_at", _UTCDateTime(), nullable=False),
    sa.Column("resolved_at", _UTCDateTime()),
    sa.Column("reviewer", sa.String()),
    sa.Column("labels", _JSON),
    sa.Column("feedback_id", sa.Integer()),
)
_actions = sa.Table(
    "actions", _meta,
    sa.Column("decision_id", sa.String(), sa.ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("label", sa.String()),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("result", _JSON),
    sa.Column("error", sa.Text()),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("claimed_at", _UTCDateTime()),
    sa.Column("updated_at", _UTCDateTime(), nullable=False),
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]




def _action_row(decision_id: str, action: ActionResult, now: datetime) -> dict[str, Any]:
    return {"decision_id": decision_id, "name": action.name, "label": action.label, "status": action.status,
            "reason": action.reason, "result": action.result, "error": action.error, "attempts": action.attempts,
            "claimed_at": None, "updated_at": action.updated_at or now}


def _action_result(row: Any) -> ActionResult:
    return ActionResult(name=row.name, label=row.label, status=row.status, reason=row.reason or "", result=row.result,
                        error=row.error, attempts=row.attempts, updated_at=row.updated_at)


def _answering_trace(decision: Decision) -> TierTrace | None:
    """The trace entry of the tier that produced ``decision.labels`` (the last one with its name)."""
    for entry in reversed(decision.trace):
        if entry.tier == decision.tier:
            return entry
    return None


def _stat_columns(decision: Decision) -> dict[str, Any]:
    """The aggregate columns of a decision (revision 0002): its UTC epoch hour, first label, number of
    labels, first model tier's confidence, LLM calls (none for a repeat: its trace is the earlier
    decision's), cost and whether it repeats an earlier one."""
    from frontdesk.loop.drift.signals import primary_confidence

    return {"created_hour": int(_utc(decision.created_at).timestamp()) // 3600,
            "label": decision.labels[0] if decision.labels else None, "n_labels": len(decision.labels),
            "primary_confidence": primary_confidence(decision),
            "llm_calls": 0 if decision.duplicate_of else sum(1 for t in decision.trace if t.role == "llm"),
            "cost_usd": decision.cost_usd,
            "duplicate": decision.duplicate_of is not None}


def _locked_review(conn: sa.Connection, decision_id: str) -> Any:
    """The review row of a decision with its payload, locked for the transaction (None: it has none)."""
    return conn.execute(
        sa.select(_reviews, _decisions.c.payload)
        .join(_decisions, _decisions.c.id == _reviews.c.decision_id)
        .where(_reviews.c.decision_id == decision_id).with_for_update(of=_reviews)
    ).first()


def _check_labels(labels: Sequence[str], decision_id: str) -> list[str]:
    if isinstance(labels, str) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise StoreError(
            f"labels for decision {decision_id!r} must be a non-empty list of non-empty strings, got {labels!r}",
            decision_id=decision_id,
        )
    return list(labels)


def _redacted(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _normalise_url(url: str | os.PathLike[str]) -> URL:
    """A SQLAlchemy URL; a bare path means a SQLite file, ``postgresql://`` means psycopg 3."""
    if isinstance(url, os.PathLike) or "://" not in str(url):
        return URL.create("sqlite", database=str(Path(url).expanduser()))
    text = str(url)
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"cannot parse store URL {text!r}: use sqlite:///path/to/frontdesk.db or "
                         "postgresql+psycopg://user:password@host/dbname") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported store backend {parsed.get_backend_name()!r} in {_redacted(parsed)}: "
                         "use sqlite:///path/to/frontdesk.db or postgresql+psycopg://user:password@host/dbname")
    return parsed


class Store:
    """Durable storage of decisions, feedback and review items (SQLite file or PostgreSQL).

    Thread-safe: one Store may be shared by the threads of a service (each call takes a pooled
    connection), and several Stores or processes may use the same database at once (SQLite
    serialises writers with ``BEGIN IMMEDIATE`` and a busy timeout). Use as a context manager,
    or call :meth:`close`.

    ``synchronous`` (SQLite only): ``"FULL"`` (default) fsyncs the WAL at every commit, so an
    acknowledged write survives a power loss; ``"NORMAL"`` survives a crash of the process but
    not of the OS, and commits faster. ``busy_timeout_s`` (SQLite only): how long a write waits
    for another connection's write lock before it fails with StoreError (a service answers 503).
    """

    def __init__(self, url: str | os.PathLike[str] = DEFAULT_URL, *,
                 synchronous: Literal["FULL", "NORMAL"] = "FULL", busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}", field="synchronous")
        if not busy_timeout_s > 0:
            raise ConfigError(f"busy_timeout_s must be > 0, got {busy_timeout_s!r}", field="busy_timeout_s")
        self.busy_timeout_s = float(busy_timeout_s)
        """SQLite: how long a write waits for another writer's lock before StoreError (nothing written)."""
        self._url = _normalise_url(url)
        self.url = _redacted(self._url)
        """The database URL, password hidden."""
        self.backend: Literal["sqlite", "postgresql"] = "sqlite" if self._url.get_backend_name() == "sqlite" else "postgresql"
        self._closed = False
        # An in-memory SQLite database lives in one connection: serialise its users.
        self._memory_lock: threading.RLock | None = None
        self._engine = self._create_engine(synchronous)
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    # -- opening ---------------------------------------------------------------------------------
    def _create_engine(self, synchronous: str) -> Engine:
        try:
            if self.backend == "sqlite":
                return self._create_sqlite_engine(synchronous)
            return sa.create_engine(self._url, pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"no database driver for {self.url}: for PostgreSQL run "
                             "pip install 'psycopg[binary]' and use a postgresql+psycopg:// URL") from exc

    def _create_sqlite_engine(self, synchronous: str) -> Engine:
        database = self._url.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": self.busy_timeout_s, "check_same_thread": False}}
        if memory:
            self._memory_lock = threading.RLock()
            kwargs["poolclass"] = sa.pool.StaticPool
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(self._url, **kwargs)
        busy_ms = max(1, int(self.busy_timeout_s * 1000))

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (see _begin).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cur.execute("PRAGMA foreign_keys = ON")
                mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if not memory and str(mode).lower() != "wal":
                    raise StoreError(f"{self.url}: SQLite refused WAL mode (journal_mode={mode}); put the database "
                                     "on a local file system, not a network share")
                cur.execute(f"PRAGMA synchronous = {synchronous}")
            finally:
                cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the write lock up front (BEGIN IMMEDIATE): they then queue on the busy
            # timeout instead of failing when a read snapshot cannot be upgraded to a write.
            write = conn.get_execution_options().get("frontdesk_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _migrate(self) -> None:
        """Bring the schema to the newest revision, holding the migration lock (see migrations/env.py).

        Across processes the database lock serialises migrators (SQLite: the write lock of
        ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock); within a process a threading lock does,
        since Alembic's migration context is process-global. Whoever comes second finds the schema
        at head and has nothing to do.
        """
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        cfg = Config()
        cfg.set_main_option("script_location", "frontdesk.store:migrations")
        try:
            with _ALEMBIC_LOCK, self._write() as conn:
                if self.backend == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except CommandError as exc:
            raise StoreError(f"cannot migrate {self.url}: {exc} (a database written by a newer frontdesk? "
                             "upgrade frontdesk, or point the store at another database)") from exc

    # -- transactions ----------------------------------------------------------------------------
    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        if self._closed:
            raise StoreError(f"the store {self.url} is closed: open a new Store")
        lock = self._memory_lock
        if lock is not None:
            lock.acquire()
        try:
            engine = self._engine.execution_options(frontdesk_write=True) if write else self._engine
            with engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            done = "nothing was written; " if write else ""
            raise StoreError(f"database error on {self.url}: {exc.orig or exc} — {done}retry once the database is "
                             "reachable and not locked by a long-running transaction") from exc
        finally:
            if lock is not None:
                lock.release()

    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE), committed when the block ends without error."""
        return self._connect(write=True)

    def _read(self) -> AbstractContextManager[Connection]:
        """A read transaction: one consistent snapshot for the block."""
        return self._connect(write=False)

    # -- decisions -------------------------------------------------------------------------------
    def save_decision(self, decision: Decision) -> None:
        """Store one decision (and its review item when it needs a human); committed on return."""
        self.save_decisions([decision])

    def save_decisions(self, decisions: Iterable[Decision]) -> None:
        """Store several decisions in one transaction: all of them are committed on return, or none.

        A decision already stored with the same content is skipped (retries are safe); a different
        decision under an existing id raises StoreError.
        """
        batch: dict[str, tuple[Decision, str]] = {}
        for d in decisions:
            if not isinstance(d, Decision):
                raise StoreError(f"save_decisions takes Decision objects, got {type(d).__name__}")
            payload = d.model_dump_json()
            seen = batch.get(d.id)
            if seen is not None and seen[1] != payload:
                raise StoreError(f"two different decisions share the id {d.id!r} in one batch: give each its own id",
                                 decision_id=d.id)
            batch[d.id] = (d, payload)
        if not batch:
            return
        for attempt in (1, 2):
            try:
                with self._write() as conn:
                    self._insert_decisions(conn, batch)
                return
            except IntegrityError as exc:
                # A concurrent writer stored one of these ids between our check and our insert
                # (PostgreSQL only: SQLite writers are serialised). The retry sees it and skips it.
                if attempt == 2:
                    raise StoreError(f"could not save {len(batch)} decision(s): {exc.orig or exc}") from exc

    def _insert_decisions(self, conn: Connection, batch: dict[str, tuple[Decision, str]]) -> None:
        ids = list(batch)
        existing: dict[str, str] = {}
        for part in _chunks(ids):
            found = conn.execute(sa.select(_decisions.c.id, _decisions.c.payload).where(_decisions.c.id.in_(part)))
            existing.update({r.id: r.payload for r in found})
        for id_, payload in existing.items():
            if payload != batch[id_][1]:
                raise StoreError(f"decision {id_!r} is already stored with different content: decisions are "
                                 "immutable; record corrections with add_feedback, or give the new decision a new id",
                                 decision_id=id_)
        stored_at = _now()
        rows: list[dict[str, Any]] = []
        reviews: list[dict[str, Any]] = []
        actions: list[dict[str, Any]] = []
        for id_, (d, payload) in batch.items():
            if id_ in existing:
                continue
            answering = _answering_trace(d)
            msg = d.message
            rows.append({
                "id": d.id, "created_at": d.created_at, "stored_at": stored_at, "tier": d.tier,
                "tier_kind": answering.kind if answering is not None else None, "labels": list(d.labels),
                "confidence": d.confidence, "escalated": d.escalated, "flagged": d.flagged,
                "language": d.language or (msg.language if msg else None),
                "sender": msg.sender if msg else None, "channel": msg.channel if msg else None, "payload": payload,
                **_stat_columns(d),
            })
            if d.tier == "human" or d.flagged or d.requires_human:
                reason = "human" if d.tier == "human" else "flagged" if d.flagged else "requires_human"
                reviews.append({"decision_id": d.id, "status": "pending", "reason": reason, "created_at": d.created_at})
            actions += [_action_row(d.id, a, stored_at) for a in d.actions]
        if rows:
            conn.execute(sa.insert(_decisions), rows)
        if reviews:
            conn.execute(sa.insert(_reviews), reviews)
        if actions:
            conn.execute(sa.insert(_actions), actions)

    def get_decision(self, decision_id: str) -> Decision | None:
        """The stored decision with this id (equal to the one saved), or None."""
        if "\x00" in decision_id:  # no stored id has one (PostgreSQL text cannot hold NUL: the query would fail)
            return None
        with self._read() as conn:
            payload = conn.scalar(sa.select(_decisions.c.payload).where(_decisions.c.id == decision_id))
            if payload is None:
                return None
            return self._with_actions(conn, [Decision.model_validate_json(payload)])[0]

    def decisions_by_id(self, ids: Iterable[str]) -> dict[str, Decision]:
        """The stored decisions among ``ids`` (id → Decision); ids not stored are absent. One query per 500 ids."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Decision] = {}
        if not wanted:
            return found
        with self._read() as conn:
            for part in _chunks(wanted):
                for row in conn.execute(sa.select(_decisions.c.id, _decisions.c.payload).where(_decisions.c.id.in_(part))):
                    found[row.id] = Decision.model_validate_json(row.payload)
            decisions = self._with_actions(conn, list(found.values()))  # actions as the actions table has them now
        return {d.id: d for d in decisions}

    def decisions(self, *, since: datetime | None = None, until: datetime | None = None,
                  limit: int | None = None) -> list[Decision]:
        """Decisions with ``since <= created_at < until``, oldest first (naive datetimes are UTC)."""
        q = sa.select(_decisions.c.payload).order_by(_decisions.c.created_at, _decisions.c.id)
        if since is not None:
            q = q.where(_decisions.c.created_at >= since)
        if until is not None:
            q = q.where(_decisions.c.created_at < until)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            payloads = conn.scalars(q).all()
            return self._with_actions(conn, [Decision.model_validate_json(p) for p in payloads])

    def count_decisions(self) -> int:
        """How many decisions are stored."""
        with self._read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(_decisions)) or 0)

    # -- feedback --------------------------------------------------------------------------------
    def add_feedback(self, decision_id: str, labels: list[str], *, source: str = "feedback",
                     actor: str | None = None, note: str | None = None) -> Feedback:
        """Record the correct labels for a stored decision; committed on return.

        Feedback never changes the stored decision or its review item (``resolve_review`` does
        both); the latest feedback of a decision is what ``training_examples`` uses.
        """
        labels = _check_labels(labels, decision_id)
        if not source:
            raise StoreError("feedback source must be a non-empty string, e.g. 'feedback'", decision_id=decision_id)
        with self._write() as conn:
            return self._insert_feedback(conn, decision_id, labels, source=source, actor=actor, note=note)

    def add_feedback_many(self, decision_ids: Sequence[str], labels: list[str], *, source: str = "feedback",
                          actor: str | None = None, note: str | None = None) -> list[Feedback]:
        """The same labels for several decisions (e.g. a cluster of one new intent), in one transaction:
        all committed on return, or none (an unknown id raises StoreError)."""
        if not decision_ids:
            return []
        labels = _check_labels(labels, decision_ids[0])
        if not source:
            raise StoreError("feedback source must be a non-empty string, e.g. 'feedback'")
        with self._write() as conn:
            return [self._insert_feedback(conn, i, labels, source=source, actor=actor, note=note)
                    for i in dict.fromkeys(decision_ids)]

    def _insert_feedback(self, conn: Connection, decision_id: str, labels: list[str], *, source: str,
                         actor: str | None, note: str | None) -> Feedback:
        if conn.scalar(sa.select(_decisions.c.id).where(_decisions.c.id == decision_id)) is None:
            raise StoreError(f"no decision with id {decision_id!r}: feedback must name a stored decision "
                             "(save it first, or check the id)", decision_id=decision_id)
        created = _now()
        new_id = conn.execute(
            sa.insert(_feedback).values(decision_id=decision_id, labels=labels, source=source, actor=actor,
                                        note=note, created_at=created).returning(_feedback.c.id)
        ).scalar_one()
        return Feedback(id=new_id, decision_id=decision_id, labels=labels, source=source, actor=actor, note=note,
                        created_at=created)

    def feedback(self, *, since: datetime | None = None, decision_id: str | None = None) -> list[Feedback]:
        """Feedback recorded at or after ``since`` (all of it by default), oldest first."""
        q = sa.select(_feedback).order_by(_feedback.c.created_at, _feedback.c.id)
        if since is not None:
            q = q.where(_feedback.c.created_at >= since)
        if decision_id is not None:
            q = q.where(_feedback.c.decision_id == decision_id)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return [Feedback(id=r.id, decision_id=r.decision_id, labels=r.labels, source=r.source, actor=r.actor,
                         note=r.note, created_at=r.created_at) for r in rows]

    # -- review queue ----------------------------------------------------------------------------
    def review_queue(self, *, status: ReviewStatus = "pending", limit: int = 50, offset: int = 0) -> list[ReviewItem]:
        """Review items with this status, oldest decision first, each with its Decision."""
        if status not in ("pending", "resolved"):
            raise ConfigError(f"status must be 'pending' or 'resolved', got {status!r}", field="status")
        q = (sa.select(_reviews, _decisions.c.payload)
             .join(_decisions, _decisions.c.id == _reviews.c.decision_id)
             .where(_reviews.c.status == status)
             .order_by(_reviews.c.created_at, _reviews.c.decision_id)
             .limit(limit).offset(offset))
        with self._read() as conn:
            rows = conn.execute(q).all()
            items = [self._review_item(r._mapping, r.payload) for r in rows]
            decisions = self._with_actions(conn, [i.decision for i in items])
        return [i.model_copy(update={"decision": d}) for i, d in zip(items, decisions)]

    @staticmethod
    def _review_item(row: Any, payload: str) -> ReviewItem:
        return ReviewItem(decision_id=row["decision_id"], status=row["status"], reason=row["reason"],
                          created_at=row["created_at"], resolved_at=row["resolved_at"], reviewer=row["reviewer"],
                          labels=row["labels"], decision=Decision.model_validate_json(payload))

    def review_item(self, decision_id: str) -> ReviewItem | None:
        """The review item of a decision (pending or resolved), or None when it never went to review."""
        q = (sa.select(_reviews, _decisions.c.payload).join(_decisions, _decisions.c.id == _reviews.c.decision_id)
             .where(_reviews.c.decision_id == decision_id))
        with self._read() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None
            item = self._review_item(row._mapping, row.payload)
            return item.model_copy(update={"decision": self._with_actions(conn, [item.decision])[0]})

    def review_depth(self) -> int:
        """How many review items are pending."""
        with self._read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(_reviews)
                                   .where(_reviews.c.status == "pending")) or 0)

    def resolve_review(self, decision_id: str, labels: list[str], *, reviewer: str | None = None,
                       note: str | None = None) -> ReviewItem:
        """Mark a pending review item resolved with the reviewer's labels, and record them as feedback
        (``source="review"``, with ``note``), in one transaction; committed on return."""
        labels = _check_labels(labels, decision_id)
        with self._write() as conn:
            row = _locked_review(conn, decision_id)
            if row is None:
                known = conn.scalar(sa.select(_decisions.c.id).where(_decisions.c.id == decision_id)) is not None
                why = ("it is stored but was never sent to review (not flagged, not tier 'human'): "
                       "use add_feedback to correct it") if known else "no decision has this id: check the id"
                raise StoreError(f"no review item for decision {decision_id!r}: {why}", decision_id=decision_id)
            if row.status == "resolved":
                raise StoreError(f"review of decision {decision_id!r} was already resolved by {row.reviewer or 'someone'} "
                                 f"at {row.resolved_at:%Y-%m-%d %H:%M:%S} UTC as {row.labels}: to correct it, use "
                                 "add_feedback", decision_id=decision_id)
            fb = self._insert_feedback(conn, decision_id, labels, source="review", actor=reviewer, note=note)
            now = fb.created_at
            updated = conn.execute(
                sa.update(_reviews)
                .where(_reviews.c.decision_id == decision_id, _reviews.c.status == "pending")
                .values(status="resolved", resolved_at=now, reviewer=reviewer, labels=labels, feedback_id=fb.id)
            ).rowcount
            if updated != 1:  # pragma: no cover - the row lock above makes this unreachable
                raise StoreError(f"review of decision {decision_id!r} was resolved concurrently: reload the queue",
                                 decision_id=decision_id)
            values = dict(row._mapping, status="resolved", resolved_at=now, reviewer=reviewer, labels=labels)
        return self._review_item(values, row.payload)

    def undo_review(self, decision_id: str, *, reviewer: str | None, within_s: float) -> ReviewItem:
        """Put a resolved review item back in the queue and delete the feedback its resolution wrote, in
        one transaction — only for the reviewer who resolved it and only within ``within_s`` seconds of
        the resolution (an undo, not a way to rewrite history: later corrections go through feedback)."""
        with self._write() as conn:
            row = _locked_review(conn, decision_id)
            if row is None:
                raise StoreError(f"no review item for decision {decision_id!r}: nothing to undo", decision_id=decision_id)
            if row.status != "resolved":
                raise StoreError(f"review of decision {decision_id!r} is not resolved (it is {row.status}): nothing "
                                 "to undo", decision_id=decision_id)
            if row.reviewer != reviewer:
                raise StoreError(f"review of decision {decision_id!r} was resolved by {row.reviewer or 'someone'}, "
                                 f"not {reviewer or 'you'}: only they can undo it; correct it with feedback",
                                 decision_id=decision_id)
            age = (_now() - row.resolved_at).total_seconds()
            if age > within_s:
                raise StoreError(f"review of decision {decision_id!r} was resolved {age:.0f} s ago: an undo is "
                                 f"possible for {within_s:g} s only; correct it with feedback", decision_id=decision_id)
            conn.execute(sa.update(_reviews).where(_reviews.c.decision_id == decision_id)
                         .values(status="pending", resolved_at=None, reviewer=None, labels=None, feedback_id=None))
            if row.feedback_id is not None:
                conn.execute(sa.delete(_feedback).where(_feedback.c.id == row.feedback_id))
            values = dict(row._mapping, status="pending", resolved_at=None, reviewer=None, labels=None)
        return self._review_item(values, row.payload)

    # -- actions (the ActionLedger of frontdesk.routing.actions) ----------------------------------
    @staticmethod
    def _with_actions(conn: Connection, decisions: list[Decision]) -> list[Decision]:
        """``decisions`` with ``actions`` as the actions table has them now."""
        ids = [d.id for d in decisions if d.actions]
        if not ids:
            return decisions
        found: dict[str, list[ActionResult]] = {}
        for part in _chunks(ids):
            for r in conn.execute(sa.select(_actions).where(_actions.c.decision_id.in_(part))
                                  .order_by(_actions.c.decision_id, _actions.c.name)):
                found.setdefault(r.decision_id, []).append(_action_result(r))
        out = []
        for d in decisions:
            live = {a.name: a for a in found.get(d.id, [])}
            if live:
                order = [a.name for a in d.actions] + sorted(set(live) - {a.name for a in d.actions})
                d = d.model_copy(update={"actions": [live[n] for n in order if n in live]})
            out.append(d)
        return out

    def record_actions(self, decision_id: str, actions: Sequence[ActionResult]) -> None:
        """Record actions of a stored decision that are not recorded yet (recorded ones stay as they are)."""
        if not actions:
            return
        with self._read() as conn:  # the usual case (recorded with the decision) needs no write transaction
            known = set(conn.scalars(sa.select(_actions.c.name).where(_actions.c.decision_id == decision_id)))
        if all(a.name in known for a in actions):
            return
        now = _now()
        with self._write() as conn:
            if conn.scalar(sa.select(_decisions.c.id).where(_decisions.c.id == decision_id)) is None:
                raise StoreError(f"no decision with id {decision_id!r}: store the decision before its actions",
                                 decision_id=decision_id)
            known = set(conn.scalars(sa.select(_actions.c.name).where(_actions.c.decision_id == decision_id)))
            rows = [_action_row(decision_id, a, now) for a in actions if a.name not in known]
            if rows:
                conn.execute(sa.insert(_actions), rows)

    def claim_action(self, decision_id: str, name: str, *, lease_s: float) -> bool:
        """Take a pending action (or a running one whose claim is older than ``lease_s``): True if this
        caller took it. Atomic: of any number of concurrent callers, one gets True."""
        now = _now()
        stale = now - timedelta(seconds=lease_s)
        with self._write() as conn:
            taken = conn.execute(
                sa.update(_actions)
                .where(_actions.c.decision_id == decision_id, _actions.c.name == name,
                       sa.or_(_actions.c.status == "pending",
                              sa.and_(_actions.c.status == "running", _actions.c.claimed_at < stale)))
                .values(status="running", attempts=_actions.c.attempts + 1, claimed_at=now, updated_at=now)
            ).rowcount
        return taken == 1

    def finish_action(self, decision_id: str, name: str, status: ActionStatus, *, result: Any = None,
                      error: str | None = None) -> None:
        """Record the outcome of a claimed action."""
        with self._write() as conn:
            conn.execute(sa.update(_actions).where(_actions.c.decision_id == decision_id, _actions.c.name == name)
                         .values(status=status, result=result, error=error, updated_at=_now()))

    def actions_of(self, decision_id: str) -> list[ActionResult]:
        """The recorded actions of a decision, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(_actions).where(_actions.c.decision_id == decision_id).order_by(_actions.c.name))
            return [_action_result(r) for r in rows]

    def unfinished_actions(self, *, older_than_s: float, limit: int = 500) -> list[str]:
        """Ids of decisions with an action still pending (or running under a stale claim) for longer than
        ``older_than_s``: what a crash between commit and run left behind (see ActionRunner.resume)."""
        cutoff = _now() - timedelta(seconds=older_than_s)
        q = (sa.select(_actions.c.decision_id).distinct()
             .where(_actions.c.status.in_(("pending", "running")), _actions.c.updated_at < cutoff).limit(limit))
        with self._read() as conn:
            return list(conn.scalars(q))

    def review_actions(self, decision_id: str, *, approve: bool, reviewer: str | None,
                       keep: Sequence[str], add: Sequence[ActionResult]) -> list[ActionResult]:
        """A reviewer's verdict on the held actions of a decision, in one transaction (see
        :meth:`frontdesk.routing.actions.ActionLedger.review_actions`)."""
        from frontdesk.routing.actions import _verdict

        now = _now()
        with self._write() as conn:
            held = conn.scalars(sa.select(_actions.c.name).where(_actions.c.decision_id == decision_id,
                                                                  _actions.c.status == "held")).all()
            for name in held:
                status, why = _verdict(name in keep, approve, reviewer)
                conn.execute(sa.update(_actions)
                             .where(_actions.c.decision_id == decision_id, _actions.c.name == name, _actions.c.status == "held")
                             .values(status=status, reason=why, updated_at=now))
            known = set(conn.scalars(sa.select(_actions.c.name).where(_actions.c.decision_id == decision_id)))
            rows = [_action_row(decision_id, a, now) for a in add if a.name not in known]
            if rows:
                conn.execute(sa.insert(_actions), rows)
        return self.actions_of(decision_id)

    # -- retraining ------------------------------------------------------------------------------
    def training_examples(self, *, include_llm: bool = True) -> list[tuple[str, tuple[str, ...], str]]:
        """Labelled examples learned in production, as ``(text, labels, source)``, oldest decision first.

        Every decision with feedback contributes its *latest* feedback's labels (source
        ``"feedback"`` or ``"review"``). With ``include_llm``, decisions that a tier of role ``llm``
        accepted without flagging contribute its labels (source ``"llm"``),
        unless the decision also has feedback. Texts are de-duplicated on :func:`~frontdesk.common.textkey.text_key`:
        feedback beats LLM labels, and within each, the latest wins. ``text`` is the decision's
        text (as the tiers saw it: preprocessed and truncated).
        """
        from frontdesk.tiers.base import role_of_kind

        with self._read() as conn:
            latest: dict[str, tuple[int, list[str], str]] = {}
            for fb in conn.execute(sa.select(_feedback.c.id, _feedback.c.decision_id, _feedback.c.labels,
                                             _feedback.c.source).order_by(_feedback.c.id)):
                latest[fb.decision_id] = (fb.id, list(fb.labels), fb.source)
            texts: dict[str, tuple[str, datetime]] = {}
            for part in _chunks(list(latest)):
                for row in conn.execute(sa.select(_decisions.c.id, _decisions.c.payload, _decisions.c.created_at)
                                        .where(_decisions.c.id.in_(part))):
                    texts[row.id] = (json.loads(row.payload)["text"], row.created_at)
            llm_rows: Sequence[sa.Row[str, str, datetime]] = []
            if include_llm:  # the rows store the answering tier's kind: the kinds whose class has role llm
                kinds = [k for k in conn.scalars(sa.select(_decisions.c.tier_kind).distinct().where(_decisions.c.tier_kind.is_not(None)))
                         if role_of_kind(k) == "llm"]
                llm_rows = conn.execute(
                    sa.select(_decisions.c.id, _decisions.c.payload, _decisions.c.created_at)
                    .where(_decisions.c.tier_kind.in_(kinds), _decisions.c.flagged.is_(False), _decisions.c.tier != "human")
                    .order_by(_decisions.c.created_at.desc(), _decisions.c.id.desc())
                ).all() if kinds else []

        chosen: dict[str, tuple[datetime, str, str, tuple[str, ...], str]] = {}
        # Feedback first, latest feedback first: the first example per normalised text wins.
        for decision_id, (_fid, labels, source) in sorted(latest.items(), key=lambda kv: -kv[1][0]):
            text, created = texts[decision_id]
            chosen.setdefault(text_key(text), (created, decision_id, text, tuple(labels), source))
        for r in llm_rows:
            if r.id in latest:
                continue
            d = Decision.model_validate_json(r.payload)
            answering = _answering_trace(d)
            if answering is None or answering.role != "llm" or answering.verdict != "accept" or not d.labels:
                continue  # e.g. mapped to the unknown label because the LLM was not confident
            chosen.setdefault(text_key(d.text), (r.created_at, d.id, d.text, tuple(d.labels), "llm"))
        return [(text, labels, source) for _c, _i, text, labels, source in sorted(chosen.values(), key=lambda x: x[:2])]

    # -- housekeeping ----------------------------------------------------------------------------
    def revision(self) -> str | None:
        """The schema revision the database is at (the newest migration once the store is open)."""
        from alembic.runtime.migration import MigrationContext

        with self._read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        """Release the database connections. Every acknowledged write is already committed."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"
