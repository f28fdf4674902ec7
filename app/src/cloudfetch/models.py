"""The schema as SQLAlchemy models. Alembic migrations (cloudfetch/migrations) are the source of
truth for the database; these models must match the head revision (a test checks that)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class TransferKind(enum.StrEnum):
    MAGNET = "magnet"
    TORRENT = "torrent"
    URL = "url"


class TransferState(enum.StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"


class MediaState(enum.StrEnum):
    NONE = "none"
    DONE = "done"
    FFMPEG_MISSING = "ffmpeg-missing"
    FAILED = "failed"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # Only a SHA-256 of the token is stored: a leaked database does not leak working tokens.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Stored as plain strings (not PostgreSQL enums) so adding a state is an expand-only change.
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=TransferState.QUEUED, index=True)
    source: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    # Transmission's info hash, for torrent and magnet transfers.
    info_hash: Mapped[str | None] = mapped_column(String(40))
    # The uploaded .torrent, kept in the database so the web tier needs no shared filesystem
    # with the worker that hands it to Transmission.
    torrent_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StoredFile(Base):
    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("user_id", "path", name="uq_files_user_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    transfer_id: Mapped[int | None] = mapped_column(
        ForeignKey("transfers.id", ondelete="SET NULL"), index=True
    )
    # Relative to the user's directory, '/'-separated, never absolute, never with '..'.
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    media_state: Mapped[str] = mapped_column(String(16), default=MediaState.NONE)
    # Relative to the user's directory, like path.
    thumbnail_path: Mapped[str | None] = mapped_column(Text)
    media_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class Counter(Base):
    """Request and error counts shared by every gunicorn worker (see metrics.RequestCounter)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
