"""Alembic environment: runs against the connection cloudfetch.migrate hands over."""

from alembic import context
from sqlalchemy import text

from cloudfetch.models import Base

# Every host of a deploy may run `cloudfetch migrate`; the lock makes them take turns, and the
# later ones find the schema already at head.
MIGRATION_LOCK_KEY = 0x63_66_6D_69  # "cfmi"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
# cloudfetch.migrate runs everything in one transaction (PostgreSQL has transactional DDL): a
# failing migration leaves the schema as it was. The lock is released at commit.
connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
context.run_migrations()
