"""Pure functions: bencode and torrent validation, safe paths, magnet/URL checks, Solr documents
and queries (the Solr engine itself runs in the lab)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cloudfetch.bencode import BencodeError, InvalidTorrent, decode, encode, parse_torrent
from cloudfetch.models import StoredFile
from cloudfetch.search import FileIndex, SearchUnavailable, build_query, file_document
from cloudfetch.sources import InvalidSource, check_url, magnet_info_hash
from cloudfetch.storage import UnsafePath, resolve_inside, safe_relative_path, unique_destination
from conftest import closed_port_url, make_torrent


def test_bencode_round_trip() -> None:
    value = {b"a": [1, -2, b"x"], b"b": {b"c": b""}}
    assert decode(encode(value)) == value
    assert encode({"b": 1, "a": 2}) == b"d1:ai2e1:bi1ee"  # keys sorted


@pytest.mark.parametrize(
    "data", [b"", b"i01e", b"i-0e", b"ie", b"5:abc", b"l", b"d1:ai1e", b"di1ei2ee", b"x", b"i1ei2e"]
)
def test_bencode_rejects_malformed(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


def test_torrent_metadata_and_info_hash() -> None:
    torrent = make_torrent("set", {"set/a.txt": b"aaa", "set/sub/b.txt": b"bbbb"})
    info = parse_torrent(torrent)
    assert info.name == "set"
    assert info.files == [("set/a.txt", 3), ("set/sub/b.txt", 4)]
    assert info.total_size == 7
    raw_info = torrent[torrent.index(b"4:infod") + 6 : -1]
    assert info.info_hash == hashlib.sha1(raw_info).hexdigest()


def test_torrent_without_length_is_invalid() -> None:
    with pytest.raises(InvalidTorrent, match="length"):
        parse_torrent(encode({"info": {"name": "x", "piece length": 1, "pieces": b"p" * 20}}))


@pytest.mark.parametrize("raw", ["", "/abs", "../x", "a/../../b", "a\\b", "a\x00b", ".", "a/.."])
def test_unsafe_relative_paths(raw: str) -> None:
    with pytest.raises(UnsafePath):
        safe_relative_path(raw)


def test_safe_relative_path_normalises() -> None:
    assert safe_relative_path("a//b/./c") == "a/b/c"


def test_symlink_out_of_the_user_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "u1"
    root.mkdir()
    os.symlink(tmp_path, root / "link")
    with pytest.raises(UnsafePath):
        resolve_inside(root, "link/secret")


def test_unique_destination_numbers_names(tmp_path: Path) -> None:
    (tmp_path / "a.tar.gz").write_text("x")
    (tmp_path / "a (2).tar.gz").write_text("x")
    assert unique_destination(tmp_path, "a.tar.gz").name == "a (3).tar.gz"
    assert unique_destination(tmp_path, "new").name == "new"


def test_magnet_hash_forms() -> None:
    hex_hash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    assert magnet_info_hash(f"magnet:?xt=urn:btih:{hex_hash.upper()}") == hex_hash
    assert magnet_info_hash("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK") == hex_hash
    with pytest.raises(InvalidSource):
        magnet_info_hash("magnet:?xt=urn:btih:")


def test_url_check_keeps_valid_urls() -> None:
    assert check_url("https://example.org:8443/a?b=c") == "https://example.org:8443/a?b=c"
    with pytest.raises(InvalidSource):
        check_url("http://example.org:0/")


def test_solr_document_makes_release_names_searchable() -> None:
    stored = StoredFile(id=7, user_id=3, path="Show/Big.Buck_Bunny-1080p.mkv", size=99)
    assert file_document(stored) == {
        "id": "file-7",
        "user_id": 3,
        "name": "Show/Big.Buck_Bunny-1080p.mkv",
        "path": "Show/Big.Buck_Bunny-1080p.mkv",
        "size": 99,
    }


def test_solr_query_is_escaped_and_limited_to_the_user() -> None:
    query = build_query(42, 'buck AND) name:* "x" user_id:1')
    assert query.fq == "user_id:42"
    # Separators split words; every word is a quoted term, so none of it is query syntax.
    assert query.q == ('name:("buck" AND "AND" AND "name:*" AND "\\"x\\"" AND "user" AND "id:1")')
    assert build_query(1, "back\\slash").q == 'name:("back\\\\slash")'
    with pytest.raises(ValueError):
        build_query(1, " ._- ")


def test_solr_unreachable_is_reported() -> None:
    index = FileIndex(closed_port_url("http", "/solr/files"), timeout=1)
    with pytest.raises(SearchUnavailable):
        index.ping()
    with pytest.raises(SearchUnavailable):
        index.search(1, "anything")
