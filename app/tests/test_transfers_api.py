"""Adding, listing and deleting transfers through the API; every refusal writes nothing."""

from __future__ import annotations

import io

import pytest
from cloudfetch import services
from cloudfetch.bencode import encode
from cloudfetch.models import Transfer
from conftest import User, make_torrent, queued
from flask.testing import FlaskClient
from sqlalchemy import func, select

HASH = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
MAGNET = f"magnet:?xt=urn:btih:{HASH}&dn=Example"


def count_transfers() -> int:
    with services.current().sessions() as s:
        return s.scalar(select(func.count()).select_from(Transfer)) or 0


def upload(client: FlaskClient, user: User, data: bytes, name: str = "x.torrent"):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/transfers",
        data={"torrent": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        headers=user.headers,
    )


def test_url_transfer_is_queued_for_a_worker(client: FlaskClient, alice: User) -> None:
    response = client.post(
        "/api/transfers", json={"url": "https://example.org/a.iso"}, headers=alice.headers
    )
    assert response.status_code == 202
    body = response.get_json()
    assert (body["kind"], body["state"], body["source"]) == (
        "url",
        "queued",
        "https://example.org/a.iso",
    )
    assert queued() == [("cloudfetch.fetch_url", [body["id"]])]


@pytest.mark.parametrize(
    "magnet",
    [MAGNET, "magnet:?dn=x&xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"],
)
def test_magnet_transfer_is_queued(client: FlaskClient, alice: User, magnet: str) -> None:
    response = client.post("/api/transfers", json={"magnet": magnet}, headers=alice.headers)
    assert response.status_code == 202
    body = response.get_json()
    assert body["kind"] == "magnet"
    assert queued() == [("cloudfetch.start_torrent", [body["id"]])]
    with services.current().sessions() as s:
        assert s.get(Transfer, body["id"]).info_hash == HASH  # type: ignore[union-attr]


def test_torrent_upload_is_queued_with_its_metadata(client: FlaskClient, alice: User) -> None:
    torrent = make_torrent("album", {"album/01.flac": b"a" * 100, "album/02.flac": b"b" * 50})
    response = upload(client, alice, torrent)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert (body["kind"], body["name"]) == ("torrent", "album")
    assert queued() == [("cloudfetch.start_torrent", [body["id"]])]
    with services.current().sessions() as s:
        assert s.get(Transfer, body["id"]).torrent_data == torrent  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "magnet",
    [
        "magnet:?dn=no-hash",
        "magnet:?xt=urn:btih:123",
        "magnet:?xt=urn:btih:" + "z" * 40,
        "magnet:?xt=urn:sha1:" + "a" * 40,
        "http://example.org/?xt=urn:btih:" + "a" * 40,
        "magnet:?xt=urn:btih:" + "a" * 5000,
    ],
)
def test_malformed_magnet_is_400(client: FlaskClient, alice: User, magnet: str) -> None:
    response = client.post("/api/transfers", json={"magnet": magnet}, headers=alice.headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_source"
    assert count_transfers() == 0 and queued() == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/file",
        "not a url",
        "http://",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://example.org:99999/x",
        "https://exa mple.org/x",
        "//example.org/x",
    ],
)
def test_malformed_url_is_400(client: FlaskClient, alice: User, url: str) -> None:
    response = client.post("/api/transfers", json={"url": url}, headers=alice.headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_source"
    assert count_transfers() == 0 and queued() == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n not a torrent", "not bencoded"),
        (encode({"announce": "http://t/a"}), "no info dictionary"),
        (
            encode({"info": {"name": "x", "piece length": 16384, "pieces": b"short", "length": 1}}),
            "pieces",
        ),
        (make_torrent("../escape", {"../escape": b"x"}), "unsafe file name"),
        (make_torrent("dir", {"dir/../../etc/cron.d/x": b"x"}), "unsafe file name"),
        (make_torrent("dir", {"dir//abs": b"x", "dir/ok": b"y"}), "unsafe file name"),
        (make_torrent("dir", {"dir/a\\..\\b": b"x"}), "unsafe file name"),
        (make_torrent("ok", {"ok": b"x"}) + b"trailing", "not bencoded"),
    ],
)
def test_non_torrent_upload_is_400(
    client: FlaskClient, alice: User, data: bytes, reason: str
) -> None:
    response = upload(client, alice, data)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_torrent"
    assert reason in body["message"]
    assert count_transfers() == 0 and queued() == []


