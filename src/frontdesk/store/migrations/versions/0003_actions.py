"""Actions: the state of each label's action per decision; review items for ``requires_human`` decisions.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-15

``actions`` holds one row per (decision, action): its status (pending, held, running, done, failed,
skipped, rejected, cancelled), why, the result or error, the attempts and the time of the current
claim. Running an action is an atomic ``pending → running`` update of its row, so an action fires
at most once per decision however often it is retried. ``review_items.reason`` may now also be
``requires_human`` (a decision whose action waits for a reviewer's approval).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("decision_id", sa.String(),
                  sa.ForeignKey("decisions.id", ondelete="CASCADE", name="fk_actions_decision"), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", "name", name="pk_actions"),
        sa.CheckConstraint("status IN ('pending', 'held', 'running', 'done', 'failed', 'skipped', 'rejected', 'cancelled')",
                           name="ck_actions_status"),
    )
    op.create_index("ix_actions_status_updated_at", "actions", ["status", "updated_at"])
    with op.batch_alter_table("review_items") as batch:
        batch.drop_constraint("ck_review_items_reason", type_="check")
        batch.create_check_constraint("ck_review_items_reason", "reason IN ('human', 'flagged', 'requires_human')")


def downgrade() -> None:
    op.execute("DELETE FROM review_items WHERE reason = 'requires_human'")
    with op.batch_alter_table("review_items") as batch:
        batch.drop_constraint("ck_review_items_reason", type_="check")
        batch.create_check_constraint("ck_review_items_reason", "reason IN ('human', 'flagged')")
    op.drop_index("ix_actions_status_updated_at", table_name="actions")
    op.drop_table("actions")
