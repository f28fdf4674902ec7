"""The JSON API under /api (`Authorization: Bearer <token>`). Errors are rendered as JSON by
the app-wide handler cloudfetch.web registers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from cloudfetch import context, flows
from cloudfetch.errors import ApiError
from cloudfetch.models import ApiToken, Transfer, User

api = Blueprint("api", __name__, url_prefix="/api")


def current_user() -> User:
    """The user whose API token this request carries (401 without a valid one)."""
    if "user" not in g:
        g.user = flows.user_for_token(context.db(), request.headers.get("Authorization"))
    return g.user


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_json", "send a JSON object with Content-Type: application/json"
        )
    return body


# Accounts


@api.post("/signup")
def signup():  # type: ignore[no-untyped-def]
    body = json_body()
    user, token = flows.sign_up(context.db(), body.get("email"), body.get("password"))
    return jsonify({"user": {"id": user.id, "email": user.email}, "token": token}), 201


@api.post("/login")
def login():  # type: ignore[no-untyped-def]
    body = json_body()
    user = flows.log_in(context.db(), body.get("email"), body.get("password"))
    token = flows.issue_token(context.db(), user, "login")
    context.db().commit()
    return jsonify({"user": {"id": user.id, "email": user.email}, "token": token})


@api.get("/me")
def me():  # type: ignore[no-untyped-def]
    user = current_user()
    return jsonify({"id": user.id, "email": user.email})


@api.get("/tokens")
def list_tokens():  # type: ignore[no-untyped-def]
    tokens = context.db().query(ApiToken).filter_by(user_id=current_user().id).order_by(ApiToken.id)
    return jsonify(
        [{"id": t.id, "name": t.name, "created_at": t.created_at.isoformat()} for t in tokens]
    )


@api.post("/tokens")
def create_token():  # type: ignore[no-untyped-def]
    user = current_user()
    name = json_body().get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "invalid_name", "give the token a name")
    token = flows.issue_token(context.db(), user, name.strip())
    context.db().commit()
    return jsonify({"token": token, "name": name.strip()[:100]}), 201


@api.delete("/tokens/<int:token_id>")
def delete_token(token_id: int):  # type: ignore[no-untyped-def]
    token = (
        context.db().query(ApiToken).filter_by(id=token_id, user_id=current_user().id).one_or_none()
    )
    if token is None:
        raise ApiError(404, "not_found", "no such token")
    context.db().delete(token)
    context.db().commit()
    return "", 204


# Transfers


@api.post("/transfers")
def add_transfer():  # type: ignore[no-untyped-def]
    user = current_user()
    if request.files or request.form:
        upload = request.files.get("torrent")
        if upload is None:
            raise ApiError(400, "invalid_request", "upload the .torrent as form field 'torrent'")
        data = upload.read(context.settings().max_upload_bytes + 1)
        if not data:
            raise ApiError(400, "invalid_torrent", "the uploaded file is empty")
        req = flows.TransferRequest(torrent=data)
    else:
        body = json_body()
        req = flows.TransferRequest(url=body.get("url"), magnet=body.get("magnet"))
    transfer = flows.add_transfer(context.db(), context.settings(), user, req)
    return jsonify(flows.transfer_json(transfer)), 202


@api.get("/transfers")
def list_transfers():  # type: ignore[no-untyped-def]
    transfers = (
        context.db()
        .query(Transfer)
        .filter_by(user_id=current_user().id)
        .order_by(Transfer.id.desc())
    )
    return jsonify([flows.transfer_json(t) for t in transfers])


@api.get("/transfers/<int:transfer_id>")
def get_transfer(transfer_id: int):  # type: ignore[no-untyped-def]
    return jsonify(
        flows.transfer_json(flows.user_transfer(context.db(), current_user(), transfer_id))
    )


@api.delete("/transfers/<int:transfer_id>")
def delete_transfer(transfer_id: int):  # type: ignore[no-untyped-def]
    flows.delete_transfer(context.db(), current_user(), transfer_id)
    return "", 204


# Files


@api.get("/files")
def list_files():  # type: ignore[no-untyped-def]
    return jsonify(flows.browse(context.db(), current_user(), request.args.get("path")))


@api.get("/files/<int:file_id>")
def get_file(file_id: int):  # type: ignore[no-untyped-def]
    return jsonify(flows.file_json(flows.user_file(context.db(), current_user(), file_id)))


@api.get("/files/<int:file_id>/download")
def download_file(file_id: int):  # type: ignore[no-untyped-def]
    stored = flows.user_file(context.db(), current_user(), file_id)
    return flows.download_response(context.settings(), stored)


@api.get("/download")
def download_by_path():  # type: ignore[no-untyped-def]
    stored = flows.user_file_by_path(context.db(), current_user(), request.args.get("path"))
    return flows.download_response(context.settings(), stored)


@api.delete("/files/<int:file_id>")
def delete_file(file_id: int):  # type: ignore[no-untyped-def]
    flows.delete_file(context.db(), context.settings(), current_user(), file_id)
    return "", 204


@api.get("/search")
def search():  # type: ignore[no-untyped-def]
    found = flows.search_files(
        context.db(), context.settings(), current_user(), request.args.get("q")
    )
    return jsonify([flows.file_json(f) for f in found])
