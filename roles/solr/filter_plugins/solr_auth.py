"""Solr BasicAuthPlugin credentials, in the form security.json stores them.

Solr keeps "HASH SALT" per user, both base64, with HASH = sha256(sha256(SALT + password))
(Sha256AuthenticationProvider). `solr_credentials` makes that entry for each user with a random
salt, but keeps the entry already on the host while it still matches the password: a second
converge then writes the same security.json and restarts nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os


def _digest(password: str, salt: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(salt + password.encode()).digest()).digest()


def solr_password_matches(stored: str, password: str) -> bool:
    try:
        digest, salt = (base64.b64decode(part, validate=True) for part in stored.split(" "))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, _digest(password, salt))


def solr_credentials(users: list[dict], existing: dict | None = None) -> dict[str, str]:
    """users: [{name, password}]; existing: the credentials object of the current security.json."""
    existing = existing or {}
    credentials = {}
    for user in users:
        name, password = user["name"], user["password"]
        stored = existing.get(name)
        if isinstance(stored, str) and solr_password_matches(stored, password):
            credentials[name] = stored
            continue
        salt = os.urandom(32)
        credentials[name] = (
            base64.b64encode(_digest(password, salt)).decode()
            + " "
            + base64.b64encode(salt).decode()
        )
    return credentials


class FilterModule:
    def filters(self):  # type: ignore[no-untyped-def]
        return {"solr_credentials": solr_credentials}
