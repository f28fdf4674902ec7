"""Celery tasks called directly, checked against the real database and filesystem. URLs are
served by a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace

import pytest
from celery.result import EagerResult
from cloudfetch import services, tasks
from cloudfetch.celery_app import celery_init_app
from cloudfetch.config import Settings
from cloudfetch.models import StoredFile, Transfer
from conftest import User, queued, wait_for
from flask.testing import FlaskClient
from http_source import Paused, Routes


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
    """The user deletes the transfer while the worker is receiving it: the server holds the
    rest of the body back until the delete has happened."""
    base, routes = http_server
    body = Paused(head=b"h" * 50_000, tail=b"t" * 50_000)
    routes["/slow.iso"] = (200, {}, body)
    transfer_id = add_url(client, alice, f"{base}/slow.iso")
    results: list[EagerResult] = []
    worker = threading.Thread(
        target=lambda: results.append(tasks.fetch_url.apply(args=[transfer_id]))
    )
    worker.start()
    try:
        assert body.sending.wait(timeout=60), "the worker never started the download"
        incoming = settings.incoming_dir / str(transfer_id)
        # Its temporary file exists once the worker has the response headers.
        partial = wait_for(lambda: list(incoming.glob(".fetch-*")))
        assert transfer(transfer_id).state == "downloading"
        response = client.delete(f"/api/transfers/{transfer_id}", headers=alice.headers)
        assert response.status_code == 204
        assert partial[0].exists(), "deleted while the download was still under way"
    finally:
        body.released.set()
        worker.join(timeout=120)
    assert not worker.is_alive()
    [result] = results
    assert result.successful(), result.traceback
    assert files_of(alice) == []
    assert not settings.user_dir(alice.id).exists() or not any(
        settings.user_dir(alice.id).iterdir()
    )
    assert no_leftovers(settings), list(settings.incoming_dir.rglob("*"))
    assert queued("index") == [] and queued("media") == []


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
    conf = celery_init_app(settings).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_default_delivery_mode == "persistent"
    assert [q.name for q in conf.task_queues if q.durable] == ["transfers", "media", "index"]


WORKER_TASKS = """
import json, sys
import cloudfetch.worker as entry
before = "cloudfetch.tasks" in sys.modules
entry.app.loader.import_default_modules()  # what `celery -A cloudfetch.worker worker` does first
names = sorted(n for n in entry.app.tasks if n.startswith("cloudfetch."))
print(json.dumps({"imported_before": before, "tasks": names,
                  "beat": entry.app.conf.beat_schedule["poll-torrents"]["task"],
                  "broker": entry.app.conf.broker_url}))
"""


def test_the_worker_entry_point_knows_every_task(settings: Settings) -> None:
    """In a fresh interpreter, as the worker starts: cloudfetch.worker configures Celery from
    the environment, and the app's `include` brings in every task by the name messages carry."""
    env = {
        "PATH": os.environ["PATH"],
        **{
            f"CLOUDFETCH_{key}": value
            for key, value in {
                "DATABASE_URL": settings.database_url,
                "BROKER_URL": "amqp://cloudfetch:pw@mq.invalid:5672/cloudfetch",
                "SOLR_URL": settings.solr_url,
                "TRANSMISSION_URL": settings.transmission_url,
                "TRANSMISSION_USERNAME": "u",
                "TRANSMISSION_PASSWORD": "p",
                "STORAGE_ROOT": str(settings.storage_root),
                "SECRET_KEY": settings.secret_key,
            }.items()
        },
    }
    proc = subprocess.run(
        [sys.executable, "-c", WORKER_TASKS], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found == {
        "imported_before": False,
        "tasks": [
            "cloudfetch.cancel_torrent",
            "cloudfetch.fetch_url",
            "cloudfetch.index_files",
            "cloudfetch.make_thumbnail",
            "cloudfetch.poll_torrents",
            "cloudfetch.remove_stored_files",
            "cloudfetch.start_torrent",
            "cloudfetch.unindex_files",
        ],
        "beat": "cloudfetch.poll_torrents",
        "broker": "amqp://cloudfetch:pw@mq.invalid:5672/cloudfetch",
    }
