"""The Transmission client code and the torrent tasks against a real transmission-daemon.

No peers here: a torrent is "downloaded" by placing its data in the transfer's incoming
directory before it is added, so Transmission verifies it and reports it complete. Fetching
from real peers is exercised in the lab."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from cloudfetch import services, tasks
from cloudfetch.bencode import parse_torrent
from cloudfetch.config import Settings
from cloudfetch.models import StoredFile, Transfer
from cloudfetch.torrents import TorrentClient, TorrentClientError
from conftest import (
    TRANSMISSION_PASSWORD,
    TRANSMISSION_USER,
    User,
    make_torrent,
    queued,
    wait_for,
)
from flask.testing import FlaskClient


@pytest.fixture
def client_tx(transmission_url: str) -> TorrentClient:
    return TorrentClient(transmission_url, TRANSMISSION_USER, TRANSMISSION_PASSWORD)


def test_add_status_and_remove_a_torrent(client_tx: TorrentClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    content = b"0123456789" * 5000
    (tmp_path / "data.bin").write_bytes(content)
    torrent = make_torrent("data.bin", {"data.bin": content})
    info_hash = client_tx.add(torrent, tmp_path)
    assert info_hash == parse_torrent(torrent).info_hash
    status = wait_for(lambda: (s := client_tx.status(info_hash)) and s.done and s)
    assert (status.name, status.size, status.files, status.error) == (
        "data.bin",
        len(content),
        ["data.bin"],
        None,
    )
    client_tx.remove(info_hash, delete_data=False)
    assert client_tx.status(info_hash) is None
    assert (tmp_path / "data.bin").read_bytes() == content


def test_magnet_without_peers_is_not_done(client_tx: TorrentClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    info_hash = "0123456789abcdef0123456789abcdef01234567"
    assert client_tx.add(f"magnet:?xt=urn:btih:{info_hash}&dn=nothing", tmp_path) == info_hash
    status = client_tx.status(info_hash)
    assert status is not None and not status.done and status.files == []
    client_tx.remove(info_hash, delete_data=True)
    assert client_tx.status(info_hash) is None


def test_wrong_credentials_are_a_clear_error(transmission_url: str) -> None:
    with pytest.raises(TorrentClientError, match="Transmission at"):
        TorrentClient(transmission_url, TRANSMISSION_USER, "wrong-password")


def upload(client: FlaskClient, user: User, torrent: bytes) -> int:
    response = client.post(
        "/api/transfers",
        data={"torrent": (io.BytesIO(torrent), "t.torrent")},
        content_type="multipart/form-data",
        headers=user.headers,
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def test_torrent_transfer_completes_into_user_storage(
    client: FlaskClient, tx_settings: Settings, alice: User, client_tx: TorrentClient
) -> None:
    services.configure(tx_settings)
    files = {"Album/01 intro.flac": b"a" * 40000, "Album/cd2/02.flac": b"b" * 30000}
    torrent = make_torrent("Album", files)
    transfer_id = upload(client, alice, torrent)
    assert queued() == [("cloudfetch.start_torrent", [transfer_id])]
    for path, content in files.items():
        target = tx_settings.incoming_dir / str(transfer_id) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    tasks.start_torrent.apply(args=[transfer_id])
    with services.current().sessions() as s:
        started = s.get(Transfer, transfer_id)
        assert started is not None and started.state == "downloading"
        info_hash = started.info_hash
    assert info_hash == parse_torrent(torrent).info_hash

    def finished() -> bool:
        tasks.poll_torrents.apply()
        with services.current().sessions() as s:
            return s.get(Transfer, transfer_id).state == "completed"  # type: ignore[union-attr]

    wait_for(finished)
    user_dir = tx_settings.user_dir(alice.id)
    for path, content in files.items():
        assert (user_dir / path).read_bytes() == content
    with services.current().sessions() as s:
        rows = s.query(StoredFile).filter_by(transfer_id=transfer_id).order_by(StoredFile.path)
        assert [(f.path, f.size) for f in rows] == [
            ("Album/01 intro.flac", 40000),
            ("Album/cd2/02.flac", 30000),
        ]
    assert client_tx.status(info_hash) is None  # handed over, no longer seeding from incoming
    assert not (tx_settings.incoming_dir / str(transfer_id)).exists()
    assert [name for name, _ in queued("index")] == ["cloudfetch.index_files"]
    body = client.get(f"/api/transfers/{transfer_id}", headers=alice.headers).get_json()
    assert (body["state"], body["progress"], body["name"]) == ("completed", 1.0, "Album")


def test_deleting_an_active_torrent_removes_it_from_transmission(
    client: FlaskClient, tx_settings: Settings, alice: User, client_tx: TorrentClient
) -> None:
    services.configure(tx_settings)
    info_hash = "89abcdef0123456789abcdef0123456789abcdef"
    response = client.post(
        "/api/transfers", json={"magnet": f"magnet:?xt=urn:btih:{info_hash}"}, headers=alice.headers
    )
    transfer_id = response.get_json()["id"]
    queued()
    tasks.start_torrent.apply(args=[transfer_id])
    assert client_tx.status(info_hash) is not None
    assert tasks.poll_torrents.apply().get() == 1  # still waiting for metadata: stays active
    assert client.delete(f"/api/transfers/{transfer_id}", headers=alice.headers).status_code == 204
    [(name, args)] = queued()
    assert name == "cloudfetch.cancel_torrent"
    tasks.cancel_torrent.apply(args=args)
    assert client_tx.status(info_hash) is None
    assert not (tx_settings.incoming_dir / str(transfer_id)).exists()


def test_transmission_down_keeps_transfers_waiting(
    client: FlaskClient,
    tx_settings: Settings,
    settings: Settings,
    alice: User,
    client_tx: TorrentClient,
) -> None:
    services.configure(tx_settings)
    info_hash = "fedcba9876543210fedcba9876543210fedcba98"
    response = client.post(
        "/api/transfers", json={"magnet": f"magnet:?xt=urn:btih:{info_hash}"}, headers=alice.headers
    )
    transfer_id = response.get_json()["id"]
    tasks.start_torrent.apply(args=[transfer_id])
    # The same database, but Transmission unreachable (settings point at a closed port).
    services.configure(replace(tx_settings, transmission_url=settings.transmission_url))
    assert tasks.poll_torrents.apply().get() == 0
    with services.current().sessions() as s:
        assert s.get(Transfer, transfer_id).state == "downloading"  # type: ignore[union-attr]
    client_tx.remove(info_hash, delete_data=True)


def test_start_with_transmission_down_fails_the_transfer_clearly(
    client: FlaskClient, settings: Settings, alice: User
) -> None:
    info_hash = "00112233445566778899aabbccddeeff00112233"
    response = client.post(
        "/api/transfers", json={"magnet": f"magnet:?xt=urn:btih:{info_hash}"}, headers=alice.headers
    )
    transfer_id = response.get_json()["id"]
    tasks.start_torrent.apply(args=[transfer_id])
    with services.current().sessions() as s:
        failed = s.get(Transfer, transfer_id)
        assert failed is not None and failed.state == "failed"
        assert "Transmission at" in (failed.error or "")


def test_two_users_fetching_the_same_torrent_both_get_it(
    client: FlaskClient, tx_settings: Settings, alice: User, bob: User, client_tx: TorrentClient
) -> None:
    """Transmission holds a torrent once: bob's add of alice's torrent joins her download. When
    it is done, both get the files (bob's are hard links to alice's bytes), and bob deleting his
    copy later leaves alice's intact."""
    services.configure(tx_settings)
    files = {"Show/e01.mkv": b"e" * 50000, "Show/e02.mkv": b"f" * 20000}
    torrent = make_torrent("Show", files)
    first = upload(client, alice, torrent)
    for path, content in files.items():
        target = tx_settings.incoming_dir / str(first) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    tasks.start_torrent.apply(args=[first])
    second = upload(client, bob, torrent)
    tasks.start_torrent.apply(args=[second])
    queued()

    def both_finished() -> bool:
        tasks.poll_torrents.apply()
        with services.current().sessions() as s:
            states = {s.get(Transfer, t).state for t in (first, second)}  # type: ignore[union-attr]
        assert "failed" not in states
        return states == {"completed"}

    wait_for(both_finished)
    for user in (alice, bob):
        for path, content in files.items():
            assert (tx_settings.user_dir(user.id) / path).read_bytes() == content
    alice_copy = tx_settings.user_dir(alice.id) / "Show/e01.mkv"
    bob_copy = tx_settings.user_dir(bob.id) / "Show/e01.mkv"
    assert alice_copy.stat().st_ino == bob_copy.stat().st_ino  # stored once
    assert client_tx.status(parse_torrent(torrent).info_hash) is None
    assert not any(tx_settings.incoming_dir.iterdir())
    assert sorted(name for name, _ in queued("index")) == ["cloudfetch.index_files"] * 2
    with services.current().sessions() as s:
        bob_file = s.query(StoredFile).filter_by(user_id=bob.id, path="Show/e01.mkv").one().id
    assert client.delete(f"/api/files/{bob_file}", headers=bob.headers).status_code == 204
    removals = [args for name, args in queued() if name == "cloudfetch.remove_stored_files"]
    assert len(removals) == 1, removals
    tasks.remove_stored_files.apply(args=removals[0])
    assert not bob_copy.exists()
    assert alice_copy.read_bytes() == files["Show/e01.mkv"]


