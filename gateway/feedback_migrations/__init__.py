"""Alembic's migrations of the feedback database; `gateway.feedback_store.FeedbackStore.migrate` runs them.

A new schema step is a new file in versions/ (never edit one that shipped). To write one:

    alembic -c gateway/feedback_migrations/alembic.ini -x url=sqlite:///var/feedback.sqlite3 revision -m "what"

then fill in its `upgrade` (and `downgrade`) with `op.` calls: explicit DDL, not the live `metadata`,
so a revision means the same thing whatever the code around it becomes.
"""

from pathlib import Path

SCRIPT_LOCATION = Path(__file__).parent
