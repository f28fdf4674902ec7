"""Streamed HTTP download with a size limit, into a temporary file in the incoming directory."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

from cloudfetch.storage import safe_file_name

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
CHUNK = 1024 * 1024
_DISPOSITION_NAME = re.compile(r"""filename\*?=(?:UTF-8'')?["']?([^"';]+)""", re.IGNORECASE)


class FetchError(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    path: Path  # the temporary file; the caller moves it into storage
    name: str
    size: int


def check_public_host(url: str) -> None:
    """Refuse URLs whose host resolves to a private, loopback or link-local address, so users
    cannot make the fetcher reach services inside the fleet."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise FetchError(f"{host} resolves to non-public address {address}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_name(response: requests.Response) -> str:
    match = _DISPOSITION_NAME.search(response.headers.get("Content-Disposition", ""))
    if match:
        return safe_file_name(unquote(match.group(1)))
    return safe_file_name(unquote(urlsplit(response.url).path))


def download(
    url: str,
    directory: Path,
    max_bytes: int,
    allow_private: bool = False,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Fetched:
    """Stream url into a temporary file in directory. Stops as soon as max_bytes is passed,
    whatever Content-Length claimed, and removes the partial file on any failure."""
    if not allow_private:
        check_public_host(url)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        response = requests.get(
            url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=True
        )
    except requests.RequestException as exc:
        raise FetchError(f"request failed: {exc}") from None
    with response:
        if response.status_code != 200:
            raise FetchError(f"server answered HTTP {response.status_code}")
        if not allow_private:
            check_public_host(response.url)  # after redirects too
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        if total is not None and total > max_bytes:
            raise FetchError(f"file is {total} bytes, the limit is {max_bytes}")
        handle, temp_name = tempfile.mkstemp(dir=directory, prefix=".fetch-")
        # mkstemp makes the file 0600; a stored file is an ordinary file that the storage's
        # nginx and the backup server read, so it gets the mode the umask gives any new file.
        os.fchmod(handle, 0o666 & ~_umask())
        size = 0
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"download passed the limit of {max_bytes} bytes")
                    out.write(chunk)
                    if on_progress:
                        on_progress(size, total)
        except (requests.RequestException, OSError) as exc:
            os.unlink(temp_name)
            raise FetchError(f"download interrupted: {exc}") from None
        except FetchError:
            os.unlink(temp_name)
            raise
        return Fetched(path=Path(temp_name), name=_file_name(response), size=size)
