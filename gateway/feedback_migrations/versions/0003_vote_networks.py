"""Each vote keeps the salted hash of its client's network, so learning counts networks, not sessions.

Votes stored before this revision have none; they count as their own network each (`net_votes`
falls back to the session), so nothing already learned is lost.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("feedback_events", sa.Column("network", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback_events") as table:  # SQLite drops a column by copying the table
        table.drop_column("network")
