"""What a user can do, shared by the JSON API and the HTML UI. Each flow validates everything
before it writes, so a refusal (ApiError) leaves nothing behind."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flask import Response, send_file
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfetch import auth, tasks
from cloudfetch.bencode import InvalidTorrent, parse_torrent
from cloudfetch.config import Settings
from cloudfetch.errors import ApiError
from cloudfetch.models import (
    ApiToken,
    StoredFile,
    Transfer,
    TransferKind,
    TransferState,
    User,
)
from cloudfetch.search import FileIndex, SearchUnavailable
from cloudfetch.sources import InvalidSource, check_url, magnet_info_hash
from cloudfetch.storage import UnsafePath, resolve_inside, safe_relative_path

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
ACTIVE_STATES = (TransferState.QUEUED, TransferState.DOWNLOADING)


# Accounts and tokens


def _credentials(email: Any, password: Any) -> tuple[str, str]:
    if not isinstance(email, str) or not _EMAIL.match(email.strip()) or len(email) > 254:
        raise ApiError(400, "invalid_email", "a valid email address is required")
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ApiError(
            400,
            "invalid_password",
            f"the password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
    return email.strip().lower(), password


def issue_token(db: Session, user: User, name: str) -> str:
    token = auth.new_token()
    db.add(ApiToken(user_id=user.id, name=name[:100], token_hash=auth.token_digest(token)))
    return token


def sign_up(db: Session, email: Any, password: Any) -> tuple[User, str]:
    email, password = _credentials(email, password)
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise ApiError(409, "email_taken", "an account with this email already exists")
    user = User(email=email, password_hash=auth.hash_password(password))
    db.add(user)
    try:
        db.flush()
        token = issue_token(db, user, "signup")
        db.commit()
    except IntegrityError:
        # Two sign-ups for one address at once: the unique index decides, the loser gets 409.
        db.rollback()
        raise ApiError(409, "email_taken", "an account with this email already exists") from None
    return user, token


def log_in(db: Session, email: Any, password: Any) -> User:
    if not isinstance(email, str) or not isinstance(password, str):
        raise ApiError(400, "invalid_request", "email and password are required")
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not auth.verify_password(user.password_hash, password):
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    return user


def user_for_token(db: Session, header: str | None) -> User:
    if not header:
        raise ApiError(401, "missing_token", "send Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "invalid_token", "send Authorization: Bearer <token>")
    user = db.scalar(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == auth.token_digest(token.strip()))
    )
    if user is None:
        raise ApiError(401, "invalid_token", "the token is not valid")
    return user


# Transfers


@dataclass(frozen=True)
class TransferRequest:
    url: Any = None
    magnet: Any = None
    torrent: bytes | None = None


def _sent(value: Any) -> bool:
    """Absent and empty fields are not sent (HTML forms send every field); anything else is a
    source, valid or not: `{"url": 0}` is a bad URL, not a missing one."""
    return value is not None and value != "" and value != b""


def add_transfer(db: Session, settings: Settings, user: User, req: TransferRequest) -> Transfer:
    fields = {"url": req.url, "magnet": req.magnet, "torrent": req.torrent}
    sent = [name for name, value in fields.items() if _sent(value)]
    if len(sent) != 1:
        raise ApiError(400, "invalid_request", "give exactly one of: url, magnet, torrent file")
    info_hash: str | None = None
    torrent_data: bytes | None = None
    try:
        if sent == ["url"]:
            if not isinstance(req.url, str):
                raise InvalidSource("url must be a string")
            kind, source, name = TransferKind.URL, check_url(req.url.strip()), None
        elif sent == ["magnet"]:
            if not isinstance(req.magnet, str):
                raise InvalidSource("magnet must be a string")
            source = req.magnet.strip()
            kind, info_hash, name = TransferKind.MAGNET, magnet_info_hash(source), None
        else:
            assert req.torrent is not None
            if len(req.torrent) > settings.max_upload_bytes:
                raise ApiError(
                    413, "too_large", f"a torrent file may be {settings.max_upload_bytes} bytes"
                )
            info = parse_torrent(req.torrent)
            kind, source, name = TransferKind.TORRENT, f"torrent:{info.name}", info.name
            info_hash, torrent_data = info.info_hash, req.torrent
    except InvalidSource as exc:
        raise ApiError(400, "invalid_source", str(exc)) from None
    except InvalidTorrent as exc:
        raise ApiError(400, "invalid_torrent", str(exc)) from None
    if info_hash is not None and db.scalar(
        select(Transfer.id).where(
            Transfer.user_id == user.id,
            Transfer.info_hash == info_hash,
            Transfer.state.in_(ACTIVE_STATES),
        )
    ):
        # Other users' transfers of the same torrent share its download (tasks._poll); one
        # user fetching it twice is a mistake.
        raise ApiError(409, "already_fetching", "you are already fetching this torrent")
    transfer = Transfer(
        user_id=user.id,
        kind=kind,
        source=source,
        name=name,
        info_hash=info_hash,
        torrent_data=torrent_data,
        state=TransferState.QUEUED,
        progress=0.0,
    )
    db.add(transfer)
    db.commit()
    # Enqueue after the commit so the worker always finds the row; if the broker refuses, the
    # row is removed again and the user is told to retry.
    task = tasks.fetch_url if kind == TransferKind.URL else tasks.start_torrent
    try:
        task.delay(transfer.id)
    except Exception as exc:
        log.error("could not enqueue transfer %s: %s", transfer.id, exc)
        db.delete(transfer)
        db.commit()
        raise ApiError(
            503, "queue_unavailable", "the work queue is unavailable; try again"
        ) from exc
    return transfer


def user_transfer(db: Session, user: User, transfer_id: int) -> Transfer:
    transfer = db.scalar(
        select(Transfer).where(Transfer.id == transfer_id, Transfer.user_id == user.id)
    )
    if transfer is None:
        raise ApiError(404, "not_found", "no such transfer")
    return transfer


def delete_transfer(db: Session, user: User, transfer_id: int) -> None:
    """Forget a transfer; files it already delivered stay. An active torrent is removed from
    Transmission by a task; the broker must be up for that, or nothing is changed."""
    transfer = user_transfer(db, user, transfer_id)
    if transfer.state in ACTIVE_STATES and transfer.info_hash and transfer.kind != TransferKind.URL:
        try:
            tasks.cancel_torrent.delay(transfer.id, transfer.info_hash)
        except Exception as exc:
            raise ApiError(
                503, "queue_unavailable", "the work queue is unavailable; try again"
            ) from exc
    db.delete(transfer)
    db.commit()


def transfer_json(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "kind": transfer.kind,
        "state": transfer.state,
        "source": transfer.source,
        "name": transfer.name,
        "progress": round(transfer.progress, 4),
        "bytes_total": transfer.bytes_total,
        "error": transfer.error,
        "created_at": transfer.created_at.isoformat(),
        "completed_at": transfer.completed_at.isoformat() if transfer.completed_at else None,
    }


# Files


def checked_path(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ApiError(400, "invalid_path", "path must be a string")
    try:
        return safe_relative_path(raw)
    except UnsafePath:
        raise ApiError(400, "invalid_path", f"not a safe relative path: {raw!r}") from None


def user_file(db: Session, user: User, file_id: int) -> StoredFile:
    # Another user's file is "not found", never "forbidden": its existence is not told.
    stored = db.scalar(
        select(StoredFile).where(StoredFile.id == file_id, StoredFile.user_id == user.id)
    )
    if stored is None:
        raise ApiError(404, "not_found", "no such file")
    return stored


def user_file_by_path(db: Session, user: User, raw_path: Any) -> StoredFile:
    path = checked_path(raw_path)
    stored = db.scalar(
        select(StoredFile).where(StoredFile.user_id == user.id, StoredFile.path == path)
    )
    if stored is None:
        raise ApiError(404, "not_found", "no such file")
    return stored


def browse(db: Session, user: User, raw_dir: Any) -> dict[str, Any]:
    """The files and sub-directories directly inside one directory of the user's storage."""
    directory = "" if raw_dir in (None, "", "/") else checked_path(raw_dir)
    prefix = directory + "/" if directory else ""
    query = select(StoredFile).where(StoredFile.user_id == user.id).order_by(StoredFile.path)
    if prefix:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(StoredFile.path.like(escaped + "%", escape="\\"))
    dirs: set[str] = set()
    files = []
    for stored in db.scalars(query):
        rest = stored.path[len(prefix) :]
        if "/" in rest:
            dirs.add(rest.split("/", 1)[0])
        else:
            files.append(file_json(stored))
    if directory and not dirs and not files:
        raise ApiError(404, "not_found", "no such directory")
    return {"path": directory, "dirs": sorted(dirs), "files": files}


