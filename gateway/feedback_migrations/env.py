"""How Alembic reaches the feedback database.

At start-up the gateway hands over its own connection, already inside the transaction that holds
the migration lock (`config.attributes["connection"]`). From the `alembic` command line, the URL
comes from `-x url=...`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from gateway.feedback_store import metadata


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


given: Connection | None = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("Say which database: alembic -c gateway/feedback_migrations/alembic.ini -x url=sqlite:///...")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        run(connection)
    engine.dispose()
