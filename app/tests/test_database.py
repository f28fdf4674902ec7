"""The app's database engine, against the real PostgreSQL of the test session."""

from __future__ import annotations

from cloudfetch.services import make_engine
from sqlalchemy import text


def test_engine_never_prepares_statements(database_url: str) -> None:
    """pgbouncer's transaction pooling hands each transaction any server connection, where a
    statement psycopg prepared for another client already exists (DuplicatePreparedStatement).
    psycopg prepares a query from its 6th run by default; the app's engine must never do so."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            for _ in range(10):
                connection.execute(
                    text("SELECT count(*) FROM pg_class WHERE relname = :n"), {"n": "x"}
                )
            prepared = connection.execute(text("SELECT count(*) FROM pg_prepared_statements"))
            assert prepared.scalar() == 0
    finally:
        engine.dispose()
