"""roles/solr/filter_plugins/solr_auth.py: Solr's stored password form, and idempotence."""

from __future__ import annotations

import base64
import hashlib
import importlib.util

from fetchfleet.inventory import REPO

_spec = importlib.util.spec_from_file_location(
    "solr_auth", REPO / "roles" / "solr" / "filter_plugins" / "solr_auth.py"
)
assert _spec and _spec.loader
solr_auth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(solr_auth)

USERS = [{"name": "solr-admin", "password": "a" * 20}, {"name": "cloudfetch", "password": "b" * 20}]


def test_entries_are_solrs_double_sha256_with_a_random_salt():
    first = solr_auth.solr_credentials(USERS)
    again = solr_auth.solr_credentials(USERS)
    for user in USERS:
        digest, salt = (base64.b64decode(p) for p in first[user["name"]].split(" "))
        assert len(salt) == 32
        inner = hashlib.sha256(salt + user["password"].encode()).digest()
        assert hashlib.sha256(inner).digest() == digest
        assert first[user["name"]] != again[user["name"]]  # a fresh salt each time


def test_an_entry_that_still_matches_is_kept_and_a_stale_one_replaced():
    current = solr_auth.solr_credentials(USERS)
    changed = [USERS[0], {"name": "cloudfetch", "password": "c" * 20}]
    result = solr_auth.solr_credentials(changed, current)
    assert result["solr-admin"] == current["solr-admin"]
    assert result["cloudfetch"] != current["cloudfetch"]
    assert solr_auth.solr_password_matches(result["cloudfetch"], "c" * 20)
    assert not solr_auth.solr_password_matches(result["cloudfetch"], "b" * 20)


def test_users_not_asked_for_are_dropped_and_garbage_is_not_trusted():
    current = {"solr-admin": "not base64 at all", "old-user": "x y"}
    result = solr_auth.solr_credentials(USERS[:1], current)
    assert list(result) == ["solr-admin"]
    assert solr_auth.solr_password_matches(result["solr-admin"], "a" * 20)
