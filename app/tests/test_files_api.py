"""Browsing, downloading (X-Accel-Redirect), deleting and searching files."""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pysolr
import pytest
from celery import current_app
from cloudfetch import search, services, tasks
from cloudfetch.config import Settings
from cloudfetch.models import StoredFile, Transfer
from cloudfetch.web import create_app
from conftest import User, make_torrent, queued, wait_for
from flask.testing import FlaskClient
from http_source import Routes
from solr_server import SolrCore


def store(settings: Settings, user: User, path: str, content: bytes) -> int:
    """Put a file in a user's storage the way a finished transfer does: bytes and row."""
    target = settings.user_dir(user.id) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    with services.current().sessions() as s:
        row = StoredFile(user_id=user.id, path=path, size=len(content))
        s.add(row)
        s.commit()
        return row.id


@pytest.fixture
def alice_files(settings: Settings, alice: User) -> dict[str, int]:
    return {
        path: store(settings, alice, path, content)
        for path, content in {
            "notes.txt": b"hello",
            "Show/S01/e01.mkv": b"video-1",
            "Show/S01/e02.mkv": b"video-2!",
            "Show/cover 100%.jpg": b"jpg",
        }.items()
    }


def test_browse_lists_one_directory_at_a_time(
    client: FlaskClient, alice: User, alice_files: dict[str, int]
) -> None:
    root = client.get("/api/files", headers=alice.headers).get_json()
    assert root["dirs"] == ["Show"]
    assert [f["path"] for f in root["files"]] == ["notes.txt"]
    show = client.get("/api/files?path=Show", headers=alice.headers).get_json()
    assert show["dirs"] == ["S01"]
    assert [f["name"] for f in show["files"]] == ["cover 100%.jpg"]
    season = client.get("/api/files?path=Show/S01/", headers=alice.headers).get_json()
    assert [(f["name"], f["size"]) for f in season["files"]] == [("e01.mkv", 7), ("e02.mkv", 8)]
    missing = client.get("/api/files?path=Nothing", headers=alice.headers)
    assert missing.status_code == 404


@pytest.mark.parametrize("path", ["../u2", "/etc", "Show/../../u2", "..", "a\x00b", "a\\..\\b"])
def test_path_traversal_in_browse_is_400(
    client: FlaskClient, alice: User, alice_files: dict[str, int], path: str
) -> None:
    response = client.get("/api/files", query_string={"path": path}, headers=alice.headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_path"


def test_download_is_handed_to_nginx(
    client: FlaskClient, alice: User, alice_files: dict[str, int]
) -> None:
    file_id = alice_files["Show/cover 100%.jpg"]
    response = client.get(f"/api/files/{file_id}/download", headers=alice.headers)
    assert response.status_code == 200
    assert (
        response.headers["X-Accel-Redirect"] == f"/_protected/u{alice.id}/Show/cover%20100%25.jpg"
    )
    assert (
        response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''cover%20100%25.jpg"
    )
    assert response.data == b""  # not one byte of the file through Python
    by_path = client.get(
        "/api/download", query_string={"path": "Show/cover 100%.jpg"}, headers=alice.headers
    )
    assert by_path.headers["X-Accel-Redirect"] == response.headers["X-Accel-Redirect"]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("../../etc/passwd", 400, "invalid_path"),
        ("/etc/passwd", 400, "invalid_path"),
        ("Show/../../../u2/secret", 400, "invalid_path"),
        ("Show/../notes.txt", 400, "invalid_path"),
        # The query string is decoded once: "%2e%2e" is a name like any other, and none such
        # exists; decoding it again would turn it into "..".
        ("Show/%2e%2e/x", 404, "not_found"),
    ],
)
def test_path_traversal_in_download_path_is_refused(
    client: FlaskClient,
    alice: User,
    alice_files: dict[str, int],
    path: str,
    status: int,
    error: str,
) -> None:
    response = client.get("/api/download", query_string={"path": path}, headers=alice.headers)
    assert (response.status_code, response.get_json()["error"]) == (status, error)
    assert "X-Accel-Redirect" not in response.headers


def test_another_users_file_is_404(
    client: FlaskClient, settings: Settings, alice: User, bob: User, alice_files: dict[str, int]
) -> None:
    file_id = alice_files["notes.txt"]
    for method, path in [
        ("get", f"/api/files/{file_id}"),
        ("get", f"/api/files/{file_id}/download"),
        ("delete", f"/api/files/{file_id}"),
    ]:
        response = getattr(client, method)(path, headers=bob.headers)
        assert response.status_code == 404, path
        assert response.get_json()["error"] == "not_found"
    by_path = client.get("/api/download?path=notes.txt", headers=bob.headers)
    assert by_path.status_code == 404
    assert (settings.user_dir(alice.id) / "notes.txt").read_bytes() == b"hello"
    assert client.get(f"/api/files/{file_id}", headers=alice.headers).status_code == 200


