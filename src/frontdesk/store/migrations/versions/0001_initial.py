"""Initial schema: decisions, feedback, review_items.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

``decisions`` keeps each Decision verbatim (``payload``: its ``model_dump_json()``) next to the
columns that queries filter on; ``feedback`` holds corrected labels (from users or reviewers);
``review_items`` is the human-review queue, one row per decision that needs a human.

Timestamps are stored in UTC (SQLite has no time-zone type: the store converts before writing).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("tier_kind", sa.String(), nullable=True),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(), nullable=True),
        sa.Column("sender", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])
    op.create_index("ix_decisions_tier", "decisions", ["tier"])
    op.create_index("ix_decisions_tier_kind", "decisions", ["tier_kind"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "decision_id", sa.String(), sa.ForeignKey("decisions.id", ondelete="CASCADE", name="fk_feedback_decision"),
            nullable=False,
        ),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_decision_id", "feedback", ["decision_id"])
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])

    op.create_table(
        "review_items",
        sa.Column(
            "decision_id", sa.String(),
            sa.ForeignKey("decisions.id", ondelete="CASCADE", name="fk_review_items_decision"), primary_key=True,
        ),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewer", sa.String(), nullable=True),
        sa.Column("labels", JSONType, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'resolved')", name="ck_review_items_status"),
        sa.CheckConstraint("reason IN ('human', 'flagged')", name="ck_review_items_reason"),
    )
    op.create_index("ix_review_items_status_created_at", "review_items", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_review_items_status_created_at", table_name="review_items")
    op.drop_table("review_items")
    op.drop_index("ix_feedback_created_at", table_name="feedback")
    op.drop_index("ix_feedback_decision_id", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_decisions_tier_kind", table_name="decisions")
    op.drop_index("ix_decisions_tier", table_name="decisions")
    op.drop_index("ix_decisions_created_at", table_name="decisions")
    op.drop_table("decisions")
