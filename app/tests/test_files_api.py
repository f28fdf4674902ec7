"""Browsing, downloading (X-Accel-Redirect), deleting and searching files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cloudfetch import services, tasks
from cloudfetch.config import Settings
from cloudfetch.models import StoredFile
from cloudfetch.web import create_app
from conftest import User, queued
from flask.testing import FlaskClient


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
    "path", ["../../etc/passwd", "/etc/passwd", "Show/../../../u2/secret", "Show/%2e%2e/x"]
)
def test_path_traversal_in_download_path_is_refused(
    client: FlaskClient, alice: User, alice_files: dict[str, int], path: str
) -> None:
    response = client.get("/api/download", query_string={"path": path}, headers=alice.headers)
    # "%2e%2e" is not decoded twice, so it is just a name that does not exist.
    assert response.status_code in (400, 404)
    assert response.get_json()["error"] in ("invalid_path", "not_found")
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


def test_delete_removes_row_bytes_empty_dirs_and_index_entry(
    client: FlaskClient, settings: Settings, alice: User, alice_files: dict[str, int]
) -> None:
    user_dir = settings.user_dir(alice.id)
    for path in ("Show/S01/e01.mkv", "Show/S01/e02.mkv"):
        assert (
            client.delete(f"/api/files/{alice_files[path]}", headers=alice.headers).status_code
            == 204
        )
    # The rows are gone at once; the bytes are removed by a task on a worker, where they live.
    removals = queued("transfers")
    assert removals == [
        ("cloudfetch.remove_stored_files", [alice.id, ["Show/S01/e01.mkv"]]),
        ("cloudfetch.remove_stored_files", [alice.id, ["Show/S01/e02.mkv"]]),
    ]
    assert (user_dir / "Show/S01/e01.mkv").exists()
    for _, args in removals:
        tasks.remove_stored_files.apply(args=args)
        tasks.remove_stored_files.apply(args=args)  # delivered twice (late acks): harmless
    assert not (user_dir / "Show/S01").exists()
    assert (user_dir / "Show/cover 100%.jpg").exists()
    assert client.get("/api/files?path=Show", headers=alice.headers).get_json()["dirs"] == []
    assert queued("index") == [
        ("cloudfetch.unindex_files", [[alice_files["Show/S01/e01.mkv"]]]),
        ("cloudfetch.unindex_files", [[alice_files["Show/S01/e02.mkv"]]]),
    ]


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


def test_storage_layout_is_plain_per_user_directories(
    settings: Settings, alice: User, alice_files: dict[str, int]
) -> None:
    # What the backup server pulls: <root>/u<id>/<path>, nothing else needed to restore bytes.
    files = sorted(
        p.relative_to(settings.storage_root).as_posix()
        for p in Path(settings.storage_root).rglob("*")
        if p.is_file()
    )
    assert files == [
        f"u{alice.id}/Show/S01/e01.mkv",
        f"u{alice.id}/Show/S01/e02.mkv",
        f"u{alice.id}/Show/cover 100%.jpg",
        f"u{alice.id}/notes.txt",
    ]