def indexed(core: SolrCore, user_id: int) -> list[int]:
    """The file ids the real Solr core holds for a user, read from the core itself (the app's
    search re-checks results against the database, which would hide a stale entry)."""
    solr = pysolr.Solr(core.url, auth=(core.username, core.password), timeout=10)
    docs = solr.search("*:*", fq=f"user_id:{user_id}", fl="id", rows=100)
    return sorted(search.file_id(doc["id"]) for doc in docs)


def test_delete_removes_row_bytes_empty_dirs_and_index_entry(
    client: FlaskClient,
    solr_settings: Settings,
    solr_core: SolrCore,
    alice: User,
    alice_files: dict[str, int],
) -> None:
    services.configure(solr_settings)
    tasks.index_files.apply(args=[sorted(alice_files.values())]).get()
    # The index commits within a second.
    wait_for(lambda: indexed(solr_core, alice.id) == sorted(alice_files.values()))
    user_dir = solr_settings.user_dir(alice.id)
    gone = [alice_files["Show/S01/e01.mkv"], alice_files["Show/S01/e02.mkv"]]
    for file_id in gone:
        assert client.delete(f"/api/files/{file_id}", headers=alice.headers).status_code == 204
    # The rows are gone at once; the bytes are removed by a task on a worker, where they live.
    removals = queued("transfers")
    assert removals == [
        ("cloudfetch.remove_stored_files", [alice.id, ["Show/S01/e01.mkv"]]),
        ("cloudfetch.remove_stored_files", [alice.id, ["Show/S01/e02.mkv"]]),
    ]
    assert (user_dir / "Show/S01/e01.mkv").exists()
    for _, args in removals:
        tasks.remove_stored_files.apply(args=args).get()
        tasks.remove_stored_files.apply(args=args).get()  # delivered twice (late acks): harmless
    assert not (user_dir / "Show/S01").exists()
    assert (user_dir / "Show/cover 100%.jpg").exists()
    assert client.get("/api/files?path=Show", headers=alice.headers).get_json()["dirs"] == []
    # The index entries go the same way: still there until a worker runs the task.
    unindexing = queued("index")
    assert unindexing == [("cloudfetch.unindex_files", [[file_id]]) for file_id in gone]
    assert set(gone) <= set(indexed(solr_core, alice.id))
    for _, args in unindexing:
        tasks.unindex_files.apply(args=args).get()
        tasks.unindex_files.apply(args=args).get()
    kept = sorted(set(alice_files.values()) - set(gone))
    assert indexed(solr_core, alice.id) == kept


def test_dev_fallback_sends_the_bytes(settings: Settings, alice_files: dict[str, int]) -> None:
    app = create_app(replace(settings, dev_send_file=True))
    client = app.test_client()
    login = client.post(
        "/api/login", json={"email": "alice@example.org", "password": "correct horse"}
    )
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}
    response = client.get(f"/api/files/{alice_files['notes.txt']}/download", headers=headers)
    assert response.status_code == 200
    assert response.data == b"hello"
    assert "X-Accel-Redirect" not in response.headers


def test_search_through_solr_finds_only_the_users_live_files(
    solr_settings: Settings,
    solr_core: SolrCore,
    alice: User,
    bob: User,
    alice_files: dict[str, int],
) -> None:
    """The API's search against the real core: every word must match, one user's files only,
    and an entry whose file is gone (its unindex task not run yet) is never shown."""
    bob_file = store(solr_settings, bob, "Show/S01/e01.mkv", b"bob's")
    client = create_app(solr_settings).test_client()
    everything = [*alice_files.values(), bob_file]
    tasks.index_files.apply(args=[everything]).get()
    wait_for(lambda: len(indexed(solr_core, alice.id)) == len(alice_files))

    def found(query: str) -> list[str]:
        response = client.get("/api/search", query_string={"q": query}, headers=alice.headers)
        assert response.status_code == 200, response.get_json()
        return sorted(f["path"] for f in response.get_json())

    assert found("show") == ["Show/S01/e01.mkv", "Show/S01/e02.mkv", "Show/cover 100%.jpg"]
    assert found("S01 e02") == ["Show/S01/e02.mkv"]
    assert found("notes") == ["notes.txt"]
    assert found("nothing-like-it") == []
    with services.current().sessions() as s:
        s.delete(s.get(StoredFile, alice_files["Show/S01/e01.mkv"]))
        s.commit()
    assert alice_files["Show/S01/e01.mkv"] in indexed(solr_core, alice.id)
    assert found("show") == ["Show/S01/e02.mkv", "Show/cover 100%.jpg"]


