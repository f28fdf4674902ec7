"""Celery tasks called directly, checked against the real database and filesystem. URLs are
served by a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace

import pytest
from cloudfetch import services, tasks
from cloudfetch.config import Settings
from cloudfetch.models import StoredFile, Transfer
from conftest import Routes, User, queued
from flask.testing import FlaskClient


def add_url(client: FlaskClient, user: User, url: str) -> int:
    response = client.post("/api/transfers", json={"url": url}, headers=user.headers)
    assert response.status_code == 202, response.get_json()
    assert queued() == [("cloudfetch.fetch_url", [response.get_json()["id"]])]
    return response.get_json()["id"]


def transfer(transfer_id: int) -> Transfer:
    with services.current().sessions() as s:
        found = s.get(Transfer, transfer_id)
        assert found is not None
        return found


def files_of(user: User) -> list[tuple[str, int]]:
    with services.current().sessions() as s:
        rows = s.query(StoredFile).filter_by(user_id=user.id).order_by(StoredFile.path).all()
        return [(f.path, f.size) for f in rows]


def no_leftovers(settings: Settings) -> bool:
    return not settings.incoming_dir.exists() or not any(settings.incoming_dir.rglob("*"))


def test_url_download_lands_in_user_storage(
    client: FlaskClient,
    settings: Settings,
    alice: User,
    http_server: tuple[str, Routes],
) -> None:
    base, routes = http_server
    content = bytes(range(256)) * 1000
    routes["/files/big%20buck.mkv"] = (200, {"Content-Length": str(len(content))}, content)
    transfer_id = add_url(client, alice, f"{base}/files/big%20buck.mkv")
    tasks.fetch_url.apply(args=[transfer_id])
    done = transfer(transfer_id)
    assert (done.state, done.progress, done.bytes_total) == ("completed", 1.0, len(content))
    assert files_of(alice) == [("big buck.mkv", len(content))]
    stored = settings.user_dir(alice.id) / "big buck.mkv"
    assert stored.read_bytes() == content
    # An ordinary file (not mkstemp's 0600): the storage's nginx and the backups read it.
    umask = os.umask(0)
    os.umask(umask)
    assert stored.stat().st_mode & 0o777 == 0o666 & ~umask
    assert no_leftovers(settings)
    [(_, [file_ids])] = queued("index")
    assert queued("media") == [("cloudfetch.make_thumbnail", file_ids)]
    # Acknowledged late, a task may be delivered again: the second run changes nothing.
    tasks.fetch_url.apply(args=[transfer_id])
    assert files_of(alice) == [("big buck.mkv", len(content))]
    # The API shows it too.
    listed = client.get("/api/files", headers=alice.headers).get_json()["files"]
    assert [f["name"] for f in listed] == ["big buck.mkv"]


def test_remote_file_name_cannot_escape_and_never_overwrites(
    client: FlaskClient,
    settings: Settings,
    alice: User,
    http_server: tuple[str, Routes],
) -> None:
    base, routes = http_server
    evil = {"Content-Disposition": 'attachment; filename="../../../etc/evil.sh"'}
    routes["/one"] = (200, {**evil, "Content-Length": "5"}, b"first")
    routes["/two"] = (200, {**evil, "Content-Length": "6"}, b"second")
    for path in ("/one", "/two"):
        tasks.fetch_url.apply(args=[add_url(client, alice, base + path)])
    assert files_of(alice) == [("evil (2).sh", 6), ("evil.sh", 5)]
    assert (settings.user_dir(alice.id) / "evil.sh").read_bytes() == b"first"
    assert not (settings.storage_root.parent / "etc").exists()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked-lying"])
def test_download_over_the_limit_fails_and_leaves_nothing(
    client: FlaskClient,
    settings: Settings,
    alice: User,
    http_server: tuple[str, Routes],
    declared: bool,
) -> None:
    base, routes = http_server
    content = b"z" * (settings.max_download_bytes + 1)
    headers = {"Content-Length": str(len(content))} if declared else {}
    routes["/huge.bin"] = (200, headers, content)
    transfer_id = add_url(client, alice, f"{base}/huge.bin")
    tasks.fetch_url.apply(args=[transfer_id])
    failed = transfer(transfer_id)
    assert failed.state == "failed"
    assert "limit" in (failed.error or "")
    assert files_of(alice) == []
    assert not settings.user_dir(alice.id).exists() or not any(
        settings.user_dir(alice.id).iterdir()
    )
    assert no_leftovers(settings)


def test_http_error_marks_the_transfer_failed(
    client: FlaskClient, alice: User, http_server: tuple[str, Routes]
) -> None:
    base, _routes = http_server
    transfer_id = add_url(client, alice, f"{base}/missing")
    tasks.fetch_url.apply(args=[transfer_id])
    failed = transfer(transfer_id)
    assert (failed.state, failed.error) == ("failed", "server answered HTTP 404")
    body = client.get(f"/api/transfers/{transfer_id}", headers=alice.headers).get_json()
    assert body["state"] == "failed"


def test_private_addresses_are_refused_unless_allowed(
    client: FlaskClient, settings: Settings, alice: User, http_server: tuple[str, Routes]
) -> None:
    base, routes = http_server
    routes["/internal"] = (200, {"Content-Length": "2"}, b"hi")
    services.configure(replace(settings, allow_private_urls=False))
    transfer_id = add_url(client, alice, f"{base}/internal")
    tasks.fetch_url.apply(args=[transfer_id])
    refused = transfer(transfer_id)
    assert refused.state == "failed"
    assert "non-public address 127.0.0.1" in (refused.error or "")
    assert files_of(alice) == []


def test_transfer_deleted_during_download_leaves_no_file(
    client: FlaskClient, settings: Settings, alice: User, http_server: tuple[str, Routes]
) -> None:
    base, routes = http_server
    routes["/x"] = (200, {"Content-Length": "1"}, b"x")
    transfer_id = add_url(client, alice, f"{base}/x")
    assert client.delete(f"/api/transfers/{transfer_id}", headers=alice.headers).status_code == 204
    tasks.fetch_url.apply(args=[transfer_id])
    assert files_of(alice) == []


def stored_video(settings: Settings, user: User, name: str, content: bytes | None) -> int:
    target = settings.user_dir(user.id) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        # A real two-second video, made by ffmpeg itself.
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=2:size=160x120:rate=10",
                "-pix_fmt",
                "yuv420p",
                str(target),
            ],
            check=True,
        )
    else:
        target.write_bytes(content)
    with services.current().sessions() as s:
        row = StoredFile(user_id=user.id, path=name, size=target.stat().st_size)
        s.add(row)
        s.commit()
        return row.id


def media_of(file_id: int) -> tuple[str, str | None, str | None]:
    with services.current().sessions() as s:
        row = s.get(StoredFile, file_id)
        assert row is not None
        return row.media_state, row.thumbnail_path, row.media_error


def test_missing_ffmpeg_is_recorded_not_crashed_on(
    client: FlaskClient, settings: Settings, alice: User
) -> None:
    file_id = stored_video(settings, alice, "clip.mkv", b"not really a video")
    result = tasks.make_thumbnail.apply(args=[file_id], kwargs={"ffmpeg": "ffmpeg-not-here"})
    assert result.successful()
    state, thumbnail, error = media_of(file_id)
    assert (state, thumbnail) == ("ffmpeg-missing", None)
    assert "ffmpeg-not-here is not installed" in (error or "")
    shown = client.get(f"/api/files/{file_id}", headers=alice.headers).get_json()
    assert shown["media_state"] == "ffmpeg-missing"


def test_ffmpeg_makes_a_thumbnail(client: FlaskClient, settings: Settings, alice: User) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg missing: run `make setup` (requirements/apt-app.txt)")
    file_id = stored_video(settings, alice, "clip.mp4", None)
    assert tasks.make_thumbnail.apply(args=[file_id]).get() == "done"
    state, thumbnail, _ = media_of(file_id)
    assert state == "done" and thumbnail == f".thumbnails/{file_id}.jpg"
    jpeg = (settings.user_dir(alice.id) / thumbnail).read_bytes()
    assert jpeg[:3] == b"\xff\xd8\xff"


def test_broken_video_is_recorded_as_failed(
    client: FlaskClient, settings: Settings, alice: User
) -> None:
    file_id = stored_video(settings, alice, "broken.mkv", b"\x00" * 100)
    assert tasks.make_thumbnail.apply(args=[file_id]).get() == "failed"
    state, thumbnail, error = media_of(file_id)
    assert state == "failed" and thumbnail is None and error


def test_thumbnail_of_deleted_file_is_a_no_op(settings: Settings, alice: User) -> None:
    assert tasks.make_thumbnail.apply(args=[999999]).get() == "gone"


def test_celery_is_configured_to_lose_no_task(settings: Settings) -> None:
    tasks.configure_celery(settings)
    conf = tasks.celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_default_delivery_mode == "persistent"
    assert [q.name for q in conf.task_queues if q.durable] == ["transfers", "media", "index"]
