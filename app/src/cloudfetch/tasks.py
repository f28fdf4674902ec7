"""Celery tasks: every long piece of work (downloads, Transmission, moving files, Solr, ffmpeg).

They are `shared_task`s: the Celery app they run on is made by the entry points
(cloudfetch.celery_app.celery_init_app). Tasks are acknowledged late and may run twice (a worker
killed mid-task, a broker restart), so each one checks the state it finds before acting and does
nothing when the work is done.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from celery import shared_task
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cloudfetch import fetch, media, services
from cloudfetch.models import MediaState, StoredFile, Transfer, TransferKind, TransferState
from cloudfetch.search import SearchUnavailable
from cloudfetch.storage import (
    UnsafePath,
    link_tree,
    move_into,
    remove_file,
    resolve_inside,
    safe_relative_path,
)
from cloudfetch.storage import unique_destination as free_name
from cloudfetch.torrents import TorrentClient, TorrentClientError, TorrentStatus

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 2.0
# Keys for pg_try_advisory_xact_lock / pg_advisory_xact_lock.
POLL_LOCK_KEY = 0x63_66_70_6C  # "cfpl"
USER_STORAGE_LOCK_CLASS = 0x63_66_75_73  # "cfus"; second key is the user id

_ACTIVE = (TransferState.QUEUED, TransferState.DOWNLOADING)


def _fail(session: Session, transfer: Transfer, error: str) -> None:
    log.warning("transfer %s failed: %s", transfer.id, error)
    transfer.state = TransferState.FAILED
    transfer.error = error[:2000]
    session.commit()


def _lock_user_storage(session: Session, user_id: int) -> None:
    # Two workers finishing downloads for one user must not pick the same free name.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:cls, :uid)"),
        {"cls": USER_STORAGE_LOCK_CLASS, "uid": user_id},
    )


def _after_completion(file_ids: list[int], paths: list[str]) -> None:
    index_files.delay(file_ids)
    for file_id, path in zip(file_ids, paths, strict=True):
        if media.is_video(path):
            make_thumbnail.delay(file_id)


@shared_task(name="cloudfetch.fetch_url")
def fetch_url(transfer_id: int) -> None:
    svc = services.current()
    settings = svc.settings
    with svc.sessions() as session:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None or transfer.state in (TransferState.COMPLETED, TransferState.FAILED):
            return
        transfer.state = TransferState.DOWNLOADING
        session.commit()
        url, user_id = transfer.source, transfer.user_id

    last_report = 0.0

    def report(size: int, total: int | None) -> None:
        nonlocal last_report
        if total and time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
            last_report = time.monotonic()
            with svc.sessions() as s:
                s.execute(
                    Transfer.__table__.update()
                    .where(Transfer.id == transfer_id)
                    .values(progress=min(size / total, 1.0), bytes_total=total)
                )
                s.commit()

    try:
        fetched = fetch.download(
            url,
            settings.incoming_dir / str(transfer_id),
            settings.max_download_bytes,
            allow_private=settings.allow_private_urls,
            on_progress=report,
        )
    except fetch.FetchError as exc:
        _remove_dir(settings.incoming_dir / str(transfer_id))
        with svc.sessions() as session:
            transfer = session.get(Transfer, transfer_id)
            if transfer is not None:
                _fail(session, transfer, str(exc))
        return

    with svc.sessions() as session:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None:  # deleted while downloading
            _remove_dir(settings.incoming_dir / str(transfer_id))
            return
        _lock_user_storage(session, user_id)
        user_dir = settings.user_dir(user_id)
        user_dir.mkdir(parents=True, exist_ok=True)
        destination = free_name(user_dir, fetched.name)
        relative = destination.relative_to(user_dir).as_posix()
        stored = StoredFile(
            user_id=user_id, transfer_id=transfer_id, path=relative, size=fetched.size
        )
        session.add(stored)
        transfer.state = TransferState.COMPLETED
        transfer.progress = 1.0
        transfer.name = relative
        transfer.bytes_total = fetched.size
        transfer.completed_at = datetime.now(UTC)
        session.flush()
        move_into(fetched.path, destination)
        try:
            session.commit()
        except Exception:
            # The row is gone with the rollback; the file must not stay without one.
            destination.unlink(missing_ok=True)
            raise
        _remove_dir(settings.incoming_dir / str(transfer_id))
        _after_completion([stored.id], [relative])


@shared_task(name="cloudfetch.start_torrent")
def start_torrent(transfer_id: int) -> None:
    svc = services.current()
    with svc.sessions() as session:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None or transfer.state != TransferState.QUEUED:
            return
        source: str | bytes = (
            transfer.torrent_data
            if transfer.kind == TransferKind.TORRENT and transfer.torrent_data
            else transfer.source
        )
        download_dir = svc.settings.incoming_dir / str(transfer_id)
        download_dir.mkdir(parents=True, exist_ok=True)
        try:
            info_hash = svc.torrent_client().add(source, download_dir)
        except TorrentClientError as exc:
            _fail(session, transfer, str(exc))
            return
        transfer.info_hash = info_hash
        transfer.state = TransferState.DOWNLOADING
        session.commit()


class UnsafeTorrent(Exception):
    pass


def _complete_torrent(
    svc: services.Services,
    session: Session,
    transfer: Transfer,
    status: TorrentStatus,
    source_dir: Path,
    link: bool,
) -> tuple[list[int], list[str]]:
    """Put a finished torrent's data from source_dir into the user's storage and record its
    files: moved with one rename, or (`link`) as hard links, leaving the source for others."""
    try:
        top = safe_relative_path(status.name)
        relatives = [safe_relative_path(f) for f in status.files]
        for relative in relatives:
            resolve_inside(source_dir, relative)
    except UnsafePath as exc:
        raise UnsafeTorrent(f"unsafe file name from Transmission: {exc}") from None
    if "/" in top or any(r != top and not r.startswith(top + "/") for r in relatives):
        raise UnsafeTorrent(f"torrent files are not all under {top!r}")
    _lock_user_storage(session, transfer.user_id)
    user_dir = svc.settings.user_dir(transfer.user_id)
    user_dir.mkdir(parents=True, exist_ok=True)
    destination = free_name(user_dir, top)
    new_top = destination.name
    stored = []
    for relative in relatives:
        path = new_top + relative[len(top) :]
        size = (source_dir / relative).stat().st_size
        stored.append(
            StoredFile(user_id=transfer.user_id, transfer_id=transfer.id, path=path, size=size)
        )
    session.add_all(stored)
    transfer.state = TransferState.COMPLETED
    transfer.progress = 1.0
    transfer.name = new_top
    transfer.bytes_total = sum(f.size for f in stored)
    transfer.completed_at = datetime.now(UTC)
    session.flush()
    if link:
        link_tree(source_dir / top, destination)
    else:
        move_into(source_dir / top, destination)
    try:
        session.commit()
    except Exception:
        if link and destination.is_dir():
            _remove_dir(destination)
        elif link:
            destination.unlink(missing_ok=True)
        else:
            move_into(destination, source_dir / top)
        raise
    return [f.id for f in stored], [f.path for f in stored]


def _complete_group(
    svc: services.Services,
    session: Session,
    client: TorrentClient,
    status: TorrentStatus,
    transfers: list[Transfer],
) -> None:
    """Every transfer of one finished torrent (users who added the same one share its download):
    all but the last get hard links, the last gets the bytes by rename; then the torrent leaves
    Transmission and the incoming directories go. A torrent Transmission keeps outside the
    incoming tree is not the app's: its transfers fail and nothing of it is touched."""
    incoming = svc.settings.incoming_dir
    source_dir = Path(status.download_dir) if status.download_dir else None
    if source_dir is None or source_dir.parent != incoming:
        for transfer in transfers:
            _fail(session, transfer, f"Transmission keeps it outside {incoming}: {source_dir}")
        return
    done = []
    for number, transfer in enumerate(transfers):
        link = number < len(transfers) - 1
        try:
            done.append(_complete_torrent(svc, session, transfer, status, source_dir, link))
        except UnsafeTorrent as exc:
            session.rollback()
            _fail(session, transfer, str(exc))
    try:
        client.remove(status.info_hash, delete_data=False)
    except TorrentClientError as exc:
        log.warning("torrent %s done but still in Transmission: %s", status.info_hash, exc)
    _remove_dir(source_dir)
    for transfer in transfers:
        _remove_dir(incoming / str(transfer.id))
    for file_ids, paths in done:
        _after_completion(file_ids, paths)


