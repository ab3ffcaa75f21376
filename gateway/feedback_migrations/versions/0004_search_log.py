"""The search log and its events (analytics): what shoppers searched, found, clicked and bought.

Per search: no photo, no embedding, no IP, no raw session id; a session is a keyed hash under a
salt that changes daily. Events join a search by its `query_id`'s search id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("search_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("session", sa.String(32), nullable=True),
        sa.Column("category", sa.String(200), nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("chosen", sa.String(200), nullable=True),
        sa.Column("best_score", sa.Float, nullable=True),
        sa.Column("results", sa.Integer, nullable=False),
        sa.Column("words", sa.String(200), nullable=True),
        sa.Column("filters", sa.String(1000), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("index_version", sa.String(100), nullable=True),
    )
    op.create_index("search_log_by_time", "search_log", ["created_at"])
    op.create_index("search_log_by_search", "search_log", ["search_id"])
    op.create_table(
        "search_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("search_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("search_events_by_search", "search_events", ["search_id"])
    op.create_index("search_events_by_time", "search_events", ["created_at"])


def downgrade() -> None:
    op.drop_table("search_events")
    op.drop_table("search_log")