def test_oversize_torrent_is_413(client: FlaskClient, alice: User) -> None:
    # Just over the configured limit (64 KiB in the tests): refused by the flow's own check.
    big = make_torrent("big", {"big": b"x"}, piece_length=1) + b""
    padded = big[:-1] + b"4:padd" + b"x" * 70_000 + b"e"
    response = upload(client, alice, padded)
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"
    # Far over: refused by the request size limit before the body is read.
    response = upload(client, alice, b"d" + b"x" * 500_000)
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"
    assert count_transfers() == 0 and queued() == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "invalid_request"),
        ({"url": None, "magnet": ""}, "invalid_request"),
        ({"url": "https://example.org/a", "magnet": MAGNET}, "invalid_request"),
        ({"url": 5}, "invalid_source"),
        ({"magnet": ["x"]}, "invalid_source"),
        # Falsy, but sent: a bad source, not a missing one (these once crashed with a 500).
        ({"url": 0}, "invalid_source"),
        ({"url": []}, "invalid_source"),
        ({"url": {}}, "invalid_source"),
        ({"magnet": False}, "invalid_source"),
    ],
)
def test_transfer_needs_exactly_one_valid_source(
    client: FlaskClient, alice: User, body: dict[str, object], error: str
) -> None:
    """No source or several is a malformed request; one source of the wrong type is a
    malformed source, like any other bad URL or magnet."""
    response = client.post("/api/transfers", json=body, headers=alice.headers)
    assert (response.status_code, response.get_json()["error"]) == (400, error)
    assert count_transfers() == 0 and queued() == []


def test_upload_without_torrent_field_is_400(client: FlaskClient, alice: User) -> None:
    response = client.post(
        "/api/transfers",
        data={"file": (io.BytesIO(b"x"), "x.torrent")},
        content_type="multipart/form-data",
        headers=alice.headers,
    )
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_request")
    assert count_transfers() == 0 and queued() == []


def test_same_torrent_twice_is_409_for_one_user_and_shared_across_users(
    client: FlaskClient, alice: User, bob: User
) -> None:
    first = client.post("/api/transfers", json={"magnet": MAGNET}, headers=alice.headers)
    assert first.status_code == 202
    again = client.post("/api/transfers", json={"magnet": MAGNET}, headers=alice.headers)
    assert again.status_code == 409 and again.get_json()["error"] == "already_fetching"
    assert count_transfers() == 1
    # Another user may fetch it too: both transfers share Transmission's one download.
    other = client.post("/api/transfers", json={"magnet": MAGNET}, headers=bob.headers)
    assert other.status_code == 202
    assert count_transfers() == 2


def test_transfers_are_private_and_deletable(client: FlaskClient, alice: User, bob: User) -> None:
    made = client.post("/api/transfers", json={"magnet": MAGNET}, headers=alice.headers)
    transfer_id = made.get_json()["id"]
    queued()
    assert [t["id"] for t in client.get("/api/transfers", headers=alice.headers).get_json()] == [
        transfer_id
    ]
    assert client.get("/api/transfers", headers=bob.headers).get_json() == []
    assert client.get(f"/api/transfers/{transfer_id}", headers=bob.headers).status_code == 404
    assert client.delete(f"/api/transfers/{transfer_id}", headers=bob.headers).status_code == 404
    assert count_transfers() == 1
    assert client.get(f"/api/transfers/{transfer_id}", headers=alice.headers).status_code == 200
    # Deleting the queued torrent also asks a worker to remove it from Transmission.
    assert client.delete(f"/api/transfers/{transfer_id}", headers=alice.headers).status_code == 204
    assert queued() == [("cloudfetch.cancel_torrent", [transfer_id, HASH])]
    assert count_transfers() == 0