@shared_task(name="cloudfetch.poll_torrents")
def poll_torrents() -> int:
    """Update progress of torrent transfers; finish the completed ones. Returns how many
    transfers were looked at (0 when another worker is already polling)."""
    svc = services.current()
    # A session-level lock on a connection of its own: the session below commits once per
    # transfer, which would end a transaction-level lock after the first one.
    with svc.engine.connect() as lock:
        if not lock.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": POLL_LOCK_KEY}):
            return 0
        try:
            return _poll(svc)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": POLL_LOCK_KEY})
            lock.commit()


def _poll(svc: services.Services) -> int:
    with svc.sessions() as session:
        active = session.execute(
            select(Transfer.id, Transfer.info_hash)
            .where(
                Transfer.state == TransferState.DOWNLOADING,
                Transfer.kind.in_([TransferKind.MAGNET, TransferKind.TORRENT]),
                Transfer.info_hash.is_not(None),
            )
            .order_by(Transfer.id)
        ).all()
        if not active:
            return 0
        try:
            client = svc.torrent_client()
        except TorrentClientError as exc:
            # Transmission being away is not the transfers' fault: try again next poll.
            log.warning("poll skipped: %s", exc)
            return 0
        by_hash: dict[str, list[int]] = {}
        for transfer_id, info_hash in active:
            by_hash.setdefault(info_hash, []).append(transfer_id)
        for info_hash, ids in by_hash.items():
            try:
                status = client.status(info_hash)
            except TorrentClientError as exc:
                log.warning("poll stopped: %s", exc)
                return 0
            transfers = [t for t in (session.get(Transfer, i) for i in ids) if t is not None]
            if status is None:
                for transfer in transfers:
                    _fail(session, transfer, "the torrent is no longer in Transmission")
            elif status.error:
                for transfer in transfers:
                    _fail(session, transfer, f"Transmission: {status.error}")
            elif status.done:
                _complete_group(svc, session, client, status, transfers)
            else:
                for transfer in transfers:
                    transfer.progress = status.progress
                    transfer.name = status.name
                    transfer.bytes_total = status.size or None
                session.commit()
        return len(active)