def file_json(stored: StoredFile) -> dict[str, Any]:
    return {
        "id": stored.id,
        "path": stored.path,
        "name": stored.name,
        "size": stored.size,
        "transfer_id": stored.transfer_id,
        "media_state": stored.media_state,
        "has_thumbnail": stored.thumbnail_path is not None,
        "created_at": stored.created_at.isoformat(),
    }


def download_response(settings: Settings, stored: StoredFile) -> Response:
    """Hand the bytes to nginx with X-Accel-Redirect; Python streams them only in development."""
    user_dir = settings.user_dir(stored.user_id)
    relative = f"u{stored.user_id}/{stored.path}"
    disposition = f"attachment; filename*=UTF-8''{quote(stored.name)}"
    if settings.dev_send_file:
        try:
            target = resolve_inside(user_dir, stored.path)
        except UnsafePath:
            raise ApiError(404, "not_found", "no such file") from None
        if not target.is_file():
            raise ApiError(404, "not_found", "the file's bytes are missing")
        return send_file(target, as_attachment=True, download_name=stored.name)
    response = Response(status=200)
    response.headers["X-Accel-Redirect"] = f"{settings.accel_prefix}/{quote(relative)}"
    response.headers["Content-Disposition"] = disposition
    # Let nginx pick the type from the file name instead of Flask's text/html default.
    del response.headers["Content-Type"]
    return response


