"""Validation of what a user asks to fetch: magnet URIs and http(s) URLs."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qs, urlsplit

_HEX_HASH = re.compile(r"^[0-9a-fA-F]{40}$")
_B32_HASH = re.compile(r"^[A-Za-z2-7]{32}$")
MAX_SOURCE_LENGTH = 4096


class InvalidSource(ValueError):
    pass


def magnet_info_hash(uri: str) -> str:
    """The lower-case hex info hash of a BitTorrent magnet URI; InvalidSource otherwise."""
    if len(uri) > MAX_SOURCE_LENGTH or not uri.startswith("magnet:?"):
        raise InvalidSource("a magnet link starts with 'magnet:?'")
    params = parse_qs(uri[len("magnet:?") :])
    for xt in params.get("xt", []):
        if not xt.lower().startswith("urn:btih:"):
            continue
        value = xt[len("urn:btih:") :]
        if _HEX_HASH.match(value):
            return value.lower()
        if _B32_HASH.match(value):
            try:
                return base64.b32decode(value.upper()).hex()
            except binascii.Error:
                break
    raise InvalidSource("a magnet link needs xt=urn:btih:<40 hex or 32 base32 characters>")


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host; InvalidSource otherwise."""
    if len(url) > MAX_SOURCE_LENGTH or any(c.isspace() for c in url):
        raise InvalidSource("the URL is too long or contains whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidSource("the URL cannot be parsed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSource("only absolute http:// and https:// URLs can be fetched")
    if port == 0:
        raise InvalidSource("the URL has an invalid port")
    return url