@shared_task(name="cloudfetch.cancel_torrent")
def cancel_torrent(transfer_id: int, info_hash: str) -> None:
    """A deleted transfer: drop it from Transmission with its partial data, unless another
    user's transfer shares the torrent (then its bytes stay) or Transmission keeps it outside
    the incoming tree (then it is not the app's to delete)."""
    svc = services.current()
    own_dir = svc.settings.incoming_dir / str(transfer_id)
    with svc.sessions() as session:
        shared = session.scalar(
            select(Transfer.id)
            .where(Transfer.info_hash == info_hash, Transfer.state.in_(_ACTIVE))
            .limit(1)
        )
    try:
        client = svc.torrent_client()
        status = client.status(info_hash)
        if status is not None:
            where = Path(status.download_dir)
            if shared is None and where.parent == svc.settings.incoming_dir:
                client.remove(info_hash, delete_data=True)
            elif where == own_dir:
                return  # the other transfers still need these bytes
    except TorrentClientError as exc:
        log.warning("could not remove torrent %s of transfer %s: %s", info_hash, transfer_id, exc)
        if shared is not None:
            return
    _remove_dir(own_dir)


@shared_task(
    name="cloudfetch.index_files",
    autoretry_for=(SearchUnavailable,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=20,
)
def index_files(file_ids: list[int]) -> None:
    svc = services.current()
    with svc.sessions() as session:
        files = session.scalars(select(StoredFile).where(StoredFile.id.in_(file_ids))).all()
    svc.file_index().add(files)


@shared_task(
    name="cloudfetch.unindex_files",
    autoretry_for=(SearchUnavailable,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=20,
)
def unindex_files(file_ids: list[int]) -> None:
    services.current().file_index().remove(file_ids)


@shared_task(name="cloudfetch.remove_stored_files")
def remove_stored_files(user_id: int, paths: list[str]) -> None:
    """Delete the bytes of deleted files, and the folders they leave empty. Runs on a worker
    (queue transfers), where the storage is; running it twice is harmless."""
    user_dir = services.current().settings.user_dir(user_id)
    for relative in paths:
        try:
            remove_file(user_dir, relative)
        except (OSError, UnsafePath) as exc:
            log.error("user %s: %s stays on disk: %s", user_id, relative, exc)


@shared_task(name="cloudfetch.make_thumbnail")
def make_thumbnail(file_id: int, ffmpeg: str = "ffmpeg") -> str:
    svc = services.current()
    with svc.sessions() as session:
        stored = session.get(StoredFile, file_id)
        if stored is None:
            return "gone"
        user_dir = svc.settings.user_dir(stored.user_id)
        thumbnail = f".thumbnails/{stored.id}.jpg"
        try:
            media.make_thumbnail(user_dir / stored.path, user_dir / thumbnail, ffmpeg=ffmpeg)
        except media.FfmpegMissing as exc:
            log.warning("no thumbnail for file %s: %s", file_id, exc)
            stored.media_state, stored.media_error = MediaState.FFMPEG_MISSING, str(exc)
        except media.ThumbnailFailed as exc:
            log.warning("thumbnail for file %s failed: %s", file_id, exc)
            stored.media_state, stored.media_error = MediaState.FAILED, str(exc)[:2000]
        else:
            stored.media_state, stored.thumbnail_path, stored.media_error = (
                MediaState.DONE,
                thumbnail,
                None,
            )
        session.commit()
        return stored.media_state


def _remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