def delete_file(db: Session, settings: Settings, user: User, file_id: int) -> None:
    stored = user_file(db, user, file_id)
    path, thumbnail = stored.path, stored.thumbnail_path
    db.delete(stored)
    db.commit()
    # Bytes go after the row (a failure leaves an unlisted file, never a listed file without
    # bytes), and on a worker: the storage lives there, not on the web host taking this request.
    try:
        tasks.remove_stored_files.delay(user.id, [p for p in (path, thumbnail) if p])
    except Exception as exc:
        log.error("file %s row deleted but its bytes stay on disk: %s", file_id, exc)
    try:
        tasks.unindex_files.delay([file_id])
    except Exception as exc:
        # Harmless for users: search results are always re-checked against the database.
        log.warning("could not enqueue unindexing of file %s: %s", file_id, exc)


def search_files(db: Session, settings: Settings, user: User, text: Any) -> list[StoredFile]:
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "invalid_query", "give a search text in q")
    try:
        ids = FileIndex.for_settings(settings).search(user.id, text)
    except SearchUnavailable as exc:
        raise ApiError(503, "search_unavailable", "search is unavailable; try again") from exc
    except ValueError:
        raise ApiError(400, "invalid_query", "the search text has no words") from None
    if not ids:
        return []
    # Re-checked against the database: an index entry for a deleted file (or another user's)
    # never reaches the user.
    found = {
        f.id: f
        for f in db.scalars(
            select(StoredFile).where(StoredFile.id.in_(ids), StoredFile.user_id == user.id)
        )
    }
    return [found[i] for i in ids if i in found]
