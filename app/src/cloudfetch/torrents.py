"""All Transmission access (transmission-rpc). Each transfer downloads into its own directory
<incoming>/<transfer id>/ so completed files can be found and moved without guessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import transmission_rpc
from transmission_rpc.error import TransmissionError

TIMEOUT_SECONDS = 10.0
LOCAL_ERROR = 3


class TorrentClientError(Exception):
    pass


@dataclass(frozen=True)
class TorrentStatus:
    info_hash: str
    name: str
    progress: float  # 0..1
    size: int
    done: bool
    error: str | None
    files: list[str]  # relative to download_dir
    download_dir: str = ""  # where Transmission writes it: the incoming dir of the first adder


class TorrentClient:
    def __init__(self, rpc_url: str, username: str, password: str) -> None:
        parts = urlsplit(rpc_url)
        try:
            self._client = transmission_rpc.Client(
                protocol=parts.scheme,  # type: ignore[arg-type]
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (443 if parts.scheme == "https" else 9091),
                path=parts.path or "/transmission/rpc",
                username=username,
                password=password,
                timeout=TIMEOUT_SECONDS,
            )
        except TransmissionError as exc:
            raise TorrentClientError(f"Transmission at {rpc_url}: {exc}") from exc

    def add(self, torrent: str | bytes, download_dir: Path) -> str:
        """Add a magnet URI or .torrent bytes; return the info hash."""
        try:
            added = self._client.add_torrent(torrent, download_dir=str(download_dir))
        except TransmissionError as exc:
            raise TorrentClientError(f"adding the torrent failed: {exc}") from exc
        return added.hash_string

    def status(self, info_hash: str) -> TorrentStatus | None:
        try:
            found = self._client.get_torrents([info_hash])
        except TransmissionError as exc:
            raise TorrentClientError(f"reading torrent {info_hash} failed: {exc}") from exc
        if not found:
            return None
        torrent = found[0]
        # A magnet has no file list until its metadata arrives; it cannot be done before that.
        files = [f.name for f in torrent.get_files()]
        done = bool(files) and torrent.percent_done >= 1.0 and torrent.left_until_done == 0
        return TorrentStatus(
            info_hash=torrent.hash_string,
            name=torrent.name,
            progress=float(torrent.percent_done),
            size=int(torrent.total_size),
            done=done,
            # Codes 1 and 2 are tracker warnings/errors a torrent recovers from; 3 is local
            # (disk full, data missing) and needs a person.
            error=(torrent.error_string or "local error") if torrent.error == LOCAL_ERROR else None,
            files=files,
            download_dir=torrent.download_dir or "",
        )

    def remove(self, info_hash: str, delete_data: bool) -> None:
        try:
            self._client.remove_torrent([info_hash], delete_data=delete_data)
        except TransmissionError as exc:
            raise TorrentClientError(f"removing torrent {info_hash} failed: {exc}") from exc