def test_deleting_one_of_two_transfers_of_a_torrent_keeps_the_other_going(
    client: FlaskClient, tx_settings: Settings, alice: User, bob: User, client_tx: TorrentClient
) -> None:
    """Whichever of the two deletes first (here the one whose directory Transmission writes
    into), the torrent stays in Transmission with its data for the other."""
    services.configure(tx_settings)
    files = {"Film/film.mkv": b"m" * 60000}
    torrent = make_torrent("Film", files)
    first = upload(client, alice, torrent)
    target = tx_settings.incoming_dir / str(first) / "Film/film.mkv"
    target.parent.mkdir(parents=True)
    target.write_bytes(files["Film/film.mkv"])
    tasks.start_torrent.apply(args=[first])
    second = upload(client, bob, torrent)
    tasks.start_torrent.apply(args=[second])
    queued()
    assert client.delete(f"/api/transfers/{first}", headers=alice.headers).status_code == 204
    [(name, args)] = queued()
    assert name == "cloudfetch.cancel_torrent"
    tasks.cancel_torrent.apply(args=args)
    info_hash = parse_torrent(torrent).info_hash
    assert client_tx.status(info_hash) is not None

    def finished() -> bool:
        tasks.poll_torrents.apply()
        with services.current().sessions() as s:
            state = s.get(Transfer, second).state  # type: ignore[union-attr]
        assert state != "failed"
        return state == "completed"

    wait_for(finished)
    assert (tx_settings.user_dir(bob.id) / "Film/film.mkv").read_bytes() == files["Film/film.mkv"]
    assert client_tx.status(info_hash) is None
    assert not any(tx_settings.incoming_dir.iterdir())


