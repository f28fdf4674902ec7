"""Sign-up, log-in and API tokens through real HTTP requests against the WSGI app."""

from __future__ import annotations

import pytest
from cloudfetch import services
from cloudfetch.models import ApiToken
from cloudfetch.models import User as UserRow
from conftest import User
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select


def count_users() -> int:
    with services.current().sessions() as s:
        return s.scalar(select(func.count()).select_from(UserRow)) or 0


def test_signup_returns_a_working_token(client: FlaskClient) -> None:
    user = User(client, "Carol@Example.org")
    me = client.get("/api/me", headers=user.headers)
    assert me.status_code == 200
    assert me.get_json() == {"id": user.id, "email": "carol@example.org"}


def test_secrets_are_stored_hashed(client: FlaskClient, alice: User) -> None:
    with services.current().sessions() as s:
        row = s.scalar(select(UserRow).where(UserRow.id == alice.id))
        assert row is not None
        assert row.password_hash.startswith("$argon2id$")
        stored = s.scalars(select(ApiToken.token_hash)).all()
    assert alice.token not in stored
    assert len(stored) == 1 and len(stored[0]) == 64


def test_duplicate_signup_is_refused_and_writes_nothing(client: FlaskClient, alice: User) -> None:
    response = client.post(
        "/api/signup", json={"email": "ALICE@example.org", "password": "another password"}
    )
    assert response.status_code == 409
    assert response.get_json()["error"] == "email_taken"
    assert count_users() == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"email": "not-an-email", "password": "long enough"}, "invalid_email"),
        ({"email": "dave@example.org", "password": "short"}, "invalid_password"),
        ({"email": "dave@example.org"}, "invalid_password"),
        ({"email": ["x"], "password": "long enough"}, "invalid_email"),
    ],
)
def test_bad_signup_is_refused(client: FlaskClient, body: dict[str, object], error: str) -> None:
    response = client.post("/api/signup", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == error
    assert count_users() == 0


def test_signup_needs_a_json_object(client: FlaskClient) -> None:
    response = client.post("/api/signup", data="email=x", content_type="text/plain")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"


def test_login_issues_a_new_token(client: FlaskClient, alice: User) -> None:
    response = client.post(
        "/api/login", json={"email": "alice@example.org", "password": "correct horse"}
    )
    assert response.status_code == 200
    token = response.get_json()["token"]
    assert token != alice.token
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"email": "alice@example.org", "password": "wrong horse"},
        {"email": "nobody@example.org", "password": "correct horse"},
    ],
)
def test_bad_login_is_401(client: FlaskClient, alice: User, body: dict[str, str]) -> None:
    response = client.post("/api/login", json=body)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_credentials"


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer cf_not-a-real-token"}, "invalid_token"),
        ({"Authorization": "Basic YWxpY2U6cHc="}, "invalid_token"),
        ({"Authorization": "Bearer "}, "invalid_token"),
    ],
)
def test_missing_or_invalid_token_is_401(
    client: FlaskClient, alice: User, headers: dict[str, str], error: str
) -> None:
    for path in ("/api/me", "/api/files", "/api/transfers"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"] == error
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_tokens_can_be_made_listed_and_revoked(client: FlaskClient, alice: User, bob: User) -> None:
    made = client.post("/api/tokens", json={"name": "laptop"}, headers=alice.headers)
    assert made.status_code == 201
    laptop = {"Authorization": f"Bearer {made.get_json()['token']}"}
    listed = client.get("/api/tokens", headers=alice.headers).get_json()
    assert [t["name"] for t in listed] == ["signup", "laptop"]
    laptop_id = listed[1]["id"]
    # Another user cannot see or revoke it.
    assert client.delete(f"/api/tokens/{laptop_id}", headers=bob.headers).status_code == 404
    assert client.get("/api/me", headers=laptop).status_code == 200
    assert client.delete(f"/api/tokens/{laptop_id}", headers=alice.headers).status_code == 204
    assert client.get("/api/me", headers=laptop).status_code == 401
    assert client.get("/api/me", headers=alice.headers).status_code == 200


def test_unknown_api_path_is_json_404(app: Flask, client: FlaskClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
