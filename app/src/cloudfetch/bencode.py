"""Bencode decoding and torrent metadata validation: an upload is accepted only when it really is
a torrent whose file names are safe to create under a user's directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cloudfetch.storage import UnsafePath, safe_relative_path

Value = int | bytes | list["Value"] | dict[bytes, "Value"]


class BencodeError(ValueError):
    pass


class InvalidTorrent(ValueError):
    pass


def _decode(data: bytes, index: int, depth: int) -> tuple[Value, int]:
    if depth > 64:
        raise BencodeError("nesting too deep")
    if index >= len(data):
        raise BencodeError("unexpected end of data")
    lead = data[index : index + 1]
    if lead == b"i":
        end = data.find(b"e", index)
        if end < 0:
            raise BencodeError("unterminated integer")
        digits = data[index + 1 : end]
        if (
            not digits
            or digits in (b"-", b"-0")
            or (digits.lstrip(b"-").startswith(b"0") and digits.lstrip(b"-") != b"0")
        ):
            raise BencodeError(f"malformed integer {digits!r}")
        try:
            return int(digits), end + 1
        except ValueError:
            raise BencodeError(f"malformed integer {digits!r}") from None
    if lead in (b"l", b"d"):
        index += 1
        items: list[Value] = []
        while index < len(data) and data[index : index + 1] != b"e":
            item, index = _decode(data, index, depth + 1)
            items.append(item)
        if index >= len(data):
            raise BencodeError("unterminated list or dictionary")
        if lead == b"l":
            return items, index + 1
        if len(items) % 2 or not all(isinstance(k, bytes) for k in items[::2]):
            raise BencodeError("dictionary keys must be byte strings")
        return dict(zip(items[::2], items[1::2], strict=True)), index + 1  # type: ignore[arg-type]
    if lead.isdigit():
        colon = data.find(b":", index)
        if colon < 0:
            raise BencodeError("malformed string length")
        try:
            length = int(data[index:colon])
        except ValueError:
            raise BencodeError("malformed string length") from None
        start = colon + 1
        if start + length > len(data):
            raise BencodeError("string runs past the end of data")
        return data[start : start + length], start + length
    raise BencodeError(f"unexpected byte {lead!r} at offset {index}")


def decode(data: bytes) -> Value:
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError("trailing data after the value")
    return value


def encode(value: Value | str) -> bytes:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(encode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(encode(k) + encode(v) for k, v in sorted(value.items())) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


@dataclass(frozen=True)
class TorrentInfo:
    name: str
    info_hash: str
    files: list[tuple[str, int]]  # relative path, size

    @property
    def total_size(self) -> int:
        return sum(size for _, size in self.files)


def _text(value: Value, what: str) -> str:
    if not isinstance(value, bytes):
        raise InvalidTorrent(f"{what} is not a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidTorrent(f"{what} is not UTF-8") from None


def _size(value: Value, what: str) -> int:
    if not isinstance(value, int) or value < 0:
        raise InvalidTorrent(f"{what} is not a non-negative integer")
    return value


def parse_torrent(data: bytes) -> TorrentInfo:
    """Validate .torrent metadata; raise InvalidTorrent with the reason."""
    try:
        meta = decode(data)
    except BencodeError as exc:
        raise InvalidTorrent(f"not bencoded data: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get(b"info"), dict):
        raise InvalidTorrent("no info dictionary")
    info = meta[b"info"]
    assert isinstance(info, dict)
    pieces = info.get(b"pieces")
    if not isinstance(pieces, bytes) or not pieces or len(pieces) % 20:
        raise InvalidTorrent("pieces must be a non-empty multiple of 20 bytes")
    if not isinstance(info.get(b"piece length"), int) or info[b"piece length"] <= 0:  # type: ignore[operator]
        raise InvalidTorrent("piece length is missing")
    name = _text(info.get(b"name"), "name")
    try:
        safe_relative_path(name)
        if "/" in name:
            raise UnsafePath(name)
        if b"files" in info:
            entries = info[b"files"]
            if not isinstance(entries, list) or not entries:
                raise InvalidTorrent("files must be a non-empty list")
            files = []
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get(b"path"), list):
                    raise InvalidTorrent("a file entry has no path")
                parts = [_text(p, "file path") for p in entry[b"path"]]  # type: ignore[union-attr]
                if not parts or any(p in ("", ".") or "/" in p for p in parts):
                    raise UnsafePath("/".join(parts))
                relative = safe_relative_path("/".join([name, *parts]))
                files.append((relative, _size(entry.get(b"length"), "file length")))
        else:
            files = [(name, _size(info.get(b"length"), "length"))]
    except UnsafePath as exc:
        raise InvalidTorrent(f"unsafe file name in torrent: {exc}") from None
    # The info hash is the SHA-1 of the info dictionary exactly as encoded; re-encoding the
    # decoded dictionary gives the same bytes for canonical (sorted-key) torrents.
    return TorrentInfo(name=name, info_hash=hashlib.sha1(encode(info)).hexdigest(), files=files)