def test_search_without_solr_is_503_and_empty_query_400(
    client: FlaskClient, alice: User, alice_files: dict[str, int]
) -> None:
    down = client.get("/api/search?q=show", headers=alice.headers)
    assert down.status_code == 503
    assert down.get_json()["error"] == "search_unavailable"
    for query in ("", "   ", "..."):
        response = client.get("/api/search", query_string={"q": query}, headers=alice.headers)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_query"


def video(path: Path) -> bytes:
    """A real two-second video, made by ffmpeg."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg missing: run `make setup` (requirements/apt-app.txt)")
    lavfi = ["-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10"]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *lavfi, "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path.read_bytes()


def run_queued(queue: str) -> list[str]:
    """Run every task waiting in a queue of the in-memory broker, as a worker would."""
    names = []
    for name, args in queued(queue):
        result = current_app.tasks[name].apply(args=args)
        assert result.successful(), result.traceback
        names.append(name)
    return names


def test_storage_layout_is_plain_per_user_directories(
    client: FlaskClient,
    tx_settings: Settings,
    alice: User,
    bob: User,
    http_server: tuple[str, Routes],
    tmp_path: Path,
) -> None:
    """What the backup server pulls, as the app's own tasks wrote it: <root>/u<id>/<path> with
    exactly the bytes each file row names, thumbnails in u<id>/.thumbnails/, nothing else but
    an empty .incoming/. URL downloads, a torrent with folders and a thumbnail each put theirs."""
    services.configure(tx_settings)
    root = tx_settings.storage_root
    base, routes = http_server
    clip = video(tmp_path / "clip.mp4")
    sources = {
        (alice, "/a/notes.txt"): b"alice's notes",
        (alice, "/a/clip.mp4"): clip,
        (bob, "/b/notes.txt"): b"bob's notes, same name",
    }
    for (user, path), content in sources.items():
        routes[path] = (200, {"Content-Length": str(len(content))}, content)
        response = client.post("/api/transfers", json={"url": base + path}, headers=user.headers)
        assert response.status_code == 202
    assert run_queued("transfers") == ["cloudfetch.fetch_url"] * 3
    album = {"Album/01 intro.flac": b"a" * 20000, "Album/cd2/02.flac": b"b" * 30000}
    response = client.post(
        "/api/transfers",
        data={"torrent": (io.BytesIO(make_torrent("Album", album)), "album.torrent")},
        content_type="multipart/form-data",
        headers=alice.headers,
    )
    assert response.status_code == 202
    torrent_transfer = response.get_json()["id"]
    # No peers here: the data is where Transmission will look; it verifies it and reports done.
    for path, content in album.items():
        target = tx_settings.incoming_dir / str(torrent_transfer) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    assert run_queued("transfers") == ["cloudfetch.start_torrent"]

    def album_done() -> bool:
        tasks.poll_torrents.apply()
        with services.current().sessions() as s:
            return s.get(Transfer, torrent_transfer).state == "completed"  # type: ignore[union-attr]

    wait_for(album_done)
    assert run_queued("media") == ["cloudfetch.make_thumbnail"]
    queued("index")  # the search index is not part of the storage

    on_disk = {
        p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }
    with services.current().sessions() as s:
        rows = s.query(StoredFile).order_by(StoredFile.user_id, StoredFile.path).all()
        listed = {f"u{r.user_id}/{r.path}": r for r in rows}
        thumbnails = {f"u{r.user_id}/{r.thumbnail_path}" for r in rows if r.thumbnail_path}
    expected = {
        f"u{alice.id}/notes.txt": b"alice's notes",
        f"u{alice.id}/clip.mp4": clip,
        f"u{alice.id}/Album/01 intro.flac": album["Album/01 intro.flac"],
        f"u{alice.id}/Album/cd2/02.flac": album["Album/cd2/02.flac"],
        f"u{bob.id}/notes.txt": b"bob's notes, same name",
    }
    assert sorted(listed) == sorted(expected), "one row per file, named by its place on disk"
    assert thumbnails == {f"u{alice.id}/.thumbnails/{listed[f'u{alice.id}/clip.mp4'].id}.jpg"}
    assert sorted(on_disk) == sorted([*expected, *thumbnails]), "no other file anywhere"
    for name, content in expected.items():
        assert on_disk[name] == content, name
        assert listed[name].size == len(content), name
    [thumbnail] = thumbnails
    assert on_disk[thumbnail][:3] == b"\xff\xd8\xff"  # a JPEG
    directories = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}
    assert directories == {
        ".incoming",
        f"u{alice.id}",
        f"u{alice.id}/.thumbnails",
        f"u{alice.id}/Album",
        f"u{alice.id}/Album/cd2",
        f"u{bob.id}",
    }