def test_a_torrent_transmission_keeps_outside_the_incoming_tree_is_left_alone(
    client: FlaskClient, tx_settings: Settings, alice: User, client_tx: TorrentClient, tmp_path
) -> None:
    """An operator seeded this torrent by hand from elsewhere; a user adds the same one. The
    transfer fails clearly, and neither the operator's files nor the torrent are touched."""
    services.configure(tx_settings)
    files = {"Docs/manual.pdf": b"d" * 30000}
    torrent = make_torrent("Docs", files)
    outside = tmp_path / "operator-seeds"
    (outside / "Docs").mkdir(parents=True)
    (outside / "Docs/manual.pdf").write_bytes(files["Docs/manual.pdf"])
    info_hash = client_tx.add(torrent, outside)
    wait_for(lambda: (s := client_tx.status(info_hash)) and s.done)
    transfer_id = upload(client, alice, torrent)
    tasks.start_torrent.apply(args=[transfer_id])
    tasks.poll_torrents.apply()
    with services.current().sessions() as s:
        failed = s.get(Transfer, transfer_id)
        assert failed is not None and failed.state == "failed"
        assert "outside" in (failed.error or "")
    assert (outside / "Docs/manual.pdf").read_bytes() == files["Docs/manual.pdf"]
    assert client_tx.status(info_hash) is not None
    client_tx.remove(info_hash, delete_data=False)


def test_deleting_a_transfer_of_a_torrent_kept_outside_leaves_it_alone(
    client: FlaskClient, tx_settings: Settings, alice: User, client_tx: TorrentClient, tmp_path
) -> None:
    services.configure(tx_settings)
    info_hash = "1234567890abcdef1234567890abcdef12345678"
    outside = tmp_path / "operator-seeds"
    outside.mkdir()
    (outside / "keep.txt").write_text("operator's")
    client_tx.add(f"magnet:?xt=urn:btih:{info_hash}", outside)
    response = client.post(
        "/api/transfers", json={"magnet": f"magnet:?xt=urn:btih:{info_hash}"}, headers=alice.headers
    )
    transfer_id = response.get_json()["id"]
    tasks.start_torrent.apply(args=[transfer_id])
    queued()
    assert client.delete(f"/api/transfers/{transfer_id}", headers=alice.headers).status_code == 204
    [(name, args)] = queued()
    assert name == "cloudfetch.cancel_torrent"
    tasks.cancel_torrent.apply(args=args)
    assert client_tx.status(info_hash) is not None
    assert (outside / "keep.txt").read_text() == "operator's"
    assert not (tx_settings.incoming_dir / str(transfer_id)).exists()
    client_tx.remove(info_hash, delete_data=False)
