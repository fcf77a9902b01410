"""Console: aggregate columns and indexes for the dashboard, undoable reviews, browser sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

``decisions`` gains the values the dashboard aggregates, copied out of the payload at insert time
so that SQL can sum them without parsing JSON: ``created_hour`` (UTC epoch hours — the bucket the
time series group on), ``label`` (the first label), ``n_labels``, ``primary_confidence`` (the first
model tier's confidence), ``llm_calls``, ``cost_usd`` and ``duplicate``. One covering index over
``(created_hour, tier, …)`` lets a range of hours be aggregated from the index alone; ``(label,
created_at)`` serves per-label volume and the newest decisions of a label; two partial indexes hold only
the rows with LLM calls or a cost and the multi-label rows. Rows written before this revision are backfilled from their payload.

``review_items.feedback_id`` names the feedback row a resolution wrote, so the resolution can be
undone. ``console_sessions`` holds the console's sign-ins (only a hash of each session token).

This migration parses the stored JSON itself (no frontdesk imports): it must keep working however
the code evolves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SKIP_KINDS = {"rules", "human", "preprocess"}
PAID = "llm_calls > 0 OR cost_usd > 0"
"""The rows of the partial index ``ix_decisions_llm_hour`` (queries must repeat this condition to use it)."""
_BATCH = 2000


def _derived(payload: str) -> dict[str, Any]:
    """The aggregate columns of one stored decision (mirrors ``frontdesk.store.store._stat_columns``)."""
    d = json.loads(payload)
    labels = d.get("labels") or []
    primary = None
    for entry in d.get("trace") or []:
        if entry.get("kind") in _SKIP_KINDS:
            continue
        if entry.get("verdict") != "error":
            primary = entry.get("confidence")
        break
    return {"label": labels[0] if labels else None, "n_labels": len(labels), "primary_confidence": primary,
            "llm_calls": 0 if d.get("duplicate_of") else sum(1 for e in d.get("trace") or [] if e.get("kind") == "llm"),
            "cost_usd": float(d.get("cost_usd") or 0.0), "duplicate": d.get("duplicate_of") is not None}


def upgrade() -> None:
    bind = op.get_bind()
    for column in (
        sa.Column("created_hour", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("n_labels", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("primary_confidence", sa.Float(), nullable=True),
        sa.Column("llm_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"),
        sa.Column("duplicate", sa.Boolean(), nullable=False, server_default=sa.false()),
    ):
        op.add_column("decisions", column)

    # backfill the rows written before this revision
    if bind.dialect.name == "sqlite":
        op.execute("UPDATE decisions SET created_hour = CAST(strftime('%s', created_at) AS INTEGER) / 3600")
    else:
        op.execute("UPDATE decisions SET created_hour = CAST(floor(extract(epoch FROM created_at) / 3600) AS INTEGER)")
    table = sa.table("decisions", sa.column("id", sa.String()), sa.column("payload", sa.Text()),
                     sa.column("label", sa.String()), sa.column("n_labels", sa.Integer()),
                     sa.column("primary_confidence", sa.Float()), sa.column("llm_calls", sa.Integer()),
                     sa.column("cost_usd", sa.Float()), sa.column("duplicate", sa.Boolean()))
    update = (sa.update(table).where(table.c.id == sa.bindparam("_id"))
              .values(label=sa.bindparam("label"), n_labels=sa.bindparam("n_labels"),
                      primary_confidence=sa.bindparam("primary_confidence"), llm_calls=sa.bindparam("llm_calls"),
                      cost_usd=sa.bindparam("cost_usd"), duplicate=sa.bindparam("duplicate")))
    last = ""
    while True:
        rows = bind.execute(sa.select(table.c.id, table.c.payload).where(table.c.id > last)
                            .order_by(table.c.id).limit(_BATCH)).all()
        if not rows:
            break
        bind.execute(update, [{"_id": r.id, **_derived(r.payload)} for r in rows])
        last = rows[-1].id

    op.create_index("ix_decisions_hourly", "decisions",
                    ["created_hour", "tier", "duplicate", "escalated", "label", "primary_confidence", "llm_calls",
                     "cost_usd"])
    op.create_index("ix_decisions_label_created_at", "decisions", ["label", "created_at"])
    op.create_index("ix_decisions_llm_hour", "decisions", ["created_hour", "llm_calls", "cost_usd"],
                    sqlite_where=sa.text(PAID), postgresql_where=sa.text(PAID))
    op.create_index("ix_decisions_multilabel_created_at", "decisions", ["created_at"],
                    sqlite_where=sa.text("n_labels > 1"), postgresql_where=sa.text("n_labels > 1"))
    op.create_index("ix_decisions_sender_created_at", "decisions", ["sender", "created_at"])

    op.add_column("review_items", sa.Column("feedback_id", sa.Integer(), nullable=True))

    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("key_name", sa.String(), nullable=False),
        sa.Column("key_sha256", sa.String(), nullable=True),
        sa.Column("csrf", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_table("console_sessions")
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("feedback_id")
    for name in ("ix_decisions_sender_created_at", "ix_decisions_multilabel_created_at", "ix_decisions_llm_hour",
                 "ix_decisions_label_created_at", "ix_decisions_hourly"):
        op.drop_index(name, table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        for name in ("duplicate", "cost_usd", "llm_calls", "primary_confidence", "n_labels", "label", "created_hour"):
            batch.drop_column(name)
