"""The votes table and its indexes; adopts a database the hand-written migrations made.

Before Alembic, the gateway migrated by hand and counted its steps in a `feedback_schema` table.
Only step 1 ever shipped, and it made exactly this table in the same transaction as that counter:
so where the counter exists, the table and every vote stay as they are, and only the counter goes,
replaced by Alembic's `alembic_version`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

HAND_MIGRATED = "feedback_schema"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(HAND_MIGRATED):
        op.drop_table(HAND_MIGRATED)
        return
    op.create_table(
        "feedback_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("session", sa.String(64), nullable=False),
        sa.Column("query", sa.String(200), nullable=False),  # MAX_QUERY_CHARS as shipped; a revision never follows the code
        sa.Column("category", sa.String(200), nullable=True),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("vote", sa.SmallInteger, nullable=False),
    )
    op.create_index("feedback_by_query", "feedback_events", ["query", "item_id"])
    op.create_index("feedback_by_session", "feedback_events", ["session", "created_at"])
    op.create_index("feedback_by_time", "feedback_events", ["created_at"])


def downgrade() -> None:
    op.drop_table("feedback_events")
